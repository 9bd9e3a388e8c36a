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
    /// Close the whole position.
    Exit,
}

/// A market order, decided at one bar's close and executed at the ticker's next bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Sequence number within the run.
    pub id: u64,
    /// Time of the bar it was decided on.
    pub ts: EventTime,
    /// Ticker.
    pub ticker: TickerId,
    /// Entry or exit.
    pub kind: OrderKind,
}

/// An execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// The order filled.
    pub order_id: u64,
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

/// An order venue. `due` returns the orders a bar executes, with their price; the portfolio sizes
/// them and books the fills.
pub trait Broker {
    /// Accepts an order for execution at its ticker's next bar.
    fn submit(&mut self, order: Order);
    /// Orders this bar executes, each with its execution price for `side`.
    fn due(&mut self, bar: &Bar) -> Vec<Order>;
    /// Execution price of a market order of `side` on `bar`.
    fn price(&self, bar: &Bar, side: OrderSide) -> f64;
    /// Commission for `quantity` shares at `price`.
    fn commission(&self, quantity: f64, price: f64) -> f64;
    /// Whether only whole shares trade.
    fn whole_shares(&self) -> bool;
    /// Orders waiting for a bar, per ticker.
    fn pending_entries(&self) -> usize;
    /// Takes the orders that never executed (the run ended first).
    fn drain(&mut self) -> Vec<Order>;
}
