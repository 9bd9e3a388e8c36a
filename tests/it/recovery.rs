//! The recovery drill of `deploy/README.md`, run as the runbook says: a live run is backed up
//! with `fdp backup` while it works, every server is then lost at once, `fdp restore` lays the
//! backup out for fresh servers (PostgreSQL replaying its WAL archive past the base backup),
//! the run resumes there and the orchestrator adds what the restored Redis had not seen. The
//! run must end with exactly the rows of an uninterrupted run of the same cycles.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use findashpro::backup::Manifest;
use findashpro::sources::redis_stream::{Conn, Keys};
use findashpro::stream::{self, Ending, StreamOptions};
use findashpro::time::parse_time;

use crate::common::{RedisPrefix, TestDb, fdp_ok as fdp};
use crate::servers::{PrivatePg, PrivateRedis, give_to_postgres};
use crate::streaming::{COMPARED, pipeline_toml, test_pipeline};

/// The orchestrator's cut-offs: half-years of the test pipeline's 25 months (trading days).
const CUTOFFS: [&str; 4] = ["2016-06-30", "2016-12-30", "2017-06-30", "2018-02-07"];

fn day(d: &str) -> i64 {
    parse_time(d).expect("a date")
}

fn orchestrate(pipeline: &Path, redis_url: &str, until: &str) {
    fdp(&[
        "orchestrate",
        &pipeline.display().to_string(),
        "--redis-url",
        redis_url,
        "--until",
        until,
    ]);
}

