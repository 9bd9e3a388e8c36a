//! Polygon.io / Massive aggregates (`/v2/aggs/ticker/{T}/range/{n}/{span}/{from}/{to}`),
//! PROVIDERS.md §3.
//!
//! The key travels in the `Authorization: Bearer` header, never in a URL. Pages are followed
//! through `next_url`, whose host is the real API's: its path and query are put on the configured
//! base URL (a proxy's, a test server's), and the header goes with every page. `t` is the bar's
//! start in Unix milliseconds; a daily bar's is midnight New York, whose date is the trading date
//! (stamped here at midnight UTC like every daily bar). An unknown ticker and an empty range look
//! the same (200 without `results`): both are an empty series. `ERROR` bodies carry `error`,
//! `NOT_AUTHORIZED` ones `message`: 401 is the key, 403 the plan, 429 a throttle.

use serde::Deserialize;

use crate::reject::Reason;
use crate::time::date_of;

use super::http::Http;
use super::{
    BarRequest, Fetched, Interval, ProviderConfig, ProviderError, ProviderKind, bar_or_reject,
    encode, new_york_bar_time, reject, snippet,
};

const KIND: ProviderKind = ProviderKind::Polygon;

/// Pages followed at most (50,000 base aggregates each): a runaway cursor stops here.
const MAX_PAGES: usize = 1_000;

#[derive(Debug, Deserialize)]
struct Body {
    status: Option<String>,
    results: Option<Vec<Agg>>,
    next_url: Option<String>,
    error: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Agg {
    t: Option<i64>,
    o: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    c: Option<f64>,
    v: Option<f64>,
}

/// The first page's URL.
///
/// # Errors
/// A ticker that breaks the ticker rule, or no key.
pub fn url(cfg: &ProviderConfig, req: &BarRequest) -> Result<String, ProviderError> {
    super::check_ticker(KIND, req)?;
    cfg.require_key()?;
    let (n, span, from, to) = match req.interval {
        Interval::Day => (
            1,
            "day",
            date_of(req.start).to_string(),
            date_of(req.end).to_string(),
        ),
        Interval::Minutes(m) if m % 60 == 0 => (
            m / 60,
            "hour",
            (req.start * 1000).to_string(),
            (req.end * 1000).to_string(),
        ),
        Interval::Minutes(m) => (
            m,
            "minute",
            (req.start * 1000).to_string(),
            (req.end * 1000).to_string(),
        ),
    };
    Ok(format!(
        "{}/v2/aggs/ticker/{}/range/{n}/{span}/{from}/{to}?adjusted={}&sort=asc&limit=50000",
        cfg.base_url,
        encode(&req.symbol),
        req.adjusted
    ))
}

/// `next_url` on the configured base URL: its path and query, whatever host it names.
fn rebase(cfg: &ProviderConfig, next: &str) -> String {
    let path = next
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(next);
    format!("{}{path}", cfg.base_url)
}

/// Fetches one request, following `next_url` page by page.
///
/// # Errors
/// See [`parse`]; the first failing page fails the request.
pub async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let auth = [("Authorization", format!("Bearer {}", cfg.require_key()?))];
    let mut next = Some(url(cfg, req)?);
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    let mut pages = 0;
    while let Some(u) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(ProviderError::Unavailable {
                provider: KIND.name(),
                status: None,
                message: format!("more than {MAX_PAGES} pages: a cursor that never ends"),
            });
        }
        let a = http.get(cfg, &u, &auth).await?;
        let page =
            parse_page(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))?;
        rows.extend(page.rows);
        rejects.extend(page.rejects);
        next = page.next.map(|n| rebase(cfg, &n));
    }
    Ok(Fetched::finish(KIND, req, rows, rejects))
}

/// Turns one page into bars, or classifies it (the page's `next_url` is not followed).
///
/// # Errors
/// [`ProviderError::BadKey`] (401), [`ProviderError::Plan`] (403 `NOT_AUTHORIZED`),
/// [`ProviderError::Throttled`] (429), [`ProviderError::Unavailable`] (5xx, not JSON).
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Fetched, ProviderError> {
    let p = parse_page(status, retry_after, body, req)?;
    Ok(Fetched::finish(KIND, req, p.rows, p.rejects))
}

struct Page {
    rows: Vec<crate::bar::Bar>,
    rejects: Vec<crate::reject::Reject>,
    next: Option<String>,
}

fn parse_page(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &BarRequest,
) -> Result<Page, ProviderError> {
    let provider = KIND.name();
    let parsed: Result<Body, _> = serde_json::from_slice(body);
    let words = |b: &Result<Body, serde_json::Error>| match b {
        Ok(b) => b
            .error
            .clone()
            .or_else(|| b.message.clone())
            .unwrap_or_else(|| snippet(body)),
        Err(_) => snippet(body),
    };
    if let Some(e) = super::status_error(KIND, status, retry_after, || words(&parsed)) {
        return Err(e);
    }
    let b = parsed.map_err(|e| ProviderError::Unavailable {
        provider,
        status: Some(status),
        message: format!("not an aggregates body ({e}): {}", snippet(body)),
    })?;
    if !matches!(b.status.as_deref(), Some("OK" | "DELAYED") | None) {
        return Err(ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: format!(
                "status {:?}: {}",
                b.status.as_deref().unwrap_or_default(),
                b.error.or(b.message).unwrap_or_default()
            ),
        });
    }
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for a in b.results.unwrap_or_default() {
        let Some(t_ms) = a.t else {
            rejects.push(reject(
                KIND,
                req,
                None,
                Reason::MissingField,
                "an aggregate without its time `t`".into(),
            ));
            continue;
        };
        let ts = new_york_bar_time(t_ms.div_euclid(1000), req.interval);
        bar_or_reject(
            KIND,
            req,
            ts,
            [a.o, a.h, a.l, a.c, a.v],
            || format!("aggregate at t={t_ms} lacks one of o, h, l, c, v"),
            &mut rows,
            &mut rejects,
        );
    }
    Ok(Page {
        rows,
        rejects,
        next: b.next_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_url_is_put_on_the_configured_base() {
        let cfg = ProviderConfig::new(KIND, "http://127.0.0.1:8080/proxy", None);
        assert_eq!(
            rebase(
                &cfg,
                "https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor=bGlt"
            ),
            "http://127.0.0.1:8080/proxy/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor=bGlt"
        );
    }

    #[test]
    fn a_daily_bar_at_new_york_midnight_is_that_date() {
        // 1577941200000 = 2020-01-02T05:00Z, midnight in New York.
        let t = new_york_bar_time(1_577_941_200, Interval::Day);
        assert_eq!(crate::time::format_time(t), "2020-01-02");
        assert_eq!(
            new_york_bar_time(1_672_736_400, Interval::Minutes(60)),
            1_672_736_400
        );
    }
}
