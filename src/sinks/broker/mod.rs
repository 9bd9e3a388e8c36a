//! Brokers execute the orders risk approved. The paper broker simulates fills on bars; the
//! venue adapters (Alpaca today, Interactive Brokers next) speak each broker's wire format and
//! translate it into [`venue`]'s vocabulary.

pub mod alpaca;
pub mod ibkr;
mod paper;
pub mod venue;

pub use paper::{FillModel, PaperBroker};

pub use crate::order::{Broker, Due, Fill, Order, OrderKind, OrderSide, OrderType};
