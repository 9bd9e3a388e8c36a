//! Exactly once at the broker, through `fdp broker` against a local Alpaca ([`crate::alpaca_mock`])
//! and a database of the test's own: orders recorded in `broker_orders` (as a run's commit records
//! them) are sent once; a process killed with SIGKILL while the venue holds its answer, with a
//! second order recorded and not yet sent, leaves the venue with each order exactly once after
//! the restart, and the ledger matching it; a refusal is recorded with the broker's reason; an
//! unreachable venue halts entries (not exits), or with `failover = "paper"` routes the run to
//! paper once and for all; reconciliation adopts a position and an order
//! changed at the broker while the run was down, and reports a position the run never opened.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use findashpro::bar::Tickers;
use findashpro::operators::portfolio::Submitted;
use findashpro::operators::risk::EntrySize;
use findashpro::order::{Order, OrderKind, OrderSide, OrderType, TimeInForce};
use findashpro::sinks::broker::outbox;
use findashpro::sinks::broker::venue::client_order_id;
use serde_json::json;

use crate::alpaca_mock::{Fault, KEY, MockAlpaca, SECRET};
use crate::common::{TestDb, repo};

/// 2026-01-05 14:30 UTC.
const T: i64 = 1_767_623_400;

fn pipeline(dir: &std::path::Path, m: &MockAlpaca) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo("pipelines/sample.toml")).expect("sample");
    let text = text.replace(
        "data/sample/",
        &format!("{}/", repo("data/sample").display()),
    );
    let text = text.replacen(
        "[broker]\nkind = \"paper\"",
        &format!(
            "[broker]\nkind = \"alpaca\"\nbase_url = \"{}\"\nstream_url = \"{}\"\nreconcile_minutes = 60",
            m.url, m.stream_url
        ),
        1,
    );
    assert!(text.contains("kind = \"alpaca\""), "{text}");
    let p = dir.join("live.toml");
    std::fs::write(&p, text).expect("write");
    p
}

/// A local Alpaca, a database and a folder of the test's own.
async fn setup() -> (
    MockAlpaca,
    TestDb,
    tokio_postgres::Client,
    tempfile::TempDir,
) {
    let m = MockAlpaca::start().await;
    let (db, c) = TestDb::new().await;
    (m, db, c, tempfile::tempdir().expect("tempdir"))
}

fn order(id: u64, ticker: u32, side: OrderSide, kind: OrderKind, ty: OrderType) -> Submitted {
    Submitted {
        order: Order {
            id,
            ts: T,
            ticker,
            side,
            kind,
            order_type: ty,
            tif: TimeInForce::Day,
            parent: None,
        },
        quantity: 10.0,
        replaces: None,
    }
}

fn entry(id: u64, ticker: u32) -> Submitted {
    let kind = OrderKind::Entry {
        direction: 1,
        size: EntrySize::Fraction(0.02),
    };
    order(
        id,
        ticker,
        OrderSide::Buy,
        kind,
        OrderType::Limit { limit: 187.5 },
    )
}

fn tickers() -> Tickers {
    Tickers::new(["AAPL", "BRK.B", "BTC/USD"].map(String::from))
}

async fn record(c: &mut tokio_postgres::Client, run: &str, rows: &[Submitted]) {
    findashpro::sinks::postgres::migrate(c)
        .await
        .expect("migrate");
    let tx = c.transaction().await.expect("tx");
    let n = outbox::record(&tx, run, &tickers(), rows)
        .await
        .expect("record");
    assert_eq!(n as usize, rows.len());
    tx.commit().await.expect("commit");
}

/// Entries 1–4 (AAPL, BRK.B, BTC/USD, BRK.B) and an exit (5, AAPL).
async fn record_four_entries_and_an_exit(c: &mut tokio_postgres::Client, run: &str) {
    let exit = order(5, 0, OrderSide::Sell, OrderKind::Exit, OrderType::Market);
    record(
        c,
        run,
        &[entry(1, 0), entry(2, 1), entry(3, 2), entry(4, 1), exit],
    )
    .await;
}

