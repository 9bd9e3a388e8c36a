//! Yahoo Finance's chart API (`/v8/finance/chart/{symbol}`), PROVIDERS.md §1.
//!
//! Bars come as parallel arrays (`timestamp[i]` with `indicators.quote[0].open[i]`, ...), any
//! element of which may be `null` (halts, lunch breaks): such a bar is quarantined with the fields
//! that were missing. Daily bars are stamped by Yahoo at the session's open; their trading date
//! is the exchange's local date (`meta.exchangeTimezoneName`), stamped here at midnight UTC like
//! every daily bar of the project. The last intraday bar may be the live, still-forming one (off
//! the interval's grid, or ending after `meta.regularMarketTime`): it is left out. `quote` prices
//! are split-adjusted; `adjusted = true` scales them by `adjclose / close` to add dividends.
//! Errors: `chart.error` is read before the HTTP status; a body that is not JSON is a throttle on
//! 429 (`Edge: Too Many Requests`) and an outage otherwise (the maintenance page).

use chrono::{NaiveDate, TimeZone};
use serde::Deserialize;

use crate::reject::Reason;
use crate::time::{EventTime, midnight};

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, encode, reject,
    scaled_bar, snippet,
};

const KIND: ProviderKind = ProviderKind::Yahoo;

#[derive(Debug, Deserialize)]
struct Root {
    chart: Chart,
}

#[derive(Debug, Deserialize)]
struct Chart {
    result: Option<Vec<Series>>,
    error: Option<ChartError>,
}

#[derive(Debug, Deserialize)]
struct ChartError {
    code: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Series {
    meta: Meta,
    timestamp: Option<Vec<i64>>,
    indicators: Option<Indicators>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    exchange_timezone_name: Option<String>,
    gmtoffset: Option<i64>,
    regular_market_time: Option<i64>,
    current_trading_period: Option<TradingPeriods>,
}

#[derive(Debug, Deserialize)]
struct TradingPeriods {
    regular: Option<Period>,
}

#[derive(Debug, Deserialize)]
struct Period {
    start: i64,
    end: i64,
}

#[derive(Debug, Deserialize)]
struct Indicators {
    #[serde(default)]
    quote: Vec<Quote>,
    adjclose: Option<Vec<AdjClose>>,
}

#[derive(Debug, Default, Deserialize)]
struct Quote {
    #[serde(default)]
    open: Vec<Option<f64>>,
    #[serde(default)]
    high: Vec<Option<f64>>,
    #[serde(default)]
    low: Vec<Option<f64>>,
    #[serde(default)]
    close: Vec<Option<f64>>,
    #[serde(default)]
    volume: Vec<Option<f64>>,
}

#[derive(Debug, Deserialize)]
struct AdjClose {
    #[serde(default)]
    adjclose: Vec<Option<f64>>,
}

/// Yahoo's name for an interval; the ones it serves reliably only.
fn interval_param(i: Interval) -> Result<String, ProviderError> {
    match i {
        Interval::Day => Ok("1d".into()),
        Interval::Minutes(m @ (1 | 2 | 5 | 15 | 30 | 60 | 90)) => Ok(format!("{m}m")),
        Interval::Minutes(m) => Err(ProviderError::Refused {
            provider: KIND.name(),
            message: format!("no {m}-minute bars (1, 2, 5, 15, 30, 60, 90 minutes or 1d)"),
        }),
    }
}

/// The request's URL: the range by dates (`period1`, `period2`, Unix seconds), the interval,
/// regular hours only, and the adjusted close when asked for.
///
/// # Errors
/// A ticker that breaks the ticker rule, or an interval Yahoo does not serve.
pub fn url(cfg: &ProviderConfig, req: &BarRequest) -> Result<String, ProviderError> {
    super::check_ticker(KIND, req)?;
    let interval = interval_param(req.interval)?;
    // Daily bars are stamped at the session open, after the date's midnight: ask up to the end
    // of the last day.
    let until = req.end.saturating_add(req.interval.seconds());
    Ok(format!(
        "{}/v8/finance/chart/{}?period1={}&period2={}&interval={interval}&includePrePost=false&events=div%2Csplits{}",
        cfg.base_url,
        encode(&req.symbol),
        req.start,
        until,
        if req.adjusted {
            "&includeAdjustedClose=true"
        } else {
            ""
        }
    ))
}

/// Fetches one request.
///
/// # Errors
/// See [`parse`]; a transport failure is [`ProviderError::Unavailable`].
pub async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let u = url(cfg, req)?;
    let a = http.get(cfg, &u, &[]).await?;
    parse(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))
}

