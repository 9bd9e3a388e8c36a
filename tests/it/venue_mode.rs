//! The portfolio in venue mode, on hand-made bars and venue updates with known answers: bars
//! execute nothing; orders carry the quantity planned at the decision; the venue's partial fills
//! and end are booked at their times and prices; a withdrawn order is asked of the venue to cancel
//! and ends only when the venue says so, a fill that raced the cancel booked; a refusal is a
//! refused order with the broker's reason; after a failover to paper, the paper broker fills the
//! rest on the next bars and nothing more is recorded for the venue; a further fill of an entry
//! replaces its bracket legs at the venue at the new average. Equities in the hundreds and
//! crypto in the tens of thousands (fractional quantities).

use findashpro::bar::Bar;
use findashpro::config::{RiskSpec, Sizing};
use findashpro::operators::portfolio::{Ledger, OrderPolicy, OrderStatus, Portfolio};
use findashpro::operators::risk::{KillSwitch, RiskEngine};
use findashpro::operators::signal::{Signal, Target};
use findashpro::order::{
    Commission, EntryType, OrderKind, OrderSide, OrderType, TimeInForce, VenueEnd, VenueUpdate,
    VenueUpdateKind,
};
use findashpro::sinks::broker::{FillModel, PaperBroker};
use findashpro::time::DAY;

/// 2024-03-04 00:00 UTC.
const T0: i64 = 1_709_510_400;

fn bar(day: i64, price: f64) -> Bar {
    Bar {
        ticker: 0,
        ts: T0 + day * DAY,
        open: price,
        high: price * 1.01,
        low: price * 0.99,
        close: price,
        volume: 1e9,
    }
}

fn signal(target: Target) -> Option<Signal> {
    Some(Signal {
        target,
        confidence: 0.6,
        predicted_return: f64::NAN,
    })
}

fn venue(whole_shares: bool, entry: EntryType) -> Portfolio<PaperBroker> {
    venue_with(
        whole_shares,
        OrderPolicy {
            entry,
            offset: if entry == EntryType::Market {
                0.0
            } else {
                0.01
            },
            tif: TimeInForce::Gtc,
            ..OrderPolicy::default()
        },
    )
}

/// A portfolio in venue mode with 100 000, 2 % entries and no slippage or commission.
fn venue_with(whole_shares: bool, policy: OrderPolicy) -> Portfolio<PaperBroker> {
    let risk = RiskSpec {
        capital: 100_000.0,
        sizing: Sizing::FixedFraction { fraction: 0.02 },
        min_order: 0.0,
        ..RiskSpec::default()
    };
    let mut p = Portfolio::with_policy(
        RiskEngine::new(risk, KillSwitch::default()),
        PaperBroker::new(FillModel {
            slippage: 0.0,
            commission: Commission::default(),
            whole_shares,
            volume_cap: None,
        }),
        policy,
    );
    p.venue_mode();
    p
}

fn fill(ts: i64, order_id: u64, quantity: f64, price: f64) -> VenueUpdate {
    VenueUpdate {
        ts,
        order_id,
        kind: VenueUpdateKind::Fill { quantity, price },
    }
}

fn ended(ts: i64, order_id: u64, end: VenueEnd, reason: &str) -> VenueUpdate {
    VenueUpdate {
        ts,
        order_id,
        kind: VenueUpdateKind::Ended {
            end,
            reason: reason.into(),
        },
    }
}

fn drained(p: &mut Portfolio<PaperBroker>) -> Ledger {
    p.drain()
}

