//! What every request to a provider passes through, bars or fundamentals alike: its circuit
//! breaker, its rate limiter and its budgets (all three shared by every process through Redis),
//! then the process's cap on requests in flight. [`Controls::ask`] runs one request through
//! them and records what it came to — a success closes the breaker, an outage counts against
//! it, a throttle pauses the key for its `Retry-After` (a minute when it gives none) — and
//! answers either the value or the reason the provider was passed over, for the caller to try
//! the next one.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::ProviderEntry;
use crate::sources::redis_stream::{Conn, StreamError};

use super::breaker::{Admit, Breaker};
use super::budget::{Budget, Charge, TierManager};
use super::http::Http;
use super::limiter::{Limit, RateLimiter};
use super::metrics::{self, Slots};
use super::{ProviderConfig, ProviderError, ProviderKind};

/// One provider with its shared controls.
#[derive(Debug, Clone)]
pub struct Link {
    /// Where it is reached, with which key.
    pub config: ProviderConfig,
    limiter: RateLimiter,
    breaker: Breaker,
    budget: TierManager,
    /// The provider's spelling of the run's tickers, where the pipeline maps them.
    symbols: BTreeMap<String, String>,
}

impl Link {
    /// The provider's spelling of `ticker` (the ticker itself unless the pipeline maps it).
    pub fn symbol(&self, ticker: &str) -> String {
        self.symbols
            .get(ticker)
            .cloned()
            .unwrap_or_else(|| ticker.to_string())
    }
}

/// What a load's requests share: a runtime, the HTTP client (TLS set up once) and the Redis
/// connection of the limiters, breakers, budgets and cache.
pub struct Session {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) http: Http,
    pub(super) redis: Conn,
}

/// The settings the controls of a pipeline's providers share.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Redis key prefix of the limiters, breakers, budgets and cache.
    pub prefix: String,
    /// Redis holding them.
    pub redis_url: String,
    /// Seconds a request may take.
    pub timeout: Duration,
    /// Consecutive failures that open a breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses before its probe.
    pub breaker_cooldown: Duration,
    /// Money per UTC day across providers.
    pub daily_spend: Option<f64>,
    slots: Arc<Slots>,
}

/// The documented limits a provider's key gets on a tier (PROVIDERS.md §1.2 to §7.2). Yahoo
/// publishes none: a pace well under what gets an address blocked.
fn limits(kind: ProviderKind, premium: bool) -> Vec<Limit> {
    let per = |count, secs| Limit {
        count,
        window: Duration::from_secs(secs),
    };
    match (kind, premium) {
        (ProviderKind::Yahoo, _) => vec![per(2, 1), per(300, 3_600)],
        (ProviderKind::AlphaVantage, false) => vec![per(1, 1), per(5, 60), per(25, 86_400)],
        (ProviderKind::AlphaVantage, true) => vec![per(75, 60)],
        (ProviderKind::Polygon, false) => vec![per(5, 60)],
        (ProviderKind::Polygon, true) => vec![per(100, 1)],
        (ProviderKind::Tiingo, false) => vec![per(50, 3_600), per(1_000, 86_400)],
        (ProviderKind::Tiingo, true) => vec![per(100_000, 86_400)],
        (ProviderKind::TwelveData, false) => vec![per(8, 60), per(800, 86_400)],
        (ProviderKind::TwelveData, true) => vec![per(55, 60)],
        (ProviderKind::Finnhub, false) => vec![per(30, 1), per(60, 60)],
        (ProviderKind::Finnhub, true) => vec![per(30, 1), per(300, 60)],
        // Basic: 250 a day; Starter: 300 a minute.
        (ProviderKind::Fmp, false) => vec![per(250, 86_400)],
        (ProviderKind::Fmp, true) => vec![per(300, 60)],
    }
}

