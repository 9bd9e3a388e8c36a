//! Risk that protects capital, through the portfolio on hand-made bars with known answers: the
//! position cap in every sizing mode, gross and sector exposure limits cutting or refusing
//! entries, the daily loss stop that flattens, and the kill switch that cancels working orders
//! (and flattens when told to). Three markets: US equities in the hundreds, crypto in the tens of
//! thousands, FX near 1.0.

use findashpro::bar::Bar;
use findashpro::config::{RiskSpec, Sizing, StopAction};
use findashpro::operators::portfolio::{Ledger, OrderPolicy, OrderStatus, Portfolio};
use findashpro::operators::risk::{KillSwitch, RiskEngine};
use findashpro::operators::signal::{Signal, Target};
use findashpro::order::{Commission, EntryType, OrderKind, OrderSide, TimeInForce};
use findashpro::sinks::broker::{FillModel, PaperBroker};
use findashpro::time::DAY;

/// 2024-03-04, a Monday, 00:00 UTC.
const T0: i64 = 1_709_510_400;

fn bar(ticker: u32, day: i64, ohlc: [f64; 4]) -> Bar {
    Bar {
        ticker,
        ts: T0 + day * DAY,
        open: ohlc[0],
        high: ohlc[1],
        low: ohlc[2],
        close: ohlc[3],
        volume: 1e9,
    }
}

fn flat(ticker: u32, day: i64, price: f64) -> Bar {
    bar(ticker, day, [price, price, price, price])
}

fn long() -> Option<Signal> {
    Some(Signal {
        target: Target::Long,
        confidence: 0.6,
        predicted_return: f64::NAN,
    })
}

fn portfolio(risk: RiskSpec, kill: KillSwitch, policy: OrderPolicy) -> Portfolio<PaperBroker> {
    Portfolio::with_policy(
        RiskEngine::new(risk, kill),
        PaperBroker::new(FillModel {
            slippage: 0.0,
            commission: Commission::default(),
            whole_shares: false,
            volume_cap: None,
        }),
        policy,
    )
}

fn base(sizing: Sizing) -> RiskSpec {
    RiskSpec {
        capital: 100_000.0,
        sizing,
        min_order: 0.0,
        daily_loss_stop: 1.0,
        ..RiskSpec::default()
    }
}

