//! Brokers execute the orders risk approved. The paper broker simulates fills on bars; the
//! venue adapters (Alpaca, Interactive Brokers) speak each broker's wire format and translate it
//! into [`venue`]'s vocabulary; the [`outbox`] sends a run's orders through them exactly once.

pub mod alpaca;
pub mod ibkr;
pub mod outbox;
mod paper;
pub mod reconcile;
pub mod venue;

pub use paper::{FillModel, PaperBroker};

pub use crate::order::{Broker, Due, Fill, Order, OrderKind, OrderSide, OrderType};
