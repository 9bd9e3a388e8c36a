//! A venue's fills and ends into the graph (a run whose `[broker] kind` is a venue): `fdp broker`
//! records what the venue reports in `broker_events`; worker 0, which holds the portfolio, takes
//! what it has not booked, gives each its booking time (its own, or the floor's when it came
//! later), records that time, then feeds it. A restart replays the updates booked at or before
//! the committed time at their recorded times and takes the rest again, so the replayed
//! portfolio decides exactly what it decided before.

use std::time::{Duration, Instant};

use crate::engine::Harness;
use crate::sinks::broker::outbox;
use crate::time::{event_time, timely_time};

use super::StreamRunError;
use super::worker::{Feed, WorkerCtx};

/// How often worker 0 looks for new venue updates.
pub(super) const POLL: Duration = Duration::from_millis(200);

impl WorkerCtx {
    /// Replays, on worker 0 of a venue run, the updates booked through the committed time.
    pub(super) fn replay_venue(
        &self,
        feed: &mut Feed,
        h: &mut Harness,
    ) -> Result<(), StreamRunError> {
        let run_id = self.opts.run_id.clone();
        let through = self.history.committed;
        let tickers = &self.spec.tickers;
        let updates = feed.db.retry("venue history", |rt, c| {
            rt.block_on(outbox::replay_updates(c, &run_id, tickers, through))
        })?;
        tracing::info!(updates = updates.len(), "venue updates replayed");
        h.give_updates(updates.into_iter().map(|(t, u)| (timely_time(t), u)))?;
        Ok(())
    }

    /// Takes, on worker 0 of a venue run, the updates not booked yet (at most every [`POLL`]).
    /// Returns how many were fed.
    pub(super) fn take_venue(
        &self,
        feed: &mut Feed,
        h: &mut Harness,
        last: &mut Instant,
    ) -> Result<usize, StreamRunError> {
        let Some(floor) = h.floor() else {
            return Ok(0);
        };
        if last.elapsed() < POLL {
            return Ok(0);
        }
        *last = Instant::now();
        let run_id = self.opts.run_id.clone();
        let floor = event_time(floor);
        let tickers = &self.spec.tickers;
        let updates = feed.db.retry("venue updates", |rt, c| {
            rt.block_on(outbox::take_updates(c, &run_id, tickers, floor))
        })?;
        let n = updates.len();
        if n > 0 {
            tracing::info!(updates = n, floor, "venue updates taken");
        }
        h.give_updates(updates.into_iter().map(|(t, u)| (timely_time(t), u)))?;
        Ok(n)
    }
}
