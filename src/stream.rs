//! The streaming production run (`fdp run`): every timely worker is a consumer of the Redis
//! consumer group, feeds what it reads into the very graph the backtest builds
//! ([`crate::engine::GraphSpec::build`]), and the portfolio's decisions are committed to PostgreSQL
//! before any message that caused them is acknowledged.
//!
//! Event time stays the timely timestamp. A worker holds a capability at the stream's *floor*
//! (the time every message still to come is at or after: a bar's time, a watermark, a completed
//! orchestrator cycle's cut-off + 1, shared through Redis) and sends what it reads at the bars'
//! own times; the portfolio decides a time once every worker's capability has passed it, exactly
//! as in a backtest. A bar older than the floor is quarantined as `late`.
//!
//! Crash safety: a worker records the bars it reads in PostgreSQL before feeding them; worker 0
//! commits the ledger rows, the quarantine and the committed time in one transaction; workers then
//! acknowledge their messages at or before that time. A restarted run replays the recorded bars up
//! to the committed time (re-deciding what is already written, which the natural keys make a
//! no-op), then reads its pending messages again. Messages that fail for good go to the
//! dead-letter stream with their error.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::Input;
use timely::dataflow::operators::core::UnorderedInput;

use crate::bar::{Bar, BarBatch, TickerId, Tickers, origin_of, owner};
use crate::config::LoadedPipeline;
use crate::engine::{Cluster, EngineError, Graph, GraphSpec};
use crate::operators::quality::{Action, Reason, Reject};
use crate::operators::risk::KillSwitch;
use crate::sinks::postgres::{self, DbError, StoredBar};
use crate::sinks::prometheus::StreamMetrics;
use crate::sources::Source;
use crate::sources::fundamentals::Fact;
use crate::sources::redis_stream::{Conn, Entry, Keys, StreamError, Work, decode};
use crate::time::{EventTime, event_time, timely_time};

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

/// A PostgreSQL client on the worker's own runtime that reconnects when the server restarts.
struct Pg {
    rt: tokio::runtime::Runtime,
    url: String,
    client: Option<tokio_postgres::Client>,
    patience: Duration,
    /// Works as `fdp_writer` (every connection but the one that migrates).
    writer: bool,
}

impl Pg {
    fn open(url: &str) -> Result<Pg, StreamRunError> {
        Pg::open_with(url, true)
    }

    /// A connection as the URL's own user: only to migrate.
    fn open_admin(url: &str) -> Result<Pg, StreamRunError> {
        Pg::open_with(url, false)
    }

