//! `fdp serve` in a real headless Chromium (Debian's, through chromedriver): an ML run on three
//! tickers written both to PostgreSQL (as `fdp backtest --database-url` does) and to a backtest
//! folder; each page loads without console errors, the charts draw, the numbers shown are the
//! database's, an order committed while the page is open appears within seconds, and the kill
//! switch refuses a missing or wrong token and, with the right one, writes the file and the
//! audit event. Screenshots of each page are kept in `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use findashpro::serve::{ServeOptions, start};
use serde_json::json;

use findashpro::sources::providers::breaker::Breaker;
use findashpro::sources::providers::budget::{Budget, TierManager};
use findashpro::sources::redis_stream::Conn;

use crate::browser::{Browser, drawn};
use crate::common::{RedisPrefix, TestDb, repo, run_with};

const TOKEN: &str = "dashboard-test-token";

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots")
}

/// Waits for the page's first complete render and returns the console errors so far.
fn loaded(b: &Browser, what: &str) -> Vec<String> {
    b.wait_for(
        what,
        "return document.body.getAttribute('data-ready') === '1'",
        30,
    );
    b.console_errors()
}

/// A summary card's raw value.
fn card(b: &Browser, key: &str) -> f64 {
    let v = b.eval(
        "const e = document.querySelector(`#summary [data-key=\"${arguments[0]}\"]`); \
         return e ? e.getAttribute('data-value') : null;",
        json!([key]),
    );
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("summary card {key}: {v}"))
}

