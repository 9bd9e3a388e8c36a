//! Market-data providers over HTTP: one module per provider, each turning its documented body
//! into the graph's bars ([`Fetched`]) with UTC event times, and telling every error shape apart
//! ([`ProviderError`]): a throttle is retried later, a premium gate or an unknown ticker never.
//!
//! What every client shares lives here: the provider's base URL and key (from the environment
//! only: `FDP_<PROVIDER>_BASE_URL`, `FDP_<PROVIDER>_KEY`), the ticker rule checked before any URL
//! is built, percent-encoding, and keeping the key out of every error and log line. Bodies are
//! parsed by pure functions (`parse`), tested on the documented bodies; `fetch` adds the request.

pub mod alpha_vantage;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod controls;
pub mod finnhub;
pub mod fmp;
pub mod http;
pub mod limiter;
pub mod metrics;
pub mod polygon;
pub mod source;
pub mod statements;
pub mod status;
pub mod tiingo;
pub mod twelve_data;
pub mod yahoo;

use std::time::Duration;

pub use crate::config::provider::{Interval, ProviderKind};

use crate::bar::{Bar, BarBatch, TickerId};
use crate::fault::{Blame, Fault};
use crate::reject::{Action, Reason, Reject};
use crate::time::EventTime;

/// A key that prints as `<redacted>` in every `Debug` and `Display`, so no log line or error
/// built from a value holding it can show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The key itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a provider is reached and with which key.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which provider.
    pub kind: ProviderKind,
    /// Base URL without a trailing slash (a proxy's, or a test server's).
    pub base_url: String,
    /// The key, when the provider needs one.
    pub key: Option<Secret>,
}

impl ProviderConfig {
    /// The provider's configuration from the environment: `FDP_<PROVIDER>_BASE_URL` (default:
    /// the real host) and `FDP_<PROVIDER>_KEY`.
    pub fn from_env(kind: ProviderKind) -> Self {
        let prefix = kind.env_prefix();
        let base_url = std::env::var(format!("{prefix}_BASE_URL"))
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| kind.default_base_url().to_string());
        let key = std::env::var(format!("{prefix}_KEY"))
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(Secret::new);
        ProviderConfig::new(kind, &base_url, key)
    }

    /// A configuration with an explicit base URL and key.
    pub fn new(kind: ProviderKind, base_url: &str, key: Option<Secret>) -> Self {
        ProviderConfig {
            kind,
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// The key, or the error naming the variable to set.
    ///
    /// # Errors
    /// [`ProviderError::NoKey`] when none is configured.
    pub fn require_key(&self) -> Result<&str, ProviderError> {
        self.key
            .as_ref()
            .map(Secret::expose)
            .ok_or_else(|| ProviderError::NoKey {
                provider: self.kind.name(),
                env: self.kind.name().to_ascii_uppercase(),
            })
    }

    /// `text` with the key, if it appears, replaced by `<redacted>`: for anything that quotes a
    /// URL or a server's message back.
    pub fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(k) if !k.0.is_empty() => text.replace(&k.0, "<redacted>"),
            _ => text.to_string(),
        }
    }
}

/// One request: a ticker's bars in `[start, end]`.
#[derive(Debug, Clone)]
pub struct BarRequest {
    /// The ticker as the run spells it (checked against the ticker rule before any URL).
    pub ticker: String,
    /// The provider's spelling of it (`EUR/USD`, `C:EURUSD`), which goes into the URL; the
    /// ticker itself unless the pipeline maps it.
    pub symbol: String,
    /// Its id in the run's ticker table.
    pub id: TickerId,
    /// Bar length.
    pub interval: Interval,
    /// First time wanted (inclusive).
    pub start: EventTime,
    /// Last time wanted (inclusive).
    pub end: EventTime,
    /// Split- and dividend-adjusted prices where the provider offers them, else as traded.
    pub adjusted: bool,
}

/// What a provider gave for one request: its bars in time order (the live forming bar left
/// out), and the rows it could not use, each with the provider and field in its detail.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Usable bars, ascending, one per time.
    pub bars: BarBatch,
    /// Rows kept out, for the quarantine.
    pub rejects: Vec<Reject>,
}

impl Fetched {
    /// Sorts rows gathered in any order (some providers answer newest first, or as a JSON
    /// object), keeps those in the request's range, and quarantines a repeated time.
    fn finish(
        kind: ProviderKind,
        req: &BarRequest,
        mut rows: Vec<Bar>,
        mut rejects: Vec<Reject>,
    ) -> Fetched {
        rows.sort_by_key(|b| b.ts);
        let mut bars = BarBatch::with_capacity(rows.len());
        let mut last: Option<EventTime> = None;
        for b in rows {
            if b.ts < req.start || b.ts > req.end {
                continue;
            }
            if last == Some(b.ts) {
                rejects.push(reject(
                    kind,
                    req,
                    Some(b.ts),
                    Reason::DuplicateTime,
                    "the provider sent this time twice; the first bar is kept".into(),
                ));
                continue;
            }
            last = Some(b.ts);
            bars.push(b);
        }
        Fetched { bars, rejects }
    }
}

