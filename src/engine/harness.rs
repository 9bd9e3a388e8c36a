//! One worker harness for both runs: it builds the operator graph on a timely worker, feeds the
//! inputs known before the first bar (sectors, facts), takes bars and source rejects at their
//! own event times, moves the floor below which no input can come, and hands worker 0's results
//! out. The backtest ([`super::run`]) and the streaming run ([`crate::stream`]) differ only in the
//! feeder that calls it: a file replay or a Redis consumer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::core::unordered_input::UnorderedHandle;
use timely::dataflow::operators::{ActivateCapability, Input};

use crate::bar::{BarBatch, owner};
use crate::config::{LoadedPipeline, ModelSpec};
use crate::fact::Fact;
use crate::frame::Bars;
use crate::operators::exposure::ExposureRow;
use crate::operators::ml::registry::{Registry, StoreHandle};
use crate::operators::portfolio::Ledger;
use crate::order::VenueUpdate;
use crate::reject::Reject;
use crate::time::EventTime;

use super::{EngineError, Graph, GraphSpec};

type Handle<D> = UnorderedHandle<u64, CapacityContainerBuilder<Vec<D>>>;

/// The floor's capability on each input.
struct Caps {
    bars: ActivateCapability<u64>,
    rejects: ActivateCapability<u64>,
    updates: ActivateCapability<u64>,
}

/// What every worker is given besides the graph: inputs known before the first bar.
#[derive(Clone)]
pub struct References {
    /// Ticker → sector (from the universe file; a ticker without one is `unknown`).
    pub sectors: Arc<BTreeMap<String, String>>,
    /// Fundamentals and sentiment facts, each at its publication time.
    pub facts: Arc<Vec<Fact>>,
}

/// Where an ML pipeline keeps its trained models. Rule pipelines keep none, whatever is asked.
#[derive(Debug, Clone, Default)]
pub enum ModelPlace {
    /// Not kept: every training lives only in the run.
    #[default]
    Nowhere,
    /// The filesystem registry: `[model] registry` when the pipeline names one, else this folder.
    Files(PathBuf),
    /// PostgreSQL's `ml_models`, under the run id (live runs, which survive restarts).
    Postgres {
        /// PostgreSQL URL.
        url: String,
        /// The run the models belong to.
        run_id: String,
    },
    /// A store the caller opened (with its own clock: tests fix it).
    Store(StoreHandle),
}

/// Opens the model store a pipeline's ML model trains into, removing expired models first. The
/// store's clock is the wall clock, read here at the driver and never inside an operator.
///
/// # Errors
/// The registry folder cannot be opened or cleaned.
pub fn model_store(
    p: &LoadedPipeline,
    place: &ModelPlace,
) -> Result<Option<StoreHandle>, EngineError> {
    let ModelSpec::Ml(m) = &p.pipeline.model else {
        return Ok(None);
    };
    let clock = crate::time::wall_unix;
    let store: Arc<dyn crate::operators::ml::registry::ModelStore> = match place {
        ModelPlace::Nowhere => return Ok(None),
        ModelPlace::Store(handle) => return Ok(Some(handle.clone())),
        ModelPlace::Files(default) => {
            let dir = m
                .registry
                .as_deref()
                .map_or_else(|| default.clone(), |d| p.resolve(d));
            let registry = Registry::open(&dir, i64::from(m.ttl_days) * 86_400)?;
            let removed = registry.cleanup(clock())?;
            tracing::info!(dir = %dir.display(), removed = removed.len(), "model registry");
            Arc::new(registry)
        }
        ModelPlace::Postgres { url, run_id } => {
            let store = crate::sinks::postgres::PgModelStore::new(url, run_id, m.ttl_days);
            // A failed cleanup leaves old rows for the next run: no reason to refuse this one.
            match store.cleanup() {
                Ok(n) => tracing::info!(removed = n, "expired models removed"),
                Err(e) => tracing::warn!(error = %e, "model cleanup failed"),
            }
            Arc::new(store)
        }
    };
    Ok(Some(StoreHandle { store, clock }))
}

/// A worker's graph with its inputs: bars and source rejects are given at their own times, at or
/// after the floor, which only moves forward.
pub struct Harness {
    peers: usize,
    bars: Handle<Bars>,
    rejects: Handle<Reject>,
    updates: Handle<VenueUpdate>,
    /// The floor's capabilities (bars, rejects, venue updates); none once the inputs are closed.
    caps: Option<Caps>,
    graph: Graph,
    /// Rows drained from the portfolio but later than the last [`Harness::drain`]'s time.
    held: Ledger,
}

