//! Finnhub candles (`/stock/candle`) and news sentiment (`/news-sentiment`), PROVIDERS.md §6 —
//! both premium: a free key gets 403 `You don't have access to this resource.`, classified as
//! the plan (never retried).
//!
//! The key travels in the `X-Finnhub-Token` header, never in a URL. Candles are parallel arrays
//! like Yahoo's with `t` in Unix seconds; a daily candle's `t` is midnight New York, whose date is
//! the trading date (stamped at midnight UTC). `{"s":"no_data"}` is an empty range. Errors carry
//! `error`: 401 the key, 403 the plan, 429 a throttle.
//!
//! A sentiment body carries no time of its own: it is a snapshot as of its fetch. Its numbers
//! may come as integers (`"bearishPercent": 0`) or strings; percents are 0–1 fractions, and a
//! value that is not a number, or a fraction outside [0, 1], is quarantined with the field and
//! left out. `{}` (a symbol Finnhub has nothing on) is an empty snapshot.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reject::{Action, Reason, Reject};

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

/// A `/news-sentiment` snapshot as kept: the body with bad values left out (`None` when Finnhub
/// had nothing), and what was quarantined.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The body, checked.
    pub body: Option<Map<String, Value>>,
    /// Values kept out.
    pub rejects: Vec<Reject>,
}

/// The numeric fields of a sentiment body (`group.field` for nested ones), and whether each is
/// a 0–1 fraction.
const SENTIMENT_FIELDS: [(&str, bool); 8] = [
    ("companyNewsScore", false),
    ("sectorAverageBullishPercent", true),
    ("sectorAverageNewsScore", false),
    ("sentiment.bullishPercent", true),
    ("sentiment.bearishPercent", true),
    ("buzz.buzz", false),
    ("buzz.articlesInLastWeek", false),
    ("buzz.weeklyAverage", false),
];

/// The `/news-sentiment` URL for `symbol` (Finnhub's spelling of `ticker`).
///
/// # Errors
/// A ticker or symbol that breaks the ticker rule, or no key.
pub fn sentiment_url(
    cfg: &ProviderConfig,
    ticker: &str,
    symbol: &str,
) -> Result<String, ProviderError> {
    super::check_names(KIND, ticker, symbol)?;
    cfg.require_key()?;
    Ok(format!(
        "{}/news-sentiment?symbol={}",
        cfg.base_url,
        encode(symbol)
    ))
}

/// Fetches one sentiment snapshot.
///
/// # Errors
/// See [`parse_sentiment`].
pub async fn sentiment(
    http: &Http,
    cfg: &ProviderConfig,
    ticker: &str,
    symbol: &str,
) -> Result<Snapshot, ProviderError> {
    let u = sentiment_url(cfg, ticker, symbol)?;
    let auth = [("X-Finnhub-Token", cfg.require_key()?.to_string())];
    let a = http.get(cfg, &u, &auth).await?;
    parse_sentiment(a.status, a.retry_after, &a.body, ticker).map_err(|e| e.redacted(cfg))
}

/// Turns a `/news-sentiment` answer into a checked snapshot, or classifies it.
///
/// # Errors
/// As [`parse`] for statuses; [`ProviderError::Unavailable`] for a body that is not a JSON
/// object.
pub fn parse_sentiment(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    ticker: &str,
) -> Result<Snapshot, ProviderError> {
    let provider = KIND.name();
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let words = || match &parsed {
        Ok(v) => v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| snippet(body), str::to_string),
        Err(_) => snippet(body),
    };
    if let Some(e) = super::status_error(KIND, status, retry_after, words) {
        return Err(e);
    }
    let message = words();
    let mut map = match parsed {
        Ok(Value::Object(m)) if m.contains_key("error") => {
            return Err(ProviderError::Unavailable {
                provider,
                status: Some(status),
                message,
            });
        }
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => {
            return Err(ProviderError::Unavailable {
                provider,
                status: Some(status),
                message: format!("not a sentiment object: {}", snippet(body)),
            });
        }
    };
    let mut rejects = Vec::new();
    let mut any = false;
    for (path, fraction) in SENTIMENT_FIELDS {
        let (group, field) = match path.split_once('.') {
            Some((g, f)) => (Some(g), f),
            None => (None, path),
        };
        let holder = match group {
            Some(g) => match map.get_mut(g) {
                Some(Value::Object(inner)) => inner,
                _ => continue,
            },
            None => &mut map,
        };
        let Some(v) = holder.get(field) else { continue };
        let x = super::fmp::number(v).filter(|x| !fraction || (0.0..=1.0).contains(x));
        match x.and_then(serde_json::Number::from_f64) {
            Some(n) => {
                holder.insert(field.to_string(), Value::Number(n));
                any = true;
            }
            None => {
                rejects.push(Reject {
                    ticker: ticker.to_string(),
                    ts: None,
                    reason: Reason::MissingField,
                    action: Action::Rejected,
                    detail: format!(
                        "{provider}: field {path} is {v}, not a {}",
                        if fraction {
                            "fraction in [0, 1]"
                        } else {
                            "number"
                        }
                    ),
                    origin: format!("{provider}:{ticker}/news-sentiment"),
                });
                holder.remove(field);
            }
        }
    }
    Ok(Snapshot {
        body: any.then_some(map),
        rejects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_sentiment_body_is_kept_with_integers_read_as_numbers() {
        let body = br#"{
          "buzz": {"articlesInLastWeek": 20, "buzz": 0.8888, "weeklyAverage": 22.5},
          "companyNewsScore": 0.9166,
          "sectorAverageBullishPercent": 0.6482,
          "sectorAverageNewsScore": 0.5191,
          "sentiment": {"bearishPercent": 0, "bullishPercent": 1},
          "symbol": "V"
        }"#;
        let s = parse_sentiment(200, None, body, "V").expect("snapshot");
        assert!(s.rejects.is_empty());
        let b = s.body.expect("body");
        assert_eq!(b["sentiment"]["bearishPercent"].as_f64(), Some(0.0));
        assert_eq!(b["buzz"]["articlesInLastWeek"].as_f64(), Some(20.0));
    }

    #[test]
    fn bad_sentiment_values_are_quarantined_and_errors_classified() {
        let body = br#"{"companyNewsScore": "high", "sentiment": {"bullishPercent": 85, "bearishPercent": "0.1"}}"#;
        let s = parse_sentiment(200, None, body, "BRK.B").expect("snapshot");
        let b = s.body.expect("the one good value is kept");
        assert_eq!(b["sentiment"]["bearishPercent"].as_f64(), Some(0.1));
        assert!(!b.contains_key("companyNewsScore"));
        assert!(b["sentiment"].get("bullishPercent").is_none());
        assert_eq!(s.rejects.len(), 2);
        assert!(
            s.rejects[1]
                .detail
                .contains("sentiment.bullishPercent is 85")
        );
        assert!(
            parse_sentiment(200, None, b"{}", "V")
                .expect("empty")
                .body
                .is_none()
        );
        let plan = br#"{"error":"You don't have access to this resource."}"#;
        assert!(matches!(
            parse_sentiment(403, None, plan, "V"),
            Err(ProviderError::Plan { .. })
        ));
        let limit = br#"{"error":"API limit reached. Please try again later. Remaining Limit: 0"}"#;
        assert!(matches!(
            parse_sentiment(429, None, limit, "V"),
            Err(ProviderError::Throttled { .. })
        ));
        assert!(matches!(
            parse_sentiment(200, None, b"<html>", "V"),
            Err(ProviderError::Unavailable { .. })
        ));
    }
}
