//! File replay: CSV in the layouts of `../shared/data/real` (read with arrow-csv) and Parquet (read
//! with DataFusion, the date range and ticker list pushed down).
//!
//! CSV columns are found by name, so one reader serves the Kaggle, backtesting.py, Yahoo,
//! backtrader and CryptoDataDownload layouts and their documented quirks (an empty first header,
//! a banner line, a time column missing from the header, newest-first rows, CRLF). Values are read
//! as text and parsed here, so a bad value is reported with its file and line and the row goes to
//! quarantine; an empty price becomes NaN for the quality gate to reject with its reason.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::bar::{Bar, BarBatch, Tickers};
use crate::config::{FileFormat, LoadedPipeline, SourceSpec};
use crate::reject::{Action, Reason, Reject};
use crate::time::{DAY, EventTime, TimeText, parse_time};

use super::{SourceError, WorkerInput, group_by_time, universe};

/// The files of a replay and the filters that apply.
#[derive(Debug, Clone)]
pub struct FileSet {
    format: FileFormat,
    /// (path, ticker) for per-ticker CSV files; ticker empty for Parquet.
    files: Vec<(PathBuf, String)>,
    tickers: Tickers,
    sectors: std::collections::BTreeMap<String, String>,
    universe: Option<PathBuf>,
    start: Option<EventTime>,
    end: Option<EventTime>,
}

/// Guesses a CSV file's layout from its first line (and the second, after a banner).
///
/// # Errors
/// An unreadable file.
pub fn detect_format(path: &Path) -> Result<FileFormat, SourceError> {
    if path.extension().is_some_and(|e| e == "parquet") {
        return Ok(FileFormat::Parquet);
    }
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(if first.starts_with("http") {
        FileFormat::Cryptodatadownload
    } else if first.starts_with(',') {
        FileFormat::BacktestingPy
    } else if first.ends_with(",name") {
        FileFormat::Kaggle
    } else if first.contains("adj close") {
        FileFormat::Yahoo
    } else {
        FileFormat::Backtrader
    })
}

/// Reads one per-ticker CSV file of any supported layout into bars (ticker id 0, named after the
/// file) and the rows it could not parse.
///
/// # Errors
/// An unreadable file, or one whose header is not the layout.
pub fn read_bar_file(
    path: &Path,
    format: FileFormat,
) -> Result<(BarBatch, Vec<Reject>), SourceError> {
    let mut bars = BarBatch::default();
    let mut rejects = Vec::new();
    read_csv(
        path,
        format,
        &file_ticker(path, format)?,
        0,
        &mut bars,
        &mut rejects,
    )?;
    Ok((bars, rejects))
}

/// The ticker of a per-ticker CSV file, in its canonical spelling ([`crate::names::canonical_ticker`]):
/// the first row's symbol column where the layout has one (CryptoDataDownload's `symbol`,
/// `BTC/USDT` → `BTCUSDT`), else the file name ([`ticker_of`]).
///
/// # Errors
/// An unreadable file, or a name that breaks the ticker rule (the same rule a live run applies).
pub fn file_ticker(path: &Path, format: FileFormat) -> Result<String, SourceError> {
    let mut raw = ticker_of(path);
    let mut from = "its file name";
    if format == FileFormat::Cryptodatadownload {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text
            .trim_start_matches('\u{feff}')
            .lines()
            .skip_while(|l| l.trim_start().starts_with("http"));
        let names: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let first = lines.next().unwrap_or_default();
        if let Some(s) = columns(&names).name.and_then(|i| first.split(',').nth(i)) {
            raw = s.trim().to_string();
            from = "its symbol column";
        }
    }
    crate::names::canonical_ticker(&raw).map_err(|e| SourceError::Format {
        path: path.to_path_buf(),
        message: format!("the ticker taken from {from}: {e}"),
    })
}

/// Ticker named by a per-ticker file: its stem, less a `_data` suffix (`AAPL_data.csv` → `AAPL`).
pub fn ticker_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    stem.strip_suffix("_data").unwrap_or(stem).to_string()
}

