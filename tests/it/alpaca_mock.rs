//! A local Alpaca on loopback speaking BROKERS.md §1: REST orders (unique client order ids, 204
//! on cancel, 422 when not cancelable, a new order on replace), positions, account, clock, keys
//! checked on every call; the trade-updates websocket (both auth forms, `listening`, updates as
//! binary or text frames); and faults on demand: a status, an order accepted whose answer never
//! comes in time, a refusal with Alpaca's body, a rate limit, garbage frames, a dropped stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

pub const KEY: &str = "PKTEST1234";
pub const SECRET: &str = "s3cr3t-never-logged";

/// What a POST /v2/orders does instead of its usual answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status and body; nothing is created.
    Status(u16, &'static str),
    /// Create the order, then answer only after this long (past the client's timeout).
    AcceptThenStall(Duration),
    /// 429 with a reset one second ahead.
    RateLimit,
}

#[derive(Debug, Clone)]
enum Ws {
    Send(String, bool),
    Garbage,
    Drop,
}

#[derive(Default)]
pub struct State_ {
    orders: Vec<Value>,
    faults: VecDeque<Fault>,
    /// Bodies of every POST /v2/orders received.
    pub posts: Vec<Value>,
    pub positions: Vec<Value>,
    /// Connections that reached `listening`.
    pub sessions: u64,
}

type Shared = Arc<Mutex<State_>>;

