//! `[source] kind = "providers"`: each ticker's bars fetched from the pipeline's providers in
//! priority order. A provider is asked only when its circuit breaker lets a request through and
//! its rate limiter admits one (both shared by every process through Redis); when it fails, the
//! next is asked. A throttle pauses the provider's key for its `Retry-After` (a minute when it
//! gives none); an outage counts against its breaker. When every provider fails, the error names
//! each one's reason: a live work item is then retried and dead-lettered with it, a backtest
//! stops with it — nothing is dropped silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bar::{BarBatch, TickerId, Tickers};
use crate::config::{LoadedPipeline, SourceSpec};
use crate::reject::Reject;
use crate::sources::redis_stream::Conn;
use crate::sources::{SourceError, WorkerInput};
use crate::time::{DAY, EventTime, parse_time};

use super::breaker::{Breaker, BreakerState};
use super::budget::{Budget, Charge, TierManager};
use super::cache::ResponseCache;
use super::http::Http;
use super::limiter::{Limit, RateLimiter};
use super::metrics::{self, Slots};
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, alpha_vantage,
    finnhub, polygon, tiingo, twelve_data, yahoo,
};

/// One provider of the chain with its shared controls.
#[derive(Debug, Clone)]
struct Link {
    config: ProviderConfig,
    limiter: RateLimiter,
    breaker: Breaker,
    budget: TierManager,
    /// The provider's spelling of the run's tickers, where the pipeline maps them.
    symbols: BTreeMap<String, String>,
}

/// A load's shared runtime, HTTP client and Redis connection: open one with
/// [`ProviderSource::session`] and fetch through it.
pub struct Session {
    rt: tokio::runtime::Runtime,
    http: Http,
    redis: Conn,
}

/// The providers source.
#[derive(Debug, Clone)]
pub struct ProviderSource {
    chain: Vec<Link>,
    tickers: Vec<String>,
    interval: Interval,
    adjusted: bool,
    start: EventTime,
    end: EventTime,
    redis_url: String,
    timeout: Duration,
    cache: ResponseCache,
    slots: Arc<Slots>,
}

/// The documented limits a provider's key gets on a tier (PROVIDERS.md §1.2 to §6.2). Yahoo
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

impl ProviderSource {
    /// Resolves the pipeline's `kind = "providers"` source: each provider's base URL (the
    /// pipeline's, else `FDP_<PROVIDER>_BASE_URL`, else its host) and key (`FDP_<PROVIDER>_KEY`).
    ///
    /// # Errors
    /// Not a providers source, or one naming an unknown provider or interval (a loaded file's
    /// validation refuses those first).
    pub fn open(p: &LoadedPipeline) -> Result<ProviderSource, SourceError> {
        let SourceSpec::Providers {
            providers,
            tickers,
            interval,
            adjusted,
            start,
            end,
            redis_url,
            prefix,
            timeout_seconds,
            breaker_failures,
            breaker_cooldown_seconds,
            daily_spend,
            cache_ttl_seconds,
            max_in_flight,
        } = &p.pipeline.source
        else {
            return Err(SourceError::Empty {
                selection: "not a providers source".into(),
            });
        };
        let bad = |what: String| SourceError::Empty { selection: what };
        let mut chain = Vec::new();
        for entry in providers {
            let kind = ProviderKind::parse(&entry.name)
                .ok_or_else(|| bad(format!("unknown provider {}", entry.name)))?;
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
            chain.push(Link {
                limiter: RateLimiter::new(prefix, kind.name(), &entry.tier, &limits(kind, premium)),
                budget: TierManager::new(prefix, kind.name(), &entry.tier, budget, *daily_spend),
                symbols: entry.symbols.clone(),
                breaker: Breaker::new(
                    prefix,
                    kind.name(),
                    *breaker_failures,
                    Duration::from_secs(*breaker_cooldown_seconds),
                    Duration::from_secs(*timeout_seconds * 2),
                ),
                config,
            });
        }
        let time = |t: &str| parse_time(t).ok_or_else(|| bad(format!("time {t:?}")));
        Ok(ProviderSource {
            slots: Slots::process(prefix, *max_in_flight),
            cache: ResponseCache::new(prefix, Duration::from_secs(*cache_ttl_seconds)),
            chain,
            tickers: tickers.clone(),
            interval: Interval::parse(interval).map_err(bad)?,
            adjusted: *adjusted,
            start: time(start)?,
            // The end date is inclusive: its whole day.
            end: time(end)?.saturating_add(DAY - 1),
            redis_url: redis_url.clone().unwrap_or_else(|| {
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
            }),
            timeout: Duration::from_secs(*timeout_seconds),
        })
    }

