//! Signal operator: the pipeline's model turns each ticker's features into a target position.
//!
//! The model is a transparent rule ([`RuleModel`]: a crossover of two features or a threshold on
//! one) or the ML ensemble in the same slot, which retrains on the drift operator's events. The
//! operator also keeps the per-ticker payoff estimate Kelly sizing needs, and sends everything,
//! with the drift events that rode in on the feature edge, to the portfolio worker.

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;

use crate::bar::TickerId;
use crate::config::{ModelSpec, Side};
use crate::frame::Bars;
use std::sync::Arc;

use crate::bar::Tickers;
use crate::meter::{Meter, Stage};
use crate::operators::ml::online::{DriftRecord, MlContext, MlTicker, TrainingRecord};
use crate::operators::ml::registry::StoreHandle;

use super::benchmark::{Benchmark, Share, Tracker};
use super::features::FeatureBatch;
use super::keyed::{KeyedState, in_order_then};
use super::risk::PayoffEstimator;

/// The position a model wants for a ticker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Hold a long position.
    Long,
    /// Hold nothing.
    Flat,
    /// Hold a short position.
    Short,
}

impl Target {
    /// +1, 0, -1.
    pub fn direction(self) -> i8 {
        match self {
            Target::Long => 1,
            Target::Flat => 0,
            Target::Short => -1,
        }
    }

    /// The action name written to the signals output.
    pub fn action(self) -> &'static str {
        match self {
            Target::Long => "buy",
            Target::Flat => "sell",
            Target::Short => "short",
        }
    }
}

/// A model's output for one bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Wanted position.
    pub target: Target,
    /// Probability that acting on it wins (Kelly's p).
    pub confidence: f64,
    /// Predicted return over the model's horizon; NaN for rule models.
    pub predicted_return: f64,
}

/// Rule models over declared feature columns; state is the previous bar's values.
#[derive(Debug, Clone)]
pub struct RuleModel {
    kind: RuleKind,
    confidence: f64,
    prev: Option<(f64, f64)>,
}

#[derive(Debug, Clone)]
enum RuleKind {
    Crossover {
        fast: usize,
        slow: usize,
        down: Target,
    },
    Threshold {
        col: usize,
        long_when: Side,
        enter: f64,
        exit: f64,
        down: Target,
    },
    /// The walk-forward stacking ensemble of this ticker.
    Ml {
        model: Box<crate::operators::ml::online::MlTicker>,
        enter: f64,
        exit: f64,
    },
}

impl RuleModel {
    /// Builds the model, resolving feature names to column positions in `columns`.
    /// Returns `None` if a name is not a column (the pipeline validation prevents that).
    pub fn new(spec: &ModelSpec, columns: &[String]) -> Option<Self> {
        let pos = |n: &str| columns.iter().position(|c| c == n);
        let down = |short: bool| if short { Target::Short } else { Target::Flat };
        let (kind, confidence) = match spec {
            ModelSpec::Crossover {
                fast,
                slow,
                short,
                confidence,
            } => (
                RuleKind::Crossover {
                    fast: pos(fast)?,
                    slow: pos(slow)?,
                    down: down(*short),
                },
                *confidence,
            ),
            ModelSpec::Threshold {
                feature,
                long_when,
                enter,
                exit,
                short,
                confidence,
            } => (
                RuleKind::Threshold {
                    col: pos(feature)?,
                    long_when: *long_when,
                    enter: *enter,
                    exit: *exit,
                    down: down(*short),
                },
                *confidence,
            ),
            ModelSpec::Ml(m) => {
                let cols: Vec<usize> = if m.inputs.is_empty() {
                    (0..columns.len()).collect()
                } else {
                    m.inputs.iter().map(|i| pos(i)).collect::<Option<_>>()?
                };
                let names = cols.iter().map(|&c| columns[c].clone()).collect();
                (
                    RuleKind::Ml {
                        model: Box::new(MlTicker::new(Arc::new(MlContext {
                            spec: m.clone(),
                            cols,
                            names,
                            store: None,
                            background: false,
                        }))),
                        enter: m.enter,
                        exit: m.exit,
                    },
                    m.enter,
                )
            }
        };
        Some(RuleModel {
            kind,
            confidence,
            prev: None,
        })
    }

    /// Sets where an ML model stores its trainings and whether it trains on its own thread (live
    /// runs); rule models ignore it.
    pub fn configure_ml(&mut self, store: Option<StoreHandle>, background: bool) {
        if let RuleKind::Ml { model, .. } = &mut self.kind {
            let mut ctx = (**model.context()).clone();
            ctx.store = store;
            ctx.background = background;
            model.set_context(Arc::new(ctx));
        }
    }

