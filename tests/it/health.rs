//! The run's probe endpoints against the real Redis and PostgreSQL, and its metrics exposition
//! through Prometheus's own linter (`promtool check metrics`, Debian's `prometheus` package, which
//! `scripts/test` installs).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use findashpro::sinks::prometheus::{Readiness, StreamMetrics, serve};
use findashpro::sources::providers::{breaker::BreakerState, metrics};

use crate::common::TestDb;

/// GETs `path` and returns the status code and body.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or_default();
    (status, body.to_string())
}

#[test]
fn readyz_answers_only_when_redis_postgres_and_the_migrations_are_there_and_the_run_goes_on() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, mut client) = rt.block_on(TestDb::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let ready = Readiness {
        redis_url: redis_url.clone(),
        database_url: db.url.clone(),
        stopping: Arc::clone(&stopping),
    };
    let addr = serve("127.0.0.1:0", StreamMetrics::shared(), Some(ready.clone())).expect("serve");
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_string()));

    // A fresh database: nothing migrated yet.
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("postgres: ") && body.contains("migrations not applied"),
        "{body}"
    );

    rt.block_on(findashpro::sinks::postgres::migrate(&mut client))
        .expect("migrate");
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".to_string()));

    stopping.store(true, Ordering::Relaxed);
    let (status, body) = get(addr, "/readyz");
    assert_eq!((status, body.as_str()), (503, "stopping\n"));
    stopping.store(false, Ordering::Relaxed);

    // Redis and PostgreSQL that do not answer: a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let gone = Readiness {
        redis_url: format!("redis://127.0.0.1:{port}"),
        database_url: format!("postgres://postgres@127.0.0.1:{port}/x"),
        stopping,
    };
    let addr = serve("127.0.0.1:0", StreamMetrics::shared(), Some(gone)).expect("serve");
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(
        lines[0].starts_with("redis: ") && lines[1].starts_with("postgres: "),
        "{body}"
    );
    assert_eq!(get(addr, "/healthz").0, 200, "alive while not ready");
}

#[test]
fn the_metrics_exposition_passes_promtool() {
    let m = StreamMetrics::shared();
    m.messages.fetch_add(12, Ordering::Relaxed);
    m.observe(0.004, 10);
    m.observe(0.03, 2);
    use findashpro::meter::{Observer, Stage};
    Observer::observe(m.as_ref(), Stage::Features, 0.00004);
    Observer::observe(m.as_ref(), Stage::Predict, 0.3);
    m.count(
        "fdp_quarantine_rows_total",
        "reason=\"nan_price\",action=\"rejected\"".into(),
        2,
    );
    m.count("fdp_order_outcomes_total", "status=\"filled\"".into(), 3);
    m.count_to("fdp_stage_bars_total", "stage=\"quality\"".into(), 10);
    metrics::request("polygon", "ok");
    metrics::request("yahoo", "skipped_breaker");
    metrics::spent("polygon", 1, 0.002);
    metrics::limiter_waited("polygon", std::time::Duration::from_millis(12));
    metrics::cache("polygon", true);
    metrics::breaker("yahoo", BreakerState::Open);
    let text = m.render();
    for family in [
        "fdp_xadd_to_commit_seconds_bucket",
        "fdp_provider_requests_total",
        "fdp_provider_limiter_wait_seconds",
        "fdp_provider_breaker_state",
        "fdp_stage_seconds_bucket{stage=\"features\",le=\"0.00005\"} 1",
        "fdp_stage_seconds_count{stage=\"predict\"} 1",
        "fdp_quarantine_rows_total{reason=\"nan_price\",action=\"rejected\"} 2",
        "fdp_order_outcomes_total{status=\"filled\"} 3",
        "fdp_stage_bars_total{stage=\"quality\"} 10",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    crate::common::promtool_check(&text);
}

#[test]
fn the_alert_rules_pass_promtool_fire_as_tested_and_name_only_metrics_fdp_exports() {
    let dir = crate::common::repo("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let o = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus package; scripts/test installs it)");
        assert!(
            o.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every fdp_ metric a rule reads is one that a live run's /metrics or a backtest's
    // exposition really writes (a renamed metric would silence its alert for good).
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).expect("rules");
    assert_exported(&rules, "a rule");
}

/// Asserts every `fdp_` metric named in `text` (queries, rules) is one that a live run's
/// `/metrics` (every family present) or a backtest's exposition writes; `what` names the
/// reader in the message.
pub(crate) fn assert_exported(text: &str, what: &str) {
    let m = StreamMetrics::shared();
    m.update_gauges(|g| {
        g.equity = Some(1.0);
        g.cash = Some(1.0);
        g.open_positions = Some(1);
        g.pending = Some(1);
        g.lag = Some(1);
        g.drift.insert("RSI_14".into(), (1, 0.5));
    });
    metrics::request("polygon", "ok");
    metrics::spent("polygon", 1, 0.0);
    metrics::breaker("polygon", BreakerState::Open);
    let exported = format!(
        "{}{}",
        m.render(),
        include_str!("../../src/sinks/run_metrics.rs")
    );
    let names: std::collections::BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        // Recording rules' own names (`level:metric:operations`) are not read.
        .filter(|w| w.starts_with("fdp_") && !w.contains(':'))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for n in names {
        assert!(
            exported.lines().any(|l| {
                l.strip_prefix(n)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            }) || exported.contains(&format!("\"{n}\"")),
            "{n} is read by {what} but exported by nothing"
        );
    }
}
