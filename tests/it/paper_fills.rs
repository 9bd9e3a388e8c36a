//! The paper broker's fill model through the portfolio, on hand-made bars with known answers:
//! limit, stop and stop-limit entries, gaps through a stop, time in force, the volume cap with
//! partial fills, brackets, commissions per share with a minimum, and an order the signal no
//! longer wants. One market each: US equities in the hundreds, crypto in the tens of
//! thousands with fractional quantities, FX near 1.0.

use findashpro::bar::Bar;
use findashpro::config::{RiskSpec, Sizing};
use findashpro::operators::portfolio::{Ledger, OrderPolicy, OrderStatus, Portfolio};
use findashpro::operators::risk::{KillSwitch, RiskEngine};
use findashpro::operators::signal::{Signal, Target};
use findashpro::order::{Commission, EntryType, OrderKind, OrderType, TimeInForce};
use findashpro::sinks::broker::{FillModel, PaperBroker};
use findashpro::time::DAY;

/// 2024-03-04, a Monday, at 00:00 UTC; bars are a day apart.
const T0: i64 = 1_709_510_400;

fn bar(day: i64, ohlc: [f64; 4], volume: f64) -> Bar {
    Bar {
        ticker: 0,
        ts: T0 + day * DAY,
        open: ohlc[0],
        high: ohlc[1],
        low: ohlc[2],
        close: ohlc[3],
        volume,
    }
}

fn signal(target: Target) -> Option<Signal> {
    Some(Signal {
        target,
        confidence: 0.6,
        predicted_return: f64::NAN,
    })
}

struct Setup {
    fraction: f64,
    model: FillModel,
    policy: OrderPolicy,
}

fn setup() -> Setup {
    Setup {
        fraction: 0.1,
        model: FillModel {
            slippage: 0.0,
            commission: Commission::default(),
            whole_shares: true,
            volume_cap: None,
        },
        policy: OrderPolicy {
            tif: TimeInForce::Gtc,
            ..OrderPolicy::default()
        },
    }
}

/// Runs bars with the signal decided at each close; returns the ledger.
fn run(s: Setup, bars: &[(Bar, Option<Signal>)]) -> Ledger {
    let risk = RiskSpec {
        capital: 100_000.0,
        sizing: Sizing::FixedFraction {
            fraction: s.fraction,
        },
        min_order: 0.0,
        max_position: 1.0,
        ..RiskSpec::default()
    };
    let mut p = Portfolio::with_policy(
        RiskEngine::new(risk, KillSwitch::default()),
        PaperBroker::new(s.model),
        s.policy,
    );
    for (b, sig) in bars {
        p.step(b.ts, &[(*b, *sig, 1.0)]);
    }
    p.finish()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn a_limit_entry_fills_only_when_a_bar_trades_through_it() {
    let mut s = setup();
    s.policy.entry = EntryType::Limit;
    s.policy.offset = 0.01;
    let l = run(
        s,
        &[
            (
                bar(0, [200.0, 201.0, 199.0, 200.0], 1e6),
                signal(Target::Long),
            ),
            // The limit is 198: this bar touches it without trading through.
            (
                bar(1, [199.0, 201.0, 198.0, 200.0], 1e6),
                signal(Target::Long),
            ),
            (
                bar(2, [199.0, 200.0, 197.5, 199.0], 1e6),
                signal(Target::Long),
            ),
        ],
    );
    assert_eq!(l.orders.len(), 1, "the working limit is not sent twice");
    let o = &l.orders[0];
    assert_eq!(o.order.order_type, OrderType::Limit { limit: 198.0 });
    assert_eq!((o.status, o.filled), (OrderStatus::Filled, 50.0));
    assert_eq!(l.fills.len(), 1);
    let f = &l.fills[0];
    // 10% of 100 000 at 198: 50 whole shares.
    assert_eq!((f.ts, f.price, f.quantity), (T0 + 2 * DAY, 198.0, 50.0));
    assert!(close(l.equity[2].cash, 100_000.0 - 50.0 * 198.0));
}

#[test]
fn a_day_limit_expires_with_its_day_and_a_changed_signal_cancels_a_working_one() {
    let mut s = setup();
    s.policy.entry = EntryType::Limit;
    s.policy.offset = 0.01;
    s.policy.tif = TimeInForce::Day;
    let l = run(
        s,
        &[
            (
                bar(0, [200.0, 201.0, 199.0, 200.0], 1e6),
                signal(Target::Long),
            ),
            (bar(1, [199.0, 201.0, 198.5, 200.0], 1e6), None),
            (
                bar(2, [199.0, 200.0, 197.5, 199.0], 1e6),
                signal(Target::Long),
            ),
            (
                bar(3, [199.0, 200.0, 198.5, 199.0], 1e6),
                signal(Target::Flat),
            ),
        ],
    );
    let got: Vec<_> = l
        .orders
        .iter()
        .map(|o| (o.order.id, o.status, o.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, OrderStatus::Expired, "day_ended"),
            (2, OrderStatus::Cancelled, "signal_changed"),
        ]
    );
    assert!(l.fills.is_empty());
}

