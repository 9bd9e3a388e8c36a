//! Reproducible and comparable runs: a run folder says what made it (`run.json`,
//! `pipeline.toml`), `--set` changes any key for one run, `fdp query` reads several runs at once
//! in three formats, `fdp compare` names what differs, `fdp init` writes a pipeline that runs, and
//! `fdp completions` prints a shell's script.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{ML_FILES, repo};

fn fdp_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("fdp runs")
}

fn fdp(args: &[&str]) -> Output {
    fdp_in(&repo(""), args)
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Backtests the sample pipeline into `out/<id>` with the given overrides.
fn backtest(out: &Path, id: &str, sets: &[&str]) -> Output {
    let out = out.to_string_lossy().into_owned();
    let mut args = vec![
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        id,
        "--out",
        &out,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    fdp(&args)
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).expect("run.json"))
        .expect("json")
}

#[test]
fn a_run_folder_says_what_made_it_and_set_changes_any_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&backtest(dir.path(), "plain", &[]));
    ok(&backtest(
        dir.path(),
        "tight",
        &["risk.max_positions=3", "broker.commission=0.002"],
    ));
    let (plain, tight) = (dir.path().join("plain"), dir.path().join("tight"));
    for f in ML_FILES {
        assert!(
            !plain.join(f).exists(),
            "{f} in a run without a model that makes it"
        );
    }

    let m = manifest(&tight);
    assert_eq!(m["run_id"], "tight");
    assert_eq!(m["fdp_version"], env!("CARGO_PKG_VERSION"));
    let commit = m["commit"].as_str().unwrap_or_default();
    assert!(
        commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "the commit fdp was built from: {commit:?}"
    );
    assert_eq!(
        m["overrides"],
        serde_json::json!(["risk.max_positions=3", "broker.commission=0.002"])
    );
    let line: Vec<&str> = m["command_line"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(line.contains(&"--set") && line.contains(&"risk.max_positions=3"));
    assert_ne!(
        m["fingerprint"],
        manifest(&plain)["fingerprint"],
        "an override makes another pipeline"
    );
    // Every bar file and the universe, each with its size and SHA-256 as sha256sum computes it.
    let inputs = m["inputs"].as_array().cloned().unwrap_or_default();
    assert_eq!(inputs.len(), 21, "20 tickers' files and the universe");
    let first = &inputs[0];
    let path = first["path"].as_str().unwrap_or_default();
    let sum = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(sum.split_whitespace().next(), first["sha256"].as_str());
    assert_eq!(
        first["bytes"].as_u64(),
        std::fs::metadata(path).ok().map(|m| m.len())
    );

    // The resolved pipeline: comments kept, the overrides in place, and it parses.
    let text = std::fs::read_to_string(tight.join("pipeline.toml")).expect("pipeline.toml");
    assert!(text.contains("max_positions = 3") && text.contains("commission = 0.002"));
    assert!(text.starts_with("# The default backtest"), "{text}");
    findashpro::config::Pipeline::parse(&text, Path::new("pipeline.toml")).expect("parses");
    let original = std::fs::read_to_string(repo("pipelines/sample.toml")).expect("sample");
    assert_eq!(
        std::fs::read_to_string(plain.join("pipeline.toml")).expect("plain pipeline"),
        original
    );
}

#[test]
fn a_bad_set_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (set, says) in [
        ("model.fastt=3", "unknown field `fastt`"),
        ("model.fast.x=1", "`model.fast` is a string, not a table"),
        ("features.9.period=5", "`features` has 5 entries"),
        ("model.fast", "expected key=value"),
        ("risk.max_positions=\"many\"", "max_positions"),
    ] {
        let o = backtest(dir.path(), "bad", &[set]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{set}: {err}");
        assert!(
            err.contains(says) && err.contains("sample.toml"),
            "{set}: {err}"
        );
    }
    assert!(!dir.path().join("bad").exists());
}

