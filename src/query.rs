//! `fdp query`: SQL over a run's Parquet outputs with DataFusion (not on the per-bar path).

use std::path::Path;

use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// The tables a run folder holds.
pub const TABLES: [&str; 11] = [
    "ml_metrics",
    "ml_features",
    "drift",
    "exposure",
    "signals",
    "orders",
    "fills",
    "positions",
    "equity",
    "trades",
    "quarantine",
];

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The folder is not a run folder.
    #[error("{0} holds no run outputs (expected signals.parquet, orders.parquet, ...)")]
    NotARun(String),
    /// DataFusion refused the query or failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// Registers the run's tables and runs `sql`, returning the result as Arrow batches.
///
/// # Errors
/// A folder without outputs, or a bad query.
pub async fn collect(
    run: &Path,
    sql: &str,
) -> Result<Vec<arrow::record_batch::RecordBatch>, QueryError> {
    let ctx = SessionContext::new();
    let mut any = false;
    for t in TABLES {
        let p = run.join(format!("{t}.parquet"));
        if p.exists() {
            ctx.register_parquet(
                t,
                p.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
            any = true;
        }
    }
    if !any {
        return Err(QueryError::NotARun(run.display().to_string()));
    }
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Runs `sql` and prints the result table on stdout.
///
/// # Errors
/// As [`collect`].
pub async fn run(run: &Path, sql: &str) -> Result<(), QueryError> {
    let batches = collect(run, sql).await?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(datafusion::error::DataFusionError::from)?;
    println!("{text}");
    Ok(())
}
