//! Features operator: one [`FeatureSet`] per ticker, fed bar by bar in time order.
//!
//! Input arrives already exchanged by ticker (the quality gate did it), so this operator uses a
//! pipeline edge. Output rows carry the bar and its feature values (NaN while warming up).

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;

use crate::bar::BarBatch;

use super::indicators::{FeatureSet, FeatureSpec, Ohlcv};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::bar::Tickers;
use crate::meter::{Meter, Stage};

use super::drift::DriftRecord;
use super::feature_cache::{CachedTicker, FeatureCache};
use super::keyed::{KeyedState, by_time, by_time_then};

/// Bars with their feature values: `values` is row-major, `width` values per bar, in the order of
/// the pipeline's feature columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureBatch {
    /// The bars.
    pub bars: BarBatch,
    /// Values per bar.
    pub width: usize,
    /// `bars.len() * width` values.
    pub values: Vec<f64>,
    /// Drift events on these bars (the bar's index, the event), set by the drift operator.
    pub drifts: Vec<(u32, DriftRecord)>,
}

impl FeatureBatch {
    /// The feature row of bar `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }
}

/// Computes the features of each bar of a batch, with one kernel set per ticker.
pub struct FeatureEngine {
    sets: KeyedState<FeatureSet>,
    width: usize,
}

impl FeatureEngine {
    /// Kernels for `specs`.
    pub fn new(specs: Vec<FeatureSpec>) -> Self {
        let width = FeatureSet::new(&specs).width();
        FeatureEngine {
            sets: KeyedState::new(move || FeatureSet::new(&specs)),
            width,
        }
    }

    /// Feeds the bars (in time order per ticker) and returns them with their features.
    pub fn apply(&mut self, bars: BarBatch) -> FeatureBatch {
        let w = self.width;
        let mut values = vec![f64::NAN; bars.len() * w];
        for i in 0..bars.len() {
            let x = Ohlcv {
                open: bars.open[i],
                high: bars.high[i],
                low: bars.low[i],
                close: bars.close[i],
                volume: bars.volume[i],
            };
            self.sets
                .get(bars.ticker[i])
                .update(&x, &mut values[i * w..(i + 1) * w]);
        }
        FeatureBatch {
            bars,
            width: w,
            values,
            drifts: Vec::new(),
        }
    }
}

/// The features of every ticker a worker owns, through the feature cache.
pub struct CachedEngine {
    specs: Vec<FeatureSpec>,
    width: usize,
    cache: FeatureCache,
    names: Arc<Tickers>,
    tickers: KeyedState<Option<CachedTicker>>,
}

impl CachedEngine {
    /// Kernels for `specs` behind `cache`; `names` resolves ticker ids to cache entries.
    pub fn new(specs: Vec<FeatureSpec>, cache: FeatureCache, names: Arc<Tickers>) -> Self {
        let width = FeatureSet::new(&specs).width();
        CachedEngine {
            specs,
            width,
            cache,
            names,
            tickers: KeyedState::new(|| None),
        }
    }

    /// As [`FeatureEngine::apply`], serving cached rows where the bars are the cached ones.
    pub fn apply(&mut self, bars: BarBatch) -> FeatureBatch {
        let w = self.width;
        let mut values = vec![f64::NAN; bars.len() * w];
        for i in 0..bars.len() {
            let t = bars.ticker[i];
            let slot = self.tickers.get(t);
            let ticker = slot.get_or_insert_with(|| {
                CachedTicker::new(&self.specs, self.cache.load(self.names.name(t)))
            });
            ticker.update(&bars.get(i), &mut values[i * w..(i + 1) * w]);
        }
        FeatureBatch {
            bars,
            width: w,
            values,
            drifts: Vec::new(),
        }
    }

    /// Stores every ticker's entry; returns (rows served from the cache, rows computed).
    pub fn flush(&mut self) -> (u64, u64) {
        let (mut hits, mut computed) = (0, 0);
        for (id, slot) in self.tickers.drain() {
            let Some(t) = slot else { continue };
            hits += t.hits;
            computed += t.computed;
            if let Some(entry) = t.into_entry() {
                let name = self.names.name(id).to_string();
                if let Err(e) = self.cache.store(&name, &entry) {
                    tracing::warn!(ticker = %name, error = %e, "feature cache not written");
                }
            }
        }
        tracing::info!(hits, computed, "feature cache");
        (hits, computed)
    }
}

/// Extension trait adding the features stage to a stream of bars.
pub trait FeaturesExt<'s> {
    /// Computes `specs` for every bar; through `cache` (with the run's ticker names) when given.
    /// Each event time's work is timed on `meter` ([`Stage::Features`]).
    fn features(
        self,
        specs: Vec<FeatureSpec>,
        cache: Option<(FeatureCache, Arc<Tickers>)>,
        meter: Meter,
    ) -> Stream<'s, u64, Vec<FeatureBatch>>;
}

impl<'s> FeaturesExt<'s> for Stream<'s, u64, Vec<BarBatch>> {
    fn features(
        self,
        specs: Vec<FeatureSpec>,
        cache: Option<(FeatureCache, Arc<Tickers>)>,
        meter: Meter,
    ) -> Stream<'s, u64, Vec<FeatureBatch>> {
        match cache {
            None => {
                let mut engine = FeatureEngine::new(specs);
                by_time(self, Pipeline, "Features", move |_t, batches, out| {
                    let started = meter.start();
                    out.extend(batches.into_iter().map(|b| engine.apply(b)));
                    meter.stop(started, Stage::Features);
                })
            }
            Some((cache, names)) => {
                let engine = Rc::new(RefCell::new(CachedEngine::new(specs, cache, names)));
                let at_end = Rc::clone(&engine);
                by_time_then(
                    self,
                    Pipeline,
                    "Features",
                    move |_t, batches, out| {
                        let started = meter.start();
                        let mut e = engine.borrow_mut();
                        out.extend(batches.into_iter().map(|b| e.apply(b)));
                        meter.stop(started, Stage::Features);
                    },
                    move || {
                        at_end.borrow_mut().flush();
                    },
                )
            }
        }
    }
}