#[test]
fn a_breakout_stop_on_fx_fills_at_its_stop_with_slippage() {
    let mut s = setup();
    s.policy.entry = EntryType::Stop;
    s.policy.offset = 0.001;
    s.model.slippage = 0.0005;
    let l = run(
        s,
        &[
            (
                bar(0, [1.0840, 1.0855, 1.0835, 1.0850], 0.0),
                signal(Target::Long),
            ),
            (
                bar(1, [1.0852, 1.0870, 1.0845, 1.0866], 0.0),
                signal(Target::Long),
            ),
        ],
    );
    let stop = 1.0850 * 1.001;
    assert_eq!(l.orders[0].order.order_type, OrderType::Stop { stop });
    let f = &l.fills[0];
    assert!(close(f.price, stop * 1.0005), "{}", f.price);
    // 10 000 of equity buys this many whole units.
    assert_eq!(f.quantity, (10_000.0 / f.price).floor());
}

#[test]
fn a_short_stop_limit_gapped_through_waits_for_its_limit() {
    let mut s = setup();
    s.policy.entry = EntryType::StopLimit;
    s.policy.offset = 0.01;
    let l = run(
        s,
        &[
            (
                bar(0, [101.0, 101.0, 99.0, 100.0], 1e6),
                signal(Target::Short),
            ),
            // Sell stop 99, limit 98.01: the open gaps below both; triggered, not filled.
            (bar(1, [97.0, 97.9, 96.0, 97.5], 1e6), signal(Target::Short)),
            // Trades back up through the limit: filled at 98.01.
            (bar(2, [97.5, 98.5, 97.0, 98.2], 1e6), signal(Target::Short)),
        ],
    );
    let f = &l.fills[0];
    assert_eq!(f.ts, T0 + 2 * DAY);
    assert!(close(f.price, 99.0 * 0.99), "{}", f.price);
    assert_eq!(l.positions[0].quantity, -(10_000.0 / f.price).floor());
}

#[test]
fn a_crypto_bracket_stops_out_and_cancels_its_take_profit() {
    let mut s = setup();
    s.model.whole_shares = false;
    s.policy.take_profit = Some(0.05);
    s.policy.stop_loss = Some(0.03);
    let l = run(
        s,
        &[
            (
                bar(0, [39_500.0, 40_200.0, 39_400.0, 40_100.0], 50.0),
                signal(Target::Long),
            ),
            (
                bar(1, [40_000.0, 40_400.0, 39_800.0, 40_300.0], 50.0),
                signal(Target::Long),
            ),
            (
                bar(2, [40_500.0, 41_000.0, 39_000.0, 40_800.0], 50.0),
                signal(Target::Long),
            ),
            // Low 38 000 goes through the stop at 38 800.
            (
                bar(3, [39_000.0, 39_100.0, 38_000.0, 38_500.0], 50.0),
                signal(Target::Long),
            ),
        ],
    );
    let by_kind = |k: OrderKind| l.orders.iter().find(|o| o.order.kind == k).unwrap();
    let tp = by_kind(OrderKind::TakeProfit);
    let sl = by_kind(OrderKind::StopLoss);
    let stop = 40_000.0 * (1.0 - 0.03);
    assert_eq!(
        tp.order.order_type,
        OrderType::Limit {
            limit: 40_000.0 * (1.0 + 0.05)
        }
    );
    assert_eq!(sl.order.order_type, OrderType::Stop { stop });
    assert_eq!(
        (tp.status, tp.reason.as_str()),
        (OrderStatus::Cancelled, "oco")
    );
    assert_eq!((sl.status, sl.filled), (OrderStatus::Filled, 0.25));
    assert_eq!(sl.order.tif, TimeInForce::Gtc);
    assert_eq!(tp.order.parent, Some(1));
    // 0.25 BTC bought at 40 000, sold at 38 800.
    let t = &l.trades[0];
    assert_eq!(
        (t.size, t.entry_price, t.exit_price),
        (0.25, 40_000.0, stop)
    );
    assert!(close(t.pnl, -300.0), "{}", t.pnl);
    assert!(!t.open);
    assert!(l.equity[3].open_positions == 0);
}

