//! A live worker's state machine. Each timely worker is one consumer of the group: it builds the
//! graph through the engine's [`Harness`], replays what a previous run of the id committed, then
//! loops — check for a stop, read and take in a batch ([`super::intake`]), raise the floor, step
//! the graph, commit what the frontier passed (worker 0) and acknowledge what is committed
//! ([`super::commit`]) — until the stream has been idle long enough or a stop froze it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::bar::{BarBatch, origin_of, owner};
use crate::engine::{GraphSpec, Harness, References};
use crate::operators::risk::KillSwitch;
use crate::sources::Source;
use crate::sources::redis_stream::{Conn, Keys, StreamError};
use crate::time::{EventTime, event_time, timely_time};

use super::pg::{History, PgPool, PgSlot};
use super::recorder::{MAX_PENDING, Recorder};
use super::{Ending, StreamOptions, StreamRunError, consumer_name};

/// How long a worker with nothing to read or step waits before it looks again, while messages
/// of its await a commit (a blocking read would wait for Redis's ~20 ms timer tick instead).
const IDLE_NAP: Duration = Duration::from_micros(500);

/// What every worker of a process shares.
pub(super) struct WorkerCtx {
    pub(super) spec: GraphSpec,
    pub(super) source: Arc<Source>,
    pub(super) refs: References,
    pub(super) opts: StreamOptions,
    pub(super) kill: KillSwitch,
    pub(super) barrier: Arc<Barrier>,
    /// Workers of this process that have stopped reading.
    pub(super) stopping: Arc<AtomicUsize>,
    /// Set by worker 0 once everything below the fixed frontier is committed.
    pub(super) freeze: Arc<AtomicBool>,
    /// What a previous run of this id committed.
    pub(super) history: Arc<History>,
    /// The run's lease epoch (process 0; every commit checks it).
    pub(super) epoch: i64,
    /// Set when a worker of this process failed: the others give up at once.
    pub(super) failed: Arc<AtomicBool>,
    /// The process's PostgreSQL connections.
    pub(super) pool: Arc<PgPool>,
}

/// What a worker holds while it runs.
pub(super) struct Feed {
    pub(super) keys: Keys,
    pub(super) consumer: String,
    pub(super) redis: Conn,
    /// This worker's connection of the process's pool.
    pub(super) db: PgSlot,
    /// Records the bars read, on another connection of the pool, while they are fed.
    pub(super) recorder: Recorder,
    /// The shared floor as last read (timely time): a bar before it is late, even while the
    /// worker's own input is held lower for a recording.
    pub(super) floor_seen: u64,
    pub(super) in_flight: Vec<InFlight>,
    pub(super) committed: EventTime,
    /// Work items that failed and wait for a retry (idle shutdown waits for them).
    pub(super) retrying: HashSet<String>,
    /// When the backlog gauges were last read (worker 0).
    pub(super) backlog_at: Option<std::time::Instant>,
}

impl Feed {
    /// Reads the committed time worker 0 published (workers other than 0 learn it this way).
    fn refresh_committed(&mut self, run_id: &str) -> Result<(), StreamError> {
        if let Some(c) = self.redis.committed_time(&self.keys, run_id)? {
            self.committed = self.committed.max(c);
        }
        Ok(())
    }
}

/// A message read and fed, waiting for the commit of time `ts` before it is acknowledged.
pub(super) struct InFlight {
    pub(super) id: String,
    pub(super) ts: EventTime,
    pub(super) added_ms: Option<u64>,
    pub(super) bars: u64,
}

/// The loop's own state: where the reads are, the clocks of periodic duties, and how it ends.
struct Phase {
    /// Own pending entries are re-read first, page by page, after this id (`None`: done).
    pending_cursor: Option<String>,
    last_work: Instant,
    last_claim: Instant,
    last_touch: Instant,
    last_stop_check: Instant,
    ending: Option<Ending>,
    final_written: bool,
    frozen: bool,
    stop_started: Option<Instant>,
    /// When worker 0 last looked for venue updates.
    last_venue: Instant,
}

