//! Alpha Vantage (`/query?function=TIME_SERIES_...`), PROVIDERS.md §2.
//!
//! Every error comes as HTTP 200: the body is checked for `Error Message`, `Information` and
//! `Note` before any series. A quota message (`rate limit`, `call frequency`) is a throttle;
//! a premium gate (`premium feature`, `premium endpoint`) is the plan and never retried; an
//! invalid key is told apart from an invalid call. Numbers are strings (`"86.4900"`): one that
//! does not parse quarantines its bar with the field's name. Bars are an object keyed by time,
//! newest first: sorted after parsing. Times are the exchange's local time (`Time Zone`, US/Eastern)
//! without an offset: daily dates become midnight UTC of the date, intraday times the UTC instant
//! they name. Intraday history is asked month by month (`month=YYYY-MM`).

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};
use serde_json::{Map, Value};

use crate::bar::Bar;
use crate::reject::Reason;
use crate::time::{EventTime, date_of, midnight};

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, encode, reject,
    scaled_bar, snippet,
};

const KIND: ProviderKind = ProviderKind::AlphaVantage;

/// Free keys get the last 100 daily bars (`compact`); more is `full`, a premium parameter.
const COMPACT_BARS: i64 = 100;

/// The URLs of a request: one for daily bars, one per calendar month for intraday bars.
///
/// # Errors
/// A ticker that breaks the ticker rule, no key, or an interval Alpha Vantage does not serve.
pub fn urls(cfg: &ProviderConfig, req: &BarRequest) -> Result<Vec<String>, ProviderError> {
    super::check_ticker(KIND, req)?;
    let key = cfg.require_key()?;
    let base = format!(
        "{}/query?symbol={}&apikey={}",
        cfg.base_url,
        encode(&req.symbol),
        encode(key)
    );
    match req.interval {
        Interval::Day => {
            let function = if req.adjusted {
                "TIME_SERIES_DAILY_ADJUSTED"
            } else {
                "TIME_SERIES_DAILY"
            };
            // Roughly 252 sessions a year: a range longer than the compact window needs `full`.
            let sessions = (req.end - req.start) / crate::time::DAY * 5 / 7;
            let size = if sessions > COMPACT_BARS {
                "full"
            } else {
                "compact"
            };
            Ok(vec![format!(
                "{base}&function={function}&outputsize={size}"
            )])
        }
        Interval::Minutes(m @ (1 | 5 | 15 | 30 | 60)) => {
            let mut out = Vec::new();
            let (mut y, mut mo) = (date_of(req.start).year(), date_of(req.start).month());
            let last = date_of(req.end);
            while (y, mo) <= (last.year(), last.month()) {
                out.push(format!(
                    "{base}&function=TIME_SERIES_INTRADAY&interval={m}min&adjusted={}&extended_hours=false&outputsize=full&month={y:04}-{mo:02}",
                    req.adjusted
                ));
                (y, mo) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
            }
            Ok(out)
        }
        Interval::Minutes(m) => Err(ProviderError::Refused {
            provider: KIND.name(),
            message: format!("no {m}-minute bars (1, 5, 15, 30, 60 minutes or 1d)"),
        }),
    }
}

/// Fetches one request, month by month for intraday bars.
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
    for u in urls(cfg, req)? {
        let a = http.get(cfg, &u, &[]).await?;
        let page = parse_rows(a.status, &a.body, req).map_err(|e| e.redacted(cfg))?;
        rows.extend(page.0);
        rejects.extend(page.1);
    }
    Ok(Fetched::finish(KIND, req, rows, rejects))
}

/// Turns one answer into bars, or classifies it.
///
/// # Errors
/// [`ProviderError::Throttled`] (a quota message), [`ProviderError::Plan`] (a premium gate),
/// [`ProviderError::BadKey`], [`ProviderError::UnknownTicker`] (`Invalid API call`),
/// [`ProviderError::Unavailable`] (not JSON, no series, a non-200 status).
pub fn parse(status: u16, body: &[u8], req: &BarRequest) -> Result<Fetched, ProviderError> {
    let (rows, rejects) = parse_rows(status, body, req)?;
    Ok(Fetched::finish(KIND, req, rows, rejects))
}

type Rows = (Vec<Bar>, Vec<crate::reject::Reject>);

