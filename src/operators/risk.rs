//! Risk: sizing and limits, as plain kernels the portfolio operator calls.
//!
//! Entries are reviewed against, in order: the kill switch, the daily loss stop, the position
//! limit, the sizing rule (Kelly's edge), the cap on one position's share of equity (every sizing
//! mode), the gross and sector exposure limits (an entry is cut to the room they leave) and the
//! minimum order. Exits are refused only by the kill switch. A refused order is kept with its
//! reason, never dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::{RiskSpec, Sizing};
pub use crate::order::EntrySize;
use crate::time::{EventTime, day_number};

/// Kelly's payoff odds `b` for a ticker: the ratio of upside to downside semi-volatility of its last
/// `window` simple returns, `sqrt(mean(max(r,0)²)) / sqrt(mean(min(r,0)²))`. O(1) per bar.
#[derive(Debug, Clone)]
pub struct PayoffEstimator {
    window: usize,
    rets: VecDeque<f64>,
    up2: f64,
    down2: f64,
    prev: Option<f64>,
}

impl PayoffEstimator {
    /// Over the last `window` returns (`window >= 2`).
    pub fn new(window: usize) -> Self {
        PayoffEstimator {
            window: window.max(2),
            rets: VecDeque::with_capacity(window),
            up2: 0.0,
            down2: 0.0,
            prev: None,
        }
    }

    /// Feeds a close; `b` once `window` returns are known and some were negative.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let r = close / prev - 1.0;
        let add = |up: &mut f64, down: &mut f64, r: f64, sign: f64| {
            if r > 0.0 {
                *up += sign * r * r
            } else {
                *down += sign * r * r
            }
        };
        if self.rets.len() == self.window
            && let Some(old) = self.rets.pop_front()
        {
            add(&mut self.up2, &mut self.down2, old, -1.0);
        }
        self.rets.push_back(r);
        add(&mut self.up2, &mut self.down2, r, 1.0);
        if self.rets.len() < self.window || self.down2 <= 1e-300 {
            return None;
        }
        Some((self.up2.max(0.0) / self.down2).sqrt())
    }
}

/// Full Kelly fraction `f* = (p·b − q)/b`.
pub fn kelly(p: f64, b: f64) -> f64 {
    (p * b - (1.0 - p)) / b
}

/// The kill switch: once tripped, no new order passes. Shared with whatever trips it (the live
/// run's `STOP` file watcher); the engine never reads the wall clock through it.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// Halts new orders.
    pub fn trip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether new orders are halted.
    pub fn is_tripped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why risk refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The kill switch is tripped.
    KillSwitch,
    /// Today's loss passed the daily stop.
    DailyLossStop,
    /// Already at the most open positions.
    MaxPositions,
    /// Kelly sees no edge (`f* <= 0`).
    NoEdge,
    /// Kelly's payoff estimate is not warm yet.
    NoPayoffEstimate,
    /// The order would be smaller than the minimum order.
    BelowMinOrder,
    /// Not enough cash to buy one share at the fill.
    InsufficientCash,
    /// Open positions and pending entries already take the gross exposure allowed.
    MaxGrossExposure,
    /// The ticker's sector already takes the exposure allowed in this direction.
    MaxSectorExposure,
}

impl Refusal {
    /// The snake_case name used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::KillSwitch => "kill_switch",
            Refusal::DailyLossStop => "daily_loss_stop",
            Refusal::MaxPositions => "max_positions",
            Refusal::NoEdge => "no_edge",
            Refusal::NoPayoffEstimate => "no_payoff_estimate",
            Refusal::BelowMinOrder => "below_min_order",
            Refusal::InsufficientCash => "insufficient_cash",
            Refusal::MaxGrossExposure => "max_gross_exposure",
            Refusal::MaxSectorExposure => "max_sector_exposure",
        }
    }
}

/// What the portfolio knows when an entry is reviewed.
#[derive(Debug, Clone, Copy)]
pub struct EntryContext {
    /// Equity at this bar's close.
    pub equity: f64,
    /// Cash now.
    pub cash: f64,
    /// Open positions plus pending entries.
    pub positions: usize,
    /// Model confidence (Kelly's p).
    pub confidence: f64,
    /// Kelly's b for the ticker.
    pub payoff: f64,
    /// +1 for a long entry, −1 for a short.
    pub direction: f64,
    /// Gross exposure of the other open positions and pending entries (at entry prices).
    pub gross: f64,
    /// Net exposure of the other positions and pending entries of the ticker's sector (signed;
    /// 0 when no sector limit is set).
    pub sector_net: f64,
}

