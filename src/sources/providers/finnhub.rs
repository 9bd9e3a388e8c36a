//! Finnhub candles (`/stock/candle`), PROVIDERS.md §6 — a premium endpoint since 2024: a free key
//! gets 403 `You don't have access to this resource.`, classified as the plan (never retried).
//!
//! The key travels in the `X-Finnhub-Token` header, never in a URL. Candles are parallel arrays
//! like Yahoo's with `t` in Unix seconds; a daily candle's `t` is midnight New York, whose date is
//! the trading date (stamped at midnight UTC). `{"s":"no_data"}` is an empty range. Errors carry
//! `error`: 401 the key, 403 the plan, 429 a throttle.

use serde::Deserialize;

use crate::reject::Reason;

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, bar_or_reject,
    encode, new_york_bar_time, reject, snippet,
};

const KIND: ProviderKind = ProviderKind::Finnhub;

#[derive(Debug, Deserialize)]
struct Candles {
    s: Option<String>,
    #[serde(default)]
    t: Vec<Option<i64>>,
    #[serde(default)]
    o: Vec<Option<f64>>,
    #[serde(default)]
    h: Vec<Option<f64>>,
    #[serde(default)]
    l: Vec<Option<f64>>,
    #[serde(default)]
    c: Vec<Option<f64>>,
    #[serde(default)]
    v: Vec<Option<f64>>,
    error: Option<String>,
}

/// Finnhub's resolution for an interval.
fn resolution(i: Interval) -> Result<String, ProviderError> {
    match i {
        Interval::Day => Ok("D".into()),
        Interval::Minutes(m @ (1 | 5 | 15 | 30 | 60)) => Ok(m.to_string()),
        Interval::Minutes(m) => Err(ProviderError::Refused {
            provider: KIND.name(),
            message: format!("no {m}-minute candles (1, 5, 15, 30, 60 minutes or 1d)"),
        }),
    }
}

/// The request's URL.
///
/// # Errors
/// A ticker that breaks the ticker rule, an interval Finnhub does not serve, or no key.
pub fn url(cfg: &ProviderConfig, req: &BarRequest) -> Result<String, ProviderError> {
    super::check_ticker(KIND, req)?;
    cfg.require_key()?;
    Ok(format!(
        "{}/stock/candle?symbol={}&resolution={}&from={}&to={}",
        cfg.base_url,
        encode(&req.symbol),
        resolution(req.interval)?,
        req.start,
        req.end
    ))
}

/// Fetches one request.
///
/// # Errors
/// See [`parse`].
pub async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let u = url(cfg, req)?;
    let auth = [("X-Finnhub-Token", cfg.require_key()?.to_string())];
    let a = http.get(cfg, &u, &auth).await?;
    parse(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))
}

/// Turns an answer into bars, or classifies it.
///
/// # Errors
/// [`ProviderError::BadKey`] (401), [`ProviderError::Plan`] (403: candles need a premium key),
/// [`ProviderError::Throttled`] (429), [`ProviderError::Unavailable`] (5xx, not JSON, arrays of
/// unequal length).
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let provider = KIND.name();
    let parsed: Result<Candles, _> = serde_json::from_slice(body);
    let words = || match &parsed {
        Ok(Candles { error: Some(e), .. }) => e.clone(),
        _ => snippet(body),
    };
    if let Some(e) = super::status_error(KIND, status, retry_after, words) {
        return Err(e);
    }
    let message = words();
    let c = parsed.map_err(|e| ProviderError::Unavailable {
        provider,
        status: Some(status),
        message: format!("not a candle body ({e}): {message}"),
    })?;
    match c.s.as_deref() {
        Some("no_data") => return Ok(Fetched::default()),
        Some("ok") => {}
        other => {
            return Err(ProviderError::Unavailable {
                provider,
                status: Some(status),
                message: format!("status {other:?}: {}", c.error.unwrap_or_default()),
            });
        }
    }
    let n = c.t.len();
    let lengths = [c.o.len(), c.h.len(), c.l.len(), c.c.len(), c.v.len()];
    if lengths.iter().any(|&l| l != n) {
        return Err(ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: format!("{n} times but arrays of {lengths:?}: an inconsistent body"),
        });
    }
    let mut rows = Vec::with_capacity(n);
    let mut rejects = Vec::new();
    for i in 0..n {
        let Some(t) = c.t[i] else {
            rejects.push(reject(
                KIND,
                req,
                None,
                Reason::MissingField,
                format!("candle {i} has no time"),
            ));
            continue;
        };
        bar_or_reject(
            KIND,
            req,
            new_york_bar_time(t, req.interval),
            [c.o[i], c.h[i], c.l[i], c.c[i], c.v[i]],
            || format!("candle at t={t} has a null field"),
            &mut rows,
            &mut rejects,
        );
    }
    Ok(Fetched::finish(KIND, req, rows, rejects))
}
