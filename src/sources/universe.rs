//! Universe files: constituent lists (S&P 500, EURO STOXX 50, Nikkei 225, crypto pairs).

use std::path::Path;

use super::SourceError;

/// Column names that hold the ticker in the supported lists, in order of preference.
const SYMBOL_COLUMNS: [&str; 4] = ["Symbol", "Ticker", "code", "symbol"];

/// Column names that hold a sector or category.
const SECTOR_COLUMNS: [&str; 4] = ["GICS Sector", "Sector", "category", "sector"];

/// One constituent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Ticker as the data files name it.
    pub ticker: String,
    /// Sector or category, when the list has one.
    pub sector: Option<String>,
}

/// Reads a constituents CSV: the ticker column (the first named like a symbol column) and, when
/// present, the sector column. Sorted by ticker, duplicates removed.
///
/// # Errors
/// Unreadable file, or no symbol column.
pub fn members(path: &Path) -> Result<Vec<Member>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap_or_default());
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|c| header.iter().position(|h| h == c))
    };
    let col = find(&SYMBOL_COLUMNS).ok_or_else(|| SourceError::Format {
        path: path.to_path_buf(),
        message: format!(
            "no ticker column (looked for {})",
            SYMBOL_COLUMNS.join(", ")
        ),
    })?;
    let sector_col = find(&SECTOR_COLUMNS);
    let mut out: Vec<Member> = Vec::new();
    for (i, f) in lines.map(split_csv).enumerate() {
        let Some(raw) = f.get(col).filter(|s| !s.is_empty()) else {
            continue;
        };
        let ticker = crate::names::canonical_ticker(raw).map_err(|e| SourceError::Format {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", i + 2),
        })?;
        let sector = sector_col
            .and_then(|c| f.get(c))
            .filter(|s| !s.is_empty())
            .cloned();
        out.push(Member { ticker, sector });
    }
    out.sort_by(|a, b| a.ticker.cmp(&b.ticker));
    out.dedup_by(|a, b| a.ticker == b.ticker);
    Ok(out)
}

/// The tickers of a constituents CSV, sorted.
///
/// # Errors
/// As [`members`].
pub fn load(path: &Path) -> Result<Vec<String>, SourceError> {
    Ok(members(path)?.into_iter().map(|m| m.ticker).collect())
}

/// Splits one CSV line, honouring double quotes (`"Saint Paul, Minnesota"` is one field).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.csv");
        std::fs::write(&p, text).unwrap();
        load(&p).unwrap()
    }

    #[test]
    fn reads_each_list_layout() {
        let sp = "Symbol,Security,GICS Sector,GICS Sub-Industry,Headquarters Location,Date added,CIK,Founded\nMMM,3M,Industrials,Industrial Conglomerates,\"Saint Paul, Minnesota\",1957-03-04,66740,1902\nBRK.B,Berkshire,Financials,x,\"Omaha, Nebraska\",2010-02-16,1067983,1839\n";
        assert_eq!(load_text(sp), vec!["BRK.B", "MMM"]);
        let eu = "Ticker,Main Listing,Name,Corporate Form,Registered Office,Sector,Founded\nADS.DE,FWB:ADS,Adidas,Aktiengesellschaft,Germany,Consumer Discretionary,1924\n";
        assert_eq!(load_text(eu), vec!["ADS.DE"]);
        let nk = "code,name\n1332,ニッスイ\n1333,マルハニチロ";
        assert_eq!(load_text(nk), vec!["1332", "1333"], "no trailing newline");
        let cr = "symbol,base,quote,data_in_this_repo\nBTCUSDT,BTC,USDT,a.csv;b.csv\n";
        assert_eq!(load_text(cr), vec!["BTCUSDT"]);
    }

    #[test]
    fn sectors_come_with_their_tickers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.csv");
        std::fs::write(
            &p,
            "Symbol,Name,Sector\nAAPL,Apple,Information Technology\nXOM,Exxon,Energy\n",
        )
        .unwrap();
        let m = members(&p).unwrap();
        assert_eq!(
            m[1],
            Member {
                ticker: "XOM".into(),
                sector: Some("Energy".into())
            }
        );
    }

    #[test]
    fn a_list_without_a_symbol_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.csv");
        std::fs::write(&p, "name\nx\n").unwrap();
        assert!(
            load(&p)
                .unwrap_err()
                .to_string()
                .contains("no ticker column")
        );
    }
}
