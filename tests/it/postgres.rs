//! PostgreSQL, for real (`DATABASE_URL`, default the local server): each test in a database of its
//! own, dropped afterwards.

use findashpro::sinks::postgres::{audit, migrate, write_ledger};
use tokio_postgres::Client;

use crate::common::{TestDb, pipeline, run_with};

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn migrations_apply_once_and_rerun_as_a_no_op() {
    let (_db, mut c) = TestDb::new().await;
    assert_eq!(
        migrate(&mut c).await.expect("migrate"),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    assert_eq!(migrate(&mut c).await.expect("rerun"), Vec::<i32>::new());
    let partitions: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'signals'::regclass",
            &[],
        )
        .await
        .expect("partitions")
        .get(0);
    assert!(
        partitions >= 52,
        "yearly partitions 1990-2040 and a default: {partitions}"
    );
}

/// Applies the embedded migrations older than `version`, for a test of `version` over rows
/// written before it.
async fn migrate_before(c: &Client, version: i32) {
    for (v, name, sql) in findashpro::sinks::postgres::MIGRATIONS {
        if v < version {
            c.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("migration {v} ({name}): {e}"));
        }
    }
}

/// Migration 12 re-keys `bars` by (run, time, ticker) over bars recorded before it: they stay,
/// a redelivered bar is still refused by the key, and running it again changes nothing.
#[tokio::test]
async fn bars_are_rekeyed_by_time_over_bars_recorded_before() {
    let (_db, c) = TestDb::new().await;
    let migrations = findashpro::sinks::postgres::MIGRATIONS;
    migrate_before(&c, 12).await;
    let insert = "INSERT INTO bars VALUES ('old', 'EUR/USD', '2024-03-01T00:00:00+01:00', 1.08, 1.09, 1.07, 1.085, 0, '1-0'), \
                  ('old', 'BRK.B', '2024-02-29T23:00:00Z', 410, 412, 409, 411, 1000, '1-1')";
    c.batch_execute(insert).await.expect("old rows");
    let key = "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint c \
               CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
               WHERE c.conrelid = 'bars'::regclass AND c.contype = 'p'";
    let before: Vec<String> = c.query_one(key, &[]).await.expect("key").get(0);
    assert_eq!(before, ["run_id", "ticker", "time"]);
    for _ in 0..2 {
        c.batch_execute(migrations[11].2)
            .await
            .expect("migration 12");
        let after: Vec<String> = c.query_one(key, &[]).await.expect("key").get(0);
        assert_eq!(after, ["run_id", "time", "ticker"]);
    }
    assert_eq!(count(&c, "bars").await, 2);
    let again = c
        .batch_execute(insert)
        .await
        .expect_err("the key still refuses a duplicate");
    assert_eq!(
        again.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    // The restart's replay reads the bars in the key's order: by time, then ticker.
    let order: Vec<String> = c
        .query(
            "SELECT ticker FROM bars WHERE run_id = 'old' ORDER BY time, ticker",
            &[],
        )
        .await
        .expect("replay")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(order, ["BRK.B", "EUR/USD"]);
}

/// Migration 9 (order types, partial fills) over rows written before it: an old filled order
/// takes its fill's quantity, and an order may then fill in more than one part.
#[tokio::test]
async fn order_types_migrate_over_rows_written_before_them() {
    let (_db, c) = TestDb::new().await;
    migrate_before(&c, 9).await;
    c.batch_execute(
        "INSERT INTO orders (run_id, order_id, time, ticker, side, intent, size_fraction, status, reason) \
         VALUES ('old', 1, now(), 'BRK.B', 'buy', 'entry', 0.02, 'filled', ''), \
                ('old', 2, now(), 'BRK.B', 'sell', 'exit', NULL, 'cancelled', 'no_position'); \
         INSERT INTO fills (run_id, order_id, time, ticker, side, quantity, price, commission) \
         VALUES ('old', 1, now(), 'BRK.B', 'buy', 12, 410.5, 1.0);",
    )
    .await
    .expect("old rows");
    c.batch_execute(findashpro::sinks::postgres::MIGRATIONS[8].2)
        .await
        .expect("migration 9");
    let rows = c
        .query(
            "SELECT order_id, filled_quantity, order_type, time_in_force FROM orders ORDER BY order_id",
            &[],
        )
        .await
        .expect("orders");
    let got: Vec<(i64, f64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [
            (1, 12.0, "market".into(), "day".into()),
            (2, 0.0, "market".into(), "day".into())
        ]
    );
    c.batch_execute(
        "INSERT INTO fills (run_id, order_id, seq, time, ticker, side, quantity, price, commission) \
         VALUES ('old', 1, 2, now(), 'BRK.B', 'buy', 3, 411.0, 1.0)",
    )
    .await
    .expect("a second part of one order");
}

#[tokio::test]
async fn the_audit_log_refuses_update_delete_and_truncate() {
    let (_db, mut c) = TestDb::new().await;
    migrate(&mut c).await.expect("migrate");
    audit(&c, "test_event", &serde_json::json!({"k": 1}))
        .await
        .expect("insert is allowed");
    for sql in [
        "UPDATE audit_log SET event_type = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
    assert_eq!(count(&c, "audit_log").await, 1);
}

#[tokio::test]
async fn writing_a_run_twice_doubles_nothing() {
    let out = tokio::task::spawn_blocking(|| run_with(&pipeline("sample.toml"), 1))
        .await
        .expect("run");
    let (_db, mut c) = TestDb::new().await;
    migrate(&mut c).await.expect("migrate");
    let first = write_ledger(&mut c, "run-1", &out.tickers, &out.ledger, &out.exposure)
        .await
        .expect("write");
    assert_eq!(first.signals as usize, out.ledger.signals.len());
    assert_eq!(first.orders as usize, out.ledger.orders.len());
    assert_eq!(first.fills as usize, out.ledger.fills.len());
    let again = write_ledger(&mut c, "run-1", &out.tickers, &out.ledger, &out.exposure)
        .await
        .expect("redelivered");
    assert_eq!(
        (again.signals, again.orders, again.fills, again.positions),
        (0, 0, 0, 0)
    );
    assert_eq!(
        count(&c, "signals").await as usize,
        out.ledger.signals.len()
    );
    assert_eq!(count(&c, "fills").await as usize, out.ledger.fills.len());
    // Signals land in their year's partition.
    let y2016: i64 = c
        .query_one("SELECT count(*) FROM signals_2016", &[])
        .await
        .expect("partition")
        .get(0);
    assert!(y2016 > 0);
}

/// `fdp backtest PIPELINE --run-id ID --out DIR --database-url URL` from the repository root.
fn fdp_backtest_into(
    url: &str,
    out: &std::path::Path,
    pipeline: &str,
    run_id: &str,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(["backtest", pipeline, "--run-id", run_id])
        .arg("--out")
        .arg(out)
        .args(["--database-url", url])
        .current_dir(crate::common::root())
        .output()
        .expect("fdp runs")
}

/// `fdp backtest --database-url`: the run's rows land in PostgreSQL with one audit event, and a
/// second write of the same run adds nothing.
#[tokio::test]
async fn backtest_with_a_database_url_writes_its_rows_and_an_audit_event() {
    let (db, c) = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |id: &str| {
        fdp_backtest_into(
            &db.url,
            dir.path(),
            "pipelines/reference_sma_cross.toml",
            id,
        )
    };
    let o = run("ref");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) }
    };
    // The golden reference: 33 trades, 32 closed and one open, each an entry and (but the last)
    // an exit.
    assert_eq!(
        n("SELECT count(*) FROM fills WHERE run_id = 'ref'").await,
        65
    );
    assert_eq!(
        n("SELECT count(*) FROM orders WHERE run_id = 'ref' AND status = 'filled'").await,
        65
    );
    assert!(n("SELECT count(*) FROM signals WHERE run_id = 'ref'").await > 60);
    assert!(n("SELECT count(*) FROM positions WHERE run_id = 'ref'").await >= 65);
    let event = c
        .query_one(
            "SELECT data FROM audit_log WHERE event_type = 'backtest_written'",
            &[],
        )
        .await
        .expect("one audit event");
    let data: serde_json::Value = event.get(0);
    assert_eq!(data["run_id"], "ref");
    assert!((data["final_equity"].as_f64().expect("equity") - 54101.36916).abs() < 1e-3);
    // Written again: the same rows (natural keys), one more audit event.
    let o = run("ref");
    assert!(o.status.success());
    assert_eq!(
        n("SELECT count(*) FROM fills WHERE run_id = 'ref'").await,
        65
    );
    assert_eq!(n("SELECT count(*) FROM audit_log").await, 2);
}

