//! Sources: where bars enter the graph. File replay (CSV and Parquet in the layouts of the real data
//! sets), universe lists, and a seeded synthetic generator. Each worker loads its share of the files
//! (or synthetic tickers) and feeds them at their event time; the quality gate exchanges by ticker.

pub mod entry;
pub mod files;
pub mod fundamentals;
pub mod providers;
pub mod read_ahead;
pub mod redis_bars;
pub mod redis_stream;
pub mod resp;
pub mod synthetic;
pub mod universe;
pub mod wake;

use std::path::PathBuf;

use crate::bar::{BarBatch, Tickers};
use crate::config::{LoadedPipeline, QualitySpec, SourceSpec};
use crate::operators::quality::{QualityGate, Verdict};
use crate::reject::{Action, Reject};

/// Errors that stop a source from starting (bad rows do not: they are quarantined).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file's layout is not the declared format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A glob pattern is malformed.
    #[error("bad path pattern `{pattern}`: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing matched the source's paths and filters.
    #[error("the source selects no ticker ({selection})")]
    Empty {
        /// What the source selected from: paths, a key pattern.
        selection: String,
    },
    /// No provider gave a ticker's bars.
    #[error("no provider gave {ticker}: {reasons}")]
    Providers {
        /// The ticker.
        ticker: String,
        /// Each provider's reason, in the chain's order.
        reasons: String,
    },
    /// Arrow or Parquet failed.
    #[error("{path}: {message}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

impl crate::fault::Blame for SourceError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            SourceError::Io { source, .. } => source.fault(),
            SourceError::Format { .. } | SourceError::Arrow { .. } => Fault::Data,
            SourceError::Pattern { .. } | SourceError::Empty { .. } => Fault::Input,
            SourceError::Providers { .. } => Fault::Service,
        }
    }
}

/// What one worker feeds into the graph: bars grouped by time (ascending), and rows it could not
/// turn into bars.
#[derive(Debug, Default)]
pub struct WorkerInput {
    /// One batch per distinct event time, ascending.
    pub batches: Vec<(u64, BarBatch)>,
    /// Source-level rejects (unparseable rows, unknown tickers).
    pub rejects: Vec<Reject>,
}

/// A source resolved from the pipeline: the ticker table every worker shares, and how to load a
/// worker's share.
#[derive(Debug, Clone)]
pub enum Source {
    /// File replay.
    Files(files::FileSet),
    /// Synthetic generator.
    Synthetic(synthetic::Synthetic),
    /// Redis bar store.
    Redis(redis_bars::RedisBars),
    /// Market-data providers over HTTP.
    Providers(providers::source::ProviderSource),
}

impl Source {
    /// Resolves the pipeline's source (lists files, reads the universe).
    ///
    /// # Errors
    /// Unreadable paths or universe, bad patterns, or an empty selection.
    pub fn open(p: &LoadedPipeline) -> Result<Source, SourceError> {
        match &p.pipeline.source {
            SourceSpec::Files { .. } => Ok(Source::Files(files::FileSet::open(p)?)),
            SourceSpec::Redis { .. } => Ok(Source::Redis(redis_bars::RedisBars::open(p)?)),
            SourceSpec::Providers { .. } => Ok(Source::Providers(
                providers::source::ProviderSource::open(p)?,
            )),
            SourceSpec::Synthetic {
                tickers,
                bars,
                seed,
                start,
            } => Ok(Source::Synthetic(synthetic::Synthetic::new(
                *tickers,
                *bars,
                *seed,
                start.as_ref().and_then(crate::time::TimeText::at),
            ))),
        }
    }

    /// The files a backtest reads (hashed into its `run.json`); none for a stream, providers
    /// (their answers are cached by request) or synthetic data (its seed is in the pipeline).
    pub fn input_files(&self) -> Vec<std::path::PathBuf> {
        match self {
            Source::Files(f) => f.inputs(),
            _ => Vec::new(),
        }
    }

    /// The run's ticker table.
    pub fn tickers(&self) -> Tickers {
        match self {
            Source::Files(f) => f.tickers(),
            Source::Synthetic(s) => s.tickers(),
            Source::Redis(r) => r.tickers(),
            Source::Providers(p) => p.tickers(),
        }
    }

    /// Sector of each ticker that the universe file names one for.
    pub fn sectors(&self) -> std::collections::BTreeMap<String, String> {
        match self {
            Source::Files(f) => f.sectors(),
            Source::Synthetic(_) | Source::Redis(_) | Source::Providers(_) => {
                std::collections::BTreeMap::new()
            }
        }
    }

    /// Loads the share of worker `index` of `peers`.
    ///
    /// # Errors
    /// A file that cannot be read or is not in the declared format.
    pub fn load(
        &self,
        index: usize,
        peers: usize,
        tickers: &Tickers,
    ) -> Result<WorkerInput, SourceError> {
        match self {
            Source::Files(f) => f.load(index, peers, tickers),
            Source::Synthetic(s) => Ok(s.load(index, peers, tickers)),
            Source::Redis(r) => r.load(index, peers, tickers),
            Source::Providers(p) => p.load(index, peers, tickers),
        }
    }
}

