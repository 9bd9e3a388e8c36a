//! The backtest's feeder: each worker loads its share of the source and replays it through the
//! [`Harness`] in time order, in chunks of [`FEED_CHUNK`] timestamps, the graph at most one chunk
//! behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::LoadedPipeline;
use crate::sources::Source;

use super::harness::{Harness, References, model_store};
use super::{EngineError, GraphSpec, RunOptions, RunOutput, no_bars, sort_quarantine};

/// Timestamps a worker feeds before it lets the graph catch up with the chunk before. Bounds the
/// times in flight (each outstanding time makes every progress update dearer) without stepping
/// once per timestamp; 64 to 1,024 measure the same on the benchmark.
const FEED_CHUNK: usize = 128;

/// Runs the pipeline to the end of its source. Returns the output on the process holding worker 0
/// and `None` on the others.
///
/// # Errors
/// A source that cannot start, a model registry that cannot open, or a worker that fails.
pub fn run(p: &LoadedPipeline, opts: &RunOptions) -> Result<Option<RunOutput>, EngineError> {
    let source = Arc::new(Source::open(p)?);
    let mut spec = GraphSpec::new(p, &source, opts.kill.clone())?;
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
/// the chunk before, not of this one: the portfolio, which runs on worker 0 alone, works on one
/// chunk while the other workers already compute the next one's features and signals, instead
/// of every worker waiting for it at each chunk's end.
pub(super) fn replay<B: IntoIterator<Item = (u64, crate::bar::BarBatch)>>(
    worker: &mut timely::worker::Worker,
    h: &mut Harness,
    batches: B,
    progress: &Progress,
) -> Result<(), String> {
    let mut sent = 0usize;
    let mut behind: Option<u64> = None;
    for (t, batch) in batches {
        h.give_bars([(t, batch)]).map_err(|e| e.to_string())?;
        sent += 1;
        if sent.is_multiple_of(FEED_CHUNK) {
            h.advance_to(t + 1);
            if let Some(b) = behind {
                while h.working_on(b) {
                    worker.step();
                }
            }
            behind = Some(t);
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