#[test]
fn bars_fill_nothing_and_the_venues_partial_fills_are_booked_at_its_prices() {
    let mut p = venue(true, EntryType::Market);
    p.step(T0, &[(bar(0, 250.0), signal(Target::Long), 1.0)]);
    let l = drained(&mut p);
    assert_eq!(l.submitted.len(), 1);
    // 2 % of 100 000 at the deciding close 250: 8 whole shares.
    assert_eq!(l.submitted[0].quantity, 8.0);
    let id = l.submitted[0].order.id;
    // The next bar trades, but only the venue fills.
    p.step(T0 + DAY, &[(bar(1, 251.0), signal(Target::Long), 1.0)]);
    assert!(drained(&mut p).fills.is_empty());
    let t = T0 + DAY + 3600;
    p.step_with(t, &[], &[fill(t, id, 3.0, 251.5)]);
    p.step_with(
        t + 60,
        &[],
        &[
            fill(t + 60, id, 5.0, 251.7),
            ended(t + 60, id, VenueEnd::Filled, ""),
        ],
    );
    let l = drained(&mut p);
    let fills: Vec<_> = l
        .fills
        .iter()
        .map(|f| (f.ts, f.quantity, f.price, f.seq))
        .collect();
    assert_eq!(fills, [(t, 3.0, 251.5, 1), (t + 60, 5.0, 251.7, 2)]);
    let o = &l.orders[0];
    assert_eq!((o.status, o.filled), (OrderStatus::Filled, 8.0));
    let last = l.positions.last().expect("position");
    assert_eq!(last.quantity, 8.0);
    assert!((last.entry_price - (3.0 * 251.5 + 5.0 * 251.7) / 8.0).abs() < 1e-9);
}

#[test]
fn a_withdrawn_order_ends_when_the_venue_says_and_a_racing_fill_is_booked() {
    let mut p = venue(false, EntryType::Limit);
    // Crypto: a limit 1 % under 43 000, 2 % of equity, fractional.
    p.step(T0, &[(bar(0, 43_000.0), signal(Target::Long), 1.0)]);
    let l = drained(&mut p);
    let id = l.submitted[0].order.id;
    assert!((l.submitted[0].quantity - 2_000.0 / 42_570.0).abs() < 1e-12);
    // The signal turns flat: the working limit is withdrawn (a cancel asked of the venue).
    p.step(T0 + DAY, &[(bar(1, 43_500.0), signal(Target::Flat), 1.0)]);
    let l = drained(&mut p);
    assert_eq!(l.cancels, [(T0 + DAY, id)]);
    assert!(l.orders.is_empty(), "not ended before the venue says so");
    // The venue filled part before the cancel reached it, then cancelled the rest.
    let t = T0 + DAY + 120;
    p.step_with(
        t,
        &[],
        &[
            fill(t, id, 0.01, 42_570.0),
            ended(t, id, VenueEnd::Cancelled, ""),
        ],
    );
    let l = drained(&mut p);
    assert_eq!(l.fills.len(), 1);
    let o = &l.orders[0];
    assert_eq!(
        (o.status, o.filled, o.reason.as_str()),
        (OrderStatus::Cancelled, 0.01, "signal_changed")
    );
    assert_eq!(l.positions.last().map(|p| p.quantity), Some(0.01));
    // The model still wants flat: the position it did not want is exited at the next bar.
    p.step(
        T0 + 2 * DAY,
        &[(bar(2, 43_200.0), signal(Target::Flat), 1.0)],
    );
    let l = drained(&mut p);
    let exit = &l.submitted[0];
    assert_eq!((exit.order.side, exit.quantity), (OrderSide::Sell, 0.01));
}

#[test]
fn a_refusal_is_a_refused_order_with_the_brokers_reason() {
    let mut p = venue(true, EntryType::Market);
    p.step(T0, &[(bar(0, 187.25), signal(Target::Long), 1.0)]);
    let id = drained(&mut p).submitted[0].order.id;
    p.step_with(
        T0 + 60,
        &[],
        &[ended(
            T0 + 60,
            id,
            VenueEnd::Rejected,
            "insufficient buying power",
        )],
    );
    let l = p.finish();
    let o = l.orders.iter().find(|o| o.order.id == id).expect("order");
    assert_eq!(
        (o.status, o.reason.as_str()),
        (OrderStatus::Refused, "broker: insufficient buying power")
    );
    assert!(l.fills.is_empty());
}

fn rerouted(ts: i64, order_id: u64) -> VenueUpdate {
    VenueUpdate {
        ts,
        order_id,
        kind: VenueUpdateKind::Rerouted,
    }
}

