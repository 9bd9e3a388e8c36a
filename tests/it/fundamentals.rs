//! Fundamentals (FMP) and news sentiment (Finnhub) joined as of each bar's time: a value reaches a
//! bar only from its publication on.

use findashpro::bar::Tickers;
use findashpro::sources::fundamentals::{FactColumns, load};
use findashpro::time::{format_time, parse_time};

use crate::common::{pipeline_text, repo, run_with};

fn aapl() -> Tickers {
    Tickers::new(["AAPL".to_string()])
}

#[test]
fn facts_carry_their_publication_time_not_their_period() {
    let cols = FactColumns {
        fmp: vec![
            "eps".into(),
            "epsGrowth".into(),
            "priceToEarningsRatio".into(),
            "returnOnEquity".into(),
        ],
        finnhub: vec!["companyNewsScore".into(), "bullishPercent".into()],
    };
    let facts = load(
        Some(&repo("tests/fixtures/fmp")),
        Some(&repo("tests/fixtures/finnhub")),
        &cols,
        &aapl(),
    )
    .expect("facts load");
    let at = |column: u32, value: f64| {
        facts
            .iter()
            .find(|f| f.column == column && (f.value - value).abs() < 1e-12)
            .map(|f| f.ts)
    };
    // FY2015 (period end 2015-09-26) was accepted by the SEC on 2015-10-28 16:31:09.
    assert_eq!(at(0, 9.22), parse_time("2015-10-28 16:31:09"));
    // The P/E of the same period is public only then, too.
    assert_eq!(at(2, 12.6), parse_time("2015-10-28 16:31:09"));
    // A quarter without an income statement: period end + 45 days.
    assert_eq!(
        at(2, 18.0),
        parse_time("2017-12-30").map(|t| t + 45 * 86_400)
    );
    // EPS growth FY2014 over FY2013 (6.45 / 5.68 − 1), with the FY2014 filing.
    assert_eq!(at(1, 6.45 / 5.68 - 1.0), parse_time("2014-10-27 17:10:21"));
    assert!(at(1, 5.68).is_none(), "no growth for the first year");
    // Sentiment: the fetch time in the file name; integer percents read as numbers.
    assert_eq!(at(4, 0.9166), parse_time("2017-06-01 21:00:00"));
    assert_eq!(at(5, 1.0), parse_time("2017-06-01 21:00:00"));
    assert!(facts.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn a_provider_error_body_is_refused_with_its_file() {
    let cols = FactColumns {
        fmp: vec!["priceToEarningsRatio".into()],
        finnhub: vec![],
    };
    let e = load(
        Some(&repo("tests/fixtures/fmp_errors")),
        None,
        &cols,
        &Tickers::new(["XOM".to_string()]),
    )
    .expect_err("an error body is no data");
    let msg = e.to_string();
    assert!(
        msg.contains("XOM/ratios.json")
            && msg.contains("FMP error body")
            && msg.contains("Limit Reach"),
        "{msg}"
    );
}

#[test]
fn a_value_reaches_bars_only_from_its_publication_on() {
    let text = format!(
        r#"
name = "fundamentals"
[source]
kind = "files"
format = "kaggle"
paths = ["{}"]
tickers = ["AAPL"]
[quality]
calendar = "nyse"
[[features]]
kind = "sma"
period = 10
[fundamentals]
fmp_dir = "{}"
fmp = ["epsGrowth"]
[model]
kind = "threshold"
feature = "FMP_epsGrowth"
long_when = "above"
enter = 0.0
exit = -0.05
"#,
        repo("data/sample/AAPL_data.csv").display(),
        repo("tests/fixtures/fmp").display()
    );
    let out = run_with(&pipeline_text(&text, &repo("")), 2);
    let signals: Vec<(String, &str)> = out
        .ledger
        .signals
        .iter()
        .map(|s| (format_time(s.ts), s.signal.target.action()))
        .collect();
    // FY2014's growth (+13.6%) was accepted 2014-10-27 17:10 UTC: the first bar that may see it is
    // stamped 2014-10-28.
    assert_eq!(signals.first(), Some(&("2014-10-28".to_string(), "buy")));
    // FY2016's growth (−9.9%), accepted 2016-10-26 16:42: first sell on 2016-10-27.
    let first_sell = signals.iter().find(|s| s.1 == "sell");
    assert_eq!(first_sell, Some(&("2016-10-27".to_string(), "sell")));
    // FY2017's (+10.8%), accepted Friday 2017-11-03 16:42: buys again from Monday 2017-11-06.
    let after: Vec<&(String, &str)> = signals
        .iter()
        .filter(|s| s.0.as_str() > "2016-10-27" && s.1 == "buy")
        .collect();
    assert_eq!(after.first().map(|s| s.0.as_str()), Some("2017-11-06"));
}
