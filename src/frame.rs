//! Bars on the graph's edges, as Arrow.
//!
//! A [`Bars`] is an Arrow `RecordBatch` — `time` as `Timestamp(Second, "UTC")`, `ticker` as the
//! run's `UInt32` ticker id, `open`/`high`/`low`/`close`/`volume` as `Float64`, and for bars that
//! came in Redis stream entries `origin_ms`/`origin_seq` (`UInt64`, the entry id) — plus typed
//! views of those columns, so an operator's loop reads plain slices of the batch's own buffers.
//! Sources still collect rows in a [`BarBatch`] (a builder of the same columns); turning one into
//! a [`Bars`] moves its vectors into Arrow buffers without copying them.
//!
//! Within a process timely moves batches between workers as they are; between processes (`-n`)
//! a batch travels as one Arrow IPC stream message ([`ipc_bytes`], [`from_ipc`]), and arrives
//! checked against the schema.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampSecondType, UInt32Type,
    UInt64Type,
};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bar::{Bar, BarBatch, TickerId, origin_text};
use crate::time::EventTime;

/// The time zone of every bar's time column: event times are UTC seconds.
pub const UTC: &str = "UTC";

/// A batch of bars as an Arrow record batch, with typed views of its columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Bars {
    /// Worker that should own this batch after an exchange (see [`BarBatch::shard`]).
    pub dest: u32,
    batch: RecordBatch,
    ticker: ScalarBuffer<TickerId>,
    ts: ScalarBuffer<EventTime>,
    open: ScalarBuffer<f64>,
    high: ScalarBuffer<f64>,
    low: ScalarBuffer<f64>,
    close: ScalarBuffer<f64>,
    volume: ScalarBuffer<f64>,
    /// `origin_ms` and `origin_seq`, when the bars came in stream entries.
    origin: Option<(ScalarBuffer<u64>, ScalarBuffer<u64>)>,
}

/// The schema of a [`Bars`] batch, with or without the two origin columns.
pub fn bars_schema(with_origin: bool) -> SchemaRef {
    static PLAIN: OnceLock<SchemaRef> = OnceLock::new();
    static ORIGIN: OnceLock<SchemaRef> = OnceLock::new();
    let make = |with_origin: bool| {
        let mut fields = vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Second, Some(UTC.into())),
                false,
            ),
            Field::new("ticker", DataType::UInt32, false),
            Field::new("open", DataType::Float64, false),
            Field::new("high", DataType::Float64, false),
            Field::new("low", DataType::Float64, false),
            Field::new("close", DataType::Float64, false),
            Field::new("volume", DataType::Float64, false),
        ];
        if with_origin {
            fields.push(Field::new("origin_ms", DataType::UInt64, false));
            fields.push(Field::new("origin_seq", DataType::UInt64, false));
        }
        Arc::new(Schema::new(fields))
    };
    if with_origin {
        ORIGIN.get_or_init(|| make(true)).clone()
    } else {
        PLAIN.get_or_init(|| make(false)).clone()
    }
}

fn column<T: arrow::datatypes::ArrowPrimitiveType>(
    rb: &RecordBatch,
    name: &str,
) -> Result<ScalarBuffer<T::Native>, ArrowError> {
    rb.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
        .filter(|c| c.null_count() == 0)
        .map(|c| c.values().clone())
        .ok_or_else(|| {
            ArrowError::SchemaError(format!(
                "bars: column `{name}` missing, of the wrong type or with nulls"
            ))
        })
}

impl Bars {
    /// Reads `batch` as bars bound for worker `dest`, checking its columns against
    /// [`bars_schema`] (no copy: the views share the batch's buffers).
    ///
    /// # Errors
    /// A missing, mistyped or null-holding column, or a time column not in UTC seconds.
    pub fn try_new(batch: RecordBatch, dest: u32) -> Result<Bars, ArrowError> {
        let with_origin = batch.column_by_name("origin_ms").is_some();
        if batch.schema() != bars_schema(with_origin) {
            return Err(ArrowError::SchemaError(format!(
                "bars: schema {:?} is not {:?}",
                batch.schema(),
                bars_schema(with_origin)
            )));
        }
        let origin = if with_origin {
            Some((
                column::<UInt64Type>(&batch, "origin_ms")?,
                column::<UInt64Type>(&batch, "origin_seq")?,
            ))
        } else {
            None
        };
        Ok(Bars {
            dest,
            ticker: column::<UInt32Type>(&batch, "ticker")?,
            ts: column::<TimestampSecondType>(&batch, "time")?,
            open: column::<Float64Type>(&batch, "open")?,
            high: column::<Float64Type>(&batch, "high")?,
            low: column::<Float64Type>(&batch, "low")?,
            close: column::<Float64Type>(&batch, "close")?,
            volume: column::<Float64Type>(&batch, "volume")?,
            origin,
            batch,
        })
    }

