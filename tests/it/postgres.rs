//! PostgreSQL, for real (`DATABASE_URL`, default the local server): each test in a database of its
//! own, dropped afterwards.

use findashpro::sinks::postgres::{audit, connect, migrate, write_ledger};
use tokio_postgres::Client;

use crate::common::{pipeline, run_with};

/// A fresh database, dropped (with its connections) when the guard goes.
struct TestDb {
    admin_url: String,
    name: String,
}

impl TestDb {
    async fn new() -> (TestDb, Client) {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "fdp_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let admin = connect(&admin_url)
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
        let client = connect(&url).await.expect("connect to the test database");
        (TestDb { admin_url, name }, client)
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
                if let Ok(c) = connect(&url).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn migrations_apply_once_and_rerun_as_a_no_op() {
    let (_db, mut c) = TestDb::new().await;
    assert_eq!(migrate(&mut c).await.expect("migrate"), vec![1]);
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
