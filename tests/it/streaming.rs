//! The streaming run against the real Redis (`REDIS_URL`) and PostgreSQL (`DATABASE_URL`): each
//! test in a database of its own and under a key prefix of its own, both removed afterwards.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use findashpro::config::LoadedPipeline;
use findashpro::sinks::postgres::write_ledger;
use findashpro::sources::redis_stream::{Conn, Keys};
use findashpro::stream::{self, Ending, StreamOptions};

use crate::common::{TestDb, pipeline_text, root, run_with};
use crate::servers::{PrivatePg, PrivateRedis};

/// Six sample tickers over 25 months: ~3,200 bars, with signals, fills, refusals and quarantined
/// rows (DHR and O on 2016-01-12 have only a close).
pub(crate) fn pipeline_toml() -> String {
    let sample = std::fs::read_to_string(root().join("pipelines/sample.toml")).expect("sample");
    let r = root();
    sample
        .replace(
            "paths = [\"data/sample/*_data.csv\"]",
            &format!(
                "paths = [\"{}/data/sample/*_data.csv\"]\ntickers = [\"AAPL\", \"AMD\", \"DHR\", \"JPM\", \"O\", \"XOM\"]",
                r.display()
            ),
        )
        .replace(
            "universe = \"data/sample/",
            &format!("universe = \"{}/data/sample/", r.display()),
        )
        .replace("start = \"2013-02-08\"", "start = \"2016-01-04\"")
}

pub(crate) fn test_pipeline() -> LoadedPipeline {
    pipeline_text(&pipeline_toml(), &root())
}

/// Counts the rows of `table` (over `cols`) in run `a` and not in run `b`, and the other way.
fn differ_sql(table: &str, cols: &str, a: &str, b: &str) -> String {
    format!(
        "SELECT count(*) FROM ((SELECT {cols} FROM {table} WHERE run_id = '{a}' EXCEPT ALL \
         SELECT {cols} FROM {table} WHERE run_id = '{b}') UNION ALL (SELECT {cols} FROM {table} \
         WHERE run_id = '{b}' EXCEPT ALL SELECT {cols} FROM {table} WHERE run_id = '{a}')) d"
    )
}

/// The tables a stream run must share with the backtest, and the columns compared.
pub(crate) const COMPARED: [(&str, &str); 6] = [
    (
        "signals",
        "ticker, time, action, confidence, predicted_return",
    ),
    (
        "orders",
        "order_id, time, ticker, side, intent, size_fraction, status, reason",
    ),
    (
        "fills",
        "order_id, time, ticker, side, quantity, price, commission",
    ),
    ("positions", "ticker, time, quantity, entry_price"),
    ("exposure", "time, sector, cost_cents, positions"),
    (
        "equity",
        "time, cash, positions_value, equity, open_positions",
    ),
];