#[test]
fn the_dashboard_shows_the_database_draws_updates_live_and_guards_the_kill_switch() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, mut client) = rt.block_on(TestDb::new());
    let work = tempfile::tempdir().expect("tmp");
    let runs = work.path().join("runs");
    let data_dir = work.path().join("data");

    // One ML run (trainings, drift, fills) written both ways.
    let p = crate::ml::ml_in(&repo("data/sample"));
    let out = run_with(&p, 1);
    let m = findashpro::output::write(
        &runs.join("mlrun"),
        "mlrun",
        &out,
        &findashpro::output::Contents {
            tables: findashpro::sinks::files::Tables::of(&p.pipeline),
            ..Default::default()
        },
    )
    .expect("folder");
    rt.block_on(async {
        use findashpro::sinks::postgres as pg;
        pg::migrate(&mut client).await?;
        pg::claim_run(&client, "mlrun", &p.pipeline.name, &p.fingerprint()).await?;
        pg::write_ledger(
            &mut client,
            "mlrun",
            &out.tickers,
            &out.ledger,
            &out.exposure,
        )
        .await?;
        Ok::<_, pg::DbError>(())
    })
    .expect("seed the database");
    let scalar = |sql: &str| -> f64 {
        let row = rt.block_on(client.query_one(sql, &[])).expect(sql);
        row.try_get::<_, f64>(0)
            .or_else(|_| row.try_get::<_, i64>(0).map(|v| v as f64))
            .expect(sql)
    };
    let final_equity =
        scalar("SELECT equity FROM equity WHERE run_id = 'mlrun' ORDER BY time DESC LIMIT 1");
    assert!(
        (final_equity - m.final_equity).abs() < 1e-6,
        "{final_equity} vs {}",
        m.final_equity
    );
    let orders = scalar("SELECT count(*) FROM orders WHERE run_id = 'mlrun'");
    let fills = scalar("SELECT count(*) FROM fills WHERE run_id = 'mlrun'");
    assert!(orders > 0.0 && fills > 0.0);
    assert!(scalar("SELECT count(*) FROM ml_metrics WHERE run_id = 'mlrun'") > 0.0);

    // Providers as the controls leave them in Redis: Polygon's breaker opened by three outages
    // after two charged requests, Yahoo asked once, 0.25 spent today.
    let prefix = RedisPrefix::new("fdptest:dash");
    let redis_url = prefix.url.clone();
    let mut redis = Conn::open(&redis_url).expect("Redis answers at REDIS_URL");
    let polygon = Breaker::new(
        &prefix.name,
        "polygon",
        3,
        Duration::from_secs(600),
        Duration::from_secs(10),
    );
    let paid = Budget {
        cost_per_request: 0.125,
        credits_per_request: 1,
        ..Budget::default()
    };
    for _ in 0..2 {
        TierManager::new(&prefix.name, "polygon", "premium", paid, Some(10.0))
            .charge(&mut redis)
            .expect("charge");
    }
    TierManager::new(&prefix.name, "yahoo", "free", Budget::default(), Some(10.0))
        .charge(&mut redis)
        .expect("charge");
    for _ in 0..3 {
        polygon.report(&mut redis, false).expect("report");
    }

    let addr = start(ServeOptions {
        addr: "127.0.0.1:0".into(),
        database_url: Some(db.url.clone()),
        runs_dir: Some(runs.clone()),
        data_dir: data_dir.clone(),
        token: Some(TOKEN.into()),
        redis_url: Some(redis_url.clone()),
        prefix: prefix.name.clone(),
    })
    .expect("serve");
    let base = format!("http://{addr}");
    let b = Browser::start(1400, 3200);

    // The runs list: the database's run and the folder's.
    b.goto(&format!("{base}/"));
    let errors = loaded(&b, "the runs list");
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let listed = b.eval(
        "return [...document.querySelectorAll('tr[data-key=\"mlrun\"] a')].map(a => a.getAttribute('href'))",
        json!([]),
    );
    assert_eq!(listed, json!(["/runs/db/mlrun", "/runs/dir/mlrun"]));
    let provider = |name: &str| {
        b.eval(
            "return [...document.querySelectorAll(`#providers tr[data-key=\"${arguments[0]}\"] td`)].map(td => td.textContent)",
            json!([name]),
        )
    };
    let row = provider("polygon");
    assert_eq!(row[1], "open", "{row}");
    assert_eq!(
        (row[2].as_str(), row[4].as_str(), row[5].as_str()),
        (Some("3"), Some("2"), Some("2")),
        "{row}"
    );
    let row = provider("yahoo");
    assert_eq!(
        (row[1].as_str(), row[4].as_str()),
        (Some("closed"), Some("1")),
        "{row}"
    );
    let spend = b.eval(
        "return document.getElementById('spend').textContent",
        json!([]),
    );
    assert!(
        spend.as_str().is_some_and(|t| t.ends_with("0.25")),
        "{spend}"
    );
    b.screenshot(&shots().join("runs.png"));
    // The provider answers again: the open page shows the breaker closed without a reload.
    polygon.report(&mut redis, true).expect("report");
    b.wait_for(
        "polygon's breaker closed on the open page",
        "return document.querySelector('#providers tr[data-key=\"polygon\"] td:nth-child(2)').textContent === 'closed'",
        15,
    );

    // The run in PostgreSQL: numbers are the database's, charts drawn.
    b.goto(&format!("{base}/runs/db/mlrun"));
    let errors = loaded(&b, "the database run's page");
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert_eq!(card(&b, "final_equity"), final_equity);
    assert_eq!(card(&b, "orders"), orders);
    assert_eq!(card(&b, "fills"), fills);
    let open = scalar(
        "SELECT open_positions::float8 FROM equity WHERE run_id = 'mlrun' ORDER BY time DESC LIMIT 1",
    );
    assert_eq!(card(&b, "open_positions"), open);
    for chart in ["chart-equity", "chart-drawdown", "chart-models"] {
        assert!(drawn(&b, chart) > 1000, "{chart} drew nothing");
    }
    let shown_orders = b
        .eval(
            "return document.querySelectorAll('#table-orders tbody tr').length",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0);
    assert_eq!(shown_orders as f64, orders.min(200.0));
    b.screenshot(&shots().join("run-db.png"));

    // A live run commits an order: the open page shows it within seconds, no reload.
    rt.block_on(client.execute(
        "INSERT INTO orders (run_id, order_id, time, ticker, side, intent, size_fraction, status, reason) \
         VALUES ('mlrun', 987654321, '2099-01-02T00:00:00Z', 'BRK.B', 'buy', 'entry', 0.02, 'refused', 'daily_loss_stop')",
        &[],
    ))
    .expect("insert order");
    b.wait_for(
        "the new order on the open page",
        "return document.querySelector('#table-orders tr[data-key=\"987654321\"]') !== null",
        10,
    );
    assert_eq!(card(&b, "orders"), orders + 1.0);
    let row = b.eval(
        "return document.querySelector('#table-orders tr[data-key=\"987654321\"]').textContent",
        json!([]),
    );
    assert!(
        row.as_str()
            .is_some_and(|t| t.contains("BRK.B") && t.contains("daily_loss_stop")),
        "{row}"
    );

    // The kill switch: no token, a wrong token, then the right one.
    let stop = data_dir.join("STOP");
    let attempt = |token: &str| -> u64 {
        b.eval(
            "document.getElementById('kill-result').removeAttribute('data-status')",
            json!([]),
        );
        b.type_into("#kill-token", token);
        b.type_into("#kill-confirm", "mlrun");
        b.click("#kill-button");
        b.wait_for(
            "the kill switch's answer",
            "return document.getElementById('kill-result').getAttribute('data-status')",
            10,
        )
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
    };
    assert_eq!(attempt(""), 401);
    assert_eq!(attempt("not-the-token"), 401);
    assert!(
        !stop.exists(),
        "refused, yet the kill-switch file was written"
    );
    // The 401 answers are the only console errors (the browser logs a failed response).
    let errors = b.console_errors();
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "console errors: {errors:?}"
    );
    assert_eq!(attempt(TOKEN), 200);
    assert!(stop.exists(), "the kill-switch file");
    let audited = scalar(
        "SELECT count(*) FROM audit_log WHERE event_type = 'kill_switch' \
         AND data->>'run_id' = 'mlrun' AND host(origin_ip) = '127.0.0.1'",
    );
    assert_eq!(audited, 1.0);
    std::thread::sleep(Duration::from_millis(2500));
    b.screenshot(&shots().join("run-db-killed.png"));

    // The backtest folder: the same run, read through DataFusion.
    b.goto(&format!("{base}/runs/dir/mlrun"));
    let errors = loaded(&b, "the folder run's page");
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!((card(&b, "final_equity") - m.final_equity).abs() < 1e-6);
    assert!(
        (card(&b, "max_drawdown") - m.max_drawdown).abs() < 1e-9,
        "{}",
        m.max_drawdown
    );
    for chart in ["chart-equity", "chart-drawdown", "chart-models"] {
        assert!(drawn(&b, chart) > 1000, "{chart} drew nothing");
    }
    assert!(
        b.eval(
            "return document.getElementById('kill-button') === null",
            json!([])
        ) == json!(true),
        "a backtest folder has no kill switch"
    );
    b.screenshot(&shots().join("run-dir.png"));
    drop(b);

    // Without a token the action is disabled; nothing answers for runs that do not exist.
    let plain = start(ServeOptions {
        addr: "127.0.0.1:0".into(),
        database_url: Some(db.url.clone()),
        runs_dir: Some(runs),
        data_dir,
        token: None,
        redis_url: None,
        prefix: "fdp".into(),
    })
    .expect("serve");
    let http = |method: &str, path: &str, auth: Option<&str>| -> u16 {
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("http://{plain}{path}");
        rt.block_on(async {
            let mut req = if method == "POST" {
                c.post(&url).body("{\"confirm\":\"mlrun\"}")
            } else {
                c.get(&url)
            };
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    assert_eq!(http("POST", "/api/runs/db/mlrun/kill", Some(TOKEN)), 403);
    assert_eq!(http("GET", "/api/runs/db/nosuchrun/summary", None), 404);
    assert_eq!(http("GET", "/api/runs/dir/..%2Fetc/summary", None), 400);
    assert_eq!(http("GET", "/api/runs/db/mlrun/nosuchview", None), 404);
    assert_eq!(http("GET", "/api/runs/dir/mlrun/equity", None), 200);
    assert_eq!(
        http("GET", "/api/providers", None),
        404,
        "no Redis, no providers"
    );
}
