//! `[source] kind = "providers"`: each ticker's bars fetched from the pipeline's providers in
//! priority order. A provider is asked only when its circuit breaker lets a request through and
//! its rate limiter admits one (both shared by every process through Redis); when it fails, the
//! next is asked. A throttle pauses the provider's key for its `Retry-After` (a minute when it
//! gives none); an outage counts against its breaker. When every provider fails, the error names
//! each one's reason: a live work item is then retried and dead-lettered with it, a backtest
//! stops with it — nothing is dropped silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bar::{BarBatch, Tickers};
use crate::config::{LoadedPipeline, SourceSpec};
use crate::reject::Reject;
use crate::sources::redis_stream::Conn;
use crate::sources::{SourceError, WorkerInput};
use crate::time::{DAY, EventTime, parse_time};

use super::breaker::Breaker;
use super::http::Http;
use super::limiter::{Limit, RateLimiter};
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
}

/// A load's shared runtime, HTTP client and Redis connection.
struct Session {
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
            chain.push(Link {
                limiter: RateLimiter::new(
                    prefix,
                    kind.name(),
                    &entry.tier,
                    &limits(kind, entry.tier == "premium"),
                ),
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
    /// Redis connection of the limiters and breakers. `ticker` names the failure.
    fn session(&self, ticker: &str) -> Result<Session, SourceError> {
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
        let Session { rt, http, redis } = session;
        let req = BarRequest {
            ticker: ticker.to_string(),
            id,
            interval: self.interval,
            start: self.start,
            end: self.end,
            adjusted: self.adjusted,
        };
        let mut reasons = Vec::new();
        for link in &self.chain {
            let name = link.config.kind.name();
            let redis_err = |e: crate::sources::redis_stream::StreamError| {
                self.failed(ticker, vec![format!("redis: {e}")])
            };
            if let Some(wait) = link.breaker.allow(redis).map_err(redis_err)? {
                reasons.push(format!("{name}: circuit open (next probe in {wait:?})"));
                continue;
            }
            if let Err(e) = link.limiter.acquire(redis, &member(), self.timeout) {
                reasons.push(format!("{name}: {e}"));
                continue;
            }
            let got = rt.block_on(fetch(http, &link.config, &req));
            match got {
                Ok(f) => {
                    link.breaker.report(redis, true).map_err(redis_err)?;
                    // The wall clock is read here, at the source, never inside an operator.
                    let (bars, forming) =
                        completed(f.bars, self.interval, crate::time::wall_unix());
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
                            link.breaker.report(redis, false).map_err(redis_err)?;
                        }
                        ProviderError::Throttled { retry_after, .. } => {
                            let d = retry_after.unwrap_or(Duration::from_secs(60));
                            link.limiter.pause(redis, d).map_err(redis_err)?;
                        }
                        _ => {}
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
