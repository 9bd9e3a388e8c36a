//! Orders and fills, and the broker trait that executes them: the vocabulary the portfolio
//! operator decides in and the broker sinks (paper today; Alpaca and Interactive Brokers next)
//! execute, kept below both so that operators never import a sink.

use serde::{Deserialize, Serialize};

use crate::bar::{Bar, TickerId};
use crate::time::EventTime;

/// How much an approved entry should take, resolved at the fill against the equity then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum EntrySize {
    /// This fraction of equity.
    Fraction(f64),
    /// All available cash.
    AllIn,
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSide {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl OrderSide {
    /// `buy` or `sell`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }

    /// +1 for a buy, −1 for a sell.
    pub fn sign(self) -> f64 {
        match self {
            OrderSide::Buy => 1.0,
            OrderSide::Sell => -1.0,
        }
    }
}

/// What an order is for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OrderKind {
    /// Open a position in `direction` (+1 long, -1 short), sized at the fill.
    Entry {
        /// +1 or -1.
        direction: i8,
        /// How much.
        size: EntrySize,
    },
    /// Close the whole position (the model turned).
    Exit,
    /// A bracket's profit leg: close the whole position at a limit.
    TakeProfit,
    /// A bracket's protective leg: close the whole position at a stop.
    StopLoss,
    /// A position reconciliation adopted from the venue, booked as the venue holds it (never
    /// sent anywhere).
    Adjust,
}

impl OrderKind {
    /// `entry`, `exit`, `take_profit` or `stop_loss`, as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Entry { .. } => "entry",
            OrderKind::Exit => "exit",
            OrderKind::TakeProfit => "take_profit",
            OrderKind::StopLoss => "stop_loss",
            OrderKind::Adjust => "adjust",
        }
    }

    /// Whether the order closes a position rather than opening one.
    pub fn closes(self) -> bool {
        !matches!(self, OrderKind::Entry { .. })
    }
}

/// How the price of an execution is determined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderType {
    /// At the market.
    Market,
    /// At `limit` or better.
    Limit {
        /// Worst acceptable price.
        limit: f64,
    },
    /// A market order once the price reaches `stop` (a buy stop above the market, a sell stop
    /// below it).
    Stop {
        /// Trigger price.
        stop: f64,
    },
    /// A limit order at `limit` once the price reaches `stop`.
    StopLimit {
        /// Trigger price.
        stop: f64,
        /// Worst acceptable price once triggered.
        limit: f64,
    },
}

impl OrderType {
    /// `market`, `limit`, `stop` or `stop_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit { .. } => "limit",
            OrderType::Stop { .. } => "stop",
            OrderType::StopLimit { .. } => "stop_limit",
        }
    }

    /// The limit price, if any.
    pub fn limit(self) -> Option<f64> {
        match self {
            OrderType::Limit { limit } | OrderType::StopLimit { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// The stop price, if any.
    pub fn stop(self) -> Option<f64> {
        match self {
            OrderType::Stop { stop } | OrderType::StopLimit { stop, .. } => Some(stop),
            _ => None,
        }
    }
}

/// The type of the entry orders a pipeline sends (`[broker] order_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    /// At the next bar's open.
    #[default]
    Market,
    /// At the deciding close, or better by the offset.
    Limit,
    /// Once the price moves the offset in the signal's direction (a breakout).
    Stop,
    /// A stop, then a limit the offset beyond it.
    StopLimit,
}

/// How long an order works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Until the end of the (UTC) day of the first bar it could execute on.
    #[default]
    Day,
    /// Until filled or cancelled.
    Gtc,
    /// Whatever the first bar it could execute on fills; the rest is cancelled.
    Ioc,
}

impl TimeInForce {
    /// `day`, `gtc` or `ioc`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Day => "day",
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
        }
    }
}

