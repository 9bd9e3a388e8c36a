//! Interactive Brokers' Client Portal Web API JSON (BROKERS.md §2a): ids arrive as strings in
//! one place and integers in another, decimals as numbers or strings, and a placement is answered
//! with an acknowledgement, a question to confirm, or a refusal.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::order::{OrderSide, OrderType, TimeInForce};
use crate::sinks::broker::venue::{
    OrderRequest, VenueFill, VenueOrder, VenuePosition, VenueStatus,
};

/// A number or a string holding one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An id sent as a string or an integer, as a string.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn any_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    id_text(&Value::deserialize(d)?).ok_or_else(|| serde::de::Error::custom("no id"))
}

/// The authentication status inside `/tickle` and `/iserver/auth/status`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// The brokerage session is authenticated.
    #[serde(default)]
    pub authenticated: bool,
    /// Another session took it.
    #[serde(default)]
    pub competing: bool,
    /// Connected to the backend.
    #[serde(default)]
    pub connected: bool,
}

/// `POST /tickle`.
#[derive(Debug, Clone, Deserialize)]
pub struct Tickle {
    /// `iserver.authStatus`.
    #[serde(default)]
    pub iserver: Option<Iserver>,
}

/// The `iserver` member of a tickle.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Iserver {
    /// The status.
    #[serde(default)]
    pub auth_status: AuthStatus,
}

/// One result of `/iserver/secdef/search`.
#[derive(Debug, Clone, Deserialize)]
pub struct SecDef {
    /// The contract id (a string in the schema, a number in many answers).
    #[serde(deserialize_with = "any_id")]
    pub conid: String,
    /// Symbol.
    #[serde(default)]
    pub symbol: String,
    /// Instruments under it.
    #[serde(default)]
    pub sections: Vec<Section>,
}

/// A section of a search result.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Section {
    /// `STK`, `OPT`, …
    #[serde(default)]
    pub sec_type: String,
}

/// IBKR's `orderType`: `price` is the limit, or the stop for a stop order; a stop-limit's stop is
/// `auxPrice`.
pub fn order_body(r: &OrderRequest, account: &str, conid: &str) -> Value {
    let (kind, price, aux) = match r.order_type {
        OrderType::Market => ("MKT", None, None),
        OrderType::Limit { limit } => ("LMT", Some(limit), None),
        OrderType::Stop { stop } => ("STP", Some(stop), None),
        OrderType::StopLimit { stop, limit } => ("STOP_LIMIT", Some(limit), Some(stop)),
    };
    let mut o = serde_json::json!({
        "acctId": account,
        "conid": conid.parse::<i64>().map_or_else(|_| Value::String(conid.into()), Value::from),
        "secType": format!("{conid}:STK"),
        "cOID": r.client_id,
        "orderType": kind,
        "side": match r.side { OrderSide::Buy => "BUY", OrderSide::Sell => "SELL" },
        "tif": match r.tif { TimeInForce::Day => "DAY", TimeInForce::Gtc => "GTC", TimeInForce::Ioc => "IOC" },
        "quantity": r.quantity,
        "outsideRTH": false,
    });
    if let Some(p) = price {
        o["price"] = Value::from(p);
    }
    if let Some(a) = aux {
        o["auxPrice"] = Value::from(a);
    }
    serde_json::json!({ "orders": [o] })
}

/// What a placement (or a reply) answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Placed: IBKR's order id and status.
    Placed {
        /// IBKR's id (a string here, an integer in the live orders).
        order_id: String,
        /// `Submitted`, `PreSubmitted`, …
        status: String,
    },
    /// A question to answer at `/iserver/reply/{id}` before the order goes.
    Question {
        /// The reply id.
        id: String,
        /// What it says.
        message: String,
        /// Its message ids (`o163`, `o354`, …).
        message_ids: Vec<String>,
    },
    /// Refused, with IBKR's words.
    Refused(String),
}

