//! The same run gives the same outputs: twice, on 1, 2 and 4 worker threads, and as two processes
//! (timely's `-n 2 -p 0|1`, batches serialized across the process boundary).

use std::path::Path;
use std::process::Command;

use crate::common::{RUN_FILES, pipeline, repo, run_with};

#[test]
fn one_two_and_four_workers_give_identical_ledgers() {
    let p = pipeline("sample.toml");
    let a = run_with(&p, 1);
    let b = run_with(&p, 1);
    let c = run_with(&p, 2);
    let d = run_with(&p, 4);
    // Debug text compares NaN fields (rule models predict no return) as equal, and floats exactly.
    let text = |o: &findashpro::engine::RunOutput| {
        format!("{:?}{:?}{:?}", o.ledger, o.quarantine, o.exposure)
    };
    assert!(text(&a) == text(&b), "two runs on one worker differ");
    assert!(text(&a) == text(&c), "one and two workers differ");
    assert!(text(&a) == text(&d), "one and four workers differ");
    assert!(!a.ledger.fills.is_empty() && !a.quarantine.is_empty());
}

fn fdp(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fdp"));
    c.args(args).current_dir(repo(""));
    c
}

/// The files of a run folder but those that name how and when it was made (`run.json`: the
/// command line, the time) and the report (its title names the run).
fn outputs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("run folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "report.html" && n != "run.json")
        .collect();
    names.sort();
    names
}

fn assert_same_files(a: &Path, b: &Path) {
    let names = outputs(a);
    assert_eq!(names, outputs(b), "the folders hold different files");
    for f in RUN_FILES.iter().filter(|f| !names.iter().any(|n| n == **f)) {
        assert!(
            ["report.html", "run.json"].contains(f),
            "{f} missing from {}",
            a.display()
        );
    }
    for t in &names {
        let (x, y) = (
            std::fs::read(a.join(t)).expect("output"),
            std::fs::read(b.join(t)).expect("output"),
        );
        assert!(
            x == y,
            "{t} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn two_processes_write_the_same_bytes_as_one_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().to_string();
    let status = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "w1",
        "--out",
        &out,
    ])
    .status()
    .expect("fdp runs");
    assert!(status.success());
    let status = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "w2",
        "--out",
        &out,
        "-w",
        "2",
    ])
    .status()
    .expect("fdp runs");
    assert!(status.success());
    let status = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "w4",
        "--out",
        &out,
        "-w",
        "4",
    ])
    .status()
    .expect("fdp runs");
    assert!(status.success());
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1:{}\n127.0.0.1:{}\n",
            crate::common::free_port(),
            crate::common::free_port()
        ),
    )
    .expect("hostfile");
    let h = hosts.to_string_lossy().to_string();
    let mut p1 = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "n2",
        "--out",
        &out,
        "-n",
        "2",
        "-p",
        "1",
        "--hostfile",
        &h,
    ])
    .spawn()
    .expect("process 1");
    let p0 = fdp(&[
        "backtest",
        "pipelines/sample.toml",
        "--run-id",
        "n2",
        "--out",
        &out,
        "-n",
        "2",
        "-p",
        "0",
        "--hostfile",
        &h,
    ])
    .status()
    .expect("process 0");
    let s1 = p1.wait().expect("process 1 ends");
    assert!(
        p0.success() && s1.success(),
        "process 0: {p0}, process 1: {s1}"
    );
    assert_same_files(&dir.path().join("w1"), &dir.path().join("w2"));
    assert_same_files(&dir.path().join("w1"), &dir.path().join("w4"));
    assert_same_files(&dir.path().join("w1"), &dir.path().join("n2"));
}
