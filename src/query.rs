//! `fdp query`: SQL over a run's Parquet outputs with DataFusion (not on the per-bar path).

use std::path::{Path, PathBuf};

use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// The tables a run folder holds (`sweep`: a sweep's folder, one row per combination).
pub const TABLES: [&str; 12] = [
    "sweep",
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
    /// Two run folders with the same name: their rows could not be told apart.
    #[error(
        "two runs are named {run_id}: a query over several runs tells them apart by folder name"
    )]
    SameRunId {
        /// The name.
        run_id: String,
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
            QueryError::NotARun { .. }
            | QueryError::SameRunId { .. }
            | QueryError::NanosecondTime { .. } => Fault::Input,
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
    collect_runs(&[run.to_path_buf()], sql).await
}

/// As [`collect`], with the optional tables a run without a model or drift monitor lacks
/// (`ml_metrics`, `ml_features`, `drift`) present and empty: for readers that show them for
/// every run (the dashboard).
///
/// # Errors
/// As [`collect`].
pub async fn collect_filled(
    run: &Path,
    sql: &str,
) -> Result<Vec<arrow::record_batch::RecordBatch>, QueryError> {
    let empty = crate::sinks::files::empty_optional_tables().map_err(|e| {
        QueryError::DataFusion(datafusion::error::DataFusionError::External(e.into()))
    })?;
    let empty: Vec<_> = empty
        .into_iter()
        .filter(|(t, _)| !run.join(format!("{t}.parquet")).exists())
        .collect();
    query(&[run.to_path_buf()], sql, &empty).await
}

/// Registers the tables of one run or of several and runs `sql`.
///
/// With several runs each table is the union of the runs' tables (by column name), with a first
/// column `run_id` (the folder's name); a table only some runs have holds theirs. `SHOW TABLES`
/// and `information_schema` list what there is.
///
/// # Errors
/// A folder without outputs, two folders with the same name, or a bad query.
pub async fn collect_runs(
    runs: &[PathBuf],
    sql: &str,
) -> Result<Vec<arrow::record_batch::RecordBatch>, QueryError> {
    query(runs, sql, &[]).await
}

async fn query(
    runs: &[PathBuf],
    sql: &str,
    extra: &[(&'static str, arrow::record_batch::RecordBatch)],
) -> Result<Vec<arrow::record_batch::RecordBatch>, QueryError> {
    let config = datafusion::prelude::SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_udf(ts_udf());
    let mut ids = std::collections::BTreeSet::new();
    for run in runs {
        if !TABLES
            .iter()
            .any(|t| run.join(format!("{t}.parquet")).exists())
        {
            return Err(QueryError::NotARun {
                dir: run.display().to_string(),
            });
        }
        if !ids.insert(run_id(run)) {
            return Err(QueryError::SameRunId {
                run_id: run_id(run),
            });
        }
    }
    for t in TABLES {
        let mut union: Option<datafusion::dataframe::DataFrame> = None;
        for run in runs {
            let p = run.join(format!("{t}.parquet"));
            if !p.exists() {
                continue;
            }
            let path = p.to_string_lossy().into_owned();
            if runs.len() == 1 {
                ctx.register_parquet(t, &path, ParquetReadOptions::default())
                    .await?;
                continue;
            }
            let df = ctx
                .read_parquet(path, ParquetReadOptions::default())
                .await?;
            let columns: Vec<datafusion::prelude::Expr> =
                std::iter::once(datafusion::prelude::lit(run_id(run)).alias("run_id"))
                    .chain(df.schema().fields().iter().map(|f| {
                        datafusion::prelude::Expr::Column(
                            datafusion::common::Column::new_unqualified(f.name()),
                        )
                    }))
                    .collect();
            let df = df.select(columns)?;
            union = Some(match union {
                None => df,
                Some(u) => u.union_by_name(df)?,
            });
        }
        if let Some(u) = union {
            ctx.register_table(t, u.into_view())?;
        }
    }
    for (t, batch) in extra {
        ctx.register_batch(*t, batch.clone())?;
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

/// A run's id in a query over several: its folder's name.
fn run_id(run: &Path) -> String {
    run.file_name().map_or_else(
        || run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
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

/// How `fdp query` shows a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects, one per row: numbers and booleans as JSON's, times and text as
    /// strings, nulls as null.
    Json,
}

/// The result in `format`.
///
/// # Errors
/// A value Arrow cannot show.
pub fn render(
    batches: &[arrow::record_batch::RecordBatch],
    format: Format,
) -> Result<String, arrow::error::ArrowError> {
    match format {
        Format::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            String::from_utf8(out).map_err(|e| arrow::error::ArrowError::CsvError(e.to_string()))
        }
        Format::Json => json(batches),
    }
}

fn json(batches: &[arrow::record_batch::RecordBatch]) -> Result<String, arrow::error::ArrowError> {
    use arrow::datatypes::DataType;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use serde_json::Value;
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        let shown = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            let mut row = serde_json::Map::new();
            for ((field, column), fmt) in schema.fields().iter().zip(b.columns()).zip(&shown) {
                let text = fmt.value(i).to_string();
                let v = if column.is_null(i) {
                    Value::Null
                } else {
                    match field.data_type() {
                        DataType::Boolean => Value::Bool(text == "true"),
                        t if t.is_integer() => text
                            .parse::<i64>()
                            .map(Value::from)
                            .or_else(|_| text.parse::<u64>().map(Value::from))
                            .unwrap_or(Value::String(text)),
                        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => text
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(Value::String(text), Value::Number),
                        _ => Value::String(text),
                    }
                };
                row.insert(field.name().clone(), v);
            }
            rows.push(Value::Object(row));
        }
    }
    serde_json::to_string_pretty(&Value::Array(rows))
        .map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
}

/// Runs `sql` over one run or several and shows the result in `format`.
///
/// # Errors
/// As [`collect_runs`], or a value Arrow cannot show.
pub async fn run(runs: &[PathBuf], sql: &str, format: Format) -> Result<String, QueryError> {
    let batches = collect_runs(runs, sql).await?;
    render(&batches, format).map_err(|e| QueryError::DataFusion(e.into()))
}