fn entry_value(l: &Ledger, ticker: u32) -> f64 {
    l.fills
        .iter()
        .filter(|f| f.ticker == ticker && f.side == OrderSide::Buy)
        .map(|f| f.quantity * f.price)
        .sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn the_two_percent_cap_binds_all_in_and_fixed_fraction_sizing() {
    for sizing in [Sizing::AllIn {}, Sizing::FixedFraction { fraction: 0.5 }] {
        let mut p = portfolio(base(sizing), KillSwitch::default(), OrderPolicy::default());
        // Crypto in the tens of thousands: 2 % of 100 000 is 0.0465… BTC at 43 000.
        p.step(T0, &[(flat(0, 0, 42_000.0), long(), 1.0)]);
        p.step(T0 + DAY, &[(flat(0, 1, 43_000.0), long(), 1.0)]);
        let l = p.finish();
        assert_eq!(l.fills.len(), 1, "{sizing:?}");
        let f = &l.fills[0];
        assert!(close(f.quantity * f.price, 2_000.0), "{sizing:?}: {f:?}");
        assert!(close(f.quantity, 2_000.0 / 43_000.0));
    }
}

#[test]
fn gross_exposure_cuts_the_last_entry_and_refuses_the_next() {
    let risk = RiskSpec {
        max_position: 0.4,
        max_gross_exposure: 1.0,
        min_order: 100.0,
        ..base(Sizing::FixedFraction { fraction: 0.4 })
    };
    let mut p = portfolio(risk, KillSwitch::default(), OrderPolicy::default());
    // Equities in the hundreds, four tickers wanting 40 % each on the same bar.
    let day0: Vec<_> = (0..4).map(|t| (flat(t, 0, 100.0), long(), 1.0)).collect();
    p.step(T0, &day0);
    let day1: Vec<_> = (0..4).map(|t| (flat(t, 1, 100.0), None, 1.0)).collect();
    p.step(T0 + DAY, &day1);
    let l = p.finish();
    assert!(close(entry_value(&l, 0), 40_000.0));
    assert!(close(entry_value(&l, 1), 40_000.0));
    assert!(
        close(entry_value(&l, 2), 20_000.0),
        "cut to the room left: {}",
        entry_value(&l, 2)
    );
    let refused = l
        .orders
        .iter()
        .find(|o| o.order.ticker == 3)
        .expect("order");
    assert_eq!(
        (refused.status, refused.reason.as_str()),
        (OrderStatus::Refused, "max_gross_exposure")
    );
}

#[test]
fn sector_exposure_limits_one_sector_and_leaves_the_others() {
    let risk = RiskSpec {
        max_position: 0.1,
        max_sector_exposure: Some(0.15),
        ..base(Sizing::FixedFraction { fraction: 0.1 })
    };
    let mut p = portfolio(risk, KillSwitch::default(), OrderPolicy::default());
    p.set_sectors(vec![
        "Tech".into(),
        "Tech".into(),
        "Tech".into(),
        "Energy".into(),
    ]);
    let day0: Vec<_> = (0..4).map(|t| (flat(t, 0, 250.0), long(), 1.0)).collect();
    p.step(T0, &day0);
    let day1: Vec<_> = (0..4).map(|t| (flat(t, 1, 250.0), None, 1.0)).collect();
    p.step(T0 + DAY, &day1);
    let l = p.finish();
    assert!(close(entry_value(&l, 0), 10_000.0));
    assert!(close(entry_value(&l, 1), 5_000.0), "Tech's last 5 %");
    let third = l
        .orders
        .iter()
        .find(|o| o.order.ticker == 2)
        .expect("order");
    assert_eq!(third.reason, "max_sector_exposure");
    assert!(close(entry_value(&l, 3), 10_000.0), "Energy is free");
}

#[test]
fn the_daily_loss_stop_flattens_at_the_next_bar_and_lifts_the_next_day() {
    let risk = RiskSpec {
        max_position: 1.0,
        daily_loss_stop: 0.02,
        on_daily_stop: StopAction::Flatten,
        ..base(Sizing::FixedFraction { fraction: 0.5 })
    };
    let mut p = portfolio(risk, KillSwitch::default(), OrderPolicy::default());
    // FX near 1.0, hourly bars within one UTC day, then the next day.
    let h = 3600;
    let eur = |ts: i64, o: f64, c: f64| Bar {
        ticker: 0,
        ts,
        open: o,
        high: o.max(c),
        low: o.min(c),
        close: c,
        volume: 1e9,
    };
    p.step(T0 + 1, &[(eur(T0 + 1, 1.0850, 1.0850), long(), 1.0)]);
    // Filled at 1.0850 with half the equity; a 5 % fall is a 2.5 % loss of equity.
    p.step(T0 + h, &[(eur(T0 + h, 1.0850, 1.030_75), long(), 1.0)]);
    p.step(
        T0 + 2 * h,
        &[(eur(T0 + 2 * h, 1.0300, 1.0400), long(), 1.0)],
    );
    p.step(
        T0 + 3 * h,
        &[(eur(T0 + 3 * h, 1.0400, 1.0400), long(), 1.0)],
    );
    p.step(T0 + DAY, &[(eur(T0 + DAY, 1.0400, 1.0400), long(), 1.0)]);
    p.step(
        T0 + DAY + h,
        &[(eur(T0 + DAY + h, 1.0410, 1.0410), None, 1.0)],
    );
    let l = p.finish();
    let exit = l
        .orders
        .iter()
        .find(|o| o.order.kind == OrderKind::Exit)
        .expect("flatten exit");
    assert_eq!(exit.order.ts, T0 + h, "decided at the mark that stopped");
    assert_eq!(exit.status, OrderStatus::Filled);
    let sold = l
        .fills
        .iter()
        .find(|f| f.side == OrderSide::Sell)
        .expect("sold");
    assert_eq!((sold.ts, sold.price), (T0 + 2 * h, 1.0300));
    let refused: Vec<_> = l
        .orders
        .iter()
        .filter(|o| o.status == OrderStatus::Refused)
        .map(|o| (o.order.ts, o.reason.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (T0 + 2 * h, "daily_loss_stop"),
            (T0 + 3 * h, "daily_loss_stop")
        ],
        "the signal still says long: entries are refused for the rest of the day"
    );
    let reentry = l
        .fills
        .iter()
        .filter(|f| f.side == OrderSide::Buy)
        .nth(1)
        .expect("re-entered the next day");
    assert_eq!(reentry.ts, T0 + DAY + h);
}

#[test]
fn the_kill_switch_cancels_working_orders_and_flattens_when_told() {
    for on_kill in [StopAction::Block, StopAction::Flatten] {
        let kill = KillSwitch::default();
        let risk = RiskSpec {
            max_position: 0.1,
            on_kill,
            stop_loss: Some(0.05),
            ..base(Sizing::FixedFraction { fraction: 0.1 })
        };
        let policy = OrderPolicy {
            entry: EntryType::Limit,
            offset: 0.05,
            tif: TimeInForce::Gtc,
            stop_loss: Some(0.05),
            ..OrderPolicy::default()
        };
        let mut p = portfolio(risk, kill.clone(), policy);
        // Ticker 0 enters at its limit 95 on day 1; ticker 1's limit (380) is never reached.
        p.step(
            T0,
            &[
                (flat(0, 0, 100.0), long(), 1.0),
                (flat(1, 0, 400.0), long(), 1.0),
            ],
        );
        p.step(
            T0 + DAY,
            &[
                (bar(0, 1, [99.0, 99.0, 94.0, 96.0]), long(), 1.0),
                (flat(1, 1, 400.0), long(), 1.0),
            ],
        );
        kill.trip();
        p.step(
            T0 + 2 * DAY,
            &[
                (flat(0, 2, 97.0), long(), 1.0),
                (flat(1, 2, 401.0), long(), 1.0),
            ],
        );
        let l = p.finish();
        let status = |ticker: u32, kind: OrderKind| {
            l.orders
                .iter()
                .find(|o| o.order.ticker == ticker && o.order.kind == kind)
                .map(|o| (o.status, o.reason.clone()))
        };
        let working_entry = l
            .orders
            .iter()
            .find(|o| o.order.ticker == 1 && o.status != OrderStatus::Refused)
            .expect("ticker 1's entry");
        assert_eq!(
            (working_entry.status, working_entry.reason.as_str()),
            (OrderStatus::Cancelled, "kill_switch"),
            "{on_kill:?}"
        );
        match on_kill {
            StopAction::Block => {
                assert_eq!(status(0, OrderKind::Exit), None, "positions stay");
                assert_eq!(
                    status(0, OrderKind::StopLoss).map(|s| s.0),
                    Some(OrderStatus::Unfilled),
                    "the stop-loss keeps protecting the position"
                );
            }
            StopAction::Flatten => {
                assert_eq!(
                    status(0, OrderKind::Exit),
                    Some((OrderStatus::Filled, String::new()))
                );
                let sold = l
                    .fills
                    .iter()
                    .find(|f| f.side == OrderSide::Sell)
                    .expect("sold");
                assert_eq!((sold.ts, sold.price), (T0 + 2 * DAY, 97.0), "at the open");
                assert_eq!(
                    status(0, OrderKind::StopLoss),
                    Some((OrderStatus::Cancelled, "replaced_by_exit".into()))
                );
            }
        }
        assert!(
            l.orders
                .iter()
                .filter(|o| o.order.ts == T0 + 2 * DAY && o.order.kind != OrderKind::Exit)
                .all(|o| o.status == OrderStatus::Refused && o.reason == "kill_switch"),
            "no new entry after the switch"
        );
    }
}
