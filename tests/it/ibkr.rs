//! The Interactive Brokers adapter against a local Client Portal Gateway on loopback speaking
//! BROKERS.md §2a: the session (tickle, a session taken over), contract ids looked up once, an
//! order's life through the question/reply flow (confirmed by policy or refused), refusals,
//! string and integer order ids, the empty first live-orders snapshot, partial then full fills
//! read from the live orders, or execution by execution from `/iserver/account/trades` when it
//! lists them all (booked through the outbox at their own prices and times), cancel, positions page by page, 5xx and a lost answer that never
//! place an order twice, the 429 penalty box, and a live account refused without `live`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use findashpro::order::{OrderSide, OrderType, TimeInForce};
use findashpro::sinks::broker::ibkr::{IbkrClient, IbkrConfig};
use findashpro::sinks::broker::venue::{
    FillTracker, OrderRequest, VenueError, VenueEvent, VenueStatus, client_order_id,
};
use serde_json::{Value, json};

const ACCOUNT: &str = "DU1234567";

#[derive(Default)]
struct Gw {
    authenticated: bool,
    competing: bool,
    searches: u64,
    /// Message ids of the questions asked before each placement is acknowledged.
    questions: Vec<&'static str>,
    pending: Option<(Value, Vec<&'static str>)>,
    /// Faults of the next placements: a status, or "stall" (placed, answered too late).
    faults: Vec<&'static str>,
    placed: Vec<Value>,
    replies: Vec<Value>,
    /// Live-order reads still to answer with the empty pre-flight snapshot.
    empty_snapshots: u32,
    positions: Vec<Vec<Value>>,
    /// What `/iserver/account/trades` lists.
    trades: Vec<Value>,
    /// The `days` each trades call asked for.
    trade_days: Vec<String>,
}

type G = Arc<Mutex<Gw>>;

fn row(o: &Value) -> Value {
    o.clone()
}

async fn tickle(State(g): State<G>) -> Response {
    let g = g.lock().expect("gw");
    axum::Json(
        json!({"session": "bb665d0f55b6289d70bc7380089fc96f", "ssoExpires": 460311,
        "collission": false, "userId": 123456789, "hmds": {"error": "no bridge"},
        "iserver": {"authStatus": {"authenticated": g.authenticated, "competing": g.competing,
            "connected": true, "message": "", "MAC": "98:F2:B3:23:BF:A0"}}}),
    )
    .into_response()
}

async fn search(State(g): State<G>, axum::Json(b): axum::Json<Value>) -> Response {
    g.lock().expect("gw").searches += 1;
    let (conid, sym) = match b["symbol"].as_str() {
        Some("AAPL") => (json!("265598"), "AAPL"),
        Some("SPY") => (json!(756733), "SPY"),
        _ => return axum::Json(json!([])).into_response(),
    };
    axum::Json(
        json!([{"conid": conid, "companyHeader": "X - NASDAQ", "companyName": "X", "symbol": sym,
        "description": "NASDAQ", "restricted": null, "fop": null, "opt": "20260116", "war": null,
        "sections": [{"secType": "STK", "exchange": "NASDAQ;SMART"}]}]),
    )
    .into_response()
}

fn ack(g: &mut Gw, order: Value) -> Value {
    let id = 1_149_239_000 + g.placed.len() as i64;
    let mut o = order.clone();
    o["orderId"] = json!(id);
    o["status"] = json!("Submitted");
    o["filledQuantity"] = json!(0.0);
    o["remainingQuantity"] = order["quantity"].clone();
    o["order_ref"] = order["cOID"].clone();
    o["ticker"] = json!(if order["conid"] == json!(265598) {
        "AAPL"
    } else {
        "SPY"
    });
    g.placed.push(o);
    json!([{"order_id": id.to_string(), "local_order_id": order["cOID"], "order_status": "Submitted", "encrypt_message": "1"}])
}

async fn place(
    State(g): State<G>,
    Path(acct): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    assert_eq!(acct, ACCOUNT);
    let fault = {
        let mut gw = g.lock().expect("gw");
        let order = b["orders"][0].clone();
        if order["side"] == "SELL"
            && order["orderType"] == "MKT"
            && order["quantity"] == json!(1_000_000.0)
        {
            return axum::Json(json!({"error": "Order rejected: insufficient buying power"}))
                .into_response();
        }
        let fault = if gw.faults.is_empty() {
            ""
        } else {
            gw.faults.remove(0)
        };
        match fault {
            "500" => {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response();
            }
            "429" => return (axum::http::StatusCode::TOO_MANY_REQUESTS, "").into_response(),
            _ => {}
        }
        if !gw.questions.is_empty() {
            let qs = gw.questions.clone();
            gw.pending = Some((order, qs.clone()));
            return axum::Json(json!([{"id": "8647ed1d-862b-4c58-95ff-ae6dd6893871",
                "message": ["This order will most likely trigger and fill immediately.\nAre you sure you want to submit this order?"],
                "isSuppressed": false, "messageIds": [qs[0]]}])).into_response();
        }
        let a = ack(&mut gw, order);
        (fault, a)
    };
    if fault.0 == "stall" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    axum::Json(fault.1).into_response()
}

async fn reply(
    State(g): State<G>,
    Path(_id): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    let mut gw = g.lock().expect("gw");
    gw.replies.push(b.clone());
    let Some((order, mut qs)) = gw.pending.take() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no pending order",
        )
            .into_response();
    };
    if b["confirmed"] != json!(true) {
        return axum::Json(json!([{"order_id": null, "error": "discarded"}])).into_response();
    }
    qs.remove(0);
    if let Some(next) = qs.first().copied() {
        gw.pending = Some((order, qs));
        return axum::Json(json!([{"id": "second-question", "message": ["You are submitting an order without market data."],
            "isSuppressed": false, "messageIds": [next]}])).into_response();
    }
    let a = ack(&mut gw, order);
    axum::Json(a).into_response()
}