    /// Bar length.
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// The pipeline's first and last times (the end date's whole day).
    pub fn span(&self) -> (EventTime, EventTime) {
        (self.start, self.end)
    }

    /// The run's ticker table.
    pub fn tickers(&self) -> Tickers {
        Tickers::new(self.tickers.iter().cloned())
    }

    /// Fetches one ticker's bars from the first provider that gives them.
    ///
    /// # Errors
    /// Every provider failed or was unavailable ([`SourceError::Providers`], each one's reason),
    /// or Redis (the limiters and breakers) is unreachable.
    pub fn load_ticker(
        &self,
        ticker: &str,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let mut session = self.session(ticker)?;
        self.fetch_ticker(&mut session, ticker, tickers)
    }

    /// What every request of a load shares: a runtime, the HTTP client (TLS set up once) and the
    /// Redis connection of the limiters, breakers, budgets and cache. `ticker` names the failure.
    ///
    /// # Errors
    /// The runtime or TLS cannot start, or Redis is unreachable.
    pub fn session(&self, ticker: &str) -> Result<Session, SourceError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.failed(ticker, vec![format!("runtime: {e}")]))?;
        let http = Http::new(self.timeout).map_err(|e| self.failed(ticker, vec![e.to_string()]))?;
        let redis = Conn::open(&self.redis_url)
            .map_err(|e| self.failed(ticker, vec![format!("redis: {e}")]))?;
        Ok(Session { rt, http, redis })
    }

    /// [`ProviderSource::load_ticker`] on an open session.
    fn fetch_ticker(
        &self,
        session: &mut Session,
        ticker: &str,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let Some(id) = tickers.id(ticker) else {
            return Ok((BarBatch::default(), Vec::new()));
        };
        self.fetch_span(session, ticker, id, self.start, self.end)
    }

    /// One ticker's completed bars in `[start, end]` from the first provider that gives them:
    /// from the response cache when a provider's answer for the range is there; else from a
    /// provider whose breaker is closed, whose limiter admits the request and whose budgets
    /// allow it, within the process's cap on requests in flight.
    ///
    /// # Errors
    /// Every provider failed or was skipped ([`SourceError::Providers`], each one's reason), or
    /// Redis is unreachable.
    pub fn fetch_span(
        &self,
        session: &mut Session,
        ticker: &str,
        id: TickerId,
        start: EventTime,
        end: EventTime,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let Session { rt, http, redis } = session;
        // The wall clock is read here, at the source, never inside an operator.
        let now = crate::time::wall_unix();
        let redis_err = |e: crate::sources::redis_stream::StreamError| {
            self.failed(ticker, vec![format!("redis: {e}")])
        };
        let mut reasons = Vec::new();
        for link in &self.chain {
            let kind = link.config.kind;
            let name = kind.name();
            let req = BarRequest {
                ticker: ticker.to_string(),
                symbol: link
                    .symbols
                    .get(ticker)
                    .cloned()
                    .unwrap_or_else(|| ticker.to_string()),
                id,
                interval: self.interval,
                start,
                end,
                adjusted: self.adjusted,
            };
            let cacheable = self.cache.cacheable(&req, now);
            if cacheable {
                let hit = self.cache.get(redis, kind, &req).map_err(redis_err)?;
                metrics::cache(name, hit.is_some());
                if let Some(f) = hit {
                    tracing::debug!(provider = name, ticker, bars = f.bars.len(), "cached");
                    return Ok((completed(f.bars, self.interval, now).0, f.rejects));
                }
            }
            if let Some(wait) = link.breaker.allow(redis).map_err(redis_err)? {
                metrics::breaker(name, BreakerState::Open);
                metrics::request(name, "skipped_breaker");
                reasons.push(format!("{name}: circuit open (next probe in {wait:?})"));
                continue;
            }
            match link.limiter.acquire(redis, &member(), self.timeout) {
                Ok(waited) => metrics::limiter_waited(name, waited),
                Err(e) => {
                    metrics::request(name, "skipped_limiter");
                    reasons.push(format!("{name}: {e}"));
                    continue;
                }
            }
            match link.budget.charge(redis).map_err(redis_err)? {
                Charge::Refused { budget, resets_in } => {
                    metrics::request(name, "skipped_budget");
                    reasons.push(format!(
                        "{name}: {budget} budget spent (resets in {}s)",
                        resets_in.as_secs()
                    ));
                    continue;
                }
                Charge::Charged { spent, warn } => {
                    metrics::spent(name, link.budget.credits(), link.budget.cost());
                    if warn {
                        tracing::warn!(
                            provider = name,
                            spent,
                            "daily provider spend past 80 % of its budget"
                        );
                    }
                }
            }
            let got = {
                let _slot = self.slots.take();
                rt.block_on(fetch(http, &link.config, &req))
            };
            match got {
                Ok(f) => {
                    metrics::request(name, "ok");
                    let state = link.breaker.report(redis, true).map_err(redis_err)?;
                    metrics::breaker(name, state);
                    if cacheable {
                        self.cache.put(redis, kind, &req, &f).map_err(redis_err)?;
                    }
                    let (bars, forming) = completed(f.bars, self.interval, now);
                    tracing::debug!(
                        provider = name,
                        ticker,
                        bars = bars.len(),
                        forming,
                        "fetched"
                    );
                    return Ok((bars, f.rejects));
                }
                Err(e) => {
                    tracing::warn!(provider = name, ticker, error = %e, "provider failed");
                    match &e {
                        ProviderError::Unavailable { .. } => {
                            metrics::request(name, "unavailable");
                            let state = link.breaker.report(redis, false).map_err(redis_err)?;
                            metrics::breaker(name, state);
                        }
                        ProviderError::Throttled { retry_after, .. } => {
                            metrics::request(name, "throttled");
                            let d = retry_after.unwrap_or(Duration::from_secs(60));
                            link.limiter.pause(redis, d).map_err(redis_err)?;
                        }
                        _ => metrics::request(name, "refused"),
                    }
                    reasons.push(e.to_string());
                }
            }
        }
        Err(self.failed(ticker, reasons))
    }

    fn failed(&self, ticker: &str, reasons: Vec<String>) -> SourceError {
        SourceError::Providers {
            ticker: ticker.to_string(),
            reasons: reasons.join("; "),
        }
    }

    /// Loads the share of worker `index` of `peers`: its tickers, one after another.
    ///
    /// # Errors
    /// A ticker no provider could give (see [`ProviderSource::load_ticker`]).
    pub fn load(
        &self,
        index: usize,
        peers: usize,
        tickers: &Tickers,
    ) -> Result<WorkerInput, SourceError> {
        let mut session = None;
        crate::sources::load_owned(index, peers, tickers, |name| {
            let s = match &mut session {
                Some(s) => s,
                None => session.insert(self.session(name)?),
            };
            self.fetch_ticker(s, name, tickers)
        })
    }
}