/// The documented daily quota of a provider's tier, the default daily request budget: a provider
/// that has spent it is skipped until midnight UTC instead of being asked and refusing.
fn daily_quota(kind: ProviderKind, premium: bool) -> Option<u32> {
    limits(kind, premium)
        .iter()
        .find(|l| l.window == Duration::from_secs(86_400))
        .map(|l| l.count)
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A limiter member unique across processes, threads and requests.
fn member() -> String {
    format!(
        "{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        REQUESTS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Controls {
    /// The controls under `prefix` in the Redis at `redis_url` (default: `REDIS_URL`, else the
    /// local server), with at most `max_in_flight` requests in flight in this process.
    pub fn new(
        prefix: &str,
        redis_url: Option<&str>,
        timeout: Duration,
        breaker: (u32, Duration),
        daily_spend: Option<f64>,
        max_in_flight: usize,
    ) -> Controls {
        Controls {
            prefix: prefix.to_string(),
            redis_url: redis_url.map_or_else(
                || std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                str::to_string,
            ),
            timeout,
            breaker_failures: breaker.0,
            breaker_cooldown: breaker.1,
            daily_spend,
            slots: Slots::process(prefix, max_in_flight),
        }
    }

    /// The provider of a pipeline entry with its limiter (the tier's documented limits), breaker
    /// and budgets; its base URL is the entry's, else `FDP_<PROVIDER>_BASE_URL`, else its host,
    /// and its key `FDP_<PROVIDER>_KEY`.
    pub fn link(&self, kind: ProviderKind, entry: &ProviderEntry) -> Link {
        let mut config = ProviderConfig::from_env(kind);
        if let Some(u) = &entry.base_url {
            config = ProviderConfig::new(kind, u, config.key);
        }
        let premium = entry.tier == "premium";
        let budget = Budget {
            requests_per_minute: entry.requests_per_minute,
            requests_per_day: entry.requests_per_day.or(daily_quota(kind, premium)),
            credits_per_request: entry.credits_per_request,
            credits_per_minute: entry.credits_per_minute,
            credits_per_day: entry.credits_per_day,
            cost_per_request: entry.cost_per_request,
        };
        let p = &self.prefix;
        Link {
            limiter: RateLimiter::new(p, kind.name(), &entry.tier, &limits(kind, premium)),
            budget: TierManager::new(p, kind.name(), &entry.tier, budget, self.daily_spend),
            symbols: entry.symbols.clone(),
            breaker: Breaker::new(
                p,
                kind.name(),
                self.breaker_failures,
                self.breaker_cooldown,
                self.timeout * 2,
            ),
            config,
        }
    }

    /// Opens what a load's requests share.
    ///
    /// # Errors
    /// The runtime or TLS cannot start, or Redis is unreachable; the words say which.
    pub fn session(&self) -> Result<Session, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let http = Http::new(self.timeout).map_err(|e| e.to_string())?;
        let redis = Conn::open(&self.redis_url).map_err(|e| format!("redis: {e}"))?;
        Ok(Session { rt, http, redis })
    }

    /// Runs `call` against `link` if its breaker, limiter and budgets let it, within the cap on
    /// requests in flight, and records the outcome. `Ok(Err(reason))` when the provider was
    /// passed over or failed, for the caller to ask the next; `what` names the request in logs.
    ///
    /// # Errors
    /// Redis failed.
    pub fn ask<T, F, Fut>(
        &self,
        session: &mut Session,
        link: &Link,
        what: &str,
        call: F,
    ) -> Result<Result<T, String>, StreamError>
    where
        F: FnOnce(Http) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let Session { rt, http, redis } = session;
        let name = link.config.kind.name();
        match link.breaker.allow(redis)? {
            Admit::Go(state) => metrics::breaker(name, state),
            Admit::Wait(state, wait) => {
                metrics::breaker(name, state);
                metrics::request(name, "skipped_breaker");
                return Ok(Err(format!(
                    "{name}: circuit {} (next probe in {wait:?})",
                    state.as_str()
                )));
            }
        }
        match link.limiter.acquire(redis, &member(), self.timeout) {
            Ok(waited) => metrics::limiter_waited(name, waited),
            Err(e) => {
                metrics::request(name, "skipped_limiter");
                return Ok(Err(format!("{name}: {e}")));
            }
        }
        match link.budget.charge(redis)? {
            Charge::Refused { budget, resets_in } => {
                metrics::request(name, "skipped_budget");
                return Ok(Err(format!(
                    "{name}: {budget} budget spent (resets in {}s)",
                    resets_in.as_secs()
                )));
            }
            Charge::Charged { spent, warn } => {
                metrics::spent(name, link.budget.credits(), link.budget.cost());
                if warn {
                    tracing::warn!(
                        provider = name,
                        spent,
                        "daily provider spend past 80 % of its budget"
                    );
                    crate::alert::raise(
                        "providers:daily_spend",
                        crate::alert::Severity::Warning,
                        "provider spend past 80 % of the daily budget",
                        format!(
                            "{spent} spent today after a request to {name}; at 100 % every provider that costs money is refused until 00:00 UTC"
                        ),
                    );
                }
            }
        }
        let got = {
            let _slot = self.slots.take();
            // A client clone shares its connection pool.
            rt.block_on(call(http.clone()))
        };
        match got {
            Ok(v) => {
                metrics::request(name, "ok");
                metrics::breaker(name, link.breaker.report(redis, true)?);
                crate::alert::resolve(&format!("breaker:{name}"), "the provider answers again");
                Ok(Ok(v))
            }
            Err(e) => {
                tracing::warn!(provider = name, what, error = %e, "provider failed");
                match &e {
                    ProviderError::Unavailable { .. } => {
                        metrics::request(name, "unavailable");
                        let state = link.breaker.report(redis, false)?;
                        metrics::breaker(name, state);
                        if state == super::breaker::BreakerState::Open {
                            crate::alert::raise(
                                format!("breaker:{name}"),
                                crate::alert::Severity::Warning,
                                format!("{name}: circuit open"),
                                format!("requests fail over to the next provider; last: {e}"),
                            );
                        }
                    }
                    ProviderError::Throttled { retry_after, .. } => {
                        metrics::request(name, "throttled");
                        let d = retry_after.unwrap_or(Duration::from_secs(60));
                        link.limiter.pause(redis, d)?;
                    }
                    _ => metrics::request(name, "refused"),
                }
                Ok(Err(e.to_string()))
            }
        }
    }
}
