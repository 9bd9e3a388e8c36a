//! The tier manager: what a provider key may spend, counted in Redis by every worker process.
//!
//! Where the rate limiter ([`super::limiter`]) paces requests inside a provider's documented
//! limits, a budget is what the user chooses to spend: requests and credits per calendar minute
//! and per UTC day for each provider, and money per UTC day across all providers. A provider past
//! a budget is skipped — the next provider is asked — until the window it exhausted resets; the
//! spend budget warns once at 80 % (the one request that crosses it is told) and refuses every
//! provider at 100 %. One Lua script checks every counter and charges them all, or none, on the
//! server's clock, so concurrent processes never overspend.
//!
//! Window keys are named in the script from the server's `TIME` (a single Redis server, as the
//! project runs; a Redis Cluster would need them declared).

use std::time::Duration;

use crate::sources::redis_stream::{Conn, StreamError};

/// A provider's budgets; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    /// Requests per calendar minute.
    pub requests_per_minute: Option<u32>,
    /// Requests per UTC day.
    pub requests_per_day: Option<u32>,
    /// Credits one request costs (Twelve Data: one per symbol).
    pub credits_per_request: u32,
    /// Credits per calendar minute.
    pub credits_per_minute: Option<u32>,
    /// Credits per UTC day.
    pub credits_per_day: Option<u32>,
    /// Money one request costs, counted against the daily spend budget.
    pub cost_per_request: f64,
}

/// What the tier manager said of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Charge {
    /// Charged: the request may go. `warn` when this request took the day's spend past 80 %.
    Charged {
        /// Spent today across providers after this request (money).
        spent: f64,
        /// This request crossed the 80 % warning line.
        warn: bool,
    },
    /// Refused: `budget` is exhausted until its window resets in `resets_in`.
    Refused {
        /// Which budget (`requests_per_minute`, ..., `daily_spend`).
        budget: String,
        /// Time until its window resets.
        resets_in: Duration,
    },
}

/// The budgets of one provider, and the spend budget they share.
#[derive(Debug, Clone)]
pub struct TierManager {
    provider_key: String,
    spend_key: String,
    budget: Budget,
    daily_spend: Option<f64>,
}

/// Money is counted in millionths, so that Redis adds integers.
const MICROS: f64 = 1e6;

/// ARGV: requests/min, requests/day, credits, credits/min, credits/day, cost µ, spend budget µ
/// (0 = no limit). Returns {1, '', 0, spent µ} or {0, budget, seconds to reset, spent µ}.
static CHARGE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(redis.call('TIME')[1])
local minute = math.floor(now / 60)
local day = math.floor(now / 86400)
local a = {}
for i = 1, 7 do a[i] = tonumber(ARGV[i]) end
local to_minute = 60 - now % 60
local to_day = 86400 - now % 86400
local checks = {
  {KEYS[1] .. ':requests:m' .. minute, 1, a[1], 'requests_per_minute', to_minute, 120},
  {KEYS[1] .. ':requests:d' .. day, 1, a[2], 'requests_per_day', to_day, 172800},
  {KEYS[1] .. ':credits:m' .. minute, a[3], a[4], 'credits_per_minute', to_minute, 120},
  {KEYS[1] .. ':credits:d' .. day, a[3], a[5], 'credits_per_day', to_day, 172800},
  {KEYS[2] .. ':spend:d' .. day, a[6], a[7], 'daily_spend', to_day, 172800},
}
local spent = tonumber(redis.call('GET', checks[5][1]) or '0')
for _, c in ipairs(checks) do
  if c[3] > 0 and tonumber(redis.call('GET', c[1]) or '0') + c[2] > c[3] then
    return {0, c[4], c[5], spent}
  end
end
for _, c in ipairs(checks) do
  redis.call('INCRBY', c[1], c[2])
  redis.call('EXPIRE', c[1], c[6])
end
return {1, '', 0, spent + a[6]}
",
    )
});

impl TierManager {
    /// The budgets of `provider`'s key `key_id` under Redis prefix `prefix`, sharing the
    /// prefix's daily spend budget (`None`: no limit on spend).
    pub fn new(
        prefix: &str,
        provider: &str,
        key_id: &str,
        budget: Budget,
        daily_spend: Option<f64>,
    ) -> TierManager {
        TierManager {
            provider_key: format!("{prefix}:budget:{provider}:{key_id}"),
            spend_key: format!("{prefix}:budget"),
            budget,
            daily_spend,
        }
    }

    /// Charges one request against every budget, or refuses it naming the exhausted one.
    ///
    /// # Errors
    /// Redis failed beyond its retry budget.
    pub fn charge(&self, conn: &mut Conn) -> Result<Charge, StreamError> {
        let b = &self.budget;
        let limit = |v: Option<u32>| v.map_or(0, i64::from);
        let cost = (b.cost_per_request.max(0.0) * MICROS).round() as i64;
        let spend = self
            .daily_spend
            .map_or(0, |s| (s.max(0.0) * MICROS).round() as i64);
        let args = [
            limit(b.requests_per_minute),
            limit(b.requests_per_day),
            i64::from(b.credits_per_request),
            limit(b.credits_per_minute),
            limit(b.credits_per_day),
            cost,
            spend,
        ]
        .map(|v| v.to_string());
        let keys = [self.provider_key.clone(), self.spend_key.clone()];
        let (ok, budget, resets_in, spent): (i64, String, u64, i64) =
            conn.script(&CHARGE, &keys, &args)?;
        if ok != 1 {
            return Ok(Charge::Refused {
                budget,
                resets_in: Duration::from_secs(resets_in),
            });
        }
        let warn = spend > 0 && {
            let line = spend as f64 * 0.8;
            ((spent - cost) as f64) < line && spent as f64 >= line
        };
        Ok(Charge::Charged {
            spent: spent as f64 / MICROS,
            warn,
        })
    }

    /// The credits one request costs.
    pub fn credits(&self) -> u32 {
        self.budget.credits_per_request
    }

    /// The money one request costs.
    pub fn cost(&self) -> f64 {
        self.budget.cost_per_request
    }
}