#[test]
fn a_stop_loss_gapped_through_fills_at_the_open() {
    let mut s = setup();
    s.model.whole_shares = false;
    s.policy.stop_loss = Some(0.03);
    let l = run(
        s,
        &[
            (
                bar(0, [40_000.0, 40_200.0, 39_400.0, 40_100.0], 50.0),
                signal(Target::Long),
            ),
            (
                bar(1, [40_000.0, 40_400.0, 39_800.0, 40_300.0], 50.0),
                signal(Target::Long),
            ),
            (
                bar(2, [37_000.0, 37_500.0, 36_500.0, 37_200.0], 50.0),
                signal(Target::Long),
            ),
        ],
    );
    let t = &l.trades[0];
    assert_eq!(t.exit_price, 37_000.0);
    assert_eq!(t.exit_ts, T0 + 2 * DAY);
}

#[test]
fn the_volume_cap_fills_in_parts_at_each_bars_price() {
    let mut s = setup();
    s.model.volume_cap = Some(0.1);
    s.model.commission = Commission {
        rate: 0.0,
        per_share: 0.005,
        minimum: 1.0,
    };
    let l = run(
        s,
        &[
            (
                bar(0, [200.0, 201.0, 199.0, 200.0], 1e6),
                signal(Target::Long),
            ),
            // 10% of 300 is 30 shares of the 49 sized; the next bar fills the other 19.
            (
                bar(1, [200.0, 202.0, 199.0, 201.0], 300.0),
                signal(Target::Long),
            ),
            (
                bar(2, [202.0, 203.0, 201.0, 202.0], 300.0),
                signal(Target::Long),
            ),
        ],
    );
    let parts: Vec<_> = l
        .fills
        .iter()
        .map(|f| (f.seq, f.quantity, f.price, f.commission))
        .collect();
    // 10 000 / (200 + 1.0 commission per share at the minimum) sizes 49 shares.
    assert_eq!(parts, [(1, 30.0, 200.0, 1.0), (2, 19.0, 202.0, 1.0)]);
    let o = &l.orders[0];
    assert_eq!((o.status, o.filled), (OrderStatus::Filled, 49.0));
    let last = l.positions.last().unwrap();
    assert_eq!(last.quantity, 49.0);
    assert!(close(
        last.entry_price,
        (30.0 * 200.0 + 19.0 * 202.0) / 49.0
    ));
}

#[test]
fn an_ioc_keeps_what_one_bar_fills_and_cancels_the_rest() {
    let mut s = setup();
    s.model.volume_cap = Some(0.1);
    s.policy.tif = TimeInForce::Ioc;
    let l = run(
        s,
        &[
            (
                bar(0, [200.0, 201.0, 199.0, 200.0], 1e6),
                signal(Target::Long),
            ),
            (bar(1, [200.0, 202.0, 199.0, 201.0], 300.0), None),
            (bar(2, [202.0, 203.0, 201.0, 202.0], 300.0), None),
        ],
    );
    let o = &l.orders[0];
    assert_eq!(
        (o.status, o.reason.as_str(), o.filled),
        (OrderStatus::Cancelled, "ioc_remainder", 30.0)
    );
    assert_eq!(l.fills.len(), 1);
}

#[test]
fn an_exit_capped_by_volume_closes_in_parts_with_a_trade_each() {
    let mut s = setup();
    s.model.volume_cap = Some(0.5);
    let l = run(
        s,
        &[
            (
                bar(0, [100.0, 101.0, 99.0, 100.0], 1e6),
                signal(Target::Long),
            ),
            (
                bar(1, [100.0, 101.0, 99.0, 100.0], 1e6),
                signal(Target::Flat),
            ),
            (bar(2, [110.0, 111.0, 109.0, 110.0], 120.0), None),
            (bar(3, [120.0, 121.0, 119.0, 120.0], 120.0), None),
        ],
    );
    // 100 shares bought at 100; sold 60 at 110, then 40 at 120.
    let trades: Vec<_> = l
        .trades
        .iter()
        .map(|t| (t.size, t.exit_price, t.pnl))
        .collect();
    assert_eq!(trades, [(60.0, 110.0, 600.0), (40.0, 120.0, 800.0)]);
    assert_eq!(l.equity[3].open_positions, 0);
    assert!(close(l.equity[3].cash, 100_000.0 + 1400.0));
}