impl Harness {
    /// Builds the graph on `worker` and sends the reference inputs (closing them). The floor
    /// starts at the beginning of time.
    pub fn build(
        worker: &mut timely::worker::Worker,
        spec: &GraphSpec,
        refs: &References,
    ) -> Harness {
        let (index, peers) = (worker.index(), worker.peers());
        let sectors: Arc<Vec<String>> = Arc::new(
            spec.tickers
                .names()
                .iter()
                .map(|name| sector_of(refs, name))
                .collect(),
        );
        let mut facts_in = InputHandle::new();
        let ((bars, bars_cap), (rejects, rejects_cap), (updates, updates_cap), graph) = worker
            .dataflow::<u64, _, _>(|scope| {
                let (bars_h, bars) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<Bars>>>();
                let (rejects_h, rejects) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<Reject>>>();
                let (updates_h, updates) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<VenueUpdate>>>();
                let g = spec.build(
                    index,
                    peers,
                    super::Inputs {
                        bars,
                        rejects,
                        updates,
                        sectors: Arc::clone(&sectors),
                        facts: scope.input_from(&mut facts_in),
                    },
                );
                (bars_h, rejects_h, updates_h, g)
            });
        feed_facts(index, peers, refs, facts_in);
        Harness {
            peers,
            bars,
            rejects,
            updates,
            caps: Some(Caps {
                bars: bars_cap,
                rejects: rejects_cap,
                updates: updates_cap,
            }),
            graph,
            held: Ledger::default(),
        }
    }

    /// The floor: every input still to come is at or after it (`None`: the inputs are closed).
    pub fn floor(&self) -> Option<u64> {
        self.caps.as_ref().map(|c| *c.bars.time())
    }

    /// Gives bars at their own times, each part going on to the worker that owns its tickers.
    ///
    /// # Errors
    /// A time before the floor, or closed inputs: the feeder let through what it must quarantine
    /// as late (a bug, not bad data).
    pub fn give_bars(
        &mut self,
        batches: impl IntoIterator<Item = (u64, BarBatch)>,
    ) -> Result<(), EngineError> {
        let Some(Caps { bars: cap, .. }) = &self.caps else {
            return Err(closed("bars"));
        };
        for (t, batch) in batches {
            if t < *cap.time() {
                return Err(EngineError::Dataflow {
                    message: format!("bars at {t} given below the floor {}", cap.time()),
                });
            }
            let at = cap.delayed(&t);
            let mut h = self.bars.activate();
            let mut s = h.session(&at);
            for part in batch.shard(self.peers) {
                s.give(Bars::from(part));
            }
        }
        Ok(())
    }

