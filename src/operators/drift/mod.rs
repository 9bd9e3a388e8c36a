//! Drift operator: watches each ticker's model inputs for a change of distribution.
//!
//! Per ticker, a state machine ([`DriftTicker`]): it gathers a reference (the first `reference`
//! bars whose watched values are all finite), bins each watched feature at the reference's
//! quantiles, then scores every following bar's recent window against it with the O(features)
//! KL monitor of [`monitor`]. When a feature's divergence passes the threshold it emits a
//! [`DriftRecord`] at that bar's time and gathers a new reference from the bars after it: the
//! new regime becomes what the next event is measured against, so one shift raises one event,
//! not one per bar.
//!
//! The events travel on the feature edge beside the rows they are about
//! ([`FeatureBatch::drifts`]): same key, same worker, no extra exchange. The model stage reads
//! them (the ensemble retrains on them) and forwards them to the sinks, which record each with
//! an alert. A bar's event depends on that bar and the ones before it only.

pub mod monitor;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;

use crate::config::DriftSpec;
use crate::time::EventTime;

use self::monitor::{DriftMonitor, Reference};
use super::features::FeatureBatch;
use super::keyed::{KeyedState, in_order};

/// Laplace smoothing of the reference's bin probabilities: an empty bin never gives an
/// infinite divergence.
const ALPHA: f64 = 0.5;

/// A drift event, for the `drift` output, the `drift_events` table and the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRecord {
    /// Bar time: the bar that tripped it.
    pub ts: EventTime,
    /// Index of the feature among the watched ones.
    pub feature: usize,
    /// Its name.
    pub name: String,
    /// Its divergence.
    pub kl: f64,
}

/// The operator's settings resolved against the feature columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftPlan {
    /// Window, reference, bins, threshold.
    pub spec: DriftSpec,
    /// Positions of the watched features in the feature row.
    pub cols: Vec<usize>,
    /// Their names.
    pub names: Vec<String>,
}

impl DriftPlan {
    /// Resolves `spec.features` (or, when empty, `default_cols`) against `columns`; `None` names
    /// a feature that is not a column (the pipeline's validation has told the user already).
    pub fn new(spec: &DriftSpec, columns: &[String], default_cols: &[usize]) -> Option<Self> {
        let cols: Vec<usize> = if spec.features.is_empty() {
            default_cols.to_vec()
        } else {
            spec.features
                .iter()
                .map(|f| columns.iter().position(|c| c == f))
                .collect::<Option<_>>()?
        };
        let names = cols
            .iter()
            .map(|&c| columns.get(c).cloned())
            .collect::<Option<_>>()?;
        Some(DriftPlan {
            spec: spec.clone(),
            cols,
            names,
        })
    }
}

/// One ticker's drift state: gathering a reference, or monitoring against one.
#[derive(Debug, Clone)]
pub struct DriftTicker {
    plan: Arc<DriftPlan>,
    /// Reference rows gathered so far, row-major (`cols.len()` per row).
    gathering: Vec<f64>,
    monitor: Option<DriftMonitor>,
    row: Vec<f64>,
}

impl DriftTicker {
    /// A ticker that has seen no bar.
    pub fn new(plan: Arc<DriftPlan>) -> Self {
        DriftTicker {
            plan,
            gathering: Vec::new(),
            monitor: None,
            row: Vec::new(),
        }
    }

    /// Takes the bar at `ts` with its feature row; the event if this bar tripped the monitor.
    /// Bars with a non-finite watched value (warm-up, a gap) are skipped.
    pub fn update(&mut self, ts: EventTime, row: &[f64]) -> Option<DriftRecord> {
        let plan = &*self.plan;
        self.row.clear();
        self.row.extend(
            plan.cols
                .iter()
                .map(|&c| row.get(c).copied().unwrap_or(f64::NAN)),
        );
        if !self.row.iter().all(|v| v.is_finite()) {
            return None;
        }
        if let Some(m) = self.monitor.as_mut() {
            let e = m.check(&self.row)?;
            self.monitor = None;
            return Some(DriftRecord {
                ts,
                feature: e.feature,
                name: plan.names.get(e.feature).cloned().unwrap_or_default(),
                kl: e.kl,
            });
        }
        self.gathering.extend_from_slice(&self.row);
        let k = plan.cols.len().max(1);
        if self.gathering.len() / k >= plan.spec.reference {
            let refs: Option<Vec<Reference>> = (0..plan.cols.len())
                .map(|f| {
                    let col: Vec<f64> = self.gathering.iter().skip(f).step_by(k).copied().collect();
                    Reference::fit(&col, plan.spec.bins, ALPHA)
                })
                .collect();
            self.gathering = Vec::new();
            self.monitor =
                refs.map(|r| DriftMonitor::new(r, plan.spec.window, ALPHA, plan.spec.threshold));
        }
        None
    }
}

