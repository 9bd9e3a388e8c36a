//! Tiingo: end-of-day prices (`/tiingo/daily/{T}/prices`) and IEX intraday bars
//! (`/iex/{T}/prices`), PROVIDERS.md §4.
//!
//! The token travels in the `Authorization: Token` header, never in a URL. Daily rows carry both
//! raw and adjusted prices (`adjOpen` ... `adjVolume`): `adjusted` picks which. `date` is RFC 3339
//! in UTC (`...000Z` and `+00:00` both occur): a daily row's is its trading day at midnight UTC,
//! an intraday row's the bar's start. IEX bars come without volume unless asked for, so it is.
//! Errors: 404 `Ticker 'X' not found`, 429 over the hourly or daily allocation (JSON or plain
//! text), 401 a refused token; a body that is not JSON is the provider's outage.

use serde::Deserialize;

use crate::reject::Reason;
use crate::time::EventTime;

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, bar_or_reject,
    encode, reject, snippet,
};

const KIND: ProviderKind = ProviderKind::Tiingo;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    date: Option<String>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    volume: Option<f64>,
    adj_open: Option<f64>,
    adj_high: Option<f64>,
    adj_low: Option<f64>,
    adj_close: Option<f64>,
    adj_volume: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    detail: String,
}

/// The request's URL.
///
/// # Errors
/// A ticker that breaks the ticker rule, or no token.
pub fn url(cfg: &ProviderConfig, req: &BarRequest) -> Result<String, ProviderError> {
    super::check_ticker(KIND, req)?;
    cfg.require_key()?;
    let (start, end) = (
        crate::time::date_of(req.start),
        crate::time::date_of(req.end),
    );
    Ok(match req.interval {
        Interval::Day => format!(
            "{}/tiingo/daily/{}/prices?startDate={start}&endDate={end}&format=json",
            cfg.base_url,
            encode(&req.symbol)
        ),
        Interval::Minutes(m) => {
            let freq = if m % 60 == 0 {
                format!("{}hour", m / 60)
            } else {
                format!("{m}min")
            };
            format!(
                "{}/iex/{}/prices?startDate={start}&endDate={end}&resampleFreq={freq}&afterHours=false&columns=open,high,low,close,volume&format=json",
                cfg.base_url,
                encode(&req.symbol)
            )
        }
    })
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
    let auth = [("Authorization", format!("Token {}", cfg.require_key()?))];
    let a = http.get(cfg, &u, &auth).await?;
    parse(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))
}

/// Turns an answer into bars, or classifies it.
///
/// # Errors
/// [`ProviderError::UnknownTicker`] (404, or a 200 text `not found`), [`ProviderError::Throttled`]
/// (429, or a 200 text over an allocation), [`ProviderError::BadKey`] (401),
/// [`ProviderError::Unavailable`] (5xx, not JSON).
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let provider = KIND.name();
    let words = serde_json::from_slice::<Detail>(body).map_or_else(|_| snippet(body), |d| d.detail);
    let lower = words.to_ascii_lowercase();
    if status == 429 || lower.contains("request allocation") {
        return Err(ProviderError::Throttled {
            provider,
            retry_after,
            message: words,
        });
    }
    if status == 404 || (lower.starts_with("error: ticker") && lower.contains("not found")) {
        return Err(ProviderError::UnknownTicker {
            provider,
            ticker: req.ticker.clone(),
            message: words,
        });
    }
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(ProviderError::BadKey {
                provider,
                message: words,
            });
        }
        400..=499 => {
            return Err(ProviderError::Refused {
                provider,
                message: words,
            });
        }
        _ => {
            return Err(ProviderError::Unavailable {
                provider,
                status: Some(status),
                message: words,
            });
        }
    }
    let rows: Vec<Row> = serde_json::from_slice(body).map_err(|e| ProviderError::Unavailable {
        provider,
        status: Some(status),
        message: format!("not a price list ({e}): {}", snippet(body)),
    })?;
    let mut bars = Vec::with_capacity(rows.len());
    let mut rejects = Vec::new();
    for r in rows {
        let Some(ts) = r.date.as_deref().and_then(|d| event_time(d, req.interval)) else {
            rejects.push(reject(
                KIND,
                req,
                None,
                Reason::Unparseable,
                format!("date {:?} is not an RFC 3339 time", r.date),
            ));
            continue;
        };
        let fields = if req.adjusted && req.interval == Interval::Day {
            (r.adj_open, r.adj_high, r.adj_low, r.adj_close, r.adj_volume)
        } else {
            (r.open, r.high, r.low, r.close, r.volume)
        };
        let (o, h, l, c, v) = fields;
        let date = r.date.unwrap_or_default();
        bar_or_reject(
            KIND,
            req,
            ts,
            [o, h, l, c, v],
            || {
                format!(
                    "row at {date} lacks one of open, high, low, close, volume{}",
                    if req.adjusted { " (adjusted)" } else { "" }
                )
            },
            &mut bars,
            &mut rejects,
        );
    }
    Ok(Fetched::finish(KIND, req, bars, rejects))
}

/// A row's event time: a daily row's UTC date at midnight, an intraday row's instant.
fn event_time(date: &str, interval: Interval) -> Option<EventTime> {
    let t = chrono::DateTime::parse_from_rfc3339(date.trim())
        .ok()?
        .timestamp();
    Some(match interval {
        Interval::Day => crate::time::midnight(crate::time::date_of(t)),
        Interval::Minutes(_) => t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rfc3339_forms_are_read() {
        assert_eq!(
            event_time("2015-01-02T00:00:00.000Z", Interval::Day),
            event_time("2015-01-02T00:00:00+00:00", Interval::Day)
        );
        assert_eq!(
            event_time("2018-01-02T14:30:00.000Z", Interval::Minutes(30)),
            Some(1_514_903_400)
        );
        assert_eq!(event_time("2018-01-02", Interval::Day), None);
    }
}