/// Turns an answer into bars, or classifies it.
///
/// # Errors
/// [`ProviderError::UnknownTicker`] (404 `Not Found`), [`ProviderError::Refused`] (422: a range
/// too long for the interval), [`ProviderError::Throttled`] (429, JSON or plain text),
/// [`ProviderError::BadKey`] (401), [`ProviderError::Unavailable`] (5xx, HTML, a truncated body,
/// arrays of unequal length).
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let provider = KIND.name();
    let root: Root = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Err(if status == 429 {
                ProviderError::Throttled {
                    provider,
                    retry_after,
                    message: snippet(body),
                }
            } else {
                ProviderError::Unavailable {
                    provider,
                    status: Some(status),
                    message: format!("not a chart body ({e}): {}", snippet(body)),
                }
            });
        }
    };
    if let Some(err) = root.chart.error {
        let code = err.code.unwrap_or_default();
        let message = format!("{code}: {}", err.description.unwrap_or_default());
        return Err(match (code.as_str(), status) {
            ("Not Found", _) | (_, 404) => ProviderError::UnknownTicker {
                provider,
                ticker: req.ticker.clone(),
                message,
            },
            ("Too Many Requests", _) | (_, 429) => ProviderError::Throttled {
                provider,
                retry_after,
                message,
            },
            ("Unauthorized", _) | (_, 401) => ProviderError::BadKey { provider, message },
            (_, s) if s >= 500 => ProviderError::Unavailable {
                provider,
                status: Some(s),
                message,
            },
            _ => ProviderError::Refused { provider, message },
        });
    }
    if status == 429 {
        return Err(ProviderError::Throttled {
            provider,
            retry_after,
            message: snippet(body),
        });
    }
    if !(200..300).contains(&status) {
        return Err(ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: snippet(body),
        });
    }
    let Some(series) = root.chart.result.and_then(|r| r.into_iter().next()) else {
        return Ok(Fetched::default());
    };
    bars(series, req)
}

/// The series' usable bars and quarantined rows.
fn bars(series: Series, req: &BarRequest) -> Result<Fetched, ProviderError> {
    let provider = KIND.name();
    let times = series.timestamp.unwrap_or_default();
    let (quote, adj) = match series.indicators {
        Some(i) => (
            i.quote.into_iter().next().unwrap_or_default(),
            i.adjclose
                .and_then(|a| a.into_iter().next())
                .map(|a| a.adjclose),
        ),
        None => (Quote::default(), None),
    };
    if times.is_empty() {
        return Ok(Fetched::default());
    }
    let n = times.len();
    let lengths = [
        quote.open.len(),
        quote.high.len(),
        quote.low.len(),
        quote.close.len(),
        quote.volume.len(),
    ];
    if lengths.iter().any(|&l| l != n) || adj.as_ref().is_some_and(|a| a.len() != n) {
        return Err(ProviderError::Unavailable {
            provider,
            status: Some(200),
            message: format!(
                "{n} timestamps but quote arrays of {lengths:?}: a truncated or inconsistent body"
            ),
        });
    }
    let forming = forming_bar(&series.meta, &times, req.interval);
    let mut rows = Vec::with_capacity(n);
    let mut rejects = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        if forming == Some(i) {
            continue;
        }
        let ts = match req.interval {
            Interval::Day => midnight(trading_date(&series.meta, t)),
            Interval::Minutes(_) => t,
        };
        let fields = [
            ("open", quote.open[i]),
            ("high", quote.high[i]),
            ("low", quote.low[i]),
            ("close", quote.close[i]),
            ("volume", quote.volume[i]),
        ];
        let missing: Vec<&str> = fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        let [Some(open), Some(high), Some(low), Some(close), Some(volume)] = fields.map(|f| f.1)
        else {
            rejects.push(reject(
                KIND,
                req,
                Some(ts),
                Reason::MissingField,
                format!("bar at {t} has null {}", missing.join(", ")),
            ));
            continue;
        };
        // Dividend adjustment: Yahoo's adjclose over its (split-adjusted) close.
        let factor = match adj.as_ref().map(|a| a[i]) {
            Some(Some(a)) if req.adjusted && close != 0.0 => a / close,
            Some(None) if req.adjusted => {
                rejects.push(reject(
                    KIND,
                    req,
                    Some(ts),
                    Reason::MissingField,
                    format!("bar at {t} has null adjclose"),
                ));
                continue;
            }
            _ => 1.0,
        };
        rows.push(scaled_bar(
            req,
            ts,
            [open, high, low, close],
            volume,
            factor,
        ));
    }
    Ok(Fetched::finish(KIND, req, rows, rejects))
}

