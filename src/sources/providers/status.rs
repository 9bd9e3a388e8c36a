//! What the dashboard shows of the providers: each one's circuit breaker and what it was asked
//! today, read from the keys the controls keep in Redis ([`super::breaker`], [`super::budget`]) —
//! the state every process shares, not one process's view of it.

use std::collections::BTreeMap;

use super::breaker::BreakerState;
use crate::sources::redis_stream::{Conn, StreamError};

/// One provider's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatus {
    /// The provider (`polygon`, `yahoo`, …).
    pub provider: String,
    /// Its breaker.
    pub breaker: BreakerState,
    /// Consecutive failures counted by the breaker.
    pub failures: u64,
    /// When the breaker last opened (Unix milliseconds, Redis's clock), if it ever did.
    pub opened_at_ms: Option<i64>,
    /// Requests charged today (UTC), over all its keys.
    pub requests_today: u64,
    /// Credits charged today (UTC), over all its keys.
    pub credits_today: u64,
}

/// Every provider with a breaker or a charge today under `prefix`, by name, and the money spent
/// today across providers.
///
/// # Errors
/// Redis errors.
pub fn read(conn: &mut Conn, prefix: &str) -> Result<(Vec<ProviderStatus>, f64), StreamError> {
    // The day as the budget script counts it: on Redis's clock.
    let time: Vec<String> = conn.query(&redis::cmd("TIME"))?;
    let now: i64 = time
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StreamError::Reply {
            what: format!("TIME answered {time:?}"),
        })?;
    let day = now.div_euclid(86_400);
    let mut by: BTreeMap<String, ProviderStatus> = BTreeMap::new();
    let entry = |by: &mut BTreeMap<String, ProviderStatus>, name: &str| {
        by.entry(name.to_string())
            .or_insert_with(|| ProviderStatus {
                provider: name.to_string(),
                breaker: BreakerState::Closed,
                failures: 0,
                opened_at_ms: None,
                requests_today: 0,
                credits_today: 0,
            })
            .clone()
    };
    let breakers = format!("{prefix}:breaker:");
    for key in conn.scan(&format!("{breakers}*"))? {
        let Some(name) = key.strip_prefix(&breakers) else {
            continue;
        };
        let fields: BTreeMap<String, String> = conn.query(redis::cmd("HGETALL").arg(&key))?;
        let mut s = entry(&mut by, name);
        s.breaker = fields
            .get("state")
            .map_or(BreakerState::Closed, |v| BreakerState::parse(v));
        s.failures = fields
            .get("failures")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        s.opened_at_ms = fields.get("opened_at").and_then(|v| v.parse().ok());
        by.insert(name.to_string(), s);
    }
    let budgets = format!("{prefix}:budget:");
    let mut spend = 0.0;
    for key in conn.scan(&format!("{budgets}*:d{day}"))? {
        let Some(rest) = key.strip_prefix(&budgets) else {
            continue;
        };
        let value: Option<i64> = conn.query(redis::cmd("GET").arg(&key))?;
        let value = value.unwrap_or(0).max(0);
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            ["spend", _] => spend += value as f64 / 1e6,
            [name, .., what, _] => {
                let mut s = entry(&mut by, name);
                match *what {
                    "requests" => s.requests_today += value as u64,
                    "credits" => s.credits_today += value as u64,
                    _ => continue,
                }
                by.insert((*name).to_string(), s);
            }
            _ => {}
        }
    }
    Ok((by.into_values().collect(), spend))
}
