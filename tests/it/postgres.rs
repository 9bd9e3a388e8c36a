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
    assert_eq!(migrate(&mut c).await.expect("migrate"), vec![1, 2, 3]);
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
    let first = write_ledger(&mut c, "run-1", &out.tickers, &out.ledger)
        .await
        .expect("write");
    assert_eq!(first.signals as usize, out.ledger.signals.len());
    assert_eq!(first.orders as usize, out.ledger.orders.len());
    assert_eq!(first.fills as usize, out.ledger.fills.len());
    let again = write_ledger(&mut c, "run-1", &out.tickers, &out.ledger)
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
