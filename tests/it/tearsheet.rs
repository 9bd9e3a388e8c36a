//! The tearsheet: every figure of quantstats' full report equals quantstats' own on the GOOG
//! reference run (`tests/fixtures/golden/goog_sma_cross_quantstats.json`, made by
//! `scripts/make_quantstats_golden.py`), and `report.html` draws in a real headless Chromium
//! without console errors, its charts non-empty, its numbers the run's, its trade list sortable.
//! Screenshots go to `target/report-screenshots/`.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::browser::{Browser, drawn};
use crate::common::{close, pipeline, repo, run_with};

fn golden() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/golden/goog_sma_cross_quantstats.json"))
            .expect("golden"),
    )
    .expect("json")
}

/// Every number of `golden` (recursively) equals the same path in `ours` within 1e-9 relative;
/// null (quantstats' NaN) must be null or NaN here. Returns how many numbers were compared.
fn compare(path: &str, golden: &Value, ours: &Value, failures: &mut Vec<String>) -> usize {
    match golden {
        Value::Object(map) => map
            .iter()
            .map(|(k, g)| {
                let o = ours.get(k).unwrap_or(&Value::Null);
                compare(&format!("{path}.{k}"), g, o, failures)
            })
            .sum(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let o = ours.get(i).unwrap_or(&Value::Null);
                compare(&format!("{path}[{i}]"), g, o, failures)
            })
            .sum(),
        Value::Number(g) => {
            let g = g.as_f64().expect("f64");
            match ours.as_f64() {
                Some(o) if close(o, g, 1e-9) => {}
                o => failures.push(format!("{path}: ours {o:?}, quantstats {g}")),
            }
            1
        }
        Value::Null => {
            if !(ours.is_null() || ours.as_f64().is_some_and(f64::is_nan)) {
                failures.push(format!("{path}: ours {ours}, quantstats NaN"));
            }
            1
        }
        Value::String(g) => {
            if ours.as_str() != Some(g.as_str()) {
                failures.push(format!("{path}: ours {ours}, quantstats {g}"));
            }
            1
        }
        Value::Bool(_) => 0,
    }
}

#[test]
fn every_figure_equals_quantstats_on_the_goog_reference_run() {
    let p = pipeline("reference_sma_cross.toml");
    let out = run_with(&p, 1);
    let sheet = findashpro::tearsheet::build(
        &p.pipeline.outputs.benchmark,
        &out.tickers,
        &out.ledger,
        &out.quarantine,
        &out.exposure,
    );
    let g = golden();
    assert_eq!(g["n_returns"], json!(sheet.daily.t.len() - 1));
    let mut failures = Vec::new();
    let mut n = 0;
    for (side, stats) in [("strategy", &sheet.strategy), ("benchmark", &sheet.bench)] {
        let mut ours = serde_json::to_value(stats).expect("stats");
        // quantstats' monthly table: year → 12 months and the year; ours is by year too.
        let months: serde_json::Map<String, Value> =
            findashpro_monthly(&sheet, side == "benchmark")
                .into_iter()
                .collect();
        ours["monthly"] = Value::Object(months);
        let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        let (sharpe, vol) = if side == "strategy" {
            (last(&sheet.daily.sharpe_6m), last(&sheet.daily.vol_12m))
        } else {
            (f64::NAN, f64::NAN)
        };
        if side == "strategy" {
            ours["rolling_sharpe_126_last"] = json!(sharpe);
            ours["rolling_volatility_252_last"] = json!(vol);
        }
        let mut golden_side = g[side].clone();
        // The rolling figures are checked on the strategy only (the worst drawdowns' recovery
        // day is ours alone: quantstats' table stops at the last day under the peak).
        if side == "benchmark" {
            let o = golden_side.as_object_mut().expect("object");
            o.remove("rolling_sharpe_126_last");
            o.remove("rolling_volatility_252_last");
        }
        n += compare(side, &golden_side, &ours, &mut failures);
    }
    let rel = serde_json::to_value(&sheet.relative).expect("relative");
    n += compare("vs_benchmark", &g["vs_benchmark"], &rel, &mut failures);
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n > 250, "only {n} figures compared");
}

/// The monthly heatmap as quantstats' `monthly_returns` gives it: year → JAN..DEC (0 for a month
/// without returns) and EOY.
fn findashpro_monthly(
    sheet: &findashpro::tearsheet::Tearsheet,
    bench: bool,
) -> Vec<(String, Value)> {
    let rows = if bench {
        &sheet.bench_monthly
    } else {
        &sheet.monthly
    };
    rows.iter()
        .map(|r| {
            let mut v: Vec<f64> = r.months.iter().map(|m| m.unwrap_or(0.0)).collect();
            v.push(r.year_return);
            (r.year.to_string(), json!(v))
        })
        .collect()
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshots")
}