/// The `error` field of each dead letter.
fn dead_errors(dead: &[findashpro::sources::redis_stream::Entry]) -> Vec<String> {
    dead.iter()
        .map(|e| {
            e.map()
                .get("error")
                .copied()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A database, a key prefix, and a runtime to query with.
struct Env {
    db: TestDb,
    client: tokio_postgres::Client,
    rt: tokio::runtime::Runtime,
    redis_url: String,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(name: &str) -> Env {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (db, client) = rt.block_on(TestDb::new());
        Env {
            db,
            client,
            rt,
            redis_url: std::env::var("REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: crate::common::unique(&format!("fdptest:{name}")),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn opts(&self, run_id: &str, workers: usize) -> StreamOptions {
        let mut o = StreamOptions::new(&self.redis_url, &self.db.url, run_id);
        o.prefix = self.prefix.clone();
        o.cluster.workers = workers;
        o.idle_shutdown = Some(Duration::from_millis(1500));
        o.claim_idle = Duration::from_secs(2);
        o.stop_file = Some(self.dir.path().join("STOP"));
        o
    }

    fn redis(&self) -> Conn {
        Conn::open(&self.redis_url).expect("Redis answers at REDIS_URL")
    }

    fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .expect("query")
            .get(0)
    }

    /// Writes the backtest of the same pipeline as run `batch`.
    fn backtest(&mut self, p: &LoadedPipeline) -> findashpro::engine::RunOutput {
        let out = run_with(p, 1);
        self.rt
            .block_on(async {
                findashpro::sinks::postgres::migrate(&mut self.client).await?;
                write_ledger(
                    &mut self.client,
                    "batch",
                    &out.tickers,
                    &out.ledger,
                    &out.exposure,
                )
                .await
            })
            .expect("backtest written");
        out
    }

    /// Rows of `table` (over `cols`) in one run and not the other, both ways.
    fn differ(&self, table: &str, cols: &str, a: &str, b: &str) -> i64 {
        self.scalar(&differ_sql(table, cols, a, b))
    }

    /// Asserts run `stream` holds exactly the backtest's signals, orders, fills, positions and
    /// sector exposure.
    fn assert_same_as_backtest(&self) {
        self.assert_same_as_backtest_but(&[]);
    }

    /// As [`Env::assert_same_as_backtest`], leaving out the tables named.
    fn assert_same_as_backtest_but(&self, left_out: &[&str]) {
        for (t, cols) in COMPARED.iter().filter(|(t, _)| !left_out.contains(t)) {
            let n = self.scalar(&format!("SELECT count(*) FROM {t} WHERE run_id = 'batch'"));
            assert!(n > 0, "the backtest wrote {t}");
            let d = self.differ(t, cols, "batch", "stream");
            if d != 0 {
                let rows = self
                    .rt
                    .block_on(self.client.query(
                        &format!(
                            "SELECT run_id || ' ' || row({cols})::text FROM {t} WHERE run_id IN ('batch', 'stream') \
                             ORDER BY {cols}, run_id LIMIT 60"
                        ),
                        &[],
                    ))
                    .unwrap_or_default();
                let shown: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                let n = self.scalar(&format!("SELECT count(*) FROM {t} WHERE run_id = 'stream'"));
                panic!(
                    "{t}: {d} rows differ ({n} in the stream run); first rows:\n{}",
                    shown.join("\n")
                );
            }
        }
    }

    fn pending(&self) -> i64 {
        crate::common::pending(&mut self.redis(), &self.keys())
    }

    /// Asserts run `stream`'s quarantine is the backtest's, row for row (ticker, time, reason,
    /// action; the detail names a file line in one and a stream entry in the other).
    fn assert_same_quarantine(&self, backtest: &[findashpro::operators::quality::Reject]) {
        let mut want: Vec<(String, i64, String, String)> = backtest
            .iter()
            .map(|r| {
                (
                    r.ticker.clone(),
                    r.ts.unwrap_or(-1),
                    r.reason.as_str().to_string(),
                    format!("{:?}", r.action).to_lowercase(),
                )
            })
            .collect();
        want.sort();
        let got: Vec<(String, i64, String, String)> = self
            .rt
            .block_on(self.client.query(
                "SELECT ticker, ts, reason, action FROM quarantine WHERE run_id = 'stream' \
                 ORDER BY ticker, ts, reason, action",
                &[],
            ))
            .expect("quarantine")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert!(!want.is_empty(), "the backtest quarantined rows");
        assert_eq!(got, want, "the stream's quarantine is the backtest's");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(mut r) = Conn::open(&self.redis_url) {
            let _ = r.delete_prefix(&self.prefix);
        }
    }
}

#[test]
fn bars_replayed_through_redis_give_the_backtests_decisions() {
    let mut env = Env::new("replay");
    let p = test_pipeline();
    let out = env.backtest(&p);
    let o = env.opts("stream", 2);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, None));
    let ending = stream::run(&p, &o).expect("stream run");
    let fed = feeder.join().expect("feeder").expect("feed");
    assert_eq!(ending, Ending::Idle);
    assert_eq!(
        fed,
        out.ledger.bars
            + out
                .quarantine
                .iter()
                .filter(|r| r.action == findashpro::operators::quality::Action::Rejected)
                .count() as u64
    );
    env.assert_same_as_backtest();
    // The quarantine too, row for row.
    env.assert_same_quarantine(&out.quarantine);
    assert_eq!(env.pending(), 0, "every message acknowledged");
    let m = &o.metrics;
    assert_eq!(m.dead_letters.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(m.latency_count() > 0);
    let text = m.render();
    assert!(text.contains("fdp_xadd_to_commit_seconds_count"));
    // The features and model operators' work is timed on the live run's metrics too.
    assert!(m.stages.features.count() > 0 && m.stages.predict.count() > 0);
    assert!(text.contains("fdp_stage_seconds_bucket{stage=\"predict\",le=\"+Inf\"}"));
    // Bars per stage, orders by status and quarantine by reason, as the backtest counts them.
    let labelled = |name: &str, labels: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{{labels}}} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        labelled("fdp_stage_bars_total", "stage=\"quality\""),
        out.ledger.bars as f64
    );
    assert!(labelled("fdp_stage_bars_total", "stage=\"source\"") >= out.ledger.bars as f64);
    let bt = findashpro::metrics::compute(&out.ledger, &out.quarantine);
    for (status, n) in &bt.orders {
        assert_eq!(
            labelled("fdp_order_outcomes_total", &format!("status=\"{status}\"")),
            *n as f64,
            "{status}"
        );
    }
    for (reason, n) in &bt.rejected {
        assert_eq!(
            labelled(
                "fdp_quarantine_rows_total",
                &format!("reason=\"{reason}\",action=\"rejected\"")
            ),
            *n as f64,
            "{reason}"
        );
    }
    assert_eq!(
        m.commit_seconds.count(),
        m.commits.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The gauges hold the last commit's portfolio, the backtest's final one, and the backlog
    // read after a commit.
    let last = out.ledger.equity.last().expect("equity rows");
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    assert_eq!(gauge("fdp_equity"), last.equity);
    assert_eq!(gauge("fdp_cash"), last.cash);
    assert_eq!(gauge("fdp_open_positions"), last.open_positions as f64);
    assert!(gauge("fdp_stream_pending_messages") >= 0.0);
    crate::common::promtool_check(&text);
}

#[test]
fn orchestrated_ticker_items_give_the_backtests_decisions() {
    let mut env = Env::new("items");
    let p = test_pipeline();
    let out = env.backtest(&p);
    let c = stream::orchestrate(&p, &env.redis_url, &env.prefix, 1_600_000_000, 10_000)
        .expect("orchestrate");
    assert_eq!((c.cycle, c.items), (1, 6));
    let o = env.opts("stream", 2);
    assert_eq!(stream::run(&p, &o).expect("run"), Ending::Idle);
    env.assert_same_as_backtest();
    env.assert_same_quarantine(&out.quarantine);
    assert_eq!(env.pending(), 0);
    assert_eq!(
        o.metrics.tickers.load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    // The next cycle finds no new bars and changes nothing.
    let c2 = stream::orchestrate(&p, &env.redis_url, &env.prefix, 1_700_000_000, 10_000)
        .expect("orchestrate");
    assert_eq!(c2.cycle, 2);
    assert!(
        stream::orchestrate(&p, &env.redis_url, &env.prefix, 1_650_000_000, 10_000).is_err(),
        "a cut-off before the last one is refused"
    );
    assert_eq!(
        stream::run(&p, &env.opts("stream", 1)).expect("run"),
        Ending::Idle
    );
    env.assert_same_as_backtest();
}

#[test]
fn malformed_messages_are_dead_lettered_and_bad_bars_quarantined() {
    let env = Env::new("bad");
    let p = test_pipeline();
    let keys = env.keys();
    let mut r = env.redis();
    r.ensure_group(&keys).expect("group");
    let bar = |t: &str, ts: &str, close: &str| {
        vec![
            ("ticker", t.to_string()),
            ("ts", ts.to_string()),
            ("open", "100".to_string()),
            ("high", "101".to_string()),
            ("low", "99".to_string()),
            ("close", close.to_string()),
            ("volume", "1000".to_string()),
        ]
    };
    let mut msgs = vec![
        bar("AAPL", "2017-01-03", "100.5"),
        bar("XOM", "2017-01-03", "NaN"),
        // The same bad bar again, twice: each message keeps its own quarantine row.
        bar("XOM", "2017-01-03", "NaN"),
        bar("XOM", "2017-01-03", "NaN"),
        bar("../../etc", "2017-01-03", "100"),
        bar("ZZZZ", "2017-01-03", "100"),
        vec![("ticker", "AAPL".into()), ("ts", "2017-01-04".into())],
        bar("AAPL", "2017-01-04", "abc"),
        vec![("kind", "launch_missiles".into())],
        bar("AAPL", "yesterday", "100"),
        bar("AAPL", "2017-01-04", "100.7"),
        vec![("kind", "watermark".into()), ("ts", "2017-01-05".into())],
        // Earlier than the watermark: late (twice, two rows).
        bar("JPM", "2017-01-03", "100"),
        bar("JPM", "2017-01-03", "100"),
        bar("AAPL", "2017-01-05", "100.9"),
    ];
    let msgs: Vec<Vec<(&str, String)>> = std::mem::take(&mut msgs);
    r.xadd_many(&keys.stream(), 10_000, &msgs).expect("xadd");
    // One consumer reading one message at a time, so the watermark is in force when the late
    // bar arrives.
    let mut o = env.opts("stream", 1);
    o.batch = 1;
    assert_eq!(stream::run(&p, &o).expect("run goes on"), Ending::Idle);
    let dead = r.range(&keys.dead_letter()).expect("dead letters");
    let errors = dead_errors(&dead);
    assert_eq!(dead.len(), 6, "{errors:#?}");
    for want in [
        "ticker \"../../etc\" has '/'",
        "unknown ticker \"ZZZZ\"",
        "missing field `open`",
        "field `close` is not a number: \"abc\"",
        "unknown message kind \"launch_missiles\"",
        "field `ts` is not a time: \"yesterday\"",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want} in {errors:#?}"
        );
    }
    let reasons: Vec<(String, String)> = env
        .rt
        .block_on(env.client.query(
            "SELECT ticker, reason FROM quarantine WHERE run_id = 'stream' ORDER BY 1, 2",
            &[],
        ))
        .expect("quarantine")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // The quality gate reads a NaN price as a missing one.
    assert!(
        reasons.contains(&("XOM".into(), "missing_field".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("JPM".into(), "late".into())),
        "{reasons:?}"
    );
    // One row per rejected message, keyed by the entry that carried it.
    let ids: Vec<String> = r
        .range(&keys.stream())
        .expect("stream")
        .iter()
        .map(|e| e.id.clone())
        .collect();
    for (ticker, reason, n) in [("XOM", "missing_field", 3), ("JPM", "late", 2)] {
        let origins: Vec<String> = env
            .rt
            .block_on(env.client.query(
                "SELECT origin FROM quarantine WHERE run_id = 'stream' AND ticker = $1 \
                 AND reason = $2 ORDER BY origin",
                &[&ticker, &reason],
            ))
            .expect("quarantine")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(origins.len(), n, "{ticker} {reason}: {origins:?}");
        assert!(
            origins.iter().all(|o| ids.contains(o)),
            "{origins:?} are entries of {ids:?}"
        );
    }
    assert_eq!(
        env.scalar("SELECT count(*) FROM bars WHERE run_id = 'stream' AND ticker = 'AAPL'"),
        3,
        "the good bars went through"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM audit_log WHERE event_type = 'dead_letter'"),
        6
    );
    // Each names its run, so the dashboard's dead-letter panel finds them (its very query).
    let sql = findashpro::serve::views::View::DeadLetters.postgres();
    let by_error = env
        .rt
        .block_on(env.client.query(sql, &[&"stream"]))
        .expect("the dashboard's dead-letter view");
    assert_eq!(
        by_error
            .iter()
            .map(|r| r.get::<_, i64>("count"))
            .sum::<i64>(),
        6,
        "every dead letter under its run"
    );
    assert_eq!(env.pending(), 0, "nothing left unacknowledged");
}

fn fdp_run(env: &Env, pipeline: &std::path::Path, extra: &[&str]) -> Child {
    fdp_run_on(env, pipeline, 2, extra)
}

fn fdp_run_on(env: &Env, pipeline: &std::path::Path, workers: usize, extra: &[&str]) -> Child {
    fdp_run_command(env, pipeline, workers, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fdp runs")
}

fn fdp_run_command(
    env: &Env,
    pipeline: &std::path::Path,
    workers: usize,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fdp"));
    c.arg("run")
        .arg(pipeline)
        .args([
            "--prefix",
            &env.prefix,
            "--run-id",
            "stream",
            "-w",
            &workers.to_string(),
        ])
        .args(["--redis-url", &env.redis_url, "--database-url", &env.db.url])
        .args(["--claim-idle", "2"])
        .arg("--data-dir")
        .arg(env.dir.path())
        .args(extra);
    c
}

fn wait_exit(c: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            return s;
        }
        assert!(
            started.elapsed() < within,
            "fdp did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_pipeline(env: &Env) -> std::path::PathBuf {
    let path = env.dir.path().join("stream_test.toml");
    std::fs::write(&path, pipeline_toml()).expect("pipeline written");
    path
}

/// Waits until the run has committed past `after` while messages are still pending (a moment
/// with work both done and in flight); returns the committed time.
fn await_commit_with_pending(env: &Env, after: i64, within: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let committed = env.scalar("SELECT coalesce(max(committed), -1) FROM stream_state");
        if committed > after && env.pending() > 0 {
            return committed;
        }
        assert!(
            started.elapsed() < within,
            "no commit past {after} with messages pending within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_9_mid_stream_then_restart_commits_everything_exactly_once() {
    let mut env = Env::new("crash");
    let p = test_pipeline();
    env.backtest(&p);
    let path = write_pipeline(&env);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, Some(400.0)));
    // Three kills, each at a moment observed: the run committed something new and messages are
    // pending (read, maybe decided, not acknowledged).
    let mut committed = -1;
    for _ in 0..3 {
        let mut c = fdp_run(&env, &path, &[]);
        committed = await_commit_with_pending(&env, committed, Duration::from_secs(60));
        c.kill().expect("kill -9");
        let _ = c.wait();
    }
    feeder.join().expect("feeder").expect("feed");
    // Restarted with one worker: the departed second consumer's pending entries are adopted.
    let mut c = fdp_run_on(&env, &path, 1, &["--idle-shutdown", "2"]);
    assert!(wait_exit(&mut c, Duration::from_secs(120)).success());
    env.assert_same_as_backtest();
    assert_eq!(env.pending(), 0);
}

#[test]
fn sigterm_commits_in_flight_work_and_exits_zero() {
    let mut env = Env::new("term");
    let p = test_pipeline();
    env.backtest(&p);
    let path = write_pipeline(&env);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder =
        std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, Some(1_500.0)));
    let mut c = fdp_run(&env, &path, &[]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(crate::common::signal(c.id(), "TERM"));
    let status = wait_exit(&mut c, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let committed = env.scalar("SELECT coalesce(max(committed), -1) FROM stream_state");
    assert!(committed > 0, "work in flight was committed");
    feeder.join().expect("feeder").expect("feed");
    let mut c = fdp_run(&env, &path, &["--idle-shutdown", "2"]);
    assert!(wait_exit(&mut c, Duration::from_secs(120)).success());
    env.assert_same_as_backtest();
}

#[test]
fn the_stop_file_halts_orders_and_ends_the_run() {
    let env = Env::new("stop");
    let p = test_pipeline();
    let path = write_pipeline(&env);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, Some(800.0)));
    let mut c = fdp_run(&env, &path, &[]);
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(env.dir.path().join("STOP"), "").expect("STOP written");
    let status = wait_exit(&mut c, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let _ = feeder.join();
    // Nothing after the stop was decided into a new order: the last committed time holds the
    // final orders, and the messages after it wait (pending or undelivered) for the next run.
    let committed = env.scalar("SELECT coalesce(max(committed), -1) FROM stream_state");
    let later = env.scalar(&format!(
        "SELECT count(*) FROM orders WHERE run_id = 'stream' AND extract(epoch from time) > {committed}"
    ));
    assert_eq!(later, 0);
    let undelivered = env
        .redis()
        .lag(&env.keys())
        .expect("lag")
        .unwrap_or_default();
    assert!(
        env.pending() + undelivered as i64 > 0,
        "the rest of the feed waits for the next run"
    );
}

#[test]
fn redis_and_postgres_restarted_mid_run_lose_nothing() {
    let mut redis = PrivateRedis::start();
    let pg = PrivatePg::start();
    let p = test_pipeline();
    let out = run_with(&p, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = rt
        .block_on(findashpro::sinks::postgres::connect(&pg.url()))
        .expect("private postgres");
    rt.block_on(async {
        findashpro::sinks::postgres::migrate(&mut client).await?;
        write_ledger(
            &mut client,
            "batch",
            &out.tickers,
            &out.ledger,
            &out.exposure,
        )
        .await
    })
    .expect("backtest written");
    drop(client);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stream_test.toml");
    std::fs::write(&path, pipeline_toml()).expect("pipeline written");
    let (p2, url) = (p.clone(), redis.url());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, "fdp", 10_000, Some(1_000.0)));
    let log = dir.path().join("fdp.log");
    let mut c = Command::new(env!("CARGO_BIN_EXE_fdp"))
        .arg("run")
        .arg(&path)
        .args(["--run-id", "stream", "-w", "2", "--idle-shutdown", "3"])
        .args(["--redis-url", &redis.url(), "--database-url", &pg.url()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("FDP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("fdp runs");
    // Each server is killed once the run has committed something since the last kill.
    let committed = |after: i64| -> i64 {
        let started = Instant::now();
        loop {
            let c = rt
                .block_on(async {
                    let client = findashpro::sinks::postgres::connect(&pg.url()).await?;
                    let row = client
                        .query_one("SELECT coalesce(max(committed), -1) FROM stream_state", &[])
                        .await?;
                    Ok::<i64, findashpro::sinks::postgres::DbError>(row.get(0))
                })
                .unwrap_or(-1);
            if c > after {
                return c;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no commit past {after}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = committed(-1);
    redis.kill_and_restart();
    committed(first);
    pg.kill_and_restart();
    feeder
        .join()
        .expect("feeder")
        .expect("the feed rides out the restart");
    let status = wait_exit(&mut c, Duration::from_secs(120));
    assert!(status.success(), "{status:?}");
    // The run met both outages and reconnected (it logs each lost connection, then went on to
    // finish: a run that never reconnected could not have exited 0 with every row below).
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("redis connection lost") || text.contains("redis unreachable"),
        "{text}"
    );
    assert!(text.contains("postgres unavailable"), "{text}");
    let client = rt
        .block_on(findashpro::sinks::postgres::connect(&pg.url()))
        .expect("private postgres");
    for (t, cols) in COMPARED {
        let sql = differ_sql(t, cols, "batch", "stream");
        let d: i64 = rt
            .block_on(client.query_one(&sql, &[]))
            .expect("diff")
            .get(0);
        assert_eq!(d, 0, "{t} after the restarts");
    }
}

#[test]
fn work_items_load_from_a_redis_bar_store() {
    let mut env = Env::new("store");
    let p = test_pipeline();
    let from_files = env.backtest(&p);
    // Fill the store with the same bars the file source reads.
    let source = findashpro::sources::Source::open(&p).expect("source");
    let tickers = source.tickers();
    let mut r = env.redis();
    for name in tickers.names() {
        let (bars, _) = source.load_ticker(name, &tickers).expect("bars");
        findashpro::sources::redis_bars::store(&mut r, &env.prefix, name, &bars).expect("stored");
    }
    // A member that is not a bar is quarantined with its key.
    let bad_key = findashpro::sources::redis_bars::key(&env.prefix, "AAPL");
    r.query::<i64>(
        redis::cmd("ZADD")
            .arg(&bad_key)
            .arg(1_480_000_000)
            .arg("garbage"),
    )
    .expect("zadd");
    let toml = pipeline_toml();
    let rest = &toml[toml.find("[quality]").expect("quality section")..];
    let text = format!(
        "name = \"store\"\n[source]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\n\
         tickers = [\"AAPL\", \"AMD\", \"DHR\", \"JPM\", \"O\", \"XOM\"]\n\
         start = \"2016-01-04\"\nend = \"2018-02-07\"\n{rest}",
        env.redis_url, env.prefix
    );
    let store = pipeline_text(&text, &root());
    // A backtest replays the store too, to the same decisions as the files.
    let replayed = run_with(&store, 2);
    assert_eq!(replayed.ledger.orders, from_files.ledger.orders);
    assert_eq!(replayed.ledger.equity, from_files.ledger.equity);
    stream::orchestrate(&store, &env.redis_url, &env.prefix, 1_600_000_000, 10_000)
        .expect("orchestrate");
    assert_eq!(
        stream::run(&store, &env.opts("stream", 2)).expect("run"),
        Ending::Idle
    );
    // The store's pipeline names no universe: its exposure is all in sector `unknown`.
    env.assert_same_as_backtest_but(&["exposure"]);
    assert!(env.scalar("SELECT count(*) FROM exposure WHERE run_id = 'stream'") > 0);
    assert_eq!(
        env.scalar("SELECT count(*) FROM exposure WHERE run_id = 'stream' AND sector <> 'unknown'"),
        0
    );
    let detail: String = env
        .rt
        .block_on(env.client.query_one(
            "SELECT detail FROM quarantine WHERE run_id = 'stream' AND reason = 'unparseable'",
            &[],
        ))
        .expect("the bad member is quarantined")
        .get(0);
    assert!(
        detail.contains(&bad_key) && detail.contains("garbage"),
        "{detail}"
    );
}

#[test]
fn a_work_item_that_keeps_failing_is_dead_lettered_after_n_tries() {
    let env = Env::new("retry");
    let dir = env.dir.path();
    for t in ["AAPL", "AMD"] {
        std::fs::copy(
            root().join(format!("data/sample/{t}_data.csv")),
            dir.join(format!("{t}_data.csv")),
        )
        .expect("copied");
    }
    let toml = pipeline_toml();
    let rest = &toml[toml.find("[quality]").expect("quality section")..];
    let text = format!(
        "name = \"retry\"\n[source]\nkind = \"files\"\nformat = \"kaggle\"\npaths = [\"*_data.csv\"]\n\
         start = \"2017-06-01\"\nend = \"2018-02-07\"\n{rest}"
    );
    let p = pipeline_text(&text, dir);
    stream::orchestrate(&p, &env.redis_url, &env.prefix, 1_600_000_000, 10_000)
        .expect("orchestrate");
    // AMD's file goes bad after the cycle was planned: every load of it fails.
    std::fs::write(dir.join("AMD_data.csv"), "not,a,bar,file\n").expect("spoiled");
    let mut o = env.opts("stream", 1);
    o.claim_idle = Duration::from_millis(600);
    // Idle shutdown waits for the retries.
    o.idle_shutdown = Some(Duration::from_millis(300));
    o.max_failures = 3;
    assert_eq!(stream::run(&p, &o).expect("run goes on"), Ending::Idle);
    let dead = env
        .redis()
        .range(&env.keys().dead_letter())
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    let m = dead[0].map();
    let error = m.get("error").copied().unwrap_or_default();
    assert!(
        error.starts_with("failed 3 times") && error.contains("AMD_data.csv"),
        "{error}"
    );
    assert!(m.get("fields").is_some_and(|f| f.contains("AMD")));
    // AAPL went through, and the cycle completed without AMD.
    assert!(
        env.scalar("SELECT count(*) FROM bars WHERE run_id = 'stream' AND ticker = 'AAPL'") > 100
    );
    assert!(env.scalar("SELECT count(*) FROM signals WHERE run_id = 'stream'") > 0);
    assert_eq!(env.pending(), 0);
}

#[test]
fn a_live_ml_run_trains_off_the_hot_path_and_registers_models_in_postgres() {
    use findashpro::operators::ml::registry::{Registry, StoreHandle};
    use findashpro::sinks::postgres::PgModelStore;
    let env = Env::new("ml");
    let p = crate::ml::ml_in(&root().join("data/sample"));
    // The backtest's models, in a filesystem registry.
    let reg_dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::open(reg_dir.path(), 86_400).expect("registry");
    let opts = findashpro::engine::RunOptions {
        // The driver's clock stamps creation times: a fixed one shows no operator reads its own.
        models: findashpro::engine::ModelPlace::Store(StoreHandle {
            store: std::sync::Arc::new(registry.clone()),
            clock: || 1_234_567_890,
        }),
        ..findashpro::engine::RunOptions::default()
    };
    let batch = findashpro::engine::run(&p, &opts)
        .expect("backtest")
        .expect("worker 0");
    assert_eq!(
        registry.list().expect("list").len(),
        batch.ledger.ml_metrics.len(),
        "every training registered"
    );
    assert!(
        registry
            .list()
            .expect("list")
            .iter()
            .all(|m| m.created_unix == 1_234_567_890),
        "creation stamped by the driver's clock"
    );
    // The live run: bars through Redis, training on the pool, models into PostgreSQL. Paced (a
    // market's bars come as time passes): unpaced, the replay would end before the first
    // training does, and a model is installed on the ticker's next bar after it is ready.
    let o = env.opts("stream", 2);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, Some(400.0)));
    assert_eq!(stream::run(&p, &o).expect("stream run"), Ending::Idle);
    feeder.join().expect("feeder").expect("feed");
    assert_eq!(env.pending(), 0);
    let trained =
        env.scalar("SELECT count(DISTINCT model_id) FROM ml_metrics WHERE run_id = 'stream'");
    assert!(trained >= 3, "{trained} trainings installed");
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM (SELECT DISTINCT model_id FROM ml_metrics WHERE run_id = 'stream' \
             EXCEPT SELECT model_id FROM ml_models WHERE run_id = 'stream') m"
        ),
        0,
        "every installed model is in the registry"
    );
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM ml_metrics WHERE run_id = 'stream' \
             AND (metrics->>'installed_at')::bigint < extract(epoch FROM trained_at)::bigint"
        ),
        0,
        "a model serves only after its training"
    );
    // A ticker's first training cuts at the same bar live and in the backtest, on the same
    // samples, so the model PostgreSQL gives back predicts exactly as the backtest's did.
    let store = PgModelStore::new(&env.db.url, "stream", 30);
    let firsts = env
        .rt
        .block_on(env.client.query(
            "SELECT DISTINCT ON (ticker) model_id FROM ml_models WHERE run_id = 'stream' \
             ORDER BY ticker, trained_at",
            &[],
        ))
        .expect("query");
    assert_eq!(firsts.len(), 3);
    for row in firsts {
        let id: String = row.get(0);
        let (live_meta, live) = store.load(&id).expect("load").expect("stored");
        let (meta, model) = registry.load(&id).expect("the backtest has it");
        assert_eq!(live_meta.features, meta.features);
        assert_eq!(live, model, "{id}");
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| {
                (0..meta.features.len())
                    .map(|f| (i * 7 + f) as f64 % 13.0)
                    .collect()
            })
            .collect();
        assert_eq!(live.predict_proba(&rows), model.predict_proba(&rows));
    }
    // Every drift event raised exactly one alert in the audit log.
    let drifts = env.scalar("SELECT count(*) FROM drift_events WHERE run_id = 'stream'");
    assert!(drifts > 0, "the sample drifts");
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM audit_log WHERE event_type = 'drift_alert' AND data->>'run_id' = 'stream'"
        ),
        drifts
    );
}

