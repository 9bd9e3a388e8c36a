//! Quality gate: every bar is checked against the rules before any feature sees it.
//!
//! The kernel ([`QualityGate`], one per ticker) is plain arithmetic; the operator splits a batch
//! into the bars that pass and [`Reject`] records that travel to the quarantine sink.
//! Rules: finite positive prices; `low <= min(open, close) <= max(open, close) <= high`; finite
//! volume >= 0; strictly increasing time per ticker (duplicates and out-of-order bars are rejected);
//! missing sessions (by the configured calendar) and close-to-close moves above `max_move` are
//! flagged (outliers may be rejected instead, by configuration).

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;

use crate::bar::Bar;
use crate::calendar::sessions_between_days;
use crate::config::{CalendarKind, OutlierAction, QualitySpec};
use crate::frame::Bars;
use crate::time::{EventTime, day_number, format_time};

use super::keyed::{KeyedState, by_time};

pub use crate::reject::{Action, Reason, Reject};

/// Result of checking one bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The bar flows on, with flags (usually none).
    Pass(Vec<(Reason, String)>),
    /// The bar is quarantined.
    Reject(Reason, String),
}

/// Per-ticker quality state.
#[derive(Debug, Clone)]
pub struct QualityGate {
    calendar: CalendarKind,
    max_move: f64,
    outliers: OutlierAction,
    max_jump: f64,
    last_ts: Option<EventTime>,
    last_close: Option<f64>,
    /// The close of the last bar rejected as implausible: a next bar at that level (within
    /// `max_move` of it) confirms a real change of level.
    jumped_to: Option<f64>,
}

impl QualityGate {
    /// A gate with the pipeline's rules.
    pub fn new(spec: &QualitySpec) -> Self {
        QualityGate {
            calendar: spec.calendar,
            max_move: spec.max_move,
            outliers: spec.outlier_action,
            max_jump: spec.max_jump,
            last_ts: None,
            last_close: None,
            jumped_to: None,
        }
    }

    /// Checks one bar of this ticker; a passing bar becomes the reference for the next.
    pub fn check(&mut self, b: &Bar) -> Verdict {
        let prices = [
            ("open", b.open),
            ("high", b.high),
            ("low", b.low),
            ("close", b.close),
        ];
        for (name, v) in prices {
            if v.is_nan() {
                return Verdict::Reject(Reason::MissingField, format!("{name} is empty or NaN"));
            }
            if !v.is_finite() {
                return Verdict::Reject(Reason::NonFinite, format!("{name} is {v}"));
            }
            if v <= 0.0 {
                return Verdict::Reject(Reason::NonPositivePrice, format!("{name} is {v}"));
            }
        }
        if !(b.volume.is_finite() && b.volume >= 0.0) {
            return Verdict::Reject(Reason::BadVolume, format!("volume is {}", b.volume));
        }
        let (lo, hi) = (b.open.min(b.close), b.open.max(b.close));
        if !(b.low <= lo && hi <= b.high) {
            return Verdict::Reject(
                Reason::OhlcInconsistent,
                format!(
                    "open {} high {} low {} close {}",
                    b.open, b.high, b.low, b.close
                ),
            );
        }
        let mut flags = Vec::new();
        if let Some(last) = self.last_ts {
            if b.ts == last {
                return Verdict::Reject(
                    Reason::DuplicateTime,
                    format!("second bar at {}", format_time(b.ts)),
                );
            }
            if b.ts < last {
                return Verdict::Reject(
                    Reason::OutOfOrder,
                    format!("{} after {}", format_time(b.ts), format_time(last)),
                );
            }
            // Consecutive days cannot hide a session: skip the calendar walk for them.
            let missing = if day_number(b.ts) - day_number(last) <= 1 {
                0
            } else {
                sessions_between_days(self.calendar, day_number(last), day_number(b.ts))
            };
            if missing > 0 {
                flags.push((
                    Reason::Gap,
                    format!("{missing} missing session(s) after {}", format_time(last)),
                ));
            }
        }
        let mut level_shift = false;
        if let Some(prev) = self.last_close {
            let ratio = b.close / prev;
            if !(ratio <= self.max_jump && ratio * self.max_jump >= 1.0) {
                let confirmed = self
                    .jumped_to
                    .is_some_and(|j| (b.close / j - 1.0).abs() <= self.max_move);
                if !confirmed {
                    self.jumped_to = Some(b.close);
                    return Verdict::Reject(
                        Reason::Implausible,
                        format!(
                            "close {} is {ratio:.3e} times the previous close {prev} (max_jump {})",
                            b.close, self.max_jump
                        ),
                    );
                }
                level_shift = true;
                flags.push((
                    Reason::Outlier,
                    format!(
                        "close {} vs previous {prev}: a new level, confirmed by the bar before",
                        b.close
                    ),
                ));
            }
        }
        if let Some(prev) = self.last_close.filter(|_| !level_shift) {
            let mv = b.close / prev - 1.0;
            if mv.abs() > self.max_move {
                let detail = format!(
                    "close {} vs previous {} ({:+.1}%)",
                    b.close,
                    prev,
                    mv * 100.0
                );
                if self.outliers == OutlierAction::Reject {
                    return Verdict::Reject(Reason::Outlier, detail);
                }
                flags.push((Reason::Outlier, detail));
            }
        }
        self.last_ts = Some(b.ts);
        self.last_close = Some(b.close);
        self.jumped_to = None;
        Verdict::Pass(flags)
    }
}

/// The quality operator: exchanges bars by ticker, checks them in time order, and splits the stream
/// into passing bars and quarantine records.
pub trait QualityExt<'s> {
    /// Applies the gate. `names` resolves ticker ids for the quarantine records.
    fn quality(
        self,
        spec: &QualitySpec,
        names: std::sync::Arc<crate::bar::Tickers>,
    ) -> (Stream<'s, u64, Vec<Bars>>, Stream<'s, u64, Vec<Reject>>);
}

