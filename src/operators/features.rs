//! Features operator: one [`FeatureSet`] per ticker, fed bar by bar in time order.
//!
//! Input arrives already exchanged by ticker (the quality gate did it), so this operator uses a
//! pipeline edge. Output rows carry the bar and its feature values (NaN while warming up).

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;

use crate::bar::BarBatch;

use super::indicators::{FeatureSet, FeatureSpec, Ohlcv};
use super::keyed::{KeyedState, by_time};

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
        }
    }
}

/// Extension trait adding the features stage to a stream of bars.
pub trait FeaturesExt<'s> {
    /// Computes `specs` for every bar.
    fn features(self, specs: Vec<FeatureSpec>) -> Stream<'s, u64, Vec<FeatureBatch>>;
}

impl<'s> FeaturesExt<'s> for Stream<'s, u64, Vec<BarBatch>> {
    fn features(self, specs: Vec<FeatureSpec>) -> Stream<'s, u64, Vec<FeatureBatch>> {
        let mut engine = FeatureEngine::new(specs);
        by_time(self, Pipeline, "Features", move |_t, batches, out| {
            for b in batches {
                out.push(engine.apply(b));
            }
        })
    }
}
