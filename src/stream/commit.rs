//! Commit, then acknowledge: worker 0 commits the ledger, exposure and quarantine rows the
//! frontier has passed, with the committed time, in one PostgreSQL transaction; every worker
//! acknowledges a message only once the time of its effects is committed. A crash between the
//! two leaves the message pending, and its replay is a no-op by the rows' natural keys.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::engine::Results;
use crate::sinks::postgres;
use crate::time::EventTime;

use super::StreamRunError;
use super::worker::{Feed, InFlight, WorkerCtx};

impl WorkerCtx {
    /// Commits worker 0's results through `through` in one transaction (fenced by the lease),
    /// then publishes the committed time for the other workers.
    pub(super) fn commit(
        &self,
        feed: &mut Feed,
        results: &Results,
        through: EventTime,
    ) -> Result<(), StreamRunError> {
        let Results {
            ledger,
            quarantine,
            exposure,
        } = results;
        let o = &self.opts;
        let run_id = o.run_id.clone();
        let tickers = Arc::clone(&self.spec.tickers);
        let took = Instant::now();
        let w = feed.db.retry("commit", |rt, c| {
            let step = postgres::Step {
                tickers: &tickers,
                ledger,
                quarantine,
                exposure,
                committed: through,
                epoch: self.epoch,
            };
            rt.block_on(postgres::commit_step(c, &run_id, &step))
        })?;
        tracing::debug!(through, us = took.elapsed().as_micros() as u64, "committed");
        let m = &o.metrics;
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.orders.fetch_add(w.orders, Ordering::Relaxed);
        m.rejects
            .fetch_add(quarantine.len() as u64, Ordering::Relaxed);
        feed.committed = feed.committed.max(through);
        feed.redis
            .publish_committed(&feed.keys, &o.run_id, feed.committed)?;
        Ok(())
    }

    /// Acknowledges the messages whose effects are committed (time at or before the committed
    /// time) and observes their XADD-to-commit latency.
    pub(super) fn ack(&self, feed: &mut Feed) -> Result<(), StreamRunError> {
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
            tracing::debug!(stream_id = %d.id, ts = d.ts, committed = c, "acknowledged");
            if let Some(a) = d.added_ms
                && d.bars > 0
            {
                m.observe(now.saturating_sub(a) as f64 / 1e3, d.bars);
            }
        }
        Ok(())
    }
}

/// The wall clock in milliseconds, for the XADD-to-commit latency (the stream id's time is the
/// producer's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
