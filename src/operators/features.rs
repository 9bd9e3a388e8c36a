//! Features operator: one [`FeatureSet`] per ticker, fed bar by bar in time order.
//!
//! Input arrives already exchanged by ticker (the quality gate did it), so this operator uses a
//! pipeline edge. Output rows carry the bar and its feature values (NaN while warming up).

use arrow::array::{
    Array, AsArray, FixedSizeListArray, Float64Array, RecordBatch, RecordBatchOptions,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema};
use arrow::error::ArrowError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use timely::dataflow::Stream;

use crate::frame::{Bars, Blob, OwnedBlob, from_ipc, ipc_bytes};

use super::indicators::{FeatureSet, FeatureSpec, Ohlcv};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::bar::Tickers;
use crate::meter::{Meter, Stage};

use super::drift::DriftRecord;
use super::feature_cache::{CachedTicker, FeatureCache};
use super::keyed::{KeyedState, in_order, in_order_then};

/// Bars with their feature values, as Arrow: the values are one `FixedSizeList<Float64>` column
/// of `width` per bar (row-major in one buffer, in the order of the pipeline's feature columns),
/// beside the bars' own record batch. Between processes the two travel as one IPC batch.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBatch {
    /// The bars.
    pub bars: Bars,
    features: FixedSizeListArray,
    values: ScalarBuffer<f64>,
    /// Drift events on these bars (the bar's index, the event), set by the drift operator.
    pub drifts: Vec<(u32, DriftRecord)>,
}

impl Default for FeatureBatch {
    fn default() -> Self {
        FeatureBatch::new(Bars::default(), 0, Vec::new())
    }
}

impl FeatureBatch {
    /// The bars with `values` (`bars.len() * width`, row-major) moved into an Arrow list column
    /// without a copy. Panics when the lengths disagree: the caller sized `values` (a bug).
    pub fn new(bars: Bars, width: usize, values: Vec<f64>) -> FeatureBatch {
        assert_eq!(
            values.len(),
            bars.len() * width,
            "one row of width values per bar"
        );
        let values = ScalarBuffer::from(values);
        let item = Arc::new(Field::new_list_field(DataType::Float64, false));
        let size = i32::try_from(width).expect("fewer than 2³¹ feature columns");
        let features = FixedSizeListArray::try_new_with_length(
            item,
            size,
            Arc::new(Float64Array::new(values.clone(), None)),
            None,
            bars.len(),
        )
        .expect("values sized to the bars");
        FeatureBatch {
            bars,
            features,
            values,
            drifts: Vec::new(),
        }
    }

    /// Values per bar.
    pub fn width(&self) -> usize {
        self.features.value_length() as usize
    }

    /// The feature row of bar `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        let w = self.width();
        &self.values[i * w..(i + 1) * w]
    }

    /// The feature values as an Arrow `FixedSizeList<Float64>` column, one list per bar.
    pub fn features(&self) -> &FixedSizeListArray {
        &self.features
    }

    /// The bars' columns and a `features` column in one record batch.
    ///
    /// # Errors
    /// Never for a batch built by [`FeatureBatch::new`] (Arrow checks the lengths again).
    pub fn record_batch(&self) -> Result<RecordBatch, ArrowError> {
        let rb = self.bars.record_batch();
        let mut fields: Vec<FieldRef> = rb.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(
            "features",
            self.features.data_type().clone(),
            false,
        )));
        let mut cols = rb.columns().to_vec();
        cols.push(Arc::new(self.features.clone()));
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(self.bars.len())),
        )
    }

    /// Splits a [`FeatureBatch::record_batch`] back into bars and values.
    ///
    /// # Errors
    /// No `features` column of `FixedSizeList<Float64>` without nulls, or bars' columns that
    /// [`Bars::try_new`] refuses.
    pub fn from_record_batch(mut rb: RecordBatch, dest: u32) -> Result<FeatureBatch, ArrowError> {
        let at = rb.schema().index_of("features")?;
        let col = rb.remove_column(at);
        let features = col
            .as_fixed_size_list_opt()
            .filter(|f| f.null_count() == 0 && f.values().null_count() == 0)
            .ok_or_else(|| {
                ArrowError::SchemaError(
                    "features: not a FixedSizeList<Float64> without nulls".into(),
                )
            })?
            .clone();
        let values = features
            .values()
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| ArrowError::SchemaError("features: items are not Float64".into()))?
            .values()
            .clone();
        Ok(FeatureBatch {
            bars: Bars::try_new(rb, dest)?,
            features,
            values,
            drifts: Vec::new(),
        })
    }
}

impl Serialize for FeatureBatch {
    /// `(dest, IPC bytes, drift events)`: how a batch crosses processes.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rb = self.record_batch().map_err(serde::ser::Error::custom)?;
        let bytes = ipc_bytes(&rb).map_err(serde::ser::Error::custom)?;
        (self.bars.dest, Blob(&bytes), &self.drifts).serialize(s)
    }
}

