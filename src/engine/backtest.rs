//! The backtest's feeder: each worker loads its share of the source and replays it through the
//! [`Harness`] in time order, in chunks of [`FEED_CHUNK`] timestamps, the graph at most
//! [`FEED_LAG`] chunks behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::LoadedPipeline;
use crate::sources::Source;

use super::harness::{Harness, References, model_store};
use super::{EngineError, GraphSpec, RunOptions, RunOutput, no_bars, sort_quarantine};

/// Timestamps a worker feeds before it steps the graph. Bounds the times in flight (each
/// outstanding time makes every progress update dearer) without stepping once per timestamp.
const FEED_CHUNK: usize = 32;

/// How many chunks the graph may be behind the feed: after feeding a chunk, a worker steps until
/// the graph has passed the chunk this many before. The portfolio runs on worker 0 alone; with
/// room for several chunks, the other workers compute the next chunks' features and signals while
/// it decides, instead of waiting for it at each chunk. On 500 × 2,520 (2026-12-07, 10 alternating
/// runs), 4 chunks of 32 took a median 0.088 s on `-w 2` against 0.095 s for 1 chunk of 128,
/// and `-w 1` the same (0.128 against 0.135 s); 8 chunks of 16 measured as 4 of 32.
const FEED_LAG: usize = 4;

/// Runs the pipeline to the end of its source. Returns the output on the process holding worker 0
/// and `None` on the others.
///
/// # Errors
/// A source that cannot start, a model registry that cannot open, or a worker that fails.
pub fn run(p: &LoadedPipeline, opts: &RunOptions) -> Result<Option<RunOutput>, EngineError> {
    let source = Arc::new(Source::open(p)?);
    let mut spec = GraphSpec::new(p, &source, opts.kill.clone())?;
    spec.local_workers = opts.cluster.workers.max(1);
    spec.model
        .configure_ml(model_store(p, &opts.models)?, false);
    let stages = Arc::new(crate::sinks::prometheus::StageTimes::default());
    spec.meter = crate::meter::Meter::new(stages.clone());
    let refs = References {
        sectors: Arc::new(source.sectors()),
        facts: Arc::new(spec.facts(p)?),
    };
    let inputs = source.input_files();
    let progress_wanted = opts.progress;
    let guards = timely::execute(
        opts.cluster.config(),
        move |worker| -> Result<Option<RunOutput>, String> {
            let (index, peers) = (worker.index(), worker.peers());
            let _span = tracing::info_span!("worker", index, peers).entered();
            let loading = Instant::now();
            let input = source
                .load(index, peers, &spec.tickers)
                .map_err(|e| e.to_string())?;
            let load_seconds = loading.elapsed().as_secs_f64();
            tracing::info!(
                timestamps = input.batches.len(),
                rejects = input.rejects.len(),
                load_seconds,
                "source loaded"
            );
            let mut h = Harness::build(worker, &spec, &refs);
            h.give_rejects(input.rejects).map_err(|e| e.to_string())?;
            let running = Instant::now();
            let progress = Progress::new(progress_wanted && index == 0, input.batches.len());
            replay(worker, &mut h, input.batches, &progress)?;
            let graph_seconds = running.elapsed().as_secs_f64();
            tracing::info!(graph_seconds, "graph done");
            Ok(h.finish().map(|r| {
                let mut quarantine = r.quarantine;
                sort_quarantine(&mut quarantine);
                RunOutput {
                    tickers: (*spec.tickers).clone(),
                    ledger: r.ledger,
                    quarantine,
                    exposure: r.exposure,
                    load_seconds,
                    graph_seconds,
                    stages: Arc::clone(&stages),
                    inputs: inputs.clone(),
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

/// Feeds `batches` (in time order) through the harness, then closes the inputs and steps the
/// worker until the graph is done.
///
/// After each [`FEED_CHUNK`] timestamps the worker steps until the graph has passed the end of
/// the chunk [`FEED_LAG`] chunks before, not of this one.
pub(super) fn replay<B: IntoIterator<Item = (u64, crate::bar::BarBatch)>>(
    worker: &mut timely::worker::Worker,
    h: &mut Harness,
    batches: B,
    progress: &Progress,
) -> Result<(), String> {
    let mut sent = 0usize;
    // The last time of each chunk fed that the graph may not have passed yet.
    let mut behind: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    for (t, batch) in batches {
        h.give_bars([(t, batch)]).map_err(|e| e.to_string())?;
        sent += 1;
        if sent.is_multiple_of(FEED_CHUNK) {
            h.advance_to(t + 1);
            behind.push_back(t);
            if behind.len() > FEED_LAG
                && let Some(b) = behind.pop_front()
            {
                while h.working_on(b) {
                    worker.step();
                }
            }
        }
        progress.tick();
    }
    h.close();
    while worker.step() {}
    progress.finish();
    Ok(())
}

/// A progress bar shown on stderr once the replay has run for a second (hidden when stderr is not
/// a terminal). Wall-clock time is read here, at the edge, never inside an operator.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    pub(super) fn new(enabled: bool, total: usize) -> Self {
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
