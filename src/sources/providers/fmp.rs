//! Financial Modeling Prep's `/stable` fundamentals (PROVIDERS.md §7): ratios, key metrics and
//! income statements, each a top-level JSON array, newest first, `symbol=` and `apikey=` in the
//! query (the legacy `/api/v3` paths answer 403 to keys made after 2025-08-31).
//!
//! An error is an object where data would be an array, always under `"Error Message"`: 401 the
//! key; 402 or 403 the plan (`Restricted Endpoint`, `Premium Query Parameter`, `Legacy
//! Endpoint`), never retried; `Limit Reach` (also `Bandwidth Limit Reach`) a throttle, on 429 or
//! inside a 200. `[]` is nothing for the symbol. What is kept is the array as FMP sent it, each
//! row checked: a row without a period end or period, an income statement without a time of
//! publication, and a wanted field that is not a number (strings for numbers are read) are
//! quarantined with the provider and field, and the field left out of the row — never a zero.

use serde_json::{Map, Value};

use crate::reject::{Action, Reason, Reject};
use crate::time::parse_time;

use super::http::Http;
use super::{ProviderConfig, ProviderError, ProviderKind, encode, snippet};

const KIND: ProviderKind = ProviderKind::Fmp;

/// The statements fetched, each kept in its own file of the recorded layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `/stable/ratios`.
    Ratios,
    /// `/stable/key-metrics`.
    KeyMetrics,
    /// `/stable/income-statement`: also the publication times of the other two.
    IncomeStatement,
}

impl Statement {
    /// Every statement, income statements first (they date the others).
    pub const ALL: [Statement; 3] = [
        Statement::IncomeStatement,
        Statement::Ratios,
        Statement::KeyMetrics,
    ];

    /// The endpoint's name: its path under `/stable` and its file's stem.
    pub fn endpoint(self) -> &'static str {
        match self {
            Statement::Ratios => "ratios",
            Statement::KeyMetrics => "key-metrics",
            Statement::IncomeStatement => "income-statement",
        }
    }
}

/// One statement request for one ticker.
#[derive(Debug, Clone)]
pub struct StatementRequest {
    /// The ticker as the run spells it.
    pub ticker: String,
    /// FMP's spelling (class shares with a dot, `BRK.B`).
    pub symbol: String,
    /// Which statement.
    pub statement: Statement,
    /// `annual`, `quarter`, `FY`, `Q1`..`Q4`.
    pub period: String,
    /// How many periods, newest first (FMP's default when absent).
    pub limit: Option<u32>,
    /// Fields the pipeline reads, which must be numbers.
    pub fields: Vec<String>,
}

/// A statement as kept: its rows (bad fields left out) and what was quarantined.
#[derive(Debug, Clone, Default)]
pub struct Statements {
    /// Rows in FMP's order.
    pub rows: Vec<Map<String, Value>>,
    /// Rows and fields kept out.
    pub rejects: Vec<Reject>,
}

/// The request's URL (the key in its query: never logged, and removed from every error).
///
/// # Errors
/// A ticker or symbol that breaks the ticker rule, or no key.
pub fn url(cfg: &ProviderConfig, req: &StatementRequest) -> Result<String, ProviderError> {
    super::check_names(KIND, &req.ticker, &req.symbol)?;
    let key = cfg.require_key()?;
    let limit = req.limit.map(|l| format!("&limit={l}")).unwrap_or_default();
    Ok(format!(
        "{}/stable/{}?symbol={}&period={}{limit}&apikey={}",
        cfg.base_url,
        req.statement.endpoint(),
        encode(&req.symbol),
        encode(&req.period),
        encode(key)
    ))
}

/// Fetches one statement.
///
/// # Errors
/// See [`parse`].
pub async fn fetch(
    http: &Http,
    cfg: &ProviderConfig,
    req: &StatementRequest,
) -> Result<Statements, ProviderError> {
    let u = url(cfg, req)?;
    let a = http.get(cfg, &u, &[]).await?;
    parse(a.status, a.retry_after, &a.body, req).map_err(|e| e.redacted(cfg))
}

