//! The one ticker rule: what a ticker may be, and its canonical spelling.
//!
//! A ticker becomes a Redis key, a PostgreSQL value, a file name (feature cache, model registry)
//! and, with the providers, part of a URL. So every source — file names, a file's symbol column,
//! Parquet's `ticker` column, universe lists, pipeline files — and the stream decoder pass their
//! tickers through [`canonical`] and nothing else: a pipeline that a backtest accepts is accepted
//! by a live run, and the other way round.
//!
//! The rule: 1 to [`MAX_LEN`] characters from `A–Z a–z 0–9 . - ^ = _`, not starting with `.`, no
//! `..` (so no name can walk out of a folder). The canonical spelling of a pair written with a
//! slash (`BTC/USDT`, CryptoDataDownload's `symbol` column) drops the slash: `BTCUSDT`, the
//! exchange's own symbol and the spelling of the crypto universe lists. Nothing else is rewritten
//! (case included): `BRK.B`, `BF-B`, `^GSPC`, `EURUSD=X` stay as they are.

/// The longest ticker: room for option roots, futures with their exchange suffix and index names.
pub const MAX_LEN: usize = 32;

/// A name that breaks the ticker rule; the message says which part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickerError {
    /// Nothing left once trimmed.
    #[error("a ticker cannot be empty")]
    Empty,
    /// Longer than [`MAX_LEN`].
    #[error("ticker {0:?} is longer than {MAX_LEN} characters")]
    TooLong(String),
    /// A character outside `A–Z a–z 0–9 . - ^ = _`.
    #[error("ticker {0:?} has {1:?}; tickers are letters, digits and . - ^ = _")]
    Character(String, char),
    /// Starts with `.` or holds `..`.
    #[error("ticker {0:?} starts with `.` or holds `..`")]
    Dots(String),
}

/// Checks a ticker against the rule, as it is (no rewriting).
///
/// # Errors
/// The first way the name breaks the rule.
pub fn check(t: &str) -> Result<(), TickerError> {
    if t.is_empty() {
        return Err(TickerError::Empty);
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '^' | '=' | '_')))
    {
        return Err(TickerError::Character(t.to_string(), c));
    }
    if t.len() > MAX_LEN {
        return Err(TickerError::TooLong(t.to_string()));
    }
    if t.starts_with('.') || t.contains("..") {
        return Err(TickerError::Dots(t.to_string()));
    }
    Ok(())
}

/// True when `t` is a ticker as it is (see [`check`]).
pub fn is_valid(t: &str) -> bool {
    check(t).is_ok()
}

/// The canonical spelling of a ticker as found in data: trimmed, and a pair written
/// `BASE/QUOTE` (two runs of letters and digits around one slash) joined (`BTC/USDT` →
/// `BTCUSDT`); then checked.
///
/// # Errors
/// A name that breaks the rule; the error quotes the name as given.
pub fn canonical(raw: &str) -> Result<String, TickerError> {
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
    check(&t)?;
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
            assert!(!is_valid(bad), "{bad:?}");
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
            assert!(is_valid(good), "{good:?}");
        }
    }

    #[test]
    fn a_pair_with_a_slash_has_one_spelling() {
        assert_eq!(canonical("BTC/USDT").as_deref(), Ok("BTCUSDT"));
        assert_eq!(canonical(" ETC/BTC ").as_deref(), Ok("ETCBTC"));
        assert_eq!(canonical("BTCUSDT").as_deref(), Ok("BTCUSDT"));
        assert_eq!(canonical(""), Err(TickerError::Empty));
        assert_eq!(
            canonical("../../etc"),
            Err(TickerError::Character("../../etc".into(), '/'))
        );
        assert!(canonical("A/B/C").is_err());
        assert!(canonical("/USDT").is_err());
    }
}
