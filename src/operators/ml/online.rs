//! The ML model in the signal slot, one per ticker: a walk-forward state machine over the
//! ticker's bars.
//!
//! Per bar, in this order: (1) a model whose training finished on its own thread is installed
//! (live runs only); (2) the label of the bar `h` back becomes known and joins the training
//! samples with that bar's feature row; (3) the current model — trained at an earlier bar —
//! predicts; (4) when `retrain_every` bars have passed since the last training, or the drift
//! operator ([`crate::operators::drift`]) fired on this bar, or there is no model yet, and enough
//! samples are labeled, a new model is trained on the samples known now:
//! the features are ranked (forest importance, mutual information, ANOVA F), the top `select`
//! kept, the stacking ensemble fitted and stored in the model registry.
//!
//! In a backtest the training runs right there and the model serves from the next bar, so a run
//! repeats exactly and does not depend on the worker count. In a live run
//! ([`MlContext::background`]) it runs on the training pool ([`super::trainer`]) while the previous
//! model keeps predicting; the new one serves from the bar after it is ready. Nothing here reads a
//! later bar.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::MlSpec;
use crate::time::EventTime;

use super::labels::{Class, Labeler};
use super::registry::{ModelMeta, StoreHandle};
use super::selection::{combine, f_statistic, mutual_information};
use super::stacking::{
    BASE_MODELS, ModelError, Scores, Stacking, StackingParams, baseline, forest_importances, score,
};
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
    /// A model was trained (or, in a live run, installed) at this bar.
    pub trained: bool,
    /// The drift operator fired at this bar (a retrain trigger).
    pub drift: bool,
}

/// A feature's selection scores at one training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureScore {
    /// Feature column name.
    pub feature: String,
    /// Random-forest impurity importance (normalized to sum 1).
    pub importance: f64,
    /// Mutual information with the class (nats).
    pub mutual_information: f64,
    /// ANOVA F statistic between the classes.
    pub f_statistic: f64,
    /// Mean of its three ranks (1 = best).
    pub rank: f64,
    /// Whether the model reads it.
    pub chosen: bool,
}

/// One training: its window, its features and its out-of-sample quality, for the `ml_metrics`
/// and `ml_features` outputs and the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// Registry id: `<ticker>@<trained_at>`.
    pub model_id: String,
    /// Bar time it was trained at (its samples' labels were all known by then).
    pub trained_at: EventTime,
    /// Bar time it was installed at; it serves from the next bar. Equal to `trained_at` in a
    /// backtest; later in a live run, where training runs on its own thread.
    pub installed_at: EventTime,
    /// Time of the first training sample.
    pub train_from: EventTime,
    /// Training samples.
    pub samples: usize,
    /// Scores on the purged out-of-fold predictions: each base model, `ensemble`, and
    /// `baseline` (the majority class's frequency).
    pub scores: Vec<(String, Scores)>,
    /// Every input's selection scores, the chosen ones marked.
    pub selection: Vec<FeatureScore>,
}

pub use crate::operators::drift::DriftRecord;

/// What every ticker's model shares: the settings, the input columns and their names, where
/// models are stored, and whether training runs on its own thread.
#[derive(Debug, Clone)]
pub struct MlContext {
    /// The pipeline's settings.
    pub spec: MlSpec,
    /// Positions of the inputs in the feature row.
    pub cols: Vec<usize>,
    /// Names of the inputs.
    pub names: Vec<String>,
    /// The registry every trained model goes to, with its clock (none: not stored).
    pub store: Option<StoreHandle>,
    /// Train on the training pool instead of on the bar (live runs).
    pub background: bool,
}

/// A training's result, ready to install.
#[derive(Debug)]
struct Trained {
    model: Arc<Stacking>,
    chosen: Vec<usize>,
    up_mean: f64,
    down_mean: f64,
    record: TrainingRecord,
}

/// A training running on the pool; a clone of the ticker does not inherit it. (The mutex only
/// makes the receiver shareable for the graph builder; one worker ever polls it.)
#[derive(Debug, Default)]
struct InFlight(Option<Mutex<Receiver<Result<Trained, ModelError>>>>);

impl Clone for InFlight {
    fn clone(&self) -> Self {
        InFlight(None)
    }
}

/// The samples a training reads.
#[derive(Debug, Clone)]
struct Job {
    ctx: Arc<MlContext>,
    ticker: String,
    at: EventTime,
    x: Vec<Vec<f64>>,
    y: Vec<i32>,
    ret: Vec<f64>,
    spans: Vec<Span>,
}