pub struct MockAlpaca {
    pub url: String,
    pub stream_url: String,
    state: Shared,
    ws: broadcast::Sender<Ws>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MockAlpaca {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn err(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("APCA-API-KEY-ID").and_then(|v| v.to_str().ok()) == Some(KEY)
        && h.get("APCA-API-SECRET-KEY").and_then(|v| v.to_str().ok()) == Some(SECRET)
}

macro_rules! guard {
    ($h:expr) => {
        if !authorized(&$h) {
            return err(401, 40110000, "request is not authorized");
        }
    };
}

async fn post_order(
    State(s): State<Shared>,
    h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    guard!(h);
    let (fault, created) = {
        let Ok(mut st) = s.lock() else {
            return err(500, 0, "poisoned");
        };
        st.posts.push(body.clone());
        let fault = st.faults.pop_front();
        if let Some(Fault::Status(code, text)) = &fault {
            return (
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                *text,
            )
                .into_response();
        }
        if let Some(Fault::RateLimit) = &fault {
            let reset = chrono::Utc::now().timestamp() + 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("X-Ratelimit-Reset", reset.to_string())],
                axum::Json(json!({"code": 42910000, "message": "rate limit exceeded"})),
            )
                .into_response();
        }
        let cid = body["client_order_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if st
            .orders
            .iter()
            .any(|o| o["client_order_id"] == cid.as_str())
        {
            return err(422, 40010001, "client_order_id must be unique");
        }
        let id = format!("61e69015-8549-4bfd-b9c3-{:012}", st.orders.len() + 1);
        let o = json!({
            "id": id, "client_order_id": cid, "created_at": now(), "updated_at": now(),
            "submitted_at": now(), "filled_at": null, "expired_at": null, "canceled_at": null,
            "failed_at": null, "replaced_at": null, "replaced_by": null, "replaces": null,
            "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "symbol": body["symbol"],
            "asset_class": "us_equity", "notional": null, "qty": body["qty"], "filled_qty": "0",
            "filled_avg_price": null, "order_class": "", "order_type": body["type"],
            "type": body["type"], "side": body["side"], "time_in_force": body["time_in_force"],
            "limit_price": body.get("limit_price").cloned().unwrap_or(Value::Null),
            "stop_price": body.get("stop_price").cloned().unwrap_or(Value::Null),
            "status": "accepted", "extended_hours": false, "legs": null,
            "trail_percent": null, "trail_price": null, "hwm": null
        });
        st.orders.push(o.clone());
        (fault, o)
    };
    if let Some(Fault::AcceptThenStall(d)) = fault {
        tokio::time::sleep(d).await;
    }
    axum::Json(created).into_response()
}

async fn by_client(State(s): State<Shared>, h: HeaderMap, RawQuery(q): RawQuery) -> Response {
    guard!(h);
    let q = q.unwrap_or_default();
    let cid = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("client_order_id="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let st = s.lock().expect("state");
    match st
        .orders
        .iter()
        .find(|o| o["client_order_id"] == cid.as_str())
    {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => err(404, 40410000, "order not found"),
    }
}

async fn list(State(s): State<Shared>, h: HeaderMap) -> Response {
    guard!(h);
    let st = s.lock().expect("state");
    let open: Vec<Value> = st
        .orders
        .iter()
        .filter(|o| {
            matches!(
                o["status"].as_str(),
                Some("accepted" | "new" | "partially_filled")
            )
        })
        .cloned()
        .collect();
    axum::Json(open).into_response()
}

async fn cancel(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    guard!(h);
    let mut st = s.lock().expect("state");
    let Some(o) = st.orders.iter_mut().find(|o| o["id"] == id.as_str()) else {
        return err(404, 40410000, "order not found");
    };
    if matches!(
        o["status"].as_str(),
        Some("filled" | "canceled" | "expired")
    ) {
        return err(422, 42210000, "order is not cancelable");
    }
    // A 204 accepts the request; the `canceled` update follows (announce_cancel).
    o["status"] = json!("canceled");
    o["canceled_at"] = json!(now());
    StatusCode::NO_CONTENT.into_response()
}

/// PATCH replaces a working order: the old one ends `replaced`, a new one (new id, same client id
/// rules as Alpaca: the new order gets its own) takes the new prices.
async fn replace(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    guard!(h);
    let mut st = s.lock().expect("state");
    let n = st.orders.len() + 1;
    let Some(old) = st.orders.iter_mut().find(|o| o["id"] == id.as_str()) else {
        return err(404, 40410000, "order not found");
    };
    if old["status"] != "accepted" && old["status"] != "new" {
        return err(422, 42210000, "order is not replaceable");
    }
    let new_id = format!("61e69015-8549-4bfd-b9c3-{n:012}");
    old["status"] = json!("replaced");
    old["replaced_by"] = json!(new_id);
    let mut o = old.clone();
    o["id"] = json!(new_id);
    o["replaces"] = json!(id);
    o["replaced_by"] = Value::Null;
    o["status"] = json!("accepted");
    o["client_order_id"] = json!(format!(
        "{}-r",
        o["client_order_id"].as_str().unwrap_or_default()
    ));
    for k in [
        "limit_price",
        "stop_price",
        "time_in_force",
        "qty",
        "client_order_id",
    ] {
        if let Some(v) = body.get(k) {
            o[k] = v.clone();
        }
    }
    st.orders.push(o.clone());
    axum::Json(o).into_response()
}

async fn positions(State(s): State<Shared>, h: HeaderMap) -> Response {
    guard!(h);
    axum::Json(s.lock().expect("state").positions.clone()).into_response()
}

async fn account(h: HeaderMap) -> Response {
    guard!(h);
    axum::Json(json!({
        "account_blocked": false, "account_number": "010203ABCD", "buying_power": "262113.632",
        "cash": "-23140.2", "currency": "USD", "daytrade_count": 0, "equity": "103820.56",
        "id": "e6fe16f3-64a4-4921-8928-cadf02f92f98", "pattern_day_trader": false,
        "portfolio_value": "103820.56", "status": "ACTIVE", "trading_blocked": false
    }))
    .into_response()
}

async fn clock(h: HeaderMap) -> Response {
    guard!(h);
    axum::Json(
        json!({"timestamp": "2022-04-28T14:07:04.451420928-04:00", "is_open": true,
        "next_open": "2022-04-29T09:30:00-04:00", "next_close": "2022-04-28T16:00:00-04:00"}),
    )
    .into_response()
}

async fn ws_session(stream: tokio::net::TcpStream, state: Shared, mut rx: broadcast::Receiver<Ws>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    // Authenticate (either documented form), then listen.
    let mut authed = false;
    while let Some(Ok(m)) = ws.next().await {
        let Ok(text) = m.to_text() else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match v["action"].as_str() {
            Some("authenticate") | Some("auth") => {
                let (k, s) = if v["action"] == "auth" {
                    (v["key"].clone(), v["secret"].clone())
                } else {
                    (v["data"]["key_id"].clone(), v["data"]["secret_key"].clone())
                };
                authed = k == KEY && s == SECRET;
                let status = if authed { "authorized" } else { "unauthorized" };
                let reply = json!({"stream": "authorization", "data": {"status": status, "action": "authenticate"}});
                if ws
                    .send(Message::Text(reply.to_string().into()))
                    .await
                    .is_err()
                    || !authed
                {
                    return;
                }
            }
            Some("listen") if authed => {
                let reply =
                    json!({"stream": "listening", "data": {"streams": v["data"]["streams"]}});
                if ws
                    .send(Message::Binary(reply.to_string().into_bytes().into()))
                    .await
                    .is_err()
                {
                    return;
                }
                break;
            }
            _ => {}
        }
    }
    if let Ok(mut st) = state.lock() {
        st.sessions += 1;
    }
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Ok(Ws::Send(text, binary)) => {
                    let m = if binary { Message::Binary(text.into_bytes().into()) } else { Message::Text(text.into()) };
                    if ws.send(m).await.is_err() { return; }
                }
                Ok(Ws::Garbage) => {
                    if ws.send(Message::Text("{\"stream\":\"trade_updates\",\"data\":{oops".into())).await.is_err() { return; }
                }
                Ok(Ws::Drop) | Err(_) => return,
            },
            m = ws.next() => if m.is_none() { return },
        }
    }
}