fn report_in_browser(dir: &std::path::Path, shot: &str, ml: bool) {
    let b = Browser::start(1300, 9000);
    let url = format!("file://{}", dir.join("report.html").display());
    b.goto(&url);
    b.wait_for(
        "the report's charts",
        "return document.body.getAttribute('data-ready') === '1'",
        30,
    );
    assert_eq!(b.console_errors(), Vec::<String>::new());
    let mut charts = vec![
        "chart-cumulative",
        "chart-log",
        "chart-drawdown",
        "chart-sharpe",
        "chart-vol",
        "chart-exposure",
        "chart-yearly",
        "chart-hist",
    ];
    if ml {
        charts.push("chart-auc");
    }
    for id in charts {
        assert!(drawn(&b, id) > 2000, "{id} is (nearly) empty");
    }
    b.screenshot(&shots().join(shot));
    // The numbers shown are the run's (metrics.json).
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json"),
    )
    .expect("json");
    let shown = b.eval(
        "return document.querySelector('tr[data-key=\"sharpe\"] td').textContent",
        json!([]),
    );
    let sharpe = m["vs_benchmark"]["strategy"]["sharpe"]
        .as_f64()
        .expect("sharpe");
    assert_eq!(shown, json!(format!("{sharpe:.2}")));
    // The trade list sorts by P&L when its header is clicked (descending on the second click).
    let rows = b.eval(
        "return document.querySelectorAll('#trades tbody tr').length",
        json!([]),
    );
    if rows.as_u64().unwrap_or(0) > 1 {
        b.click("#trades thead th:nth-child(9)");
        b.click("#trades thead th:nth-child(9)");
        let pnl = b.eval(
            "return Array.from(document.querySelectorAll('#trades tbody tr td:nth-child(9)')).map(td => Number(td.dataset.v))",
            json!([]),
        );
        let v: Vec<f64> = serde_json::from_value(pnl).expect("numbers");
        assert!(v.windows(2).all(|w| w[0] >= w[1]), "not sorted: {v:?}");
    }
}

#[test]
fn the_report_draws_in_chromium_with_the_runs_numbers() {
    let work = tempfile::tempdir().expect("tempdir");
    let p = pipeline("reference_sma_cross.toml");
    let out = run_with(&p, 1);
    let dir = work.path().join("goog");
    findashpro::output::write(
        &dir,
        "reference_sma_cross",
        &out,
        &findashpro::output::Contents {
            report: true,
            tables: findashpro::sinks::files::Tables::of(&p.pipeline),
            provenance: None,
            benchmark: &p.pipeline.outputs.benchmark,
        },
    )
    .expect("run folder");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report");
    assert!(
        no_fetches(&html),
        "the report loads something from elsewhere"
    );
    report_in_browser(&dir, "goog.png", false);

    // An ML run on three tickers, measured against the equal-weight universe.
    let p = crate::ml::ml_in(&repo("data/sample"));
    let out = run_with(&p, 1);
    let dir = work.path().join("ml");
    findashpro::output::write(
        &dir,
        "ml",
        &out,
        &findashpro::output::Contents {
            report: true,
            tables: findashpro::sinks::files::Tables::of(&p.pipeline),
            provenance: None,
            benchmark: "",
        },
    )
    .expect("run folder");
    report_in_browser(&dir, "ml.png", true);
}

/// The page loads nothing: no `src=`/`href=` to another place, no fetch (links in licence
/// comments are text).
fn no_fetches(html: &str) -> bool {
    !html.contains(" src=\"http") && !html.contains(" href=\"http") && !html.contains("fetch(")
}

#[test]
fn a_benchmark_the_run_does_not_have_is_refused_by_name() {
    let p = crate::common::pipeline_text(
        &std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml"))
            .expect("pipeline")
            .replace("benchmark = \"GOOG\"", "benchmark = \"SPY\"")
            .replace(
                "data/reference/GOOG.csv",
                &repo("data/reference/GOOG.csv").display().to_string(),
            ),
        &repo("."),
    );
    let err = match findashpro::engine::run(&p, &Default::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("ran against a ticker it does not have"),
    };
    assert!(
        err.contains("[outputs] benchmark = \"SPY\"") && err.contains("GOOG"),
        "{err}"
    );
}
