//! The engine: builds the operator graph on timely, feeds each worker's share of the source at
//! event time, and collects the portfolio's ledger and the quarantine on worker 0.
//!
//! ```text
//! source ─▶ quality ─▶ features ─▶ [as-of facts] ─▶ [drift] ─▶ model ─▶ portfolio (risk + broker) ─▶ equity
//!              │                                        └─ drift events ride beside their rows ─▶ sinks
//!              └─ rejects ─┬────────────────────────────────────────────────────────────────▶ quarantine
//! source rejects ──────────┘
//! ```
//!
//! The model is a rule or the ML ensemble (`[model] kind = "ensemble"`), which retrains on the
//! drift operator's events; `[drift]` is optional for rule models and implied for the ensemble.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::bar::{BarBatch, TickerId, Tickers, owner};
use crate::config::{BrokerSpec, LoadedPipeline, Sizing};
use crate::operators::asof::AsOfExt;
use crate::operators::drift::{DriftExt, DriftPlan};
use crate::operators::exposure::{ExposureRow, sector_exposure};
use crate::operators::features::FeaturesExt;
use crate::operators::indicators::FeatureSpec;
use crate::operators::portfolio::{Ledger, Portfolio, PortfolioExt, SharedPortfolio};
use crate::operators::quality::{QualityExt, Reject};
use crate::operators::risk::{KillSwitch, RiskEngine};
use crate::operators::signal::{RuleModel, SignalExt};
use crate::sinks::broker::PaperBroker;
use crate::sources::fundamentals::Fact;
use crate::sources::{Source, SourceError};

/// Timestamps a worker feeds before it lets the graph catch up. Bounds the times in flight (each
/// outstanding time makes every progress update dearer) without stepping once per timestamp;
/// 64 to 1,024 measure the same on the benchmark.
const FEED_CHUNK: usize = 128;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source could not start.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The pipeline names a model or drift input that no feature produces (a pipeline built
    /// in code: a loaded file's validation refuses it first).
    #[error("the model's or drift's inputs are not feature columns (declared: {declared})")]
    UnknownInputs {
        /// The feature columns there are.
        declared: String,
    },
    /// Timely could not start or a worker failed.
    #[error("dataflow: {message}")]
    Dataflow {
        /// Timely's or the worker's message.
        message: String,
    },
    /// Not one bar passed the quality gate: a run over nothing is an error, not an empty success.
    #[error("no usable bar: {why}")]
    NoBars {
        /// The first rejected rows (with `file:line` where the source has one), or that the
        /// source's range held no bar.
        why: String,
    },
}

impl crate::fault::Blame for EngineError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            EngineError::Source(e) => e.fault(),
            EngineError::UnknownInputs { .. } => Fault::Input,
            EngineError::Dataflow { .. } => Fault::Bug,
            EngineError::NoBars { .. } => Fault::Data,
        }
    }
}

/// Why a run saw no bar: the source's range was empty, or the first rejects.
fn no_bars(quarantine: &[Reject]) -> EngineError {
    let rejected: Vec<&Reject> = quarantine
        .iter()
        .filter(|r| r.action == crate::operators::quality::Action::Rejected)
        .collect();
    if rejected.is_empty() {
        return EngineError::NoBars {
            why: "the source gave no bar (check [source] paths, tickers, start and end)".into(),
        };
    }
    let first: Vec<String> = rejected
        .iter()
        .take(5)
        .map(|r| format!("{} ({}): {}", r.ticker, r.reason.as_str(), r.detail))
        .collect();
    EngineError::NoBars {
        why: format!(
            "all {} rows were rejected; the first: {}",
            rejected.len(),
            first.join("; ")
        ),
    }
}

/// Timely's cluster options: `-w` threads per process, `-n` processes, `-p` this process, and the
/// addresses of all processes (from `-h HOSTFILE`, else `localhost:2101`, `2102`, ...).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Worker threads in this process.
    pub workers: usize,
    /// Number of processes.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` of every process.
    pub addresses: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
        }
    }
}