fn broker(p: &std::path::Path, db: &TestDb, run: &str, once: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fdp"));
    cmd.args(["broker", &p.display().to_string(), "--run-id", run])
        .args(["--database-url", &db.url, "--interval", "0.2"])
        .args([
            "--data-dir",
            &p.parent().expect("dir").display().to_string(),
        ])
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
        .env("FDP_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if once {
        cmd.arg("--once");
    }
    cmd
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fdp broker: {err}");
    assert!(!err.contains(SECRET), "the secret reached the log");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn states(c: &tokio_postgres::Client, run: &str) -> Vec<(i64, String, Option<String>)> {
    c.query(
        "SELECT order_id, state, reason FROM broker_orders WHERE run_id = $1 ORDER BY order_id",
        &[&run],
    )
    .await
    .expect("query")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn audits(c: &tokio_postgres::Client, event: &str) -> Vec<serde_json::Value> {
    c.query(
        "SELECT data FROM audit_log WHERE event_type = $1 ORDER BY seq",
        &[&event],
    )
    .await
    .expect("audit")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn posts_of(m: &MockAlpaca, cid: &str) -> usize {
    m.posts()
        .iter()
        .filter(|p| p["client_order_id"] == cid)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_the_venue_holds_its_answer_sends_nothing_twice() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-kill";
    record(&mut c, run, &[entry(1, 1), entry(2, 2)]).await;
    let (first, second) = (client_order_id(run, 1), client_order_id(run, 2));
    // The first order is created at the venue, its answer held far past the process's life.
    m.fault(Fault::AcceptThenStall(Duration::from_secs(120)));
    let mut child = broker(&p, &db, run, true).spawn().expect("spawn");
    let start = Instant::now();
    while posts_of(&m, &first) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no order arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL between sending and the answer; the second order is recorded and not yet sent.
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(
        states(&c, run).await,
        [(1, "sending".into(), None), (2, "recorded".into(), None)]
    );
    assert_eq!(posts_of(&m, &second), 0);
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("1 sent, 1 adopted"), "{out}");
    assert_eq!(
        (posts_of(&m, &first), posts_of(&m, &second)),
        (1, 1),
        "each order reached the venue exactly once"
    );
    let venue_ids: Vec<String> = m
        .orders()
        .iter()
        .map(|o| o["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let rows = c
        .query(
            "SELECT state, venue_order_id, ticker FROM broker_orders WHERE run_id = $1 ORDER BY order_id",
            &[&run],
        )
        .await
        .expect("rows");
    for (r, venue_id) in rows.iter().zip(&venue_ids) {
        assert_eq!(r.get::<_, String>(0), "accepted");
        assert_eq!(r.get::<_, Option<String>>(1).as_ref(), Some(venue_id));
    }
    assert_eq!(rows[1].get::<_, String>(2), "BTC/USD", "a symbol with /");
    let adopted = audits(&c, "broker_order_adopted").await;
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0]["client_order_id"], first.as_str());
    // A third start finds nothing to send.
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("0 sent, 0 adopted"), "{out}");
    assert_eq!(m.posts().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_recorded_with_the_brokers_reason_and_an_ended_order_is_never_sent() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-reject";
    record(&mut c, run, &[entry(1, 0), entry(2, 1)]).await;
    // The portfolio ended order 2 (its signal changed) in a later committed step.
    let tx = c.transaction().await.expect("tx");
    outbox::request_cancels(&tx, run, &[2])
        .await
        .expect("cancel");
    tx.commit().await.expect("commit");
    m.fault(Fault::Status(
        403,
        r#"{"code":40310000,"message":"insufficient buying power"}"#,
    ));
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("1 rejected"), "{out}");
    assert_eq!(
        states(&c, run).await,
        [
            (
                1,
                "rejected".into(),
                Some("insufficient buying power".into())
            ),
            (
                2,
                "cancelled".into(),
                Some("withdrawn before it was sent".into())
            )
        ]
    );
    assert_eq!(m.posts().len(), 1, "the ended order never left");
    let rejected = audits(&c, "broker_order_rejected").await;
    assert_eq!(rejected[0]["reason"], "insufficient buying power");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_venue_halts_entries_and_keeps_exits_for_later() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-down";
    record_four_entries_and_an_exit(&mut c, run).await;
    // Every post of the first three orders (each tried four times) answers 503.
    for _ in 0..12 {
        m.fault(Fault::Status(503, "upstream unavailable"));
    }
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("1 halted, 3 unanswered"), "{out}");
    let s = states(&c, run).await;
    let state = |id: i64| s.iter().find(|r| r.0 == id).map(|r| r.1.clone());
    assert_eq!(state(4).as_deref(), Some("halted"));
    assert_eq!(
        state(5).as_deref(),
        Some("recorded"),
        "an exit is not halted: it waits for the venue"
    );
    assert_eq!(audits(&c, "broker_failover").await.len(), 1);
    // The venue is back: the next start looks the unanswered ones up (never arrived), sends
    // them and the exit, once each.
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("4 sent"), "{out}");
    for id in [1, 2, 3, 5] {
        assert_eq!(
            m.orders()
                .iter()
                .filter(|o| o["client_order_id"] == client_order_id(run, id).as_str())
                .count(),
            1,
            "order {id}"
        );
    }
    assert_eq!(state(4).as_deref(), Some("halted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_failover_paper_an_unreachable_venue_routes_the_run_to_paper_once() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let text = std::fs::read_to_string(&p).expect("read");
    let text = text.replacen(
        "reconcile_minutes = 60",
        "reconcile_minutes = 60\nfailover = \"paper\"",
        1,
    );
    std::fs::write(&p, text).expect("write");
    let run = "live-paper";
    record_four_entries_and_an_exit(&mut c, run).await;
    let tx = c.transaction().await.expect("tx");
    outbox::request_cancels(&tx, run, &[4])
        .await
        .expect("cancel");
    tx.commit().await.expect("commit");
    for _ in 0..12 {
        m.fault(Fault::Status(503, "upstream unavailable"));
    }
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(
        out.contains("3 unanswered, 1 cancelled before sending, 4 routed to paper"),
        "{out}"
    );
    let s = states(&c, run).await;
    let got: Vec<(i64, &str)> = s.iter().map(|r| (r.0, r.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "paper"),
            (2, "paper"),
            (3, "paper"),
            (4, "cancelled"),
            (5, "paper")
        ]
    );
    let failover = audits(&c, "broker_failover").await;
    assert_eq!(failover.len(), 1);
    assert_eq!(failover[0]["failover"], "paper");
    // The three posts whose answer never came may be working at the venue: named.
    let named: Vec<String> = (1..=3).map(|id| client_order_id(run, id)).collect();
    assert_eq!(failover[0]["may_be_at_venue"], json!(named));
    // The run takes one reroute per order (and the withdrawn one's end).
    let updates = outbox::take_updates(&mut c, run, &tickers(), T)
        .await
        .expect("take");
    let rerouted: Vec<u64> = updates
        .iter()
        .filter(|(_, u)| u.kind == findashpro::order::VenueUpdateKind::Rerouted)
        .map(|(_, u)| u.order_id)
        .collect();
    assert_eq!(rerouted, [1, 2, 3, 5]);
    // The venue is back, and the run recorded one more order before it heard of the failover:
    // routed too, nothing sent, nothing looked up; a paper run stays a paper run.
    record(&mut c, run, &[entry(6, 0)]).await;
    let posts = m.posts().len();
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("0 sent"), "{out}");
    assert!(out.contains("1 routed to paper"), "{out}");
    assert_eq!(m.posts().len(), posts, "nothing left for the venue");
    assert!(m.orders().is_empty());
    assert_eq!(states(&c, run).await[5].1, "paper");
    assert_eq!(audits(&c, "broker_failover").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_adopts_what_changed_at_the_broker_while_the_run_was_down() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-reconcile";
    record(&mut c, run, &[entry(1, 0), entry(2, 1)]).await;
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("2 sent"), "{out}");
    // The ledger holds 10 AAPL (its last positions row).
    c.execute(
        "INSERT INTO positions (run_id, ticker, time, quantity, entry_price) VALUES ($1, 'AAPL', $2, 10, 187.5)",
        &[&run, &chrono::DateTime::from_timestamp(T, 0).expect("time")],
    )
    .await
    .expect("position");
    // While the run was down: BRK.B's order filled, AAPL was partly sold by hand, and someone
    // bought TSLA in the account.
    m.fill(&client_order_id(run, 2), 10.0, 412.3, false, false);
    m.set_positions(vec![
        json!({"symbol": "AAPL", "qty": "4", "avg_entry_price": "187.5", "side": "long",
               "market_value": "750", "asset_id": "x", "exchange": "NASDAQ", "asset_class": "us_equity"}),
        json!({"symbol": "BRK.B", "qty": "10", "avg_entry_price": "412.3", "side": "long",
               "market_value": "4123", "asset_id": "y", "exchange": "NYSE", "asset_class": "us_equity"}),
        json!({"symbol": "TSLA", "qty": "3", "avg_entry_price": "250", "side": "long",
               "market_value": "750", "asset_id": "z", "exchange": "NASDAQ", "asset_class": "us_equity"}),
    ]);
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("reconciliation differences"), "{out}");
    let adopted = audits(&c, "reconcile_position_adopted").await;
    let mut tickers: Vec<&str> = adopted
        .iter()
        .filter_map(|a| a["ticker"].as_str())
        .collect();
    tickers.sort_unstable();
    assert_eq!(
        tickers,
        ["AAPL"],
        "BRK.B's position is its order's fill, booked once, not adopted: {adopted:?}"
    );
    let aapl = adopted
        .iter()
        .find(|a| a["ticker"] == "AAPL")
        .expect("AAPL");
    assert_eq!(
        (aapl["ledger"].as_f64(), aapl["venue_quantity"].as_f64()),
        (Some(10.0), Some(4.0))
    );
    let unowned = audits(&c, "reconcile_position_unowned").await;
    assert_eq!(unowned.len(), 1);
    assert_eq!(unowned[0]["ticker"], "TSLA");
    let order = audits(&c, "reconcile_order_adopted").await;
    assert_eq!(order.len(), 1, "{order:?}");
    assert_eq!(
        (order[0]["was"].as_str(), order[0]["now"].as_str()),
        (Some("accepted"), Some("filled"))
    );
    let fill = c
        .query_one(
            "SELECT quantity, price FROM broker_events WHERE run_id = $1 AND kind = 'fill'",
            &[&run],
        )
        .await
        .expect("the fill the run missed");
    assert_eq!(
        (fill.get::<_, f64>(0), fill.get::<_, f64>(1)),
        (10.0, 412.3)
    );
    // Nothing was traded to make the venue match: no order beyond the two sent.
    assert_eq!(m.posts().len(), 2);
    // Adopted once: a second reconciliation finds the ledger and the venue agreeing but for the
    // position the run never opened, reported again.
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("1 reconciliation differences"), "{out}");
}