/// What an `"Error Message"` says, by its words (FMP uses the same key for every case, and
/// sometimes answers 200).
fn classify(status: u16, retry_after: Option<std::time::Duration>, msg: String) -> ProviderError {
    let provider = KIND.name();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("limit reach") || status == 429 {
        ProviderError::Throttled {
            provider,
            retry_after,
            message: msg,
        }
    } else if status == 401 || lower.contains("invalid api key") {
        ProviderError::BadKey {
            provider,
            message: msg,
        }
    } else if matches!(status, 402 | 403)
        || [
            "premium",
            "restricted",
            "exclusive",
            "legacy",
            "subscription",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        ProviderError::Plan {
            provider,
            message: msg,
        }
    } else if status >= 500 {
        ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: msg,
        }
    } else {
        ProviderError::Refused {
            provider,
            message: msg,
        }
    }
}

/// Turns an answer into checked rows, or classifies it.
///
/// # Errors
/// [`ProviderError::BadKey`], [`ProviderError::Plan`], [`ProviderError::Throttled`] as the
/// message says; [`ProviderError::Unavailable`] for a 5xx, HTML, a truncated body, or JSON that
/// is neither an array of rows nor an error.
pub fn parse(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    req: &StatementRequest,
) -> Result<Statements, ProviderError> {
    let provider = KIND.name();
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let message = |v: &Value| {
        v.get("Error Message")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match parsed {
        Ok(v) if v.is_object() && message(&v).is_some() => Err(classify(
            status,
            retry_after,
            message(&v).unwrap_or_default(),
        )),
        _ if status >= 400 => Err(classify(status, retry_after, snippet(body))),
        Ok(Value::Array(items)) => Ok(check(items, req)),
        Ok(_) => Err(ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: format!("not an array of rows: {}", snippet(body)),
        }),
        Err(e) => Err(ProviderError::Unavailable {
            provider,
            status: Some(status),
            message: format!("not JSON ({e}): {}", snippet(body)),
        }),
    }
}

/// A number, or a string holding one (FMP sends `fiscalYear` as a string; a proxy may send
/// more); `None` for anything else.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