fn parse_rows(status: u16, body: &[u8], req: &BarRequest) -> Result<Rows, ProviderError> {
    let provider = KIND.name();
    let unavailable = |message: String| ProviderError::Unavailable {
        provider,
        status: Some(status),
        message,
    };
    let root: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(unavailable(format!("not an object: {}", snippet(body)))),
        Err(e) => return Err(unavailable(format!("not JSON ({e}): {}", snippet(body)))),
    };
    if let Some(msg) = root.get("Error Message").and_then(Value::as_str) {
        let message = msg.to_string();
        return Err(if msg.contains("apikey") {
            ProviderError::BadKey { provider, message }
        } else {
            ProviderError::UnknownTicker {
                provider,
                ticker: req.ticker.clone(),
                message,
            }
        });
    }
    for field in ["Information", "Note"] {
        if let Some(msg) = root.get(field).and_then(Value::as_str) {
            let lower = msg.to_ascii_lowercase();
            let message = msg.to_string();
            // The quota text also invites to the premium plans: quota words decide first.
            return Err(
                if lower.contains("rate limit") || lower.contains("call frequency") {
                    ProviderError::Throttled {
                        provider,
                        retry_after: None,
                        message,
                    }
                } else if lower.contains("premium") {
                    ProviderError::Plan { provider, message }
                } else {
                    ProviderError::Refused { provider, message }
                },
            );
        }
    }
    if status != 200 {
        return Err(unavailable(snippet(body)));
    }
    let zone = meta_field(&root, "Time Zone")
        .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
        .unwrap_or(chrono_tz::US::Eastern);
    let Some(series) = root
        .iter()
        .find(|(k, _)| k.starts_with("Time Series"))
        .and_then(|(_, v)| v.as_object())
    else {
        return Err(unavailable(format!(
            "no \"Time Series\" in the body: {}",
            snippet(body)
        )));
    };
    let mut rows = Vec::with_capacity(series.len());
    let mut rejects = Vec::new();
    for (when, fields) in series {
        let Some(ts) = event_time(when, req.interval, zone) else {
            rejects.push(reject(
                KIND,
                req,
                None,
                Reason::Unparseable,
                format!("time {when:?} is not a date or a local time"),
            ));
            continue;
        };
        match bar(fields, req, ts) {
            Ok(b) => rows.push(b),
            Err(detail) => rejects.push(reject(
                KIND,
                req,
                Some(ts),
                Reason::Unparseable,
                format!("bar at {when}: {detail}"),
            )),
        }
    }
    Ok((rows, rejects))
}

/// A `Meta Data` field by its name without the number (`"5. Time Zone"` or `"6. Time Zone"`).
fn meta_field<'a>(root: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    root.get("Meta Data")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.split_once(". ").is_some_and(|(_, n)| n == name))
        .and_then(|(_, v)| v.as_str())
}

/// A bar's event time: a daily date at midnight UTC, an intraday local time as its UTC instant
/// (a time the clock skips when summer time starts is none; one it repeats is the earlier).
fn event_time(text: &str, interval: Interval, zone: chrono_tz::Tz) -> Option<EventTime> {
    match interval {
        Interval::Day => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .ok()
            .map(midnight),
        Interval::Minutes(_) => {
            let local = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
            zone.from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp())
        }
    }
}

/// One bar from its fields (`"1. open"`, ..., `"5. volume"`; adjusted daily bars carry
/// `"5. adjusted close"` and `"6. volume"`), or what was wrong.
fn bar(fields: &Value, req: &BarRequest, ts: EventTime) -> Result<Bar, String> {
    let obj = fields.as_object().ok_or("not an object")?;
    let get = |name: &str| -> Result<Option<f64>, String> {
        let Some((key, v)) = obj
            .iter()
            .find(|(k, _)| k.split_once(". ").is_some_and(|(_, n)| n == name))
        else {
            return Ok(None);
        };
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        text.trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{key} = {text:?} is not a number"))
    };
    let need = |name: &str| get(name)?.ok_or_else(|| format!("no {name}"));
    let (open, high, low, close) = (need("open")?, need("high")?, need("low")?, need("close")?);
    let volume = need("volume")?;
    let factor = match get("adjusted close")? {
        Some(a) if req.adjusted && close != 0.0 => a / close,
        _ => 1.0,
    };
    Ok(scaled_bar(
        req,
        ts,
        [open, high, low, close],
        volume,
        factor,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intraday_history_is_asked_month_by_month() {
        let cfg = ProviderConfig::new(
            KIND,
            "http://127.0.0.1:9",
            Some(super::super::Secret::new("k")),
        );
        let req = BarRequest {
            ticker: "BRK.B".into(),
            symbol: "BRK.B".into(),
            id: 0,
            interval: Interval::Minutes(5),
            start: crate::time::parse_time("2024-11-20").unwrap_or_default(),
            end: crate::time::parse_time("2025-01-03").unwrap_or_default(),
            adjusted: false,
        };
        let u = urls(&cfg, &req).expect("urls");
        assert_eq!(u.len(), 3);
        assert!(u[0].contains("month=2024-11") && u[2].contains("month=2025-01"));
        assert!(u[0].contains("symbol=BRK.B&") && u[0].contains("interval=5min"));
    }

    #[test]
    fn a_local_time_skipped_by_summer_time_is_not_a_time() {
        let z = chrono_tz::US::Eastern;
        assert_eq!(
            event_time("2024-03-10 02:30:00", Interval::Minutes(5), z),
            None
        );
        // 09:30 New York in winter is 14:30 UTC.
        assert_eq!(
            event_time("2024-01-02 09:30:00", Interval::Minutes(5), z),
            Some(1_704_205_800)
        );
    }
}
