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
    #[error("{dir} holds no run outputs (expected signals.parquet, orders.parquet, ...)")]
    NotARun {
        /// The folder given.
        dir: String,
    },
    /// A time outside DataFusion's nanosecond range (1677–2262) met a bare string literal.
    #[error(
        "{message}\nDataFusion reads a bare time literal as nanoseconds (1677–2262); write ts('2999-01-20') \
         for a time of any year (event times are seconds)"
    )]
    NanosecondTime {
        /// DataFusion's message.
        message: String,
    },
    /// DataFusion refused the query or failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl crate::fault::Blame for QueryError {
    /// The folder and the SQL are the user's; a DataFusion failure other than a refused query
    /// (an unreadable Parquet file) is the data's.
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        use datafusion::error::DataFusionError as D;
        match self {
            QueryError::NotARun { .. } | QueryError::NanosecondTime { .. } => Fault::Input,
            QueryError::DataFusion(D::ParquetError(_) | D::ArrowError(..) | D::IoError(_)) => {
                Fault::Data
            }
            QueryError::DataFusion(_) => Fault::Input,
        }
    }
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
    ctx.register_udf(ts_udf());
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
        return Err(QueryError::NotARun {
            dir: run.display().to_string(),
        });
    }
    // Read-only: no DDL (`CREATE EXTERNAL TABLE` over any file), no DML (`COPY … TO` over a run's
    // own files, `INSERT`), no statements (`SET`, transactions).
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await.map_err(hint)?;
    df.collect().await.map_err(hint)
}

/// DataFusion's nanosecond limit, met by a bare time literal outside 1677–2262: the error says
/// what to write instead.
fn hint(e: datafusion::error::DataFusionError) -> QueryError {
    let text = e.to_string();
    if text.contains("represented as nanoseconds") || text.contains("to Nanosecond") {
        QueryError::NanosecondTime { message: text }
    } else {
        QueryError::DataFusion(e)
    }
}

/// `ts('…')`: a time literal for any year, parsed by [`crate::time::parse_time`] into a
/// `Timestamp(Second)` like the tables' time columns.
///
/// DataFusion reads a bare string compared with a time (`time > '2999-01-20'`) as nanoseconds,
/// which cover only 1677–2262; event time covers any real history and the far future.
fn ts_udf() -> datafusion::logical_expr::ScalarUDF {
    use arrow::array::{Array, TimestampSecondArray};
    use arrow::datatypes::{DataType, TimeUnit};
    use datafusion::error::DataFusionError;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::scalar::ScalarValue;
    let parse = |text: &str| {
        crate::time::parse_time(text).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "ts({text:?}): not a date or time (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS, RFC 3339)"
            ))
        })
    };
    create_udf(
        "ts",
        vec![DataType::Utf8],
        DataType::Timestamp(TimeUnit::Second, None),
        Volatility::Immutable,
        std::sync::Arc::new(move |args: &[ColumnarValue]| match args.first() {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v),
            )) => Ok(ColumnarValue::Scalar(ScalarValue::TimestampSecond(
                v.as_deref().map(parse).transpose()?,
                None,
            ))),
            Some(ColumnarValue::Array(a)) => {
                let strings = crate::bar::utf8(a)?;
                let out: TimestampSecondArray = (0..strings.len())
                    .map(|i| {
                        (!strings.is_null(i))
                            .then(|| parse(strings.value(i)))
                            .transpose()
                    })
                    .collect::<Result<_, _>>()?;
                Ok(ColumnarValue::Array(std::sync::Arc::new(out)))
            }
            _ => Err(DataFusionError::Plan("ts() takes one text argument".into())),
        }),
    )
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
