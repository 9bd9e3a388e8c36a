//! What the live run's processes share through Redis beside the stream itself, as named methods
//! of the connection: the committed time worker 0 publishes, the orchestrator's cycles and
//! cut-off, the set of a cycle's finished work items, and removing a prefix's keys.

use crate::sources::redis_stream::{Conn, Keys, StreamError};
use crate::time::EventTime;

impl Conn {
    /// The time through which run `run_id` committed, as worker 0 last published it.
    ///
    /// # Errors
    /// Redis errors.
    pub fn committed_time(
        &mut self,
        keys: &Keys,
        run_id: &str,
    ) -> Result<Option<EventTime>, StreamError> {
        self.query(redis::cmd("GET").arg(keys.committed(run_id)))
    }

    /// Publishes that run `run_id` committed through `t`, for the other workers to acknowledge
    /// their messages at or before it.
    ///
    /// # Errors
    /// Redis errors.
    pub fn publish_committed(
        &mut self,
        keys: &Keys,
        run_id: &str,
        t: EventTime,
    ) -> Result<(), StreamError> {
        self.query(redis::cmd("SET").arg(keys.committed(run_id)).arg(t))
    }

    /// Records that `ticker`'s work item of cycle `cycle` is done (loaded, recorded, or
    /// dead-lettered) and returns how many of the cycle's items are, both in one transaction.
    ///
    /// # Errors
    /// Redis errors.
    pub fn finish_item(
        &mut self,
        keys: &Keys,
        cycle: u64,
        ticker: &str,
    ) -> Result<u64, StreamError> {
        let key = keys.cycle_done(cycle);
        let (_, done): (i64, u64) = self.query_pipeline(
            redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg(&key)
                .arg(ticker)
                .cmd("SCARD")
                .arg(&key),
        )?;
        Ok(done)
    }

    /// The cut-off of the orchestrator's last cycle (`None` before the first).
    ///
    /// # Errors
    /// Redis errors.
    pub fn last_cutoff(&mut self, keys: &Keys) -> Result<Option<EventTime>, StreamError> {
        self.query(redis::cmd("GET").arg(keys.until()))
    }

    /// Whether entry `id` is still pending in the workers' group (delivered to some consumer and
    /// not acknowledged): a work item another worker reclaimed and settled is not.
    ///
    /// # Errors
    /// Redis errors.
    pub fn is_pending(&mut self, keys: &Keys, id: &str) -> Result<bool, StreamError> {
        let rows: redis::Value = self.query(
            redis::cmd("XPENDING")
                .arg(keys.stream())
                .arg(crate::sources::redis_stream::GROUP)
                .arg(id)
                .arg(id)
                .arg(1),
        )?;
        Ok(matches!(rows, redis::Value::Array(r) if !r.is_empty()))
    }

    /// Numbers a new orchestrator cycle (1 for the first).
    ///
    /// # Errors
    /// Redis errors.
    pub fn next_cycle(&mut self, keys: &Keys) -> Result<u64, StreamError> {
        self.query(redis::cmd("INCR").arg(keys.cycle()))
    }

    /// Records the cut-off of the cycle just added.
    ///
    /// # Errors
    /// Redis errors.
    pub fn set_cutoff(&mut self, keys: &Keys, until: EventTime) -> Result<(), StreamError> {
        self.query(redis::cmd("SET").arg(keys.until()).arg(until))
    }

    /// Removes every key under `prefix:` (a benchmark's or a test's), scanning rather than
    /// blocking the server with `KEYS`. Returns the keys removed.
    ///
    /// # Errors
    /// Redis errors.
    pub fn delete_prefix(&mut self, prefix: &str) -> Result<u64, StreamError> {
        let keys = self.scan(&format!("{prefix}:*"))?;
        let mut removed = 0u64;
        for chunk in keys.chunks(1000) {
            removed += self.query::<u64>(redis::cmd("DEL").arg(chunk))?;
        }
        Ok(removed)
    }
}
