//! The paper broker: a deterministic fill model on bars, so a backtest decides and executes the
//! way a live run does without a venue.
//!
//! An order works from its ticker's next bar. On each bar, in the order they were submitted:
//! - market orders execute at the open;
//! - a limit order executes at the open when the open is at or better than its limit, else at
//!   its limit when the bar trades *through* it (a buy's low below the limit, a sell's high
//!   above), else not;
//! - a stop order triggers when the open is at or past its stop (a gap: it executes at the
//!   open) or the bar trades through it (it executes at the stop);
//! - a stop-limit order triggers the same way, then works as a limit order from the trigger
//!   price on (the same bar's low or high may fill it at the limit);
//! - slippage moves market and stop executions against the order, never past a limit;
//! - with `volume_cap`, one execution takes at most that share of the bar's volume and the
//!   rest works on the next bars, until its time in force ends it.

use std::collections::BTreeMap;

use crate::bar::{Bar, TickerId};
use crate::order::{Commission, Due, TimeInForce};
use crate::time::day_number;

use super::{Broker, Order, OrderKind, OrderSide, OrderType};

/// The fill model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillModel {
    /// Fraction of price that market and stop executions move against the order.
    pub slippage: f64,
    /// What a fill costs.
    pub commission: Commission,
    /// Trade whole shares only.
    pub whole_shares: bool,
    /// Most of a bar's volume one execution may take (`None`: no cap).
    pub volume_cap: Option<f64>,
}

#[derive(Debug, Clone)]
struct Working {
    order: Order,
    /// Shares left once sized by the first execution.
    remaining: Option<f64>,
    /// Day of the first bar it could execute on (day orders end with it).
    day: Option<i64>,
    /// A stop-limit whose stop has triggered.
    triggered: bool,
}

/// Simulated execution on bars.
#[derive(Debug, Clone)]
pub struct PaperBroker {
    model: FillModel,
    /// Each ticker's working orders in submission order; a ticker with none has no entry.
    pending: BTreeMap<TickerId, Vec<Working>>,
}

impl PaperBroker {
    /// A paper broker with a fill model.
    pub fn new(model: FillModel) -> Self {
        PaperBroker {
            model,
            pending: BTreeMap::new(),
        }
    }

    /// A paper broker with market fills only at the open: `slippage` and a `commission` rate as
    /// fractions of price and value, no volume cap.
    pub fn simple(slippage: f64, commission: f64, whole_shares: bool) -> Self {
        PaperBroker::new(FillModel {
            slippage,
            commission: Commission::rate(commission),
            whole_shares,
            volume_cap: None,
        })
    }

    fn find(&mut self, id: u64) -> Option<(TickerId, usize)> {
        self.pending
            .iter()
            .find_map(|(&t, w)| w.iter().position(|w| w.order.id == id).map(|i| (t, i)))
    }

    fn remove(&mut self, t: TickerId, i: usize) -> Option<Working> {
        let list = self.pending.get_mut(&t)?;
        let w = (i < list.len()).then(|| list.remove(i));
        if list.is_empty() {
            self.pending.remove(&t);
        }
        w
    }
}

/// Where `w` executes on `bar`, if it does; a stop-limit's trigger is remembered in `w`.
fn execution_price(w: &mut Working, bar: &Bar, slippage: f64) -> Option<f64> {
    let side = w.order.side;
    let s = side.sign();
    // Prices seen from the order's side: a buy wants them low, a sell high.
    let adverse = if side == OrderSide::Buy {
        bar.high
    } else {
        bar.low
    };
    let favourable = if side == OrderSide::Buy {
        bar.low
    } else {
        bar.high
    };
    let slip = |p: f64| p * (1.0 + s * slippage);
    let at_or_better = |p: f64, limit: f64| s * p <= s * limit;
    let limit_fill = |from: f64, limit: f64| {
        if at_or_better(from, limit) {
            let p = slip(from);
            Some(if at_or_better(p, limit) { p } else { limit })
        } else if s * favourable < s * limit {
            Some(limit)
        } else {
            None
        }
    };
    let trigger = |stop: f64| {
        if s * bar.open >= s * stop {
            Some(bar.open)
        } else if s * adverse > s * stop {
            Some(stop)
        } else {
            None
        }
    };
    match w.order.order_type {
        OrderType::Market => Some(slip(bar.open)),
        OrderType::Limit { limit } => limit_fill(bar.open, limit),
        OrderType::Stop { stop } => trigger(stop).map(slip),
        OrderType::StopLimit { limit, .. } if w.triggered => limit_fill(bar.open, limit),
        OrderType::StopLimit { stop, limit } => {
            let from = trigger(stop)?;
            w.triggered = true;
            limit_fill(from, limit)
        }
    }
}