    /// Gives the source's rejects at the floor (their own times are in the rows).
    ///
    /// # Errors
    /// Closed inputs.
    pub fn give_rejects(&mut self, rejects: Vec<Reject>) -> Result<(), EngineError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let Some(Caps { rejects: cap, .. }) = &self.caps else {
            return Err(closed("rejects"));
        };
        let mut h = self.rejects.activate();
        let mut s = h.session(cap);
        for r in rejects {
            s.give(r);
        }
        Ok(())
    }

    /// Gives a venue's updates of the run's orders at their times, to the worker that holds the
    /// portfolio (worker 0 gives them).
    ///
    /// # Errors
    /// A time before the floor, or closed inputs (the feeder must lift a late update to the
    /// floor and record that time).
    pub fn give_updates(
        &mut self,
        updates: impl IntoIterator<Item = (u64, VenueUpdate)>,
    ) -> Result<(), EngineError> {
        let Some(Caps { updates: cap, .. }) = &self.caps else {
            return Err(closed("venue updates"));
        };
        for (t, u) in updates {
            if t < *cap.time() {
                return Err(EngineError::Dataflow {
                    message: format!("a venue update at {t} given below the floor {}", cap.time()),
                });
            }
            let at = cap.delayed(&t);
            self.updates.activate().session(&at).give(u);
        }
        Ok(())
    }

    /// Raises the floor to `t` (a lower `t` changes nothing).
    pub fn advance_to(&mut self, t: u64) {
        if let Some(c) = &mut self.caps
            && t > *c.bars.time()
        {
            c.bars.downgrade(&t);
            c.rejects.downgrade(&t);
            c.updates.downgrade(&t);
        }
    }

    /// Closes the inputs: the graph runs to the end of what it was given.
    pub fn close(&mut self) {
        self.caps = None;
    }

    /// Whether the graph still works on a time before the floor.
    pub fn busy(&self) -> bool {
        self.graph
            .probe
            .less_than(&self.floor().unwrap_or(u64::MAX))
    }

    /// Whether the graph is still working on time `t` or earlier.
    pub fn working_on(&self, t: u64) -> bool {
        self.graph.probe.less_equal(&t)
    }

    /// The earliest time the graph is still working on (`None`: it has finished).
    pub fn frontier(&self) -> Option<u64> {
        self.graph.probe.with_frontier(|f| f.first().copied())
    }

    /// Takes, on worker 0, the ledger rows and sector exposure rows at or before `through` not
    /// taken yet (the portfolio may already have decided later times, downstream sinks not: those
    /// rows wait for their time), with the quarantine rows gathered so far.
    pub fn drain(&mut self, through: EventTime) -> Results {
        let mut ledger = std::mem::take(&mut self.held);
        if let Some(p) = self.graph.portfolio.borrow_mut().as_mut() {
            ledger.append(p.drain());
        }
        self.held = ledger.split_after(through);
        self.results(ledger, through)
    }

    /// Takes, on worker 0 once the graph has finished, the whole remaining ledger (closing the
    /// portfolio's books) with the rest of the quarantine and exposure; `None` elsewhere or when
    /// already taken.
    pub fn finish(&mut self) -> Option<Results> {
        let taken = self.graph.portfolio.borrow_mut().take();
        taken.map(|p| {
            let mut ledger = std::mem::take(&mut self.held);
            ledger.append(p.finish());
            self.results(ledger, EventTime::MAX)
        })
    }

    /// Takes, once the graph has finished, the ledgers of the sweep's combinations this worker
    /// stepped, by combination.
    pub fn finish_sweep(&mut self) -> Vec<(usize, Ledger)> {
        std::mem::take(&mut *self.graph.sweep.borrow_mut())
            .into_iter()
            .map(|(c, p)| (c, p.finish()))
            .collect()
    }

    /// Takes the quarantine gathered on this worker (worker 0's is every worker's).
    pub fn take_quarantine(&mut self) -> Vec<Reject> {
        std::mem::take(&mut *self.graph.quarantine.borrow_mut())
    }

    fn results(&self, ledger: Ledger, through: EventTime) -> Results {
        let quarantine = std::mem::take(&mut *self.graph.quarantine.borrow_mut());
        let mut raw = self.graph.exposure.borrow_mut();
        let (done, later): (Vec<ExposureRow>, Vec<ExposureRow>) = std::mem::take(&mut *raw)
            .into_iter()
            .partition(|r| r.ts <= through);
        *raw = later;
        Results {
            ledger,
            quarantine,
            exposure: crate::operators::exposure::rows(done),
        }
    }
}

/// What worker 0 takes out of the graph: decisions, quarantined rows and sector exposure.
#[derive(Debug, Default)]
pub struct Results {
    /// Signals, orders, fills, positions, equity and trades.
    pub ledger: Ledger,
    /// Quarantined and flagged rows, in arrival order.
    pub quarantine: Vec<Reject>,
    /// One row per time and sector whose exposure changed.
    pub exposure: Vec<ExposureRow>,
}

fn closed(what: &str) -> EngineError {
    EngineError::Dataflow {
        message: format!("{what} given after the inputs were closed"),
    }
}

/// The universe's sector of `ticker`, `unknown` when it names none.
fn sector_of(refs: &References, ticker: &str) -> String {
    refs.sectors
        .get(ticker)
        .cloned()
        .unwrap_or_else(|| crate::operators::exposure::UNKNOWN.into())
}

/// Sends the facts, each at its publication time by the worker that owns its ticker, and closes
/// the input.
fn feed_facts(
    index: usize,
    peers: usize,
    refs: &References,
    mut facts_in: InputHandle<u64, CapacityContainerBuilder<Vec<Fact>>>,
) {
    for f in refs
        .facts
        .iter()
        .filter(|f| owner(f.ticker, peers) == index)
    {
        facts_in.advance_to(crate::time::timely_time(f.ts));
        facts_in.send(f.clone());
    }
    facts_in.close();
}
