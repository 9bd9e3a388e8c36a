//! Twelve Data `/time_series`, PROVIDERS.md §5.
//!
//! Errors usually come as HTTP 200 with `{"code":…, "message":…, "status":"error"}`: the body's
//! code decides (400 `not found` an unknown symbol, 401 the key, 403 the plan, 429 the minute's
//! credits). Values are strings; forex and crypto rows have no volume (taken as 0, as the market
//! has none to report). Intraday times are asked in UTC (`timezone=UTC`); daily rows are the
//! exchange's dates, stamped at midnight UTC. Rows come newest first, at most 5,000 a request:
//! a full page asks again for what is older than its oldest row.

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::reject::Reason;
use crate::time::{EventTime, date_of, midnight};

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, bar_or_reject,
    encode, reject, snippet,
};

const KIND: ProviderKind = ProviderKind::TwelveData;

/// Rows per request (the API's maximum).
const PAGE: usize = 5_000;

/// Requests at most per fetch: a range that never ends stops here.
const MAX_PAGES: usize = 200;

#[derive(Debug, Deserialize)]
struct Body {
    status: Option<String>,
    code: Option<i64>,
    message: Option<String>,
    #[serde(default)]
    values: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    datetime: Option<String>,
    open: Option<String>,
    high: Option<String>,
    low: Option<String>,
    close: Option<String>,
    volume: Option<String>,
}

fn interval_param(i: Interval) -> String {
    match i {
        Interval::Day => "1day".into(),
        Interval::Minutes(m) if m % 60 == 0 => format!("{}h", m / 60),
        Interval::Minutes(m) => format!("{m}min"),
    }
}

/// The URL of the page ending at `end` (inclusive).
///
/// # Errors
/// A ticker that breaks the ticker rule, or no key.
pub fn url(
    cfg: &ProviderConfig,
    req: &BarRequest,
    end: EventTime,
) -> Result<String, ProviderError> {
    super::check_ticker(KIND, req)?;
    let key = cfg.require_key()?;
    let (start, end, zone) = match req.interval {
        Interval::Day => (
            date_of(req.start).to_string(),
            date_of(end).to_string(),
            "Exchange",
        ),
        Interval::Minutes(_) => (
            crate::time::format_time(req.start),
            crate::time::format_time(end),
            "UTC",
        ),
    };
    Ok(format!(
        "{}/time_series?symbol={}&interval={}&start_date={}&end_date={}&timezone={zone}&order=desc&outputsize={PAGE}&format=JSON&apikey={}",
        cfg.base_url,
        encode(&req.symbol),
        interval_param(req.interval),
        encode(&start),
        encode(&end),
        encode(key)
    ))
}

/// Fetches one request, page by page backwards from its end.
///
/// # Errors
/// See [`parse`]; the first failing page fails the request.
pub async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    let mut end = req.end;
    for _ in 0..MAX_PAGES {
        let a = http.get(cfg, &url(cfg, req, end)?, &[]).await?;
        let page =
            parse_rows(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))?;
        let full = page.len == PAGE;
        let oldest = page.rows.iter().map(|b| b.ts).min();
        rows.extend(page.rows);
        rejects.extend(page.rejects);
        match oldest {
            Some(o) if full && o > req.start => end = o - 1,
            _ => return Ok(Fetched::finish(KIND, req, rows, rejects)),
        }
    }
    Err(ProviderError::Unavailable {
        provider: KIND.name(),
        status: None,
        message: format!("more than {MAX_PAGES} pages of {PAGE} rows"),
    })
}

/// Turns one answer into bars, or classifies it.
///
/// # Errors
/// From the body's code: [`ProviderError::UnknownTicker`] (400 not found),
/// [`ProviderError::BadKey`] (401), [`ProviderError::Plan`] (403), [`ProviderError::Throttled`]
/// (429), [`ProviderError::Refused`] (other 4xx); [`ProviderError::Unavailable`] (5xx, not JSON).
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let p = parse_rows(status, retry_after, body, req)?;
    Ok(Fetched::finish(KIND, req, p.rows, p.rejects))
}

struct Page {
    rows: Vec<crate::bar::Bar>,
    rejects: Vec<crate::reject::Reject>,
    /// Rows in the answer, parsed or not.
    len: usize,
}

fn parse_rows(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Page, ProviderError> {
    let provider = KIND.name();
    let b: Body = serde_json::from_slice(body).map_err(|e| ProviderError::Unavailable {
        provider,
        status: Some(status),
        message: format!("not a time series ({e}): {}", snippet(body)),
    })?;
    if b.status.as_deref() == Some("error") || !(200..300).contains(&status) {
        let code = b.code.unwrap_or(i64::from(status));
        let message = b.message.unwrap_or_else(|| snippet(body));
        return Err(match code {
            400 | 404 if message.to_ascii_lowercase().contains("not found") => {
                ProviderError::UnknownTicker {
                    provider,
                    ticker: req.ticker.clone(),
                    message,
                }
            }
            401 => ProviderError::BadKey { provider, message },
            402 | 403 => ProviderError::Plan { provider, message },
            429 => ProviderError::Throttled {
                provider,
                retry_after,
                message,
            },
            400..=499 => ProviderError::Refused { provider, message },
            _ => ProviderError::Unavailable {
                provider,
                status: Some(status),
                message,
            },
        });
    }
    let len = b.values.len();
    let mut rows = Vec::with_capacity(len);
    let mut rejects = Vec::new();
    for r in b.values {
        let when = r.datetime.clone().unwrap_or_default();
        let Some(ts) = event_time(&when, req.interval) else {
            rejects.push(reject(
                KIND,
                req,
                None,
                Reason::Unparseable,
                format!("datetime {when:?} is not a date or a time"),
            ));
            continue;
        };
        let num = |field: &str, v: &Option<String>| -> Result<Option<f64>, String> {
            match v {
                None => Ok(None),
                Some(t) => t
                    .trim()
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| format!("{field} = {t:?} is not a number")),
            }
        };
        let parsed = (|| -> Result<[Option<f64>; 5], String> {
            Ok([
                num("open", &r.open)?,
                num("high", &r.high)?,
                num("low", &r.low)?,
                num("close", &r.close)?,
                // Forex and crypto have no volume to report.
                Some(num("volume", &r.volume)?.unwrap_or(0.0)),
            ])
        })();
        match parsed {
            Ok(fields) => bar_or_reject(
                KIND,
                req,
                ts,
                fields,
                || format!("row at {when} lacks one of open, high, low, close"),
                &mut rows,
                &mut rejects,
            ),
            Err(detail) => rejects.push(reject(
                KIND,
                req,
                Some(ts),
                Reason::Unparseable,
                format!("row at {when}: {detail}"),
            )),
        }
    }
    Ok(Page { rows, rejects, len })
}

/// A row's event time: a daily date at midnight UTC; an intraday time, asked in UTC, as is.
fn event_time(text: &str, interval: Interval) -> Option<EventTime> {
    let t = text.trim();
    match interval {
        Interval::Day => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .map(midnight),
        Interval::Minutes(_) => NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|d| d.and_utc().timestamp()),
    }
}
