//! The response cache every worker process shares, in Redis: a provider's parsed answer for one
//! ticker, interval, adjustment and range, kept for a TTL (24 h by default), so a rerun, a
//! second process or a `fdp fetch` after a backtest asks the provider nothing it already gave.
//!
//! Only a range that has fully happened is cached: an answer whose range reaches a bar still
//! forming would hide the bars that complete later, so it is always asked afresh. What is stored
//! is the provider's bars and quarantine rows (bincode), not its body: the key never lands in
//! Redis, and a cached answer is read without parsing JSON again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bar::{Bar, BarBatch};
use crate::reject::Reject;
use crate::sources::redis_stream::{Conn, StreamError};
use crate::time::EventTime;

use super::{BarRequest, Fetched, ProviderKind};

/// A cached answer: the bars' columns (ticker ids belong to a run and are set on reading) and
/// the quarantine rows.
#[derive(Serialize, Deserialize)]
struct Stored {
    ts: Vec<EventTime>,
    ohlcv: Vec<[f64; 5]>,
    rejects: Vec<Reject>,
}

/// The cache under a Redis prefix.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    prefix: String,
    ttl: Duration,
}

impl ResponseCache {
    /// A cache under `prefix` keeping answers for `ttl` (zero: nothing cached).
    pub fn new(prefix: &str, ttl: Duration) -> ResponseCache {
        ResponseCache {
            prefix: format!("{prefix}:cache"),
            ttl,
        }
    }

    /// `<prefix>:cache:<provider>:<interval s>:<adj|raw>:<start>:<end>:<ticker>` (the ticker last:
    /// it may hold `:`).
    fn key(&self, kind: ProviderKind, req: &BarRequest) -> String {
        format!(
            "{}:{}:{}:{}:{}:{}:{}",
            self.prefix,
            kind.name(),
            req.interval.seconds(),
            if req.adjusted { "adj" } else { "raw" },
            req.start,
            req.end,
            req.ticker
        )
    }

    /// Whether an answer for `req` may be cached at wall time `now`: the cache is on and the
    /// range's last bar has ended.
    pub fn cacheable(&self, req: &BarRequest, now: EventTime) -> bool {
        !self.ttl.is_zero() && req.end.saturating_add(req.interval.seconds()) <= now
    }

    /// The cached answer for `req` from `kind`, with the run's ticker id; `None` on a miss or an
    /// entry this build cannot read (then asked afresh and overwritten).
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn get(
        &self,
        conn: &mut Conn,
        kind: ProviderKind,
        req: &BarRequest,
    ) -> Result<Option<Fetched>, StreamError> {
        if self.ttl.is_zero() {
            return Ok(None);
        }
        let raw: Option<Vec<u8>> = conn.query(redis::cmd("GET").arg(self.key(kind, req)))?;
        let Some(stored) = raw.and_then(|b| bincode::deserialize::<Stored>(&b).ok()) else {
            return Ok(None);
        };
        let mut bars = BarBatch::with_capacity(stored.ts.len());
        for (ts, [open, high, low, close, volume]) in stored.ts.into_iter().zip(stored.ohlcv) {
            bars.push(Bar {
                ticker: req.id,
                ts,
                open,
                high,
                low,
                close,
                volume,
            });
        }
        Ok(Some(Fetched {
            bars,
            rejects: stored.rejects,
        }))
    }

    /// Stores `kind`'s answer for `req` for the TTL.
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn put(
        &self,
        conn: &mut Conn,
        kind: ProviderKind,
        req: &BarRequest,
        answer: &Fetched,
    ) -> Result<(), StreamError> {
        if self.ttl.is_zero() {
            return Ok(());
        }
        let stored = Stored {
            ts: answer.bars.ts.clone(),
            ohlcv: answer
                .bars
                .iter()
                .map(|b| [b.open, b.high, b.low, b.close, b.volume])
                .collect(),
            rejects: answer.rejects.clone(),
        };
        let bytes = bincode::serialize(&stored).map_err(|e| StreamError::Reply {
            what: format!("response cache: {e}"),
        })?;
        conn.query::<()>(
            redis::cmd("SET")
                .arg(self.key(kind, req))
                .arg(bytes)
                .arg("PX")
                .arg(self.ttl.as_millis().max(1) as u64),
        )
    }
}