/// Portfolio-level limits and sizing, with the day's loss tracking.
#[derive(Debug, Clone)]
pub struct RiskEngine {
    spec: RiskSpec,
    kill: KillSwitch,
    day: Option<i64>,
    day_start_equity: f64,
    last_equity: f64,
    stopped_today: bool,
}

impl RiskEngine {
    /// Risk with the pipeline's limits and a kill switch.
    pub fn new(spec: RiskSpec, kill: KillSwitch) -> Self {
        let cap = spec.capital;
        RiskEngine {
            spec,
            kill,
            day: None,
            day_start_equity: cap,
            last_equity: cap,
            stopped_today: false,
        }
    }

    /// The limits in force.
    pub fn spec(&self) -> &RiskSpec {
        &self.spec
    }

    /// Records the equity at a bar's close; a new trading day starts from the previous close.
    /// Whether this mark tripped the daily loss stop (it was not active before it).
    pub fn mark(&mut self, t: EventTime, equity: f64) -> bool {
        let day = day_number(t);
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = self.last_equity;
            self.stopped_today = false;
        }
        self.last_equity = equity;
        let tripped = !self.stopped_today
            && equity <= self.day_start_equity * (1.0 - self.spec.daily_loss_stop);
        self.stopped_today |= tripped;
        tripped
    }

    /// Whether the kill switch is tripped.
    pub fn killed(&self) -> bool {
        self.kill.is_tripped()
    }

    /// Whether the daily loss stop holds for the current day.
    pub fn daily_stop_active(&self) -> bool {
        self.stopped_today
    }

    /// Reviews an exit.
    ///
    /// # Errors
    /// [`Refusal::KillSwitch`] when tripped.
    pub fn review_exit(&self) -> Result<(), Refusal> {
        if self.kill.is_tripped() {
            Err(Refusal::KillSwitch)
        } else {
            Ok(())
        }
    }

    /// Reviews an entry and sizes it.
    ///
    /// # Errors
    /// The first limit that refuses it.
    pub fn review_entry(&self, cx: &EntryContext) -> Result<EntrySize, Refusal> {
        if self.kill.is_tripped() {
            return Err(Refusal::KillSwitch);
        }
        if self.stopped_today {
            return Err(Refusal::DailyLossStop);
        }
        if cx.positions >= self.spec.max_positions {
            return Err(Refusal::MaxPositions);
        }
        let (mut size, f) = match self.spec.sizing {
            Sizing::AllIn {} => (EntrySize::AllIn, 1.0),
            Sizing::FixedFraction { fraction } => (EntrySize::Fraction(fraction), fraction),
            Sizing::Kelly { fraction, cap, .. } => {
                if !cx.payoff.is_finite() || cx.payoff <= 0.0 {
                    return Err(Refusal::NoPayoffEstimate);
                }
                let f = kelly(cx.confidence, cx.payoff);
                if f <= 0.0 {
                    return Err(Refusal::NoEdge);
                }
                let f = (fraction * f).min(cap);
                (EntrySize::Fraction(f), f)
            }
        };
        let mut f = f;
        if f > self.spec.max_position {
            f = self.spec.max_position;
            size = EntrySize::Fraction(f);
        }
        // The room the exposure limits leave, and which limit leaves the least.
        let mut room = (
            self.spec.max_gross_exposure * cx.equity - cx.gross,
            Refusal::MaxGrossExposure,
        );
        if let Some(m) = self.spec.max_sector_exposure {
            let sector = m * cx.equity - cx.direction * cx.sector_net;
            if sector < room.0 {
                room = (sector, Refusal::MaxSectorExposure);
            }
        }
        let wanted = f * cx.equity;
        if wanted > room.0 * (1.0 + 1e-12) {
            if room.0 < self.spec.min_order.max(f64::MIN_POSITIVE) {
                return Err(room.1);
            }
            f = room.0 / cx.equity;
            size = EntrySize::Fraction(f);
        }
        let notional = match size {
            EntrySize::AllIn => cx.cash,
            EntrySize::Fraction(f) => f * cx.equity,
        };
        if notional < self.spec.min_order {
            return Err(Refusal::BelowMinOrder);
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(payoff: f64) -> EntryContext {
        EntryContext {
            equity: 100_000.0,
            cash: 100_000.0,
            positions: 0,
            confidence: 0.55,
            payoff,
            direction: 1.0,
            gross: 0.0,
            sector_net: 0.0,
        }
    }

    #[test]
    fn kelly_is_fractional_and_capped() {
        let r = RiskEngine::new(RiskSpec::default(), KillSwitch::default());
        // p = 0.55, b = 1: f* = 0.1, 0.25·f* = 0.025, capped at 0.02.
        assert_eq!(r.review_entry(&cx(1.0)), Ok(EntrySize::Fraction(0.02)));
        // b = 0.5: f* = (0.275 - 0.45)/0.5 < 0.
        assert_eq!(r.review_entry(&cx(0.5)), Err(Refusal::NoEdge));
        assert_eq!(
            r.review_entry(&cx(f64::NAN)),
            Err(Refusal::NoPayoffEstimate)
        );
    }

    #[test]
    fn limits_refuse_in_order() {
        let kill = KillSwitch::default();
        let mut r = RiskEngine::new(RiskSpec::default(), kill.clone());
        let mut c = cx(1.0);
        c.positions = 50;
        assert_eq!(r.review_entry(&c), Err(Refusal::MaxPositions));
        c.equity = 4000.0;
        c.positions = 0;
        assert_eq!(
            r.review_entry(&c),
            Err(Refusal::BelowMinOrder),
            "2% of 4000 is 80"
        );
        r.mark(crate::time::DAY, 100_000.0);
        r.mark(2 * crate::time::DAY, 97_000.0);
        assert_eq!(r.review_entry(&cx(1.0)), Err(Refusal::DailyLossStop));
        assert_eq!(r.review_exit(), Ok(()));
        r.mark(3 * crate::time::DAY, 97_000.0);
        assert!(r.review_entry(&cx(1.0)).is_ok(), "a new day lifts the stop");
        kill.trip();
        assert_eq!(r.review_exit(), Err(Refusal::KillSwitch));
    }

    fn sized(spec: RiskSpec, cx: &EntryContext) -> Result<EntrySize, Refusal> {
        RiskEngine::new(spec, KillSwitch::default()).review_entry(cx)
    }

    #[test]
    fn the_position_cap_binds_every_sizing_mode() {
        let c = cx(1.0);
        for sizing in [Sizing::AllIn {}, Sizing::FixedFraction { fraction: 0.3 }] {
            let spec = RiskSpec {
                sizing,
                ..RiskSpec::default()
            };
            assert_eq!(sized(spec, &c), Ok(EntrySize::Fraction(0.02)), "{sizing:?}");
        }
        let all_in = RiskSpec {
            sizing: Sizing::AllIn {},
            max_position: 1.0,
            ..RiskSpec::default()
        };
        assert_eq!(sized(all_in, &c), Ok(EntrySize::AllIn), "lifted cap");
        let kelly = RiskSpec {
            max_position: 0.01,
            ..RiskSpec::default()
        };
        assert_eq!(sized(kelly, &c), Ok(EntrySize::Fraction(0.01)));
    }

    #[test]
    fn exposure_limits_cut_an_entry_to_the_room_left_or_refuse_it() {
        let spec = RiskSpec {
            sizing: Sizing::FixedFraction { fraction: 0.3 },
            max_position: 1.0,
            max_gross_exposure: 1.0,
            max_sector_exposure: Some(0.4),
            ..RiskSpec::default()
        };
        let mut c = cx(1.0);
        c.gross = 80_000.0;
        assert_eq!(sized(spec.clone(), &c), Ok(EntrySize::Fraction(0.2)));
        c.gross = 99_950.0;
        assert_eq!(
            sized(spec.clone(), &c),
            Err(Refusal::MaxGrossExposure),
            "50 left, below the 100 minimum"
        );
        c.gross = 0.0;
        c.sector_net = 30_000.0;
        assert_eq!(sized(spec.clone(), &c), Ok(EntrySize::Fraction(0.1)));
        c.sector_net = 40_000.0;
        assert_eq!(sized(spec.clone(), &c), Err(Refusal::MaxSectorExposure));
        c.direction = -1.0;
        assert_eq!(
            sized(spec, &c),
            Ok(EntrySize::Fraction(0.3)),
            "a short reduces the sector's net long"
        );
    }

    #[test]
    fn the_daily_stop_reports_the_mark_that_trips_it_once() {
        let mut r = RiskEngine::new(RiskSpec::default(), KillSwitch::default());
        assert!(!r.mark(crate::time::DAY, 100_000.0));
        assert!(r.mark(crate::time::DAY + 60, 97_000.0));
        assert!(!r.mark(crate::time::DAY + 120, 96_000.0), "already stopped");
        assert!(!r.mark(2 * crate::time::DAY, 96_000.0), "a new day");
    }

    #[test]
    fn payoff_is_the_semivolatility_ratio() {
        let mut p = PayoffEstimator::new(2);
        assert_eq!(p.update(100.0), None);
        assert_eq!(p.update(110.0), None);
        let b = p.update(99.0).unwrap();
        assert!((b - 0.1 / 0.1).abs() < 1e-12);
    }
}