/// The bars whose period has ended by `now` (a provider may send the one still forming, whose
/// prices will change), and how many were left out. A daily bar, stamped at midnight UTC of its
/// date, counts as ended once that UTC day has: a session that closed today is read tomorrow.
fn completed(bars: BarBatch, interval: Interval, now: EventTime) -> (BarBatch, usize) {
    let len = interval.seconds();
    let mut kept = BarBatch::with_capacity(bars.len());
    for b in bars.iter().filter(|b| b.ts.saturating_add(len) <= now) {
        kept.push(b);
    }
    let left_out = bars.len() - kept.len();
    (kept, left_out)
}

/// One request to one provider.
async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    match cfg.kind {
        ProviderKind::Yahoo => yahoo::fetch(http, cfg, req).await,
        ProviderKind::AlphaVantage => alpha_vantage::fetch(http, cfg, req).await,
        ProviderKind::Polygon => polygon::fetch(http, cfg, req).await,
        ProviderKind::Tiingo => tiingo::fetch(http, cfg, req).await,
        ProviderKind::TwelveData => twelve_data::fetch(http, cfg, req).await,
        ProviderKind::Finnhub => finnhub::fetch(http, cfg, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_still_forming_is_left_out() {
        let mut bars = BarBatch::default();
        for ts in [0, 300, 600] {
            bars.push(crate::bar::Bar {
                ticker: 0,
                ts,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            });
        }
        let (kept, forming) = completed(bars, Interval::Minutes(5), 899);
        assert_eq!((kept.ts, forming), (vec![0, 300], 1));
    }
}