/// Reads a placement answer: an array whose first element is an acknowledgement or a question;
/// anything else is a refusal (BROKERS.md: treat an object without `order_id`/`id` as one).
pub fn placement(v: &Value) -> Placement {
    let first = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    if let Some(order_id) = first.get("order_id").and_then(id_text) {
        return Placement::Placed {
            order_id,
            status: first
                .get("order_status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
    }
    if let Some(id) = first.get("id").and_then(id_text) {
        let text = |k: &str| -> Vec<String> {
            match first.get(k) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        return Placement::Question {
            id,
            message: text("message").join(" "),
            message_ids: text("messageIds"),
        };
    }
    let why = first
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| first.to_string().chars().take(300).collect());
    Placement::Refused(why)
}

/// IBKR's order status as ours.
pub fn status_of(s: &str) -> VenueStatus {
    match s {
        "Filled" => VenueStatus::Filled,
        "Cancelled" | "ApiCancelled" => VenueStatus::Cancelled,
        "Inactive" => VenueStatus::Rejected,
        "PendingSubmit" | "PreSubmitted" | "Submitted" | "PendingCancel" | "WarnState" => {
            VenueStatus::Open
        }
        other => VenueStatus::Other(other.to_string()),
    }
}

/// A row of `/iserver/account/orders`, with the client id it echoes in `order_ref` (or `cOID`).
pub fn live_order(row: &Value) -> Option<VenueOrder> {
    let filled = row.get("filledQuantity").and_then(number).unwrap_or(0.0);
    let remaining = row.get("remainingQuantity").and_then(number);
    Some(VenueOrder {
        id: row.get("orderId").and_then(id_text)?,
        client_id: ["order_ref", "cOID", "local_order_id"]
            .iter()
            .find_map(|k| row.get(*k).and_then(id_text))
            .unwrap_or_default(),
        symbol: row
            .get("ticker")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        side: if row.get("side").and_then(Value::as_str) == Some("SELL") {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        },
        quantity: remaining.map(|r| r + filled),
        filled,
        avg_price: row.get("avgPrice").and_then(number),
        status: status_of(
            row.get("status")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        ts: row
            .get("lastExecutionTime_r")
            .and_then(Value::as_i64)
            .map(|ms| ms.div_euclid(1000)),
    })
}

/// One execution of `GET /iserver/account/trades` (an array of objects: `execution_id`,
/// `order_ref` — the `cOID` the order was placed with —, `order_id`, `symbol`, `side` `B`/`S`,
/// `size`, `price` as a string, `trade_time_r` in epoch milliseconds; field names as the
/// Client Portal's OpenAPI schema has them, e.g. docs.rs `bezant-api`'s
/// `TradesResponseTradesResponse`). Its `cumulative` is left 0: only the whole list of an
/// order's executions says it ([`cumulate`]). `None` for a row without an id, a size or a price.
pub fn execution(row: &Value) -> Option<(String, VenueFill)> {
    let exec_id = row.get("execution_id").and_then(id_text)?;
    let side = match row.get("side").and_then(Value::as_str) {
        Some("S" | "SELL" | "SLD") => OrderSide::Sell,
        Some("B" | "BUY" | "BOT") => OrderSide::Buy,
        _ => return None,
    };
    let quantity = row.get("size").and_then(number).filter(|q| *q > 0.0)?;
    let price = row
        .get("price")
        .and_then(number)
        .filter(|p| p.is_finite())?;
    Some((
        exec_id,
        VenueFill {
            order_id: row.get("order_id").and_then(id_text).unwrap_or_default(),
            client_id: row.get("order_ref").and_then(id_text).unwrap_or_default(),
            symbol: row
                .get("symbol")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            side,
            quantity,
            price,
            ts: row
                .get("trade_time_r")
                .and_then(Value::as_i64)
                .map(|ms| ms.div_euclid(1000))?,
            cumulative: 0.0,
        },
    ))
}

/// Each order's executions in time order (then by execution id), each with the order's filled
/// shares after it, over what the list holds; an execution listed twice counts once.
pub fn cumulate(mut rows: Vec<(String, VenueFill)>) -> Vec<VenueFill> {
    rows.sort_by(|a, b| (&a.1.order_id, a.1.ts, &a.0).cmp(&(&b.1.order_id, b.1.ts, &b.0)));
    rows.dedup_by(|a, b| a.0 == b.0);
    let mut out: Vec<VenueFill> = Vec::with_capacity(rows.len());
    for (_, mut f) in rows {
        let before = out
            .last()
            .filter(|p| p.order_id == f.order_id)
            .map_or(0.0, |p| p.cumulative);
        f.cumulative = before + f.quantity;
        out.push(f);
    }
    out
}

/// A row of `/portfolio/{account}/positions/{page}`.
pub fn position(row: &Value) -> Option<VenuePosition> {
    Some(VenuePosition {
        symbol: row
            .get("contractDesc")
            .or_else(|| row.get("ticker"))
            .and_then(Value::as_str)?
            .to_string(),
        quantity: row.get("position").and_then(number)?,
        avg_price: row
            .get("avgPrice")
            .or_else(|| row.get("avgCost"))
            .and_then(number)
            .unwrap_or(f64::NAN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placements_are_acknowledgements_questions_or_refusals() {
        assert_eq!(
            placement(
                &json!([{"order_id":"1234567890","order_status":"Submitted","encrypt_message":"1"}])
            ),
            Placement::Placed {
                order_id: "1234567890".into(),
                status: "Submitted".into()
            }
        );
        assert!(matches!(
            placement(&json!([{"id":"8647ed1d","message":["This order will most likely trigger and fill immediately.\nAre you sure?"],"isSuppressed":false,"messageIds":["o0"]}])),
            Placement::Question { id, message_ids, .. } if id == "8647ed1d" && message_ids == ["o0"]
        ));
        assert_eq!(
            placement(&json!({"error":"no trading permissions"})),
            Placement::Refused("no trading permissions".into())
        );
    }

    #[test]
    fn live_orders_take_integer_ids_and_string_prices() {
        let o = live_order(
            &json!({"acct":"DU7631004","conid":265598,"orderId":1149239278,"ticker":"AAPL",
            "remainingQuantity":0.0,"filledQuantity":100.0,"status":"Filled","avgPrice":"176.32",
            "lastExecutionTime_r":1694531884000_i64,"side":"BUY","order_ref":"fdp-x-1"}),
        )
        .unwrap();
        assert_eq!(
            (o.id.as_str(), o.client_id.as_str(), o.filled, o.avg_price),
            ("1149239278", "fdp-x-1", 100.0, Some(176.32))
        );
        assert_eq!((o.status, o.ts), (VenueStatus::Filled, Some(1_694_531_884)));
    }

    #[test]
    fn executions_cumulate_per_order_in_time_order_once_each() {
        let e = |id: &str, order: i64, size: f64, price: &str, ms: i64| {
            execution(
                &json!({"execution_id": id, "order_id": order, "order_ref": format!("fdp-{order}"),
                "symbol": "BRK B", "side": "B", "size": size, "price": price, "trade_time_r": ms}),
            )
            .unwrap()
        };
        let rows = vec![
            e(
                "0000e0d5.6576fd38.01.01",
                7,
                60.0,
                "412.10",
                1_700_000_002_000,
            ),
            e(
                "0000e0d5.6576fd37.01.01",
                7,
                40.0,
                "412.00",
                1_700_000_001_000,
            ),
            e(
                "0000e0d5.6576fd37.01.01",
                7,
                40.0,
                "412.00",
                1_700_000_001_000,
            ),
            e(
                "0000e0d5.6576fd40.01.01",
                9,
                0.5,
                "43000.5",
                1_700_000_000_000,
            ),
        ];
        let got: Vec<_> = cumulate(rows)
            .iter()
            .map(|f| (f.order_id.clone(), f.quantity, f.price, f.cumulative, f.ts))
            .collect();
        assert_eq!(
            got,
            [
                ("7".into(), 40.0, 412.0, 40.0, 1_700_000_001),
                ("7".into(), 60.0, 412.1, 100.0, 1_700_000_002),
                ("9".into(), 0.5, 43_000.5, 0.5, 1_700_000_000),
            ]
        );
        assert!(execution(&json!({"execution_id": "x", "side": "B", "size": 1})).is_none());
    }
}