/// The whole way through a live run: `fdp run`'s decisions recorded, `fdp broker` sending them,
/// the venue filling them while the run is down, the next start booking the venue's fills at its
/// prices (the bars filled nothing), and a third start replaying all of it without a new row or
/// a new order at the venue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_books_the_venues_fills_and_replays_them_exactly() {
    use findashpro::stream::{self, Ending, StreamOptions};
    let (m, db, c, dir) = setup().await;
    let text = crate::streaming::pipeline_toml()
        .replacen(
            "[broker]\nkind = \"paper\"",
            &format!(
                "[broker]\nkind = \"alpaca\"\nbase_url = \"{}\"\nstream_url = \"{}\"",
                m.url, m.stream_url
            ),
            1,
        )
        .replacen(
            "kind = \"kelly\"\nfraction = 0.25\ncap = 0.02\nwindow = 30",
            "kind = \"fixed_fraction\"\nfraction = 0.02",
            1,
        );
    assert!(text.contains("fixed_fraction") && text.contains("alpaca"));
    let p_file = dir.path().join("live.toml");
    std::fs::write(&p_file, &text).expect("write");
    let p = crate::common::pipeline_text(&text, &crate::common::root());
    let keys = crate::common::RedisPrefix::new("fdptest:venue");
    let prefix = keys.name.clone();
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = "live-venue";
    let opts = {
        let mut o = StreamOptions::new(&redis_url, &db.url, run);
        o.prefix = prefix.clone();
        o.idle_shutdown = Some(Duration::from_millis(1500));
        o.stop_file = Some(dir.path().join("STOP"));
        o
    };
    let live = |p: findashpro::config::LoadedPipeline, o: StreamOptions| {
        tokio::task::spawn_blocking(move || stream::run(&p, &o).expect("run"))
    };
    stream::orchestrate(
        &p,
        &redis_url,
        &prefix,
        findashpro::time::parse_time("2016-06-30").expect("date"),
        10_000,
    )
    .expect("orchestrate");
    assert_eq!(
        live(p.clone(), opts.clone()).await.expect("join"),
        Ending::Idle
    );
    let count = |sql: &'static str| {
        let c = &c;
        async move {
            c.query_one(sql, &[&run])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    let recorded = count("SELECT count(*) FROM broker_orders WHERE run_id = $1").await;
    assert!(recorded > 0, "the run recorded orders for the venue");
    assert_eq!(
        count("SELECT count(*) FROM fills WHERE run_id = $1").await,
        0,
        "bars fill nothing in venue mode"
    );
    // The broker sink sends what the run left working; withdrawn ones never leave.
    let out = finish(broker(&p_file, &db, run, true).spawn().expect("spawn"));
    let sent = m.orders();
    assert!(!sent.is_empty(), "{out}");
    let working =
        count("SELECT count(*) FROM broker_orders WHERE run_id = $1 AND NOT cancel_requested")
            .await;
    assert_eq!(sent.len() as i64, working, "{out}");
    // While the run is down the venue fills every order, at its own prices.
    let mut expected = Vec::new();
    for (i, o) in sent.iter().enumerate() {
        let cid = o["client_order_id"].as_str().expect("cid").to_string();
        let qty: f64 = o["qty"].as_str().expect("qty").parse().expect("number");
        let price = 100.0 + i as f64;
        m.fill(&cid, qty, price, false, false);
        expected.push((cid, qty, price));
    }
    // The account holds what the fills made, and one share more of the first symbol, bought by
    // hand at 90: reconciliation adopts that share, the fills explain the rest.
    let mut held: std::collections::BTreeMap<String, f64> = Default::default();
    for (o, (_, qty, _)) in sent.iter().zip(&expected) {
        let sign = if o["side"] == "buy" { 1.0 } else { -1.0 };
        *held
            .entry(o["symbol"].as_str().expect("symbol").into())
            .or_default() += sign * qty;
    }
    let first = held.keys().next().expect("a symbol").clone();
    let filled_first = held[&first];
    *held.get_mut(&first).expect("first") += 1.0;
    m.set_positions(
        held.iter()
            .map(|(sym, q)| {
                json!({"symbol": sym, "qty": q.to_string(), "avg_entry_price": "90",
                                   "side": if *q > 0.0 { "long" } else { "short" },
                                   "asset_class": "us_equity"})
            })
            .collect(),
    );
    finish(broker(&p_file, &db, run, true).spawn().expect("spawn"));
    assert_eq!(
        count("SELECT count(*) FROM broker_events WHERE run_id = $1 AND kind = 'fill'").await,
        expected.len() as i64
    );
    // The fills arrived in the pass after reconciliation: the next pass finds them explained.
    finish(broker(&p_file, &db, run, true).spawn().expect("spawn"));
    assert_eq!(
        count("SELECT count(*) FROM broker_events WHERE run_id = $1 AND kind = 'position'").await,
        1,
        "only the share bought by hand is adopted"
    );
    // The next start books them.
    assert_eq!(
        live(p.clone(), opts.clone()).await.expect("join"),
        Ending::Idle
    );
    for (cid, qty, price) in &expected {
        let row = c
            .query_one(
                "SELECT f.quantity, f.price, o.status FROM fills f \
                 JOIN broker_orders b ON b.run_id = f.run_id AND b.order_id = f.order_id \
                 JOIN orders o ON o.run_id = f.run_id AND o.order_id = f.order_id \
                 WHERE f.run_id = $1 AND b.client_order_id = $2",
                &[&run, cid],
            )
            .await
            .expect("the venue's fill is booked");
        assert_eq!(
            (
                row.get::<_, f64>(0),
                row.get::<_, f64>(1),
                row.get::<_, String>(2)
            ),
            (*qty, *price, "filled".to_string())
        );
    }
    let adjust = c
        .query_one(
            "SELECT o.side, f.quantity, f.price, o.reason FROM orders o \
             JOIN fills f USING (run_id, order_id) WHERE o.run_id = $1 AND o.intent = 'adjust'",
            &[&run],
        )
        .await
        .expect("the adopted share is booked");
    assert_eq!(
        (
            adjust.get::<_, String>(0),
            adjust.get::<_, f64>(1),
            adjust.get::<_, f64>(2),
            adjust.get::<_, String>(3)
        ),
        ("buy".into(), 1.0, 90.0, "adopted_from_venue".into())
    );
    let last: f64 = c
        .query_one(
            "SELECT quantity FROM positions WHERE run_id = $1 AND ticker = $2 ORDER BY time DESC LIMIT 1",
            &[&run, &first],
        )
        .await
        .expect("position")
        .get(0);
    assert!((last - (filled_first + 1.0)).abs() < 1e-9, "{last}");
    let before = table_rows(&c, run).await;
    let posts = m.posts().len();
    // A third start replays bars and venue updates at their recorded times: nothing new.
    assert_eq!(live(p, opts).await.expect("join"), Ending::Idle);
    assert_eq!(table_rows(&c, run).await, before);
    finish(broker(&p_file, &db, run, true).spawn().expect("spawn"));
    assert_eq!(m.posts().len(), posts, "nothing sent twice");
}