impl WorkerCtx {
    /// Runs worker `worker` until the run ends.
    pub(super) fn work(
        &self,
        worker: &mut timely::worker::Worker,
    ) -> Result<Ending, StreamRunError> {
        let (index, peers) = (worker.index(), worker.peers());
        let _span = tracing::info_span!("consumer", index, peers).entered();
        let o = &self.opts;
        let local = o.cluster.workers.max(1);
        let mut feed = Feed {
            consumer: consumer_name(
                &o.run_id,
                o.cluster.process,
                index % o.cluster.workers.max(1),
            ),
            redis: Conn::open(&o.redis_url)?,
            keys: Keys::new(&o.prefix),
            db: PgSlot {
                pool: Arc::clone(&self.pool),
                slot: index,
            },
            // The pool holds a connection for each worker and each recorder when it may.
            recorder: Recorder::start(
                PgSlot {
                    pool: Arc::clone(&self.pool),
                    slot: index + local,
                },
                o.run_id.clone(),
            )?,
            floor_seen: 0,
            in_flight: Vec::new(),
            committed: self.history.committed,
            retrying: HashSet::new(),
            backlog_at: None,
        };
        let mut h = Harness::build(worker, &self.spec, &self.refs);
        if index == 0 && self.spec.outbox {
            // Before the floor moves past the committed time.
            self.replay_venue(&mut feed, &mut h)?;
        }
        self.replay_history(&mut h, index, peers)?;
        if index == 0 {
            self.adopt_departed(&mut feed)?;
        }
        self.barrier.wait();
        let now = Instant::now();
        let mut ph = Phase {
            pending_cursor: Some("0".into()),
            last_work: now,
            last_claim: now,
            last_touch: now,
            last_stop_check: now,
            ending: None,
            final_written: false,
            frozen: false,
            stop_started: None,
            last_venue: now - super::venue::POLL,
        };
        if index == 0 && self.history.committed > EventTime::MIN {
            feed.redis
                .publish_committed(&feed.keys, &o.run_id, self.history.committed)?;
        }
        loop {
            if self.failed.load(Ordering::SeqCst) {
                return Err(StreamRunError::Worker {
                    message: "another worker of this process failed".into(),
                });
            }
            self.check_stop(&mut ph);
            // Whether this worker has nothing to read and waits on the others' part of a time:
            // then its first step parks until they send something (or a nap's length passes),
            // instead of spinning on cores they, Redis and PostgreSQL share.
            let mut waits_on_peers = false;
            if ph.ending.is_none() {
                waits_on_peers = self.read(&mut feed, &mut h, &mut ph)?;
                if index == 0
                    && self.spec.outbox
                    && self.take_venue(&mut feed, &mut h, &mut ph.last_venue)? > 0
                {
                    ph.last_work = Instant::now();
                }
            }
            if ph.ending == Some(Ending::Idle) {
                // Closing lets the frontier pass everything: only once every bar is recorded.
                while feed.recorder.pending() > 0 {
                    self.recorded(&mut feed, Duration::from_millis(50))?;
                }
                h.close();
            }
            let stepping = Instant::now();
            worker.step_or_park(Some(if waits_on_peers {
                IDLE_NAP
            } else {
                Duration::ZERO
            }));
            for _ in 0..3 {
                worker.step_or_park(Some(Duration::ZERO));
            }
            tracing::trace!(
                frontier = ?h.frontier(),
                floor = ?h.floor(),
                us = stepping.elapsed().as_micros() as u64,
                "stepped"
            );
            let dataflow_done = h.frontier().is_none();
            if index == 0 && !ph.frozen {
                self.commit_passed(&mut feed, &mut h, dataflow_done, &mut ph)?;
            } else if index != 0 && (!feed.in_flight.is_empty() || ph.ending.is_some()) {
                feed.refresh_committed(&o.run_id)?;
            }
            if !ph.frozen {
                self.ack(&mut feed)?;
            }
            if ph.ending == Some(Ending::Stopped) && h.floor().is_some() {
                self.freeze_when_drained(&mut feed, &mut h, &mut ph, index)?;
            }
            if ph.last_touch.elapsed() > o.claim_idle / 4 && !feed.in_flight.is_empty() {
                ph.last_touch = Instant::now();
                let ids: Vec<&str> = feed.in_flight.iter().map(|m| m.id.as_str()).collect();
                feed.redis.touch(&feed.keys, &feed.consumer, &ids)?;
            }
            if h.floor().is_none() && dataflow_done {
                if ph.frozen || feed.in_flight.is_empty() {
                    break;
                }
                // Wait for worker 0's final commit.
                std::thread::sleep(Duration::from_millis(5));
                if ph.last_work.elapsed() > Duration::from_secs(120) {
                    return Err(StreamRunError::Worker {
                        message: "worker 0 never committed the final step".into(),
                    });
                }
            }
        }
        if let Err(e) = feed.redis.forget_reader(&feed.keys, &feed.consumer) {
            tracing::warn!(error = %e, "could not remove this reader's registration");
        }
        Ok(ph.ending.unwrap_or(Ending::Idle))
    }