impl Broker for PaperBroker {
    fn submit(&mut self, order: Order) {
        self.pending.entry(order.ticker).or_default().push(Working {
            order,
            remaining: None,
            day: None,
            triggered: false,
        });
    }

    fn cancel(&mut self, id: u64) -> Option<Order> {
        let (t, i) = self.find(id)?;
        self.remove(t, i).map(|w| w.order)
    }

    fn replace(&mut self, id: u64, order_type: OrderType) -> bool {
        let Some((t, i)) = self.find(id) else {
            return false;
        };
        if let Some(w) = self.pending.get_mut(&t).and_then(|l| l.get_mut(i)) {
            w.order.order_type = order_type;
            w.triggered = false;
        }
        true
    }

    fn working(&self, ticker: TickerId) -> Vec<Order> {
        self.pending
            .get(&ticker)
            .map_or_else(Vec::new, |l| l.iter().map(|w| w.order.clone()).collect())
    }

    fn open_orders(&self) -> Vec<Order> {
        self.pending
            .values()
            .flatten()
            .map(|w| w.order.clone())
            .collect()
    }

    fn busy_tickers(&self) -> Vec<TickerId> {
        self.pending.keys().copied().collect()
    }

    fn due(&mut self, bar: &Bar) -> Vec<Due> {
        let Some(list) = self.pending.get_mut(&bar.ticker) else {
            return Vec::new();
        };
        let day = day_number(bar.ts);
        let cap = self.model.volume_cap.map(|c| {
            let v = (c * bar.volume).max(0.0);
            if self.model.whole_shares {
                v.floor()
            } else {
                v
            }
        });
        let mut out = Vec::new();
        list.retain_mut(|w| {
            let first = *w.day.get_or_insert(day);
            if w.order.tif == TimeInForce::Day && first != day {
                out.push(Due::Expired {
                    order: w.order.clone(),
                    reason: "day_ended",
                });
                return false;
            }
            match execution_price(w, bar, self.model.slippage) {
                Some(price) => {
                    out.push(Due::Execute {
                        order: w.order.clone(),
                        price,
                        cap,
                        remaining: w.remaining,
                    });
                    true
                }
                None if w.order.tif == TimeInForce::Ioc => {
                    out.push(Due::Expired {
                        order: w.order.clone(),
                        reason: "ioc_unfilled",
                    });
                    false
                }
                None => true,
            }
        });
        if list.is_empty() {
            self.pending.remove(&bar.ticker);
        }
        out
    }

    fn executed(&mut self, id: u64, remaining: f64) -> Option<Order> {
        let (t, i) = self.find(id)?;
        let ioc = self.pending.get(&t)?.get(i)?.order.tif == TimeInForce::Ioc;
        if remaining <= 0.0 || ioc {
            let w = self.remove(t, i)?;
            return (remaining > 0.0).then_some(w.order);
        }
        if let Some(w) = self.pending.get_mut(&t).and_then(|l| l.get_mut(i)) {
            w.remaining = Some(remaining);
        }
        None
    }

    fn commission(&self, quantity: f64, price: f64) -> f64 {
        self.model.commission.charge(quantity, price)
    }

    fn whole_shares(&self) -> bool {
        self.model.whole_shares
    }

    fn pending_entries(&self) -> usize {
        self.pending
            .values()
            .flatten()
            .filter(|w| matches!(w.order.kind, OrderKind::Entry { .. }))
            .count()
    }