/// The kill switch, tripped before a backtest: every entry is refused with the reason
/// `kill_switch`, nothing fills.
#[test]
fn a_tripped_kill_switch_refuses_every_entry() {
    let p = pipeline("reference_sma_cross.toml");
    let opts = findashpro::engine::RunOptions::default();
    opts.kill.trip();
    let out = findashpro::engine::run(&p, &opts)
        .expect("runs")
        .expect("worker 0");
    let orders = &out.ledger.orders;
    assert!(orders.len() > 10, "{}", orders.len());
    assert!(out.ledger.fills.is_empty());
    for o in orders {
        assert_eq!(o.reason, "kill_switch", "{o:?}");
    }
    // The same pipeline without the switch trades.
    assert!(!run_with(&p, 1).ledger.fills.is_empty());
}

/// A run id already written by another pipeline is refused: never a mixture of two pipelines'
/// rows under one id.
#[tokio::test]
async fn a_run_id_of_another_pipeline_is_refused() {
    let (db, c) = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |pipeline: &str| fdp_backtest_into(&db.url, dir.path(), pipeline, "shared-id");
    assert!(run("pipelines/reference_sma_cross.toml").status.success());
    let before = count(&c, "fills").await;
    let o = run("pipelines/sample.toml");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("run id `shared-id` already holds the rows of pipeline reference_sma_cross@"),
        "{err}"
    );
    assert_eq!(
        count(&c, "fills").await,
        before,
        "nothing of the second pipeline was written"
    );
}