impl<'de> Deserialize<'de> for FeatureBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (dest, OwnedBlob(bytes), drifts) =
            <(u32, OwnedBlob, Vec<(u32, DriftRecord)>)>::deserialize(d)?;
        let rb = from_ipc(&bytes).map_err(serde::de::Error::custom)?;
        let mut fb = FeatureBatch::from_record_batch(rb, dest).map_err(serde::de::Error::custom)?;
        fb.drifts = drifts;
        Ok(fb)
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
    pub fn apply(&mut self, bars: Bars) -> FeatureBatch {
        let w = self.width;
        let mut values = vec![f64::NAN; bars.len() * w];
        let (open, high, low, close, volume) = (
            bars.open(),
            bars.high(),
            bars.low(),
            bars.close(),
            bars.volume(),
        );
        for (i, &ticker) in bars.ticker().iter().enumerate() {
            let x = Ohlcv {
                open: open[i],
                high: high[i],
                low: low[i],
                close: close[i],
                volume: volume[i],
            };
            self.sets
                .get(ticker)
                .update(&x, &mut values[i * w..(i + 1) * w]);
        }
        FeatureBatch::new(bars, w, values)
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
    pub fn apply(&mut self, bars: Bars) -> FeatureBatch {
        let w = self.width;
        let mut values = vec![f64::NAN; bars.len() * w];
        for i in 0..bars.len() {
            let t = bars.ticker()[i];
            let slot = self.tickers.get(t);
            let ticker = slot.get_or_insert_with(|| {
                CachedTicker::new(&self.specs, self.cache.load(self.names.name(t)))
            });
            ticker.update(&bars.get(i), &mut values[i * w..(i + 1) * w]);
        }
        FeatureBatch::new(bars, w, values)
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

impl<'s> FeaturesExt<'s> for Stream<'s, u64, Vec<Bars>> {
    fn features(
        self,
        specs: Vec<FeatureSpec>,
        cache: Option<(FeatureCache, Arc<Tickers>)>,
        meter: Meter,
    ) -> Stream<'s, u64, Vec<FeatureBatch>> {
        match cache {
            None => {
                let mut engine = FeatureEngine::new(specs);
                in_order(self, "Features", move |_t, batches, out| {
                    let started = meter.start();
                    out.extend(batches.into_iter().map(|b| engine.apply(b)));
                    meter.stop(started, Stage::Features);
                })
            }
            Some((cache, names)) => {
                let engine = Rc::new(RefCell::new(CachedEngine::new(specs, cache, names)));
                let at_end = Rc::clone(&engine);
                in_order_then(
                    self,
                    "Features",
                    move |times, outs| {
                        let started = meter.start();
                        let mut e = engine.borrow_mut();
                        for ((_t, batches), out) in times.into_iter().zip(outs.iter_mut()) {
                            out.extend(batches.into_iter().map(|b| e.apply(b)));
                        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::{Bar, BarBatch};

    fn bars() -> Bars {
        let mut b = BarBatch::default();
        for (i, close) in [1.0731, 1.0729, 412.5, 29_071.25].into_iter().enumerate() {
            b.push(Bar {
                ticker: i as u32 % 2,
                ts: 1_700_000_000 + i as i64,
                open: close,
                high: close,
                low: close,
                close,
                volume: 1.0,
            });
        }
        b.dest = 1;
        Bars::from(b)
    }

    #[test]
    fn features_are_a_fixed_size_list_over_the_row_major_values() {
        let values: Vec<f64> = (0..8).map(f64::from).collect();
        let fb = FeatureBatch::new(bars(), 2, values.clone());
        assert_eq!(fb.width(), 2);
        assert_eq!(fb.row(3), &[6.0, 7.0]);
        assert_eq!(fb.features().len(), 4);
        assert_eq!(fb.features().value_length(), 2);
        let rb = fb.record_batch().unwrap();
        assert_eq!(rb.num_columns(), 8, "seven bar columns and the features");
        assert_eq!(rb.schema().field(7).name(), "features");
    }

    #[test]
    fn a_feature_batch_crosses_processes_as_ipc_with_its_drift_events() {
        let mut fb = FeatureBatch::new(bars(), 3, (0..12).map(|x| f64::from(x) / 7.0).collect());
        fb.drifts.push((
            2,
            DriftRecord {
                ts: 1_700_000_002,
                feature: 1,
                name: "rsi_14".into(),
                kl: 0.31,
            },
        ));
        let back: FeatureBatch = bincode::deserialize(&bincode::serialize(&fb).unwrap()).unwrap();
        assert_eq!(back, fb);
        assert_eq!(back.bars.dest, 1);
        // No columns at all (a run without features) still has one row per bar.
        let empty = FeatureBatch::new(bars(), 0, Vec::new());
        let back: FeatureBatch =
            bincode::deserialize(&bincode::serialize(&empty).unwrap()).unwrap();
        assert_eq!((back.width(), back.bars.len()), (0, 4));
    }
}
