//! `fdp sweep`: each combination, run in the one dataflow, decides exactly what its own backtest
//! decides (on 1 and 2 workers), the folder holds one row per combination with every figure, the
//! walk-forward trades only what earlier windows chose, sweep.html draws in Chromium, and keys the
//! one read of the data shares are refused by name.

use std::path::Path;

use findashpro::config::Pipeline;
use findashpro::engine::sweep::run as sweep_run;
use findashpro::engine::{Cluster, RunOptions};
use findashpro::sweep::{parse_param, plan};
use serde_json::{Value, json};

use crate::browser::{Browser, drawn};
use crate::common::{fdp_ok, repo, run_with};

fn opts(workers: usize) -> RunOptions {
    RunOptions {
        cluster: Cluster {
            workers,
            ..Cluster::default()
        },
        ..RunOptions::default()
    }
}

/// Sweeps `sets` over `pipeline` on `workers` threads and checks every combination against its
/// own backtest: the same equity at every close, the same orders, trades and fills.
fn each_equals_its_backtest(pipeline: &str, sets: &[&str], workers: usize) {
    let path = repo(pipeline);
    let params = sets
        .iter()
        .map(|s| parse_param(s).expect("param"))
        .collect();
    let plan = plan(&path, params).expect("plan");
    let out = sweep_run(&plan.base, plan.spec.clone(), &opts(workers)).expect("sweep");
    assert_eq!(out.ledgers.len(), plan.combos.len());
    for (c, combo) in plan.combos.iter().enumerate() {
        let alone = run_with(
            &Pipeline::load_with(&path, &combo.sets).expect("combination"),
            1,
        );
        let (a, b) = (&out.ledgers[c].equity, &alone.ledger.equity);
        assert_eq!(a.len(), b.len(), "combination {c} {:?}", combo.values);
        for (x, y) in a.iter().zip(b) {
            assert_eq!(
                (x.ts, x.equity.to_bits(), x.cash.to_bits()),
                (y.ts, y.equity.to_bits(), y.cash.to_bits()),
                "combination {c} {:?}",
                combo.values
            );
        }
        assert_eq!(out.ledgers[c].orders, alone.ledger.orders, "orders of {c}");
        assert_eq!(out.ledgers[c].trades, alone.ledger.trades, "trades of {c}");
        assert_eq!(out.ledgers[c].fills, alone.ledger.fills, "fills of {c}");
        assert!(
            !alone.ledger.fills.is_empty() || c > 0,
            "combination {c} traded nothing"
        );
    }
}

#[test]
fn every_combination_decides_what_its_own_backtest_decides() {
    // One ticker, two model keys (one a bare period that adds SMA_5 and SMA_20), on 1 and 2 workers.
    let sets = [
        "model.fast=5,10",
        "model.slow=20,30",
        "broker.commission=0.001,0.002",
    ];
    each_equals_its_backtest("pipelines/reference_sma_cross.toml", &sets, 1);
    each_equals_its_backtest("pipelines/reference_sma_cross.toml", &sets, 2);
    // Twenty tickers, Kelly sizing with its caps and the daily loss stop, a risk key swept.
    let sets = ["model.slow=20,30", "risk.sizing.fraction=0.25,0.5"];
    each_equals_its_backtest("pipelines/sample.toml", &sets, 2);
}

#[test]
fn the_folder_ranks_every_combination_and_walks_forward_on_unseen_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().display().to_string();
    let stdout = fdp_ok(&[
        "sweep",
        "pipelines/reference_sma_cross.toml",
        "--set",
        "model.fast=5,10,20",
        "--set",
        "model.slow=20..60/10",
        "--walk-forward",
        "504:126",
        "--out",
        &out,
        "--run-id",
        "grid",
        "-w",
        "2",
    ]);
    assert!(stdout.contains("15 combinations"), "{stdout}");
    let folder = dir.path().join("grid");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("sweep.json")).expect("sweep.json"),
    )
    .expect("json");
    assert_eq!(summary["combinations"], json!(15));
    // SMA_5, 10, 20 and 30..60: the reference's two plus five added, each computed once.
    assert_eq!(summary["features"], json!(7));
    // The reference combination (10/30) is the backtest of tests/fixtures/golden.
    let rows = fdp_ok(&[
        "query",
        "--run",
        &folder.display().to_string(),
        "--format",
        "json",
        "SELECT combination, \"model.fast\" AS fast, \"model.slow\" AS slow, total_return, sharpe FROM sweep ORDER BY combination",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&rows).expect("json rows");
    assert_eq!(rows.len(), 15);
    let reference = rows
        .iter()
        .find(|r| r["fast"] == json!("10") && r["slow"] == json!("30"))
        .expect("10/30");
    let total = reference["total_return"].as_f64().expect("number");
    assert!((total - 4.410136915999996).abs() < 1e-9, "{total}");
    // The best by Sharpe is listed first and is the largest in the table.
    let best = summary["best"][0]["combination"].as_u64().expect("best");
    let max = rows
        .iter()
        .max_by(|a, b| {
            a["sharpe"]
                .as_f64()
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&b["sharpe"].as_f64().unwrap_or(f64::NEG_INFINITY))
        })
        .expect("rows");
    assert_eq!(max["combination"].as_u64(), Some(best));
    // Each window trades after its training days, back to back, and the stitched record is
    // exactly the chosen combinations' returns on the days they traded.
    let walk = &summary["walk"];
    let windows = walk["windows"].as_array().expect("windows");
    assert!(windows.len() >= 10);
    for w in windows.windows(2) {
        assert!(w[0]["train_to"].as_str() < w[0]["test_from"].as_str());
        assert!(w[0]["test_to"].as_str() < w[1]["test_from"].as_str());
    }
    let days = walk["returns"].as_array().expect("returns").len();
    assert_eq!(days, 2147 - 504);
    check_html(&folder);
}

fn check_html(folder: &Path) {
    let b = Browser::start(1300, 4000);
    b.goto(&format!("file://{}", folder.join("sweep.html").display()));
    b.wait_for(
        "sweep.html",
        "return document.body.getAttribute('data-ready') === '1'",
        30,
    );
    assert_eq!(b.console_errors(), Vec::<String>::new());
    assert!(
        drawn(&b, "chart-walk") > 2000,
        "the walk's equity is not drawn"
    );
    let cells = b.eval(
        "return document.querySelectorAll('#heatmap tbody td').length",
        json!([]),
    );
    assert_eq!(cells, json!(15));
    b.screenshot(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshots/sweep.png"),
    );
}

#[test]
fn keys_the_data_shares_and_models_it_cannot_sweep_are_refused_by_name() {
    let path = repo("pipelines/reference_sma_cross.toml");
    let err = plan(
        &path,
        vec![parse_param("source.start=2005-01-01,2006-01-01").expect("p")],
    )
    .expect_err("shared key");
    assert!(err.to_string().contains("source.start"), "{err}");
    let err =
        plan(&path, vec![parse_param("model.fast=SMA_7").expect("p")]).expect_err("no such column");
    assert!(
        err.to_string().contains("SMA_7") || err.to_string().contains("column"),
        "{err}"
    );
    assert!(plan(&path, vec![]).is_err());
}