/// A work item whose load hangs (its file is a FIFO nobody writes) is given up after
/// `--item-timeout`, retried, and dead-lettered with the reason; the other items go through.
#[test]
fn a_work_item_that_hangs_past_the_item_timeout_is_dead_lettered() {
    let env = Env::new("timeout");
    let dir = env.dir.path();
    std::fs::copy(
        root().join("data/sample/AAPL_data.csv"),
        dir.join("AAPL_data.csv"),
    )
    .expect("copied");
    let fifo = dir.join("AMD_data.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let toml = pipeline_toml();
    let rest = &toml[toml.find("[quality]").expect("quality section")..];
    let text = format!(
        "name = \"timeout\"\n[source]\nkind = \"files\"\nformat = \"kaggle\"\npaths = [\"*_data.csv\"]\n\
         start = \"2017-06-01\"\nend = \"2018-02-07\"\n{rest}"
    );
    let p = pipeline_text(&text, dir);
    stream::orchestrate(&p, &env.redis_url, &env.prefix, 1_600_000_000, 10_000)
        .expect("orchestrate");
    let mut o = env.opts("stream", 1);
    o.item_timeout = Duration::from_millis(300);
    o.claim_idle = Duration::from_millis(600);
    o.idle_shutdown = Some(Duration::from_millis(300));
    o.max_failures = 2;
    let started = Instant::now();
    assert_eq!(stream::run(&p, &o).expect("run goes on"), Ending::Idle);
    assert!(started.elapsed() < Duration::from_secs(30));
    let dead = env
        .redis()
        .range(&env.keys().dead_letter())
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    let error = dead[0]
        .map()
        .get("error")
        .copied()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.starts_with("failed 2 times") && error.contains("loading AMD took longer than 300ms"),
        "{error}"
    );
    assert!(
        env.scalar("SELECT count(*) FROM bars WHERE run_id = 'stream' AND ticker = 'AAPL'") > 100
    );
    assert_eq!(env.pending(), 0);
    // Let the hung loader threads go: open the FIFO's write end (without blocking when no reader
    // is left: O_NONBLOCK fails instead), then close it; the readers see the end of the file.
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..4 {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&fifo);
        if opened.is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With the kill-switch file present before the start, `fdp run` reads nothing and decides
/// nothing: the feed waits, untouched, for a run without it.
#[test]
fn a_stop_file_present_at_start_reads_nothing() {
    let env = Env::new("stopstart");
    let p = test_pipeline();
    let path = write_pipeline(&env);
    let fed = stream::feed(&p, &env.redis_url, &env.prefix, 100_000, None).expect("feed");
    std::fs::write(env.dir.path().join("STOP"), "").expect("STOP written");
    let mut c = fdp_run(&env, &path, &[]);
    let status = wait_exit(&mut c, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_eq!(env.scalar("SELECT count(*) FROM orders"), 0);
    assert_eq!(env.pending(), 0, "no message was even read");
    let undelivered = env
        .redis()
        .lag(&env.keys())
        .expect("lag")
        .unwrap_or_default();
    assert!(undelivered >= fed, "{undelivered} of {fed} wait");
}

/// One message must not freeze the stream: a bar dated 2100, an unknown ticker's bar from the
/// far future and a watermark at `i64::MAX`, sent before the real feed, are dead-lettered and
/// move nothing — every real bar is decided as in the backtest, none is `late`, and a new run
/// on the same prefix is not blocked either.
#[test]
fn poison_times_are_dead_lettered_and_do_not_freeze_the_stream() {
    let mut env = Env::new("poison");
    let p = test_pipeline();
    let out = env.backtest(&p);
    let keys = env.keys();
    let mut r = env.redis();
    r.ensure_group(&keys).expect("group");
    let bar = |t: &str, ts: &str| {
        vec![
            ("ticker", t.to_string()),
            ("ts", ts.to_string()),
            ("open", "100".to_string()),
            ("high", "101".to_string()),
            ("low", "99".to_string()),
            ("close", "100".to_string()),
            ("volume", "1000".to_string()),
        ]
    };
    let poison: Vec<Vec<(&str, String)>> = vec![
        bar("AAPL", "4102444800"),
        bar("ZZZZ", "9000000000"),
        // Unknown, at a plausible time past the feed's start: it must not raise the floor.
        bar("ZZZZ", "2017-06-01"),
        vec![("kind", "watermark".into()), ("ts", i64::MAX.to_string())],
    ];
    r.xadd_many(&keys.stream(), 10_000, &poison).expect("xadd");
    let fed = stream::feed(&p, &env.redis_url, &env.prefix, 100_000, None).expect("feed");
    assert!(fed > 3000);
    let o = env.opts("stream", 2);
    assert_eq!(stream::run(&p, &o).expect("run"), Ending::Idle);
    let dead = r.range(&keys.dead_letter()).expect("dead letters");
    let errors = dead_errors(&dead);
    assert_eq!(dead.len(), 4, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bar time 4102444800 (2100-01-01)")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("unknown ticker \"ZZZZ\"")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("watermark 9223372036854775807")),
        "{errors:#?}"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM quarantine WHERE reason = 'late'"),
        0
    );
    env.assert_same_as_backtest();
    env.assert_same_quarantine(&out.quarantine);
    assert_eq!(env.pending(), 0);
    // The floor is the real feed's: a bar of the next day still goes in under a new run id.
    let floor = r.floor(&keys).expect("floor");
    assert!(floor < 1_600_000_000, "floor {floor}");
}