impl<'s> QualityExt<'s> for Stream<'s, u64, Vec<Bars>> {
    fn quality(
        self,
        spec: &QualitySpec,
        names: std::sync::Arc<crate::bar::Tickers>,
    ) -> (Stream<'s, u64, Vec<Bars>>, Stream<'s, u64, Vec<Reject>>) {
        let spec = spec.clone();
        let mut gates: KeyedState<QualityGate> = KeyedState::new(move || QualityGate::new(&spec));
        let exchange = Exchange::new(|b: &Bars| u64::from(b.dest));
        let out = by_time(
            self,
            exchange,
            "Quality",
            move |_t, batches, out: &mut Vec<Result<Bars, Reject>>| {
                for batch in batches {
                    let mut rejected: Vec<usize> = Vec::new();
                    for (i, b) in batch.iter().enumerate() {
                        let record = |reason, action, detail| Reject {
                            ticker: names.name(b.ticker).to_string(),
                            ts: Some(b.ts),
                            reason,
                            action,
                            detail,
                            origin: batch.origin(i),
                        };
                        match gates.get(b.ticker).check(&b) {
                            Verdict::Pass(flags) => out.extend(
                                flags
                                    .into_iter()
                                    .map(|(r, d)| Err(record(r, Action::Flagged, d))),
                            ),
                            Verdict::Reject(r, d) => {
                                rejected.push(i);
                                out.push(Err(record(r, Action::Rejected, d)));
                            }
                        }
                    }
                    // The common case, a clean batch, flows on without a copy.
                    let pass = if rejected.is_empty() {
                        batch
                    } else {
                        let mut keep = vec![true; batch.len()];
                        for &i in &rejected {
                            keep[i] = false;
                        }
                        batch
                            .filter(&keep.into())
                            .expect("a mask as long as the batch")
                    };
                    if !pass.is_empty() {
                        out.push(Ok(pass));
                    }
                }
            },
        );
        super::keyed::split(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, o: f64, h: f64, l: f64, c: f64) -> Bar {
        Bar {
            ticker: 0,
            ts,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 1.0,
        }
    }

    fn day(s: &str) -> i64 {
        crate::time::parse_time(s).unwrap()
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        let mut g = QualityGate::new(&QualitySpec::default());
        assert_eq!(
            g.check(&bar(day("2015-07-16"), 10.0, 11.0, 9.0, 10.5)),
            Verdict::Pass(vec![])
        );
        let r = |v: Verdict| match v {
            Verdict::Reject(r, _) => Some(r),
            Verdict::Pass(_) => None,
        };
        assert_eq!(
            r(g.check(&bar(day("2015-07-17"), f64::NAN, 11.0, 9.0, 10.5))),
            Some(Reason::MissingField)
        );
        assert_eq!(
            r(g.check(&bar(day("2015-07-17"), 10.0, 11.0, 9.0, 11.5))),
            Some(Reason::OhlcInconsistent)
        );
        assert_eq!(
            r(g.check(&bar(day("2015-07-17"), -1.0, 11.0, 9.0, 10.0))),
            Some(Reason::NonPositivePrice)
        );
        assert_eq!(
            r(g.check(&bar(day("2015-07-16"), 10.0, 11.0, 9.0, 10.5))),
            Some(Reason::DuplicateTime)
        );
        assert_eq!(
            r(g.check(&bar(day("2015-07-15"), 10.0, 11.0, 9.0, 10.5))),
            Some(Reason::OutOfOrder)
        );
    }

    #[test]
    fn flags_gaps_and_outliers_but_lets_the_bar_through() {
        let mut g = QualityGate::new(&QualitySpec::default());
        g.check(&bar(day("2013-04-25"), 10.0, 11.0, 9.0, 10.0));
        match g.check(&bar(day("2013-04-29"), 10.0, 16.0, 9.0, 15.0)) {
            Verdict::Pass(flags) => {
                let reasons: Vec<Reason> = flags.iter().map(|f| f.0).collect();
                assert_eq!(reasons, vec![Reason::Gap, Reason::Outlier]);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_price_impossible_on_its_face_is_rejected_and_a_confirmed_new_level_accepted() {
        let mut g = QualityGate::new(&QualitySpec {
            calendar: CalendarKind::None,
            ..QualitySpec::default()
        });
        let day = crate::time::DAY;
        let p = |ts: i64, c: f64| bar(ts * day, c, c, c, c);
        assert!(matches!(g.check(&p(0, 100.0)), Verdict::Pass(_)));
        // A bad tick: 1e20, then back to normal. The tick is rejected, the next bar passes.
        assert!(matches!(
            g.check(&p(1, 1e20)),
            Verdict::Reject(Reason::Implausible, _)
        ));
        assert!(matches!(g.check(&p(2, 101.0)), Verdict::Pass(_)));
        // A 1:500 reverse split in unadjusted data: the first bar at the new level is rejected,
        // the second confirms it and passes (flagged), and so do the ones after.
        assert!(matches!(
            g.check(&p(3, 50_500.0)),
            Verdict::Reject(Reason::Implausible, _)
        ));
        match g.check(&p(4, 50_600.0)) {
            Verdict::Pass(flags) => assert_eq!(flags[0].0, Reason::Outlier),
            v => panic!("{v:?}"),
        }
        assert!(matches!(g.check(&p(5, 50_700.0)), Verdict::Pass(_)));
        // Down by more than 100x: the same.
        assert!(matches!(
            g.check(&p(6, 1.0)),
            Verdict::Reject(Reason::Implausible, _)
        ));
    }
}