impl MockAlpaca {
    pub async fn start() -> MockAlpaca {
        let state: Shared = Arc::new(Mutex::new(State_::default()));
        let app = Router::new()
            .route("/v2/orders", get(list).post(post_order))
            .route("/v2/orders:by_client_order_id", get(by_client))
            .route(
                "/v2/orders/{id}",
                axum::routing::delete(cancel).patch(replace),
            )
            .route("/v2/positions", get(positions))
            .route("/v2/account", get(account))
            .route("/v2/clock", get(clock))
            .with_state(Arc::clone(&state));
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", rest.local_addr().expect("addr"));
        let http = tokio::spawn(async move {
            let _ = axum::serve(rest, app).await;
        });
        let wsl = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stream_url = format!("ws://{}/stream", wsl.local_addr().expect("addr"));
        let (ws, _) = broadcast::channel(256);
        let (tx, st) = (ws.clone(), Arc::clone(&state));
        let wss = tokio::spawn(async move {
            while let Ok((s, _)) = wsl.accept().await {
                tokio::spawn(ws_session(s, Arc::clone(&st), tx.subscribe()));
            }
        });
        MockAlpaca {
            url,
            stream_url,
            state,
            ws,
            tasks: vec![http, wss],
        }
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().expect("state").faults.push_back(f);
    }

    pub fn posts(&self) -> Vec<Value> {
        self.state.lock().expect("state").posts.clone()
    }

    pub fn orders(&self) -> Vec<Value> {
        self.state.lock().expect("state").orders.clone()
    }

    pub fn sessions(&self) -> u64 {
        self.state.lock().expect("state").sessions
    }

    pub fn set_positions(&self, p: Vec<Value>) {
        self.state.lock().expect("state").positions = p;
    }

    /// Executes `qty` more of the order under `cid` at `price`; the update goes out on the
    /// stream (as a binary frame when `binary`) only when `stream`.
    pub fn fill(&self, cid: &str, qty: f64, price: f64, stream: bool, binary: bool) {
        let update = {
            let mut st = self.state.lock().expect("state");
            let o = st
                .orders
                .iter_mut()
                .find(|o| o["client_order_id"] == cid)
                .expect("order");
            let num = |v: &Value| {
                v.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let (done, avg, total) = (
                num(&o["filled_qty"]),
                num(&o["filled_avg_price"]),
                num(&o["qty"]),
            );
            let filled = done + qty;
            let new_avg = (done * avg + qty * price) / filled;
            let event = if filled >= total {
                "fill"
            } else {
                "partial_fill"
            };
            o["filled_qty"] = json!(filled.to_string());
            o["filled_avg_price"] = json!(new_avg.to_string());
            o["status"] = json!(if filled >= total {
                "filled"
            } else {
                "partially_filled"
            });
            let ts = "2026-01-05T10:30:00.123456789-05:00";
            o["filled_at"] = json!(ts);
            json!({"stream": "trade_updates", "data": {
                "event": event, "execution_id": "2f63ea93-423d-4169-b3f6-3fdafc10c418",
                "order": o.clone(), "position_qty": filled.to_string(), "price": price.to_string(),
                "qty": qty.to_string(), "timestamp": ts}})
        };
        if stream {
            let _ = self.ws.send(Ws::Send(update.to_string(), binary));
        }
    }

    /// Sends the `canceled` update of the order under `cid`.
    pub fn announce_cancel(&self, cid: &str) {
        let o = self
            .orders()
            .into_iter()
            .find(|o| o["client_order_id"] == cid)
            .expect("order");
        let u = json!({"stream": "trade_updates", "data": {"event": "canceled", "timestamp": now(), "order": o}});
        let _ = self.ws.send(Ws::Send(u.to_string(), false));
    }

    pub fn garbage(&self) {
        let _ = self.ws.send(Ws::Garbage);
    }

    /// Closes every stream connection without a close frame.
    pub fn drop_streams(&self) {
        let _ = self.ws.send(Ws::Drop);
    }

    /// Waits until `n` stream sessions have reached listening.
    pub async fn wait_sessions(&self, n: u64) {
        for _ in 0..200 {
            if self.sessions() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} stream sessions never came (have {})", self.sessions());
    }
}