async fn live(State(g): State<G>) -> Response {
    let mut gw = g.lock().expect("gw");
    if gw.empty_snapshots > 0 {
        gw.empty_snapshots -= 1;
        return axum::Json(json!({"orders": [], "snapshot": false})).into_response();
    }
    let rows: Vec<Value> = gw.placed.iter().map(row).collect();
    axum::Json(json!({"orders": rows, "snapshot": true})).into_response()
}

/// The placed order whose (integer) `orderId` is `id`.
fn placed_with_id<'g>(gw: &'g mut Gw, id: &str) -> Option<&'g mut Value> {
    gw.placed
        .iter_mut()
        .find(|o| o["orderId"].as_i64().map(|n| n.to_string()).as_deref() == Some(id))
}

async fn cancel(State(g): State<G>, Path((acct, id)): Path<(String, String)>) -> Response {
    let mut gw = g.lock().expect("gw");
    let Some(o) = placed_with_id(&mut gw, &id) else {
        return (axum::http::StatusCode::NOT_FOUND, "").into_response();
    };
    o["status"] = json!("Cancelled");
    axum::Json(json!({"msg": "Request was submitted", "order_id": id.parse::<i64>().unwrap_or(0), "conid": 265598, "account": acct}))
        .into_response()
}

/// Modifies a live order in place: same id, same `order_ref`, the body's quantity and prices.
async fn modify(
    State(g): State<G>,
    Path((acct, id)): Path<(String, String)>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    assert_eq!(acct, ACCOUNT);
    let mut gw = g.lock().expect("gw");
    let Some(o) = placed_with_id(&mut gw, &id) else {
        return (axum::http::StatusCode::NOT_FOUND, "").into_response();
    };
    if o["status"] != "Submitted" && o["status"] != "PreSubmitted" {
        return axum::Json(json!({"error": "Order cannot be modified"})).into_response();
    }
    // One order object, not the placement's `orders` array.
    assert!(b.get("orders").is_none(), "{b}");
    let m = &b;
    let filled = o["filledQuantity"].as_f64().unwrap_or(0.0);
    for k in ["price", "auxPrice", "orderType", "tif"] {
        o[k] = m[k].clone();
    }
    o["quantity"] = m["quantity"].clone();
    o["remainingQuantity"] = json!(m["quantity"].as_f64().unwrap_or(0.0) - filled);
    axum::Json(json!([{"order_id": id, "order_status": "Submitted", "encrypt_message": "1"}]))
        .into_response()
}

