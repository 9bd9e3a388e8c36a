//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use findashpro::config::{LoadedPipeline, Pipeline};
use findashpro::engine::{Cluster, RunOptions, RunOutput, run};

/// Every file a backtest writes into its run folder.
pub const RUN_FILES: [&str; 12] = [
    "exposure.parquet",
    "signals.parquet",
    "orders.parquet",
    "fills.parquet",
    "positions.parquet",
    "equity.parquet",
    "trades.parquet",
    "quarantine.parquet",
    "metrics.json",
    "report.html",
    "run.json",
    "pipeline.toml",
];

/// The files only a run whose model is ML (`ml_*`) or that monitors drift (`drift`) writes.
pub const ML_FILES: [&str; 3] = ["ml_metrics.parquet", "ml_features.parquet", "drift.parquet"];

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under the repository root.
pub fn repo(p: &str) -> PathBuf {
    root().join(p)
}

/// Loads a pipeline of `pipelines/`.
pub fn pipeline(name: &str) -> LoadedPipeline {
    Pipeline::load(&repo(&format!("pipelines/{name}"))).expect("pipeline loads")
}

/// A pipeline from text, with relative paths resolved against `base`.
pub fn pipeline_text(text: &str, base: &Path) -> LoadedPipeline {
    let pipeline = Pipeline::parse(text, Path::new("test.toml")).expect("pipeline parses");
    LoadedPipeline {
        pipeline,
        path: base.join("test.toml"),
        base_dir: base.to_path_buf(),
        text: text.to_string(),
    }
}

/// Runs a pipeline on `workers` threads.
pub fn run_with(p: &LoadedPipeline, workers: usize) -> RunOutput {
    let opts = RunOptions {
        cluster: Cluster {
            workers,
            ..Cluster::default()
        },
        ..RunOptions::default()
    };
    run(p, &opts)
        .expect("run succeeds")
        .expect("worker 0 is in this process")
}

/// Runs `fdp` from the repository root to completion; panics with its standard error when it
/// fails, else returns its standard output.
pub fn fdp_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(args)
        .current_dir(repo(""))
        .env("FDP_LOG", "warn")
        .output()
        .expect("fdp runs");
    assert!(
        out.status.success(),
        "fdp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test of any process uses at the same time: `tag`, the process id and the
/// clock's nanoseconds.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// A key prefix of a test's own on the shared Redis (`REDIS_URL`), removed when the test ends,
/// passed or not.
pub struct RedisPrefix {
    /// The prefix (`<tag>_<pid>_<nanos>`).
    pub name: String,
    /// The Redis URL.
    pub url: String,
}

impl RedisPrefix {
    /// A new prefix starting with `tag`.
    pub fn new(tag: &str) -> RedisPrefix {
        RedisPrefix {
            name: unique(tag),
            url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut r) = findashpro::sources::redis_stream::Conn::open(&self.url) {
            let _ = r.delete_prefix(&self.name);
        }
    }
}

/// A TCP port on loopback nobody listens on at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sends `signal` (`"TERM"`, `"KILL"`, …) to process `pid` with `kill(1)`; true when delivered.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads a CSV file into (header, rows).
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("csv readable");
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

/// `|a − b| <= tol·max(|b|, 1)`.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// A fresh database, dropped (with its connections) when the guard goes.
pub struct TestDb {
    /// URL of the test database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDb {
    /// Creates the database and connects to it.
    pub async fn new() -> (TestDb, tokio_postgres::Client) {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = unique("fdp_test");
        let admin = findashpro::sinks::postgres::connect(&admin_url)
            .await
            .expect("PostgreSQL answers at DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => admin_url.clone(),
        };
        let client = findashpro::sinks::postgres::connect(&url)
            .await
            .expect("connect to the test database");
        (
            TestDb {
                url: url.clone(),
                admin_url,
                name,
            },
            client,
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(c) = findashpro::sinks::postgres::connect(&url).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Messages of a run's stream delivered and not yet acknowledged (XPENDING's count).
pub fn pending(
    r: &mut findashpro::sources::redis_stream::Conn,
    keys: &findashpro::sources::redis_stream::Keys,
) -> i64 {
    r.pending_count(keys).expect("XPENDING") as i64
}

/// Asserts `promtool check metrics` (Debian's prometheus package, which `scripts/test` installs)
/// accepts the exposition `text` without a word.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && said.trim().is_empty(),
        "promtool:\n{said}\n{text}"
    );
}