impl FileSet {
    /// Lists the files, applies the universe and ticker filters.
    ///
    /// # Errors
    /// See [`SourceError`].
    pub fn open(p: &LoadedPipeline) -> Result<FileSet, SourceError> {
        let SourceSpec::Files {
            format,
            paths,
            universe,
            tickers,
            start,
            end,
        } = &p.pipeline.source
        else {
            return Err(SourceError::Empty {
                selection: "not a file source".into(),
            });
        };
        let mut found: Vec<PathBuf> = Vec::new();
        for pattern in paths {
            let full = p.resolve(pattern);
            let text = full.to_string_lossy().to_string();
            let matches = glob::glob(&text).map_err(|e| SourceError::Pattern {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            let before = found.len();
            for m in matches {
                found.push(m.map_err(|e| SourceError::Io {
                    path: e.path().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })?);
            }
            if found.len() == before {
                return Err(SourceError::Io {
                    path: full,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no file matches"),
                });
            }
        }
        found.sort();
        found.dedup();
        let members = match universe {
            Some(u) => Some(universe::members(&p.resolve(u))?),
            None => None,
        };
        let sectors = members
            .iter()
            .flatten()
            .filter_map(|m| Some((m.ticker.clone(), m.sector.clone()?)))
            .collect();
        let allowed: Option<Vec<String>> =
            members.map(|m| m.into_iter().map(|m| m.ticker).collect());
        let keep = |t: &str| {
            allowed
                .as_ref()
                .is_none_or(|a| a.binary_search_by(|x| x.as_str().cmp(t)).is_ok())
                && (tickers.is_empty() || tickers.iter().any(|x| x == t))
        };
        let (files, names): (Vec<(PathBuf, String)>, Vec<String>) =
            if *format == FileFormat::Parquet {
                let mut names = Vec::new();
                for f in &found {
                    names.extend(parquet_tickers(f)?.into_iter().filter(|t| keep(t)));
                }
                (
                    found.into_iter().map(|f| (f, String::new())).collect(),
                    names,
                )
            } else {
                let mut files: Vec<(PathBuf, String)> = Vec::with_capacity(found.len());
                for f in found {
                    let t = file_ticker(&f, *format)?;
                    if keep(&t) {
                        files.push((f, t));
                    }
                }
                let names = files.iter().map(|(_, t)| t.clone()).collect();
                (files, names)
            };
        let tickers = Tickers::new(names);
        if tickers.is_empty() {
            return Err(SourceError::Empty {
                selection: format!("paths: {}", paths.join(", ")),
            });
        }
        let start = start.as_ref().and_then(TimeText::at);
        let end = end.as_ref().and_then(TimeText::at).map(|e| e + DAY);
        Ok(FileSet {
            format: *format,
            files,
            tickers,
            sectors,
            universe: universe.as_deref().map(|u| p.resolve(u)),
            start,
            end,
        })
    }

    /// The run's tickers.
    pub fn tickers(&self) -> Tickers {
        self.tickers.clone()
    }

    /// The files the run reads: the bars' files (those of kept tickers) and the universe file.
    pub fn inputs(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .map(|(p, _)| p.clone())
            .chain(self.universe.clone())
            .collect()
    }

    /// Sectors the universe file gives.
    pub fn sectors(&self) -> std::collections::BTreeMap<String, String> {
        self.sectors.clone()
    }

    /// Loads the files of worker `index`: those of the tickers it owns ([`crate::bar::owner`], so
    /// its bars need no exchange), and every `peers`-th file of several tickers (Parquet).
    ///
    /// # Errors
    /// An unreadable file, or one whose header is not the declared layout.
    pub fn load(
        &self,
        index: usize,
        peers: usize,
        tickers: &Tickers,
    ) -> Result<WorkerInput, SourceError> {
        let mine = self
            .files
            .iter()
            .enumerate()
            .filter(|(i, (_, ticker))| match tickers.id(ticker) {
                Some(id) => crate::bar::owner(id, peers) == index,
                None => i % peers.max(1) == index,
            })
            .map(|(_, f)| f);
        let (kept, rejects) = self.read(mine, tickers)?;
        Ok(WorkerInput {
            batches: group_by_time(kept),
            rejects,
        })
    }

    /// Loads one ticker's bars (in file order) and the rows of its files that failed to parse:
    /// a streaming worker's unit of work.
    ///
    /// # Errors
    /// An unreadable file, or one whose header is not the declared layout.
    pub fn load_ticker(
        &self,
        ticker: &str,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let id = tickers.id(ticker);
        let (bars, rejects) = self.read(self.files.iter().filter(|(_, t)| t == ticker), tickers)?;
        let mut kept = BarBatch::with_capacity(bars.len());
        for b in bars.iter().filter(|b| Some(b.ticker) == id) {
            kept.push(b);
        }
        Ok((kept, rejects))
    }

    fn read<'a>(
        &self,
        mine: impl Iterator<Item = &'a (PathBuf, String)>,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let mut all = BarBatch::default();
        let mut rejects = Vec::new();
        if self.format == FileFormat::Parquet {
            let paths: Vec<PathBuf> = mine.map(|(p, _)| p.clone()).collect();
            read_parquet(&paths, tickers, self.start, self.end, &mut all)?;
            for p in &paths {
                rejects.extend(parquet_rows_without_ticker_or_time(p)?);
            }
        } else {
            for (path, ticker) in mine {
                if let Some(id) = tickers.id(ticker) {
                    read_csv(path, self.format, ticker, id, &mut all, &mut rejects)?;
                }
            }
        }
        let (start, end) = (self.start.unwrap_or(i64::MIN), self.end.unwrap_or(i64::MAX));
        let mut kept = BarBatch::with_capacity(all.len());
        for b in all.iter().filter(|b| b.ts >= start && b.ts < end) {
            kept.push(b);
        }
        rejects.retain(|r| r.ts.is_none_or(|t| t >= start && t < end));
        Ok((kept, rejects))
    }
}

/// Roles of CSV columns.
#[derive(Debug, Default)]
struct Columns {
    date: Option<usize>,
    time: Option<usize>,
    unix: Option<usize>,
    open: Option<usize>,
    high: Option<usize>,
    low: Option<usize>,
    close: Option<usize>,
    volume: Option<usize>,
    name: Option<usize>,
}

fn columns(names: &[String]) -> Columns {
    let mut c = Columns::default();
    for (i, n) in names.iter().enumerate() {
        let l = n.trim().to_ascii_lowercase();
        let slot = match l.as_str() {
            "" | "date" | "datetime" | "timestamp" if c.date.is_none() => &mut c.date,
            "time" => &mut c.time,
            "unix" => &mut c.unix,
            "open" => &mut c.open,
            "high" => &mut c.high,
            "low" => &mut c.low,
            "close" => &mut c.close,
            "name" | "symbol" | "ticker" => &mut c.name,
            v if v.starts_with("volume") && c.volume.is_none() => &mut c.volume,
            _ => continue,
        };
        *slot = Some(i);
    }
    c
}

/// The number of fields of one CSV line (quotes honoured, `""` inside quotes is a quote), or
/// `None` when a quote is left open.
fn fields_in(line: &str) -> Option<usize> {
    let (mut n, mut quoted) = (1, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => n += 1,
            _ => {}
        }
    }
    (!quoted).then_some(n)
}

