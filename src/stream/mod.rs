//! The streaming production run (`fdp run`): every timely worker is a consumer of the Redis
//! consumer group, feeds what it reads into the very graph the backtest builds
//! ([`crate::engine::GraphSpec::build`]), and the portfolio's decisions are committed to PostgreSQL
//! before any message that caused them is acknowledged.
//!
//! Event time stays the timely timestamp. A worker holds a capability at the stream's *floor*
//! (the time every message still to come is at or after: a bar's time, a watermark, a completed
//! orchestrator cycle's cut-off + 1, shared through Redis) and sends what it reads at the bars'
//! own times; the portfolio decides a time once every worker's capability has passed it, exactly
//! as in a backtest. A bar older than the floor is quarantined as `late`. A worker that raises the
//! floor wakes the others' waiting reads ([`crate::sources::wake`]): until a worker advances, its
//! capability holds every worker's frontier.
//!
//! Crash safety: a worker records the bars it reads in PostgreSQL, in the background while it feeds
//! them, and its input does not pass a bar before that bar is recorded; worker 0 commits the
//! ledger rows, the quarantine and the committed time in one transaction; workers then
//! acknowledge their messages at or before that time. A restarted run replays the recorded bars up
//! to the committed time (re-deciding what is already written, which the natural keys make a
//! no-op), then reads its pending messages again. Messages that fail for good go to the
//! dead-letter stream with their error.

//!
//! The run is split by job: [`worker`] (each worker's state machine), [`intake`] (decode,
//! dead-letter, record, floor), [`recorder`] (bars recorded in the background, holding the
//! input), [`commit`] (commit, then acknowledge), [`producers`]
//! (`orchestrate` and `feed`), [`pg`] (PostgreSQL connections, lease, history) and [`shared`]
//! (what processes share in Redis besides the stream). The graph and its inputs are the engine's
//! [`crate::engine::Harness`], the same as the backtest's.

mod commit;
mod intake;
mod pg;
mod producers;
mod recorder;
mod shared;
mod venue;
mod worker;

use crate::alert::{self, Severity};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::config::LoadedPipeline;
use crate::engine::{Cluster, EngineError, GraphSpec, ModelPlace, References, harness};
use crate::operators::risk::KillSwitch;
use crate::sinks::postgres::{self, DbError};
use crate::sinks::prometheus::StreamMetrics;
use crate::sources::Source;
use crate::sources::redis_stream::{Conn, Keys, StreamError};
use crate::time::EventTime;

pub use producers::{Cycle, feed, orchestrate};

use pg::{History, Lease, Pg, PgPool};
use worker::WorkerCtx;

/// Options of a streaming run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Timely cluster; each worker is one consumer.
    pub cluster: Cluster,
    /// Redis URL.
    pub redis_url: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// Key prefix (`fdp`).
    pub prefix: String,
    /// Run id under which rows are written.
    pub run_id: String,
    /// Messages per read.
    pub batch: usize,
    /// How long a read waits for new messages.
    pub block: Duration,
    /// Pending entries idle this long in another consumer are reclaimed.
    pub claim_idle: Duration,
    /// Longest a work item may take to load.
    pub item_timeout: Duration,
    /// PostgreSQL connections the workers share (at most; fewer when fewer workers run). The run
    /// holds two more: its lease, and the model store's for ML pipelines.
    pub db_connections: usize,
    /// How far (seconds) a message's time may run ahead of its producer's clock (the stream
    /// id's time) before it is dead-lettered instead of moving the floor.
    pub max_ahead: i64,
    /// Failures after which a message is dead-lettered.
    pub max_failures: u64,
    /// End the run after this long without messages (`None`: run until stopped).
    pub idle_shutdown: Option<Duration>,
    /// Kill-switch file: when it exists, no new orders, then a clean exit.
    pub stop_file: Option<PathBuf>,
    /// Set (by a signal handler) to stop reading, commit what is in flight and exit.
    pub shutdown: Arc<AtomicBool>,
    /// Live metrics.
    pub metrics: Arc<StreamMetrics>,
}