async fn five_events(c: &Client) {
    for k in 0..5 {
        audit(c, "test_event", &serde_json::json!({"k": k, "note": "é ✓"}))
            .await
            .expect("insert");
    }
}

fn fdp_audit_verify(url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(["audit", "verify", "--database-url", url])
        .output()
        .expect("fdp runs")
}

/// The audit log is a hash chain recomputed outside the database: an edited row and a deleted row
/// are found (even with the append-only triggers disabled to do it), at their place.
#[tokio::test]
async fn the_audit_chain_finds_an_edited_or_deleted_row() {
    for (tamper, want) in [
        (
            "UPDATE audit_log SET data = '{\"k\": 99}' WHERE seq = 3",
            "broken at seq 3",
        ),
        (
            "DELETE FROM audit_log WHERE seq = 4",
            "seq is 5 where 4 was expected",
        ),
    ] {
        let (db, mut c) = TestDb::new().await;
        migrate(&mut c).await.expect("migrate");
        five_events(&c).await;
        let check = findashpro::sinks::postgres::verify_audit(&c)
            .await
            .expect("verify");
        assert_eq!((check.rows, check.broken.clone()), (5, None), "{check:?}");
        let o = fdp_audit_verify(&db.url);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("audit log intact: 5 rows, head seq 5")
        );
        // A superuser disables the guard, tampers, and re-enables it.
        c.batch_execute(&format!(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete; {tamper}; \
             ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"
        ))
        .await
        .expect("tampered");
        let o = fdp_audit_verify(&db.url);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{tamper}: {err}");
        assert!(err.contains(want), "{tamper}: {err}");
    }
}

/// Runs write as `fdp_writer`: it may append to the audit log and nothing more — no update, no
/// disabled trigger, no replica mode — and a dropped trigger is reported by `fdp migrate`.
#[tokio::test]
async fn the_writer_role_can_only_append_and_migrate_notices_a_dropped_trigger() {
    let (_db, mut c) = TestDb::new().await;
    migrate(&mut c).await.expect("migrate");
    findashpro::sinks::postgres::as_writer(&c)
        .await
        .expect("writer");
    audit(&c, "as_writer", &serde_json::json!({}))
        .await
        .expect("append");
    for sql in [
        "UPDATE audit_log SET event_type = 'x'",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
        "SET session_replication_role = replica",
        "DROP TRIGGER audit_log_chain ON audit_log",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let text = findashpro::sinks::postgres::DbError::from(e).to_string();
        assert!(
            text.contains("permission denied") || text.contains("must be owner"),
            "{sql}: {text}"
        );
    }
    c.batch_execute("RESET ROLE; DROP TRIGGER audit_log_chain ON audit_log")
        .await
        .expect("a superuser can");
    let e = migrate(&mut c).await.expect_err("noticed");
    assert!(
        e.to_string().contains("trigger audit_log_chain is missing"),
        "{e}"
    );
}

