//! The vocabulary of market-data providers that pipeline files name: which providers there are,
//! their hosts and environment variables, and bar intervals. The clients live in
//! `sources/providers/`.

/// The providers there are clients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Yahoo Finance's chart API (no key).
    Yahoo,
    /// Alpha Vantage (`apikey=` in the query).
    AlphaVantage,
    /// Polygon.io / Massive aggregates (`Authorization: Bearer`).
    Polygon,
    /// Tiingo end-of-day and IEX intraday prices (`Authorization: Token`).
    Tiingo,
    /// Twelve Data `/time_series` (`apikey=` in the query).
    TwelveData,
    /// Finnhub candles and news sentiment (premium; `X-Finnhub-Token`).
    Finnhub,
    /// Financial Modeling Prep's `/stable` fundamentals (`apikey=` in the query): ratios, key
    /// metrics and income statements, not bars.
    Fmp,
}

impl ProviderKind {
    /// Every provider's configuration name.
    pub const NAMES: [&'static str; 7] = [
        "yahoo",
        "alpha_vantage",
        "polygon",
        "tiingo",
        "twelve_data",
        "finnhub",
        "fmp",
    ];

    /// The provider of a configuration name.
    pub fn parse(name: &str) -> Option<ProviderKind> {
        match name {
            "yahoo" => Some(ProviderKind::Yahoo),
            "alpha_vantage" => Some(ProviderKind::AlphaVantage),
            "polygon" => Some(ProviderKind::Polygon),
            "tiingo" => Some(ProviderKind::Tiingo),
            "twelve_data" => Some(ProviderKind::TwelveData),
            "finnhub" => Some(ProviderKind::Finnhub),
            "fmp" => Some(ProviderKind::Fmp),
            _ => None,
        }
    }

    /// The provider's name in configuration, errors and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Yahoo => "yahoo",
            ProviderKind::AlphaVantage => "alpha_vantage",
            ProviderKind::Polygon => "polygon",
            ProviderKind::Tiingo => "tiingo",
            ProviderKind::TwelveData => "twelve_data",
            ProviderKind::Finnhub => "finnhub",
            ProviderKind::Fmp => "fmp",
        }
    }

    /// The provider's real host, used unless `FDP_<PROVIDER>_BASE_URL` says otherwise.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Yahoo => "https://query2.finance.yahoo.com",
            ProviderKind::AlphaVantage => "https://www.alphavantage.co",
            ProviderKind::Polygon => "https://api.polygon.io",
            ProviderKind::Tiingo => "https://api.tiingo.com",
            ProviderKind::TwelveData => "https://api.twelvedata.com",
            ProviderKind::Finnhub => "https://finnhub.io/api/v1",
            ProviderKind::Fmp => "https://financialmodelingprep.com",
        }
    }

    /// Whether the provider gives bars (every one but FMP, which gives fundamentals here).
    pub fn gives_bars(self) -> bool {
        self != ProviderKind::Fmp
    }

    /// `FDP_<PROVIDER>`: the prefix of its environment variables.
    pub fn env_prefix(self) -> String {
        format!("FDP_{}", self.name().to_ascii_uppercase())
    }
}

/// Bar length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// Daily bars, stamped at midnight UTC of their trading date (the files' convention).
    Day,
    /// Intraday bars of this many minutes, stamped at the instant the provider gives.
    Minutes(u32),
}

impl Interval {
    /// Parses `1d`, `1h`, `60m`, `5m`, `1m`, ...
    ///
    /// # Errors
    /// Anything else, quoted.
    pub fn parse(text: &str) -> Result<Interval, String> {
        let t = text.trim();
        let number = |s: &str| s.parse::<u32>().ok().filter(|n| *n > 0);
        if t == "1d" || t == "1day" {
            return Ok(Interval::Day);
        }
        if let Some(h) = t.strip_suffix('h').and_then(number) {
            return Ok(Interval::Minutes(h * 60));
        }
        if let Some(m) = t
            .strip_suffix("min")
            .or_else(|| t.strip_suffix('m'))
            .and_then(number)
        {
            return Ok(Interval::Minutes(m));
        }
        Err(format!(
            "interval {text:?}: expected 1d, Nh or Nm (1h, 5m, ...)"
        ))
    }

    /// The interval as a catalog directory names it: `1d`, `5m`, `60m`.
    pub fn label(self) -> String {
        match self {
            Interval::Day => "1d".into(),
            Interval::Minutes(m) => format!("{m}m"),
        }
    }

    /// Seconds per bar.
    pub fn seconds(self) -> i64 {
        match self {
            Interval::Day => crate::time::DAY,
            Interval::Minutes(m) => i64::from(m) * 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_refuse_with_the_text() {
        assert_eq!(Interval::parse("1d"), Ok(Interval::Day));
        assert_eq!(Interval::parse("1h"), Ok(Interval::Minutes(60)));
        assert_eq!(Interval::parse("5m"), Ok(Interval::Minutes(5)));
        assert_eq!(Interval::parse("15min"), Ok(Interval::Minutes(15)));
        assert!(Interval::parse("0m").is_err());
        assert!(Interval::parse("fortnight").is_err_and(|e| e.contains("fortnight")));
    }

    #[test]
    fn provider_names_round_trip() {
        for n in ProviderKind::NAMES {
            assert_eq!(ProviderKind::parse(n).map(ProviderKind::name), Some(n));
        }
        assert_eq!(ProviderKind::parse("bloomberg"), None);
    }
}