    /// The record batch itself (for sinks and IPC).
    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Ticker ids.
    pub fn ticker(&self) -> &[TickerId] {
        &self.ticker
    }

    /// Event times (UTC seconds).
    pub fn ts(&self) -> &[EventTime] {
        &self.ts
    }

    /// Opens.
    pub fn open(&self) -> &[f64] {
        &self.open
    }

    /// Highs.
    pub fn high(&self) -> &[f64] {
        &self.high
    }

    /// Lows.
    pub fn low(&self) -> &[f64] {
        &self.low
    }

    /// Closes.
    pub fn close(&self) -> &[f64] {
        &self.close
    }

    /// Volumes.
    pub fn volume(&self) -> &[f64] {
        &self.volume
    }

    /// The bar at row `i`. Panics if `i` is out of range, like slice indexing.
    pub fn get(&self, i: usize) -> Bar {
        Bar {
            ticker: self.ticker[i],
            ts: self.ts[i],
            open: self.open[i],
            high: self.high[i],
            low: self.low[i],
            close: self.close[i],
            volume: self.volume[i],
        }
    }

    /// Iterates the rows.
    pub fn iter(&self) -> impl Iterator<Item = Bar> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The stream entry row `i` came in, as its id's text (empty when the bars have no origin).
    pub fn origin(&self, i: usize) -> String {
        match &self.origin {
            Some((ms, seq)) => origin_text((u128::from(ms[i]) << 64) | u128::from(seq[i])),
            None => String::new(),
        }
    }

    /// The rows where `keep` is true, in order, with the same `dest` (Arrow's filter kernel).
    ///
    /// # Errors
    /// `keep` is not as long as the batch.
    pub fn filter(&self, keep: &BooleanArray) -> Result<Bars, ArrowError> {
        let rb = arrow::compute::filter_record_batch(&self.batch, keep)?;
        Bars::try_new(rb, self.dest)
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::from(BarBatch::default())
    }
}

fn array<T: arrow::datatypes::ArrowPrimitiveType>(v: Vec<T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(v), None))
}

impl From<BarBatch> for Bars {
    /// Moves the builder's columns into Arrow buffers (no copy of the values).
    fn from(b: BarBatch) -> Bars {
        let with_origin = !b.origin.is_empty();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(
                PrimitiveArray::<TimestampSecondType>::new(ScalarBuffer::from(b.ts), None)
                    .with_timezone(UTC),
            ),
            array::<UInt32Type>(b.ticker),
            array::<Float64Type>(b.open),
            array::<Float64Type>(b.high),
            array::<Float64Type>(b.low),
            array::<Float64Type>(b.close),
            array::<Float64Type>(b.volume),
        ];
        if with_origin {
            cols.push(array::<UInt64Type>(
                b.origin.iter().map(|&o| (o >> 64) as u64).collect(),
            ));
            cols.push(array::<UInt64Type>(
                b.origin.iter().map(|&o| o as u64).collect(),
            ));
        }
        let rb = RecordBatch::try_new(bars_schema(with_origin), cols);
        // A BarBatch's columns have one length by construction (its push methods); a mismatch
        // is a bug in whoever filled it.
        rb.and_then(|rb| Bars::try_new(rb, b.dest))
            .expect("a BarBatch's columns have one length")
    }
}

