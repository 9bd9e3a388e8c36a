//! Bars and the columnar batches they travel in.
//!
//! A [`BarBatch`] holds bars as columns (one `Vec` per field). It is what the timely graph moves,
//! it serializes for exchange between processes, and it converts to an Arrow `RecordBatch` for sinks.
//! Tickers travel as dense ids into a [`Tickers`] table that every worker builds identically from the
//! pipeline's source, so a ticker's id is the same in every thread and process.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampSecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::time::EventTime;

/// Dense id of a ticker in the run's [`Tickers`] table.
pub type TickerId = u32;

/// The run's ticker table: names sorted, ids are positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tickers {
    names: Vec<String>,
    index: HashMap<String, TickerId>,
}

impl Tickers {
    /// Builds the table from names; duplicates collapse and order is by name, so every worker agrees.
    pub fn new<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as TickerId))
            .collect();
        Tickers { names, index }
    }

    /// The id of a ticker name, if it is part of the run.
    pub fn id(&self, name: &str) -> Option<TickerId> {
        self.index.get(name).copied()
    }

    /// The name of an id; `"?"` for an id outside the table (never produced by the engine).
    pub fn name(&self, id: TickerId) -> &str {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// Number of tickers.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the run has no ticker.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All names in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A string column as `Utf8`, whatever string layout it came in (DataFusion returns `Utf8View`).
///
/// # Errors
/// A column that is not a string column.
pub fn utf8(col: &ArrayRef) -> Result<StringArray, ArrowError> {
    let cast = arrow::compute::cast(col, &DataType::Utf8)?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| ArrowError::SchemaError("not a string column".into()))
}

/// Which worker owns a ticker: a fixed mix of its id, so the owner is the same in every process.
pub fn owner(ticker: TickerId, peers: usize) -> usize {
    let mut x = u64::from(ticker).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % peers.max(1) as u64) as usize
}

/// One bar, the row view of a [`BarBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Ticker id.
    pub ticker: TickerId,
    /// Event time (seconds since the epoch).
    pub ts: EventTime,
    /// Opening price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Closing price.
    pub close: f64,
    /// Traded volume.
    pub volume: f64,
}

/// Bars as columns. All columns have the same length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarBatch {
    /// Worker that should own this batch after an exchange (see [`BarBatch::shard`]).
    pub dest: u32,
    /// Ticker ids.
    pub ticker: Vec<TickerId>,
    /// Event times.
    pub ts: Vec<EventTime>,
    /// Opens.
    pub open: Vec<f64>,
    /// Highs.
    pub high: Vec<f64>,
    /// Lows.
    pub low: Vec<f64>,
    /// Closes.
    pub close: Vec<f64>,
    /// Volumes.
    pub volume: Vec<f64>,
    /// Where each bar came from, for its quarantine row: the Redis stream entry that carried it
    /// ([`origin_of`]). Empty when the source has no message identity (a file replay, whose
    /// rejects name their `file:line` when read); otherwise as long as the other columns.
    pub origin: Vec<u128>,
}

/// A Redis stream entry id (`<ms>-<seq>`) packed into one number (`ms · 2⁶⁴ + seq`), so a bar
/// can carry the message it came in; 0 for anything else (no entry has id `0-0`).
pub fn origin_of(entry_id: &str) -> u128 {
    let mut parts = entry_id.splitn(2, '-');
    let ms = parts.next().and_then(|m| m.parse::<u64>().ok());
    let seq = parts.next().map_or(Some(0), |s| s.parse::<u64>().ok());
    match (ms, seq) {
        (Some(ms), Some(seq)) => (u128::from(ms) << 64) | u128::from(seq),
        _ => 0,
    }
}

/// The entry id an [`origin_of`] number stands for; empty for 0 (no known origin).
pub fn origin_text(origin: u128) -> String {
    if origin == 0 {
        String::new()
    } else {
        format!("{}-{}", origin >> 64, origin as u64)
    }
}

