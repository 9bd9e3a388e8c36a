//! The dashboard's one answer shape: `{"columns": [...], "rows": [[...], ...]}`, made from
//! PostgreSQL rows or Arrow batches alike. Times become epoch seconds, non-finite floats `null`,
//! so the page never parses a date or meets `NaN` in JSON.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::Type;

/// A column the dashboard's answer shape cannot hold: a query of the views asked for it, so it is
/// this program's mistake, named by column.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A PostgreSQL column of a type the views never select.
    #[error("column {column} has type {pg_type}, not converted")]
    Unconverted {
        /// The column.
        column: String,
        /// Its PostgreSQL type.
        pg_type: Type,
    },
    /// A PostgreSQL value that did not read as its column's type.
    #[error("column {column}: {source}")]
    Value {
        /// The column.
        column: String,
        /// The driver's failure.
        source: tokio_postgres::Error,
    },
    /// An Arrow column that cannot be shown as text.
    #[error("column {column}: {source}")]
    Arrow {
        /// The column.
        column: String,
        /// Arrow's failure.
        source: arrow::error::ArrowError,
    },
}

/// A query's answer as JSON-ready columns and rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// No rows under these columns.
    pub fn empty(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The table of a prepared statement's PostgreSQL rows (its columns named even when no row
    /// came); a column type the views never select is a bug, named.
    ///
    /// # Errors
    /// A column of a type this does not convert (the message names it).
    pub fn from_pg(
        statement: &tokio_postgres::Statement,
        rows: &[tokio_postgres::Row],
    ) -> Result<Table, TableError> {
        let columns: Vec<String> = statement
            .columns()
            .iter()
            .map(|c| c.name().into())
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in row.columns().iter().enumerate() {
                let v = match *c.type_() {
                    Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => row
                        .try_get::<_, Option<String>>(i)
                        .map(|v| v.map_or(Value::Null, Value::String)),
                    Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map(float),
                    Type::FLOAT4 => row
                        .try_get::<_, Option<f32>>(i)
                        .map(|v| float(v.map(f64::from))),
                    Type::INT8 => row
                        .try_get::<_, Option<i64>>(i)
                        .map(|v| v.map_or(Value::Null, Value::from)),
                    Type::INT4 => row
                        .try_get::<_, Option<i32>>(i)
                        .map(|v| v.map_or(Value::Null, Value::from)),
                    Type::BOOL => row
                        .try_get::<_, Option<bool>>(i)
                        .map(|v| v.map_or(Value::Null, Value::Bool)),
                    Type::JSONB | Type::JSON => row
                        .try_get::<_, Option<Value>>(i)
                        .map(|v| v.unwrap_or(Value::Null)),
                    ref t => {
                        return Err(TableError::Unconverted {
                            column: c.name().into(),
                            pg_type: t.clone(),
                        });
                    }
                };
                values.push(v.map_err(|source| TableError::Value {
                    column: c.name().into(),
                    source,
                })?);
            }
            out.push(values);
        }
        Ok(Table { columns, rows: out })
    }

    /// The table of Arrow batches (times in epoch seconds; other types through their display).
    ///
    /// # Errors
    /// A column Arrow cannot show as text.
    pub fn from_arrow(batches: &[RecordBatch]) -> Result<Table, TableError> {
        let Some(first) = batches.first() else {
            return Ok(Table::default());
        };
        let columns: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut rows = Vec::new();
        for b in batches {
            let cols: Vec<Vec<Value>> = b
                .columns()
                .iter()
                .zip(b.schema().fields())
                .map(|(a, f)| {
                    column(a).map_err(|source| TableError::Arrow {
                        column: f.name().clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            for r in 0..b.num_rows() {
                rows.push(cols.iter().map(|c| c[r].clone()).collect());
            }
        }
        Ok(Table { columns, rows })
    }
}

fn float(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// One Arrow column as JSON values.
fn column(a: &ArrayRef) -> Result<Vec<Value>, arrow::error::ArrowError> {
    use arrow::datatypes::{
        Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type,
        UInt64Type,
    };
    let n = a.len();
    let each = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n)
            .map(|i| if a.is_null(i) { Value::Null } else { f(i) })
            .collect()
    };
    Ok(match a.data_type() {
        DataType::Float64 => each(&|i| float(Some(a.as_primitive::<Float64Type>().value(i)))),
        DataType::Float32 => {
            each(&|i| float(Some(f64::from(a.as_primitive::<Float32Type>().value(i)))))
        }
        DataType::Int64 => each(&|i| Value::from(a.as_primitive::<Int64Type>().value(i))),
        DataType::Int32 => each(&|i| Value::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::UInt64 => each(&|i| Value::from(a.as_primitive::<UInt64Type>().value(i))),
        DataType::UInt32 => each(&|i| Value::from(a.as_primitive::<UInt32Type>().value(i))),
        DataType::Boolean => each(&|i| Value::Bool(a.as_boolean().value(i))),
        DataType::Utf8 => each(&|i| Value::String(a.as_string::<i32>().value(i).into())),
        DataType::LargeUtf8 => each(&|i| Value::String(a.as_string::<i64>().value(i).into())),
        DataType::Utf8View => each(&|i| Value::String(a.as_string_view().value(i).into())),
        DataType::Timestamp(unit, _) => {
            let per_second = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            each(&|i| {
                let raw = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
                };
                Value::from(raw.div_euclid(per_second))
            })
        }
        _ => {
            let text = arrow::compute::cast(a, &DataType::Utf8)?;
            let s = text.as_string::<i32>();
            each(&|i| Value::String(s.value(i).into()))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray, TimestampSecondArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn arrow_batches_become_rows_with_epoch_seconds_and_null_for_nan() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("ticker", DataType::Utf8, true),
            Field::new("kl", DataType::Float64, true),
            Field::new("id", DataType::UInt64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampSecondArray::from(vec![1_700_000_000, -86_400])),
                Arc::new(StringArray::from(vec![Some("BRK.B"), None])),
                Arc::new(Float64Array::from(vec![f64::NAN, 0.25])),
                Arc::new(UInt64Array::from(vec![7, 8])),
            ],
        )
        .expect("batch");
        let t = Table::from_arrow(&[b.clone(), b]).expect("table");
        assert_eq!(t.columns, ["time", "ticker", "kl", "id"]);
        assert_eq!(t.rows.len(), 4);
        assert_eq!(
            t.rows[0],
            vec![
                Value::from(1_700_000_000i64),
                Value::from("BRK.B"),
                Value::Null,
                Value::from(7u64)
            ]
        );
        assert_eq!(
            t.rows[1],
            vec![
                Value::from(-86_400i64),
                Value::Null,
                Value::from(0.25),
                Value::from(8u64)
            ]
        );
    }

    #[test]
    fn no_batches_no_columns() {
        assert_eq!(Table::from_arrow(&[]).expect("empty"), Table::default());
        assert_eq!(Table::empty(&["a"]).columns, ["a"]);
    }
}
