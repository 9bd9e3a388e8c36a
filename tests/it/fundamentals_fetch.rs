//! `fdp fetch` of fundamentals: FMP `/stable` statements and Finnhub news sentiment from loopback
//! servers answering the documented bodies and errors, kept in the recorded layout and joined
//! exactly as recorded files are.

use findashpro::bar::Tickers;
use findashpro::sources::fundamentals::{FactColumns, load};

use super::providers::{KEY, RedisPrefix, Server, answer, redis_url};
use crate::common::repo;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(repo(path)).expect("fixture")
}

#[test]
fn fetched_statements_and_sentiment_join_as_the_recorded_files_do_and_failures_are_named() {
    let prefix = RedisPrefix::new("fundfetch");
    let limit = r#"{"Error Message": "Limit Reach . Please upgrade your plan or visit our documentation for more details at https://site.financialmodelingprep.com/"}"#;
    let fmp = Server::start(vec![
        answer(
            200,
            &fixture("tests/fixtures/fmp/AAPL/income-statement.json"),
        ),
        answer(200, &fixture("tests/fixtures/fmp/AAPL/ratios.json")),
        answer(200, &fixture("tests/fixtures/fmp/AAPL/key-metrics.json")),
        // FMP reports its daily cap inside a 200.
        answer(200, limit),
    ]);
    // Percents as fractions; 85 is a percent sent where a fraction belongs.
    let sentiment = r#"{"buzz": {"articlesInLastWeek": 20, "buzz": 0.8888, "weeklyAverage": 22.5}, "companyNewsScore": 0.9166, "sectorAverageBullishPercent": 0.6482, "sectorAverageNewsScore": 0.5191, "sentiment": {"bearishPercent": 0, "bullishPercent": 85}, "symbol": "AAPL"}"#;
    let finnhub = Server::start(vec![
        answer(200, sentiment),
        answer(
            403,
            r#"{"error":"You don't have access to this resource."}"#,
        ),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (fmp_dir, finnhub_dir) = (dir.path().join("fmp"), dir.path().join("finnhub"));
    let path = dir.path().join("p.toml");
    let text = format!(
        r#"name = "fundfetch"
[source]
kind = "files"
format = "kaggle"
paths = ["{aapl}", "{msft}"]
[[features]]
kind = "sma"
period = 10
[fundamentals]
fmp_dir = "{fmp_dir}"
finnhub_dir = "{finnhub_dir}"
fmp = ["eps", "epsGrowth", "priceToEarningsRatio", "returnOnEquity"]
finnhub = ["companyNewsScore", "bullishPercent", "bearishPercent"]
fmp_limit = 40
prefix = "{prefix}"
providers = [{{ name = "fmp", base_url = "{fmp_url}" }}, {{ name = "finnhub", base_url = "{finnhub_url}", tier = "premium" }}]
[model]
kind = "threshold"
feature = "FMP_epsGrowth"
long_when = "above"
enter = 0.0
exit = -0.05
"#,
        aapl = repo("data/sample/AAPL_data.csv").display(),
        msft = repo("data/sample/MSFT_data.csv").display(),
        fmp_dir = fmp_dir.display(),
        finnhub_dir = finnhub_dir.display(),
        prefix = prefix.0,
        fmp_url = fmp.url,
        finnhub_url = finnhub.url,
    );
    std::fs::write(&path, text).expect("pipeline");
    let before = findashpro::time::wall_unix();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(["fetch", &path.to_string_lossy()])
        .env("FDP_FMP_KEY", KEY)
        .env("FDP_FINNHUB_KEY", KEY)
        .env("REDIS_URL", redis_url())
        .output()
        .expect("fdp runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.contains(KEY), "the key leaked: {out}");
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("3 statement files, 1 sentiment snapshots, 1 rows quarantined, 2 failed"),
        "{out}"
    );
    assert!(
        out.contains("MSFT fmp: fmp: throttled (Limit Reach"),
        "{out}"
    );
    assert!(
        out.contains("MSFT finnhub: finnhub: not in the plan"),
        "{out}"
    );

    // FMP was asked on /stable with the symbol and the key in the query, statements first.
    let asked = fmp.targets();
    assert_eq!(
        asked[0],
        format!("/stable/income-statement?symbol=AAPL&period=annual&limit=40&apikey={KEY}")
    );
    assert!(asked[1].starts_with("/stable/ratios?symbol=AAPL&"));
    assert!(asked[2].starts_with("/stable/key-metrics?symbol=AAPL&"));
    assert_eq!(finnhub.targets()[0], "/news-sentiment?symbol=AAPL");

    // The statements join to the very facts the recorded files give.
    let fmp_cols = FactColumns {
        fmp: vec![
            "eps".into(),
            "epsGrowth".into(),
            "priceToEarningsRatio".into(),
            "returnOnEquity".into(),
        ],
        finnhub: vec![],
    };
    let aapl = Tickers::new(["AAPL".to_string()]);
    let fetched = load(Some(&fmp_dir), None, &fmp_cols, &aapl).expect("fetched facts");
    let recorded =
        load(Some(&repo("tests/fixtures/fmp")), None, &fmp_cols, &aapl).expect("recorded");
    assert!(!recorded.is_empty());
    assert_eq!(fetched, recorded);

    // One snapshot, named by its fetch time, its facts dated then; the bad percent quarantined.
    let snaps: Vec<_> = std::fs::read_dir(finnhub_dir.join("news-sentiment/AAPL"))
        .expect("snapshot dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let sent_cols = FactColumns {
        fmp: vec![],
        finnhub: vec![
            "companyNewsScore".into(),
            "bullishPercent".into(),
            "bearishPercent".into(),
        ],
    };
    let facts = load(None, Some(&finnhub_dir), &sent_cols, &aapl).expect("sentiment facts");
    let values: Vec<(u32, f64)> = facts.iter().map(|f| (f.column, f.value)).collect();
    assert_eq!(values, vec![(0, 0.9166), (2, 0.0)]);
    let after = findashpro::time::wall_unix();
    assert!(facts.iter().all(|f| f.ts >= before && f.ts <= after));
    let q = std::fs::read_to_string(finnhub_dir.join("quarantine.jsonl")).expect("quarantine");
    assert!(
        q.contains("sentiment.bullishPercent is 85") && q.contains("\"ticker\":\"AAPL\""),
        "{q}"
    );
    assert!(
        !fmp_dir.join("MSFT").exists(),
        "nothing written for a throttled ticker"
    );
}
