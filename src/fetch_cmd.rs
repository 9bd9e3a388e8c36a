//! `fdp fetch`: downloads a providers pipeline's universe into the Parquet catalog, through the
//! same chain, limiters, breakers, budgets and cache as a run. Each ticker is fetched from where
//! its file ends (or the pipeline's start) to `--until` (default: now, at most the pipeline's
//! end) and its file replaced whole, so an interrupted fetch resumes where it stopped; a ticker
//! no provider gives is reported and the rest go on.
//!
//! A pipeline whose `[fundamentals]` asks for FMP or Finnhub fields also gets them: each
//! ticker's statements merged into `fmp_dir` and a sentiment snapshot as of now added to
//! `finnhub_dir` (`sinks::recorded`), which the run then joins as it joins recorded files.

use std::path::Path;

use crate::config::{LoadedPipeline, SourceSpec};
use crate::fault::{Blame, Fault};
use crate::sinks::catalog::{self, Catalog, CatalogError};
use crate::sinks::recorded;
use crate::sources::SourceError;
use crate::sources::providers::source::ProviderSource;
use crate::sources::providers::statements::FundamentalsFetch;
use crate::time::EventTime;

/// Errors of `fdp fetch`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The pipeline has neither a `kind = "providers"` source nor fundamentals to fetch.
    #[error(
        "{pipeline}: nothing to fetch: fdp fetch needs a `kind = \"providers\"` source or FMP/Finnhub fields under [fundamentals]"
    )]
    NotProviders {
        /// The pipeline file.
        pipeline: String,
    },
    /// The source could not open, or Redis failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Blame for FetchError {
    fn fault(&self) -> Fault {
        match self {
            FetchError::NotProviders { .. } => Fault::Input,
            FetchError::Source(e) => e.fault(),
            FetchError::Catalog(e) => e.fault(),
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchReport {
    /// Tickers whose file grew or was written.
    pub fetched: usize,
    /// Tickers already fetched through the end: not asked.
    pub up_to_date: usize,
    /// Bars added across tickers.
    pub bars: usize,
    /// Rows quarantined (in the catalog's `quarantine.jsonl`).
    pub rejected: usize,
    /// Tickers no provider gave, with the reasons; a second fetch retries them. Fundamentals
    /// failures are named `TICKER fmp` or `TICKER finnhub`.
    pub failed: Vec<(String, String)>,
    /// FMP statement files written or merged.
    pub statements: usize,
    /// Finnhub sentiment snapshots written.
    pub snapshots: usize,
}

/// Fetches every ticker of `p`'s providers source into the catalog under `root`, through
/// `until` (default now); `now` is the wall clock read by the caller.
///
/// # Errors
/// Not a providers source, Redis unreachable, a catalog file unreadable or unwritable. A ticker
/// that no provider gives is not an error here: it is in [`FetchReport::failed`].
pub fn run(
    p: &LoadedPipeline,
    root: &Path,
    until: Option<EventTime>,
    now: EventTime,
) -> Result<FetchReport, FetchError> {
    let fundamentals = FundamentalsFetch::open(p)?;
    let bars = matches!(p.pipeline.source, SourceSpec::Providers { .. });
    if !bars && fundamentals.is_none() {
        return Err(FetchError::NotProviders {
            pipeline: p.path.display().to_string(),
        });
    }
    let mut report = FetchReport::default();
    if bars {
        fetch_bars(p, root, until, now, &mut report)?;
    }
    if let Some(f) = fundamentals {
        fetch_fundamentals(p, &f, now, &mut report)?;
    }
    Ok(report)
}

fn fetch_bars(
    p: &LoadedPipeline,
    root: &Path,
    until: Option<EventTime>,
    now: EventTime,
    report: &mut FetchReport,
) -> Result<(), FetchError> {
    let source = ProviderSource::open(p)?;
    let catalog = Catalog::new(root, source.interval());
    let tickers = source.tickers();
    let (start, end) = source.span();
    let to = until.unwrap_or(now).min(end).min(now);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(tickers.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let mut session = None;
    for (id, name) in tickers.names().iter().enumerate() {
        bar.set_message(name.clone());
        let have = catalog.read(name, &tickers)?.unwrap_or_default();
        let from = have.bars.ts.last().map_or(start, |t| t + 1);
        if have.through.is_some_and(|t| t >= to) || from > to {
            report.up_to_date += 1;
            bar.inc(1);
            continue;
        }
        let s = match &mut session {
            Some(s) => s,
            None => session.insert(source.session(name)?),
        };
        let _span = tracing::info_span!("fetch", ticker = %name).entered();
        match source.fetch_span(s, name, id as u32, from, to) {
            Ok((bars, rejects)) => {
                let merged = catalog::append(&have.bars, &bars);
                report.bars += merged.len() - have.bars.len();
                catalog.write(name, &tickers, &merged, to)?;
                catalog.quarantine(&rejects, now)?;
                report.rejected += rejects.len();
                report.fetched += 1;
            }
            Err(SourceError::Providers { reasons, .. }) => {
                tracing::warn!(ticker = %name, reasons, "no provider gave the ticker");
                report.failed.push((name.clone(), reasons));
            }
            Err(e) => return Err(e.into()),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Each ticker's FMP statements and Finnhub sentiment into the pipeline's recorded directories;
/// what a provider would not give is reported per ticker and provider, the rest go on.
fn fetch_fundamentals(
    p: &LoadedPipeline,
    f: &FundamentalsFetch,
    now: EventTime,
    report: &mut FetchReport,
) -> Result<(), FetchError> {
    let spec = &p.pipeline.fundamentals;
    let dir = |d: &Option<String>| d.as_deref().map(|d| p.resolve(d));
    let (fmp_dir, finnhub_dir) = (dir(&spec.fmp_dir), dir(&spec.finnhub_dir));
    let tickers = crate::sources::Source::open(p)?.tickers();
    let mut session = None;
    for name in tickers.names() {
        let s = match &mut session {
            Some(s) => s,
            None => session.insert(f.session().map_err(|reason| SourceError::Providers {
                ticker: name.clone(),
                reasons: reason,
            })?),
        };
        let redis = |e: crate::sources::redis_stream::StreamError| SourceError::Providers {
            ticker: name.clone(),
            reasons: format!("redis: {e}"),
        };
        let _span = tracing::info_span!("fetch_fundamentals", ticker = %name).entered();
        if let (Some(d), true) = (&fmp_dir, f.wants_statements()) {
            match f.statements(s, name).map_err(redis)? {
                Ok(statements) => {
                    for (statement, got) in statements {
                        catalog::quarantine(d, &got.rejects, now)?;
                        report.rejected += got.rejects.len();
                        if !got.rows.is_empty() {
                            recorded::write_statement(d, name, statement.endpoint(), got.rows)?;
                            report.statements += 1;
                        }
                    }
                }
                Err(reason) => {
                    tracing::warn!(ticker = %name, reason, "no FMP statements");
                    report.failed.push((format!("{name} fmp"), reason));
                }
            }
        }
        if let (Some(d), true) = (&finnhub_dir, f.wants_sentiment()) {
            match f.sentiment(s, name).map_err(redis)? {
                Ok(snapshot) => {
                    let snapshot = snapshot.unwrap_or_default();
                    catalog::quarantine(d, &snapshot.rejects, now)?;
                    report.rejected += snapshot.rejects.len();
                    if let Some(body) = &snapshot.body {
                        recorded::write_snapshot(d, name, now, body)?;
                        report.snapshots += 1;
                    }
                }
                Err(reason) => {
                    tracing::warn!(ticker = %name, reason, "no Finnhub sentiment");
                    report.failed.push((format!("{name} finnhub"), reason));
                }
            }
        }
    }
    Ok(())
}