/// Bars of three markets — FX near 1.0 with a `/`, an equity with a `.`, crypto in the tens of
/// thousands — at times before 1970, at PostgreSQL's epoch and now, `n` of them.
fn market_bars(n: usize, stream: &str) -> Vec<findashpro::sinks::postgres::StoredBar> {
    use findashpro::bar::Bar;
    let names = ["EUR/USD", "BRK.B", "BTCUSDT"];
    let levels = [1.07231, 412.57, 29_071.25];
    (0..n)
        .map(|i| {
            let k = i % 3;
            let close = levels[k] * (1.0 + (i as f64).sin() * 1e-3);
            findashpro::sinks::postgres::StoredBar {
                ticker: names[k].to_string(),
                bar: Bar {
                    ticker: k as u32,
                    // From 1969-12-31 on, one hour apart per row of a market.
                    ts: -86_400 + (i / 3) as i64 * 3_600 + if i == 3 { 946_684_800 } else { 0 },
                    open: close * 0.999,
                    high: close * 1.002,
                    low: close * 0.998,
                    close,
                    volume: if k == 0 { 0.0 } else { 1e3 / 3.0 },
                },
                stream_id: format!("{stream}-{i}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn bars_recorded_by_copy_and_by_unnest_read_back_bit_for_bit_and_re_record_as_no_ops() {
    use findashpro::bar::Tickers;
    use findashpro::sinks::pg_copy::{COPY_FROM_ROWS, write_bars_copy};
    use findashpro::sinks::postgres::{load_bars, write_bars, write_bars_unnest};
    let (_db, mut c) = TestDb::new().await;
    migrate(&mut c).await.expect("migrate");
    let tickers = Tickers::new(["EUR/USD", "BRK.B", "BTCUSDT"].map(String::from));
    let many = market_bars(COPY_FROM_ROWS + 7, "1700000000000");
    let few = market_bars(40, "1700000000001");
    // write_bars picks COPY for the large batch and UNNEST for the small one; each path also
    // writes the other's batch under a second run id, and the rows read back are the same.
    for (run, batch) in [("copy", &many), ("unnest", &few)] {
        assert_eq!(
            write_bars(&mut c, run, batch).await.expect("write"),
            batch.len() as u64
        );
        assert_eq!(
            write_bars(&mut c, run, batch).await.expect("again"),
            0,
            "{run}: re-recorded"
        );
    }
    assert_eq!(
        write_bars_unnest(&mut c, "copy2", &many)
            .await
            .expect("unnest"),
        many.len() as u64
    );
    assert_eq!(
        write_bars_copy(&mut c, "unnest2", &few)
            .await
            .expect("copy"),
        few.len() as u64
    );
    assert_eq!(
        write_bars_copy(&mut c, "unnest2", &few)
            .await
            .expect("copy again"),
        0
    );
    for (a, b, batch) in [("copy", "copy2", &many), ("unnest", "unnest2", &few)] {
        let x = load_bars(&c, a, 4_000_000_000, &tickers)
            .await
            .expect("load");
        let y = load_bars(&c, b, 4_000_000_000, &tickers)
            .await
            .expect("load");
        assert_eq!(x.len(), batch.len());
        assert_eq!(x, y, "{a} and {b} hold the same rows");
        let mut want: Vec<_> = batch.to_vec();
        want.sort_by(|p, q| (p.bar.ts, &p.ticker).cmp(&(q.bar.ts, &q.ticker)));
        for (got, want) in x.iter().zip(&want) {
            assert_eq!(got.ticker, want.ticker);
            assert_eq!(got.stream_id, want.stream_id);
            assert_eq!(got.bar.ts, want.bar.ts);
            for (g, w) in [
                (got.bar.open, want.bar.open),
                (got.bar.high, want.bar.high),
                (got.bar.low, want.bar.low),
                (got.bar.close, want.bar.close),
                (got.bar.volume, want.bar.volume),
            ] {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{} at {}",
                    want.ticker,
                    want.bar.ts
                );
            }
        }
    }
    assert!(earliest_bar_is_before_1970(&c).await);
}

async fn earliest_bar_is_before_1970(c: &Client) -> bool {
    let r = c
        .query_one(
            "SELECT min(extract(epoch FROM time))::float8 FROM bars WHERE run_id = 'copy'",
            &[],
        )
        .await
        .expect("min");
    r.get::<_, f64>(0) < 0.0
}