/// Checks a request's ticker against the project's ticker rule before any URL is built.
fn check_ticker(kind: ProviderKind, req: &BarRequest) -> Result<(), ProviderError> {
    check_names(kind, &req.ticker, &req.symbol)
}

/// [`check_ticker`] for a request that is not for bars: the run's ticker and the provider's
/// symbol for it.
fn check_names(kind: ProviderKind, ticker: &str, symbol: &str) -> Result<(), ProviderError> {
    crate::names::check_ticker(ticker)
        .and_then(|()| crate::names::check_provider_symbol(symbol))
        .map_err(|source| ProviderError::Ticker {
            provider: kind.name(),
            source,
        })
}

/// A bar from a provider's prices scaled by an adjustment factor (1: as given).
fn scaled_bar(
    req: &BarRequest,
    ts: EventTime,
    [open, high, low, close]: [f64; 4],
    volume: f64,
    factor: f64,
) -> Bar {
    Bar {
        ticker: req.id,
        ts,
        open: open * factor,
        high: high * factor,
        low: low * factor,
        close: close * factor,
        volume,
    }
}

/// A row's bar when all of open, high, low, close and volume are there, else a quarantine row
/// saying `missing` (which row, which fields).
fn bar_or_reject(
    kind: ProviderKind,
    req: &BarRequest,
    ts: EventTime,
    fields: [Option<f64>; 5],
    missing: impl FnOnce() -> String,
    rows: &mut Vec<Bar>,
    rejects: &mut Vec<Reject>,
) {
    match fields {
        [Some(o), Some(h), Some(l), Some(c), Some(v)] => {
            rows.push(scaled_bar(req, ts, [o, h, l, c], v, 1.0));
        }
        _ => rejects.push(reject(kind, req, Some(ts), Reason::MissingField, missing())),
    }
}

/// What an HTTP status means for providers whose statuses say it (Polygon, Finnhub): `None` for
/// success; 401 the key, 402/403 the plan, 429 a throttle, other 4xx a refused request, the rest
/// an outage. `message` is the provider's words.
fn status_error(
    kind: ProviderKind,
    status: u16,
    retry_after: Option<Duration>,
    message: impl FnOnce() -> String,
) -> Option<ProviderError> {
    let provider = kind.name();
    Some(match status {
        200..=299 => return None,
        401 => ProviderError::BadKey {
            provider,
            message: message(),
        },
        402 | 403 => ProviderError::Plan {
            provider,
            message: message(),
        },
        429 => ProviderError::Throttled {
            provider,
            retry_after,
            message: message(),
        },
        400..=499 => ProviderError::Refused {
            provider,
            message: message(),
        },
        _ => ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: message(),
        },
    })
}

/// A bar time from a provider that stamps daily bars at midnight New York (Polygon, Finnhub):
/// that New York date at midnight UTC for daily bars; an intraday bar's start as given.
fn new_york_bar_time(t: EventTime, interval: Interval) -> EventTime {
    use chrono::TimeZone;
    match interval {
        Interval::Day => match chrono_tz::America::New_York.timestamp_opt(t, 0) {
            chrono::LocalResult::Single(local) => crate::time::midnight(local.date_naive()),
            _ => crate::time::midnight(crate::time::date_of(t)),
        },
        Interval::Minutes(_) => t,
    }
}

/// A quarantine row for a provider's row: the provider and what was wrong in its detail, the
/// provider, ticker and interval as its origin.
fn reject(
    kind: ProviderKind,
    req: &BarRequest,
    ts: Option<EventTime>,
    reason: Reason,
    detail: String,
) -> Reject {
    Reject {
        ticker: req.ticker.clone(),
        ts,
        reason,
        action: Action::Rejected,
        detail: format!("{}: {detail}", kind.name()),
        origin: format!("{}:{}", kind.name(), req.ticker),
    }
}