    fn drain(&mut self) -> Vec<Order> {
        std::mem::take(&mut self.pending)
            .into_values()
            .flatten()
            .map(|w| w.order)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{EntrySize, TimeInForce};
    use crate::time::DAY;

    fn bar(ts: i64, open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar {
            ticker: 0,
            ts,
            open,
            high,
            low,
            close,
            volume: 1000.0,
        }
    }

    fn order(id: u64, side: OrderSide, order_type: OrderType, tif: TimeInForce) -> Order {
        Order {
            id,
            ts: 0,
            ticker: 0,
            side,
            kind: OrderKind::Entry {
                direction: if side == OrderSide::Buy { 1 } else { -1 },
                size: EntrySize::AllIn,
            },
            order_type,
            tif,
            parent: None,
        }
    }

    fn price_of(b: &mut PaperBroker, o: Order, bars: &[Bar]) -> Vec<Option<f64>> {
        b.submit(o);
        bars.iter()
            .map(|bar| {
                b.due(bar).into_iter().find_map(|d| match d {
                    Due::Execute { price, .. } => Some(price),
                    Due::Expired { .. } => None,
                })
            })
            .collect()
    }

    #[test]
    fn slippage_is_against_the_order() {
        let mut b = PaperBroker::simple(0.001, 0.001, true);
        let x = bar(DAY, 100.0, 101.0, 99.0, 100.5);
        let buy = order(1, OrderSide::Buy, OrderType::Market, TimeInForce::Gtc);
        assert!((price_of(&mut b, buy, &[x])[0].unwrap() - 100.1).abs() < 1e-12);
        let sell = order(2, OrderSide::Sell, OrderType::Market, TimeInForce::Gtc);
        let mut b = PaperBroker::simple(0.001, 0.001, true);
        assert!((price_of(&mut b, sell, &[x])[0].unwrap() - 99.9).abs() < 1e-12);
        assert!((b.commission(10.0, 100.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_limit_fills_only_when_the_bar_trades_through_it() {
        let lim = |l| OrderType::Limit { limit: l };
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let bars = [
            bar(DAY, 100.0, 101.0, 99.0, 100.0),    // touches 99, not through
            bar(2 * DAY, 100.0, 101.0, 98.5, 99.5), // through 99: fills at 99
        ];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Buy, lim(99.0), TimeInForce::Gtc),
            &bars,
        );
        assert_eq!(got, [None, Some(99.0)]);
        // Opening below a buy limit fills at the (better) open.
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let gap = [bar(DAY, 97.0, 98.0, 96.0, 97.5)];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Buy, lim(99.0), TimeInForce::Gtc),
            &gap,
        );
        assert_eq!(got, [Some(97.0)]);
        // A sell limit above the market fills once the high goes through it.
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let up = [bar(DAY, 100.0, 102.5, 99.0, 101.0)];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Sell, lim(102.0), TimeInForce::Gtc),
            &up,
        );
        assert_eq!(got, [Some(102.0)]);
        // Slippage never takes a marketable limit past its limit.
        let mut b = PaperBroker::simple(0.01, 0.0, true);
        let at = [bar(DAY, 99.5, 100.0, 99.0, 99.8)];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Buy, lim(100.0), TimeInForce::Gtc),
            &at,
        );
        assert_eq!(got, [Some(100.0)]);
    }

    #[test]
    fn a_stop_fills_at_the_stop_or_at_a_gap_through_it() {
        let stop = |s| OrderType::Stop { stop: s };
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let bars = [
            bar(DAY, 100.0, 100.5, 99.0, 100.0),
            bar(2 * DAY, 100.0, 103.0, 99.5, 102.0),
        ];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Buy, stop(101.0), TimeInForce::Gtc),
            &bars,
        );
        assert_eq!(got, [None, Some(101.0)]);
        // A sell stop the bar gaps through fills at the open, not the stop.
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let gap = [bar(DAY, 90.0, 91.0, 89.0, 90.5)];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Sell, stop(95.0), TimeInForce::Gtc),
            &gap,
        );
        assert_eq!(got, [Some(90.0)]);
    }

    #[test]
    fn a_stop_limit_works_as_a_limit_once_triggered() {
        let sl = OrderType::StopLimit {
            stop: 101.0,
            limit: 101.5,
        };
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        let bars = [
            // Gaps above the limit and stays: triggered, not filled.
            bar(DAY, 103.0, 104.0, 102.0, 103.5),
            // Trades back through the limit: fills at the limit.
            bar(2 * DAY, 102.5, 103.0, 101.0, 101.2),
        ];
        let got = price_of(
            &mut b,
            order(1, OrderSide::Buy, sl, TimeInForce::Gtc),
            &bars,
        );
        assert_eq!(got, [None, Some(101.5)]);
    }

    #[test]
    fn time_in_force_ends_orders() {
        let lim = OrderType::Limit { limit: 50.0 };
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        b.submit(order(1, OrderSide::Buy, lim, TimeInForce::Day));
        b.submit(order(2, OrderSide::Buy, lim, TimeInForce::Ioc));
        b.submit(order(3, OrderSide::Buy, lim, TimeInForce::Gtc));
        let first = b.due(&bar(DAY, 100.0, 101.0, 99.0, 100.0));
        assert_eq!(
            first,
            [Due::Expired {
                order: order(2, OrderSide::Buy, lim, TimeInForce::Ioc),
                reason: "ioc_unfilled"
            }]
        );
        let same_day = b.due(&bar(DAY + 3600, 100.0, 101.0, 99.0, 100.0));
        assert!(same_day.is_empty(), "a day order works all its day");
        let next = b.due(&bar(2 * DAY, 100.0, 101.0, 99.0, 100.0));
        assert!(
            matches!(&next[..], [Due::Expired { order, reason: "day_ended" }] if order.id == 1)
        );
        assert_eq!(b.pending_entries(), 1, "the GTC order still works");
    }

    #[test]
    fn the_volume_cap_and_partial_fills() {
        let mut b = PaperBroker::new(FillModel {
            slippage: 0.0,
            commission: Commission::default(),
            whole_shares: true,
            volume_cap: Some(0.1),
        });
        b.submit(order(
            1,
            OrderSide::Buy,
            OrderType::Market,
            TimeInForce::Gtc,
        ));
        let due = b.due(&Bar {
            volume: 1234.0,
            ..bar(DAY, 10.0, 11.0, 9.0, 10.0)
        });
        assert!(
            matches!(&due[..], [Due::Execute { cap: Some(c), remaining: None, .. }] if *c == 123.0)
        );
        assert_eq!(b.executed(1, 377.0), None, "500 sized, 123 filled");
        let due = b.due(&bar(2 * DAY, 10.0, 11.0, 9.0, 10.0));
        assert!(matches!(&due[..], [Due::Execute { remaining: Some(r), .. }] if *r == 377.0));
        assert_eq!(b.executed(1, 0.0), None);
        assert!(b.due(&bar(3 * DAY, 10.0, 11.0, 9.0, 10.0)).is_empty());
        // An IOC's rest is cancelled after its one execution.
        b.submit(order(
            2,
            OrderSide::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
        ));
        assert_eq!(b.due(&bar(4 * DAY, 10.0, 11.0, 9.0, 10.0)).len(), 1);
        assert_eq!(b.executed(2, 5.0).map(|o| o.id), Some(2));
        assert_eq!(b.pending_entries(), 0);
    }

    #[test]
    fn cancel_and_replace() {
        let mut b = PaperBroker::simple(0.0, 0.0, true);
        b.submit(order(
            1,
            OrderSide::Sell,
            OrderType::Limit { limit: 120.0 },
            TimeInForce::Gtc,
        ));
        assert!(b.due(&bar(DAY, 100.0, 105.0, 99.0, 101.0)).is_empty());
        assert!(b.replace(1, OrderType::Limit { limit: 104.0 }));
        let due = b.due(&bar(2 * DAY, 100.0, 105.0, 99.0, 101.0));
        assert!(matches!(&due[..], [Due::Execute { price, .. }] if *price == 104.0));
        assert_eq!(b.cancel(1).map(|o| o.id), Some(1));
        assert_eq!(b.cancel(1), None);
        assert!(!b.replace(1, OrderType::Market));
    }
}