/// Extension trait adding the drift stage.
pub trait DriftExt<'s> {
    /// Watches the features of `plan` per ticker and attaches each bar's event to its batch.
    fn drift(self, plan: DriftPlan) -> Stream<'s, u64, Vec<FeatureBatch>>;
}

impl<'s> DriftExt<'s> for Stream<'s, u64, Vec<FeatureBatch>> {
    fn drift(self, plan: DriftPlan) -> Stream<'s, u64, Vec<FeatureBatch>> {
        let plan = Arc::new(plan);
        let mut state = KeyedState::new(move || DriftTicker::new(Arc::clone(&plan)));
        // Input arrives exchanged by ticker; a ticker has one bar per time, and times come in
        // order, so each ticker's bars reach its state machine in time order.
        in_order(self, "Drift", move |_t, batches, out| {
            for mut fb in batches {
                for i in 0..fb.bars.len() {
                    let t = fb.bars.ticker()[i];
                    if let Some(d) = state.get(t).update(fb.bars.ts()[i], fb.row(i)) {
                        tracing::info!(ticker = t, ts = d.ts, feature = %d.name, kl = d.kl, "drift alert");
                        fb.drifts.push((i as u32, d));
                    }
                }
                out.push(fb);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(reference: usize, window: usize) -> Arc<DriftPlan> {
        let spec = DriftSpec {
            reference,
            window,
            threshold: 0.5,
            ..DriftSpec::default()
        };
        Arc::new(DriftPlan::new(&spec, &["A".into(), "B".into()], &[1]).expect("plan"))
    }

    /// A deterministic, well-spread sequence in [0, 1).
    fn spread(i: usize) -> f64 {
        (i as f64 * 0.618_033_988_749_895).fract()
    }

    #[test]
    fn a_shift_fires_once_then_the_new_regime_is_the_reference() {
        let mut d = DriftTicker::new(plan(200, 50));
        let mut events = Vec::new();
        for i in 0..1200 {
            // Column 1 is watched: uniform on [0, 1) for 600 bars, then on [5, 6).
            let x = spread(i) + if i >= 600 { 5.0 } else { 0.0 };
            if let Some(e) = d.update(i as i64, &[f64::NAN, x]) {
                events.push(e);
            }
        }
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert!((600..650).contains(&e.ts), "fires within a window: {e:?}");
        assert_eq!((e.feature, e.name.as_str()), (0, "B"));
        assert!(e.kl > 0.5);
    }

    #[test]
    fn no_event_before_the_reference_and_window_are_full_nor_on_non_finite_rows() {
        let mut d = DriftTicker::new(plan(100, 30));
        for i in 0..129 {
            assert_eq!(
                d.update(i, &[0.0, 1e6 * (i / 100) as f64 + spread(i as usize)]),
                None
            );
        }
        for i in 129..200 {
            assert_eq!(
                d.update(i, &[0.0, f64::NAN]),
                None,
                "non-finite rows are skipped"
            );
        }
    }

    #[test]
    fn explicit_features_resolve_by_name_and_unknown_ones_do_not() {
        let cols = ["A".to_string(), "B".to_string(), "C".to_string()];
        let spec = DriftSpec {
            features: vec!["C".into(), "A".into()],
            ..DriftSpec::default()
        };
        let p = DriftPlan::new(&spec, &cols, &[1]).expect("plan");
        assert_eq!(
            (p.cols, p.names),
            (vec![2, 0], vec!["C".to_string(), "A".to_string()])
        );
        let spec = DriftSpec {
            features: vec!["Z".into()],
            ..DriftSpec::default()
        };
        assert_eq!(DriftPlan::new(&spec, &cols, &[1]), None);
    }
}