/// An order, decided at one bar's close and working from the ticker's next bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Sequence number within the run (deterministic: the same decisions number the same).
    pub id: u64,
    /// Time of the bar it was decided on.
    pub ts: EventTime,
    /// Ticker.
    pub ticker: TickerId,
    /// Buy or sell.
    pub side: OrderSide,
    /// Entry, exit or a bracket leg.
    pub kind: OrderKind,
    /// Market, limit, stop or stop-limit.
    pub order_type: OrderType,
    /// How long it works.
    pub tif: TimeInForce,
    /// The entry a bracket leg protects.
    pub parent: Option<u64>,
}

impl Order {
    /// An entry's size as a fraction of equity (1 for all in); `None` for orders that close.
    pub fn size_fraction(&self) -> Option<f64> {
        match self.kind {
            OrderKind::Entry {
                size: EntrySize::Fraction(f),
                ..
            } => Some(f),
            OrderKind::Entry {
                size: EntrySize::AllIn,
                ..
            } => Some(1.0),
            _ => None,
        }
    }
}

/// An execution (one of possibly several for an order that fills in parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// The order filled.
    pub order_id: u64,
    /// 1 for an order's first fill, 2 for its second part, …
    pub seq: u32,
    /// Time of the bar it filled on.
    pub ts: EventTime,
    /// Ticker.
    pub ticker: TickerId,
    /// Side.
    pub side: OrderSide,
    /// Shares, always positive.
    pub quantity: f64,
    /// Execution price, slippage included.
    pub price: f64,
    /// Commission paid.
    pub commission: f64,
}

/// What a broker tells the portfolio about a working order on a bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// The order can execute at `price`, at most `cap` shares on this bar (`None`: no cap).
    /// `remaining` is what is left of an order that already filled in part (`None` before its
    /// first fill: the portfolio sizes it now).
    Execute {
        /// The order.
        order: Order,
        /// Execution price, slippage included.
        price: f64,
        /// Most shares this bar can fill.
        cap: Option<f64>,
        /// Shares still to fill, once sized.
        remaining: Option<f64>,
    },
    /// The order stopped working without (completely) filling: its time in force ran out.
    Expired {
        /// The order.
        order: Order,
        /// Why (`day_ended`, `ioc_unfilled`).
        reason: &'static str,
    },
}

/// An order venue. Each bar, `due` tells which of the ticker's working orders execute and at what
/// price; the portfolio sizes and books them and reports back through `executed`.
pub trait Broker {
    /// Accepts an order; it works from its ticker's next bar.
    fn submit(&mut self, order: Order);
    /// Cancels a working order, returning it (`None` when it is not working).
    fn cancel(&mut self, id: u64) -> Option<Order>;
    /// Changes a working order's type and prices in place (cancel and replace); whether it was
    /// working.
    fn replace(&mut self, id: u64, order_type: OrderType) -> bool;
    /// The orders of `ticker` still working, in the order they were submitted.
    fn working(&self, ticker: TickerId) -> Vec<Order>;
    /// Every working order, by ticker then submission (a stop cancels them).
    fn open_orders(&self) -> Vec<Order>;
    /// The tickers with a working order, ascending: the only ones a bar can fill or expire
    /// an order of.
    fn busy_tickers(&self) -> Vec<TickerId>;
    /// The ticker's working orders this bar ends or executes, in the order they were submitted.
    fn due(&mut self, bar: &Bar) -> Vec<Due>;
    /// Records an execution the portfolio booked from a [`Due::Execute`]: `remaining` shares are
    /// left. An order with nothing left stops working; one with time in force IOC stops working
    /// too and is returned, its rest cancelled.
    fn executed(&mut self, id: u64, remaining: f64) -> Option<Order>;
    /// Commission for `quantity` shares at `price`.
    fn commission(&self, quantity: f64, price: f64) -> f64;
    /// Whether only whole shares trade.
    fn whole_shares(&self) -> bool;
    /// Entries still working (they count against the position limit).
    fn pending_entries(&self) -> usize;
    /// Takes the orders still working (the run ended first).
    fn drain(&mut self) -> Vec<Order>;
}

