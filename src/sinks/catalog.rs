//! The Parquet catalog that `fdp fetch` fills and `format = "parquet"` file sources replay:
//! `<root>/<interval>/<TICKER>.parquet`, one file per ticker with the bar schema
//! (`time, ticker, open, high, low, close, volume`), ascending, one row per time. Each file
//! records in its key-value metadata how far it was fetched (`fdp.fetched_through`), so a
//! second fetch asks only for what came after, and a ticker already complete is not asked at
//! all. A file is replaced whole through a temporary file and a rename: an interrupted fetch
//! leaves every file as it was or as it became, never half written.
//!
//! Rows a provider sent that could not be used are appended to `<root>/<interval>/quarantine.jsonl`
//! (one JSON object per row, with the fetch time), never dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::bar::{BarBatch, Tickers};
use crate::config::provider::Interval;
use crate::fault::{Blame, Fault};
use crate::reject::Reject;
use crate::time::{EventTime, format_time};

/// The metadata key holding the time a file was fetched through (Unix seconds).
const THROUGH: &str = "fdp.fetched_through";

/// A catalog error, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A catalog file is not a bar file this build wrote (damaged, or another schema).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Blame for CatalogError {
    fn fault(&self) -> Fault {
        match self {
            CatalogError::Io { .. } => Fault::Input,
            CatalogError::Format { .. } => Fault::Data,
        }
    }
}

/// One ticker's file as read: its bars and how far it was fetched.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The bars, ascending.
    pub bars: BarBatch,
    /// The time the file was fetched through, when it says.
    pub through: Option<EventTime>,
}

/// The catalog of one interval.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
}

impl Catalog {
    /// The catalog of `interval` under `root` (`<root>/1d`, `<root>/5m`, ...).
    pub fn new(root: &Path, interval: Interval) -> Catalog {
        Catalog {
            dir: root.join(interval.label()),
        }
    }

    /// The directory of this interval's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A ticker's file (tickers pass the ticker rule, so they are safe file names).
    pub fn path(&self, ticker: &str) -> PathBuf {
        self.dir.join(format!("{ticker}.parquet"))
    }

    /// A ticker's file, or `None` when it has none yet.
    ///
    /// # Errors
    /// An unreadable or damaged file.
    pub fn read(&self, ticker: &str, tickers: &Tickers) -> Result<Option<Entry>, CatalogError> {
        let path = self.path(ticker);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CatalogError::Io { path, source }),
        };
        let format = |message: String| CatalogError::Format {
            path: path.clone(),
            message,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format(format!("not Parquet: {e}")))?;
        let through = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == THROUGH))
            .and_then(|k| k.value.as_deref()?.parse::<EventTime>().ok());
        let mut bars = BarBatch::default();
        for rb in builder.build().map_err(|e| format(e.to_string()))? {
            let rb = rb.map_err(|e| format(e.to_string()))?;
            let (b, others) =
                BarBatch::from_arrow(&rb, tickers).map_err(|e| format(e.to_string()))?;
            if let Some(o) = others.first() {
                return Err(format(format!("holds ticker {o:?}, not {ticker:?}")));
            }
            for bar in b.iter() {
                bars.push(bar);
            }
        }
        Ok(Some(Entry { bars, through }))
    }

    /// Replaces a ticker's file with `bars` (ascending), fetched through `through`.
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn write(
        &self,
        ticker: &str,
        tickers: &Tickers,
        bars: &BarBatch,
        through: EventTime,
    ) -> Result<(), CatalogError> {
        let path = self.path(ticker);
        let io = |path: &Path, source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!(".{ticker}.parquet.tmp"));
        let other = |e: &dyn std::fmt::Display| io(&tmp, std::io::Error::other(e.to_string()));
        let rb = bars.to_arrow(tickers).map_err(|e| other(&e))?;
        let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                THROUGH.to_string(),
                through.to_string(),
            )]))
            .build();
        let mut w = ArrowWriter::try_new(file, rb.schema(), Some(props)).map_err(|e| other(&e))?;
        w.write(&rb).map_err(|e| other(&e))?;
        let file = w.into_inner().map_err(|e| other(&e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// Appends a fetch's quarantine rows to `quarantine.jsonl`, each with the fetch time.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn quarantine(
        &self,
        rejects: &[Reject],
        fetched_at: EventTime,
    ) -> Result<(), CatalogError> {
        quarantine(&self.dir, rejects, fetched_at)
    }
}

/// Appends `rejects` to `<dir>/quarantine.jsonl`, one JSON object per row with the fetch time,
/// synced before returning.
///
/// # Errors
/// The directory or file cannot be written.
pub fn quarantine(
    dir: &Path,
    rejects: &[Reject],
    fetched_at: EventTime,
) -> Result<(), CatalogError> {
    if rejects.is_empty() {
        return Ok(());
    }
    let path = dir.join("quarantine.jsonl");
    let io = |source| CatalogError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut text = String::new();
    for r in rejects {
        let row = serde_json::json!({ "fetched_at": format_time(fetched_at), "reject": r });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `old`'s bars followed by those of `new` later than its last, so a refetched overlap never
/// repeats a time.
pub fn append(old: &BarBatch, new: &BarBatch) -> BarBatch {
    let last = old.ts.last().copied().unwrap_or(EventTime::MIN);
    let mut out = BarBatch::with_capacity(old.len() + new.len());
    for b in old.iter().chain(new.iter().filter(|b| b.ts > last)) {
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::Bar;

    fn bars(times: &[EventTime]) -> BarBatch {
        let mut b = BarBatch::default();
        for &ts in times {
            b.push(Bar {
                ticker: 0,
                ts,
                open: 1.0842,
                high: 1.0850,
                low: 1.0831,
                close: 1.0845,
                volume: 0.0,
            });
        }
        b
    }

    #[test]
    fn a_file_round_trips_with_how_far_it_was_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::new(dir.path(), Interval::Minutes(5));
        let t = Tickers::new(["EURUSD".to_string()]);
        assert!(c.read("EURUSD", &t).unwrap().is_none());
        c.write("EURUSD", &t, &bars(&[0, 300, 600]), 899).unwrap();
        assert!(c.path("EURUSD").ends_with("5m/EURUSD.parquet"));
        let e = c.read("EURUSD", &t).unwrap().unwrap();
        assert_eq!(
            (e.bars.ts.clone(), e.through),
            (vec![0, 300, 600], Some(899))
        );
        assert_eq!(e.bars.close[0], 1.0845);
        let merged = append(&e.bars, &bars(&[600, 900]));
        assert_eq!(merged.ts, vec![0, 300, 600, 900]);
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::new(dir.path(), Interval::Day);
        std::fs::create_dir_all(c.dir()).unwrap();
        std::fs::write(c.path("SPY"), b"not parquet").unwrap();
        let e = c
            .read("SPY", &Tickers::new(["SPY".to_string()]))
            .unwrap_err();
        assert!(e.to_string().contains("SPY.parquet"), "{e}");
    }
}