    fn open_with(url: &str, writer: bool) -> Result<Pg, StreamRunError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StreamRunError::Worker {
                message: e.to_string(),
            })?;
        let mut pg = Pg {
            rt,
            url: url.into(),
            client: None,
            patience: Duration::from_secs(60),
            writer,
        };
        pg.client()?;
        Ok(pg)
    }

    fn client(&mut self) -> Result<&mut tokio_postgres::Client, DbError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let c = self.rt.block_on(postgres::connect(&self.url))?;
            if self.writer {
                self.rt.block_on(postgres::as_writer(&c))?;
            }
            self.client = Some(c);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => unreachable!("client was just set"),
        }
    }

    /// Runs `f`, reconnecting and retrying while the server is away (every operation here is
    /// idempotent, so a retry after a lost reply is harmless).
    fn retry<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&tokio::runtime::Runtime, &mut tokio_postgres::Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let r = match self.client() {
                Ok(_) => {
                    let Pg { rt, client, .. } = self;
                    match client.as_mut() {
                        Some(c) => f(rt, c),
                        None => continue,
                    }
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(DbError::Postgres(e))
                    if (e.is_closed() || e.as_db_error().is_none())
                        && started.elapsed() < self.patience =>
                {
                    tracing::warn!(error = %e, what, "postgres unavailable, retrying");
                    self.client = None;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(DbError::Timeout { what: w, .. }) if started.elapsed() < self.patience => {
                    tracing::warn!(waited_for = w, what, "postgres did not answer, retrying");
                    self.client = None;
                    std::thread::sleep(wait);
                }
                Err(DbError::Postgres(e))
                    if e.as_db_error().is_some_and(|d| {
                        // The server is shutting down or starting up.
                        matches!(d.code().code(), "57P01" | "57P02" | "57P03")
                    }) && started.elapsed() < self.patience =>
                {
                    self.client = None;
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A message read and fed, waiting for the commit of time `ts` before it is acknowledged.
struct InFlight {
    id: String,
    ts: EventTime,
    added_ms: Option<u64>,
    bars: u64,
}

/// Feeds bars at their own times (each ≥ the capability's), each part carrying the worker that
/// owns its tickers.
fn give_bars(
    input: &mut timely::dataflow::operators::core::unordered_input::UnorderedHandle<
        u64,
        CapacityContainerBuilder<Vec<BarBatch>>,
    >,
    cap: &timely::dataflow::operators::ActivateCapability<u64>,
    batches: BTreeMap<u64, BarBatch>,
    peers: usize,
) {
    for (t, batch) in batches {
        let at = cap.delayed(&t);
        let mut h = input.activate();
        let mut s = h.session(&at);
        for part in batch.shard(peers) {
            s.give(part);
        }
    }
}

/// The consumer name of worker `worker` of process `process`: stable across restarts of the same
/// shape, so a restarted consumer finds its own pending entries.
fn consumer_name(run_id: &str, process: usize, worker: usize) -> String {
    format!("{run_id}-p{process}-w{worker}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the streaming pipeline until idle shutdown, a signal or the kill switch.
///
/// # Errors
/// Servers unreachable beyond the retry budget, or a failing worker.
pub fn run(p: &LoadedPipeline, opts: &StreamOptions) -> Result<Ending, StreamRunError> {
    let source = Arc::new(Source::open(p).map_err(EngineError::from)?);
    let kill = KillSwitch::default();
    let mut spec = GraphSpec::new(p, &source, kill.clone())?;
    let facts = Arc::new(spec.facts(p)?);
    let sectors = Arc::new(source.sectors());
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
    // The kill-switch file is checked before anything is read: present at the start, it refuses
    // every entry from the first bar and the run stops without reading a message.
    if opts.stop_file.as_ref().is_some_and(|f| f.exists()) {
        tracing::warn!("the kill-switch file is present: no message is read, no order sent");
        kill.trip();
        opts.shutdown.store(true, Ordering::SeqCst);
    }
    // Models go to PostgreSQL and train on the training pool: the worker keeps predicting with
    // the last model meanwhile.
    if let Some(ttl) = spec.model.ml_spec().map(|m| m.ttl_days) {
        let store = postgres::PgModelStore::new(&opts.database_url, &opts.run_id, ttl);
        match store.cleanup() {
            Ok(n) => tracing::info!(removed = n, "expired models removed"),
            Err(e) => tracing::warn!(error = %e, "model cleanup failed"),
        }
        spec.model.configure_ml(
            Some(crate::operators::ml::registry::StoreHandle {
                store: Arc::new(store),
                clock: crate::time::wall_unix,
            }),
            true,
        );
    }
    let workers = opts.cluster.workers.max(1);
    let barrier = Arc::new(Barrier::new(workers));
    let stopping = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let freeze = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let pool = PgPool::open(&opts.database_url, opts.db_connections.min(workers))?;
    let opts2 = opts.clone();
    let guards = timely::execute(opts.cluster.config(), move |worker| {
        let ctx = WorkerCtx {
            spec: spec.clone(),
            source: Arc::clone(&source),
            opts: opts2.clone(),
            kill: kill.clone(),
            facts: Arc::clone(&facts),
            sectors: Arc::clone(&sectors),
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
            Ok(Err(message)) | Err(message) => return Err(StreamRunError::Worker { message }),
        }
    }
    Ok(ending)
}

struct WorkerCtx {
    spec: GraphSpec,
    source: Arc<Source>,
    opts: StreamOptions,
    kill: KillSwitch,
    facts: Arc<Vec<Fact>>,
    sectors: Arc<BTreeMap<String, String>>,
    barrier: Arc<Barrier>,
    /// Workers of this process that have stopped reading.
    stopping: Arc<std::sync::atomic::AtomicUsize>,
    /// Set by worker 0 once everything below the fixed frontier is committed.
    freeze: Arc<AtomicBool>,
    /// What a previous run of this id committed.
    history: Arc<History>,
    /// The run's lease epoch (process 0; every commit checks it).
    epoch: i64,
    /// Set when a worker of this process failed: the others give up at once.
    failed: Arc<AtomicBool>,
    /// The process's PostgreSQL connections.
    pool: Arc<PgPool>,
}

/// The run id's lease: a connection of its own holding the advisory lock while the run lives
/// (dropped with the run, which releases it) and the epoch it took.
struct Lease {
    _pg: Pg,
    epoch: i64,
}

impl Lease {
    /// Takes the lease, waiting up to 5 s for a process that just died to let go of it (the
    /// server notices a killed client's socket within moments).
    fn take(url: &str, run_id: &str) -> Result<Lease, StreamRunError> {
        let mut pg = Pg::open(url)?;
        let holder = format!("pid {}", std::process::id());
        let started = Instant::now();
        loop {
            match pg.retry("lease", |rt, c| {
                rt.block_on(postgres::take_lease(c, run_id, &holder))
            }) {
                Ok(epoch) => {
                    tracing::info!(run_id, epoch, "lease taken");
                    return Ok(Lease { _pg: pg, epoch });
                }
                Err(DbError::LeaseHeld { .. }) if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What a previous run of this id committed: the time through which its decisions are written,
/// the bars it recorded up to then, and the stream ids that carried them.
struct History {
    committed: EventTime,
    bars: Vec<StoredBar>,
    ids: HashSet<String>,
}

impl History {
    fn load(pg: &mut Pg, run_id: &str, tickers: &Tickers) -> Result<History, StreamRunError> {
        let committed = pg
            .retry("committed", |rt, c| {
                rt.block_on(postgres::committed(c, run_id))
            })?
            .unwrap_or(EventTime::MIN);
        let bars = if committed > EventTime::MIN {
            pg.retry("history", |rt, c| {
                rt.block_on(postgres::load_bars(c, run_id, committed, tickers))
            })?
        } else {
            Vec::new()
        };
        let ids = bars.iter().map(|b| b.stream_id.clone()).collect();
        tracing::info!(bars = bars.len(), committed, "history of the run");
        Ok(History {
            committed,
            bars,
            ids,
        })
    }
}

/// The process's PostgreSQL connections for its workers: at most `--db-connections` however many
/// workers run (`-w 20` used to open 40); worker `i` uses connection `i % n`, one worker at a time.
/// Each connection drives its own runtime only while a worker holds it, as a worker's own did.
struct PgPool {
    slots: Vec<std::sync::Mutex<Pg>>,
}

impl PgPool {
    fn open(url: &str, size: usize) -> Result<Arc<PgPool>, StreamRunError> {
        let slots = (0..size.max(1))
            .map(|_| Pg::open(url).map(std::sync::Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(PgPool { slots }))
    }
}

/// A worker's handle on its connection of the pool.
struct PgSlot {
    pool: Arc<PgPool>,
    slot: usize,
}

impl PgSlot {
    /// [`Pg::retry`] on this worker's connection, holding it for the call.
    fn retry<T>(
        &mut self,
        what: &str,
        f: impl FnMut(&tokio::runtime::Runtime, &mut tokio_postgres::Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let slots = &self.pool.slots;
        let mut pg = slots[self.slot % slots.len()]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pg.retry(what, f)
    }
}

/// What a worker holds while it runs.
struct Feed {
    keys: Keys,
    consumer: String,
    redis: Conn,
    /// This worker's connection of the process's pool.
    db: PgSlot,
    in_flight: Vec<InFlight>,
    committed: EventTime,
    /// Work items that failed and wait for a retry (idle shutdown waits for them).
    retrying: HashSet<String>,
}

impl Feed {
    /// Reads the committed time worker 0 published (workers other than 0 learn it this way).
    fn refresh_committed(&mut self, run_id: &str) -> Result<(), StreamError> {
        let key = self.keys.committed(run_id);
        let c: Option<i64> = self.redis.query(redis::cmd("GET").arg(&key))?;
        if let Some(c) = c {
            self.committed = self.committed.max(c);
        }
        Ok(())
    }
}

impl WorkerCtx {
    #[allow(clippy::too_many_lines)]
    fn work(&self, worker: &mut timely::worker::Worker) -> Result<Ending, StreamRunError> {
        let index = worker.index();
        let peers = worker.peers();
        let _span = tracing::info_span!("consumer", index, peers).entered();
        let o = &self.opts;
        let tickers: &Tickers = &self.spec.tickers;
        let keys = Keys::new(&o.prefix);
        let start_committed = self.history.committed;
        let mut feed = Feed {
            consumer: consumer_name(
                &o.run_id,
                o.cluster.process,
                index % o.cluster.workers.max(1),
            ),
            redis: Conn::open(&o.redis_url)?,
            keys,
            db: PgSlot {
                pool: Arc::clone(&self.pool),
                slot: index,
            },
            in_flight: Vec::new(),
            committed: start_committed,
            retrying: HashSet::new(),
        };

        let mut sectors_in: InputHandle<u64, CapacityContainerBuilder<Vec<(TickerId, String)>>> =
            InputHandle::new();
        let mut facts_in: InputHandle<u64, CapacityContainerBuilder<Vec<Fact>>> =
            InputHandle::new();
        let ((mut bars_in, bars_cap), (mut rejects_in, rejects_cap), graph) = worker
            .dataflow::<u64, _, _>(|scope| {
                let (bars_h, bars) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<BarBatch>>>();
                let (rejects_h, rejects) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<Reject>>>();
                let g = self.spec.build(
                    index,
                    peers,
                    bars,
                    rejects,
                    scope.input_from(&mut sectors_in),
                    scope.input_from(&mut facts_in),
                );
                (bars_h, rejects_h, g)
            });
        let Graph {
            portfolio,
            quarantine,
            exposure,
            probe,
        } = graph;
        crate::engine::feed_reference_inputs(
            index,
            peers,
            tickers,
            &self.sectors,
            &self.facts,
            sectors_in,
            facts_in,
        );

        // Rebuild state: the recorded bars up to the committed time, fed at their own times.
        let mut bars_cap = Some(bars_cap);
        let mut rejects_cap = Some(rejects_cap);
        let mut by_time: BTreeMap<u64, BarBatch> = BTreeMap::new();
        for h in self
            .history
            .bars
            .iter()
            .filter(|h| owner(h.bar.ticker, peers) == index)
        {
            by_time
                .entry(timely_time(h.bar.ts))
                .or_default()
                .push_from_entry(h.bar, origin_of(&h.stream_id));
        }
        if let Some(cap) = &bars_cap {
            give_bars(&mut bars_in, cap, by_time, peers);
        }
        let floor0 = timely_time(start_committed.saturating_add(1));
        bars_cap = bars_cap.map(|c| c.delayed(&floor0));
        rejects_cap = rejects_cap.map(|c| c.delayed(&floor0));
        if index == 0 {
            // Pending entries of this run's consumers that no longer exist (a run restarted with
            // fewer workers or processes) become worker 0's own, re-read before the floor applies.
            let expected: HashSet<String> = (0..o.cluster.processes.max(1))
                .flat_map(|p| (0..o.cluster.workers.max(1)).map(move |w| (p, w)))
                .map(|(p, w)| consumer_name(&o.run_id, p, w))
                .collect();
            let n = feed.redis.adopt(
                &feed.keys,
                &feed.consumer,
                &format!("{}-p", o.run_id),
                &expected,
            )?;
            if n > 0 {
                tracing::info!(entries = n, "adopted pending entries of departed consumers");
            }
        }
        self.barrier.wait();

        // Own pending entries first (a restarted consumer's unacknowledged messages), page by page.
        let mut pending_cursor: Option<String> = Some("0".into());
        let mut last_work = Instant::now();
        let mut last_claim = Instant::now();
        let mut last_touch = Instant::now();
        let mut last_stop_check = Instant::now();
        let mut ending = None;
        let mut final_written = false;
        let mut frozen = false;
        let mut stop_started: Option<Instant> = None;
        if index == 0 && start_committed > EventTime::MIN {
            let key = feed.keys.committed(&o.run_id);
            feed.redis
                .query::<()>(redis::cmd("SET").arg(&key).arg(start_committed))?;
        }
        loop {
            if self.failed.load(Ordering::SeqCst) {
                return Err(StreamRunError::Worker {
                    message: "another worker of this process failed".into(),
                });
            }
            // Stop requests: a signal, or the kill-switch file (which also halts new orders).
            if ending.is_none() {
                if last_stop_check.elapsed() > Duration::from_millis(200) {
                    last_stop_check = Instant::now();
                    if o.stop_file.as_ref().is_some_and(|f| f.exists()) {
                        self.kill.trip();
                        o.shutdown.store(true, Ordering::SeqCst);
                    }
                }
                if o.shutdown.load(Ordering::SeqCst) {
                    tracing::info!("stopping: no more reads; committing what is complete");
                    ending = Some(Ending::Stopped);
                    self.stopping.fetch_add(1, Ordering::SeqCst);
                }
            }
            if ending.is_none() {
                // While the graph has times in flight or messages await their commit, poll
                // without blocking so those times finish at once; when all is done, block.
                let cap_time = bars_cap.as_ref().map_or(u64::MAX, |c| *c.time());
                let busy = probe.less_than(&cap_time) || !feed.in_flight.is_empty();
                let wait = if busy { Duration::ZERO } else { o.block };
                let mut entries = if let Some(after) = pending_cursor.take() {
                    let e = feed.redis.read(
                        &feed.keys,
                        &feed.consumer,
                        o.batch,
                        o.block,
                        Some(&after),
                    )?;
                    pending_cursor = e.last().map(|l| l.id.clone());
                    e
                } else if last_claim.elapsed() > o.claim_idle / 4 {
                    last_claim = Instant::now();
                    feed.redis
                        .autoclaim(&feed.keys, &feed.consumer, o.claim_idle, o.batch)?
                } else {
                    feed.redis
                        .read(&feed.keys, &feed.consumer, o.batch, wait, None)?
                };
                if !feed.in_flight.is_empty() && !entries.is_empty() {
                    // Pending and reclaimed reads may return messages this worker already fed.
                    let mine: HashSet<&str> =
                        feed.in_flight.iter().map(|m| m.id.as_str()).collect();
                    entries.retain(|e| !mine.contains(e.id.as_str()));
                }
                if feed.redis.reconnected {
                    // A reply lost with the connection may have delivered messages to us.
                    feed.redis.reconnected = false;
                    pending_cursor = Some("0".into());
                }
                if entries.is_empty() {
                    if o.idle_shutdown.is_some_and(|d| last_work.elapsed() > d)
                        && feed.retrying.is_empty()
                    {
                        tracing::info!("idle: ending the input");
                        ending = Some(Ending::Idle);
                    }
                } else {
                    last_work = Instant::now();
                    let n = entries.len();
                    let took = Instant::now();
                    let (batches, rejects) = self.take(&mut feed, entries, cap_time)?;
                    tracing::debug!(n, cap_time, us = took.elapsed().as_micros() as u64, "read");
                    if let (Some(bc), Some(rc)) = (&bars_cap, &rejects_cap) {
                        give_bars(&mut bars_in, bc, batches, peers);
                        if !rejects.is_empty() {
                            let mut h = rejects_in.activate();
                            let mut s = h.session(rc);
                            for r in rejects {
                                s.give(r);
                            }
                        }
                    }
                }
                // Advance to the floor the stream guarantees (not while own pending entries are
                // still being re-read: they may be older than the floor).
                if pending_cursor.is_none()
                    && let (Some(bc), Some(rc)) = (&mut bars_cap, &mut rejects_cap)
                {
                    let floor = feed.redis.floor(&feed.keys)?;
                    if timely_time(floor) > *bc.time() {
                        *bc = bc.delayed(&timely_time(floor));
                        *rc = rc.delayed(&timely_time(floor));
                    }
                }
            }
            if ending == Some(Ending::Idle) {
                bars_cap = None;
                rejects_cap = None;
            }
            for _ in 0..4 {
                worker.step_or_park(Some(Duration::ZERO));
            }
            exposure.borrow_mut().clear();
            tracing::trace!(
                frontier = ?probe.with_frontier(|f| f.first().copied()),
                cap = ?bars_cap.as_ref().map(|c| *c.time()),
                "stepped"
            );
            let dataflow_done = probe.with_frontier(|f| f.is_empty());
            if index == 0 && !frozen {
                // Worker 0 commits what the frontier has passed.
                if dataflow_done {
                    if !final_written {
                        final_written = true;
                        let taken = portfolio.borrow_mut().take();
                        if let Some(mut p) = taken {
                            let mut l = p.drain();
                            l.orders.extend(p.finish().orders);
                            let floor = feed.redis.floor(&feed.keys)?;
                            let through = l
                                .equity
                                .last()
                                .map_or(feed.committed, |e| e.ts)
                                .max(floor)
                                .max(feed.committed);
                            let q = std::mem::take(&mut *quarantine.borrow_mut());
                            self.commit(&mut feed, &l, &q, through)?;
                        }
                    }
                } else if let Some(t) =
                    probe.with_frontier(|f| f.first().map(|t| event_time(*t).saturating_sub(1)))
                    && t > feed.committed
                {
                    let l = portfolio
                        .borrow_mut()
                        .as_mut()
                        .map(|p| p.drain())
                        .unwrap_or_default();
                    let q = std::mem::take(&mut *quarantine.borrow_mut());
                    self.commit(&mut feed, &l, &q, t)?;
                }
            } else if index != 0 && (!feed.in_flight.is_empty() || ending.is_some()) {
                feed.refresh_committed(&o.run_id)?;
            }
            if !frozen {
                self.ack(&mut feed)?;
            }
            if ending == Some(Ending::Stopped) && bars_cap.is_some() {
                // Everything below the (now fixed) frontier committed and acknowledged: let the
                // rest drain without committing it; those messages stay pending for the next run.
                // Once every worker stopped reading, capabilities no longer move: worker 0 waits
                // for its commit to reach the frontier, then tells the others to let go.
                let all_stopped = self.stopping.load(Ordering::SeqCst) >= o.cluster.workers.max(1);
                // Processes do not share the flag: past the bound, each lets go on its own
                // (what is not committed stays pending, so nothing is lost either way).
                if stop_started.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(20)
                {
                    self.freeze.store(true, Ordering::SeqCst);
                }
                let f = probe.with_frontier(|f| f.first().copied());
                if index == 0
                    && all_stopped
                    && f.is_none_or(|f| event_time(f) <= feed.committed.saturating_add(1))
                {
                    self.freeze.store(true, Ordering::SeqCst);
                }
                if self.freeze.load(Ordering::SeqCst) {
                    if index != 0 {
                        feed.refresh_committed(&o.run_id)?;
                        self.ack(&mut feed)?;
                    }
                    frozen = true;
                    bars_cap = None;
                    rejects_cap = None;
                    tracing::info!(
                        committed = feed.committed,
                        pending = feed.in_flight.len(),
                        "stopped"
                    );
                }
            }
            if last_touch.elapsed() > o.claim_idle / 4 && !feed.in_flight.is_empty() {
                last_touch = Instant::now();
                let ids: Vec<&str> = feed.in_flight.iter().map(|m| m.id.as_str()).collect();
                feed.redis.touch(&feed.keys, &feed.consumer, &ids)?;
            }
            if bars_cap.is_none() && dataflow_done {
                if frozen || feed.in_flight.is_empty() {
                    break;
                }
                // Wait for worker 0's final commit.
                std::thread::sleep(Duration::from_millis(5));
                if last_work.elapsed() > Duration::from_secs(120) {
                    return Err(StreamRunError::Worker {
                        message: "worker 0 never committed the final step".into(),
                    });
                }
            }
        }
        Ok(ending.unwrap_or(Ending::Idle))
    }

    /// Decodes a read: dead-letters what cannot be processed, loads work items, records the bars
    /// in PostgreSQL, and returns them by time with the rejects to feed.
    fn take(
        &self,
        feed: &mut Feed,
        entries: Vec<Entry>,
        cap: u64,
    ) -> Result<(BTreeMap<u64, BarBatch>, Vec<Reject>), StreamRunError> {
        let o = &self.opts;
        let m = &o.metrics;
        let tickers: &Tickers = &self.spec.tickers;
        let mut out: BTreeMap<u64, BarBatch> = BTreeMap::new();
        let mut rejects = Vec::new();
        let mut stored: Vec<StoredBar> = Vec::new();
        let mut floor = EventTime::MIN;
        let mut done_cycles: Vec<(u64, u64, String, EventTime)> = Vec::new();
        // Watermarks and redeliveries of committed bars have no effect left to commit: they are
        // acknowledged together at the end of the read.
        let mut no_effect: Vec<String> = Vec::new();
        let unknown = |t: &str| format!("unknown ticker {t:?}: not in the pipeline's universe");
        for e in entries {
            m.messages.fetch_add(1, Ordering::Relaxed);
            let work = match decode(&e).and_then(|w| {
                w.check_times(e.added_ms(), o.max_ahead)?;
                Ok(w)
            }) {
                Ok(w) => w,
                Err(err) => {
                    self.dead(feed, &e, &err)?;
                    continue;
                }
            };
            // Only a message that passed every check moves the floor (an unknown ticker's bar
            // does not: see below).
            match work {
                Work::Watermark { ts } => {
                    floor = floor.max(ts);
                    m.acked.fetch_add(1, Ordering::Relaxed);
                    no_effect.push(e.id);
                }
                Work::Bar {
                    ticker,
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                } => {
                    let Some(id) = tickers.id(&ticker) else {
                        self.dead(feed, &e, &unknown(&ticker))?;
                        continue;
                    };
                    floor = floor.max(ts);
                    if ts <= self.history.committed && self.history.ids.contains(&e.id) {
                        m.redelivered.fetch_add(1, Ordering::Relaxed);
                        no_effect.push(e.id);
                        continue;
                    }
                    let bar = Bar {
                        ticker: id,
                        ts,
                        open,
                        high,
                        low,
                        close,
                        volume,
                    };
                    if timely_time(ts) < cap {
                        rejects.push(Reject {
                            ticker,
                            ts: Some(ts),
                            reason: Reason::Late,
                            action: Action::Rejected,
                            detail: format!(
                                "stream entry {}: bar at {ts} arrived after the run passed {}",
                                e.id,
                                event_time(cap)
                            ),
                            origin: e.id.clone(),
                        });
                        feed.in_flight.push(InFlight {
                            id: e.id.clone(),
                            ts: event_time(cap),
                            added_ms: e.added_ms(),
                            bars: 0,
                        });
                        continue;
                    }
                    stored.push(StoredBar {
                        ticker,
                        bar,
                        stream_id: e.id.clone(),
                    });
                    out.entry(timely_time(ts))
                        .or_default()
                        .push_from_entry(bar, origin_of(&e.id));
                    feed.in_flight.push(InFlight {
                        id: e.id.clone(),
                        ts,
                        added_ms: e.added_ms(),
                        bars: 1,
                    });
                }
                Work::Ticker {
                    ticker,
                    cycle,
                    of,
                    floor: from,
                    until,
                } => {
                    if tickers.id(&ticker).is_none() {
                        self.dead(feed, &e, &unknown(&ticker))?;
                        done_cycles.push((cycle, of, ticker, until));
                        continue;
                    }
                    floor = floor.max(from);
                    let lo = from.max(self.history.committed.saturating_add(1));
                    match self.load_item(&ticker) {
                        Ok((bars, source_rejects)) => {
                            let mut last = EventTime::MIN;
                            let mut n = 0;
                            for b in bars.iter().filter(|b| b.ts >= lo && b.ts <= until) {
                                if timely_time(b.ts) < cap {
                                    continue;
                                }
                                stored.push(StoredBar {
                                    ticker: ticker.clone(),
                                    bar: b,
                                    stream_id: e.id.clone(),
                                });
                                out.entry(timely_time(b.ts))
                                    .or_default()
                                    .push_from_entry(b, origin_of(&e.id));
                                last = last.max(b.ts);
                                n += 1;
                            }
                            rejects.extend(
                                source_rejects
                                    .into_iter()
                                    .filter(|r| r.ts.is_none_or(|t| t >= lo && t <= until)),
                            );
                            m.tickers.fetch_add(1, Ordering::Relaxed);
                            feed.retrying.remove(&e.id);
                            feed.in_flight.push(InFlight {
                                id: e.id.clone(),
                                ts: if n == 0 { event_time(cap) } else { last },
                                added_ms: e.added_ms(),
                                bars: n,
                            });
                            done_cycles.push((cycle, of, ticker, until));
                        }
                        Err(err) => {
                            let n = feed.redis.fail(&feed.keys, &e.id)?;
                            tracing::warn!(id = %e.id, failures = n, error = %err, "work item failed");
                            if n < o.max_failures {
                                feed.retrying.insert(e.id.clone());
                            } else {
                                feed.retrying.remove(&e.id);
                                self.dead(feed, &e, &format!("failed {n} times; last: {err}"))?;
                                done_cycles.push((cycle, of, ticker, until));
                            }
                        }
                    }
                }
            }
        }
        if !stored.is_empty() {
            let run_id = o.run_id.clone();
            feed.db.retry("record bars", |rt, c| {
                rt.block_on(postgres::write_bars(c, &run_id, &stored))
            })?;
            m.bars.fetch_add(stored.len() as u64, Ordering::Relaxed);
        }
        // The bars are recorded and about to be fed: now a completed cycle may raise the floor.
        for (cycle, of, ticker, until) in done_cycles {
            let key = feed.keys.cycle_done(cycle);
            feed.redis
                .query::<i64>(redis::cmd("SADD").arg(&key).arg(&ticker))?;
            let card: u64 = feed.redis.query(redis::cmd("SCARD").arg(&key))?;
            if card >= of {
                floor = floor.max(until.saturating_add(1));
            }
        }
        if floor > EventTime::MIN {
            feed.redis.raise_floor(&feed.keys, floor)?;
        }
        let ids: Vec<&str> = no_effect.iter().map(String::as_str).collect();
        feed.redis.ack(&feed.keys, &ids)?;
        Ok((out, rejects))
    }

    /// Loads a ticker's bars on a helper thread, giving up after the item timeout.
    fn load_item(&self, ticker: &str) -> Result<(BarBatch, Vec<Reject>), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let source = Arc::clone(&self.source);
        let tickers = Arc::clone(&self.spec.tickers);
        let name = ticker.to_string();
        std::thread::Builder::new()
            .name("fdp-load".into())
            .spawn(move || {
                let _ = tx.send(
                    source
                        .load_ticker(&name, &tickers)
                        .map_err(|e| e.to_string()),
                );
            })
            .map_err(|e| e.to_string())?;
        match rx.recv_timeout(self.opts.item_timeout) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "loading {ticker} took longer than {:?}",
                self.opts.item_timeout
            )),
        }
    }

    fn dead(&self, feed: &mut Feed, e: &Entry, error: &str) -> Result<(), StreamRunError> {
        tracing::warn!(id = %e.id, error, "dead letter");
        feed.redis
            .dead_letter(&feed.keys, e, &feed.consumer, error)?;
        self.opts
            .metrics
            .dead_letters
            .fetch_add(1, Ordering::Relaxed);
        let fields = serde_json::to_string(&e.fields).unwrap_or_default();
        let data = serde_json::json!({
            "stream_id": e.id,
            "error": crate::sources::redis_stream::bounded(error),
            "consumer": feed.consumer,
            "fields": crate::sources::redis_stream::bounded(&fields),
        });
        feed.db.retry("audit", |rt, c| {
            rt.block_on(postgres::audit(c, "dead_letter", &data))
        })?;
        Ok(())
    }

    fn commit(
        &self,
        feed: &mut Feed,
        ledger: &crate::operators::portfolio::Ledger,
        quarantine: &[Reject],
        through: EventTime,
    ) -> Result<(), StreamRunError> {
        let o = &self.opts;
        let run_id = o.run_id.clone();
        let tickers = Arc::clone(&self.spec.tickers);
        let took = Instant::now();
        let w = feed.db.retry("commit", |rt, c| {
            rt.block_on(postgres::commit_step(
                c, &run_id, &tickers, ledger, quarantine, through, self.epoch,
            ))
        })?;
        tracing::debug!(through, us = took.elapsed().as_micros() as u64, "committed");
        let m = &o.metrics;
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.orders.fetch_add(w.orders, Ordering::Relaxed);
        m.rejects
            .fetch_add(quarantine.len() as u64, Ordering::Relaxed);
        feed.committed = feed.committed.max(through);
        feed.redis.query::<()>(
            redis::cmd("SET")
                .arg(feed.keys.committed(&o.run_id))
                .arg(feed.committed),
        )?;
        Ok(())
    }

    fn ack(&self, feed: &mut Feed) -> Result<(), StreamRunError> {
        let c = feed.committed;
        if feed.in_flight.iter().all(|m| m.ts > c) {
            return Ok(());
        }
        let (done, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut feed.in_flight)
            .into_iter()
            .partition(|m| m.ts <= c);
        feed.in_flight = rest;
        let ids: Vec<&str> = done.iter().map(|m| m.id.as_str()).collect();
        feed.redis.ack(&feed.keys, &ids)?;
        let now = now_ms();
        let m = &self.opts.metrics;
        m.acked.fetch_add(done.len() as u64, Ordering::Relaxed);
        for d in &done {
            if let Some(a) = d.added_ms
                && d.bars > 0
            {
                m.observe(now.saturating_sub(a) as f64 / 1e3, d.bars);
            }
        }
        Ok(())
    }
}

/// What `fdp orchestrate` added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    /// Cycle number (1 for the first).
    pub cycle: u64,
    /// Work items added (one per ticker).
    pub items: u64,
    /// Bars of this cycle are after the previous cycle's cut-off and at or before this one.
    pub until: EventTime,
}

/// Adds one work item per ticker of the pipeline's universe for a new cycle whose bars run up to
/// `until` (inclusive), creating the consumer group if absent.
///
/// # Errors
/// The pipeline's source cannot be opened, or Redis fails.
pub fn orchestrate(
    p: &LoadedPipeline,
    redis_url: &str,
    prefix: &str,
    until: EventTime,
    maxlen: usize,
) -> Result<Cycle, StreamRunError> {
    let source = Source::open(p).map_err(EngineError::from)?;
    let tickers = source.tickers();
    let keys = Keys::new(prefix);
    let mut r = Conn::open(redis_url)?;
    r.ensure_group(&keys)?;
    let prev: Option<EventTime> = r.query(redis::cmd("GET").arg(keys.until()))?;
    let floor = prev.map_or(0, |u| u.saturating_add(1));
    if until < floor {
        return Err(StreamRunError::Cutoff {
            until,
            previous: floor - 1,
        });
    }
    let cycle: u64 = r.query(redis::cmd("INCR").arg(keys.cycle()))?;
    let of = tickers.len() as u64;
    let messages: Vec<Vec<(&str, String)>> = tickers
        .names()
        .iter()
        .map(|t| {
            vec![
                ("kind", "ticker".to_string()),
                ("ticker", t.clone()),
                ("cycle", cycle.to_string()),
                ("of", of.to_string()),
                ("floor", floor.to_string()),
                ("until", until.to_string()),
            ]
        })
        .collect();
    for chunk in messages.chunks(1000) {
        wait_for_room(&mut r, &keys, maxlen)?;
        r.xadd_many(&keys.stream(), maxlen, chunk)?;
    }
    r.query::<()>(redis::cmd("SET").arg(keys.until()).arg(until))?;
    tracing::info!(cycle, items = of, until, "cycle added");
    Ok(Cycle {
        cycle,
        items: of,
        until,
    })
}

/// Waits while more than half of `maxlen` entries are not yet delivered, so trimming never
/// removes a message nobody has read.
fn wait_for_room(r: &mut Conn, keys: &Keys, maxlen: usize) -> Result<(), StreamError> {
    while r.lag(keys)?.is_some_and(|l| l as usize > maxlen / 2) {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Pushes the pipeline's bars into the stream as bar messages in time order, a watermark after
/// each time, at most `rate` bars per second on average when given (each time's bars in one
/// burst). Returns the bars pushed.
///
/// # Errors
/// The pipeline's source cannot be loaded, or Redis fails.
pub fn feed(
    p: &LoadedPipeline,
    redis_url: &str,
    prefix: &str,
    maxlen: usize,
    rate: Option<f64>,
) -> Result<u64, StreamRunError> {
    let source = Source::open(p).map_err(EngineError::from)?;
    let tickers = source.tickers();
    let input = source.load(0, 1, &tickers).map_err(EngineError::from)?;
    let keys = Keys::new(prefix);
    let mut r = Conn::open(redis_url)?;
    r.ensure_group(&keys)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut pending: Vec<Vec<(&str, String)>> = Vec::new();
    // Paced, a time's bars go out together with their watermark, as a market's bars do when a
    // period closes; unpaced, in chunks of 2,000.
    for (t, batch) in &input.batches {
        for b in batch.iter() {
            pending.push(
                crate::sources::redis_stream::bar_fields(tickers.name(b.ticker), &b)
                    .into_iter()
                    .collect(),
            );
            sent += 1;
            if rate.is_none() && pending.len() >= 2000 {
                flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
            }
        }
        pending.push(vec![
            ("kind", "watermark".into()),
            ("ts", (event_time(*t) + 1).to_string()),
        ]);
        if rate.is_some() {
            flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
        }
    }
    flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
    Ok(sent)
}

fn flush(
    r: &mut Conn,
    keys: &Keys,
    maxlen: usize,
    pending: &mut Vec<Vec<(&str, String)>>,
    rate: Option<f64>,
    sent: u64,
    started: Instant,
) -> Result<(), StreamError> {
    if let Some(rate) = rate {
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    wait_for_room(r, keys, maxlen)?;
    r.xadd_many(&keys.stream(), maxlen, pending)?;
    pending.clear();
    Ok(())
}