/// What a broker charges per fill: `max(minimum, shares·per_share + value·rate)`. Written in a
/// pipeline as a number (a rate on traded value) or a table of the three.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "CommissionForm")]
pub struct Commission {
    /// Fraction of traded value.
    pub rate: f64,
    /// Amount per share.
    pub per_share: f64,
    /// Least charged for a fill.
    pub minimum: f64,
}

impl Commission {
    /// A rate on traded value.
    pub fn rate(rate: f64) -> Self {
        Commission {
            rate,
            ..Commission::default()
        }
    }

    /// The charge for `quantity` shares (either sign) at `price`; nothing for no shares.
    pub fn charge(&self, quantity: f64, price: f64) -> f64 {
        let q = quantity.abs();
        if q == 0.0 {
            return 0.0;
        }
        (q * self.per_share + q * price * self.rate).max(self.minimum)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CommissionForm {
    Rate(f64),
    Table {
        #[serde(default)]
        rate: f64,
        #[serde(default)]
        per_share: f64,
        #[serde(default)]
        minimum: f64,
    },
}

impl From<CommissionForm> for Commission {
    fn from(f: CommissionForm) -> Self {
        match f {
            CommissionForm::Rate(rate) => Commission::rate(rate),
            CommissionForm::Table {
                rate,
                per_share,
                minimum,
            } => Commission {
                rate,
                per_share,
                minimum,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_is_per_share_and_value_with_a_minimum() {
        let ib = Commission {
            rate: 0.0,
            per_share: 0.005,
            minimum: 1.0,
        };
        assert_eq!(ib.charge(100.0, 50.0), 1.0, "0.50 is raised to the minimum");
        assert!((ib.charge(-1000.0, 50.0) - 5.0).abs() < 1e-12);
        assert_eq!(ib.charge(0.0, 50.0), 0.0);
        assert!((Commission::rate(0.001).charge(10.0, 100.0) - 1.0).abs() < 1e-12);
    }
}

/// How a venue ended one of the run's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueEnd {
    /// Completely filled.
    Filled,
    /// Cancelled (at our request or the venue's).
    Cancelled,
    /// Its time in force ran out.
    Expired,
    /// The venue refused it.
    Rejected,
}

/// What a venue reported about one of the run's orders, fed into the graph at its time (the
/// execution's, or the floor's when it came later) so the portfolio books the venue's fills
/// instead of simulating them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VenueUpdate {
    /// When the portfolio books it.
    pub ts: EventTime,
    /// The portfolio's order id.
    pub order_id: u64,
    /// A fill, or the end.
    pub kind: VenueUpdateKind,
}

/// A fill, an adopted position, an end, or the failover to paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VenueUpdateKind {
    /// Shares executed at a price.
    Fill {
        /// Shares.
        quantity: f64,
        /// Price.
        price: f64,
    },
    /// A position reconciliation adopted: the venue holds `quantity` (signed) of `ticker` at
    /// an average price `price` (the update's `order_id` is 0).
    Position {
        /// Ticker.
        ticker: TickerId,
        /// Signed shares the venue holds.
        quantity: f64,
        /// The venue's average entry price.
        price: f64,
    },
    /// The order ended, with the venue's reason (a refusal's text).
    Ended {
        /// How.
        end: VenueEnd,
        /// Why, as the venue said (empty when it said nothing).
        reason: String,
    },
    /// The venue was unreachable and the broker process failed over to paper
    /// (`[broker] failover = "paper"`): from this update on the run is a paper run — this
    /// order and every other still working are filled by the paper broker on the bars after
    /// it, and nothing more goes to the venue.
    Rerouted,
}

impl VenueUpdate {
    /// Order in which one time's updates are booked: by order, fills before the end.
    pub fn sort_key(&self) -> (EventTime, u64, u8) {
        let k = match self.kind {
            VenueUpdateKind::Position { .. } => 0,
            VenueUpdateKind::Fill { .. } => 1,
            VenueUpdateKind::Ended { .. } => 2,
            VenueUpdateKind::Rerouted => 3,
        };
        (self.ts, self.order_id, k)
    }
}
