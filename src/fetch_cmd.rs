//! `fdp fetch`: downloads a providers pipeline's universe into the Parquet catalog, through the
//! same chain, limiters, breakers, budgets and cache as a run. Each ticker is fetched from where
//! its file ends (or the pipeline's start) to `--until` (default: now, at most the pipeline's
//! end) and its file replaced whole, so an interrupted fetch resumes where it stopped; a ticker
//! no provider gives is reported and the rest go on.

use std::path::Path;

use crate::config::{LoadedPipeline, SourceSpec};
use crate::fault::{Blame, Fault};
use crate::sinks::catalog::{self, Catalog, CatalogError};
use crate::sources::SourceError;
use crate::sources::providers::source::ProviderSource;
use crate::time::EventTime;

/// Errors of `fdp fetch`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The pipeline's source is not `kind = "providers"`.
    #[error("{pipeline}: fdp fetch needs a `kind = \"providers\"` source")]
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
    /// Tickers no provider gave, with the reasons; a second fetch retries them.
    pub failed: Vec<(String, String)>,
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
    if !matches!(p.pipeline.source, SourceSpec::Providers { .. }) {
        return Err(FetchError::NotProviders {
            pipeline: p.path.display().to_string(),
        });
    }
    let source = ProviderSource::open(p)?;
    let catalog = Catalog::new(root, source.interval());
    let tickers = source.tickers();
    let (start, end) = source.span();
    let to = until.unwrap_or(now).min(end).min(now);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(tickers.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let mut report = FetchReport::default();
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
    Ok(report)
}