fn check(items: Vec<Value>, req: &StatementRequest) -> Statements {
    let mut out = Statements::default();
    let origin = format!(
        "{}:{}/{}",
        KIND.name(),
        req.ticker,
        req.statement.endpoint()
    );
    let reject = |ts, reason, detail: String| Reject {
        ticker: req.ticker.clone(),
        ts,
        reason,
        action: Action::Rejected,
        detail: format!("{}: {detail}", KIND.name()),
        origin: origin.clone(),
    };
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut row) = item else {
            out.rejects.push(reject(
                None,
                Reason::Unparseable,
                format!("row {i} is not an object"),
            ));
            continue;
        };
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(date) = text("date").and_then(|d| parse_time(&d)) else {
            out.rejects.push(reject(
                None,
                Reason::MissingField,
                format!("row {i}: field date is not a date"),
            ));
            continue;
        };
        if text("period").is_none() {
            out.rejects.push(reject(
                Some(date),
                Reason::MissingField,
                format!("row {i}: no field period"),
            ));
            continue;
        }
        if req.statement == Statement::IncomeStatement
            && !["acceptedDate", "filingDate"]
                .iter()
                .any(|k| text(k).is_some_and(|t| parse_time(&t).is_some()))
        {
            out.rejects.push(reject(
                Some(date),
                Reason::MissingField,
                format!("row {i}: neither acceptedDate nor filingDate is a time"),
            ));
            continue;
        }
        for field in &req.fields {
            let Some(v) = row.get(field) else { continue };
            match number(v) {
                Some(x) if !v.is_number() => {
                    // A string holding a number: kept as the number it is.
                    if let Some(n) = serde_json::Number::from_f64(x) {
                        row.insert(field.clone(), Value::Number(n));
                    }
                }
                Some(_) => {}
                None => {
                    out.rejects.push(reject(
                        Some(date),
                        Reason::MissingField,
                        format!("row {i}: field {field} is {v}, not a number"),
                    ));
                    row.remove(field);
                }
            }
        }
        out.rows.push(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(statement: Statement, fields: &[&str]) -> StatementRequest {
        StatementRequest {
            ticker: "BRK.B".into(),
            symbol: "BRK.B".into(),
            statement,
            period: "annual".into(),
            limit: Some(10),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn the_url_uses_stable_with_the_symbol_in_the_query() {
        let cfg = ProviderConfig::new(
            KIND,
            "http://127.0.0.1:9/",
            Some(super::super::Secret::new("k")),
        );
        let u = url(&cfg, &req(Statement::KeyMetrics, &[])).expect("url");
        assert_eq!(
            u,
            "http://127.0.0.1:9/stable/key-metrics?symbol=BRK.B&period=annual&limit=10&apikey=k"
        );
        let bad = StatementRequest {
            ticker: "A B".into(),
            ..req(Statement::Ratios, &[])
        };
        assert!(matches!(url(&cfg, &bad), Err(ProviderError::Ticker { .. })));
    }

    #[test]
    fn every_error_shape_is_told_apart() {
        let r = req(Statement::Ratios, &[]);
        let limit = br#"{"Error Message": "Limit Reach . Please upgrade your plan or visit our documentation for more details at https://site.financialmodelingprep.com/"}"#;
        assert!(matches!(
            parse(200, None, limit, &r),
            Err(ProviderError::Throttled { .. })
        ));
        assert!(matches!(
            parse(429, None, limit, &r),
            Err(ProviderError::Throttled { .. })
        ));
        let key = br#"{"Error Message": "Invalid API KEY. Feel free to create a Free API Key"}"#;
        assert!(matches!(
            parse(401, None, key, &r),
            Err(ProviderError::BadKey { .. })
        ));
        let legacy = br#"{"Error Message": "Legacy Endpoint : Due to Legacy endpoints being no longer supported"}"#;
        assert!(matches!(
            parse(403, None, legacy, &r),
            Err(ProviderError::Plan { .. })
        ));
        let premium = br#"{"Error Message": "Premium Query Parameter: value set for 'symbol' is not available under your current subscription"}"#;
        let e = parse(402, None, premium, &r).expect_err("plan");
        assert!(matches!(e, ProviderError::Plan { .. }) && !e.retryable());
        assert!(matches!(
            parse(502, None, b"<html>bad gateway</html>", &r),
            Err(ProviderError::Unavailable { .. })
        ));
        assert!(matches!(
            parse(200, None, br#"[{"symbol": "AAPL", "da"#, &r),
            Err(ProviderError::Unavailable { .. })
        ));
        assert!(matches!(
            parse(200, None, br#"{"symbol": "AAPL"}"#, &r),
            Err(ProviderError::Unavailable { .. })
        ));
        let empty = parse(200, None, b"[]", &r).expect("empty");
        assert!(empty.rows.is_empty() && empty.rejects.is_empty());
    }

    #[test]
    fn bad_values_are_quarantined_with_the_field_and_strings_read_as_numbers() {
        let r = req(
            Statement::Ratios,
            &["priceToEarningsRatio", "priceToBookRatio", "currentRatio"],
        );
        let body = br#"[
            {"symbol":"BRK.B","date":"2024-12-31","fiscalYear":"2024","period":"FY","priceToEarningsRatio":"9.5","priceToBookRatio":"n/a","currentRatio":null},
            {"symbol":"BRK.B","fiscalYear":"2023","period":"FY","priceToEarningsRatio":8.1}
        ]"#;
        let s = parse(200, None, body, &r).expect("rows");
        assert_eq!(s.rows.len(), 1);
        assert_eq!(s.rows[0]["priceToEarningsRatio"], serde_json::json!(9.5));
        assert!(!s.rows[0].contains_key("priceToBookRatio"));
        assert!(!s.rows[0].contains_key("currentRatio"));
        let details: Vec<&str> = s.rejects.iter().map(|r| r.detail.as_str()).collect();
        assert_eq!(details.len(), 3, "{details:?}");
        assert!(details[0].starts_with("fmp: ") && details[0].contains("priceToBookRatio"));
        assert!(details[1].contains("currentRatio"));
        assert!(details[2].contains("date"));
        assert!(s.rejects.iter().all(|r| r.origin == "fmp:BRK.B/ratios"));
    }
}
