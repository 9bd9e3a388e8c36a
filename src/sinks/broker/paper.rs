//! The paper broker: market orders execute at the ticker's next bar's open, with slippage against
//! the order and a commission per side as a fraction of traded value.

use std::collections::BTreeMap;

use crate::bar::{Bar, TickerId};

use super::{Broker, Order, OrderKind, OrderSide};

/// Simulated execution at the next bar's open.
#[derive(Debug, Clone)]
pub struct PaperBroker {
    slippage: f64,
    commission: f64,
    whole_shares: bool,
    pending: BTreeMap<TickerId, Vec<Order>>,
}

impl PaperBroker {
    /// A paper broker; `slippage` and `commission` are fractions of price and value.
    pub fn new(slippage: f64, commission: f64, whole_shares: bool) -> Self {
        PaperBroker {
            slippage,
            commission,
            whole_shares,
            pending: BTreeMap::new(),
        }
    }
}

impl Broker for PaperBroker {
    fn submit(&mut self, order: Order) {
        self.pending.entry(order.ticker).or_default().push(order);
    }

    fn due(&mut self, bar: &Bar) -> Vec<Order> {
        self.pending.remove(&bar.ticker).unwrap_or_default()
    }

    fn price(&self, bar: &Bar, side: OrderSide) -> f64 {
        match side {
            OrderSide::Buy => bar.open * (1.0 + self.slippage),
            OrderSide::Sell => bar.open * (1.0 - self.slippage),
        }
    }

    fn commission(&self, quantity: f64, price: f64) -> f64 {
        quantity.abs() * price * self.commission
    }

    fn whole_shares(&self) -> bool {
        self.whole_shares
    }

    fn pending_entries(&self) -> usize {
        self.pending
            .values()
            .flatten()
            .filter(|o| matches!(o.kind, OrderKind::Entry { .. }))
            .count()
    }

    fn drain(&mut self) -> Vec<Order> {
        std::mem::take(&mut self.pending)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slippage_is_against_the_order() {
        let b = PaperBroker::new(0.001, 0.001, true);
        let bar = Bar {
            ticker: 0,
            ts: 0,
            open: 100.0,
            high: 101.0,
            low: 99.0,
            close: 100.5,
            volume: 1.0,
        };
        assert!((b.price(&bar, OrderSide::Buy) - 100.1).abs() < 1e-12);
        assert!((b.price(&bar, OrderSide::Sell) - 99.9).abs() < 1e-12);
        assert!((b.commission(10.0, 100.0) - 1.0).abs() < 1e-12);
    }
}