/// The index of the live, still-forming bar, if the series ends with one: an intraday bar off
/// the grid its predecessor sets, or one whose period ends after the data's time; a daily bar of
/// a session still trading.
fn forming_bar(meta: &Meta, times: &[i64], interval: Interval) -> Option<usize> {
    let last = times.len().checked_sub(1)?;
    let t = times[last];
    let as_of = meta.regular_market_time?;
    match interval {
        Interval::Minutes(_) => {
            let step = interval.seconds();
            let off_grid = last > 0 && (t - times[last - 1]) % step != 0;
            (off_grid || t + step > as_of).then_some(last)
        }
        Interval::Day => {
            let session = meta
                .current_trading_period
                .as_ref()
                .and_then(|p| p.regular.as_ref())?;
            (t >= session.start && as_of < session.end).then_some(last)
        }
    }
}

/// The exchange's local date of instant `t`: by its time-zone name, else its UTC offset.
fn trading_date(meta: &Meta, t: EventTime) -> NaiveDate {
    if let Some(tz) = meta
        .exchange_timezone_name
        .as_deref()
        .and_then(|n| n.parse::<chrono_tz::Tz>().ok())
        && let chrono::LocalResult::Single(local) = tz.timestamp_opt(t, 0)
    {
        return local.date_naive();
    }
    crate::time::date_of(t.saturating_add(meta.gmtoffset.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(interval: Interval) -> BarRequest {
        BarRequest {
            ticker: "SPY".into(),
            symbol: "SPY".into(),
            id: 3,
            interval,
            start: 0,
            end: 4_000_000_000,
            adjusted: false,
        }
    }

    #[test]
    fn a_daily_bar_is_dated_by_the_exchanges_calendar() {
        let meta = Meta {
            exchange_timezone_name: Some("Asia/Tokyo".into()),
            ..Meta::default()
        };
        // 2026-06-24 00:00 UTC is 09:00 in Tokyo, the session's open: June 24 there.
        let d = trading_date(&meta, 1_782_259_200);
        assert_eq!(d, NaiveDate::from_ymd_opt(2026, 6, 24).expect("date"));
        // 23:30 UTC on June 23 is already June 24 in Tokyo.
        assert_eq!(trading_date(&meta, 1_782_257_400), d);
        let by_offset = Meta {
            gmtoffset: Some(32_400),
            ..Meta::default()
        };
        assert_eq!(trading_date(&by_offset, 1_782_257_400), d);
    }

    #[test]
    fn unequal_arrays_are_an_inconsistent_body() {
        let body = br#"{"chart":{"result":[{"meta":{},"timestamp":[1,2],"indicators":{"quote":[{"open":[1.0],"high":[1.0,1.0],"low":[1.0,1.0],"close":[1.0,1.0],"volume":[1,1]}]}}],"error":null}}"#;
        let e = parse(200, None, body, &req(Interval::Minutes(5)));
        assert!(matches!(e, Err(ProviderError::Unavailable { .. })), "{e:?}");
    }

    #[test]
    fn a_range_without_bars_is_empty_not_an_error() {
        let body =
            br#"{"chart":{"result":[{"meta":{},"indicators":{"quote":[{}]}}],"error":null}}"#;
        let f = parse(200, None, body, &req(Interval::Day)).expect("empty");
        assert_eq!((f.bars.len(), f.rejects.len()), (0, 0));
    }
}