#[test]
fn after_a_failover_to_paper_bars_fill_the_rest_and_nothing_more_goes_to_the_venue() {
    let mut p = venue(false, EntryType::Market);
    // Crypto, fractional: 2 % of 100 000 at the deciding close 43 000.
    p.step(T0, &[(bar(0, 43_000.0), signal(Target::Long), 1.0)]);
    let l = drained(&mut p);
    let (id, planned) = (l.submitted[0].order.id, l.submitted[0].quantity);
    assert!((planned - 2_000.0 / 43_000.0).abs() < 1e-12);
    let t = T0 + 600;
    p.step_with(t, &[], &[fill(t, id, 0.02, 43_010.0)]);
    assert_eq!(drained(&mut p).fills.len(), 1);
    // The venue goes down; the broker process fails over: this step's bar still fills nothing.
    let t1 = T0 + DAY;
    p.step_with(
        t1,
        &[(bar(1, 43_100.0), signal(Target::Long), 1.0)],
        &[rerouted(t1, id)],
    );
    let l = drained(&mut p);
    assert!(l.fills.is_empty(), "{:?}", l.fills);
    // The next bar fills the remainder on paper, at its open (no slippage configured).
    p.step(
        T0 + 2 * DAY,
        &[(bar(2, 43_200.0), signal(Target::Flat), 1.0)],
    );
    let l = drained(&mut p);
    let fills: Vec<_> = l.fills.iter().map(|f| (f.ts, f.price)).collect();
    assert_eq!(fills, [(T0 + 2 * DAY, 43_200.0)]);
    assert!((l.fills[0].quantity - (planned - 0.02)).abs() < 1e-12);
    let o = &l.orders[0];
    assert_eq!(o.status, OrderStatus::Filled);
    assert!((o.filled - planned).abs() < 1e-12);
    // The flat signal's exit is a paper order: nothing recorded for the venue, filled by bars.
    assert!(l.submitted.is_empty(), "{:?}", l.submitted);
    p.step(
        T0 + 3 * DAY,
        &[(bar(3, 42_900.0), signal(Target::Flat), 1.0)],
    );
    let l = drained(&mut p);
    assert_eq!(l.fills.len(), 1);
    assert_eq!((l.fills[0].price, l.fills[0].ts), (42_900.0, T0 + 3 * DAY));
    assert!((l.fills[0].quantity - planned).abs() < 1e-12);
    assert_eq!(l.positions.last().map(|p| p.quantity), Some(0.0));
    // A second reroute (another order's) changes nothing.
    p.step_with(T0 + 3 * DAY + 1, &[], &[rerouted(T0 + 3 * DAY + 1, id)]);
    assert!(drained(&mut p).orders.is_empty());
}

#[test]
fn a_failover_to_paper_ends_an_order_withdrawn_at_the_venue() {
    let mut p = venue(true, EntryType::Limit);
    p.step(T0, &[(bar(0, 187.25), signal(Target::Long), 1.0)]);
    let id = drained(&mut p).submitted[0].order.id;
    p.step(T0 + DAY, &[(bar(1, 190.0), signal(Target::Flat), 1.0)]);
    assert_eq!(drained(&mut p).cancels, [(T0 + DAY, id)]);
    let t = T0 + DAY + 60;
    p.step_with(t, &[], &[rerouted(t, id)]);
    let l = drained(&mut p);
    let o = &l.orders[0];
    assert_eq!(
        (o.status, o.reason.as_str(), o.filled),
        (OrderStatus::Cancelled, "signal_changed", 0.0)
    );
    // Bars after it execute nothing of it.
    p.step(T0 + 2 * DAY, &[(bar(2, 150.0), signal(Target::Flat), 1.0)]);
    assert!(drained(&mut p).fills.is_empty());
}

