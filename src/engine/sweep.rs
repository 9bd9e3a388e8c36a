//! The sweep's feeder: the backtest's file replay, once, through a graph whose tail is every
//! combination's model and portfolio ([`crate::operators::sweep`]). Each worker finishes the
//! portfolios it stepped; the ledgers come back by combination.

use std::sync::Arc;
use std::time::Instant;

use crate::bar::Tickers;
use crate::config::LoadedPipeline;
use crate::operators::portfolio::Ledger;
use crate::reject::Reject;
use crate::sources::Source;

use super::backtest::{Progress, replay};
use super::harness::{Harness, References};
use super::{EngineError, GraphSpec, RunOptions, SweepSpec, no_bars, sort_quarantine};

/// What one worker gives back: its combinations' ledgers, its quarantine, its graph seconds and
/// the bars it read.
type WorkerShare = (Vec<(usize, Ledger)>, Vec<Reject>, f64, u64);

/// What a sweep's run gives back.
#[derive(Debug)]
pub struct SweepOutput {
    /// The run's tickers.
    pub tickers: Tickers,
    /// Each combination's ledger, in combination order.
    pub ledgers: Vec<Ledger>,
    /// Quarantined and flagged rows (one gate for every combination).
    pub quarantine: Vec<Reject>,
    /// Wall-clock seconds from the first bar fed to the end of the graph, on worker 0.
    pub graph_seconds: f64,
    /// Bars read (passed and rejected).
    pub bars: u64,
}

/// Runs `p` (whose features are the union of the combinations') with `sweep`'s combinations as
/// the graph's tail, on the threads of one process.
///
/// # Errors
/// A source that cannot start, a cluster of several processes, or a worker that fails.
pub fn run(
    p: &LoadedPipeline,
    sweep: SweepSpec,
    opts: &RunOptions,
) -> Result<SweepOutput, EngineError> {
    if opts.cluster.processes > 1 {
        return Err(EngineError::Dataflow {
            message: "a sweep runs on the threads of one process (-w N), not on -n processes"
                .into(),
        });
    }
    let combos = sweep.books.len();
    let source = Arc::new(Source::open(p)?);
    let mut spec = GraphSpec::new(p, &source, opts.kill.clone())?;
    spec.sweep = Some(Arc::new(sweep));
    let refs = References {
        sectors: Arc::new(source.sectors()),
        facts: Arc::new(spec.facts(p)?),
    };
    let tickers = source.tickers();
    let progress_wanted = opts.progress;
    let guards = timely::execute(
        opts.cluster.config(),
        move |worker| -> Result<WorkerShare, String> {
            let (index, peers) = (worker.index(), worker.peers());
            let _span = tracing::info_span!("sweep_worker", index, peers).entered();
            let input = source
                .load(index, peers, &spec.tickers)
                .map_err(|e| e.to_string())?;
            let read = input
                .batches
                .iter()
                .map(|(_, b)| b.len() as u64)
                .sum::<u64>()
                + input.rejects.len() as u64;
            let mut h = Harness::build(worker, &spec, &refs);
            h.give_rejects(input.rejects).map_err(|e| e.to_string())?;
            let running = Instant::now();
            let progress = Progress::new(progress_wanted && index == 0, input.batches.len());
            replay(worker, &mut h, input.batches, &progress)?;
            let seconds = running.elapsed().as_secs_f64();
            Ok((h.finish_sweep(), h.take_quarantine(), seconds, read))
        },
    )
    .map_err(|message| EngineError::Dataflow { message })?;
    let mut ledgers: Vec<Option<Ledger>> = (0..combos).map(|_| None).collect();
    let (mut quarantine, mut graph_seconds, mut bars) = (Vec::new(), 0.0_f64, 0u64);
    for r in guards.join() {
        let (mine, q, seconds, read) = r
            .and_then(|x| x)
            .map_err(|message| EngineError::Dataflow { message })?;
        for (c, l) in mine {
            ledgers[c] = Some(l);
        }
        quarantine.extend(q);
        graph_seconds = graph_seconds.max(seconds);
        bars += read;
    }
    sort_quarantine(&mut quarantine);
    let ledgers: Vec<Ledger> = ledgers.into_iter().flatten().collect();
    if ledgers.len() != combos {
        return Err(EngineError::Dataflow {
            message: format!("{} of {combos} combinations came back", ledgers.len()),
        });
    }
    if ledgers.iter().all(|l| l.bars == 0) {
        return Err(no_bars(&quarantine));
    }
    Ok(SweepOutput {
        tickers,
        ledgers,
        quarantine,
        graph_seconds,
        bars,
    })
}