/// One record batch as an Arrow IPC stream (schema message, batch message, end marker).
///
/// # Errors
/// Arrow's writer failed (it writes to memory: never for a valid batch).
pub fn ipc_bytes(rb: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(rb.get_array_memory_size() + 512);
    let mut w = StreamWriter::try_new(&mut out, &rb.schema())?;
    w.write(rb)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The one record batch of an Arrow IPC stream written by [`ipc_bytes`].
///
/// # Errors
/// Not an IPC stream, or one without a batch.
pub fn from_ipc(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let mut r = StreamReader::try_new(Cursor::new(bytes), None)?;
    r.next()
        .unwrap_or_else(|| Err(ArrowError::IpcError("an IPC stream without a batch".into())))
}

/// Bytes that serialize as one length-prefixed blob (not as a sequence of numbers).
pub(crate) struct Blob<'a>(pub &'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The owned side of [`Blob`].
pub(crate) struct OwnedBlob(pub Vec<u8>);

impl<'de> Deserialize<'de> for OwnedBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OwnedBlob;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("Arrow IPC bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<OwnedBlob, E> {
                Ok(OwnedBlob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<OwnedBlob, E> {
                Ok(OwnedBlob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OwnedBlob, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(OwnedBlob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl Serialize for Bars {
    /// `(dest, IPC bytes)`: how a batch crosses processes.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = ipc_bytes(&self.batch).map_err(serde::ser::Error::custom)?;
        (self.dest, Blob(&bytes)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (dest, OwnedBlob(bytes)) = <(u32, OwnedBlob)>::deserialize(d)?;
        let rb = from_ipc(&bytes).map_err(serde::de::Error::custom)?;
        Bars::try_new(rb, dest).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::origin_of;

    fn sample(with_origin: bool) -> BarBatch {
        let mut b = BarBatch::with_capacity(3);
        for (t, (ticker, close)) in [(0u32, 1.07231), (1, 412.5), (2, 29_071.25)]
            .into_iter()
            .enumerate()
        {
            let bar = Bar {
                ticker,
                ts: 1_700_000_000 + t as i64,
                open: close,
                high: close * 1.01,
                low: close * 0.99,
                close,
                volume: f64::NAN,
            };
            if with_origin {
                b.push_from_entry(bar, origin_of(&format!("1700000000123-{t}")));
            } else {
                b.push(bar);
            }
        }
        b.dest = 1;
        b
    }

    #[test]
    fn a_builder_becomes_bars_without_copying_and_reads_back_the_same_rows() {
        let b = sample(false);
        let close_ptr = b.close.as_ptr();
        let rows: Vec<Bar> = b.iter().collect();
        let bars = Bars::from(b);
        assert_eq!(
            bars.close().as_ptr(),
            close_ptr,
            "the close vector became the buffer"
        );
        assert_eq!(bars.iter().collect::<Vec<_>>().len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            let g = bars.get(i);
            assert_eq!(
                (g.ticker, g.ts, g.close.to_bits()),
                (r.ticker, r.ts, r.close.to_bits())
            );
            assert!(g.volume.is_nan());
        }
        assert_eq!(
            bars.record_batch().schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
        );
        assert_eq!(bars.origin(0), "");
    }

    #[test]
    fn ipc_round_trip_keeps_bits_dest_and_origins() {
        for with_origin in [false, true] {
            let bars = Bars::from(sample(with_origin));
            let bytes = bincode::serialize(&bars).unwrap();
            let back: Bars = bincode::deserialize(&bytes).unwrap();
            assert_eq!(back.dest, 1);
            assert_eq!(back.record_batch(), bars.record_batch());
            if with_origin {
                assert_eq!(back.origin(2), "1700000000123-2");
            }
        }
    }

    #[test]
    fn a_batch_of_another_shape_is_refused_by_name() {
        let rb = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "time",
                DataType::Int64,
                false,
            )])),
            vec![array::<arrow::datatypes::Int64Type>(vec![1])],
        )
        .unwrap();
        let e = Bars::try_new(rb.clone(), 0).unwrap_err().to_string();
        assert!(e.contains("bars: schema"), "{e}");
        let bytes = bincode::serialize(&(0u32, Blob(&ipc_bytes(&rb).unwrap()))).unwrap();
        assert!(bincode::deserialize::<Bars>(&bytes).is_err());
        assert!(
            bincode::deserialize::<Bars>(&bincode::serialize(&(0u32, Blob(b"junk"))).unwrap())
                .is_err()
        );
    }

    #[test]
    fn filter_keeps_the_chosen_rows_in_order() {
        let bars = Bars::from(sample(true));
        let kept = bars
            .filter(&BooleanArray::from(vec![true, false, true]))
            .unwrap();
        assert_eq!(kept.ticker(), &[0, 2]);
        assert_eq!(kept.origin(1), "1700000000123-2");
        assert_eq!(kept.dest, 1);
    }
}
