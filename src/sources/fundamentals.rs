//! Fundamentals (Financial Modeling Prep) and news sentiment (Finnhub) as dated facts.
//!
//! Files hold responses in the providers' real wire formats (see `../shared/PROVIDERS.md`):
//! - `<fmp_dir>/<SYMBOL>/ratios.json`, `key-metrics.json`, `income-statement.json`: FMP's stable
//!   endpoints, top-level arrays, newest first;
//! - `<finnhub_dir>/news-sentiment/<SYMBOL>/<fetched-at>.json`: one `/news-sentiment` response per
//!   file, named by the UTC time it was fetched (`2016-03-01T21:00:00Z.json`), since the body
//!   carries no time of its own.
//!
//! Every fact gets the time it became public, never the period it describes:
//! - an income statement at its `acceptedDate` (else `filingDate`);
//! - ratios and key metrics at the `acceptedDate` of the income statement of the same
//!   `(date, period)`; without one, conservatively at the period end plus the SEC deadline
//!   (90 days for `FY`, 45 for quarters);
//! - EPS growth (`epsGrowth` = eps / eps of the previous statement of the same period kind − 1)
//!   with the later statement;
//! - a sentiment snapshot at its fetch time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::bar::{TickerId, Tickers};
use crate::time::{DAY, EventTime, parse_time};

use super::SourceError;
use super::providers::fmp::number;

pub use crate::fact::{Fact, FactColumns};

fn read_json(path: &Path) -> Result<Option<Value>, SourceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SourceError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| SourceError::Format {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })?;
    if let Some(msg) = v.get("Error Message").and_then(Value::as_str) {
        return Err(SourceError::Format {
            path: path.to_path_buf(),
            message: format!("an FMP error body, not data: {msg}"),
        });
    }
    if let Some(msg) = v.get("error").and_then(Value::as_str) {
        return Err(SourceError::Format {
            path: path.to_path_buf(),
            message: format!("a Finnhub error body, not data: {msg}"),
        });
    }
    Ok(Some(v))
}

fn rows(path: &Path, v: Value) -> Result<Vec<serde_json::Map<String, Value>>, SourceError> {
    let Value::Array(items) = v else {
        return Err(SourceError::Format {
            path: path.to_path_buf(),
            message: "expected a top-level JSON array (FMP stable)".into(),
        });
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, it)| match it {
            Value::Object(m) => Ok(m),
            _ => Err(SourceError::Format {
                path: path.to_path_buf(),
                message: format!("item {i} is not an object"),
            }),
        })
        .collect()
}

fn text<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// Loads the facts of every ticker of the run that has files, sorted by time (then ticker, column).
///
/// # Errors
/// Unreadable files, bodies that are error bodies or not in the providers' shapes.
pub fn load(
    fmp_dir: Option<&Path>,
    finnhub_dir: Option<&Path>,
    columns: &FactColumns,
    tickers: &Tickers,
) -> Result<Vec<Fact>, SourceError> {
    let mut facts = Vec::new();
    for (id, name) in tickers.names().iter().enumerate() {
        let id = id as TickerId;
        if let Some(dir) = fmp_dir {
            fmp_facts(&dir.join(name), id, columns, &mut facts)?;
        }
        if let Some(dir) = finnhub_dir {
            finnhub_facts(
                &dir.join("news-sentiment").join(name),
                id,
                columns,
                &mut facts,
            )?;
        }
    }
    facts.sort_by_key(|f| (f.ts, f.ticker, f.column));
    Ok(facts)
}

