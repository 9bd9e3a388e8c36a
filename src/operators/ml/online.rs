//! The ML model in the signal slot, one per ticker: a walk-forward state machine over the
//! ticker's bars.
//!
//! Per bar, in this order: (1) the label of the bar `h` back becomes known and joins the training
//! samples with that bar's feature row; (2) the drift monitor scores the row against the current
//! model's training reference; (3) the current model — trained at an earlier bar — predicts;
//! (4) when `retrain_every` bars have passed since the last training, or drift fired, or there is
//! no model yet, and enough samples are labeled, a new model is trained on the samples known now.
//! It serves from the next bar. Nothing here reads a later bar, and training is seeded, so a
//! backtest repeats exactly and does not depend on the worker count.

use std::sync::Arc;

use crate::config::MlSpec;
use crate::time::EventTime;

use super::drift::{DriftMonitor, Reference};
use super::labels::{Class, Labeler};
use super::stacking::{BASE_MODELS, Scores, Stacking, StackingParams, baseline, score};
use super::walk_forward::Span;

/// The model's decision for a bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// `P(up)` over the horizon.
    pub p_up: f64,
    /// Expected return over the horizon: `p · mean up return + (1 − p) · mean down return` of
    /// the training samples.
    pub predicted_return: f64,
}

/// What happened on a bar besides the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events {
    /// A model was trained at this bar.
    pub trained: bool,
    /// The drift monitor fired at this bar.
    pub drift: bool,
}

/// Out-of-sample quality of one training, for the `ml_metrics` output.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingRecord {
    /// Bar time it was trained at.
    pub trained_at: EventTime,
    /// Time of the first training sample.
    pub train_from: EventTime,
    /// Training samples.
    pub samples: usize,
    /// Scores on the purged out-of-fold predictions: each base model, `ensemble`, and
    /// `baseline` (the majority class's frequency).
    pub scores: Vec<(String, Scores)>,
}

/// A drift event, for the `drift` output.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftRecord {
    /// Bar time.
    pub ts: EventTime,
    /// Index of the feature among the model's inputs.
    pub feature: usize,
    /// Its divergence.
    pub kl: f64,
}

/// One ticker's walk-forward model.
#[derive(Debug, Clone)]
pub struct MlTicker {
    spec: Arc<MlSpec>,
    cols: Arc<Vec<usize>>,
    labeler: Labeler<Option<Vec<f64>>>,
    x: Vec<Vec<f64>>,
    y: Vec<i32>,
    ret: Vec<f64>,
    spans: Vec<Span>,
    model: Option<Arc<Stacking>>,
    drift: Option<DriftMonitor>,
    since: usize,
    up_mean: f64,
    down_mean: f64,
    /// Trainings so far.
    pub trainings: u32,
    /// Drift events so far.
    pub drift_events: u32,
    /// Trainings not yet collected by the caller.
    pub records: Vec<TrainingRecord>,
    /// Drift events not yet collected by the caller.
    pub drifts: Vec<DriftRecord>,
}

impl MlTicker {
    /// A fresh ticker reading feature columns `cols`.
    pub fn new(spec: Arc<MlSpec>, cols: Arc<Vec<usize>>) -> Self {
        MlTicker {
            labeler: Labeler::new(spec.horizon, spec.dead_zone),
            spec,
            cols,
            x: Vec::new(),
            y: Vec::new(),
            ret: Vec::new(),
            spans: Vec::new(),
            model: None,
            drift: None,
            since: 0,
            up_mean: 0.0,
            down_mean: 0.0,
            trainings: 0,
            drift_events: 0,
            records: Vec::new(),
            drifts: Vec::new(),
        }
    }

