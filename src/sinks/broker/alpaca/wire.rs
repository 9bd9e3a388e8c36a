//! Alpaca's v2 JSON, as BROKERS.md §1 records it: decimals arrive as strings or as numbers (both
//! are accepted everywhere), times are RFC 3339 with any offset, unknown fields are ignored and an
//! unknown order status or event is kept as sent rather than refused.

use serde::{Deserialize, Deserializer, Serialize};

use crate::order::{OrderSide, OrderType, TimeInForce};
use crate::sinks::broker::venue::{
    OrderRequest, VenueAccount, VenueOrder, VenuePosition, VenueStatus,
};
use crate::time::{EventTime, parse_time};

/// A decimal sent as `"1.5"` or `1.5`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Text(String),
    Number(f64),
}

fn num_of(n: Num) -> Result<f64, String> {
    match n {
        Num::Number(x) => Ok(x),
        Num::Text(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("not a number: {s:?}")),
    }
}

fn num<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    num_of(Num::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn opt_num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<Num>::deserialize(d)?
        .map(num_of)
        .transpose()
        .map_err(serde::de::Error::custom)
}

fn side_of(s: &str) -> OrderSide {
    // Responses may carry `sell_short` and other sides; anything that sells is a sell.
    if s.starts_with("sell") {
        OrderSide::Sell
    } else {
        OrderSide::Buy
    }
}

/// An order (order-v2.yaml).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    /// Alpaca's id.
    pub id: String,
    /// Ours.
    #[serde(default)]
    pub client_order_id: String,
    /// Symbol.
    pub symbol: String,
    /// `buy`, `sell`, …
    pub side: String,
    /// Shares ordered (null for a notional order).
    #[serde(default, deserialize_with = "opt_num")]
    pub qty: Option<f64>,
    /// Shares filled.
    #[serde(default, deserialize_with = "opt_num")]
    pub filled_qty: Option<f64>,
    /// Average fill price.
    #[serde(default, deserialize_with = "opt_num")]
    pub filled_avg_price: Option<f64>,
    /// Status.
    pub status: String,
    /// When it (last) filled.
    #[serde(default)]
    pub filled_at: Option<String>,
    /// Last change.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// When it was submitted (the open-orders list pages by it).
    #[serde(default)]
    pub submitted_at: Option<String>,
}

impl Order {
    /// The venue-neutral view.
    pub fn to_venue(&self) -> VenueOrder {
        VenueOrder {
            id: self.id.clone(),
            client_id: self.client_order_id.clone(),
            symbol: self.symbol.clone(),
            side: side_of(&self.side),
            quantity: self.qty,
            filled: self.filled_qty.unwrap_or(0.0),
            avg_price: self.filled_avg_price,
            status: status_of(&self.status),
            ts: self.fill_time(),
        }
    }

    /// Time of its latest fill (else of its latest change), in seconds.
    pub fn fill_time(&self) -> Option<EventTime> {
        self.filled_at
            .as_deref()
            .or(self.updated_at.as_deref())
            .and_then(parse_time)
    }
}

/// Alpaca's order status as ours: terminal ones exactly, every working one as open, one this
/// adapter does not know as sent.
pub fn status_of(s: &str) -> VenueStatus {
    match s {
        "filled" => VenueStatus::Filled,
        "canceled" => VenueStatus::Cancelled,
        "expired" => VenueStatus::Expired,
        "rejected" => VenueStatus::Rejected,
        "replaced" => VenueStatus::Replaced,
        "new"
        | "partially_filled"
        | "done_for_day"
        | "accepted"
        | "pending_new"
        | "accepted_for_bidding"
        | "pending_cancel"
        | "pending_replace"
        | "stopped"
        | "calculated"
        | "held"
        | "suspended" => VenueStatus::Open,
        other => VenueStatus::Other(other.to_string()),
    }
}

/// The body of `POST /v2/orders`: every decimal as a string, as Alpaca advises.
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    symbol: String,
    qty: String,
    side: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    time_in_force: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_price: Option<String>,
    client_order_id: String,
}