impl Cluster {
    /// The timely configuration of these options.
    pub fn config(&self) -> timely::Config {
        use timely::CommunicationConfig as C;
        let communication = if self.processes > 1 {
            let addresses = if self.addresses.is_empty() {
                (0..self.processes)
                    .map(|i| format!("localhost:{}", 2101 + i))
                    .collect()
            } else {
                self.addresses.clone()
            };
            C::Cluster {
                threads: self.workers.max(1),
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            C::Process(self.workers)
        } else {
            C::Thread
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// What a run produced (on the process that holds worker 0).
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The run's tickers.
    pub tickers: Tickers,
    /// Signals, orders, fills, positions, equity, trades.
    pub ledger: Ledger,
    /// Quarantined and flagged rows, in a deterministic order.
    pub quarantine: Vec<Reject>,
    /// Exposure per sector after each time with fills, by time then sector.
    pub exposure: Vec<ExposureRow>,
    /// Wall-clock seconds worker 0 spent loading its share of the source.
    pub load_seconds: f64,
    /// Wall-clock seconds from the first bar fed to the end of the graph, on worker 0.
    pub graph_seconds: f64,
}

/// Options of one run besides the pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Timely cluster.
    pub cluster: Cluster,
    /// Show a progress bar on stderr (when it is a terminal) once the replay passes a second.
    pub progress: bool,
    /// Trips to halt new orders.
    pub kill: KillSwitch,
    /// Where an ML model stores its trainings (none: not stored).
    pub model_store: Option<crate::operators::ml::registry::StoreHandle>,
}

/// What every worker needs to build the operator graph; shared by the backtest ([`run`]) and the
/// streaming run ([`crate::stream`]), so both run the very same operators.
#[derive(Clone)]
pub struct GraphSpec {
    /// The pipeline.
    pub pipeline: Arc<crate::config::Pipeline>,
    /// The run's ticker table.
    pub tickers: Arc<Tickers>,
    /// Directory that relative paths of the pipeline resolve against.
    pub base_dir: std::path::PathBuf,
    /// The signal model.
    pub model: RuleModel,
    /// The drift operator, resolved against the feature columns (none: not in the graph).
    pub drift: Option<DriftPlan>,
    /// Number of fundamentals columns joined as of their publication (0: no join).
    pub fact_width: usize,
    /// Trips to halt new orders.
    pub kill: KillSwitch,
}

/// A worker's handles on the graph it built.
pub struct Graph {
    /// The portfolio (present on worker 0 only).
    pub portfolio: SharedPortfolio<PaperBroker>,
    /// Quarantined and flagged rows gathered on worker 0.
    pub quarantine: Rc<RefCell<Vec<Reject>>>,
    /// Sector exposure rows gathered on worker 0.
    pub exposure: Rc<RefCell<Vec<ExposureRow>>>,
    /// Passes a time once the portfolio and the exposure are done with it.
    pub probe: ProbeHandle<u64>,
}

impl GraphSpec {
    /// Resolves the pipeline's model against its feature columns.
    ///
    /// # Errors
    /// A model input that no feature produces.
    pub fn new(p: &LoadedPipeline, source: &Source, kill: KillSwitch) -> Result<Self, EngineError> {
        let columns = p.pipeline.feature_columns();
        let model = RuleModel::new(&p.pipeline.model, &columns).ok_or_else(|| {
            EngineError::UnknownInputs {
                declared: columns.join(", "),
            }
        })?;
        let drift =
            match p.pipeline.drift() {
                Some(d) => Some(DriftPlan::new(&d, &columns, &model.inputs()).ok_or_else(
                    || EngineError::UnknownInputs {
                        declared: columns.join(", "),
                    },
                )?),
                None => None,
            };
        Ok(GraphSpec {
            pipeline: Arc::new(p.pipeline.clone()),
            tickers: Arc::new(source.tickers()),
            base_dir: p.base_dir.clone(),
            model,
            drift,
            fact_width: p.pipeline.fundamentals.columns().len(),
            kill,
        })
    }

    /// Loads the pipeline's fundamentals and sentiment facts (empty when none are configured).
    ///
    /// # Errors
    /// Unreadable or malformed fact files.
    pub fn facts(&self, p: &LoadedPipeline) -> Result<Vec<Fact>, EngineError> {
        let dir = |d: &Option<String>| d.as_deref().map(|d| p.resolve(d));
        Ok(crate::sources::fundamentals::load(
            dir(&p.pipeline.fundamentals.fmp_dir).as_deref(),
            dir(&p.pipeline.fundamentals.finnhub_dir).as_deref(),
            &p.pipeline.fundamentals.columns(),
            &self.tickers,
        )?)
    }

    /// Builds quality → features → [as-of facts] → [drift] → model → portfolio, with the quarantine and the
    /// sector exposure beside it, on the given input streams.
    #[allow(clippy::too_many_arguments)]
    pub fn build<'s>(
        &self,
        index: usize,
        peers: usize,
        bars: timely::dataflow::Stream<'s, u64, Vec<BarBatch>>,
        rejects: timely::dataflow::Stream<'s, u64, Vec<Reject>>,
        sectors: timely::dataflow::Stream<'s, u64, Vec<(TickerId, String)>>,
        facts: timely::dataflow::Stream<'s, u64, Vec<Fact>>,
    ) -> Graph {
        let pipeline = &self.pipeline;
        let specs: Vec<FeatureSpec> = pipeline
            .features
            .iter()
            .map(|f| f.get_ref().clone())
            .collect();
        let window = match pipeline.risk.sizing {
            Sizing::Kelly { window, .. } => window,
            _ => 30,
        };
        let BrokerSpec::Paper {
            slippage,
            commission,
            whole_shares,
        } = pipeline.broker;
        let portfolio: SharedPortfolio<PaperBroker> =
            Rc::new(RefCell::new((index == 0).then(|| {
                Portfolio::new(
                    RiskEngine::new(pipeline.risk.clone(), self.kill.clone()),
                    PaperBroker::new(slippage, commission, whole_shares),
                )
            })));
        let quarantine: Rc<RefCell<Vec<Reject>>> = Rc::new(RefCell::new(Vec::new()));
        let exposure: Rc<RefCell<Vec<ExposureRow>>> = Rc::new(RefCell::new(Vec::new()));
        let probe = ProbeHandle::new();
        let (good, quality_rejects) = bars.quality(&pipeline.quality, Arc::clone(&self.tickers));
        let cache = pipeline.cache.features.as_ref().map(|d| {
            (
                crate::operators::feature_cache::FeatureCache::new(&self.base_dir.join(d), &specs),
                Arc::clone(&self.tickers),
            )
        });
        let mut featured = good.features(specs, cache);
        if self.fact_width > 0 {
            featured = featured.join_as_of(facts, self.fact_width, peers);
        }
        if let Some(plan) = &self.drift {
            featured = featured.drift(plan.clone());
        }
        let (equity, deltas) = featured
            .signals(self.model.clone(), window, Arc::clone(&self.tickers))
            .portfolio(Rc::clone(&portfolio));
        equity.probe_with(&probe);
        sector_exposure(deltas, sectors, Rc::clone(&exposure)).probe_with(&probe);
        let q = Rc::clone(&quarantine);
        quality_rejects.concat(rejects).sink(
            Exchange::new(|_r: &Reject| 0),
            "Quarantine",
            move |(input, _)| {
                input.for_each(|_, data| q.borrow_mut().append(data));
            },
        );
        Graph {
            portfolio,
            quarantine,
            exposure,
            probe,
        }
    }
}

/// Sends the inputs that are known before the first bar and closes them: each ticker's sector
/// (from worker 0; "unknown" when the universe names none) and the facts, each at its publication
/// time, by the worker that owns its ticker. Shared by the backtest and the streaming run.
#[allow(clippy::too_many_arguments)]
pub fn feed_reference_inputs(
    index: usize,
    peers: usize,
    tickers: &Tickers,
    sectors: &std::collections::BTreeMap<String, String>,
    facts: &[Fact],
    mut sectors_in: InputHandle<u64, CapacityContainerBuilder<Vec<(TickerId, String)>>>,
    mut facts_in: InputHandle<u64, CapacityContainerBuilder<Vec<Fact>>>,
) {
    if index == 0 {
        for (id, name) in tickers.names().iter().enumerate() {
            let sector = sectors
                .get(name)
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            sectors_in.send((id as TickerId, sector));
        }
    }
    sectors_in.close();
    for f in facts.iter().filter(|f| owner(f.ticker, peers) == index) {
        facts_in.advance_to(crate::time::timely_time(f.ts));
        facts_in.send(f.clone());
    }
    facts_in.close();
}

/// Runs the pipeline to the end of its source. Returns the output on the process holding worker 0
/// and `None` on the others.
///
/// # Errors
/// A source that cannot start, or a worker that fails.
pub fn run(p: &LoadedPipeline, opts: &RunOptions) -> Result<Option<RunOutput>, EngineError> {
    let source = Arc::new(Source::open(p)?);
    let mut spec = GraphSpec::new(p, &source, opts.kill.clone())?;
    spec.model.configure_ml(opts.model_store.clone(), false);
    let tickers = Arc::clone(&spec.tickers);
    let sectors = Arc::new(source.sectors());
    let facts = Arc::new(spec.facts(p)?);
    let opts2 = opts.clone();
    let guards = timely::execute(
        opts.cluster.config(),
        move |worker| -> Result<Option<RunOutput>, String> {
            let index = worker.index();
            let peers = worker.peers();
            let _span = tracing::info_span!("worker", index, peers).entered();
            let loading = Instant::now();
            let input = source
                .load(index, peers, &tickers)
                .map_err(|e| e.to_string())?;
            let load_seconds = loading.elapsed().as_secs_f64();
            tracing::info!(
                timestamps = input.batches.len(),
                rejects = input.rejects.len(),
                load_seconds,
                "source loaded"
            );
            let mut bars_in: InputHandle<u64, CapacityContainerBuilder<Vec<BarBatch>>> =
                InputHandle::new();
            let mut rejects_in: InputHandle<u64, CapacityContainerBuilder<Vec<Reject>>> =
                InputHandle::new();
            let mut sectors_in: InputHandle<
                u64,
                CapacityContainerBuilder<Vec<(TickerId, String)>>,
            > = InputHandle::new();
            let mut facts_in: InputHandle<u64, CapacityContainerBuilder<Vec<Fact>>> =
                InputHandle::new();
            let graph = worker.dataflow::<u64, _, _>(|scope| {
                spec.build(
                    index,
                    peers,
                    scope.input_from(&mut bars_in),
                    scope.input_from(&mut rejects_in),
                    scope.input_from(&mut sectors_in),
                    scope.input_from(&mut facts_in),
                )
            });
            let Graph {
                portfolio,
                quarantine,
                exposure,
                probe,
            } = graph;
            for r in input.rejects {
                rejects_in.send(r);
            }
            rejects_in.close();
            feed_reference_inputs(
                index, peers, &tickers, &sectors, &facts, sectors_in, facts_in,
            );
            let running = Instant::now();
            let progress = Progress::new(opts2.progress && index == 0, input.batches.len());
            let mut sent = 0usize;
            for (t, batch) in input.batches {
                bars_in.advance_to(t);
                for part in batch.shard(peers) {
                    bars_in.send(part);
                }
                sent += 1;
                if sent.is_multiple_of(FEED_CHUNK) {
                    bars_in.advance_to(t + 1);
                    while probe.less_equal(&t) {
                        worker.step();
                    }
                }
                progress.tick();
            }
            bars_in.close();
            while worker.step() {}
            progress.finish();
            let graph_seconds = running.elapsed().as_secs_f64();
            tracing::info!(graph_seconds, "graph done");
            let ledger = portfolio.borrow_mut().take().map(Portfolio::finish);
            Ok(ledger.map(|ledger| {
                let mut quarantine = std::mem::take(&mut *quarantine.borrow_mut());
                quarantine.sort_by(|a, b| {
                    (&a.ticker, a.ts, a.reason, &a.detail)
                        .cmp(&(&b.ticker, b.ts, b.reason, &b.detail))
                });
                let exposure =
                    crate::operators::exposure::rows(std::mem::take(&mut *exposure.borrow_mut()));
                RunOutput {
                    tickers: (*tickers).clone(),
                    ledger,
                    quarantine,
                    exposure,
                    load_seconds,
                    graph_seconds,
                }
            }))
        },
    )
    .map_err(|message| EngineError::Dataflow { message })?;
    let mut out = None;
    for r in guards.join() {
        match r {
            Ok(Ok(Some(o))) => out = Some(o),
            Ok(Ok(None)) => {}
            Ok(Err(message)) | Err(message) => return Err(EngineError::Dataflow { message }),
        }
    }
    match out {
        Some(o) if o.ledger.bars == 0 => Err(no_bars(&o.quarantine)),
        out => Ok(out),
    }
}

/// A progress bar shown on stderr once the replay has run for a second (hidden when stderr is not
/// a terminal). Wall-clock time is read here, at the edge, never inside an operator.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Self {
        let bar = enabled.then(|| {
            indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::hidden(),
            )
        });
        Progress {
            bar,
            started: Instant::now(),
            shown: std::cell::Cell::new(false),
        }
    }

    fn tick(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
            if !self.shown.get() && self.started.elapsed() > Duration::from_secs(1) {
                self.shown.set(true);
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