async fn table_rows(c: &tokio_postgres::Client, run: &str) -> Vec<i64> {
    let mut n = Vec::new();
    for t in [
        "orders",
        "fills",
        "positions",
        "equity",
        "broker_orders",
        "broker_events",
    ] {
        let sql = format!("SELECT count(*) FROM {t} WHERE run_id = $1");
        n.push(
            c.query_one(&sql, &[&run])
                .await
                .expect("count")
                .get::<_, i64>(0),
        );
    }
    n
}

/// `fdp broker` left running books fills from Alpaca's trade-updates stream as they come (REST
/// asks about working orders only every 30 s), each part at its own price, then the end; a
/// second sender for the run is refused meanwhile; it stops when the STOP file appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_broker_books_streamed_fills_as_they_come() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-stream";
    record(&mut c, run, &[entry(1, 0)]).await;
    let cid = client_order_id(run, 1);
    let child = broker(&p, &db, run, false).spawn().expect("spawn");
    let start = Instant::now();
    while m.orders().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the order reached the venue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.wait_sessions(1).await;
    // A second sender for the same run is refused while the first holds the run's lease.
    let second = broker(&p, &db, run, true).output().expect("second");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second sender ran: {err}");
    assert!(
        err.contains("another `fdp broker` is running for run \"live-stream\""),
        "{err}"
    );
    let count_fills = async |c: &tokio_postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM broker_events WHERE run_id = $1 AND kind = 'fill'",
            &[&run],
        )
        .await
        .expect("count")
        .get(0)
    };
    m.fill(&cid, 4.0, 101.5, true, false);
    let start = Instant::now();
    while count_fills(&c).await < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the streamed fill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.fill(&cid, 6.0, 102.0, true, true);
    while count_fills(&c).await < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the second fill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "from the stream, not the 30 s REST poll"
    );
    let rows: Vec<(f64, f64, f64)> = c
        .query(
            "SELECT quantity, price, cumulative FROM broker_events \
             WHERE run_id = $1 AND kind = 'fill' ORDER BY cumulative",
            &[&run],
        )
        .await
        .expect("fills")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, [(4.0, 101.5, 4.0), (6.0, 102.0, 10.0)]);
    std::fs::write(dir.path().join("STOP"), "").expect("stop");
    finish(child);
    let state: String = c
        .query_one("SELECT state FROM broker_orders WHERE run_id = $1", &[&run])
        .await
        .expect("state")
        .get(0);
    assert_eq!(state, "filled");
}