/// One run, one process: while `fdp run` holds a run id, a second one with the same id refuses to
/// start with a clear message; once the first loses its lease (its lock's connection dies) and a
/// new process takes it, the first can no longer commit and exits with an error — and the ledger
/// ends exactly the backtest's.
#[test]
fn a_run_id_has_one_process_and_a_fenced_out_one_cannot_commit() {
    let mut env = Env::new("lease");
    let p = test_pipeline();
    env.backtest(&p);
    let path = write_pipeline(&env);
    let (p2, url, prefix) = (p.clone(), env.redis_url.clone(), env.prefix.clone());
    let feeder = std::thread::spawn(move || stream::feed(&p2, &url, &prefix, 10_000, Some(400.0)));
    let log = env.dir.path().join("first.log");
    let mut first = fdp_run_command(&env, &path, 2, &[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("fdp runs");
    let committed = await_commit_with_pending(&env, -1, Duration::from_secs(60));
    // A second process with the same run id: refused while the first lives.
    let second = fdp_run_command(&env, &path, 1, &["--idle-shutdown", "2"])
        .output()
        .expect("fdp runs");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(err.contains("run id `stream` is already running"), "{err}");
    // The first loses its lease: its lock's connection is cut, a new process takes over.
    env.scalar(
        "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    );
    let mut third = fdp_run_command(&env, &path, 1, &["--idle-shutdown", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fdp runs");
    let status = wait_exit(&mut first, Duration::from_secs(60));
    assert!(
        !status.success(),
        "the fenced-out run must stop: {status:?}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("this process was fenced out"), "{text}");
    assert_eq!(
        env.scalar("SELECT epoch FROM run_leases WHERE run_id = 'stream'"),
        2
    );
    feeder.join().expect("feeder").expect("feed");
    assert!(wait_exit(&mut third, Duration::from_secs(120)).success());
    assert!(committed > 0);
    env.assert_same_as_backtest();
    assert_eq!(env.pending(), 0);
}

/// A 1 MB malformed message is kept as a bounded prefix with its size and checksum, in the
/// dead-letter stream and in the audit log alike — not stored twice in full.
#[test]
fn a_huge_malformed_message_is_kept_bounded() {
    let env = Env::new("huge");
    let p = test_pipeline();
    let keys = env.keys();
    let mut r = env.redis();
    r.ensure_group(&keys).expect("group");
    let huge = "9".repeat(1 << 20) + "x";
    r.xadd(
        &keys.stream(),
        10_000,
        &[
            ("ticker", "AAPL"),
            ("ts", "2017-01-03"),
            ("open", "1"),
            ("high", "1"),
            ("low", "1"),
            ("close", huge.as_str()),
            ("volume", "1"),
        ],
    )
    .expect("xadd");
    let o = env.opts("stream", 1);
    assert_eq!(stream::run(&p, &o).expect("run"), Ending::Idle);
    let dead = r.range(&keys.dead_letter()).expect("dead letters");
    assert_eq!(dead.len(), 1);
    let m = dead[0].map();
    for field in ["fields", "error"] {
        let v = m.get(field).copied().unwrap_or_default();
        assert!(v.len() < 5000, "{field}: {} bytes", v.len());
    }
    assert!(
        m["fields"].contains("bytes, fnv1a64 "),
        "{}",
        &m["fields"][4000..]
    );
    let audit = env.scalar(
        "SELECT max(length(data::text))::int8 FROM audit_log WHERE event_type = 'dead_letter'",
    );
    assert!(audit < 12_000, "{audit} bytes in the audit log");
    assert_eq!(env.pending(), 0);
}

/// Twenty workers share the process's pool of PostgreSQL connections (`--db-connections`, 10 by
/// default, plus one for the lease) instead of opening two each — and decide as the backtest.
#[test]
fn twenty_workers_share_a_bounded_pool_of_connections() {
    let mut env = Env::new("pool");
    let p = test_pipeline();
    env.backtest(&p);
    let path = write_pipeline(&env);
    stream::feed(&p, &env.redis_url, &env.prefix, 100_000, None).expect("feed");
    let mut c = fdp_run_on(&env, &path, 20, &["--idle-shutdown", "2"]);
    let count = "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let mut most = 0;
    let status = loop {
        most = most.max(env.scalar(count));
        if let Some(s) = c.try_wait().expect("wait") {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(most >= 2, "the run was seen connected ({most})");
    assert!(most <= 11, "{most} connections for 20 workers");
    env.assert_same_as_backtest();
    assert_eq!(env.pending(), 0);
}

/// A login that may only write — a member of `fdp_writer`, neither superuser nor owner, as the
/// README advises for production — runs the stream once the schema is current (no DDL at the
/// start), gets the backtest's rows, and can neither change the audit log nor switch its
/// protections off.
#[test]
fn a_writer_only_login_runs_the_stream_and_cannot_touch_the_audit_log() {
    let mut env = Env::new("writer");
    let p = test_pipeline();
    env.backtest(&p);
    env.rt
        .block_on(findashpro::sinks::postgres::migrate(&mut env.client))
        .expect("migrated by the superuser");
    let login = format!("fdp_app_test_{}", std::process::id());
    env.rt
        .block_on(env.client.batch_execute(&format!(
            "DROP ROLE IF EXISTS {login}; CREATE ROLE {login} LOGIN IN ROLE fdp_writer"
        )))
        .expect("login role");
    // The role is the cluster's: dropped whatever the outcome.
    struct DropRole<'a>(&'a Env, String);
    impl Drop for DropRole<'_> {
        fn drop(&mut self) {
            let _ = (self.0.rt).block_on(
                self.0
                    .client
                    .batch_execute(&format!("DROP ROLE IF EXISTS {}", self.1)),
            );
        }
    }
    let _role = DropRole(&env, login.clone());
    let user = env
        .db
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next());
    let app_url = match user {
        Some(u) if !u.is_empty() && !u.contains('/') => {
            env.db
                .url
                .replacen(&format!("://{u}@"), &format!("://{login}@"), 1)
        }
        _ => env.db.url.replacen("://", &format!("://{login}@"), 1),
    };
    assert!(app_url.contains(&login), "{app_url}");
    let fed = stream::feed(&p, &env.redis_url, &env.prefix, 10_000, None).expect("feed");
    assert!(fed > 1000);
    let mut o = env.opts("stream", 2);
    o.database_url = app_url.clone();
    assert_eq!(stream::run(&p, &o).expect("the writer runs"), Ending::Idle);
    env.assert_same_as_backtest();
    assert_eq!(env.pending(), 0);
    let (app, conn) = env
        .rt
        .block_on(tokio_postgres::connect(&app_url, tokio_postgres::NoTls))
        .expect("the app login connects");
    env.rt.spawn(conn);
    for attack in [
        "UPDATE audit_log SET event_type = 'x'",
        "DELETE FROM audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "DROP TRIGGER audit_log_chain ON audit_log",
    ] {
        let e = env
            .rt
            .block_on(app.batch_execute(attack))
            .expect_err(attack);
        let msg = e.as_db_error().map(|d| d.message().to_string());
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("permission denied")
                    || m.contains("must be owner")
                    || m.contains("append-only")),
            "{attack}: {msg:?}"
        );
    }
}

#[test]
fn json_logs_follow_a_bar_from_its_stream_id_through_the_commit_to_its_acknowledgement() {
    let env = Env::new("jsonlog");
    let p = test_pipeline();
    let path = write_pipeline(&env);
    stream::feed(&p, &env.redis_url, &env.prefix, 10_000, None).expect("feed");
    let log = env.dir.path().join("run.log");
    let mut c = fdp_run_command(&env, &path, 1, &["--idle-shutdown", "2"])
        .env("FDP_LOG_FORMAT", "json")
        .env("FDP_LOG", "findashpro=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("fdp runs");
    assert!(wait_exit(&mut c, Duration::from_secs(120)).success());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains('\u{1b}'), "no colour codes off a terminal");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 100, "{} lines", lines.len());
    for l in &lines {
        assert!(
            l["timestamp"].is_string()
                && l["level"].is_string()
                && l["fields"]["message"].is_string(),
            "{l}"
        );
    }
    let message = |l: &serde_json::Value| {
        l["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (read_at, read) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| {
            message(l) == "read"
                && l["fields"]["work"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("Bar"))
        })
        .expect("a bar read");
    let id = read["span"]["stream_id"]
        .as_str()
        .expect("the message span names its stream id");
    assert!(
        read["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "message")),
        "the span chain: {read}"
    );
    let acked_at = lines
        .iter()
        .position(|l| message(l) == "acknowledged" && l["fields"]["stream_id"] == id)
        .expect("its acknowledgement, by stream id");
    let acked_ts = lines[acked_at]["fields"]["ts"].as_i64().expect("ts");
    assert!(
        lines[read_at..acked_at]
            .iter()
            .any(|l| message(l) == "committed"
                && l["fields"]["through"]
                    .as_i64()
                    .is_some_and(|t| t >= acked_ts)),
        "a commit through its time between its read and its ack"
    );
}
