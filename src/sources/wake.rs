//! Waking the stream's readers when the floor rises.
//!
//! A worker whose read finds nothing waits in a blocking XREADGROUP. Its input holds the time it
//! last advanced to, and with it the frontier of every worker. When another worker reads a
//! watermark (or completes a cycle) and raises the floor, the sleeper would learn it only when
//! its wait ends: when the next message comes (the next period's bars), or at the timeout. Every
//! decision of the period would wait that long for its commit.
//!
//! So each reader registers its connection's server id (`CLIENT ID`) under `{p}:readers`, and a
//! worker that raised the floor sends `CLIENT UNBLOCK` to the others. Their read returns empty;
//! they read the floor and advance.
//!
//! No wake is lost between a reader's last look at the floor and its wait. The wait goes out in
//! one write with a `ZSCORE` of the floor, which the server runs just before it (both arrive in
//! one read of the socket and run back to back; were they ever split, the cost is one wait that
//! ends at the next message or its timeout, as without waking). A reader whose
//! score shows a floor past what it has advanced to unblocks its own wait at once, on its other
//! connection. A raise after the score finds the reader waiting, and wakes it.
//!
//! A server that refuses `CLIENT ID` or `CLIENT UNBLOCK` (an ACL without those commands) gets
//! no wakes. Reads then wait for the next message or their timeout, as they did before, and a
//! warning says so once per connection.

use std::time::Duration;

use super::redis_stream::{Conn, Entry, GROUP, Keys, StreamError};
use super::resp::RespError;
use crate::time::EventTime;

/// How long the floor's score, answered before the wait, may take.
const SCORE_ANSWER: Duration = Duration::from_secs(30);

impl Conn {
    /// Reads up to `count` new messages for `consumer`, waiting up to `block` for them, unless
    /// the floor has risen past `advanced_to` (then it returns at once, empty or with what
    /// came). Another reader raising the floor ends the wait ([`Conn::raise_floor`]).
    ///
    /// # Errors
    /// Redis errors; a connection lost during the wait is not one (the read returns empty with
    /// [`Conn::reconnected`] set, since the lost reply may have delivered messages).
    pub fn read_watching(
        &mut self,
        keys: &Keys,
        consumer: &str,
        count: usize,
        block: Duration,
        advanced_to: EventTime,
    ) -> Result<Vec<Entry>, StreamError> {
        if self.ahead {
            // The read sent ahead answers first on the reader's connection.
            return self.take_read_ahead(keys);
        }
        self.register_reader(keys, consumer)?;
        if !self.wake || self.reader_id.is_none() {
            // A wait nobody can end early: the plain read.
            return self.read(keys, consumer, count, block, None);
        }
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(keys.stream())
            .arg(">");
        let mut score = redis::cmd("ZSCORE");
        score.arg(keys.floor()).arg("floor");
        let floor = self.with_reader(|raw| {
            raw.send_watched(&score, &read)?;
            raw.receive_score(SCORE_ANSWER)
        })?;
        if floor.is_some_and(|f| f as EventTime > advanced_to) {
            self.unblock_own_read()?;
        }
        self.answer(keys, block + SCORE_ANSWER)
    }

    /// Raises the floor to at least `ts` (never lowers it); when it rose, wakes the other
    /// registered readers so they advance to it now rather than at their next message.
    ///
    /// # Errors
    /// Redis errors.
    pub fn raise_floor(&mut self, keys: &Keys, ts: EventTime) -> Result<(), StreamError> {
        let mut pipe = redis::pipe();
        // GT (Redis 6.2+) adds a missing member and otherwise only raises its score; CH counts
        // a raised score as a change.
        pipe.cmd("ZADD")
            .arg(keys.floor())
            .arg("GT")
            .arg("CH")
            .arg(ts)
            .arg("floor")
            .cmd("HVALS")
            .arg(keys.readers());
        let (raised, readers): (i64, Vec<i64>) = self.query_pipeline(&pipe)?;
        if raised == 0 || !self.wake {
            return Ok(());
        }
        let mut wake = redis::pipe();
        let mut n = 0;
        for id in readers.into_iter().filter(|id| Some(*id) != self.reader_id) {
            wake.cmd("CLIENT").arg("UNBLOCK").arg(id).ignore();
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        match self.query_pipeline::<()>(&wake) {
            Err(e) if refused(&e) => {
                self.refuse_wake(&e);
                Ok(())
            }
            r => r,
        }
    }

    /// Removes `consumer`'s registration (at the end of its run).
    ///
    /// # Errors
    /// Redis errors.
    pub fn forget_reader(&mut self, keys: &Keys, consumer: &str) -> Result<(), StreamError> {
        self.query::<i64>(redis::cmd("HDEL").arg(keys.readers()).arg(consumer))
            .map(|_| ())
    }

    /// Registers the reader connection's id as `consumer`'s, once per connection.
    fn register_reader(&mut self, keys: &Keys, consumer: &str) -> Result<(), StreamError> {
        if !self.wake || self.reader_id.is_some() {
            return Ok(());
        }
        let id = self.with_reader(|raw| match raw.client_id() {
            Ok(id) => Ok(Some(id)),
            Err(RespError::Server { code, message }) if code == "NOPERM" || code == "ERR" => {
                tracing::warn!(code, message, "CLIENT ID refused: readers are not woken");
                Ok(None)
            }
            Err(e) => Err(e),
        })?;
        let Some(id) = id else {
            self.wake = false;
            return Ok(());
        };
        self.query::<i64>(redis::cmd("HSET").arg(keys.readers()).arg(consumer).arg(id))?;
        self.reader_id = Some(id);
        Ok(())
    }

    /// Ends this connection's own wait, sent a moment ago with a score that was already stale.
    fn unblock_own_read(&mut self) -> Result<(), StreamError> {
        let Some(id) = self.reader_id else {
            return Ok(());
        };
        match self.query::<i64>(redis::cmd("CLIENT").arg("UNBLOCK").arg(id)) {
            Ok(_) => Ok(()),
            Err(e) if refused(&e) => {
                self.refuse_wake(&e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn refuse_wake(&mut self, e: &StreamError) {
        tracing::warn!(error = %e, "CLIENT UNBLOCK refused: readers are not woken");
        self.wake = false;
    }
}

/// Whether the server refused the command for good: an ACL (`NOPERM`), or a server that does
/// not know it (`ERR`). A lost connection or a server still loading is not a refusal.
fn refused(e: &StreamError) -> bool {
    matches!(e, StreamError::Redis(e) if matches!(e.code(), Some("NOPERM" | "ERR")))
}
