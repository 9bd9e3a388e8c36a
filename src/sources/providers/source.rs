//! `[source] kind = "providers"`: each ticker's bars fetched from the pipeline's providers in
//! priority order. A provider is asked only when its circuit breaker lets a request through and
//! its rate limiter admits one (both shared by every process through Redis); when it fails, the
//! next is asked. A throttle pauses the provider's key for its `Retry-After` (a minute when it
//! gives none); an outage counts against its breaker. When every provider fails, the error names
//! each one's reason: a live work item is then retried and dead-lettered with it, a backtest
//! stops with it — nothing is dropped silently.

use std::time::Duration;

use crate::bar::{BarBatch, TickerId, Tickers};
use crate::config::{LoadedPipeline, SourceSpec};
use crate::reject::Reject;
use crate::sources::{SourceError, WorkerInput};
use crate::time::{DAY, EventTime, TimeText};

use super::cache::ResponseCache;
use super::controls::{Controls, Link, Session};
use super::http::Http;
use super::metrics;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, alpha_vantage,
    finnhub, polygon, tiingo, twelve_data, yahoo,
};

/// The providers source.
#[derive(Debug, Clone)]
pub struct ProviderSource {
    controls: Controls,
    chain: Vec<Link>,
    tickers: Vec<String>,
    interval: Interval,
    adjusted: bool,
    start: EventTime,
    end: EventTime,
    cache: ResponseCache,
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
        let controls = Controls::new(
            prefix,
            redis_url.as_deref(),
            Duration::from_secs(*timeout_seconds),
            (
                *breaker_failures,
                Duration::from_secs(*breaker_cooldown_seconds),
            ),
            *daily_spend,
            *max_in_flight,
        );
        let mut chain = Vec::new();
        for entry in providers {
            let kind = ProviderKind::parse(&entry.name)
                .filter(|k| k.gives_bars())
                .ok_or_else(|| bad(format!("{} gives no bars", entry.name)))?;
            chain.push(controls.link(kind, entry));
        }
        let time = |t: &TimeText| t.at().ok_or_else(|| bad(format!("time {:?}", t.as_str())));
        Ok(ProviderSource {
            cache: ResponseCache::new(prefix, Duration::from_secs(*cache_ttl_seconds)),
            controls,
            chain,
            tickers: tickers.clone(),
            interval: Interval::parse(interval).map_err(bad)?,
            adjusted: *adjusted,
            start: time(start)?,
            // The end date is inclusive: its whole day.
            end: time(end)?.saturating_add(DAY - 1),
        })
    }

    /// The source with `key` for every provider of `kind` instead of `FDP_<PROVIDER>_KEY`: for
    /// a program that holds the key itself (the fetch benchmark's loopback server takes any).
    pub fn with_key(mut self, kind: ProviderKind, key: super::Secret) -> Self {
        for link in self.chain.iter_mut().filter(|l| l.config.kind == kind) {
            link.config.key = Some(key.clone());
        }
        self
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
        self.controls
            .session()
            .map_err(|e| self.failed(ticker, vec![e]))
    }

    /// The settings the pipeline's provider controls share (for fundamentals fetched beside).
    pub fn controls(&self) -> &Controls {
        &self.controls
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
        // The wall clock is read here, at the source, never inside an operator.
        let now = crate::time::wall_unix();
        let redis_err = |e: crate::sources::redis_stream::StreamError| {
            self.failed(ticker, vec![format!("redis: {e}")])
        };
        let request = |link: &Link| BarRequest {
            ticker: ticker.to_string(),
            symbol: link.symbol(ticker),
            id,
            interval: self.interval,
            start,
            end,
            adjusted: self.adjusted,
        };
        // Any provider's cached answer for the range before any request goes out.
        let cacheable = self
            .chain
            .first()
            .is_some_and(|l| self.cache.cacheable(&request(l), now));
        if cacheable {
            for link in &self.chain {
                let kind = link.config.kind;
                let hit = self
                    .cache
                    .get(&mut session.redis, kind, &request(link))
                    .map_err(redis_err)?;
                metrics::cache(kind.name(), hit.is_some());
                if let Some(f) = hit {
                    tracing::debug!(
                        provider = kind.name(),
                        ticker,
                        bars = f.bars.len(),
                        "cached"
                    );
                    return Ok((completed(f.bars, self.interval, now).0, f.rejects));
                }
            }
        }
        let mut reasons = Vec::new();
        for link in &self.chain {
            let req = request(link);
            let cfg = &link.config;
            let asked = self
                .controls
                .ask(session, link, ticker, |http| async move {
                    fetch(&http, cfg, &req).await
                })
                .map_err(redis_err)?;
            match asked {
                Ok(f) => {
                    if cacheable {
                        self.cache
                            .put(&mut session.redis, cfg.kind, &request(link), &f)
                            .map_err(redis_err)?;
                    }
                    let (bars, forming) = completed(f.bars, self.interval, now);
                    tracing::debug!(
                        provider = cfg.kind.name(),
                        ticker,
                        bars = bars.len(),
                        forming,
                        "fetched"
                    );
                    return Ok((bars, f.rejects));
                }
                Err(reason) => reasons.push(reason),
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
        ProviderKind::Fmp => Err(ProviderError::Refused {
            provider: cfg.kind.name(),
            message: "FMP gives fundamentals here, not bars".into(),
        }),
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
