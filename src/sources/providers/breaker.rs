//! The circuit breaker of a provider, shared by every worker process through Redis: closed while
//! requests succeed; open after `threshold` consecutive failures (errors the provider is to blame
//! for: 5xx, timeouts, garbage bodies), refusing every request for `cooldown`; then half-open,
//! letting exactly one probe through — across all processes — whose success closes it and whose
//! failure opens it again. A probe that never reports (its process died) is replaced after
//! `probe_timeout`. Each transition is one Lua script on the server's clock.

use std::time::Duration;

use crate::sources::redis_stream::{Conn, StreamError};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// One probe is in flight; everything else is refused.
    HalfOpen,
}

impl BreakerState {
    /// The state's name (as stored, and in metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub(super) fn parse(s: &str) -> BreakerState {
        match s {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// A provider's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    key: String,
    threshold: u32,
    cooldown: Duration,
    probe_timeout: Duration,
}

/// Whether a breaker lets a request through, and the state it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go: closed, or half-open with this caller as the probe.
    Go(BreakerState),
    /// Refused: open until the cool-down ends, or half-open with a probe in flight; how long
    /// until a request may go.
    Wait(BreakerState, Duration),
}

/// ARGV: cooldown ms, probe timeout ms. Returns {allowed, wait ms, state}.
static ALLOW: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, 0, 'closed'} end
if state == 'open' then
  local ready = tonumber(redis.call('HGET', KEYS[1], 'opened_at')) + tonumber(ARGV[1])
  if now < ready then return {0, ready - now, 'open'} end
end
if state == 'half_open' then
  local until_ = tonumber(redis.call('HGET', KEYS[1], 'probe_until'))
  if now < until_ then return {0, until_ - now, 'half_open'} end
end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[2]))
return {1, 0, 'half_open'}
",
    )
});

/// ARGV: 1 for a success, 0 for a failure; the threshold. Returns the new state.
static REPORT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  return 'closed'
end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
return state
",
    )
});

impl Breaker {
    /// The breaker of `provider` under Redis prefix `prefix`.
    pub fn new(
        prefix: &str,
        provider: &str,
        threshold: u32,
        cooldown: Duration,
        probe_timeout: Duration,
    ) -> Breaker {
        Breaker {
            key: format!("{prefix}:breaker:{provider}"),
            threshold: threshold.max(1),
            cooldown,
            probe_timeout,
        }
    }

    /// Whether a request may go now, else how long until the breaker may let one through, with
    /// the state either way. A half-open breaker lets this caller be the probe.
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn allow(&self, conn: &mut Conn) -> Result<Admit, StreamError> {
        let (ok, wait, state): (i64, i64, String) = conn.script(
            &ALLOW,
            std::slice::from_ref(&self.key),
            &[
                self.cooldown.as_millis().to_string(),
                self.probe_timeout.as_millis().to_string(),
            ],
        )?;
        let state = BreakerState::parse(&state);
        Ok(if ok == 1 {
            Admit::Go(state)
        } else {
            Admit::Wait(state, Duration::from_millis(wait.max(1) as u64))
        })
    }

    /// Reports a request's outcome: a success closes the breaker; a failure counts, and opens it
    /// at the threshold or when it was the half-open probe. Returns the new state.
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn report(&self, conn: &mut Conn, success: bool) -> Result<BreakerState, StreamError> {
        let s: String = conn.script(
            &REPORT,
            std::slice::from_ref(&self.key),
            &[
                if success { "1" } else { "0" }.to_string(),
                self.threshold.to_string(),
            ],
        )?;
        Ok(BreakerState::parse(&s))
    }

    /// The state as stored (for metrics and the dashboard).
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn state(&self, conn: &mut Conn) -> Result<BreakerState, StreamError> {
        let s: Option<String> = conn.query(redis::cmd("HGET").arg(&self.key).arg("state"))?;
        Ok(s.as_deref()
            .map_or(BreakerState::Closed, BreakerState::parse))
    }
}