/// One ticker's walk-forward model.
#[derive(Debug, Clone)]
pub struct MlTicker {
    ctx: Arc<MlContext>,
    /// Labels carry the ring slot of their bar's input row.
    labeler: Labeler<Option<usize>>,
    /// The last `horizon + 1` input rows (one per bar the labeler took), waiting for labels.
    pending: Vec<f64>,
    slot: usize,
    /// Labeled training rows, flat (`inputs` values each).
    x: Vec<f64>,
    y: Vec<i32>,
    ret: Vec<f64>,
    spans: Vec<Span>,
    model: Option<Arc<Stacking>>,
    chosen: Vec<usize>,
    buf: Vec<f64>,
    in_flight: InFlight,
    since: usize,
    up_mean: f64,
    down_mean: f64,
    /// Trainings so far.
    pub trainings: u32,
    /// Trainings not yet collected by the caller.
    pub records: Vec<TrainingRecord>,
}

impl MlTicker {
    /// A fresh ticker.
    pub fn new(ctx: Arc<MlContext>) -> Self {
        MlTicker {
            labeler: Labeler::new(ctx.spec.horizon, ctx.spec.dead_zone),
            pending: vec![0.0; (ctx.spec.horizon.max(1) + 1) * ctx.cols.len()],
            slot: 0,
            ctx,
            x: Vec::new(),
            y: Vec::new(),
            ret: Vec::new(),
            spans: Vec::new(),
            model: None,
            chosen: Vec::new(),
            buf: Vec::new(),
            in_flight: InFlight::default(),
            since: 0,
            up_mean: 0.0,
            down_mean: 0.0,
            trainings: 0,
            records: Vec::new(),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<MlContext> {
        &self.ctx
    }

    /// Replaces the shared context (the registry, background training) before any bar.
    pub fn set_context(&mut self, ctx: Arc<MlContext>) {
        self.ctx = ctx;
    }

    /// Takes one bar of `ticker` (its time, close and full feature row, and whether the drift
    /// operator fired on it); returns the prediction of the model trained so far, if any, and
    /// what happened.
    pub fn update(
        &mut self,
        ticker: &str,
        ts: EventTime,
        close: f64,
        row: &[f64],
        drift: bool,
    ) -> (Option<Prediction>, Events) {
        let mut ev = Events {
            drift,
            ..Events::default()
        };
        if self.in_flight.0.is_some() {
            ev.trained = self.poll(ts);
        }
        // The row goes to the ring slot the labeler will hand back with its label; the slot moves
        // on only for a bar the labeler takes (a usable close), so no waiting row is overwritten.
        let k = self.ctx.cols.len();
        let slot = self.slot;
        let dst = &mut self.pending[slot * k..(slot + 1) * k];
        let mut finite = true;
        for (d, &c) in dst.iter_mut().zip(&self.ctx.cols) {
            let v = row.get(c).copied().unwrap_or(f64::NAN);
            finite &= v.is_finite();
            *d = v;
        }
        self.buf.clear();
        self.buf.extend(self.chosen.iter().map(|&c| dst[c]));
        if close.is_finite() && close > 0.0 {
            // The ring holds whole rows, so it wraps when the next row would not fit.
            self.slot = if (slot + 1) * k >= self.pending.len() {
                0
            } else {
                slot + 1
            };
        }
        if let Some((label, Some(s))) = self.labeler.push_with(ts, close, finite.then_some(slot))
            && let Some(class) = label.class
        {
            self.x.extend_from_slice(&self.pending[s * k..(s + 1) * k]);
            self.y.push(i32::from(class == Class::Up));
            self.ret.push(label.ret);
            self.spans.push(Span {
                start: label.ts,
                end: label.known_at,
            });
        }
        let prediction = self.model.as_ref().filter(|_| finite).map(|m| {
            let p_up = m.predict_row(&self.buf);
            Prediction {
                p_up,
                predicted_return: p_up * self.up_mean + (1.0 - p_up) * self.down_mean,
            }
        });
        self.since += 1;
        let due = self.model.is_none() || ev.drift || self.since >= self.ctx.spec.retrain_every;
        if due && self.in_flight.0.is_none() && self.y.len() >= self.ctx.spec.min_samples {
            let job = Job {
                ctx: Arc::clone(&self.ctx),
                ticker: ticker.to_string(),
                at: ts,
                x: self.x.chunks(k.max(1)).map(<[f64]>::to_vec).collect(),
                y: self.y.clone(),
                ret: self.ret.clone(),
                spans: self.spans.clone(),
            };
            self.since = 0;
            if self.ctx.background {
                self.in_flight.0 = Some(Mutex::new(super::trainer::spawn(move || train(&job))));
            } else {
                ev.trained = self.install(train(&job), ts);
            }
        }
        (prediction, ev)
    }

    /// Installs a finished background training, if any.
    fn poll(&mut self, ts: EventTime) -> bool {
        let Some(rx) = &self.in_flight.0 else {
            return false;
        };
        let polled = match rx.lock() {
            Ok(rx) => rx.try_recv(),
            Err(_) => Err(TryRecvError::Disconnected),
        };
        match polled {
            Ok(result) => {
                self.in_flight.0 = None;
                self.install(result, ts)
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => {
                tracing::error!(
                    "a training thread ended without a result; the previous model keeps serving"
                );
                self.in_flight.0 = None;
                false
            }
        }
    }

    fn install(&mut self, result: Result<Trained, ModelError>, ts: EventTime) -> bool {
        match result {
            Ok(t) => {
                let mut record = t.record;
                record.installed_at = ts;
                self.records.push(record);
                self.model = Some(t.model);
                self.chosen = t.chosen;
                self.up_mean = t.up_mean;
                self.down_mean = t.down_mean;
                self.trainings += 1;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "training failed; the previous model keeps serving");
                false
            }
        }
    }

    /// Waits for a training in flight and installs it at `ts` (tests; a live run that stops
    /// leaves it uninstalled, its model already in the registry).
    pub fn finish(&mut self, ts: EventTime) -> bool {
        let Some(rx) = self.in_flight.0.take() else {
            return false;
        };
        let result = match rx.into_inner() {
            Ok(rx) => rx.recv(),
            Err(_) => return false,
        };
        match result {
            Ok(result) => self.install(result, ts),
            Err(_) => false,
        }
    }
}

/// Ranks the inputs and picks the top `select` (all when 0 or at least the input count), in
/// input order. Returns the choice and every input's scores.
fn select(
    ctx: &MlContext,
    x: &[Vec<f64>],
    y: &[i32],
    imp: &[f64],
) -> (Vec<usize>, Vec<FeatureScore>) {
    let k = ctx.cols.len();
    let classes: Vec<usize> = y.iter().map(|c| usize::from(*c == 1)).collect();
    let column = |f: usize| x.iter().map(|r| r[f]).collect::<Vec<f64>>();
    let mi: Vec<f64> = (0..k)
        .map(|f| mutual_information(&column(f), &classes, 10))
        .collect();
    let fs: Vec<f64> = (0..k).map(|f| f_statistic(&column(f), &classes)).collect();
    let ranked = combine(&[imp.to_vec(), mi.clone(), fs.clone()]);
    let take = keeps(ctx);
    let mut chosen: Vec<usize> = ranked.iter().take(take).map(|r| r.feature).collect();
    chosen.sort_unstable();
    let rank_of = |f: usize| {
        ranked
            .iter()
            .find(|r| r.feature == f)
            .map_or(f64::NAN, |r| r.combined)
    };
    let scores = (0..k)
        .map(|f| FeatureScore {
            feature: ctx.names.get(f).cloned().unwrap_or_default(),
            importance: imp.get(f).copied().unwrap_or(f64::NAN),
            mutual_information: mi[f],
            f_statistic: fs[f],
            rank: rank_of(f),
            chosen: chosen.contains(&f),
        })
        .collect();
    (chosen, scores)
}

/// How many inputs a training keeps.
fn keeps(ctx: &MlContext) -> usize {
    let k = ctx.cols.len();
    if ctx.spec.select == 0 {
        k
    } else {
        ctx.spec.select.min(k)
    }
}

/// One training: selection, the ensemble and its scores; stored in the
/// registry when there is one. Pure apart from the registry write and the timing.
fn train(job: &Job) -> Result<Trained, ModelError> {
    let ctx = &job.ctx;
    let p = StackingParams {
        trees: ctx.spec.trees,
        seed: ctx.spec.seed,
        embargo: ctx.spec.horizon,
        ..StackingParams::default()
    };
    // Keeping every input, the ensemble's own forest (same data, parameters and seed as a
    // selection forest would have) gives the importances; otherwise a forest on all inputs ranks
    // them first.
    let (model, oof, chosen, selection) = if keeps(ctx) == ctx.cols.len() {
        let (model, oof) = Stacking::fit(&job.x, &job.y, &job.spans, p)?;
        let (chosen, selection) = select(ctx, &job.x, &job.y, model.forest_importances());
        (model, oof, chosen, selection)
    } else {
        let imp = forest_importances(&job.x, &job.y, &p)?;
        let (chosen, selection) = select(ctx, &job.x, &job.y, &imp);
        let xs: Vec<Vec<f64>> = job
            .x
            .iter()
            .map(|r| chosen.iter().map(|&c| r[c]).collect())
            .collect();
        let (model, oof) = Stacking::fit(&xs, &job.y, &job.spans, p)?;
        (model, oof, chosen, selection)
    };
    let truth: Vec<i32> = oof.rows.iter().map(|&i| job.y[i]).collect();
    let mut scores: Vec<(String, Scores)> = BASE_MODELS
        .iter()
        .zip(&oof.base)
        .map(|(name, p)| ((*name).to_string(), score(p, &truth)))
        .collect();
    scores.push(("ensemble".into(), score(&oof.ensemble, &truth)));
    scores.push((
        "baseline".into(),
        score(&baseline(&job.y, truth.len()), &truth),
    ));
    let mean = |up: bool| {
        let (sum, n) = job
            .ret
            .iter()
            .zip(&job.y)
            .filter(|(_, y)| (**y == 1) == up)
            .fold((0.0, 0usize), |(s, n), (r, _)| (s + r, n + 1));
        sum / n.max(1) as f64
    };
    let record = TrainingRecord {
        model_id: format!("{}@{}", job.ticker, job.at),
        trained_at: job.at,
        installed_at: job.at,
        train_from: job.spans.first().map_or(job.at, |s| s.start),
        samples: job.y.len(),
        scores,
        selection,
    };
    if let Some(handle) = &ctx.store {
        let meta = ModelMeta {
            id: record.model_id.clone(),
            ticker: job.ticker.clone(),
            features: chosen
                .iter()
                .map(|&c| ctx.names.get(c).cloned().unwrap_or_default())
                .collect(),
            train_from: record.train_from,
            trained_at: record.trained_at,
            samples: record.samples,
            params: p,
            scores: record.scores.clone(),
            created_unix: (handle.clock)(),
        };
        if let Err(e) = handle.store.save(&meta, &model) {
            tracing::error!(model = %meta.id, error = %e, "the model registry refused a model");
        }
    }
    Ok(Trained {
        model: Arc::new(model),
        chosen,
        up_mean: mean(true),
        down_mean: mean(false),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(background: bool) -> Arc<MlContext> {
        Arc::new(MlContext {
            spec: toml::from_str(
                "horizon = 2\nmin_samples = 60\nretrain_every = 50\ntrees = 5\ndrift_window = 30",
            )
            .expect("spec"),
            cols: vec![0, 1],
            names: vec!["a".into(), "b".into()],
            store: None,
            background,
        })
    }

    fn bar(i: i64) -> (f64, [f64; 2]) {
        let close = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.01;
        (close, [(i as f64 * 0.7).cos(), (i % 7) as f64])
    }

    #[test]
    fn a_model_serves_from_the_bar_after_its_training() {
        let mut m = MlTicker::new(ctx(false));
        let mut first = None;
        for i in 0..200i64 {
            let (close, row) = bar(i);
            let (p, ev) = m.update("T", i, close, &row, false);
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

    #[test]
    fn background_training_keeps_the_old_model_serving_until_the_new_one_is_ready() {
        let mut inline = MlTicker::new(ctx(false));
        let mut live = MlTicker::new(ctx(true));
        let mut served_before_install = false;
        // Trainings fall due at bars 61, 111, 161, … (every 50 bars from the first): 300 bars
        // leave room for the ones skipped while one is still in flight.
        for i in 0..300i64 {
            let (close, row) = bar(i);
            inline.update("T", i, close, &row, false);
            let (p, ev) = live.update("T", i, close, &row, false);
            if live.in_flight.0.is_some() && live.model.is_some() {
                served_before_install |= p.is_some();
            }
            if ev.trained {
                let r = live.records.last().expect("record");
                assert!(r.installed_at >= r.trained_at);
            }
        }
        live.finish(300);
        assert!(live.trainings >= 3, "{}", live.trainings);
        // The same trainings (same cut-offs, same samples) give the same models and scores,
        // whenever they were installed.
        let strip = |v: &[TrainingRecord]| {
            v.iter()
                .map(|r| (r.trained_at, r.samples, format!("{:?}", r.scores)))
                .collect::<Vec<_>>()
        };
        let (a, b) = (strip(&inline.records), strip(&live.records));
        assert_eq!(a[0], b[0]);
        assert!(
            served_before_install,
            "the old model predicted while the new one trained"
        );
    }

    #[test]
    fn selection_keeps_the_top_k_inputs_and_records_every_score() {
        let mut c = (*ctx(false)).clone();
        c.spec.select = 1;
        let mut m = MlTicker::new(Arc::new(c));
        for i in 0..120i64 {
            let (close, row) = bar(i);
            m.update("T", i, close, &row, false);
        }
        let r = &m.records[0];
        assert_eq!(r.selection.len(), 2);
        assert_eq!(r.selection.iter().filter(|s| s.chosen).count(), 1);
        assert_eq!(m.chosen.len(), 1);
        let best = r
            .selection
            .iter()
            .min_by(|a, b| a.rank.total_cmp(&b.rank))
            .expect("ranked");
        assert!(best.chosen);
        assert!(r.selection.iter().all(|s| s.importance.is_finite()));
    }
}
