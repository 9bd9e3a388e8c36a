//! The `fdp` binary end to end: a backtest writes every output, a broken pipeline gets an error
//! naming file, line and column, and SQL runs over a run's tables.

use std::process::Command;

use crate::common::{RUN_FILES, repo};

fn fdp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(args)
        .current_dir(repo(""))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("fdp runs")
}

#[test]
fn backtest_writes_every_output_and_a_self_contained_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().to_string();
    let o = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "cli",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.path().join("cli");
    for f in RUN_FILES {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(run.join("report.html")).expect("report");
    assert!(html.contains("<svg") && html.contains("Sharpe") && html.contains("Max drawdown"));
    assert!(
        !html.contains("src=") && !html.contains("href=") && !html.contains("<script"),
        "the report must open offline"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).expect("metrics"))
            .expect("json");
    for key in [
        "total_return",
        "cagr",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
        "volatility",
        "trades",
        "win_rate",
        "exposure",
        "turnover",
        "commissions",
    ] {
        assert!(m.get(key).is_some(), "metrics.json lacks {key}");
    }
    let q = fdp(&[
        "query",
        "--run",
        &run.to_string_lossy(),
        "SELECT side, count(*) AS n FROM fills GROUP BY side ORDER BY side",
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(text.contains("buy") && text.contains("sell"), "{text}");
}

#[test]
fn a_broken_pipeline_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(repo("pipelines/sample.toml"))
        .expect("sample")
        .replace(
            "period = 30\n\n[[features]]\nkind = \"rsi\"",
            "period = 30\nperiod_typo = 3\n\n[[features]]\nkind = \"rsi\"",
        );
    std::fs::write(&bad, &text).expect("write");
    let o = fdp(&["validate", &bad.to_string_lossy()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let line = text
        .lines()
        .position(|l| l.starts_with("period_typo"))
        .expect("typo line")
        + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}:1")) && err.contains("period_typo"),
        "{err}"
    );
    let ok = fdp(&["validate", "pipelines/sample.toml"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn every_subcommand_has_help() {
    for cmd in ["backtest", "validate", "bench", "query", "features"] {
        let o = fdp(&[cmd, "--help"]);
        assert!(
            o.status.success(),
            "{cmd} --help: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd}"
        );
    }
}

#[test]
fn features_on_goog_reproduce_the_golden_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("goog_features.csv");
    let o = fdp(&[
        "features",
        "--input",
        "data/reference/GOOG.csv",
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (h, rows) = crate::common::read_csv(&out);
    let (gh, grows) = crate::common::read_csv(&repo("tests/fixtures/golden/goog_daily_talib.csv"));
    assert_eq!(h, gh, "same columns, same order");
    assert_eq!(rows.len(), grows.len());
    for (r, g) in rows.iter().zip(&grows) {
        assert_eq!(r[0], g[0]);
        for j in 1..h.len() {
            let (a, b): (f64, f64) = (r[j].parse().expect("ours"), g[j].parse().expect("golden"));
            assert!(
                a.is_nan() == b.is_nan() && (b.is_nan() || crate::common::close(a, b, 1e-9)),
                "{} on {}: {a} vs {b}",
                h[j],
                r[0]
            );
        }
    }
    let only = dir.path().join("only.csv");
    let o = fdp(&[
        "features",
        "--input",
        "data/reference/GOOG.csv",
        "--output",
        &only.to_string_lossy(),
        "--only",
        "RSI_14,MACD_12_26_9_signal",
    ]);
    assert!(o.status.success());
    let (h, _) = crate::common::read_csv(&only);
    assert_eq!(h, vec!["date", "RSI_14", "MACD_12_26_9_signal"]);
    let bad = fdp(&[
        "features",
        "--input",
        "data/reference/GOOG.csv",
        "--output",
        &only.to_string_lossy(),
        "--only",
        "RSI_41",
    ]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("unknown column `RSI_41`")
    );
}