    /// Positions of the feature columns the model reads: what the drift operator watches unless
    /// `[drift] features` says otherwise.
    pub fn inputs(&self) -> Vec<usize> {
        match &self.kind {
            RuleKind::Crossover { fast, slow, .. } => vec![*fast, *slow],
            RuleKind::Threshold { col, .. } => vec![*col],
            RuleKind::Ml { model, .. } => model.context().cols.clone(),
        }
    }

    /// The ML model's settings, if this is one.
    pub fn ml_spec(&self) -> Option<&crate::config::MlSpec> {
        match &self.kind {
            RuleKind::Ml { model, .. } => Some(&model.context().spec),
            _ => None,
        }
    }

    /// Decides on one bar of `ticker`: its time, close and feature row, and whether the drift
    /// operator fired on it. Rule models read only the row; the ML model also learns from the bar
    /// and retrains on drift (see [`crate::operators::ml::online`]).
    pub fn update_bar(
        &mut self,
        ticker: &str,
        ts: crate::time::EventTime,
        close: f64,
        row: &[f64],
        drift: bool,
    ) -> Option<Signal> {
        if let RuleKind::Ml { model, enter, exit } = &mut self.kind {
            let (p, _) = model.update(ticker, ts, close, row, drift);
            let p = p?;
            let (target, confidence) = if p.p_up > *enter {
                (Target::Long, p.p_up)
            } else if p.p_up < *exit {
                (Target::Flat, 1.0 - p.p_up)
            } else {
                return None;
            };
            return Some(Signal {
                target,
                confidence,
                predicted_return: p.predicted_return,
            });
        }
        self.update(row)
    }

    /// Takes the ML trainings recorded since the last call (none for rules).
    pub fn take_trainings(&mut self) -> Vec<TrainingRecord> {
        match &mut self.kind {
            RuleKind::Ml { model, .. } => std::mem::take(&mut model.records),
            _ => Vec::new(),
        }
    }

    /// Decides on one bar's feature row. Crossover: strict on both bars (equality is no cross).
    pub fn update(&mut self, row: &[f64]) -> Option<Signal> {
        let target = match &self.kind {
            RuleKind::Ml { .. } => None,
            &RuleKind::Crossover { fast, slow, down } => {
                let cur = (row[fast], row[slow]);
                let prev = self.prev.replace(cur);
                let (pf, ps) = prev?;
                let (f, s) = cur;
                if [pf, ps, f, s].iter().any(|v| v.is_nan()) {
                    None
                } else if pf < ps && f > s {
                    Some(Target::Long)
                } else if pf > ps && f < s {
                    Some(down)
                } else {
                    None
                }
            }
            &RuleKind::Threshold {
                col,
                long_when,
                enter,
                exit,
                down,
            } => {
                let v = row[col];
                match long_when {
                    _ if v.is_nan() => None,
                    Side::Below if v < enter => Some(Target::Long),
                    Side::Below if v > exit => Some(down),
                    Side::Above if v > enter => Some(Target::Long),
                    Side::Above if v < exit => Some(down),
                    _ => None,
                }
            }
        };
        target.map(|target| Signal {
            target,
            confidence: self.confidence,
            predicted_return: f64::NAN,
        })
    }
}

/// Bars with the model's signal and the Kelly payoff estimate, bound for the portfolio.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalBatch {
    /// The bars.
    pub bars: Bars,
    /// The signal of each bar, if the model has one.
    pub signal: Vec<Option<Signal>>,
    /// Kelly's b for each ticker as of this bar (NaN until warm).
    pub payoff: Vec<f64>,
    /// ML trainings that happened on these bars.
    pub trainings: Vec<(TickerId, TrainingRecord)>,
    /// Drift events on these bars (from the drift operator), for the sinks.
    pub drifts: Vec<(TickerId, DriftRecord)>,
    /// The rows whose signal is set, ascending: what the portfolio decides on, found on the
    /// worker that made the signals rather than by the portfolio's scan of every row
    /// ([`SignalBatch::index_signals`]).
    pub signalled: Vec<u32>,
    /// These bars' part of the benchmark return at their time, summed on the worker that owns
    /// their tickers (per-ticker work the portfolio's one worker need not do).
    pub benchmark: Share,
}

impl SignalBatch {
    /// Records which rows have a signal ([`SignalBatch::signalled`]), after `signal` is set.
    pub fn index_signals(&mut self) {
        self.signalled.clear();
        self.signalled.extend(
            self.signal
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_some())
                .map(|(i, _)| i as u32),
        );
    }
}

struct TickerModel {
    model: RuleModel,
    /// Kelly's payoff estimate, when the sizing reads it.
    payoff: Option<PayoffEstimator>,
}

/// Extension trait adding the signal stage.
pub trait SignalExt<'s> {
    /// Runs the model of `spec` over the feature `columns`; `payoff_window` sizes Kelly's estimate
    /// (`None`: the sizing does not read it, and the payoff is NaN). Each batch also carries its
    /// bars' part of the `benchmark` return.
    /// Each activation's predictions (and retrainings) are timed on `meter` ([`Stage::Predict`]).
    fn signals(
        self,
        model: RuleModel,
        payoff_window: Option<usize>,
        tickers: Arc<Tickers>,
        meter: Meter,
        benchmark: Benchmark,
    ) -> Stream<'s, u64, Vec<SignalBatch>>;
}