impl BarBatch {
    /// An empty batch with room for `n` bars.
    pub fn with_capacity(n: usize) -> Self {
        BarBatch {
            dest: 0,
            ticker: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            origin: Vec::new(),
        }
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one bar.
    pub fn push(&mut self, b: Bar) {
        self.ticker.push(b.ticker);
        self.ts.push(b.ts);
        self.open.push(b.open);
        self.high.push(b.high);
        self.low.push(b.low);
        self.close.push(b.close);
        self.volume.push(b.volume);
    }

    /// Appends one bar that came in stream entry `origin` ([`origin_of`]). A batch holds origins
    /// for all its bars or for none: mixing this with [`BarBatch::push`] is a bug.
    pub fn push_from_entry(&mut self, b: Bar, origin: u128) {
        debug_assert_eq!(
            self.origin.len(),
            self.len(),
            "origins for all bars or none"
        );
        self.push(b);
        self.origin.push(origin);
    }

    /// Appends row `i` of `src`, with its origin when `src` has them.
    pub fn push_row(&mut self, src: &BarBatch, i: usize) {
        match src.origin.get(i) {
            Some(&o) => self.push_from_entry(src.get(i), o),
            None => self.push(src.get(i)),
        }
    }

    /// The origin of row `i` ([`origin_text`]): empty when the batch has none.
    pub fn origin(&self, i: usize) -> String {
        self.origin
            .get(i)
            .map_or_else(String::new, |&o| origin_text(o))
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

    /// Splits the batch by owning worker (see [`owner`]); each part has `dest` set for the exchange.
    pub fn shard(mut self, peers: usize) -> Vec<BarBatch> {
        if peers <= 1 {
            return vec![self];
        }
        // A source that loaded only the tickers of one worker (the usual case: sources load by
        // owner) needs no copy.
        if let Some(&first) = self.ticker.first() {
            let dest = owner(first, peers);
            if self.ticker.iter().all(|&t| owner(t, peers) == dest) {
                self.dest = dest as u32;
                return vec![self];
            }
        }
        let mut parts: Vec<BarBatch> = (0..peers)
            .map(|p| BarBatch {
                dest: p as u32,
                ..BarBatch::default()
            })
            .collect();
        for (i, &t) in self.ticker.iter().enumerate() {
            parts[owner(t, peers)].push_row(&self, i);
        }
        parts.retain(|p| !p.is_empty());
        parts
    }

    /// The Arrow schema of [`BarBatch::to_arrow`].
    pub fn arrow_schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("ticker", DataType::Utf8, false),
            Field::new("open", DataType::Float64, false),
            Field::new("high", DataType::Float64, false),
            Field::new("low", DataType::Float64, false),
            Field::new("close", DataType::Float64, false),
            Field::new("volume", DataType::Float64, false),
        ]))
    }

    /// Converts to an Arrow record batch, resolving ticker ids to names.
    ///
    /// # Errors
    /// Fails only if Arrow rejects the columns (never for a well-formed batch).
    pub fn to_arrow(&self, tickers: &Tickers) -> Result<RecordBatch, ArrowError> {
        let names: StringArray = self.ticker.iter().map(|&t| Some(tickers.name(t))).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampSecondArray::from(self.ts.clone())),
            Arc::new(names),
            Arc::new(Float64Array::from(self.open.clone())),
            Arc::new(Float64Array::from(self.high.clone())),
            Arc::new(Float64Array::from(self.low.clone())),
            Arc::new(Float64Array::from(self.close.clone())),
            Arc::new(Float64Array::from(self.volume.clone())),
        ];
        RecordBatch::try_new(Self::arrow_schema(), cols)
    }

    /// Reads a record batch with the columns of [`BarBatch::arrow_schema`] (time may be Int64 seconds).
    /// Rows whose ticker is not in `tickers` are returned apart, by name.
    ///
    /// # Errors
    /// A missing or mistyped column.
    pub fn from_arrow(
        rb: &RecordBatch,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<String>), ArrowError> {
        fn col<'a, T: 'static>(rb: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
            rb.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| {
                    ArrowError::SchemaError(format!("column `{name}` missing or of the wrong type"))
                })
        }
        let ts: Vec<i64> = match rb.column_by_name("time") {
            Some(c) if c.data_type() == &DataType::Int64 => {
                col::<Int64Array>(rb, "time")?.values().to_vec()
            }
            _ => col::<TimestampSecondArray>(rb, "time")?.values().to_vec(),
        };
        let names = utf8(
            rb.column_by_name("ticker")
                .ok_or_else(|| ArrowError::SchemaError("column `ticker` missing".into()))?,
        )?;
        let f = |n: &str| -> Result<Vec<f64>, ArrowError> {
            let a = col::<Float64Array>(rb, n)?;
            Ok((0..a.len())
                .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
                .collect())
        };
        let (open, high, low, close, volume) =
            (f("open")?, f("high")?, f("low")?, f("close")?, f("volume")?);
        let mut out = BarBatch::with_capacity(rb.num_rows());
        let mut unknown = Vec::new();
        for i in 0..rb.num_rows() {
            let name = names.value(i);
            match tickers.id(name) {
                Some(ticker) => out.push(Bar {
                    ticker,
                    ts: ts[i],
                    open: open[i],
                    high: high[i],
                    low: low[i],
                    close: close[i],
                    volume: volume[i],
                }),
                None => unknown.push(name.to_string()),
            }
        }
        Ok((out, unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(t: TickerId, ts: i64) -> Bar {
        Bar {
            ticker: t,
            ts,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 10.0,
        }
    }

    #[test]
    fn shard_keeps_every_bar_and_routes_by_owner() {
        let mut b = BarBatch::default();
        for t in 0..50 {
            b.push(bar(t, 7));
        }
        let parts = b.clone().shard(3);
        assert_eq!(parts.iter().map(BarBatch::len).sum::<usize>(), 50);
        for p in &parts {
            assert!(p.ticker.iter().all(|&t| owner(t, 3) == p.dest as usize));
        }
        // One worker's tickers only: the batch itself, addressed to it.
        let mine: Vec<TickerId> = (0..50).filter(|&t| owner(t, 3) == 2).collect();
        let mut one = BarBatch::default();
        for &t in &mine {
            one.push(bar(t, 7));
        }
        let ptr = one.close.as_ptr();
        let parts = one.shard(3);
        assert_eq!(
            (parts.len(), parts[0].dest, parts[0].len()),
            (1, 2, mine.len())
        );
        assert_eq!(parts[0].close.as_ptr(), ptr, "not copied");
    }

    #[test]
    fn origins_travel_with_their_bars() {
        let mut b = BarBatch::default();
        for t in 0..50 {
            b.push_from_entry(bar(t, 7), origin_of(&format!("17000000000{t:02}-{t}")));
        }
        for p in b.shard(3) {
            assert_eq!(p.origin.len(), p.len());
            for (i, &t) in p.ticker.iter().enumerate() {
                assert_eq!(p.origin(i), format!("17000000000{t:02}-{t}"));
            }
        }
        assert_eq!(origin_of("1-0"), 1 << 64);
        assert_eq!(
            origin_text(origin_of("18446744073709551615-7")),
            "18446744073709551615-7"
        );
        assert_eq!((origin_of("nope"), origin_of("5-x")), (0, 0));
        assert_eq!(origin_text(0), "");
    }

    #[test]
    fn arrow_round_trip_is_exact() {
        let tickers = Tickers::new(["B".to_string(), "A".to_string()]);
        let mut b = BarBatch::default();
        b.push(bar(0, 1));
        b.push(bar(1, 2));
        let rb = b.to_arrow(&tickers).unwrap();
        let (back, unknown) = BarBatch::from_arrow(&rb, &tickers).unwrap();
        assert_eq!(back, b);
        assert!(unknown.is_empty());
        assert_eq!(tickers.name(0), "A");
    }
}