fn fmp_facts(
    dir: &Path,
    ticker: TickerId,
    columns: &FactColumns,
    out: &mut Vec<Fact>,
) -> Result<(), SourceError> {
    if columns.fmp.is_empty() {
        return Ok(());
    }
    let col = |field: &str| {
        columns
            .fmp
            .iter()
            .position(|f| f == field)
            .map(|i| i as u32)
    };
    // Publication times from the income statements, keyed by (period end, period).
    let mut published: BTreeMap<(String, String), EventTime> = BTreeMap::new();
    let income_path = dir.join("income-statement.json");
    let mut statements = Vec::new();
    if let Some(v) = read_json(&income_path)? {
        for m in rows(&income_path, v)? {
            let (Some(date), Some(period)) = (text(&m, "date"), text(&m, "period")) else {
                continue;
            };
            let Some(ts) = text(&m, "acceptedDate")
                .or(text(&m, "filingDate"))
                .and_then(parse_time)
            else {
                continue;
            };
            published.insert((date.to_string(), period.to_string()), ts);
            statements.push((period.to_string(), date.to_string(), ts, m));
        }
    }
    statements.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let publication = |m: &serde_json::Map<String, Value>| -> Option<EventTime> {
        let date = text(m, "date")?;
        let period = text(m, "period").unwrap_or("FY");
        published
            .get(&(date.to_string(), period.to_string()))
            .copied()
            .or_else(|| {
                let lag = if period == "FY" { 90 } else { 45 };
                parse_time(date).map(|d| d + lag * DAY)
            })
    };
    for file in ["ratios.json", "key-metrics.json"] {
        let path = dir.join(file);
        let Some(v) = read_json(&path)? else { continue };
        for m in rows(&path, v)? {
            let Some(ts) = publication(&m) else { continue };
            for (k, v) in &m {
                if let (Some(c), Some(x)) = (col(k), number(v)) {
                    out.push(Fact {
                        ticker,
                        ts,
                        column: c,
                        value: x,
                    });
                }
            }
        }
    }
    let mut prev_eps: BTreeMap<String, f64> = BTreeMap::new();
    for (period, _date, ts, m) in &statements {
        for (k, v) in m {
            if let (Some(c), Some(x)) = (col(k), number(v)) {
                out.push(Fact {
                    ticker,
                    ts: *ts,
                    column: c,
                    value: x,
                });
            }
        }
        if let Some(eps) = m.get("eps").and_then(number) {
            if let (Some(c), Some(p)) = (col("epsGrowth"), prev_eps.get(period))
                && *p != 0.0
            {
                out.push(Fact {
                    ticker,
                    ts: *ts,
                    column: c,
                    value: eps / p - 1.0,
                });
            }
            prev_eps.insert(period.clone(), eps);
        }
    }
    Ok(())
}

/// Finnhub's `/news-sentiment` body. Integers may stand where floats are expected.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewsSentiment {
    #[serde(default)]
    buzz: Option<Buzz>,
    #[serde(default)]
    company_news_score: Option<f64>,
    #[serde(default)]
    sector_average_bullish_percent: Option<f64>,
    #[serde(default)]
    sector_average_news_score: Option<f64>,
    #[serde(default)]
    sentiment: Option<Sentiment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Buzz {
    #[serde(default)]
    articles_in_last_week: Option<f64>,
    #[serde(default)]
    buzz: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sentiment {
    #[serde(default)]
    bearish_percent: Option<f64>,
    #[serde(default)]
    bullish_percent: Option<f64>,
}

fn finnhub_facts(
    dir: &Path,
    ticker: TickerId,
    columns: &FactColumns,
    out: &mut Vec<Fact>,
) -> Result<(), SourceError> {
    if columns.finnhub.is_empty() || !dir.is_dir() {
        return Ok(());
    }
    let offset = columns.fmp.len() as u32;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| SourceError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for path in files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let ts = chrono::DateTime::parse_from_rfc3339(stem).map(|d| d.timestamp()).map_err(|e| SourceError::Format {
            path: path.clone(),
            message: format!("the file name must be the fetch time in RFC 3339 (e.g. 2016-03-01T21:00:00Z): {e}"),
        })?;
        let Some(v) = read_json(&path)? else { continue };
        let body: NewsSentiment = serde_json::from_value(v).map_err(|e| SourceError::Format {
            path: path.clone(),
            message: format!("not a /news-sentiment body: {e}"),
        })?;
        let values = [
            ("companyNewsScore", body.company_news_score),
            (
                "sectorAverageBullishPercent",
                body.sector_average_bullish_percent,
            ),
            ("sectorAverageNewsScore", body.sector_average_news_score),
            (
                "bullishPercent",
                body.sentiment.as_ref().and_then(|s| s.bullish_percent),
            ),
            (
                "bearishPercent",
                body.sentiment.as_ref().and_then(|s| s.bearish_percent),
            ),
            ("buzz", body.buzz.as_ref().and_then(|b| b.buzz)),
            (
                "articlesInLastWeek",
                body.buzz.as_ref().and_then(|b| b.articles_in_last_week),
            ),
        ];
        for (field, value) in values {
            if let (Some(i), Some(x)) = (columns.finnhub.iter().position(|f| f == field), value) {
                out.push(Fact {
                    ticker,
                    ts,
                    column: offset + i as u32,
                    value: x,
                });
            }
        }
    }
    Ok(())
}
