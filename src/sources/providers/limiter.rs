//! The rate limiter every worker process shares, in Redis: a provider key's documented limits
//! (per second, per minute, ...) as sliding windows that a request passes only when, in every
//! window, fewer requests than the limit were let through in the last window's length. One Lua
//! script checks all windows and admits atomically, on the server's clock (`TIME`), so any number
//! of processes and threads never let more than the limit through in any window — no burst past
//! it, unlike a token bucket whose bucket refills while a burst is in flight. A provider's
//! `Retry-After` or throttle body pushes the whole key back (`pause`).
//!
//! The windows are kept a little longer than the provider's (`margin`): a request admitted at the
//! end of one window reaches the provider a few milliseconds later, and the provider counts
//! arrivals.

use std::time::Duration;

use crate::sources::redis_stream::{Conn, StreamError};

/// One documented limit: at most `count` requests in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed per window.
    pub count: u32,
    /// The window's length.
    pub window: Duration,
}

/// Admits requests under every limit of one provider key, shared through Redis.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// `<prefix>:limit:<provider>:<key id>`: one sorted set per window under it, and `:pause`.
    base: String,
    limits: Vec<Limit>,
    margin: Duration,
}

/// Admits if every window has room, recording the request in each; otherwise answers how long
/// until the fullest window frees a slot. A pause key set by `pause` blocks everything until it
/// expires. ARGV: the request's unique member, then (count, window ms) per window key. Built
/// (and its SHA-1 taken) once per process, not per request.
static ADMIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return {0, paused} end
local wait = 0
for i = 2, #KEYS do
  local count = tonumber(ARGV[2 * i - 2])
  local window = tonumber(ARGV[2 * i - 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[i])
  if n >= count then
    local first = redis.call('ZRANGE', KEYS[i], n - count, n - count, 'WITHSCORES')
    local w = tonumber(first[2]) + window - now + 1
    if w > wait then wait = w end
  end
end
if wait > 0 then return {0, wait} end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i - 1]))
end
return {1, 0}
",
    )
});

impl RateLimiter {
    /// A limiter for `provider`'s key `key_id` (a name for the key, never the key itself) under
    /// Redis prefix `prefix`, enforcing every limit with windows `margin` longer.
    pub fn new(prefix: &str, provider: &str, key_id: &str, limits: &[Limit]) -> RateLimiter {
        RateLimiter {
            base: format!("{prefix}:limit:{provider}:{key_id}"),
            limits: limits.to_vec(),
            margin: Duration::from_millis(50),
        }
    }

    /// The same limiter with another safety margin on each window.
    pub fn with_margin(mut self, margin: Duration) -> RateLimiter {
        self.margin = margin;
        self
    }

    /// Tries to admit one request now: `None` when admitted, else how long to wait before
    /// trying again. `member` must be unique per request (process, thread and a counter).
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn try_acquire(
        &self,
        conn: &mut Conn,
        member: &str,
    ) -> Result<Option<Duration>, StreamError> {
        let mut keys = vec![format!("{}:pause", self.base)];
        let mut args = vec![member.to_string()];
        for (i, l) in self.limits.iter().enumerate() {
            keys.push(format!("{}:w{i}", self.base));
            args.push(l.count.to_string());
            args.push((l.window + self.margin).as_millis().to_string());
        }
        let (admitted, wait_ms): (i64, i64) = conn.script(&ADMIT, &keys, &args)?;
        Ok((admitted != 1).then(|| Duration::from_millis(wait_ms.max(1) as u64)))
    }

    /// Waits until a request is admitted (sleeping the time Redis says), at most `patience`.
    /// Returns how long it waited.
    ///
    /// # Errors
    /// Redis failed, or no slot within `patience` ([`StreamError::Reply`] naming the limiter).
    pub fn acquire(
        &self,
        conn: &mut Conn,
        member: &str,
        patience: Duration,
    ) -> Result<Duration, StreamError> {
        let started = std::time::Instant::now();
        loop {
            match self.try_acquire(conn, member)? {
                None => return Ok(started.elapsed()),
                Some(wait) if started.elapsed() + wait <= patience => std::thread::sleep(wait),
                Some(wait) => {
                    return Err(StreamError::Reply {
                        what: format!(
                            "rate limiter {}: no slot within {patience:?} (next in {wait:?})",
                            self.base
                        ),
                    });
                }
            }
        }
    }

    /// Blocks every request of this key for `d` (a `Retry-After`, or a throttle body's window),
    /// in every process; a longer pause already set is kept.
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn pause(&self, conn: &mut Conn, d: Duration) -> Result<(), StreamError> {
        let key = format!("{}:pause", self.base);
        let ms = d.as_millis().max(1) as u64;
        // GT keeps a longer pause; NX sets one where there is none.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms)
            .arg("GT")
            .ignore();
        conn.query_pipeline::<()>(&pipe)
    }
}
