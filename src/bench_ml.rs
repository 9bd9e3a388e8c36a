//! `fdp bench ml`: the ML pipeline's predict path and its training time, on seeded synthetic data.
//!
//! The predict path is everything a bar goes through once a model exists — features, the label
//! bookkeeping, the drift operator, the stacking ensemble's prediction, Kelly sizing and the paper
//! broker — on one thread, the way one worker runs it. Each ticker first gets its first model on
//! its first `min_samples + horizon` bars (timed separately: that is the training time per
//! retrain); the later bars are then timed with retraining and drift retrains switched off, so
//! the figure is the path alone. A last line runs the whole timely graph on one worker, trainings
//! included.

use std::time::Instant;

use crate::bar::{BarBatch, Tickers};
use crate::bench::BenchLine;
use crate::config::{LoadedPipeline, ModelSpec};
use crate::engine::{Cluster, RunOptions, run};
use crate::operators::drift::{DriftPlan, DriftTicker};
use crate::operators::features::{FeatureBatch, FeatureEngine};
use crate::operators::indicators::FeatureSpec;
use crate::operators::portfolio::Portfolio;
use crate::operators::risk::{KillSwitch, PayoffEstimator, RiskEngine};
use crate::operators::signal::{RuleModel, Signal};
use crate::sinks::broker::PaperBroker;
use crate::sources::synthetic::Synthetic;

/// The bench pipeline: `pipelines/sp500_ml.toml`'s features, model and risk over synthetic bars;
/// `retrain_every` and `drift_threshold` as given.
pub fn ml_pipeline(
    tickers: usize,
    bars: usize,
    retrain_every: usize,
    drift_threshold: f64,
) -> LoadedPipeline {
    let rest = format!(
        r#"[[features]]
kind = "rsi"
period = 14
[[features]]
kind = "roc"
period = 10
[[features]]
kind = "natr"
period = 14
[[features]]
kind = "volatility"
period = 30
[[features]]
kind = "willr"
period = 14
[[features]]
kind = "cci"
period = 14
[[features]]
kind = "adx"
period = 14
[[features]]
kind = "mfi"
period = 14
[model]
kind = "ml"
horizon = 5
dead_zone = 0.002
retrain_every = {retrain_every}
min_samples = 250
trees = 30
seed = 42
drift_window = 100
drift_threshold = {drift_threshold:?}
select = 5
[risk]
capital = 100000.0
min_order = 100.0
max_positions = 50
[risk.sizing]
kind = "kelly"
fraction = 0.25
cap = 0.02
window = 30
[broker]
kind = "paper"
slippage = 0.0005
commission = 0.001
"#
    );
    crate::bench::synthetic_pipeline("bench_ml", tickers, bars, &rest)
}

/// The bars of `block` ticker by ticker, each ticker's in time order: `(ticker, time index, row)`.
fn ticker_major(block: &[crate::operators::features::FeatureBatch]) -> Vec<(u32, usize, usize)> {
    let mut order: Vec<(u32, usize, usize)> = block
        .iter()
        .enumerate()
        .flat_map(|(b, fb)| (0..fb.bars.len()).map(move |i| (fb.bars.ticker()[i], b, i)))
        .collect();
    order.sort_by_key(|o| o.0);
    order
}

/// Per-ticker state of the predict path.
#[derive(Clone)]
struct Ticker {
    drift: DriftTicker,
    model: RuleModel,
    payoff: PayoffEstimator,
}

impl Ticker {
    /// The drift operator's then the model's step on bar `i` of `fb`, as the graph runs them.
    fn decide(&mut self, name: &str, fb: &FeatureBatch, i: usize) -> Option<Signal> {
        let drift = self.drift.update(fb.bars.ts()[i], fb.row(i)).is_some();
        self.model
            .update_bar(name, fb.bars.ts()[i], fb.bars.close()[i], fb.row(i), drift)
    }
}