#[test]
fn query_reads_several_runs_at_once_in_three_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&backtest(dir.path(), "a", &[]));
    ok(&backtest(dir.path(), "b", &["risk.max_positions=3"]));
    let (a, b) = (
        dir.path().join("a").to_string_lossy().into_owned(),
        dir.path().join("b").to_string_lossy().into_owned(),
    );
    let count = |run: &str| -> u64 {
        let text = ok(&fdp(&[
            "query",
            "--run",
            run,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM orders",
        ]));
        text.lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let (na, nb) = (count(&a), count(&b));
    assert_ne!(na, nb, "max_positions changes the orders");

    let json = ok(&fdp(&[
        "query",
        "--run",
        &a,
        "--run",
        &b,
        "--format",
        "json",
        "SELECT run_id, count(*) AS n, max(time) AS last FROM orders GROUP BY run_id ORDER BY run_id",
    ]));
    let rows: serde_json::Value = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(2),
        "one row per run: {json}"
    );
    assert_eq!(rows[0]["run_id"], "a");
    assert_eq!(rows[0]["n"].as_u64(), Some(na), "counts are JSON numbers");
    assert_eq!(rows[1]["run_id"], "b");
    assert_eq!(rows[1]["n"].as_u64(), Some(nb));
    assert!(
        rows[0]["last"]
            .as_str()
            .is_some_and(|t| t.starts_with("2018-"))
    );

    // run_id comes first, then the table's own columns.
    let csv = ok(&fdp(&[
        "query",
        "--run",
        &a,
        "--run",
        &b,
        "--format",
        "csv",
        "SELECT * FROM equity ORDER BY run_id, time LIMIT 1",
    ]));
    assert!(csv.starts_with("run_id,time,"), "{csv}");

    let tables = ok(&fdp(&["query", "--run", &a, "SHOW TABLES"]));
    assert!(
        tables.contains("orders") && tables.contains("trades"),
        "{tables}"
    );
    assert!(!tables.contains("ml_metrics"), "{tables}");

    let file = dir.path().join("out.csv");
    let o = fdp(&[
        "query",
        "--run",
        &a,
        "--format",
        "csv",
        "--output",
        &file.to_string_lossy(),
        "SELECT ticker FROM orders ORDER BY time, ticker LIMIT 3",
    ]);
    assert!(ok(&o).is_empty(), "the result went to the file");
    let written = std::fs::read_to_string(&file).expect("written");
    assert_eq!(written.lines().count(), 4, "{written}");

    // Two folders of the same name cannot be told apart.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    ok(&backtest(elsewhere.path(), "a", &[]));
    let o = fdp(&[
        "query",
        "--run",
        &a,
        "--run",
        &elsewhere.path().join("a").to_string_lossy(),
        "SELECT 1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("two runs are named a"));
}

#[test]
fn compare_names_the_making_the_metrics_and_the_first_diverging_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&backtest(dir.path(), "a", &[]));
    ok(&backtest(dir.path(), "same", &[]));
    ok(&backtest(dir.path(), "b", &["risk.max_positions=3"]));
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();

    let same = ok(&fdp(&["compare", &path("a"), &path("same")]));
    assert!(same.contains("no order differs"), "{same}");
    assert!(
        !same.lines().any(|l| l.starts_with('*')),
        "identical runs have no marked metric: {same}"
    );
    assert!(!same.contains("fingerprint:"), "{same}");

    let text = ok(&fdp(&["compare", &path("a"), &path("b")]));
    assert!(text.contains("fingerprint: sample@"), "{text}");
    assert!(
        text.contains("overrides: [] → [risk.max_positions=3]"),
        "{text}"
    );
    assert!(text.contains("first diverging order: #"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("* orders.refused")),
        "the refusals differ: {text}"
    );
    // The diverging order is shown from both runs, column by column.
    assert!(
        text.contains("  a: order_id=") && text.contains("  b: order_id="),
        "{text}"
    );

    let o = fdp(&["compare", &path("a"), &path("nothing")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing/metrics.json"));
}

#[test]
fn init_writes_a_pipeline_that_runs_and_paths_follow_one_rule() {
    let project = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let pipelines = project.path().join("pipelines");
    let o = fdp_in(
        project.path(),
        &["init", "first", "--dir", &pipelines.to_string_lossy()],
    );
    ok(&o);
    let file = pipelines.join("first.toml");
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(
        text.contains("name = \"first\"")
            && text.lines().filter(|l| l.starts_with('#')).count() > 10
    );
    ok(&fdp_in(
        elsewhere.path(),
        &["validate", &file.to_string_lossy()],
    ));
    // A pipeline in a `pipelines/` folder writes its runs relative to the folder above, wherever
    // the command runs from — as its inputs are read.
    let out = ok(&fdp_in(
        elsewhere.path(),
        &["backtest", &file.to_string_lossy(), "--run-id", "r1"],
    ));
    assert!(out.contains("run r1:"), "{out}");
    assert!(project.path().join("runs/r1/orders.parquet").is_file());
    assert!(!elsewhere.path().join("runs").exists());

    // Never over an existing file; a name cannot leave the folder.
    let o = fdp_in(
        project.path(),
        &["init", "first", "--dir", &pipelines.to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
    let o = fdp_in(project.path(), &["init", "../escape"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!project.path().join("escape.toml").exists());
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_fdp()"),
        ("zsh", "#compdef fdp"),
        ("fish", "complete -c fdp"),
    ] {
        let text = ok(&fdp(&["completions", shell]));
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(300)]
        );
        for sub in ["backtest", "query", "compare", "init"] {
            assert!(text.contains(sub), "{shell} completes {sub}");
        }
    }
    let o = fdp(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}