    /// Rebuilds state: the bars recorded up to the committed time, fed at their own times; then
    /// the floor moves past the committed time.
    fn replay_history(
        &self,
        h: &mut Harness,
        index: usize,
        peers: usize,
    ) -> Result<(), StreamRunError> {
        let mut by_time: BTreeMap<u64, BarBatch> = BTreeMap::new();
        for s in self
            .history
            .bars
            .iter()
            .filter(|s| owner(s.bar.ticker, peers) == index)
        {
            by_time
                .entry(timely_time(s.bar.ts))
                .or_default()
                .push_from_entry(s.bar, origin_of(&s.stream_id));
        }
        h.give_bars(by_time)?;
        h.advance_to(timely_time(self.history.committed.saturating_add(1)));
        Ok(())
    }

    /// Pending entries of this run's consumers that no longer exist (a run restarted with fewer
    /// workers or processes) become worker 0's own, re-read before the floor applies.
    fn adopt_departed(&self, feed: &mut Feed) -> Result<(), StreamRunError> {
        let o = &self.opts;
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
        Ok(())
    }

    /// Stop requests: a signal, or the kill-switch file (which also halts new orders).
    fn check_stop(&self, ph: &mut Phase) {
        let o = &self.opts;
        if ph.ending.is_some() {
            return;
        }
        if ph.last_stop_check.elapsed() > Duration::from_millis(200) {
            ph.last_stop_check = Instant::now();
            if o.stop_file.as_ref().is_some_and(|f| f.exists()) {
                self.kill.trip();
                o.shutdown.store(true, Ordering::SeqCst);
            }
        }
        if o.shutdown.load(Ordering::SeqCst) {
            tracing::info!("stopping: no more reads; committing what is complete");
            ph.ending = Some(Ending::Stopped);
            self.stopping.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// One read: own pending entries first, reclaimed idle ones now and then, else new ones;
    /// takes them in, feeds the graph, and raises the floor to what the stream guarantees.
    /// Answers whether nothing came while the graph works on a time the other workers' parts
    /// still hold.
    fn read(
        &self,
        feed: &mut Feed,
        h: &mut Harness,
        ph: &mut Phase,
    ) -> Result<bool, StreamRunError> {
        let mut waits_on_peers = false;
        let o = &self.opts;
        self.recorded(feed, Duration::ZERO)?;
        if feed.recorder.pending() >= MAX_PENDING {
            // PostgreSQL is behind: let it catch up before reading more.
            self.recorded(feed, o.block.max(Duration::from_millis(1)))?;
        }
        // While the graph has times in flight or messages await their commit, poll without
        // blocking so those times finish at once; when all is done, block.
        let floor = h.floor().map_or(u64::MAX, |f| f.max(feed.floor_seen));
        let wait = if h.busy() || !feed.in_flight.is_empty() {
            Duration::ZERO
        } else {
            o.block
        };
        let asked = Instant::now();
        // A read of new messages (not own pending ones, not reclaimed ones).
        let mut fresh = false;
        let mut entries = if let Some(after) = ph.pending_cursor.take() {
            let e = feed
                .redis
                .read(&feed.keys, &feed.consumer, o.batch, o.block, Some(&after))?;
            ph.pending_cursor = e.last().map(|l| l.id.clone());
            e
        } else if ph.last_claim.elapsed() > o.claim_idle / 4 {
            ph.last_claim = Instant::now();
            feed.redis
                .autoclaim(&feed.keys, &feed.consumer, o.claim_idle, o.batch)?
        } else if wait.is_zero() {
            fresh = true;
            feed.redis
                .read(&feed.keys, &feed.consumer, o.batch, wait, None)?
        } else {
            fresh = true;
            // A wait another worker's raise of the floor ends (`sources::wake`): this worker's
            // input holds every worker's frontier until it advances.
            feed.redis.read_watching(
                &feed.keys,
                &feed.consumer,
                o.batch,
                wait,
                event_time(feed.floor_seen),
            )?
        };
        // A full read of new messages: more are likely waiting (a backlog).
        let full = fresh && entries.len() >= o.batch;
        if !fresh && !feed.in_flight.is_empty() && !entries.is_empty() {
            // Pending and reclaimed reads may return messages this worker already fed; a read
            // of new messages never does (and hashing every id in flight for it cost more than
            // reading it, measured 2026-12-07).
            let mine: HashSet<&str> = feed.in_flight.iter().map(|m| m.id.as_str()).collect();
            entries.retain(|e| !mine.contains(e.id.as_str()));
        }
        if feed.redis.reconnected {
            // A reply lost with the connection may have delivered messages to us.
            feed.redis.reconnected = false;
            ph.pending_cursor = Some("0".into());
        }
        if entries.is_empty() {
            let idle = o.idle_shutdown.is_some_and(|d| ph.last_work.elapsed() > d);
            if idle && !feed.retrying.is_empty() {
                // An item this worker failed may have been reclaimed and settled (done or
                // dead-lettered) by another worker: it no longer waits for a retry here.
                let ids: Vec<String> = feed.retrying.iter().cloned().collect();
                for id in ids {
                    if !feed.redis.is_pending(&feed.keys, &id)? {
                        feed.retrying.remove(&id);
                    }
                }
            }
            if idle && feed.retrying.is_empty() {
                tracing::info!("idle: ending the input");
                ph.ending = Some(Ending::Idle);
            } else if feed.recorder.pending() > 0 && !h.busy() {
                // Nothing to read and nothing to step: wait for the recording that holds the
                // input rather than spin beside the database writing it.
                self.recorded(feed, Duration::from_millis(2))?;
            } else if !h.busy() && !feed.in_flight.is_empty() {
                // Waiting for another worker (its part of the time, or worker 0's commit): a
                // short nap rather than three Redis round trips per spin, on cores those workers,
                // Redis and PostgreSQL share.
                std::thread::sleep(IDLE_NAP);
            } else if h.busy() && o.cluster.workers.max(1) * o.cluster.processes.max(1) > 1 {
                waits_on_peers = true;
            }
        } else {
            ph.last_work = Instant::now();
            let n = entries.len();
            let took = Instant::now();
            let (batches, rejects) = self.take(feed, entries, floor)?;
            let taken = Instant::now();
            h.give_bars(batches)?;
            h.give_rejects(rejects)?;
            // Where a read's time goes: Redis's answer, intake, and handing it to the graph.
            tracing::debug!(
                n,
                floor,
                redis_us = took.duration_since(asked).as_micros() as u64,
                take_us = taken.duration_since(took).as_micros() as u64,
                give_us = taken.elapsed().as_micros() as u64,
                "read"
            );
        }
        // Advance to the floor the stream guarantees (not while own pending entries are still
        // being re-read: they may be older than the floor).
        if ph.pending_cursor.is_none() && h.floor().is_some() {
            feed.floor_seen = timely_time(feed.redis.floor(&feed.keys)?);
            let hold = feed.recorder.hold().unwrap_or(u64::MAX);
            h.advance_to(feed.floor_seen.min(hold));
            if full && ph.ending.is_none() {
                // After the floor was read (`sources::read_ahead` says why only then): the
                // server prepares the next batch while this one is stepped and committed.
                feed.redis
                    .send_read_ahead(&feed.keys, &feed.consumer, o.batch)?;
            }
        }
        Ok(waits_on_peers)
    }

    /// Takes in finished recordings, waiting up to `wait` for one when none has finished.
    fn recorded(&self, feed: &mut Feed, wait: Duration) -> Result<(), StreamRunError> {
        let mut n = feed.recorder.collect()?;
        if n == 0 && !wait.is_zero() {
            n = feed.recorder.wait_one(wait)?;
        }
        self.opts.metrics.bars.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Worker 0 commits what the frontier has passed; once the graph has finished, the rest of
    /// the portfolio's rows (orders never executed recorded as unfilled).
    fn commit_passed(
        &self,
        feed: &mut Feed,
        h: &mut Harness,
        dataflow_done: bool,
        ph: &mut Phase,
    ) -> Result<(), StreamRunError> {
        if dataflow_done {
            if ph.final_written {
                return Ok(());
            }
            ph.final_written = true;
            if let Some(mut r) = h.finish() {
                // A live run's open positions stay open for its next start: they are not booked
                // as trades closed at the last mark.
                r.ledger.trades.retain(|t| !t.open);
                let floor = feed.redis.floor(&feed.keys)?;
                let through = r
                    .ledger
                    .equity
                    .last()
                    .map_or(feed.committed, |e| e.ts)
                    .max(floor)
                    .max(feed.committed);
                self.commit(feed, &r, through)?;
            }
        } else if let Some(t) = h.frontier().map(|f| event_time(f).saturating_sub(1))
            && t > feed.committed
        {
            let r = h.drain(t);
            self.commit(feed, &r, t)?;
        }
        Ok(())
    }

    /// After a stop: everything below the (now fixed) frontier committed and acknowledged, the
    /// rest drains without committing and stays pending for the next run. Once every worker
    /// stopped reading, capabilities no longer move: worker 0 waits for its commit to reach the
    /// frontier, then tells the others to let go.
    fn freeze_when_drained(
        &self,
        feed: &mut Feed,
        h: &mut Harness,
        ph: &mut Phase,
        index: usize,
    ) -> Result<(), StreamRunError> {
        let o = &self.opts;
        let all_stopped = self.stopping.load(Ordering::SeqCst) >= o.cluster.workers.max(1);
        // Processes do not share the flag: past the bound, each lets go on its own (what is not
        // committed stays pending, so nothing is lost either way).
        if ph.stop_started.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(20) {
            self.freeze.store(true, Ordering::SeqCst);
        }
        if index == 0
            && all_stopped
            && h.frontier()
                .is_none_or(|f| event_time(f) <= feed.committed.saturating_add(1))
        {
            self.freeze.store(true, Ordering::SeqCst);
        }
        if self.freeze.load(Ordering::SeqCst) {
            if index != 0 {
                feed.refresh_committed(&o.run_id)?;
                self.ack(feed)?;
            }
            ph.frozen = true;
            h.close();
            tracing::info!(
                committed = feed.committed,
                pending = feed.in_flight.len(),
                "stopped"
            );
        }
        Ok(())
    }
}