#[test]
fn a_further_fill_of_the_entry_replaces_its_bracket_legs_at_the_venue() {
    let mut p = venue_with(
        true,
        OrderPolicy {
            take_profit: Some(0.05),
            stop_loss: Some(0.03),
            tif: TimeInForce::Gtc,
            ..OrderPolicy::default()
        },
    );
    // An equity at 400: 2 % of 100 000 is 5 whole shares.
    p.step(T0, &[(bar(0, 400.0), signal(Target::Long), 1.0)]);
    let entry = drained(&mut p).submitted[0].clone();
    assert_eq!(entry.quantity, 5.0);
    let id = entry.order.id;
    let t = T0 + 600;
    p.step_with(t, &[], &[fill(t, id, 2.0, 400.0)]);
    let first = drained(&mut p);
    let legs: Vec<_> = first
        .submitted
        .iter()
        .map(|s| (s.order.kind, s.order.order_type, s.quantity, s.replaces))
        .collect();
    assert_eq!(
        legs,
        [
            (
                OrderKind::TakeProfit,
                OrderType::Limit { limit: 420.0 },
                2.0,
                None
            ),
            (
                OrderKind::StopLoss,
                OrderType::Stop { stop: 388.0 },
                2.0,
                None
            ),
        ]
    );
    let (tp, sl) = (first.submitted[0].order.id, first.submitted[1].order.id);
    // The rest fills higher: the legs are replaced at the new average, for all 5 shares; the
    // old ones are not cancelled (a replace is one request at the venue).
    p.step_with(
        t + 60,
        &[],
        &[
            fill(t + 60, id, 3.0, 410.0),
            ended(t + 60, id, VenueEnd::Filled, ""),
        ],
    );
    let second = drained(&mut p);
    assert!(second.cancels.is_empty(), "{:?}", second.cancels);
    let avg = (2.0 * 400.0 + 3.0 * 410.0) / 5.0;
    let renewed: Vec<_> = second
        .submitted
        .iter()
        .map(|s| (s.order.kind, s.quantity, s.replaces, s.order.parent))
        .collect();
    assert_eq!(
        renewed,
        [
            (OrderKind::TakeProfit, 5.0, Some(tp), Some(id)),
            (OrderKind::StopLoss, 5.0, Some(sl), Some(id)),
        ]
    );
    let limit = second.submitted[0].order.order_type.limit().expect("limit");
    assert!((limit - avg * 1.05).abs() < 1e-9);
    let (tp2, sl2) = (second.submitted[0].order.id, second.submitted[1].order.id);
    // The venue replaced them: the old legs end, named so.
    let t2 = t + 120;
    p.step_with(
        t2,
        &[],
        &[
            ended(t2, tp, VenueEnd::Cancelled, ""),
            ended(t2, sl, VenueEnd::Cancelled, ""),
        ],
    );
    let l = drained(&mut p);
    let ends: Vec<_> = l
        .orders
        .iter()
        .map(|o| (o.order.id, o.status, o.reason.as_str()))
        .collect();
    assert_eq!(
        ends,
        [
            (tp, OrderStatus::Cancelled, "replaced"),
            (sl, OrderStatus::Cancelled, "replaced")
        ]
    );
    // The new take-profit fills: the position closes and its sibling is withdrawn.
    let t3 = T0 + 5 * DAY;
    p.step_with(
        t3,
        &[],
        &[
            fill(t3, tp2, 5.0, limit),
            ended(t3, tp2, VenueEnd::Filled, ""),
        ],
    );
    let l = drained(&mut p);
    assert_eq!(l.positions.last().map(|p| p.quantity), Some(0.0));
    assert_eq!(l.cancels, [(t3, sl2)]);
}

#[test]
fn a_position_the_venue_reports_without_a_bar_is_valued_at_its_tickers_last_close() {
    let mut p = venue(false, EntryType::Market);
    let btc = |day: i64, price: f64| Bar {
        ticker: 1,
        ..bar(day, price)
    };
    p.step(
        T0,
        &[(bar(0, 250.0), None, 1.0), (btc(0, 40_000.0), None, 1.0)],
    );
    // Ticker 1 trades on with nothing held or working: only a venue's report makes it a position.
    p.step(T0 + DAY, &[(btc(1, 41_000.0), None, 1.0)]);
    let t = T0 + DAY + 3600;
    let adopted = VenueUpdate {
        ts: t,
        order_id: 0,
        kind: VenueUpdateKind::Position {
            ticker: 1,
            quantity: 0.5,
            price: 40_500.0,
        },
    };
    p.step_with(t, &[], &[adopted]);
    let l = drained(&mut p);
    let last = l.equity.last().expect("an equity point");
    assert_eq!(last.ts, t);
    // Bought at the venue's 40 500, valued at the ticker's last close, 41 000.
    assert_eq!(last.positions_value, 0.5 * 41_000.0);
    assert_eq!(last.cash, 100_000.0 - 0.5 * 40_500.0);
}
