//! A run's output folder: `runs/<run-id>/` with the Parquet tables, `metrics.json` and
//! `report.html`.

use std::path::{Path, PathBuf};

use crate::engine::RunOutput;
use crate::metrics::{Metrics, compute};
use crate::sinks::files::{SinkError, write_run};
use crate::sinks::report;

/// Writes everything a run produced into `dir`; returns the metrics.
///
/// # Errors
/// File system or encoding failures.
pub fn write(
    dir: &Path,
    title: &str,
    out: &RunOutput,
    with_report: bool,
) -> Result<Metrics, SinkError> {
    let metrics = compute(&out.ledger, &out.quarantine);
    write_run(
        dir,
        &out.tickers,
        &out.ledger,
        &out.quarantine,
        &out.exposure,
        &metrics,
    )?;
    if with_report {
        let html = report::render(title, &out.ledger.equity, &metrics);
        let p = dir.join("report.html");
        std::fs::write(&p, html).map_err(|source| SinkError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(metrics)
}

/// `<base>/<run_id>`.
pub fn run_dir(base: &Path, run_id: &str) -> PathBuf {
    base.join(run_id)
}
