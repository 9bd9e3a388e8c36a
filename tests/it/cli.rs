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
    assert!(
        html.contains("id=\"chart-cumulative\"")
            && html.contains("Sharpe")
            && html.contains("Max drawdown")
    );
    // Everything inline: no script, style sheet or import fetched from anywhere.
    assert!(
        !html.contains("<script src") && !html.contains("<link") && !html.contains("@import"),
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
fn every_subcommand_has_help_with_dash_h_and_dash_dash_help() {
    let top = fdp(&["--help"]);
    let listing = String::from_utf8_lossy(&top.stdout).to_string();
    let subcommands = [
        "backtest",
        "features",
        "migrate",
        "orchestrate",
        "feed",
        "run",
        "validate",
        "bench",
        "query",
    ];
    for cmd in subcommands {
        assert!(listing.contains(cmd), "`fdp --help` lists {cmd}: {listing}");
        for flag in ["--help", "-h"] {
            let o = fdp(&[cmd, flag]);
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.contains("Usage: fdp"),
                "{cmd} {flag}: {}{}",
                text,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    // The cluster commands spell timely's host file out: `-h` never means anything else.
    let o = fdp(&["backtest", "-h"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--hostfile"));
    assert!(fdp(&["-h"]).status.success());
}

fn features_of(input: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    fdp(&[
        "features",
        "--input",
        &input.to_string_lossy(),
        "--output",
        &dir.join("out.csv").to_string_lossy(),
        "--only",
        "SMA_20",
    ])
}

/// Yahoo's hourly exports stamp bars with the exchange's UTC offset; they name instants.
#[test]
fn times_with_a_utc_offset_are_the_instants_they_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("7203.T.csv");
    let mut text = String::from("Datetime,Open,High,Low,Close,Adj Close,Volume\n");
    for h in 0..30 {
        let (day, hour) = (24 + h / 6, 9 + h % 6);
        let p = 2500.0 + f64::from(h);
        text.push_str(&format!(
            "2026-06-{day}T{hour:02}:00:00+0900,{p},{},{},{p},{p},1000\n",
            p + 5.0,
            p - 5.0
        ));
    }
    std::fs::write(&input, text).expect("write");
    let o = features_of(&input, dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, rows) = crate::common::read_csv(&dir.path().join("out.csv"));
    assert_eq!(rows.len(), 30, "every row read");
    // 09:00 in Tokyo is 00:00 UTC.
    assert_eq!(rows[0][0], "2026-06-24");
    assert_eq!(rows[1][0], "2026-06-24 01:00:00");
    assert_eq!(rows[19][1].parse::<f64>().expect("SMA"), 2509.5);
}

/// A file that gives no usable row is an error naming the rows, and no output is written.
#[test]
fn an_input_without_a_usable_row_is_an_error_that_names_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("BAD.csv");
    std::fs::write(
        &input,
        ",Open,High,Low,Close,Volume\nyesterday,1,2,0.5,1.5,10\n2026-13-45,1,2,0.5,1.5,10\n",
    )
    .expect("write");
    let o = features_of(&input, dir.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "the data's fault: {err}");
    assert!(
        err.contains("Error (data)")
            && err.contains("no usable row")
            && err.contains("BAD.csv:2")
            && err.contains("`yesterday`"),
        "{err}"
    );
    assert!(!dir.path().join("out.csv").exists());
    // Rows that parse but all fail the quality gate: an error too.
    std::fs::write(
        &input,
        ",Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,NaN,10\n",
    )
    .expect("write");
    let o = features_of(&input, dir.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no usable row"));
}

fn pipeline_over(dir: &std::path::Path, glob: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"p\"\n[source]\nkind = \"files\"\nformat = \"backtesting_py\"\npaths = [\"{glob}\"]\n{extra}\n[quality]\ncalendar = \"none\"\n[[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 20\n[model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_20\"\n[risk.sizing]\nkind = \"all_in\"\n[outputs]\ndir = \"{}\"\n",
            dir.join("runs").display()
        ),
    )
    .expect("write");
    p
}

/// A run over zero bars (an empty range, or every row rejected) fails in `validate` and `backtest`.
#[test]
fn a_run_over_zero_bars_is_an_error_in_validate_and_backtest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let glob = repo("data/reference/GOOG.csv").display().to_string();
    let p = pipeline_over(
        dir.path(),
        &glob,
        "start = \"2010-01-01\"\nend = \"2009-01-01\"",
    );
    for cmd in ["validate", "backtest"] {
        let o = fdp(&[cmd, &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "the input's fault: {cmd}: {err}");
        assert!(err.contains("is before source.start"), "{cmd}: {err}");
    }
    // A range outside the data: no bar at all.
    let p = pipeline_over(
        dir.path(),
        &glob,
        "start = \"2020-01-01\"\nend = \"2021-01-01\"",
    );
    for cmd in ["validate", "backtest"] {
        let o = fdp(&[cmd, &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "the data's fault: {cmd}: {err}");
        assert!(err.contains("no usable bar"), "{cmd}: {err}");
    }
    // Every row rejected: the error names the first rows by file and line.
    let bad = dir.path().join("BAD.csv");
    std::fs::write(
        &bad,
        ",Open,High,Low,Close,Volume\nnot-a-date,1,2,0.5,1.5,10\n",
    )
    .expect("write");
    let p = pipeline_over(dir.path(), &bad.display().to_string(), "");
    for cmd in ["validate", "backtest"] {
        let o = fdp(&[cmd, &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cmd}: {err}");
        assert!(
            err.contains("no usable bar") && err.contains("BAD.csv:2"),
            "{cmd}: {err}"
        );
    }
}

/// Real history before 1970: 200 bars from 1960 are 200 periods, with trades.
#[test]
fn bars_before_1970_are_each_their_own_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("OLD.csv");
    let mut text = String::from(",Open,High,Low,Close,Volume\n");
    let mut d = chrono::NaiveDate::from_ymd_opt(1960, 1, 4).expect("date");
    for i in 0..200 {
        let p = 100.0 + 10.0 * (f64::from(i) / 15.0).sin();
        text.push_str(&format!("{d},{p},{},{},{p},1000\n", p + 1.0, p - 1.0));
        d = d.succ_opt().expect("next day");
    }
    std::fs::write(&input, text).expect("write");
    let p = pipeline_over(dir.path(), &input.display().to_string(), "");
    let o = fdp(&["backtest", &p.to_string_lossy(), "--run-id", "old"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("200 bars, 200 periods"), "{out}");
    let trades: usize = out
        .split(" closed trades")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("trade count");
    assert!(trades > 0, "{out}");
    let q = fdp(&[
        "query",
        "--run",
        &dir.path().join("runs/old").to_string_lossy(),
        "SELECT MIN(time) AS first FROM equity",
    ]);
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("1960-01-04"),
        "{}{}",
        String::from_utf8_lossy(&q.stdout),
        String::from_utf8_lossy(&q.stderr)
    );
}

/// A backtest's quarantine file names where each rejected row came from (`file:line`), as the
/// live run's quarantine table names its stream entry.
#[test]
fn the_quarantine_file_keeps_each_rejected_rows_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("FX.csv");
    let mut text = String::from(",Open,High,Low,Close,Volume\n");
    let mut d = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
    for i in 0..60 {
        let p = 1.07 + 0.01 * (f64::from(i) / 7.0).sin();
        if i == 30 {
            // Line 32 of the file: a close that is not a number.
            text.push_str(&format!("{d},{p},{},{},1.0x7,1000\n", p + 0.001, p - 0.001));
        } else {
            text.push_str(&format!("{d},{p},{},{},{p},1000\n", p + 0.001, p - 0.001));
        }
        d = d.succ_opt().expect("next day");
    }
    std::fs::write(&input, text).expect("write");
    let p = pipeline_over(dir.path(), &input.display().to_string(), "");
    let o = fdp(&["backtest", &p.to_string_lossy(), "--run-id", "fx"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = fdp(&[
        "query",
        "--run",
        &dir.path().join("runs/fx").to_string_lossy(),
        "SELECT reason, origin FROM quarantine",
    ]);
    let shown = String::from_utf8_lossy(&q.stdout);
    assert!(
        shown.contains("FX.csv:32"),
        "{shown}{}",
        String::from_utf8_lossy(&q.stderr)
    );
}

/// A time far in the future still displays in `fdp query`.
#[test]
fn far_future_times_display_in_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("FUT.csv");
    let mut text = String::from(",Open,High,Low,Close,Volume\n");
    let mut d = chrono::NaiveDate::from_ymd_opt(2999, 1, 1).expect("date");
    for i in 0..40 {
        let p = 100.0 + f64::from(i % 7);
        text.push_str(&format!("{d},{p},{},{},{p},1000\n", p + 1.0, p - 1.0));
        d = d.succ_opt().expect("next day");
    }
    std::fs::write(&input, text).expect("write");
    let p = pipeline_over(dir.path(), &input.display().to_string(), "");
    let o = fdp(&["backtest", &p.to_string_lossy(), "--run-id", "fut"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = fdp(&[
        "query",
        "--run",
        &dir.path().join("runs/fut").to_string_lossy(),
        "SELECT time, equity FROM equity ORDER BY time DESC LIMIT 1",
    ]);
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(
        q.status.success() && text.contains("2999-02-09"),
        "{text}{}",
        String::from_utf8_lossy(&q.stderr)
    );
    // Filtering on such a time: `ts('…')` works for any year; a bare literal, which DataFusion
    // reads as nanoseconds, gets an error that says so and what to write.
    let run = dir.path().join("runs/fut");
    let q = fdp(&[
        "query",
        "--run",
        &run.to_string_lossy(),
        "SELECT count(*) AS n FROM equity WHERE time >= ts('2999-02-01')",
    ]);
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(q.status.success() && text.contains("| 9 "), "{text}");
    let q = fdp(&[
        "query",
        "--run",
        &run.to_string_lossy(),
        "SELECT count(*) FROM equity WHERE time >= '2999-02-01'",
    ]);
    let err = String::from_utf8_lossy(&q.stderr);
    assert!(
        !q.status.success() && err.contains("write ts('2999-01-20')"),
        "{err}"
    );
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

/// One ticker rule: a CryptoDataDownload export under a long file name gives the pair's canonical
/// ticker in a backtest, and a live run's decoder reads the same pair as the same ticker.
#[test]
fn a_pair_has_one_ticker_in_backtests_and_live_runs() {
    use findashpro::sources::redis_stream::{Entry, Work, decode};
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir
        .path()
        .join("Binance_BTCUSDT_futures_hourly_2020_export.csv");
    std::fs::copy(
        repo("data/reference/BTCUSDT_Binance_futures_data_hour.csv"),
        &file,
    )
    .expect("copy");
    let text = format!(
        "name = \"pair\"\n[source]\nkind = \"files\"\nformat = \"cryptodatadownload\"\npaths = [\"{}\"]\n[quality]\ncalendar = \"none\"\n[[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 20\n[model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_20\"\n",
        file.display()
    );
    let p = crate::common::pipeline_text(&text, dir.path());
    let source = findashpro::sources::Source::open(&p).expect("opens");
    assert_eq!(source.tickers().names(), ["BTCUSDT"]);
    let out = crate::common::run_with(&p, 1);
    assert!(out.ledger.bars > 3000, "{}", out.ledger.bars);
    let entry = Entry {
        id: "1-0".into(),
        fields: Some(
            [
                ("ticker", "BTC/USDT"),
                ("ts", "2020-12-30T00:00:00Z"),
                ("open", "1"),
                ("high", "2"),
                ("low", "0.5"),
                ("close", "1.5"),
                ("volume", "3"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
    };
    match decode(&entry) {
        Ok(Work::Bar { ticker, .. }) => assert_eq!(ticker, "BTCUSDT"),
        other => panic!("{other:?}"),
    }
}

/// `fdp query` only reads: `COPY … TO`, `CREATE EXTERNAL TABLE`, `INSERT` and `SET` are refused,
/// and no file is written or read beside the run's tables.
#[test]
fn query_is_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().to_string();
    let o = fdp(&[
        "backtest",
        "pipelines/reference_sma_cross.toml",
        "--run-id",
        "ro",
        "--out",
        &out,
    ]);
    assert!(o.status.success());
    let run = dir.path().join("ro");
    let fills = run.join("fills.parquet");
    let before = std::fs::read(&fills).expect("fills");
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a\nTOP-SECRET\n").expect("write");
    for sql in [
        format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS PARQUET",
            fills.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE s STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            secret.display()
        ),
        "INSERT INTO fills SELECT * FROM fills".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let q = fdp(&["query", "--run", &run.to_string_lossy(), &sql]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&q.stdout),
            String::from_utf8_lossy(&q.stderr)
        );
        assert!(!q.status.success(), "{sql}: {text}");
        assert!(!text.contains("TOP-SECRET"), "{text}");
    }
    assert_eq!(
        std::fs::read(&fills).expect("fills"),
        before,
        "fills.parquet untouched"
    );
}

/// Durations and rates that would panic or never end are argument errors (exit 2), not crashes.
#[test]
fn bad_durations_and_rates_are_argument_errors() {
    for (flag, value) in [
        ("--idle-shutdown", "-1"),
        ("--idle-shutdown", "NaN"),
        ("--idle-shutdown", "inf"),
        ("--idle-shutdown", "1e30"),
        ("--item-timeout", "NaN"),
        ("--claim-idle", "-1"),
        ("--claim-idle", "0"),
    ] {
        let o = fdp(&["run", "pipelines/sample.toml", flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
    for rate in ["0", "-1", "NaN"] {
        let o = fdp(&["feed", "pipelines/sample.toml", "--rate", rate]);
        assert_eq!(o.status.code(), Some(2), "--rate {rate}");
    }
}

/// Run ids and pipeline names are names, never paths: nothing is written outside `runs/`.
#[test]
fn run_ids_and_pipeline_names_cannot_escape_the_runs_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("runs");
    for id in ["../escaped", "/tmp/fdp-abs-escape", "", "a/../../b"] {
        let o = fdp(&[
            "backtest",
            "pipelines/reference_sma_cross.toml",
            "--run-id",
            id,
            "--out",
            &out.to_string_lossy(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{id:?}: {err}");
        assert!(err.contains("run id"), "{id:?}: {err}");
        let o = fdp(&["run", "pipelines/reference_sma_cross.toml", "--run-id", id]);
        assert!(!o.status.success(), "{id:?}");
    }
    assert!(!dir.path().join("escaped").exists());
    assert!(!std::path::Path::new("/tmp/fdp-abs-escape").exists());
    let p = dir.path().join("p.toml");
    let text = std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml"))
        .expect("pipeline")
        .replacen("name = \"reference_sma_cross\"", "name = \"../../x\"", 1);
    assert!(text.contains("../../x"));
    std::fs::write(&p, text).expect("write");
    let o = fdp(&["validate", &p.to_string_lossy()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("pipeline name \"../../x\""),
        "{err}"
    );
}

/// A run folder is complete or absent: written beside and renamed into place, nothing partial
/// left behind, and a rerun under the same id replaces it whole.
#[test]
fn a_run_folder_is_complete_or_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().to_string();
    for _ in 0..2 {
        let o = fdp(&[
            "backtest",
            "pipelines/reference_sma_cross.toml",
            "--run-id",
            "whole",
            "--out",
            &out,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["whole".to_string()],
            "no partial or replaced folder left"
        );
        for f in RUN_FILES {
            let len = std::fs::metadata(dir.path().join("whole").join(f)).map(|m| m.len());
            assert!(len.as_ref().is_ok_and(|l| *l > 0), "{f}: {len:?}");
        }
    }
}

/// Unknown keys are refused everywhere, also beside a `kind` that takes no parameters.
#[test]
fn unknown_keys_beside_a_parameterless_kind_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base =
        std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml")).expect("pipeline");
    for (what, extra) in [
        ("obv", "\n[[features]]\nkind = \"obv\"\nbogus = 5\n"),
        ("all_in", ""),
    ] {
        let text = if what == "all_in" {
            base.replacen("kind = \"all_in\"", "kind = \"all_in\"\nfraction = 0.5", 1)
        } else {
            format!("{base}{extra}")
        };
        assert_ne!(text, base, "{what}: the test changed the file");
        let p = dir.path().join(format!("{what}.toml"));
        std::fs::write(&p, text).expect("write");
        let o = fdp(&["validate", &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: {err}");
        assert!(err.contains("unknown field"), "{what}: {err}");
    }
}

/// Parameters that would validate and then abort (gigabytes per ticker) are refused by
/// `validate`, with the bound.
#[test]
fn parameters_past_their_bounds_are_refused_before_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base =
        std::fs::read_to_string(repo("pipelines/reference_sma_cross.toml")).expect("pipeline");
    for (change, want) in [
        (
            ("period = 10", "period = 1000000000"),
            "period must be from 1 to 100000",
        ),
        (
            ("period = 10", "period = 9223372036854775807"),
            "period must be from 1 to 100000",
        ),
        (
            (
                "kind = \"all_in\"",
                "kind = \"kelly\"\nwindow = 1000000000000",
            ),
            "2 <= window <= 100000",
        ),
    ] {
        let text = base.replacen(change.0, change.1, 1);
        assert_ne!(text, base, "{change:?}");
        let p = dir.path().join("p.toml");
        std::fs::write(&p, text).expect("write");
        let o = fdp(&["validate", &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{change:?}: {err}"
        );
    }
}

/// A server that accepts connections and never answers: `fdp migrate` gives up after the connect
/// timeout with the cause, and `fdp run` held by such a Redis still ends on SIGTERM within its
/// stop grace.
#[test]
fn a_server_that_never_answers_hangs_nothing() {
    // Accepted by the kernel into the backlog, never read: a server that does not answer.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let started = std::time::Instant::now();
    let o = fdp(&[
        "migrate",
        "--database-url",
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("no answer after 10s connecting"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    let mut c = Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args([
            "run",
            "pipelines/sample.toml",
            "--stop-grace",
            "2",
            "--redis-url",
        ])
        .arg(format!("redis://127.0.0.1:{port}"))
        .current_dir(repo(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fdp runs");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(crate::common::signal(c.id(), "TERM"));
    let signalled = std::time::Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().expect("wait") {
            break s;
        }
        assert!(
            signalled.elapsed() < std::time::Duration::from_secs(15),
            "fdp run ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    drop(silent);
}

/// Errors say who is at fault and exit with its status: 2 the command or the pipeline file, 3 the
/// data, 4 a service (here PostgreSQL refusing connections on a closed loopback port).
#[test]
fn errors_say_who_is_at_fault_in_the_message_and_the_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere.toml");
    let o = fdp(&["validate", &missing.to_string_lossy()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Error (input)") && err.contains("nowhere.toml"),
        "{err}"
    );
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "name = \"x\"\n[source]\nkind = \"teleport\"\n").expect("write");
    let o = fdp(&["backtest", &broken.to_string_lossy()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("broken.toml:3:"), "{err}");
    let o = fdp(&[
        "migrate",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/nothing",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("Error (service)") && err.contains("postgres"),
        "{err}"
    );
}

/// `fdp bench memory` runs a backtest in a child process and reports its peak RSS: a real,
/// plausible figure (more than the binary's own few MiB, less than the machine).
#[test]
fn bench_memory_reports_the_child_backtests_peak_rss() {
    let o = fdp(&[
        "bench",
        "memory",
        "--tickers",
        "50",
        "--bars",
        "300",
        "--workers",
        "1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("backtest 50 × 300 bars, -w 1"))
        .unwrap_or_else(|| panic!("a line for the run: {out}"));
    let mib: f64 = line
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a peak RSS figure: {line}"));
    assert!(mib > 5.0 && mib < 4096.0, "{line}");
    assert!(line.contains(" 15000 "), "50 × 300 bars replayed: {line}");
}

#[test]
fn a_backtest_writes_its_figures_as_a_prometheus_exposition_that_promtool_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().to_string();
    let prom = dir.path().join("fdp.prom");
    let o = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "prom",
        "--out",
        &out,
        "--metrics-file",
        &prom.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&prom).expect("the exposition");
    crate::common::promtool_check(&text);
    // The values are the run's own, as metrics.json has them.
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("prom/metrics.json")).expect("metrics"),
    )
    .expect("json");
    let sample = |name: &str, labels: &str| -> f64 {
        let head = format!("{name}{{run_id=\"prom\",pipeline=\"sample\"{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&head))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {head}in\n{text}"))
    };
    assert_eq!(
        sample("fdp_backtest_equity", ""),
        m["final_equity"].as_f64().expect("equity")
    );
    assert_eq!(
        sample("fdp_backtest_bars_total", ",stage=\"quality\""),
        m["bars"].as_f64().expect("bars")
    );
    for (status, n) in m["orders"].as_object().expect("orders by status") {
        assert_eq!(
            sample(
                "fdp_backtest_orders_total",
                &format!(",status=\"{status}\"")
            ),
            n.as_f64().expect("count"),
            "{status}"
        );
    }
    assert_eq!(
        sample("fdp_backtest_max_drawdown_ratio", ""),
        m["max_drawdown"].as_f64().expect("drawdown")
    );
    // The features operator's work is timed once per event time (one worker), the model's
    // once per activation: at least one, at most one per time.
    let periods = m["periods"].as_f64().expect("periods");
    assert_eq!(
        sample("fdp_backtest_stage_seconds_count", ",stage=\"features\""),
        periods
    );
    let predict = sample("fdp_backtest_stage_seconds_count", ",stage=\"predict\"");
    assert!(predict >= 1.0 && predict <= periods, "{predict}");
    assert!(sample("fdp_backtest_stage_seconds_sum", ",stage=\"features\"") > 0.0);
}

/// The sample backtest with limit entries good till cancelled, a volume cap, a commission per
/// share with a minimum and a bracket on every position: every order names its type, prices and
/// outcome, bracket legs name their entry, the fills add up to what each order says it filled, and
/// the broker's keys are refused past their bounds with the key's line.
#[test]
fn order_types_brackets_and_partial_fills_through_a_pipeline_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(repo("pipelines/sample.toml")).expect("pipeline");
    let data = repo("data/sample").to_string_lossy().to_string();
    let text = base
        .replace("data/sample", &data)
        .replacen(
            "commission = 0.001",
            "commission = { per_share = 0.005, minimum = 1.0 }\norder_type = \"limit\"\noffset = 0.002\ntime_in_force = \"gtc\"\nvolume_cap = 0.000002",
            1,
        )
        .replacen(
            "daily_loss_stop = 0.02",
            "daily_loss_stop = 0.02\ntake_profit = 0.04\nstop_loss = 0.02",
            1,
        );
    let p = dir.path().join("orders.toml");
    std::fs::write(&p, &text).expect("write");
    let out = dir.path().to_string_lossy().to_string();
    let o = fdp(&[
        "backtest",
        &p.to_string_lossy(),
        "--run-id",
        "types",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.path().join("types").to_string_lossy().to_string();
    let q = |sql: &str| {
        let o = fdp(&["query", "--run", &run, sql]);
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let kinds = q("SELECT intent || ':' || order_type FROM orders GROUP BY 1 ORDER BY 1");
    for want in [
        "entry:limit",
        "exit:market",
        "stop_loss:stop",
        "take_profit:limit",
    ] {
        assert!(kinds.contains(want), "{want} missing from\n{kinds}");
    }
    let legs = q(
        "SELECT 'orphans=' || count(*) FROM orders o WHERE intent IN ('take_profit', 'stop_loss') \
           AND (parent_id IS NULL OR parent_id NOT IN (SELECT order_id FROM orders WHERE intent = 'entry'))",
    );
    assert!(
        legs.contains("orphans=0"),
        "every leg names its entry: {legs}"
    );
    let sums = q("SELECT 'off=' || count(*) FROM orders o LEFT JOIN \
           (SELECT order_id, sum(quantity) AS q FROM fills GROUP BY order_id) f \
           ON f.order_id = o.order_id WHERE abs(coalesce(f.q, 0) - o.filled_quantity) > 1e-9");
    assert!(
        sums.contains("off=0"),
        "fills add up to each order's filled quantity: {sums}"
    );
    let parts = q("SELECT 'parts=' || max(seq) FROM fills");
    assert!(
        !parts.contains("parts=1 "),
        "the volume cap splits fills: {parts}"
    );
    let outcomes = q("SELECT DISTINCT status || ':' || reason AS o FROM orders ORDER BY o");
    assert!(outcomes.contains("cancelled:oco"), "{outcomes}");
    let least = q("SELECT 'least=' || min(commission) FROM fills");
    assert!(
        least.contains("least=1.0 ") || least.contains("least=1 "),
        "the minimum commission applies: {least}"
    );
    for (change, want) in [
        (
            ("offset = 0.002", "offset = 0.9"),
            "offset must be in [0, 0.5)",
        ),
        (
            ("order_type = \"limit\"", "order_type = \"market\""),
            "0 for market entries",
        ),
        (
            ("volume_cap = 0.000002", "volume_cap = 1.5"),
            "volume_cap must be in (0, 1]",
        ),
        (
            ("stop_loss = 0.02", "stop_loss = 1.0"),
            "stop_loss must be in (0, 1)",
        ),
        (
            ("minimum = 1.0", "minimum = -1.0"),
            "per_share and minimum must be zero or more",
        ),
        (
            ("time_in_force = \"gtc\"", "time_in_force = \"fok\""),
            "unknown variant `fok`",
        ),
    ] {
        let bad = text.replacen(change.0, change.1, 1);
        assert_ne!(bad, text, "{change:?}");
        std::fs::write(&p, bad).expect("write");
        let o = fdp(&["validate", &p.to_string_lossy()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{change:?}: {err}"
        );
        assert!(
            err.contains("orders.toml:"),
            "the error names the file and line: {err}"
        );
    }
}