/// A bracket leg re-priced after a further part of its entry filled is recorded as the
/// replacement of the leg: `fdp broker` sends it as Alpaca's PATCH of the working order (the new
/// order carries the replacement's client id), ends the old row, and never sends it as a second
/// order; a replacement of a leg that filled meanwhile is refused by the venue and recorded so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leg_is_patched_at_the_venue_once() {
    let (m, db, mut c, dir) = setup().await;
    let p = pipeline(dir.path(), &m);
    let run = "live-replace";
    let leg = |id: u64, limit: f64, quantity: f64, replaces: Option<u64>| Submitted {
        quantity,
        replaces,
        ..order(
            id,
            0,
            OrderSide::Sell,
            OrderKind::TakeProfit,
            OrderType::Limit { limit },
        )
    };
    record(
        &mut c,
        run,
        &[leg(1, 196.0, 2.0, None), leg(3, 197.0, 4.0, None)],
    )
    .await;
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("2 sent"), "{out}");
    // Leg 3 fills at the venue before its replacement goes.
    m.fill(&client_order_id(run, 3), 4.0, 197.0, false, false);
    record(
        &mut c,
        run,
        &[leg(2, 198.5, 5.0, Some(1)), leg(4, 199.0, 5.0, Some(3))],
    )
    .await;
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("1 sent, 0 adopted, 1 rejected"), "{out}");
    let posts = m.posts().len();
    assert_eq!(posts, 2, "replacements are never posted as new orders");
    let s = states(&c, run).await;
    let got: Vec<(i64, &str)> = s.iter().map(|r| (r.0, r.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "cancelled"),
            (2, "accepted"),
            (3, "filled"),
            (4, "rejected")
        ]
    );
    assert_eq!(
        s[0].2.as_deref(),
        Some(format!("replaced by {}", client_order_id(run, 2)).as_str())
    );
    let orders = m.orders();
    let old = orders
        .iter()
        .find(|o| o["client_order_id"] == client_order_id(run, 1).as_str())
        .expect("old");
    assert_eq!(old["status"], "replaced");
    let new = orders
        .iter()
        .find(|o| o["client_order_id"] == client_order_id(run, 2).as_str())
        .expect("the replacement under its own client id");
    assert_eq!(
        (new["qty"].as_str(), new["limit_price"].as_str()),
        (Some("5"), Some("198.5"))
    );
    assert_eq!(new["replaces"], old["id"]);
    // The old leg's end is there for the live run to book.
    let ended: i64 = c
        .query_one(
            "SELECT count(*) FROM broker_events WHERE run_id = $1 AND client_order_id = $2 \
             AND kind = 'ended' AND status = 'cancelled'",
            &[&run, &client_order_id(run, 1)],
        )
        .await
        .expect("end")
        .get(0);
    assert_eq!(ended, 1);
    // Another pass sends nothing more.
    let out = finish(broker(&p, &db, run, true).spawn().expect("spawn"));
    assert!(out.contains("0 sent"), "{out}");
    assert_eq!(m.orders().len(), 3);
}

/// A committed step's statements go out pipelined; the withdrawals run after them, so an order
/// the portfolio submitted and withdrew within one step is recorded and marked withdrawn, never
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_withdrawn_in_the_step_that_submits_it_is_recorded_withdrawn() {
    let (_m, _db, mut c, _dir) = setup().await;
    findashpro::sinks::postgres::migrate(&mut c)
        .await
        .expect("migrate");
    let run = "live-same-step";
    let ledger = findashpro::operators::portfolio::Ledger {
        submitted: vec![entry(7, 2), entry(8, 1)],
        cancels: vec![(T, 7)],
        ..Default::default()
    };
    findashpro::sinks::postgres::write_ledger(&mut c, run, &tickers(), &ledger, &[])
        .await
        .expect("write");
    let rows = c
        .query(
            "SELECT order_id, ticker, cancel_requested FROM broker_orders WHERE run_id = $1 \
             ORDER BY order_id",
            &[&run],
        )
        .await
        .expect("rows");
    let got: Vec<(i64, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [(7, "BTC/USD".into(), true), (8, "BRK.B".into(), false)]
    );
}
