//! Universe files: constituent lists (S&P 500, EURO STOXX 50, Nikkei 225, crypto pairs).

use std::path::Path;

use super::SourceError;

/// Column names that hold the ticker in the supported lists, in order of preference.
const SYMBOL_COLUMNS: [&str; 4] = ["Symbol", "Ticker", "code", "symbol"];

/// Reads the tickers of a constituents CSV (first column named like a symbol column).
///
/// # Errors
/// Unreadable file, or no symbol column.
pub fn load(path: &Path) -> Result<Vec<String>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let col = SYMBOL_COLUMNS
        .iter()
        .find_map(|c| header.iter().position(|h| h == c))
        .ok_or_else(|| SourceError::Format {
            path: path.to_path_buf(),
            message: format!(
                "no ticker column (looked for {})",
                SYMBOL_COLUMNS.join(", ")
            ),
        })?;
    let mut out: Vec<String> = lines
        .filter_map(|l| l.split(',').nth(col))
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