async fn positions(State(g): State<G>, Path((_acct, page)): Path<(String, usize)>) -> Response {
    let gw = g.lock().expect("gw");
    axum::Json(Value::Array(
        gw.positions.get(page).cloned().unwrap_or_default(),
    ))
    .into_response()
}

async fn trades(
    State(g): State<G>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let mut gw = g.lock().expect("gw");
    let days = q
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("days=").map(str::to_string))
        .unwrap_or_default();
    gw.trade_days.push(days);
    axum::Json(Value::Array(gw.trades.clone())).into_response()
}

async fn gateway() -> (String, G, tokio::task::JoinHandle<()>) {
    let g: G = Arc::new(Mutex::new(Gw {
        authenticated: true,
        empty_snapshots: 1,
        ..Gw::default()
    }));
    let app = Router::new()
        .route("/v1/api/tickle", post(tickle))
        .route("/v1/api/iserver/secdef/search", post(search))
        .route("/v1/api/iserver/account/{acct}/orders", post(place))
        .route("/v1/api/iserver/reply/{id}", post(reply))
        .route("/v1/api/iserver/account/orders", get(live))
        .route("/v1/api/iserver/account/trades", get(trades))
        .route(
            "/v1/api/iserver/account/{acct}/order/{id}",
            delete(cancel).post(modify),
        )
        .route("/v1/api/portfolio/{acct}/positions/{page}", get(positions))
        .with_state(Arc::clone(&g));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/api", l.local_addr().expect("addr"));
    let t = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, g, t)
}

fn client(url: &str) -> IbkrClient {
    let mut c = IbkrConfig::new(url, ACCOUNT, false).expect("config");
    c.timeout = Duration::from_millis(400);
    IbkrClient::new(c).expect("client")
}

fn request(
    n: u64,
    symbol: &str,
    side: OrderSide,
    quantity: f64,
    order_type: OrderType,
) -> OrderRequest {
    OrderRequest {
        client_id: client_order_id("ibkr-test", n),
        symbol: symbol.into(),
        side,
        quantity,
        order_type,
        tif: TimeInForce::Gtc,
    }
}