impl Source {
    /// Loads one ticker's bars and source rejects (see [`files::FileSet::load_ticker`]).
    ///
    /// # Errors
    /// A file that cannot be read or is not in the declared format.
    pub fn load_ticker(
        &self,
        ticker: &str,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        match self {
            Source::Files(f) => f.load_ticker(ticker, tickers),
            Source::Redis(r) => r.load_ticker(ticker, tickers),
            Source::Providers(p) => p.load_ticker(ticker, tickers),
            Source::Synthetic(s) => Ok((
                tickers
                    .id(ticker)
                    .map(|id| s.series(id))
                    .unwrap_or_default(),
                Vec::new(),
            )),
        }
    }
}

/// A worker's share of a source that loads ticker by ticker (a Redis bar store, providers): the
/// tickers worker `index` of `peers` owns, each through `load_ticker`, grouped by time.
///
/// # Errors
/// The first ticker `load_ticker` fails on.
pub fn load_owned(
    index: usize,
    peers: usize,
    tickers: &Tickers,
    mut load_ticker: impl FnMut(&str) -> Result<(BarBatch, Vec<Reject>), SourceError>,
) -> Result<WorkerInput, SourceError> {
    let mut all = BarBatch::default();
    let mut rejects = Vec::new();
    for (id, name) in tickers.names().iter().enumerate() {
        if crate::bar::owner(id as u32, peers) != index {
            continue;
        }
        let (b, r) = load_ticker(name)?;
        for bar in b.iter() {
            all.push(bar);
        }
        rejects.extend(r);
    }
    Ok(WorkerInput {
        batches: group_by_time(all),
        rejects,
    })
}

/// What a source holds before a run: bars that pass the quality gate, and the rows it rejects.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Bars that pass the gate.
    pub usable: usize,
    /// Source rows that did not parse and bars the gate rejects, in file order per ticker.
    pub rejected: Vec<Reject>,
}

impl Survey {
    /// The first `n` rejects, `ticker (reason): detail`, for an error message.
    pub fn first_rejects(&self, n: usize) -> String {
        self.rejected
            .iter()
            .take(n)
            .map(|r| format!("{} ({}): {}", r.ticker, r.reason.as_str(), r.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads the whole source once and runs each ticker's bars through the quality gate, without the
/// graph: what `fdp validate` reports (a source with no usable bar cannot run).
///
/// # Errors
/// As [`Source::load`].
pub fn survey(source: &Source, quality: &QualitySpec) -> Result<Survey, SourceError> {
    let tickers = source.tickers();
    let input = source.load(0, 1, &tickers)?;
    let mut gates: Vec<QualityGate> = vec![QualityGate::new(quality); tickers.len()];
    let mut out = Survey {
        usable: 0,
        rejected: input.rejects,
    };
    for (_, batch) in &input.batches {
        for (i, b) in batch.iter().enumerate() {
            let Some(gate) = gates.get_mut(b.ticker as usize) else {
                continue;
            };
            match gate.check(&b) {
                Verdict::Pass(_) => out.usable += 1,
                Verdict::Reject(reason, detail) => out.rejected.push(Reject {
                    ticker: tickers.name(b.ticker).to_string(),
                    ts: Some(b.ts),
                    reason,
                    action: Action::Rejected,
                    detail,
                    origin: batch.origin(i),
                }),
            }
        }
    }
    Ok(out)
}

/// Groups bars by time into one batch per distinct time, ascending (stable within a time).
pub fn group_by_time(bars: BarBatch) -> Vec<(u64, BarBatch)> {
    let mut idx: Vec<usize> = (0..bars.len()).collect();
    // The row index breaks ties, so equal (time, ticker) rows keep their file order.
    idx.sort_unstable_by_key(|&i| (bars.ts[i], bars.ticker[i], i));
    // Each time's batch is allocated at its exact size: grown by doubling, the batches of a
    // large replay would hold up to twice the bars' memory.
    let mut sizes: Vec<(u64, usize)> = Vec::new();
    for &i in &idx {
        let t = crate::time::timely_time(bars.ts[i]);
        match sizes.last_mut() {
            Some((lt, n)) if *lt == t => *n += 1,
            _ => sizes.push((t, 1)),
        }
    }
    let mut out: Vec<(u64, BarBatch)> = sizes
        .into_iter()
        .map(|(t, n)| (t, BarBatch::with_capacity(n)))
        .collect();
    let mut at = 0;
    for i in idx {
        let b = bars.get(i);
        if crate::time::timely_time(b.ts) != out[at].0 {
            at += 1;
        }
        out[at].1.push(b);
    }
    out
}