/// Runs the ML suite: training time per retrain, the predict path, and (when `graph`) the graph.
pub fn suite(tickers: usize, bars: usize, repeats: usize, graph: bool) -> Vec<BenchLine> {
    let mut lines = Vec::new();
    let p = ml_pipeline(tickers, bars, usize::MAX / 4, 1e9);
    let ModelSpec::Ml(spec) = &p.pipeline.model else {
        unreachable!("the bench pipeline is an ML pipeline")
    };
    let warm = spec.min_samples + spec.horizon + 1;
    let cols = p.pipeline.feature_columns();
    let specs: Vec<FeatureSpec> = p
        .pipeline
        .features
        .iter()
        .map(|f| f.get_ref().clone())
        .collect();
    let syn = Synthetic::new(tickers, bars, 7, None);
    let names: Tickers = syn.tickers();
    let data: Vec<(u64, BarBatch)> = syn.load(0, 1, &names).batches;
    let Some(model) = RuleModel::new(&p.pipeline.model, &cols) else {
        unreachable!("the bench model's inputs are its features")
    };
    let window = match p.pipeline.risk.sizing {
        crate::config::Sizing::Kelly { window, .. } => window,
        _ => 30,
    };
    let Some(plan) = p
        .pipeline
        .drift()
        .and_then(|d| DriftPlan::new(&d, &cols, &model.inputs()))
    else {
        unreachable!("the bench's drift features are its model's inputs")
    };
    let fresh = Ticker {
        drift: DriftTicker::new(std::sync::Arc::new(plan)),
        model,
        payoff: PayoffEstimator::new(window),
    };

    // Warm-up: each ticker's first `warm` bars, which train its first model.
    let mut fe = FeatureEngine::new(specs.clone());
    let mut state: Vec<Ticker> = vec![fresh; tickers];
    let (mut trainings, mut train_seconds) = (0u64, 0.0);
    let mut trained = vec![false; tickers];
    let mut split = 0;
    for (_, batch) in &data {
        // Until every ticker has its first model (dead-zone labels make that a little later than
        // `min_samples + horizon` bars).
        if split >= warm && trained.iter().all(|t| *t) {
            break;
        }
        split += 1;
        let fb = fe.apply(crate::frame::Bars::from(batch.clone()));
        for i in 0..fb.bars.len() {
            let t = fb.bars.ticker()[i];
            let s = &mut state[t as usize];
            let started = Instant::now();
            let _ = s.decide(names.name(t), &fb, i);
            let took = started.elapsed().as_secs_f64();
            s.payoff.update(fb.bars.close()[i]);
            let tr = s.model.take_trainings();
            if !tr.is_empty() {
                trained[t as usize] = true;
                trainings += tr.len() as u64;
                train_seconds += took;
            }
        }
    }
    if trainings > 0 {
        lines.push(BenchLine {
            name: format!(
                "training: retrains of {} samples (bars = retrains)",
                spec.min_samples
            ),
            bars: trainings,
            seconds: train_seconds,
        });
    }

    // The predict path over the rest, from the same warm state each repeat (the feature kernels
    // replay the warm-up bars untimed).
    let rest = &data[split..];
    let warmed = || {
        let mut fe = FeatureEngine::new(specs.clone());
        for (_, b) in &data[..split] {
            fe.apply(crate::frame::Bars::from(b.clone()));
        }
        fe
    };
    let mut best = f64::INFINITY;
    let mut n = 0u64;
    let mut model_only = f64::INFINITY;
    let mut major = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let mut st = state.clone();
        let mut fe2 = warmed();
        let mut pf = Portfolio::new(
            RiskEngine::new(p.pipeline.risk.clone(), KillSwitch::default()),
            PaperBroker::simple(0.0005, 0.001, true),
        );
        let mut rows = Vec::new();
        // The graph's stages get their batches by value: copy them before the clock starts.
        let owned: Vec<Vec<BarBatch>> = rest
            .chunks(128)
            .map(|c| c.iter().map(|(_, b)| b.clone()).collect())
            .collect();
        let started = Instant::now();
        n = 0;
        // As the graph runs it: features per time, the signal stage ticker by ticker over the
        // times ready together (the driver feeds 128 at a time), the portfolio per time.
        for (block, batches) in rest.chunks(128).zip(owned) {
            let fbs: Vec<_> = batches
                .into_iter()
                .map(|b| fe2.apply(crate::frame::Bars::from(b)))
                .collect();
            let mut decided: Vec<Vec<_>> = fbs
                .iter()
                .map(|fb| vec![(None, f64::NAN); fb.bars.len()])
                .collect();
            for (k, b, i) in ticker_major(&fbs) {
                let fb = &fbs[b];
                let s = &mut st[k as usize];
                let signal = s.decide(names.name(k), fb, i);
                let payoff = s.payoff.update(fb.bars.close()[i]).unwrap_or(f64::NAN);
                decided[b][i] = (signal, payoff);
            }
            for (((t, _), fb), d) in block.iter().zip(&fbs).zip(&decided) {
                rows.clear();
                rows.extend(
                    d.iter()
                        .enumerate()
                        .map(|(i, (s, p))| (fb.bars.get(i), *s, *p)),
                );
                pf.step(crate::time::event_time(*t), &rows);
                n += rows.len() as u64;
            }
        }
        std::hint::black_box(pf.finish());
        best = best.min(started.elapsed().as_secs_f64());

        // The model alone (labels, drift, ensemble) over pre-computed features.
        let mut fe3 = warmed();
        let featured: Vec<_> = rest
            .iter()
            .map(|(_, b)| fe3.apply(crate::frame::Bars::from(b.clone())))
            .collect();
        // Ticker by ticker within blocks of 128 times, as the graph's signal stage; and one time
        // at a time, every ticker's bar in turn (each meets its model cold).
        for (times, best) in [(128, &mut major), (1, &mut model_only)] {
            let mut st = state.clone();
            let started = Instant::now();
            for block in featured.chunks(times) {
                for (k, b, i) in ticker_major(block) {
                    let fb = &block[b];
                    let _ = std::hint::black_box(st[k as usize].decide(names.name(k), fb, i));
                }
            }
            *best = best.min(started.elapsed().as_secs_f64());
        }
    }

    lines.push(BenchLine {
        name: "predict path: features+drift+ensemble+risk+paper, 1 thread".into(),
        bars: n,
        seconds: best,
    });
    lines.push(BenchLine {
        name: "  of which the model: labels+drift+ensemble".into(),
        bars: n,
        seconds: major,
    });
    lines.push(BenchLine {
        name: "  the model bar by bar across tickers (cache-cold)".into(),
        bars: n,
        seconds: model_only,
    });

    if !graph {
        return lines;
    }
    // The whole graph on one worker, trainings included (scheduled every 250 bars and on drift),
    // on at most 20 tickers: the synthetic walks drift often, so trainings dominate.
    let g = ml_pipeline(tickers.min(20), bars, spec.min_samples, 0.25);
    let opts = RunOptions {
        cluster: Cluster {
            workers: 1,
            ..Cluster::default()
        },
        ..RunOptions::default()
    };
    if let Ok(Some(o)) = run(&g, &opts) {
        lines.push(BenchLine {
            name: format!(
                "graph: ML pipeline -w 1, {} trainings included",
                o.ledger.ml_metrics.len()
            ),
            bars: o.ledger.bars,
            seconds: o.graph_seconds,
        });
    }
    lines
}