#[tokio::test]
async fn an_orders_life_through_questions_fills_and_cancel() {
    let (url, g, _t) = gateway().await;
    let c = client(&url);
    c.tickle().await.expect("session");
    g.lock().unwrap().questions = vec!["o163", "o354"];
    let r = request(
        1,
        "AAPL",
        OrderSide::Buy,
        100.0,
        OrderType::StopLimit {
            stop: 190.0,
            limit: 190.5,
        },
    );
    let o = c.submit(&r).await.expect("placed after two confirmations");
    assert_eq!(
        (o.client_id.as_str(), o.status.clone()),
        (r.client_id.as_str(), VenueStatus::Open)
    );
    {
        let gw = g.lock().unwrap();
        assert_eq!(
            gw.replies,
            [json!({"confirmed": true}), json!({"confirmed": true})]
        );
        let p = &gw.placed[0];
        assert_eq!(
            (
                p["orderType"].clone(),
                p["price"].clone(),
                p["auxPrice"].clone()
            ),
            (json!("STOP_LIMIT"), json!(190.5), json!(190.0))
        );
        assert_eq!(
            (p["conid"].clone(), p["secType"].clone(), p["tif"].clone()),
            (json!(265598), json!("265598:STK"), json!("GTC"))
        );
    }
    // Fills read from the live orders, each execution once.
    let mut t = FillTracker::default();
    t.track(&r.client_id);
    for (step, (filled, avg, status)) in [
        (40.0, "190.40", "Submitted"),
        (40.0, "190.40", "Submitted"),
        (100.0, "190.46", "Filled"),
    ]
    .into_iter()
    .enumerate()
    {
        {
            let mut gw = g.lock().unwrap();
            let p = &mut gw.placed[0];
            p["filledQuantity"] = json!(filled);
            p["remainingQuantity"] = json!(100.0 - filled);
            p["avgPrice"] = json!(avg);
            p["status"] = json!(status);
        }
        let o = c.find(&r.client_id).await.expect("live").expect("listed");
        let ev = t.observe(&o, 0, None);
        match step {
            0 => assert!(
                matches!(&ev[..], [VenueEvent::Fill(f)] if f.quantity == 40.0 && f.price == 190.40),
                "{ev:?}"
            ),
            1 => assert!(
                ev.is_empty(),
                "the same snapshot again adds nothing: {ev:?}"
            ),
            _ => {
                assert!(
                    matches!(&ev[0], VenueEvent::Fill(f) if f.quantity == 60.0 && (f.price - 190.50).abs() < 1e-9),
                    "{ev:?}"
                );
                assert!(matches!(
                    &ev[1],
                    VenueEvent::Ended {
                        status: VenueStatus::Filled,
                        ..
                    }
                ));
            }
        }
    }
    // Looked up once, then kept.
    let r2 = request(
        2,
        "AAPL",
        OrderSide::Sell,
        5.0,
        OrderType::Limit { limit: 250.0 },
    );
    g.lock().unwrap().questions.clear();
    let o2 = c.submit(&r2).await.expect("placed");
    assert_eq!(g.lock().unwrap().searches, 1);
    c.cancel(&o2.id).await.expect("cancelled");
    let o2 = c.find(&r2.client_id).await.expect("live").expect("listed");
    assert_eq!(o2.status, VenueStatus::Cancelled);
}