impl<'s> SignalExt<'s> for Stream<'s, u64, Vec<FeatureBatch>> {
    fn signals(
        self,
        model: RuleModel,
        payoff_window: Option<usize>,
        tickers: Arc<Tickers>,
        meter: Meter,
        benchmark: Benchmark,
    ) -> Stream<'s, u64, Vec<SignalBatch>> {
        let mut bench = Tracker::new(benchmark);
        // An ML ensemble's state is tens of kilobytes: it takes a ticker's bars of all the ready
        // times in a row, so its model stays in cache. A rule's state is a few bytes: it takes
        // the bars as they lie, time by time, so the batches stream through the cache once.
        let ticker_major = model.ml_spec().is_some();
        let mut state = KeyedState::new(move || TickerModel {
            model: model.clone(),
            payoff: payoff_window.map(PayoffEstimator::new),
        });
        in_order_then(
            self,
            "Signal",
            move |times, outs| {
                let started = meter.start();
                let batches: Vec<Vec<FeatureBatch>> = times.into_iter().map(|(_, b)| b).collect();
                let mut results: Vec<Vec<SignalBatch>> = batches
                    .iter()
                    .map(|fbs| {
                        fbs.iter()
                            .map(|fb| SignalBatch {
                                signal: vec![None; fb.bars.len()],
                                payoff: vec![f64::NAN; fb.bars.len()],
                                ..SignalBatch::default()
                            })
                            .collect()
                    })
                    .collect();
                let mut order: Vec<(TickerId, u32, u32, u32)> = Vec::new();
                for (k, fbs) in batches.iter().enumerate() {
                    for (j, fb) in fbs.iter().enumerate() {
                        order.extend(
                            (0..fb.bars.len())
                                .map(|i| (fb.bars.ticker()[i], k as u32, j as u32, i as u32)),
                        );
                    }
                }
                if ticker_major {
                    // Stable: each ticker's bars stay in time order.
                    order.sort_by_key(|o| o.0);
                }
                for (t, k, j, i) in order {
                    let (k, j, i) = (k as usize, j as usize, i as usize);
                    let fb = &batches[k][j];
                    let drift = fb.drifts.iter().any(|(at, _)| *at as usize == i);
                    let s = state.get(t);
                    let r = &mut results[k][j];
                    r.signal[i] = s.model.update_bar(
                        tickers.name(t),
                        fb.bars.ts()[i],
                        fb.bars.close()[i],
                        fb.row(i),
                        drift,
                    );
                    if let Some(payoff) = &mut s.payoff {
                        r.payoff[i] = payoff.update(fb.bars.close()[i]).unwrap_or(f64::NAN);
                    }
                    let tr = s.model.take_trainings();
                    r.trainings.extend(tr.into_iter().map(|x| (t, x)));
                }
                for ((fbs, rs), out) in batches.into_iter().zip(results).zip(outs.iter_mut()) {
                    for (fb, mut r) in fbs.into_iter().zip(rs) {
                        // Times in order, so each ticker's closes are seen in time order.
                        r.benchmark = bench.share(
                            fb.bars
                                .ticker()
                                .iter()
                                .copied()
                                .zip(fb.bars.close().iter().copied()),
                        );
                        r.index_signals();
                        r.drifts = fb
                            .drifts
                            .into_iter()
                            .map(|(i, d)| (fb.bars.ticker()[i as usize], d))
                            .collect();
                        r.bars = fb.bars;
                        out.push(r);
                    }
                }
                meter.stop(started, Stage::Predict);
            },
            || {},
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossover() -> RuleModel {
        let spec: ModelSpec = toml::from_str("kind='crossover'\nfast='F'\nslow='S'").unwrap();
        RuleModel::new(&spec, &["F".into(), "S".into()]).unwrap()
    }

    #[test]
    fn crossover_is_strict_on_both_bars() {
        let mut m = crossover();
        assert_eq!(m.update(&[1.0, 2.0]), None);
        assert_eq!(m.update(&[2.0, 2.0]), None, "equality is not a cross");
        assert_eq!(m.update(&[3.0, 2.0]), None, "previous bar was equal");
        assert_eq!(m.update(&[1.0, 2.0]).map(|s| s.target), Some(Target::Flat));
        assert_eq!(m.update(&[3.0, 2.0]).map(|s| s.target), Some(Target::Long));
    }

    #[test]
    fn nan_features_give_no_signal() {
        let mut m = crossover();
        m.update(&[f64::NAN, 2.0]);
        assert_eq!(m.update(&[3.0, 2.0]), None);
    }
}