/// One query's first column as text, on a connection made for it (the server may be coming up).
fn query(rt: &tokio::runtime::Runtime, url: &str, sql: &str) -> Option<Vec<String>> {
    rt.block_on(async {
        let c = findashpro::sinks::postgres::connect(url).await.ok()?;
        let rows = c.query(sql, &[]).await.ok()?;
        Some(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    })
}

fn committed(rt: &tokio::runtime::Runtime, url: &str) -> i64 {
    query(
        rt,
        url,
        "SELECT coalesce(max(committed), -1)::text FROM stream_state WHERE run_id = 'stream'",
    )
    .and_then(|v| v.first().and_then(|s| s.parse().ok()))
    .unwrap_or(-1)
}

fn await_committed(rt: &tokio::runtime::Runtime, url: &str, at_least: i64) {
    let started = Instant::now();
    while committed(rt, url) < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no commit through {at_least}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every row of run `stream` in `table` (over `cols`), as text, sorted.
fn rows(rt: &tokio::runtime::Runtime, url: &str, table: &str, cols: &str) -> Vec<String> {
    query(
        rt,
        url,
        &format!("SELECT row({cols})::text FROM {table} WHERE run_id = 'stream' ORDER BY 1"),
    )
    .unwrap_or_else(|| panic!("{table} readable at {url}"))
}

/// The tables compared: the ledger as the streaming tests compare it, the quarantine, the bars
/// recorded and the committed time.
fn tables() -> Vec<(&'static str, &'static str)> {
    let mut t = COMPARED.to_vec();
    t.push(("quarantine", "ticker, ts, reason, action"));
    t.push(("bars", "ticker, time, open, high, low, close, volume"));
    t.push(("stream_state", "committed"));
    t
}

#[test]
fn a_run_backed_up_mid_run_lost_and_restored_into_fresh_servers_ends_as_if_uninterrupted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let p = test_pipeline();

    // The uninterrupted run: the same cycles on the shared servers.
    let (db, client) = rt.block_on(TestDb::new());
    drop(client);
    let prefix = RedisPrefix::new("fdptest:drill");
    let shared_redis = prefix.url.clone();
    for c in CUTOFFS {
        stream::orchestrate(&p, &shared_redis, &prefix.name, day(c), 10_000).expect("orchestrate");
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut o = StreamOptions::new(&shared_redis, &db.url, "stream");
    o.prefix = prefix.name.clone();
    o.cluster.workers = 2;
    o.idle_shutdown = Some(Duration::from_millis(1500));
    o.stop_file = Some(work.path().join("STOP"));
    assert_eq!(stream::run(&p, &o).expect("run"), Ending::Idle);

    // Production: PostgreSQL archiving its WAL, Redis keeping nothing on disk (as this
    // machine's), the run as a process of its own.
    let a = PrivatePg::empty();
    let archive = a.side_dir("wal-archive");
    let archive_command = format!(
        "archive_command = 'test ! -f {0}/%f && cp %p {0}/%f'",
        archive.display()
    );
    a.initdb(&["archive_mode = on", &archive_command, "wal_level = replica"]);
    a.ctl("start");
    let mut ra = PrivateRedis::volatile();
    let pipeline = work.path().join("drill.toml");
    std::fs::write(&pipeline, pipeline_toml()).expect("pipeline written");
    let pipeline_arg = pipeline.display().to_string();
    let data_dir = work.path().join("data");
    let spawn_run = |pg: &str, redis: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fdp"))
            .args(["run", &pipeline_arg, "--run-id", "stream", "-w", "2"])
            .args([
                "--database-url",
                pg,
                "--redis-url",
                redis,
                "--claim-idle",
                "2",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("FDP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fdp run starts")
    };
    orchestrate(&pipeline, &ra.url(), CUTOFFS[0]);
    let mut run = spawn_run(&a.url(), &ra.url(), &[]);
    await_committed(&rt, &a.url(), day(CUTOFFS[0]));

    // The backup, while the second cycle is being worked on.
    orchestrate(&pipeline, &ra.url(), CUTOFFS[1]);
    let backup = work.path().join("backup");
    let said = fdp(&[
        "backup",
        "--out",
        &backup.display().to_string(),
        "--database-url",
        &a.url(),
        "--redis-url",
        &ra.url(),
    ]);
    assert!(said.contains("postgres base backup verified"), "{said}");
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(backup.join("backup.json")).expect("backup.json"))
            .expect("a manifest");
    let at_backup = manifest
        .runs
        .iter()
        .find(|r| r.run_id == "stream")
        .map(|r| r.committed)
        .expect("the manifest names the live run");
    assert!(at_backup >= day(CUTOFFS[0]) && at_backup < day(CUTOFFS[2]));

    // After the backup the run goes on: cycle 2 ends, cycle 3 is decided, and its WAL reaches
    // the archive (archive_timeout's job in production).
    await_committed(&rt, &a.url(), day(CUTOFFS[1]));
    orchestrate(&pipeline, &ra.url(), CUTOFFS[2]);
    await_committed(&rt, &a.url(), day(CUTOFFS[2]));
    let segment = query(&rt, &a.url(), "SELECT pg_walfile_name(pg_switch_wal())")
        .and_then(|v| v.into_iter().next())
        .expect("switched WAL");
    let started = Instant::now();
    loop {
        let archived = query(
            &rt,
            &a.url(),
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        )
        .and_then(|v| v.into_iter().next())
        .unwrap_or_default();
        if archived >= segment {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{segment} archived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The disaster, in the middle of cycle 4: the run, PostgreSQL and Redis lost at once.
    orchestrate(&pipeline, &ra.url(), CUTOFFS[3]);
    let _ = run.kill();
    let _ = run.wait();
    a.kill();
    ra.kill();

    // Fresh servers from the backup and the archive.
    let b = PrivatePg::empty();
    let redis_dir = tempfile::tempdir().expect("tempdir");
    let said = fdp(&[
        "restore",
        "--from",
        &backup.display().to_string(),
        "--pg-data",
        &b.data().display().to_string(),
        "--redis-dir",
        &redis_dir.path().display().to_string(),
        "--wal-archive",
        &archive.display().to_string(),
    ]);
    assert!(said.contains("replays the WAL archive"), "{said}");
    give_to_postgres(&b.data());
    b.ctl("start");
    let started = Instant::now();
    while query(&rt, &b.url(), "SELECT pg_is_in_recovery()::text")
        .is_none_or(|v| v.first().map(String::as_str) != Some("false"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restored server ends its recovery"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rb = PrivateRedis::from_snapshot(redis_dir);
    // The archive carried the database past its base backup: cycle 3, decided after the backup,
    // is there.
    let restored = committed(&rt, &b.url());
    assert!(
        restored >= day(CUTOFFS[2]),
        "restored through {restored}, the backup had {at_backup}"
    );
    let keys = Keys::new("fdp");
    let mut r = Conn::open(&rb.url()).expect("restored redis");
    assert!(
        r.last_cutoff(&keys).expect("cut-off") >= Some(day(CUTOFFS[0])),
        "the restored stream knows the cycles added before the backup"
    );

    // Resume: the run on the restored pair, the orchestrator's next cycle covering what the
    // restored Redis never saw.
    let mut run = spawn_run(&b.url(), &rb.url(), &["--idle-shutdown", "3"]);
    orchestrate(&pipeline, &rb.url(), CUTOFFS[3]);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the resumed run ends"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(crate::common::pending(&mut r, &keys), 0);
    assert_eq!(r.lag(&keys).expect("lag").unwrap_or_default(), 0);

    for (t, cols) in tables() {
        let want = rows(&rt, &db.url, t, cols);
        assert!(!want.is_empty(), "the uninterrupted run wrote {t}");
        let got = rows(&rt, &b.url(), t, cols);
        if got != want {
            let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
            panic!(
                "{t}: {} rows restored-and-resumed, {} uninterrupted; missing {missing:?}, extra {extra:?}",
                got.len(),
                want.len()
            );
        }
    }
}