impl StreamOptions {
    /// Defaults for the given servers: prefix `fdp`, 512 messages a read, 50 ms blocking reads,
    /// reclaim after 60 s, 120 s per item, 3 failures, no idle shutdown.
    pub fn new(redis_url: &str, database_url: &str, run_id: &str) -> Self {
        StreamOptions {
            cluster: Cluster::default(),
            redis_url: redis_url.into(),
            database_url: database_url.into(),
            prefix: "fdp".into(),
            run_id: run_id.into(),
            batch: 512,
            block: Duration::from_millis(50),
            claim_idle: Duration::from_secs(60),
            item_timeout: Duration::from_secs(120),
            max_ahead: 86_400,
            db_connections: 10,
            max_failures: 3,
            idle_shutdown: None,
            stop_file: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            metrics: StreamMetrics::shared(),
        }
    }
}

/// Errors of a streaming run.
#[derive(Debug, thiserror::Error)]
pub enum StreamRunError {
    /// The graph could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Redis failed beyond its retry budget.
    #[error(transparent)]
    Redis(#[from] StreamError),
    /// PostgreSQL failed beyond its retry budget.
    #[error(transparent)]
    Db(#[from] DbError),
    /// `fdp orchestrate` was given a cut-off that is not after the previous cycle's.
    #[error("cut-off {until} is not after the previous cycle's ({previous})")]
    Cutoff {
        /// The cut-off asked for.
        until: EventTime,
        /// The previous cycle's.
        previous: EventTime,
    },
    /// A worker failed.
    #[error("worker: {message}")]
    Worker {
        /// What failed.
        message: String,
    },
}

impl crate::fault::Blame for StreamRunError {
    fn fault(&self) -> crate::fault::Fault {
        match self {
            StreamRunError::Engine(e) => e.fault(),
            StreamRunError::Redis(e) => e.fault(),
            StreamRunError::Db(e) => e.fault(),
            StreamRunError::Cutoff { .. } => crate::fault::Fault::Input,
            StreamRunError::Worker { .. } => crate::fault::Fault::Bug,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// No messages for the idle time: every time was decided and committed.
    Idle,
    /// A signal or the kill-switch file: committed what was complete, left the rest pending.
    Stopped,
}

/// The consumer name of worker `worker` of process `process`: stable across restarts of the same
/// shape, so a restarted consumer finds its own pending entries.
fn consumer_name(run_id: &str, process: usize, worker: usize) -> String {
    format!("{run_id}-p{process}-w{worker}")
}

/// Runs the streaming pipeline until idle shutdown, a signal or the kill switch.
///
/// # Errors
/// Servers unreachable beyond the retry budget, or a failing worker.
pub fn run(p: &LoadedPipeline, opts: &StreamOptions) -> Result<Ending, StreamRunError> {
    let source = Arc::new(Source::open(p).map_err(EngineError::from)?);
    let kill = KillSwitch::default();
    let mut spec = GraphSpec::new(p, &source, kill.clone())?;
    spec.local_workers = opts.cluster.workers.max(1);
    // Orders bound for a venue are recorded with the decisions; `fdp broker` sends them.
    spec.outbox = p.pipeline.broker.kind != crate::config::BrokerKind::Paper;
    spec.meter = crate::meter::Meter::new(opts.metrics.clone());
    let refs = References {
        sectors: Arc::new(source.sectors()),
        facts: Arc::new(spec.facts(p)?),
    };
    // Once per process, before any worker writes: migrate, and read what a previous run of this
    // id committed (the workers replay it).
    let (history, lease) = {
        let mut pg = Pg::open_admin(&opts.database_url)?;
        pg.retry("migrate", |rt, c| rt.block_on(postgres::migrate(c)))?;
        pg.retry("writer role", |rt, c| rt.block_on(postgres::as_writer(c)))?;
        pg.writer = true;
        let (name, fingerprint) = (p.pipeline.name.clone(), p.fingerprint());
        pg.retry("claim run", |rt, c| {
            rt.block_on(postgres::claim_run(c, &opts.run_id, &name, &fingerprint))
        })?;
        // Process 0 commits: it holds the run id's lease for as long as the run lives.
        let lease = if opts.cluster.process == 0 {
            Some(Lease::take(&opts.database_url, &opts.run_id)?)
        } else {
            None
        };
        Conn::open(&opts.redis_url)?.ensure_group(&Keys::new(&opts.prefix))?;
        let history = Arc::new(History::load(&mut pg, &opts.run_id, &spec.tickers)?);
        (history, lease)
    };
    let epoch = lease.as_ref().map_or(0, |l| l.epoch);
    let run_key = format!("run:{}", opts.run_id);
    alert::raise(
        format!("{run_key}:start"),
        Severity::Info,
        format!("run {} started", opts.run_id),
        format!(
            "pipeline {}, process {} of {}, lease epoch {epoch}{}",
            p.pipeline.name,
            opts.cluster.process,
            opts.cluster.processes,
            if epoch > 1 {
                " (a restart: an earlier process of this run held it)"
            } else {
                ""
            }
        ),
    );
    // The kill-switch file is checked before anything is read: present at the start, it refuses
    // every entry from the first bar and the run stops without reading a message.
    if opts.stop_file.as_ref().is_some_and(|f| f.exists()) {
        tracing::warn!("the kill-switch file is present: no message is read, no order sent");
        alert::raise(
            format!("{run_key}:kill"),
            Severity::Critical,
            format!("run {}: kill switch", opts.run_id),
            "the kill-switch file is present: no message is read, no order sent",
        );
        kill.trip();
        opts.shutdown.store(true, Ordering::SeqCst);
    }
    // Models go to PostgreSQL and train on the training pool: the worker keeps predicting with
    // the last model meanwhile.
    let models = ModelPlace::Postgres {
        url: opts.database_url.clone(),
        run_id: opts.run_id.clone(),
    };
    spec.model
        .configure_ml(harness::model_store(p, &models)?, true);
    let workers = opts.cluster.workers.max(1);
    let barrier = Arc::new(Barrier::new(workers));
    let stopping = Arc::new(AtomicUsize::new(0));
    let freeze = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    // A connection per worker and per worker's recorder, within the limit.
    let pool = PgPool::open(&opts.database_url, opts.db_connections.min(2 * workers))?;
    let opts2 = opts.clone();
    let guards = timely::execute(opts.cluster.config(), move |worker| {
        let ctx = WorkerCtx {
            spec: spec.clone(),
            source: Arc::clone(&source),
            opts: opts2.clone(),
            kill: kill.clone(),
            refs: refs.clone(),
            barrier: Arc::clone(&barrier),
            stopping: Arc::clone(&stopping),
            freeze: Arc::clone(&freeze),
            history: Arc::clone(&history),
            epoch,
            failed: Arc::clone(&failed),
            pool: Arc::clone(&pool),
        };
        let r = ctx.work(worker).map_err(|e| e.to_string());
        if r.is_err() {
            // The process's other workers stop too (they would wait for this one forever).
            failed.store(true, Ordering::SeqCst);
        }
        r
    })
    .map_err(|message| StreamRunError::Worker { message })?;
    let mut ending = Ending::Idle;
    for r in guards.join() {
        match r {
            Ok(Ok(e)) => {
                if e == Ending::Stopped {
                    ending = e;
                }
            }
            Ok(Err(message)) | Err(message) => {
                alert::raise(
                    format!("{run_key}:failed"),
                    Severity::Critical,
                    format!("run {} failed", opts.run_id),
                    message.clone(),
                );
                return Err(StreamRunError::Worker { message });
            }
        }
    }
    alert::raise(
        format!("{run_key}:stop"),
        Severity::Info,
        format!("run {} ended ({ending:?})", opts.run_id),
        "every committed message acknowledged",
    );
    Ok(ending)
}