/// Reads one per-ticker CSV file.
fn read_csv(
    path: &Path,
    format: FileFormat,
    ticker: &str,
    id: u32,
    out: &mut BarBatch,
    rejects: &mut Vec<Reject>,
) -> Result<(), SourceError> {
    let bad = |message: String| SourceError::Format {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Invalid UTF-8 becomes U+FFFD here; the rows holding it are quarantined below.
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.split_inclusive('\n');
    let mut line_no = 1usize;
    let mut header = lines.next().unwrap_or_default();
    if format == FileFormat::Cryptodatadownload && header.trim_start().starts_with("http") {
        header = lines.next().unwrap_or_default();
        line_no += 1;
    }
    let header_line = line_no;
    let mut names: Vec<String> = header
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let body_lines: Vec<&str> = lines.collect();
    // backtrader's minute file: rows carry an unnamed time field after the date.
    let first_fields = body_lines
        .iter()
        .find_map(|l| fields_in(l.trim_end_matches(['\r', '\n'])))
        .unwrap_or(names.len());
    if first_fields == names.len() + 1 {
        names.insert(1, "Time".into());
    }
    // Rows that are not rows of this table — ragged, blank, with an unbalanced quote or bytes that
    // are not UTF-8 — are quarantined with their own line; the rest is read. `row_lines[i]` is the
    // file line of the i-th row handed to the CSV reader.
    let mut body = String::with_capacity(text.len());
    let mut row_lines: Vec<usize> = Vec::with_capacity(body_lines.len());
    for (i, raw) in body_lines.iter().enumerate() {
        let line = header_line + 1 + i;
        let l = raw.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            continue;
        }
        let problem = if l.trim().is_empty() {
            Some("a blank line".to_string())
        } else if l.contains('\u{fffd}') {
            Some("bytes that are not UTF-8".to_string())
        } else {
            match fields_in(l) {
                None => Some("an unbalanced quote".to_string()),
                Some(n) if n != names.len() => {
                    Some(format!("{n} fields where the header has {}", names.len()))
                }
                Some(_) => None,
            }
        };
        match problem {
            Some(p) => rejects.push(Reject {
                ticker: ticker.to_string(),
                ts: None,
                reason: Reason::Unparseable,
                action: Action::Rejected,
                detail: format!("{}:{line}: {p}", path.display()),
                origin: format!("{}:{line}", path.display()),
            }),
            None => {
                body.push_str(l);
                body.push('\n');
                row_lines.push(line);
            }
        }
    }
    let c = columns(&names);
    let (Some(open), Some(high), Some(low), Some(close)) = (c.open, c.high, c.low, c.close) else {
        return Err(bad(format!(
            "header `{}` lacks open/high/low/close for format {format:?}",
            header.trim()
        )));
    };
    if c.date.is_none() && c.unix.is_none() {
        return Err(bad(format!(
            "header `{}` has no date column",
            header.trim()
        )));
    }
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .enumerate()
            .map(|(i, _)| Field::new(format!("c{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_batch_size(65_536)
        .build(Cursor::new(body.as_bytes()))
        .map_err(|e| bad(e.to_string()))?;
    let mut row = 0usize;
    for rb in reader {
        let at = row_lines.get(row).copied().unwrap_or(header_line + row + 1);
        let rb = rb.map_err(|e| bad(format!("line {at} or after: {e}")))?;
        let cols: Vec<&StringArray> = rb
            .columns()
            .iter()
            .filter_map(|a| a.as_any().downcast_ref::<StringArray>())
            .collect();
        let get = |i: Option<usize>, r: usize| -> Option<&str> {
            let a = cols.get(i?)?;
            if a.is_null(r) {
                None
            } else {
                Some(a.value(r).trim())
            }
        };
        for r in 0..rb.num_rows() {
            let line = row_lines.get(row).copied().unwrap_or(header_line + row + 1);
            row += 1;
            let place = || format!("{}:{line}", path.display());
            let reject = |reason, detail: String, ts| Reject {
                ticker: ticker.to_string(),
                ts,
                reason,
                action: Action::Rejected,
                detail,
                origin: place(),
            };
            let ts = match (get(c.unix, r), get(c.date, r)) {
                (Some(u), _) if !u.is_empty() => u
                    .parse::<i64>()
                    .ok()
                    .map(|ms| if ms > 100_000_000_000 { ms / 1000 } else { ms }),
                (_, Some(d)) => match get(c.time, r) {
                    Some(t) if !t.is_empty() => parse_time(&format!("{d} {t}")),
                    _ => parse_time(d),
                },
                _ => None,
            };
            let Some(ts) = ts else {
                rejects.push(reject(
                    Reason::Unparseable,
                    format!(
                        "{}: time `{}` not understood",
                        place(),
                        match (get(c.date, r), get(c.time, r)) {
                            (Some(d), Some(t)) if !t.is_empty() => format!("{d} {t}"),
                            (Some(d), _) => d.to_string(),
                            (None, _) => get(c.unix, r).unwrap_or("").to_string(),
                        }
                    ),
                    None,
                ));
                continue;
            };
            if let Some(n) = get(c.name, r) {
                let same = crate::names::canonical_ticker(n).is_ok_and(|n| n == ticker);
                if matches!(format, FileFormat::Kaggle | FileFormat::Cryptodatadownload)
                    && !n.is_empty()
                    && !same
                {
                    rejects.push(reject(
                        Reason::UnknownTicker,
                        format!("{}: Name `{n}` in the file of {ticker}", place()),
                        Some(ts),
                    ));
                    continue;
                }
            }
            let value = |i: Option<usize>, field: &str| -> Result<f64, String> {
                match get(i, r) {
                    None | Some("") => Ok(f64::NAN),
                    Some(v) => v
                        .parse::<f64>()
                        .map_err(|_| format!("{}: {field} `{v}` is not a number", place())),
                }
            };
            let parsed = (|| {
                Ok::<_, String>((
                    value(Some(open), "open")?,
                    value(Some(high), "high")?,
                    value(Some(low), "low")?,
                    value(Some(close), "close")?,
                    value(c.volume, "volume")?,
                ))
            })();
            match parsed {
                Ok((o, h, l, cl, v)) => out.push(Bar {
                    ticker: id,
                    ts,
                    open: o,
                    high: h,
                    low: l,
                    close: cl,
                    volume: if c.volume.is_none() { 0.0 } else { v },
                }),
                Err(detail) => rejects.push(reject(Reason::Unparseable, detail, Some(ts))),
            }
        }
    }
    Ok(())
}

/// Runs a DataFusion query over Parquet files on a small runtime of its own (sources run on timely
/// worker threads, which are not tokio's).
fn datafusion<T>(
    paths: &[PathBuf],
    query: impl AsyncFnOnce(datafusion::prelude::DataFrame) -> datafusion::error::Result<T>,
) -> Result<T, SourceError> {
    let first = paths.first().cloned().unwrap_or_default();
    let err = |e: &dyn std::fmt::Display| SourceError::Arrow {
        path: first.clone(),
        message: e.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| err(&e))?;
    let files: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx
            .read_parquet(files, datafusion::prelude::ParquetReadOptions::default())
            .await?;
        query(df).await
    })
    .map_err(|e| err(&e))
}

/// The distinct tickers of Parquet bar files.
fn parquet_tickers(path: &Path) -> Result<Vec<String>, SourceError> {
    use datafusion::prelude::col;
    let batches = datafusion(&[path.to_path_buf()], async |df| {
        df.select(vec![col("ticker")])?.distinct()?.collect().await
    })?;
    let mut out = Vec::new();
    for rb in &batches {
        let names = crate::bar::utf8(rb.column(0)).map_err(|e| SourceError::Format {
            path: path.to_path_buf(),
            message: format!("`ticker`: {e}"),
        })?;
        for n in names.iter().flatten() {
            crate::names::check_ticker(n).map_err(|e| SourceError::Format {
                path: path.to_path_buf(),
                message: format!("column `ticker`: {e}"),
            })?;
            out.push(n.to_string());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The rows of a Parquet bar file with a null `ticker` or a null `time`: quarantined with the file
/// and what is missing (a filter on the ticker list or the dates would drop them silently).
fn parquet_rows_without_ticker_or_time(path: &Path) -> Result<Vec<Reject>, SourceError> {
    use datafusion::prelude::col;
    let batches = datafusion(&[path.to_path_buf()], async |df| {
        df.filter(col("ticker").is_null().or(col("time").is_null()))?
            .select(vec![col("ticker"), col("time")])?
            .collect()
            .await
    })?;
    let mut out = Vec::new();
    for rb in &batches {
        let tickers = crate::bar::utf8(rb.column(0)).map_err(|e| SourceError::Format {
            path: path.to_path_buf(),
            message: format!("`ticker`: {e}"),
        })?;
        let times = rb.column(1);
        for r in 0..rb.num_rows() {
            let ticker = (!tickers.is_null(r)).then(|| tickers.value(r).to_string());
            let missing = match (&ticker, times.is_null(r)) {
                (None, true) => "ticker and time are null",
                (None, false) => "ticker is null",
                _ => "time is null",
            };
            out.push(Reject {
                ticker: ticker.unwrap_or_default(),
                ts: None,
                reason: Reason::MissingField,
                action: Action::Rejected,
                detail: format!("{}: a row whose {missing}", path.display()),
                // The filter keeps no row number: the k-th such row of the file.
                origin: format!("{}: null row {}", path.display(), out.len() + 1),
            });
        }
    }
    Ok(out)
}

/// Reads Parquet bars through DataFusion with the date range and the ticker list pushed down, so
/// row groups outside them are skipped by their statistics.
fn read_parquet(
    paths: &[PathBuf],
    tickers: &Tickers,
    start: Option<EventTime>,
    end: Option<EventTime>,
    out: &mut BarBatch,
) -> Result<(), SourceError> {
    use datafusion::common::ScalarValue;
    use datafusion::prelude::{Expr, col, lit};
    if paths.is_empty() {
        return Ok(());
    }
    let names: Vec<Expr> = tickers.names().iter().map(|n| lit(n.as_str())).collect();
    let batches = datafusion(paths, async move |df| {
        let seconds = matches!(
            df.schema()
                .field_with_unqualified_name("time")
                .map(|f| f.data_type().clone()),
            Ok(DataType::Timestamp(_, _))
        );
        let at = |t: EventTime| {
            if seconds {
                lit(ScalarValue::TimestampSecond(Some(t), None))
            } else {
                lit(t)
            }
        };
        // Rows without a time are quarantined (`parquet_rows_without_ticker_or_time`), never read
        // from the raw buffer under the null.
        let mut df = df.filter(
            col("ticker")
                .in_list(names, false)
                .and(col("time").is_not_null()),
        )?;
        if let Some(s) = start {
            df = df.filter(col("time").gt_eq(at(s)))?;
        }
        if let Some(e) = end {
            df = df.filter(col("time").lt(at(e)))?;
        }
        df.select(vec![
            col("time"),
            col("ticker"),
            col("open"),
            col("high"),
            col("low"),
            col("close"),
            col("volume"),
        ])?
        .collect()
        .await
    })?;
    for rb in &batches {
        let (batch, _unknown) =
            BarBatch::from_arrow(rb, tickers).map_err(|e| SourceError::Format {
                path: paths[0].clone(),
                message: e.to_string(),
            })?;
        for b in batch.iter() {
            out.push(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn kaggle_rows_with_a_bad_value_are_rejected_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "DHR_data.csv",
            "date,open,high,low,close,volume,Name\n2015-07-16,1,2,0.5,1.5,10,DHR\n2015-07-17,,88.76,88.24,88.72,2056819,DHR\n2015-07-20,x,2,1,1,1,DHR\nnot-a-date,1,2,1,1,1,DHR\n",
        );
        let mut out = BarBatch::default();
        let mut rejects = Vec::new();
        read_csv(&p, FileFormat::Kaggle, "DHR", 0, &mut out, &mut rejects).unwrap();
        assert_eq!(out.len(), 2, "the empty open stays for the quality gate");
        assert!(out.open[1].is_nan());
        assert_eq!(rejects.len(), 2);
        assert!(
            rejects[0]
                .detail
                .ends_with("DHR_data.csv:4: open `x` is not a number"),
            "{}",
            rejects[0].detail
        );
        assert!(
            rejects[1]
                .detail
                .contains("DHR_data.csv:5: time `not-a-date`"),
            "{}",
            rejects[1].detail
        );
    }

    #[test]
    fn backtrader_minute_rows_with_an_unnamed_time_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.txt",
            "Date,Open,High,Low,Close,Volume,OpenInterest\r\n2006-01-02,09:01:00,3602.00,3603.00,3601.00,3602.50,10,0\r\n",
        );
        let mut out = BarBatch::default();
        let mut rejects = Vec::new();
        read_csv(&p, FileFormat::Backtrader, "m", 0, &mut out, &mut rejects).unwrap();
        assert!(rejects.is_empty(), "{rejects:?}");
        assert_eq!(out.ts, vec![parse_time("2006-01-02 09:01:00").unwrap()]);
        assert_eq!(out.close, vec![3602.5]);
        // A bad minute is reported with its time part.
        let p = write(
            dir.path(),
            "m2.txt",
            "Date,Open,High,Low,Close,Volume,OpenInterest\n2006-01-02,09:61:00,1,1,1,1,10,0\n",
        );
        read_csv(&p, FileFormat::Backtrader, "m", 0, &mut out, &mut rejects).unwrap();
        assert!(
            rejects[0]
                .detail
                .ends_with("m2.txt:2: time `2006-01-02 09:61:00` not understood"),
            "{rejects:?}"
        );
    }

    #[test]
    fn cryptodatadownload_banner_and_ms_times() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "X.csv",
            "https://www.CryptoDataDownload.com\nunix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n1609286400000,2020-12-30 00:00:00,BTC/USDT,1,2,0.5,1.5,3,4,5\n1609282800000,2020-12-29 23:00:00,ETH/USDT,1,2,0.5,1.5,3,4,5\n",
        );
        // The ticker is the symbol column's, in its canonical spelling, not the file name.
        let ticker = file_ticker(&p, FileFormat::Cryptodatadownload).unwrap();
        assert_eq!(ticker, "BTCUSDT");
        let mut out = BarBatch::default();
        let mut rejects = Vec::new();
        read_csv(
            &p,
            FileFormat::Cryptodatadownload,
            &ticker,
            0,
            &mut out,
            &mut rejects,
        )
        .unwrap();
        assert_eq!(out.ts, vec![1_609_286_400]);
        assert_eq!(out.volume, vec![3.0]);
        // A row of another symbol is not this ticker's bar: quarantined with its place.
        assert_eq!(rejects.len(), 1, "{rejects:?}");
        assert!(rejects[0].detail.contains("X.csv:4"), "{rejects:?}");
    }

    #[test]
    fn a_file_name_that_breaks_the_ticker_rule_is_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "A B.csv",
            ",Open,High,Low,Close,Volume\n2020-01-01,1,1,1,1,1\n",
        );
        let e = file_ticker(&p, FileFormat::BacktestingPy)
            .unwrap_err()
            .to_string();
        assert!(e.contains("A B.csv") && e.contains("has ' '"), "{e}");
    }

    #[test]
    fn parquet_reads_only_the_selected_tickers_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let all = Tickers::new(["A".to_string(), "B".to_string(), "C".to_string()]);
        let mut b = BarBatch::default();
        for t in 0..3u32 {
            for d in 0..10i64 {
                b.push(Bar {
                    ticker: t,
                    ts: d * DAY,
                    open: 1.0,
                    high: 2.0,
                    low: 0.5,
                    close: 1.5,
                    volume: d as f64,
                });
            }
        }
        let rb = b.to_arrow(&all).unwrap();
        let path = dir.path().join("bars.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            rb.schema(),
            None,
        )
        .unwrap();
        w.write(&rb).unwrap();
        w.close().unwrap();
        assert_eq!(parquet_tickers(&path).unwrap(), vec!["A", "B", "C"]);
        let some = Tickers::new(["A".to_string(), "C".to_string()]);
        let mut out = BarBatch::default();
        read_parquet(&[path], &some, Some(2 * DAY), Some(5 * DAY), &mut out).unwrap();
        let mut got: Vec<(u32, i64)> = out.iter().map(|b| (b.ticker, b.ts / DAY)).collect();
        got.sort();
        assert_eq!(got, vec![(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]);
    }

    #[test]
    fn a_file_without_prices_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.csv", "a,b\n1,2\n");
        let e = read_csv(
            &p,
            FileFormat::Kaggle,
            "bad",
            0,
            &mut BarBatch::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks open/high/low/close"), "{e}");
    }

    #[test]
    fn rows_that_are_not_rows_are_quarantined_with_their_true_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b",Open,High,Low,Close,Volume\n\
2020-01-02,1,2,0.5,1.5,10\n\
2020-01-03,1,2,0.5\n\
\x20\x20\n\
2020-01-06,1,2,0.5,1.5,10,99\n\
\"2020-01-07,1,2,0.5,1.5,10\n\
2020-01-08,1,2,0.5,1.5,10\n"
            .to_vec();
        bytes.extend_from_slice(b"2020-01-09,1,2,0.5,1.\xff5,10\n2020-01-10,1,2,0.5,1.5,10\n\n");
        let p = dir.path().join("R.csv");
        std::fs::write(&p, bytes).unwrap();
        let (bars, rejects) = read_bar_file(&p, FileFormat::BacktestingPy).unwrap();
        assert_eq!(bars.len(), 3, "{rejects:#?}");
        let at: Vec<String> = rejects
            .iter()
            .map(|r| r.detail.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            at,
            vec![
                "R.csv:3: 4 fields where the header has 6",
                "R.csv:4: a blank line",
                "R.csv:5: 7 fields where the header has 6",
                "R.csv:6: an unbalanced quote",
                "R.csv:8: bytes that are not UTF-8",
            ]
        );
        // The rows after them keep their own lines: a bad value names line 9.
        std::fs::write(
            &p,
            ",Open,High,Low,Close,Volume\n\n2020-01-02,1,2,0.5,x,10\n",
        )
        .unwrap();
        let (_, rejects) = read_bar_file(&p, FileFormat::BacktestingPy).unwrap();
        assert!(
            rejects[0].detail.contains("R.csv:3: close `x`"),
            "{rejects:?}"
        );
    }
}