#[tokio::test]
async fn refusals_questions_outside_the_policy_and_sessions() {
    let (url, g, _t) = gateway().await;
    let c = client(&url);
    let e = c
        .submit(&request(
            1,
            "AAPL",
            OrderSide::Sell,
            1_000_000.0,
            OrderType::Market,
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("insufficient buying power"), "{e}");
    g.lock().unwrap().questions = vec!["o999"];
    let e = c
        .submit(&request(2, "AAPL", OrderSide::Buy, 1.0, OrderType::Market))
        .await
        .expect_err("not confirmed");
    assert!(
        e.to_string().contains("o999") && e.to_string().contains("fill immediately"),
        "{e}"
    );
    assert_eq!(
        g.lock().unwrap().replies,
        [json!({"confirmed": false})],
        "the question is answered no"
    );
    let e = c
        .submit(&request(
            3,
            "ZZZZQX",
            OrderSide::Buy,
            1.0,
            OrderType::Market,
        ))
        .await
        .expect_err("no contract");
    assert!(e.to_string().contains("no contract for ZZZZQX"), "{e}");
    g.lock().unwrap().competing = true;
    assert!(
        matches!(c.tickle().await, Err(VenueError::Unauthorized { message, .. }) if message.contains("another login"))
    );
    g.lock().unwrap().authenticated = false;
    assert!(matches!(
        c.tickle().await,
        Err(VenueError::Unauthorized { .. })
    ));
    assert!(
        matches!(IbkrConfig::new(&url, "U1234567", false), Err(e @ VenueError::NotLive { .. }) if e.to_string().contains("live = true"))
    );
    assert!(IbkrConfig::new(&url, "U1234567", true).is_ok());
}

#[tokio::test]
async fn errors_and_lost_answers_never_place_an_order_twice_and_positions_page() {
    let (url, g, _t) = gateway().await;
    let c = client(&url);
    g.lock().unwrap().faults = vec!["500"];
    let a = request(1, "SPY", OrderSide::Buy, 10.0, OrderType::Market);
    c.submit(&a).await.expect("second placement");
    g.lock().unwrap().faults = vec!["stall"];
    let b = request(2, "SPY", OrderSide::Buy, 10.0, OrderType::Market);
    let o = c.submit(&b).await.expect("found among the live orders");
    assert_eq!(o.client_id, b.client_id);
    let placed = g.lock().unwrap().placed.clone();
    for r in [&a, &b] {
        assert_eq!(
            placed
                .iter()
                .filter(|p| p["cOID"] == r.client_id.as_str())
                .count(),
            1,
            "{}",
            r.client_id
        );
    }
    g.lock().unwrap().faults = vec!["429"];
    let e = c
        .submit(&request(3, "SPY", OrderSide::Buy, 1.0, OrderType::Market))
        .await
        .expect_err("penalty box");
    assert!(
        matches!(e, VenueError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(600))
    );
    g.lock().unwrap().positions = vec![
        vec![
            json!({"acctId": ACCOUNT, "conid": 756733, "contractDesc": "SPY", "position": 5.0, "avgPrice": 434.93, "avgCost": 434.93}),
        ],
        vec![
            json!({"acctId": ACCOUNT, "conid": 265598, "contractDesc": "AAPL", "position": -2.5, "avgPrice": "176.32"}),
        ],
    ];
    let p = c.positions().await.expect("positions");
    let got: Vec<_> = p
        .iter()
        .map(|p| (p.symbol.as_str(), p.quantity, p.avg_price))
        .collect();
    assert_eq!(got, [("SPY", 5.0, 434.93), ("AAPL", -2.5, 176.32)]);
}

/// A session with the gateway at `url`, and a migrated database of the test's own.
async fn with_database(url: &str) -> (IbkrClient, crate::common::TestDb, tokio_postgres::Client) {
    let venue = client(url);
    venue.tickle().await.expect("session");
    let (db, mut c) = crate::common::TestDb::new().await;
    findashpro::sinks::postgres::migrate(&mut c)
        .await
        .expect("migrate");
    (venue, db, c)
}

/// The fills booked for `run`: client order id, quantity, price, epoch seconds, in order.
async fn booked_fills(c: &tokio_postgres::Client, run: &str) -> Vec<(String, f64, f64, i64)> {
    c.query(
        "SELECT client_order_id, quantity, price, extract(epoch FROM time)::int8 \
         FROM broker_events WHERE run_id = $1 AND kind = 'fill' \
         ORDER BY client_order_id, cumulative",
        &[&run],
    )
    .await
    .expect("fills")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// An execution row as `/iserver/account/trades` lists it.
fn execution(id: &str, order: &Value, size: f64, price: &str, ms: i64) -> Value {
    json!({"execution_id": id, "symbol": "AAPL", "supports_tax_opt": "1", "side": "B",
        "order_description": "Bot 40 @ 190.40 on ISLAND", "trade_time": "20231211-18:00:49",
        "trade_time_r": ms, "size": size, "price": price, "order_ref": order["order_ref"],
        "submitter": "user1234", "exchange": "ISLAND", "commission": "0.35", "net_amount": 7616.0,
        "account": ACCOUNT, "accountCode": ACCOUNT, "company_name": "APPLE INC",
        "contract_description_1": "AAPL", "sec_type": "STK", "listing_exchange": "NASDAQ.NMS",
        "conid": "265598", "conidex": "265598", "clearing_id": "IB", "clearing_name": "IB",
        "liquidation_trade": "0", "is_event_trading": "0", "order_id": order["orderId"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_booked_one_by_one_when_the_list_holds_them_all() {
    use findashpro::config::Failover;
    use findashpro::sinks::broker::outbox::{self, Outbox};
    let (url, g, _t) = gateway().await;
    let (venue, _db, mut c) = with_database(&url).await;
    let run = "ibkr-exec";
    let tickers = findashpro::bar::Tickers::new(["AAPL".to_string()]);
    let entry = |id: u64| findashpro::operators::portfolio::Submitted {
        order: findashpro::order::Order {
            id,
            ts: 1_702_310_400,
            ticker: 0,
            side: OrderSide::Buy,
            kind: findashpro::order::OrderKind::Entry {
                direction: 1,
                size: findashpro::operators::risk::EntrySize::Fraction(0.02),
            },
            order_type: OrderType::Limit { limit: 190.6 },
            tif: TimeInForce::Gtc,
            parent: None,
        },
        quantity: 100.0,
        replaces: None,
    };
    let tx = c.transaction().await.expect("tx");
    outbox::record(&tx, run, &tickers, &[entry(1), entry(2)])
        .await
        .expect("record");
    tx.commit().await.expect("commit");
    let mut out = Outbox::open(&c, &venue, run, Duration::from_secs(30), Failover::Halt)
        .await
        .expect("open");
    assert_eq!(out.send_pending(&c).await.expect("send").sent, 2);
    // Both filled 100 at an average of 190.46: order 1 in two executions the list holds, order
    // 2 in two of which the list (7 days at most) holds only the later one.
    let t1 = 1_702_317_649_000_i64;
    {
        let mut gw = g.lock().unwrap();
        for p in gw.placed.iter_mut() {
            p["filledQuantity"] = json!(100.0);
            p["remainingQuantity"] = json!(0.0);
            p["avgPrice"] = json!("190.46");
            p["status"] = json!("Filled");
        }
        let (a, b) = (gw.placed[0].clone(), gw.placed[1].clone());
        gw.trades = vec![
            execution("0000e0d5.6576fd38.01.01", &a, 60.0, "190.50", t1 + 5_000),
            execution("0000e0d5.6576fd37.01.01", &a, 40.0, "190.40", t1),
            execution("0000e0d5.6576fd39.01.01", &b, 60.0, "190.50", t1 + 9_000),
            // Someone else's execution (placed by hand: no order_ref of ours).
            json!({"execution_id": "0000e0d5.6576fd3a.01.01", "symbol": "SPY", "side": "S",
                "size": 3, "price": "471.10", "trade_time_r": t1, "order_ref": null,
                "order_id": 42}),
        ];
    }
    g.lock().unwrap().empty_snapshots = 0;
    outbox::follow(&c, &venue, run).await.expect("follow");
    assert_eq!(g.lock().unwrap().trade_days, ["7"]);
    let fills = booked_fills(&c, run).await;
    let (c1, c2) = (client_order_id(run, 1), client_order_id(run, 2));
    let mut want = vec![
        (c1.clone(), 40.0, 190.40, t1 / 1000),
        (c1.clone(), 60.0, 190.50, t1 / 1000 + 5),
        // From the average: one fill of 100, at the order's last execution time.
        (c2.clone(), 100.0, 190.46, 0),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(fills.len(), 3, "{fills:?}");
    for (got, want) in fills.iter().zip(&want) {
        assert_eq!((&got.0, got.1), (&want.0, want.1));
        assert!((got.2 - want.2).abs() < 1e-9, "{got:?} vs {want:?}");
        if want.3 > 0 {
            assert_eq!(got.3, want.3);
        }
    }
    // Asked again, nothing more is booked.
    outbox::follow(&c, &venue, run).await.expect("follow");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM broker_events WHERE run_id = $1 AND kind = 'fill'",
            &[&run],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 3);
}

/// A re-priced bracket leg at IBKR is a modification of the live order (same id, same `cOID`):
/// the replacement's row takes the fills the order had, follows it by its id, and books only
/// what fills after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_modifies_the_live_order_and_books_only_later_fills() {
    use findashpro::config::Failover;
    use findashpro::order::{Order, OrderKind};
    use findashpro::sinks::broker::outbox::{self, Outbox};
    let (url, g, _t) = gateway().await;
    g.lock().unwrap().empty_snapshots = 0;
    let (venue, _db, mut c) = with_database(&url).await;
    let run = "ibkr-modify";
    let tickers = findashpro::bar::Tickers::new(["AAPL".to_string()]);
    let leg = |id: u64, stop: f64, quantity: f64, replaces: Option<u64>| {
        findashpro::operators::portfolio::Submitted {
            order: Order {
                id,
                ts: 1_702_310_400,
                ticker: 0,
                side: OrderSide::Sell,
                kind: OrderKind::StopLoss,
                order_type: OrderType::Stop { stop },
                tif: TimeInForce::Gtc,
                parent: None,
            },
            quantity,
            replaces,
        }
    };
    let record = async |c: &mut tokio_postgres::Client,
                        rows: &[findashpro::operators::portfolio::Submitted]| {
        let tx = c.transaction().await.expect("tx");
        outbox::record(&tx, run, &tickers, rows)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
    };
    record(&mut c, &[leg(1, 185.0, 2.0, None)]).await;
    let mut out = Outbox::open(&c, &venue, run, Duration::from_secs(30), Failover::Halt)
        .await
        .expect("open");
    assert_eq!(out.send_pending(&c).await.expect("send").sent, 1);
    {
        let mut gw = g.lock().unwrap();
        let p = &mut gw.placed[0];
        p["filledQuantity"] = json!(1.0);
        p["remainingQuantity"] = json!(1.0);
        p["avgPrice"] = json!("184.90");
    }
    outbox::follow(&c, &venue, run).await.expect("follow");
    record(&mut c, &[leg(2, 189.0, 5.0, Some(1))]).await;
    assert_eq!(out.send_pending(&c).await.expect("send").sent, 1);
    {
        let gw = g.lock().unwrap();
        assert_eq!(gw.placed.len(), 1, "modified, not placed again");
        let p = &gw.placed[0];
        assert_eq!(
            (
                p["price"].clone(),
                p["orderType"].clone(),
                p["quantity"].clone()
            ),
            (json!(189.0), json!("STP"), json!(5.0))
        );
    }
    // Reconciliation sees the modified order as the replacement's, not as the ended leg's.
    let found = findashpro::sinks::broker::reconcile::run(&c, &venue, run)
        .await
        .expect("reconcile");
    assert!(
        found.iter().all(|d| matches!(
            d,
            findashpro::sinks::broker::reconcile::Difference::Position { .. }
        )),
        "{found:?}"
    );
    // Four more fill at 188.90: the replacement books them, nothing twice.
    {
        let mut gw = g.lock().unwrap();
        let p = &mut gw.placed[0];
        p["filledQuantity"] = json!(5.0);
        p["remainingQuantity"] = json!(0.0);
        p["avgPrice"] = json!("188.10");
        p["status"] = json!("Filled");
    }
    outbox::follow(&c, &venue, run).await.expect("follow");
    let fills = booked_fills(&c, run).await;
    assert_eq!(fills.len(), 2, "{fills:?}");
    assert_eq!(
        (fills[0].0.as_str(), fills[0].1),
        (client_order_id(run, 1).as_str(), 1.0)
    );
    assert_eq!(
        (fills[1].0.as_str(), fills[1].1),
        (client_order_id(run, 2).as_str(), 4.0)
    );
    assert!(
        (fills[1].2 - (5.0 * 188.10 - 184.90) / 4.0).abs() < 1e-9,
        "{fills:?}"
    );
    let states: Vec<String> = c
        .query(
            "SELECT state FROM broker_orders WHERE run_id = $1 ORDER BY order_id",
            &[&run],
        )
        .await
        .expect("states")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["cancelled", "filled"]);
}
