//! Fetched fundamentals and sentiment kept in the recorded layout that
//! `sources::fundamentals` joins (see there for when each value becomes public):
//! - `<fmp_dir>/<TICKER>/<endpoint>.json`: an FMP `/stable` array, newest first. A new fetch
//!   is merged into what the file holds by `(date, period)` — a row FMP sends again replaces
//!   its old self, an older row it no longer sends (a smaller `limit`) is kept — so a fetch
//!   never loses a period fetched before;
//! - `<finnhub_dir>/news-sentiment/<TICKER>/<fetched-at>.json`: one `/news-sentiment` snapshot
//!   per fetch, named by its UTC fetch time, since the body carries no time of its own.
//!
//! Files are replaced whole through a temporary file and a rename.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::catalog::CatalogError;
use crate::time::{EventTime, format_rfc3339};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` whole ([`super::files::write_whole`]).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    super::files::write_whole(path, bytes).map_err(io(path))
}

fn key(row: &Map<String, Value>) -> (String, String) {
    let text = |k| row.get(k).and_then(Value::as_str).unwrap_or_default();
    (text("date").to_string(), text("period").to_string())
}

/// Merges `rows` into `<dir>/<ticker>/<endpoint>.json` and returns the file and how many rows
/// it holds.
///
/// # Errors
/// The file cannot be read or written, or what it holds is not an array of rows.
pub fn write_statement(
    dir: &Path,
    ticker: &str,
    endpoint: &str,
    rows: Vec<Map<String, Value>>,
) -> Result<(PathBuf, usize), CatalogError> {
    let path = dir.join(ticker).join(format!("{endpoint}.json"));
    let mut merged: Vec<Map<String, Value>> = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Vec<Map<String, Value>>>(&bytes) {
            Ok(old) => old,
            Err(e) => {
                return Err(CatalogError::Format {
                    path,
                    message: format!("not an array of rows, left as it is: {e}"),
                });
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&path)(e)),
    };
    let new: std::collections::BTreeSet<_> = rows.iter().map(key).collect();
    merged.retain(|r| !new.contains(&key(r)));
    merged.extend(rows);
    // Newest first, as FMP sends them; the period breaks a tie.
    merged.sort_by_key(|r| std::cmp::Reverse(key(r)));
    let bytes = serde_json::to_vec_pretty(&merged).map_err(|e| CatalogError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    replace(&path, &bytes)?;
    Ok((path, merged.len()))
}

/// Writes one sentiment snapshot fetched at `fetched_at` and returns its file.
///
/// # Errors
/// The file cannot be written.
pub fn write_snapshot(
    dir: &Path,
    ticker: &str,
    fetched_at: EventTime,
    body: &Map<String, Value>,
) -> Result<PathBuf, CatalogError> {
    let path = dir
        .join("news-sentiment")
        .join(ticker)
        .join(format!("{}.json", format_rfc3339(fetched_at)));
    let bytes = serde_json::to_vec_pretty(body).map_err(|e| CatalogError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    replace(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(date: &str, pe: f64) -> Map<String, Value> {
        serde_json::json!({"date": date, "period": "FY", "priceToEarningsRatio": pe})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn a_refetch_replaces_the_periods_it_sends_and_keeps_the_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("2024-09-28", 37.3), row("2023-09-30", 29.0)];
        let (path, n) = write_statement(dir.path(), "AAPL", "ratios", rows).unwrap();
        assert_eq!(n, 2);
        assert!(path.ends_with("AAPL/ratios.json"));
        let (_, n) =
            write_statement(dir.path(), "AAPL", "ratios", vec![row("2024-09-28", 37.5)]).unwrap();
        assert_eq!(n, 2);
        let kept: Vec<Map<String, Value>> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(kept[0]["priceToEarningsRatio"], serde_json::json!(37.5));
        assert_eq!(kept[1]["date"], "2023-09-30");
    }

    #[test]
    fn a_snapshot_is_named_by_its_fetch_time() {
        let dir = tempfile::tempdir().unwrap();
        let body = serde_json::json!({"companyNewsScore": 0.9})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let p = write_snapshot(dir.path(), "V", 1_456_866_000, &body).unwrap();
        assert!(
            p.ends_with("news-sentiment/V/2016-03-01T21:00:00Z.json"),
            "{}",
            p.display()
        );
    }
}