/// A decimal as Alpaca takes it: no exponent, no trailing zeros, at most 9 decimals.
pub fn decimal(x: f64) -> String {
    let s = format!("{x:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

impl NewOrder {
    /// The body for `r`.
    pub fn of(r: &OrderRequest) -> NewOrder {
        NewOrder {
            symbol: r.symbol.clone(),
            qty: decimal(r.quantity),
            side: r.side.as_str(),
            kind: r.order_type.as_str(),
            time_in_force: r.tif.as_str(),
            limit_price: r.order_type.limit().map(decimal),
            stop_price: r.order_type.stop().map(decimal),
            client_order_id: r.client_id.clone(),
        }
    }
}

/// The body of `PATCH /v2/orders/{id}` (replace): the new prices and time in force.
#[derive(Debug, Clone, Serialize)]
pub struct Replace {
    #[serde(skip_serializing_if = "Option::is_none")]
    qty: Option<String>,
    time_in_force: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_order_id: Option<String>,
}

impl Replace {
    /// New prices (and optionally a new quantity and the new order's client id) for a working
    /// order.
    pub fn of(
        order_type: OrderType,
        tif: TimeInForce,
        quantity: Option<f64>,
        client_id: Option<&str>,
    ) -> Replace {
        Replace {
            qty: quantity.map(decimal),
            time_in_force: tif.as_str(),
            limit_price: order_type.limit().map(decimal),
            stop_price: order_type.stop().map(decimal),
            client_order_id: client_id.map(str::to_string),
        }
    }
}

/// A position (position.yaml); short positions have a negative `qty`.
#[derive(Debug, Clone, Deserialize)]
pub struct Position {
    symbol: String,
    #[serde(deserialize_with = "num")]
    qty: f64,
    #[serde(deserialize_with = "num")]
    avg_entry_price: f64,
    #[serde(default)]
    side: Option<String>,
}

impl Position {
    /// The venue-neutral view, signed.
    pub fn to_venue(&self) -> VenuePosition {
        let short = self.side.as_deref() == Some("short");
        VenuePosition {
            symbol: self.symbol.clone(),
            quantity: if short { -self.qty.abs() } else { self.qty },
            avg_price: self.avg_entry_price,
        }
    }
}

/// The account (account-v2.yaml).
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    account_number: String,
    #[serde(deserialize_with = "num")]
    cash: f64,
    #[serde(deserialize_with = "num")]
    equity: f64,
    #[serde(deserialize_with = "num")]
    buying_power: f64,
    #[serde(default)]
    trading_blocked: bool,
    #[serde(default)]
    account_blocked: bool,
}

impl Account {
    /// The venue-neutral view.
    pub fn to_venue(&self) -> VenueAccount {
        VenueAccount {
            number: self.account_number.clone(),
            cash: self.cash,
            equity: self.equity,
            buying_power: self.buying_power,
            blocked: self.trading_blocked || self.account_blocked,
        }
    }
}

/// The market clock (clock.yaml).
#[derive(Debug, Clone, Deserialize)]
pub struct Clock {
    /// Whether the market is open now.
    pub is_open: bool,
    /// Next open, RFC 3339.
    pub next_open: String,
    /// Next close, RFC 3339.
    pub next_close: String,
}

/// An error body: `code` and `message`, sometimes with context.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ErrorBody {
    /// Alpaca's code, e.g. 40310000.
    #[serde(default)]
    pub code: Option<i64>,
    /// What it says.
    #[serde(default)]
    pub message: String,
}

/// One message of the trade-updates stream (streaming.md).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamMessage {
    /// `authorization`, `listening` or `trade_updates`.
    pub stream: String,
    /// The payload, read by stream.
    pub data: serde_json::Value,
}

/// A `trade_updates` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct TradeUpdate {
    /// `new`, `fill`, `partial_fill`, `canceled`, …
    pub event: String,
    /// The order after the event.
    pub order: Order,
    /// When it happened.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// This execution's price (fills).
    #[serde(default, deserialize_with = "opt_num")]
    pub price: Option<f64>,
    /// This execution's shares (fills).
    #[serde(default, deserialize_with = "opt_num")]
    pub qty: Option<f64>,
}

impl TradeUpdate {
    /// When it happened: its own timestamp, else the order's fill (or change) time.
    pub fn time(&self) -> Option<EventTime> {
        self.timestamp
            .as_deref()
            .and_then(parse_time)
            .or_else(|| self.order.fill_time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_as_strings_or_numbers_and_times_with_offsets() {
        let o: Order = serde_json::from_str(
            r#"{"id":"a","client_order_id":"c","symbol":"BRK.B","side":"sell_short","qty":1,
                "filled_qty":"0.5","filled_avg_price":null,"status":"partially_filled",
                "filled_at":"2022-04-19T13:45:05.024916716-04:00","unknown":{"x":1}}"#,
        )
        .unwrap();
        let v = o.to_venue();
        assert_eq!(
            (v.quantity, v.filled, v.side),
            (Some(1.0), 0.5, OrderSide::Sell)
        );
        assert_eq!(v.status, VenueStatus::Open);
        assert_eq!(o.fill_time(), Some(1_650_390_305));
        assert_eq!(status_of("weird"), VenueStatus::Other("weird".into()));
    }

    #[test]
    fn orders_are_sent_with_decimal_strings() {
        let r = OrderRequest {
            client_id: "fdp-1".into(),
            symbol: "BTC/USD".into(),
            side: OrderSide::Buy,
            quantity: 0.0025,
            order_type: OrderType::StopLimit {
                stop: 43_000.5,
                limit: 43_100.0,
            },
            tif: TimeInForce::Gtc,
        };
        let body = serde_json::to_value(NewOrder::of(&r)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"symbol":"BTC/USD","qty":"0.0025","side":"buy","type":"stop_limit",
                "time_in_force":"gtc","limit_price":"43100","stop_price":"43000.5",
                "client_order_id":"fdp-1"})
        );
        assert_eq!(decimal(1.0850), "1.085");
        assert_eq!(decimal(1e-12), "0");
    }
}