/// What went wrong with a provider, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The ticker breaks the project's ticker rule: no URL was built.
    #[error("{provider}: {source}")]
    Ticker {
        /// The provider.
        provider: &'static str,
        /// The rule it breaks.
        source: crate::names::NameError,
    },
    /// The provider needs a key and none is configured.
    #[error("{provider}: no key: set FDP_{env}_KEY")]
    NoKey {
        /// The provider.
        provider: &'static str,
        /// Its environment prefix.
        env: String,
    },
    /// Rate limited or over quota: retry after the wait (when the provider said), or after the
    /// provider's quota window.
    #[error("{provider}: throttled ({message})")]
    Throttled {
        /// The provider.
        provider: &'static str,
        /// How long the provider asked to wait, when it said.
        retry_after: Option<Duration>,
        /// The provider's words (key removed).
        message: String,
    },
    /// The plan does not cover this endpoint or parameter: never retried.
    #[error("{provider}: not in the plan ({message})")]
    Plan {
        /// The provider.
        provider: &'static str,
        /// The provider's words (key removed).
        message: String,
    },
    /// The key was refused: never retried.
    #[error("{provider}: key refused ({message})")]
    BadKey {
        /// The provider.
        provider: &'static str,
        /// The provider's words (key removed).
        message: String,
    },
    /// The provider knows no such ticker (or it is delisted): never retried.
    #[error("{provider}: unknown ticker {ticker} ({message})")]
    UnknownTicker {
        /// The provider.
        provider: &'static str,
        /// The ticker.
        ticker: String,
        /// The provider's words.
        message: String,
    },
    /// The request itself was refused (a range too long for the interval, a bad parameter).
    #[error("{provider}: request refused ({message})")]
    Refused {
        /// The provider.
        provider: &'static str,
        /// The provider's words (key removed).
        message: String,
    },
    /// The provider is down or answered something that is not its format (HTML, a truncated
    /// body, a 5xx): retried later, and counted against its circuit breaker.
    #[error("{provider}: unavailable ({message})")]
    Unavailable {
        /// The provider.
        provider: &'static str,
        /// HTTP status, when there was an answer.
        status: Option<u16>,
        /// What was wrong (key removed).
        message: String,
    },
}

impl ProviderError {
    /// Whether trying again later may succeed (a throttle, an outage); a plan gate, a refused
    /// key or an unknown ticker never will.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Throttled { .. } | ProviderError::Unavailable { .. }
        )
    }
}

impl ProviderError {
    /// The error with the key removed from its words (a server may echo the request back).
    pub fn redacted(mut self, cfg: &ProviderConfig) -> Self {
        if let Some(m) = self.message_mut() {
            *m = cfg.redact(m);
        }
        self
    }

    fn message_mut(&mut self) -> Option<&mut String> {
        match self {
            ProviderError::Throttled { message, .. }
            | ProviderError::Plan { message, .. }
            | ProviderError::BadKey { message, .. }
            | ProviderError::UnknownTicker { message, .. }
            | ProviderError::Refused { message, .. }
            | ProviderError::Unavailable { message, .. } => Some(message),
            ProviderError::Ticker { .. } | ProviderError::NoKey { .. } => None,
        }
    }
}

impl Blame for ProviderError {
    fn fault(&self) -> Fault {
        match self {
            ProviderError::Ticker { .. }
            | ProviderError::NoKey { .. }
            | ProviderError::Plan { .. }
            | ProviderError::BadKey { .. }
            | ProviderError::UnknownTicker { .. }
            | ProviderError::Refused { .. } => Fault::Input,
            ProviderError::Throttled { .. } | ProviderError::Unavailable { .. } => Fault::Service,
        }
    }
}

/// The first characters of a body, for an error that must say what came back without quoting
/// a whole HTML page.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    let mut s: String = t.chars().take(120).collect();
    if t.chars().count() > 120 {
        s.push('…');
    }
    s
}

/// Percent-encodes a ticker for a URL path segment or query value (`^GSPC`, `EUR/USD`, `BRK.B`).
pub fn encode(ticker: &str) -> String {
    percent_encoding::utf8_percent_encode(ticker, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        // Unreserved characters stay readable (RFC 3986 §2.3).
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickers_are_encoded_for_urls() {
        assert_eq!(encode("BRK.B"), "BRK.B");
        assert_eq!(encode("^GSPC"), "%5EGSPC");
        assert_eq!(encode("EUR/USD"), "EUR%2FUSD");
        assert_eq!(encode("BTC-USD"), "BTC-USD");
    }

    #[test]
    fn a_key_never_prints() {
        let c = ProviderConfig::new(
            ProviderKind::AlphaVantage,
            "http://127.0.0.1:1/",
            Some(Secret::new("K3Y-S3CRET")),
        );
        assert_eq!(c.base_url, "http://127.0.0.1:1");
        assert!(!format!("{c:?}").contains("K3Y-S3CRET"));
        assert_eq!(
            c.redact("GET /query?apikey=K3Y-S3CRET failed"),
            "GET /query?apikey=<redacted> failed"
        );
    }
}
