//! Brokers execute the orders risk approved. The paper broker simulates fills at the next bar;
//! Alpaca and Interactive Brokers arrive with their own issue behind the same trait
//! ([`crate::order::Broker`]).

mod paper;

pub use paper::{FillModel, PaperBroker};

pub use crate::order::{Broker, Due, Fill, Order, OrderKind, OrderSide, OrderType};
