//! The one name rule: what a ticker, a run id or a pipeline name may be, and a ticker's canonical
//! spelling.
//!
//! Every name becomes a path, a key or a file name somewhere: a run id is a folder under `runs/`
//! and a Redis key, a pipeline name starts run ids and names the model registry's folder. They
//! all pass [`check_name`]: nothing like `../escaped`, `/abs/path` or `""` gets that far.
//!
//! A ticker becomes a Redis key, a PostgreSQL value, a file name (feature cache, model registry)
//! and, with the providers, part of a URL. So every source — file names, a file's symbol column,
//! Parquet's `ticker` column, universe lists, pipeline files — and the stream decoder pass their
//! tickers through [`canonical_ticker`] and nothing else: a pipeline that a backtest accepts is accepted
//! by a live run, and the other way round.
//!
//! The rule: 1 to [`MAX_TICKER`] characters (names: [`MAX_NAME`]) from `A–Z a–z 0–9 . - ^ = _`, not starting with `.`, no
//! `..` (so no name can walk out of a folder). The canonical spelling of a pair written with a
//! slash (`BTC/USDT`, CryptoDataDownload's `symbol` column) drops the slash: `BTCUSDT`, the
//! exchange's own symbol and the spelling of the crypto universe lists. Nothing else is rewritten
//! (case included): `BRK.B`, `BF-B`, `^GSPC`, `EURUSD=X` stay as they are.

/// The longest ticker: room for option roots, futures with their exchange suffix and index names.
pub const MAX_TICKER: usize = 32;

/// The longest run id or pipeline name (a run id is the pipeline's name plus a time).
pub const MAX_NAME: usize = 64;

/// A name that breaks the rule; the message says what kind of name and which part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left once trimmed.
    #[error("a {0} cannot be empty")]
    Empty(&'static str),
    /// Longer than the kind's limit.
    #[error("{0} {1:?} is longer than {2} characters")]
    TooLong(&'static str, String, usize),
    /// A character outside `A–Z a–z 0–9 . - ^ = _`.
    #[error("{0} {1:?} has {2:?}; names are letters, digits and . - ^ = _")]
    Character(&'static str, String, char),
    /// Starts with `.` or holds `..`.
    #[error("{0} {1:?} starts with `.` or holds `..`")]
    Dots(&'static str, String),
}

impl crate::fault::Blame for NameError {
    /// A name comes from the command line, a pipeline file or a data file; where it came from
    /// decides, and the caller that knows wraps it. Alone it is the input's.
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Input
    }
}

fn check(kind: &'static str, t: &str, max: usize) -> Result<(), NameError> {
    if t.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '^' | '=' | '_')))
    {
        return Err(NameError::Character(kind, t.to_string(), c));
    }
    if t.len() > max {
        return Err(NameError::TooLong(kind, t.to_string(), max));
    }
    if t.starts_with('.') || t.contains("..") {
        return Err(NameError::Dots(kind, t.to_string()));
    }
    Ok(())
}

/// Checks a ticker against the rule, as it is (no rewriting).
///
/// # Errors
/// The first way the name breaks the rule.
pub fn check_ticker(t: &str) -> Result<(), NameError> {
    check("ticker", t, MAX_TICKER)
}

/// Checks a provider's spelling of a ticker: the ticker rule for each part around at most one
/// `:` (a market prefix, Polygon's `C:EURUSD`) and at most one `/` (a pair, Twelve Data's
/// `EUR/USD`). Clients percent-encode it before it reaches a URL.
///
/// # Errors
/// The first way a part breaks the rule.
pub fn check_provider_symbol(s: &str) -> Result<(), NameError> {
    let (market, rest) = s.split_once(':').unwrap_or(("", s));
    if !market.is_empty() {
        check_ticker(market)?;
    }
    let (base, quote) = rest.split_once('/').unwrap_or((rest, ""));
    check_ticker(base)?;
    if rest.contains('/') {
        check_ticker(quote)?;
    }
    Ok(())
}

/// Checks a run id, pipeline name or other name that becomes a path or a key; `kind` names it in
/// the error (`"run id"`, `"pipeline name"`).
///
/// # Errors
/// The first way the name breaks the rule.
pub fn check_name(kind: &'static str, t: &str) -> Result<(), NameError> {
    check(kind, t, MAX_NAME)
}

/// The canonical spelling of a ticker as found in data: trimmed, and a pair written
/// `BASE/QUOTE` (two runs of letters and digits around one slash) joined (`BTC/USDT` →
/// `BTCUSDT`); then checked.
///
/// # Errors
/// A name that breaks the rule; the error quotes the name as given.
pub fn canonical_ticker(raw: &str) -> Result<String, NameError> {
    let t = raw.trim();
    let pair = t.split_once('/').filter(|(base, quote)| {
        [base, quote]
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
    });
    let t = match pair {
        Some((base, quote)) => format!("{base}{quote}"),
        None => t.to_string(),
    };
    check_ticker(&t)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_folder_or_a_key_are_refused() {
        for bad in [
            "../../etc",
            "..",
            ".hidden",
            "A B",
            "",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            "a\0",
            "A\\B",
            "A%2F",
            "Ä",
        ] {
            assert!(check_ticker(bad).is_err(), "{bad:?}");
        }
        for good in [
            "AAPL",
            "BRK.B",
            "BF-B",
            "^GSPC",
            "EURUSD=X",
            "BTC_USD",
            "Binance_ADAUSDT_1h",
            "7203",
            "ADS.DE",
        ] {
            assert!(check_ticker(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_pair_with_a_slash_has_one_spelling() {
        assert_eq!(canonical_ticker("BTC/USDT").as_deref(), Ok("BTCUSDT"));
        assert_eq!(canonical_ticker(" ETC/BTC ").as_deref(), Ok("ETCBTC"));
        assert_eq!(canonical_ticker("BTCUSDT").as_deref(), Ok("BTCUSDT"));
        assert_eq!(canonical_ticker(""), Err(NameError::Empty("ticker")));
        assert_eq!(
            canonical_ticker("../../etc"),
            Err(NameError::Character("ticker", "../../etc".into(), '/'))
        );
        assert!(canonical_ticker("A/B/C").is_err());
        assert!(canonical_ticker("/USDT").is_err());
    }

    #[test]
    fn run_ids_and_pipeline_names_cannot_become_other_paths() {
        for bad in ["../escaped", "/some/abs/path", "", "a/b", "..", ".x", "x y"] {
            assert!(check_name("run id", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("run id", &"a".repeat(65)).is_err());
        for good in ["sample-20261204T101500", "my_run.2", "x"] {
            assert!(check_name("run id", good).is_ok(), "{good:?}");
        }
        let e = check_name("run id", "../escaped").unwrap_err().to_string();
        assert!(e.starts_with("run id \"../escaped\" has '/'"), "{e}");
    }
}