    /// Takes one bar (its time, close and full feature row); returns the prediction of the model
    /// trained so far, if any, and what happened.
    pub fn update(
        &mut self,
        ts: EventTime,
        close: f64,
        row: &[f64],
    ) -> (Option<Prediction>, Events) {
        let x: Option<Vec<f64>> = self
            .cols
            .iter()
            .map(|&c| row.get(c).copied().filter(|v| v.is_finite()))
            .collect();
        let mut ev = Events::default();
        if let Some((label, Some(features))) = self.labeler.push_with(ts, close, x.clone())
            && let Some(class) = label.class
        {
            self.x.push(features);
            self.y.push(i32::from(class == Class::Up));
            self.ret.push(label.ret);
            self.spans.push(Span {
                start: label.ts,
                end: label.known_at,
            });
        }
        if let (Some(d), Some(x)) = (self.drift.as_mut(), x.as_ref())
            && let Some(e) = d.check(x)
        {
            ev.drift = true;
            self.drift_events += 1;
            self.drifts.push(DriftRecord {
                ts,
                feature: e.feature,
                kl: e.kl,
            });
        }
        let prediction = match (&self.model, &x) {
            (Some(m), Some(x)) => m
                .predict_proba(std::slice::from_ref(x))
                .ok()
                .and_then(|p| p.first().copied())
                .map(|p_up| Prediction {
                    p_up,
                    predicted_return: p_up * self.up_mean + (1.0 - p_up) * self.down_mean,
                }),
            _ => None,
        };
        self.since += 1;
        let due = self.model.is_none() || ev.drift || self.since >= self.spec.retrain_every;
        if due && self.y.len() >= self.spec.min_samples {
            ev.trained = self.train(ts);
        }
        (prediction, ev)
    }

    fn train(&mut self, at: EventTime) -> bool {
        let p = StackingParams {
            trees: self.spec.trees,
            seed: self.spec.seed,
            embargo: self.spec.horizon,
            ..StackingParams::default()
        };
        match Stacking::fit(&self.x, &self.y, &self.spans, p) {
            Ok((model, oof)) => {
                let truth: Vec<i32> = oof.rows.iter().map(|&i| self.y[i]).collect();
                let mut scores: Vec<(String, Scores)> = BASE_MODELS
                    .iter()
                    .zip(&oof.base)
                    .map(|(name, p)| ((*name).to_string(), score(p, &truth)))
                    .collect();
                scores.push(("ensemble".into(), score(&oof.ensemble, &truth)));
                scores.push((
                    "baseline".into(),
                    score(&baseline(&self.y, truth.len()), &truth),
                ));
                self.records.push(TrainingRecord {
                    trained_at: at,
                    train_from: self.spans.first().map_or(at, |s| s.start),
                    samples: self.y.len(),
                    scores,
                });
                self.model = Some(Arc::new(model));
                let mean = |up: bool| {
                    let v: Vec<f64> = self
                        .ret
                        .iter()
                        .zip(&self.y)
                        .filter(|(_, y)| (**y == 1) == up)
                        .map(|(r, _)| *r)
                        .collect();
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                };
                self.up_mean = mean(true);
                self.down_mean = mean(false);
                let refs: Option<Vec<Reference>> = (0..self.cols.len())
                    .map(|f| {
                        let col: Vec<f64> = self.x.iter().map(|r| r[f]).collect();
                        Reference::fit(&col, 10, 0.5)
                    })
                    .collect();
                self.drift = refs.map(|r| {
                    DriftMonitor::new(r, self.spec.drift_window, 0.5, self.spec.drift_threshold)
                });
                self.since = 0;
                self.trainings += 1;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "training failed; the previous model keeps serving");
                self.since = 0;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MlSpec {
        toml::from_str(
            "horizon = 2\nmin_samples = 60\nretrain_every = 50\ntrees = 5\ndrift_window = 30",
        )
        .expect("spec")
    }

    #[test]
    fn a_model_serves_from_the_bar_after_its_training() {
        let mut m = MlTicker::new(Arc::new(spec()), Arc::new(vec![0, 1]));
        let mut first = None;
        for i in 0..200i64 {
            let close = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.01;
            let row = [(i as f64 * 0.7).cos(), (i % 7) as f64];
            let (p, ev) = m.update(i, close, &row);
            match first {
                None if ev.trained => {
                    assert!(p.is_none(), "no model served before the first training");
                    first = Some(i);
                }
                None => assert!(p.is_none()),
                Some(_) => assert!(p.is_some(), "bar {i} has a model"),
            }
        }
        // 60 labeled samples need 62 bars (labels arrive 2 bars late).
        assert_eq!(first, Some(61));
        assert!(m.trainings >= 3, "retrained every 50 bars: {}", m.trainings);
    }
}
