//! A run's output folder: `runs/<run-id>/` with the Parquet tables, `metrics.json`,
//! `report.html`, and what made it: `run.json` and `pipeline.toml` (see [`crate::manifest`]).

use std::path::{Path, PathBuf};

use crate::engine::RunOutput;
use crate::manifest::Provenance;
use crate::metrics::{Metrics, compute};
use crate::sinks::files::{SinkError, Tables, write_run};
use crate::sinks::report;

/// What a run folder holds beyond the core tables and `metrics.json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contents<'a> {
    /// `report.html`.
    pub report: bool,
    /// The optional tables the run makes.
    pub tables: Tables,
    /// `run.json` and `pipeline.toml`.
    pub provenance: Option<&'a Provenance>,
    /// What the report measures the strategy against (`[outputs] benchmark`; equal weight
    /// when empty).
    pub benchmark: &'a str,
}

/// Writes everything a run produced into `dir`; returns the metrics.
///
/// The folder is complete or absent: everything is written into a hidden sibling
/// (`.<run-id>.partial-<pid>`) that is renamed to `dir` at the end, so a kill during output never
/// leaves a half-written run (a 0-byte `orders.parquet` that queries as "no orders"). A run
/// written again under the same id replaces the old folder the same way.
///
/// # Errors
/// File system or encoding failures (the partial folder is removed; `dir` keeps what it had).
pub fn write(
    dir: &Path,
    title: &str,
    out: &RunOutput,
    contents: &Contents<'_>,
) -> Result<Metrics, SinkError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| SinkError::Io { path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    let written = write_into(&partial, title, out, contents);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        return written;
    }
    if dir.exists() {
        let replaced = parent.join(format!(".{name}.replaced-{}", std::process::id()));
        std::fs::rename(dir, &replaced).map_err(io(dir))?;
        std::fs::rename(&partial, dir).map_err(io(dir))?;
        std::fs::remove_dir_all(&replaced).map_err(io(&replaced))?;
    } else {
        std::fs::rename(&partial, dir).map_err(io(dir))?;
    }
    written
}

fn write_into(
    dir: &Path,
    title: &str,
    out: &RunOutput,
    contents: &Contents<'_>,
) -> Result<Metrics, SinkError> {
    let benchmark = if contents.benchmark.is_empty() {
        crate::config::EQUAL_WEIGHT
    } else {
        contents.benchmark
    };
    let mut metrics = compute(&out.ledger, &out.quarantine);
    let sheet = crate::tearsheet::build(
        benchmark,
        &out.tickers,
        &out.ledger,
        &out.quarantine,
        &out.exposure,
    );
    metrics.vs_benchmark = Some(crate::metrics::Figures {
        benchmark: sheet.benchmark.clone(),
        strategy: sheet.strategy.clone(),
        bench: sheet.bench.clone(),
        relative: sheet.relative.clone(),
    });
    write_run(
        dir,
        &out.tickers,
        &out.ledger,
        &out.quarantine,
        &out.exposure,
        &metrics,
        contents.tables,
    )?;
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|source| SinkError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    if contents.report {
        put(
            "report.html",
            report::render(title, &sheet, &metrics).as_bytes(),
        )?;
    }
    if let Some(p) = contents.provenance {
        let json = serde_json::to_string_pretty(&p.manifest).map_err(|e| SinkError::Encode {
            path: "run.json".into(),
            message: e.to_string(),
        })?;
        put("run.json", (json + "\n").as_bytes())?;
        put("pipeline.toml", p.pipeline_text.as_bytes())?;
    }
    Ok(metrics)
}

/// `<base>/<run_id>`.
pub fn run_dir(base: &Path, run_id: &str) -> PathBuf {
    base.join(run_id)
}
