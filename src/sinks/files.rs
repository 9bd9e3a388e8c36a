//! File sinks: a run's outputs under `runs/<run-id>/` as Parquet, plus `metrics.json`.
//! Column meanings and units are documented in the README ("Outputs").

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampSecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use crate::bar::Tickers;
use crate::metrics::Metrics;
use crate::operators::exposure::ExposureRow;
use crate::operators::portfolio::Ledger;
use crate::operators::quality::Reject;

/// Errors writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Arrow or Parquet.
    #[error("{path}: {message}")]
    Encode {
        /// The path.
        path: String,
        /// The cause.
        message: String,
    },
}

impl crate::fault::Blame for SinkError {
    /// Where outputs go is the user's choice (a missing or read-only folder); a full disk or an
    /// encoder's failure is the machine's.
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            SinkError::Io { source, .. } => source.fault(),
            SinkError::Encode { .. } => Fault::Bug,
        }
    }
}

/// A column under construction.
/// A column of a table this module writes.
pub(crate) enum Col {
    Time(Vec<i64>),
    OptTime(Vec<Option<i64>>),
    Str(Vec<String>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    OptU64(Vec<Option<u64>>),
    Bool(Vec<bool>),
}

impl Col {
    fn build(self, name: &str) -> (Field, ArrayRef) {
        let ts = DataType::Timestamp(TimeUnit::Second, None);
        match self {
            Col::Time(v) => (
                Field::new(name, ts, false),
                Arc::new(TimestampSecondArray::from(v)),
            ),
            Col::OptTime(v) => (
                Field::new(name, ts, true),
                Arc::new(TimestampSecondArray::from(v)),
            ),
            Col::Str(v) => (
                Field::new(name, DataType::Utf8, false),
                Arc::new(StringArray::from(v)),
            ),
            Col::F64(v) => (
                Field::new(name, DataType::Float64, false),
                Arc::new(Float64Array::from(v)),
            ),
            Col::I64(v) => (
                Field::new(name, DataType::Int64, false),
                Arc::new(Int64Array::from(v)),
            ),
            Col::U64(v) => (
                Field::new(name, DataType::UInt64, false),
                Arc::new(UInt64Array::from(v)),
            ),
            Col::OptU64(v) => (
                Field::new(name, DataType::UInt64, true),
                Arc::new(UInt64Array::from(v)),
            ),
            Col::Bool(v) => (
                Field::new(name, DataType::Boolean, false),
                Arc::new(BooleanArray::from(v)),
            ),
        }
    }
}

/// Writes `bytes` to `path` whole: into a temporary file beside it (named with this process's
/// id, so two writers never share one), synced, then renamed over `path`. A reader sees the old
/// file or the new one, never half of one; the folder is created when missing.
///
/// # Errors
/// The folder, the temporary file or the rename fails.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Writes `<dir>/<name>.parquet` from named columns.
pub(crate) fn write_table(dir: &Path, name: &str, cols: Vec<(&str, Col)>) -> Result<(), SinkError> {
    let path = dir.join(format!("{name}.parquet"));
    let p = path.display().to_string();
    let enc = |e: &dyn std::fmt::Display| SinkError::Encode {
        path: p.clone(),
        message: e.to_string(),
    };
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        cols.into_iter().map(|(n, c)| c.build(n)).unzip();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| enc(&e))?;
    let file = std::fs::File::create(&path).map_err(|source| SinkError::Io {
        path: p.clone(),
        source,
    })?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| enc(&e))?;
    w.write(&batch).map_err(|e| enc(&e))?;
    w.close().map_err(|e| enc(&e))?;
    Ok(())
}

/// The ML tables: one row per (training, model) — each base model, the ensemble and the
/// baseline — and one per (training, input) with its selection scores.
#[allow(clippy::type_complexity)]
fn ml_tables(
    name: &dyn Fn(u32) -> String,
    ledger: &Ledger,
) -> [(&'static str, Vec<(&'static str, Col)>); 2] {
    // One row per (training, model): each base model, the ensemble and the baseline.
    let ml: Vec<(
        String,
        &crate::operators::ml::online::TrainingRecord,
        &str,
        _,
    )> = ledger
        .ml_metrics
        .iter()
        .flat_map(|(t, r)| {
            r.scores
                .iter()
                .map(move |(m, s)| (name(*t), r, m.as_str(), *s))
        })
        .collect();
    let metrics_table = (
        "ml_metrics",
        vec![
            ("ticker", Col::Str(ml.iter().map(|r| r.0.clone()).collect())),
            (
                "model_id",
                Col::Str(ml.iter().map(|r| r.1.model_id.clone()).collect()),
            ),
            (
                "trained_at",
                Col::Time(ml.iter().map(|r| r.1.trained_at).collect()),
            ),
            (
                "installed_at",
                Col::Time(ml.iter().map(|r| r.1.installed_at).collect()),
            ),
            (
                "train_from",
                Col::Time(ml.iter().map(|r| r.1.train_from).collect()),
            ),
            (
                "samples",
                Col::U64(ml.iter().map(|r| r.1.samples as u64).collect()),
            ),
            (
                "model",
                Col::Str(ml.iter().map(|r| r.2.to_string()).collect()),
            ),
            (
                "accuracy",
                Col::F64(ml.iter().map(|r| r.3.accuracy).collect()),
            ),
            (
                "roc_auc",
                Col::F64(ml.iter().map(|r| r.3.roc_auc).collect()),
            ),
            (
                "log_loss",
                Col::F64(ml.iter().map(|r| r.3.log_loss).collect()),
            ),
            ("brier", Col::F64(ml.iter().map(|r| r.3.brier).collect())),
            (
                "hit_rate",
                Col::F64(ml.iter().map(|r| r.3.hit_rate).collect()),
            ),
        ],
    );
    // One row per (training, input): its selection scores and whether it was kept.
    let fs: Vec<(&str, &crate::operators::ml::online::TrainingRecord, _)> = ledger
        .ml_metrics
        .iter()
        .flat_map(|(_, r)| r.selection.iter().map(move |s| (r.model_id.as_str(), r, s)))
        .collect();
    let features_table = (
        "ml_features",
        vec![
            (
                "model_id",
                Col::Str(fs.iter().map(|r| r.0.to_string()).collect()),
            ),
            (
                "trained_at",
                Col::Time(fs.iter().map(|r| r.1.trained_at).collect()),
            ),
            (
                "feature",
                Col::Str(fs.iter().map(|r| r.2.feature.clone()).collect()),
            ),
            (
                "importance",
                Col::F64(fs.iter().map(|r| r.2.importance).collect()),
            ),
            (
                "mutual_information",
                Col::F64(fs.iter().map(|r| r.2.mutual_information).collect()),
            ),
            (
                "f_statistic",
                Col::F64(fs.iter().map(|r| r.2.f_statistic).collect()),
            ),
            ("rank", Col::F64(fs.iter().map(|r| r.2.rank).collect())),
            ("chosen", Col::Bool(fs.iter().map(|r| r.2.chosen).collect())),
        ],
    );
    [metrics_table, features_table]
}

/// The drift table: one row per (ticker, feature) drift event.
fn drift_table(name: &dyn Fn(u32) -> String, ledger: &Ledger) -> Vec<(&'static str, Col)> {
    let d = &ledger.drifts;
    vec![
        ("ticker", Col::Str(d.iter().map(|r| name(r.0)).collect())),
        ("time", Col::Time(d.iter().map(|r| r.1.ts).collect())),
        (
            "feature",
            Col::Str(d.iter().map(|r| r.1.name.clone()).collect()),
        ),
        ("kl", Col::F64(d.iter().map(|r| r.1.kl).collect())),
    ]
}

/// The optional tables of a run folder: those only a model or a drift monitor makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tables {
    /// `ml_metrics` and `ml_features` (an ML model).
    pub ml: bool,
    /// `drift` (a drift monitor: `[drift]`, or an ML model's own).
    pub drift: bool,
}

impl Tables {
    /// The tables a pipeline's run makes.
    pub fn of(p: &crate::config::Pipeline) -> Tables {
        Tables {
            ml: matches!(p.model, crate::config::ModelSpec::Ml(_)),
            drift: p.drift().is_some(),
        }
    }
}

/// The optional tables, empty, with their columns: what a reader that expects them (the
/// dashboard's views of a backtest folder) registers for a run without them.
///
/// # Errors
/// None in practice (the columns are fixed); an encoding failure is reported as such.
pub fn empty_optional_tables() -> Result<Vec<(&'static str, RecordBatch)>, SinkError> {
    let ledger = Ledger::default();
    let name = |_: u32| String::new();
    let mut tables: Vec<(&'static str, Vec<(&'static str, Col)>)> =
        ml_tables(&name, &ledger).into_iter().collect();
    tables.push(("drift", drift_table(&name, &ledger)));
    tables
        .into_iter()
        .map(|(table, cols)| {
            let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
                cols.into_iter().map(|(n, c)| c.build(n)).unzip();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
                .map(|b| (table, b))
                .map_err(|e| SinkError::Encode {
                    path: format!("{table} (empty)"),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Writes signals, orders, fills, positions, equity, trades, quarantine and sector exposure as
/// Parquet, the optional `tables` the run makes, and `metrics.json`, into `dir` (created if
/// missing).
///
/// # Errors
/// File system or encoding failures.
pub fn write_run(
    dir: &Path,
    tickers: &Tickers,
    ledger: &Ledger,
    quarantine: &[Reject],
    exposure: &[ExposureRow],
    metrics: &Metrics,
    tables: Tables,
) -> Result<(), SinkError> {
    std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let name = |t: u32| tickers.name(t).to_string();
    let s = &ledger.signals;
    write_table(
        dir,
        "signals",
        vec![
            ("time", Col::Time(s.iter().map(|r| r.ts).collect())),
            (
                "ticker",
                Col::Str(s.iter().map(|r| name(r.ticker)).collect()),
            ),
            (
                "action",
                Col::Str(
                    s.iter()
                        .map(|r| r.signal.target.action().to_string())
                        .collect(),
                ),
            ),
            (
                "confidence",
                Col::F64(s.iter().map(|r| r.signal.confidence).collect()),
            ),
            (
                "predicted_return",
                Col::F64(s.iter().map(|r| r.signal.predicted_return).collect()),
            ),
        ],
    )?;
    let o = &ledger.orders;
    write_table(
        dir,
        "orders",
        vec![
            ("order_id", Col::U64(o.iter().map(|r| r.order.id).collect())),
            ("time", Col::Time(o.iter().map(|r| r.order.ts).collect())),
            (
                "ticker",
                Col::Str(o.iter().map(|r| name(r.order.ticker)).collect()),
            ),
            (
                "side",
                Col::Str(
                    o.iter()
                        .map(|r| r.order.side.as_str().to_string())
                        .collect(),
                ),
            ),
            (
                "intent",
                Col::Str(
                    o.iter()
                        .map(|r| r.order.kind.as_str().to_string())
                        .collect(),
                ),
            ),
            (
                "size_fraction",
                Col::F64(
                    o.iter()
                        .map(|r| r.order.size_fraction().unwrap_or(f64::NAN))
                        .collect(),
                ),
            ),
            (
                "order_type",
                Col::Str(
                    o.iter()
                        .map(|r| r.order.order_type.as_str().to_string())
                        .collect(),
                ),
            ),
            (
                "limit_price",
                Col::F64(
                    o.iter()
                        .map(|r| r.order.order_type.limit().unwrap_or(f64::NAN))
                        .collect(),
                ),
            ),
            (
                "stop_price",
                Col::F64(
                    o.iter()
                        .map(|r| r.order.order_type.stop().unwrap_or(f64::NAN))
                        .collect(),
                ),
            ),
            (
                "time_in_force",
                Col::Str(o.iter().map(|r| r.order.tif.as_str().to_string()).collect()),
            ),
            (
                "parent_id",
                Col::OptU64(o.iter().map(|r| r.order.parent).collect()),
            ),
            (
                "filled_quantity",
                Col::F64(o.iter().map(|r| r.filled).collect()),
            ),
            (
                "status",
                Col::Str(o.iter().map(|r| r.status.as_str().to_string()).collect()),
            ),
            (
                "reason",
                Col::Str(o.iter().map(|r| r.reason.clone()).collect()),
            ),
        ],
    )?;
    let f = &ledger.fills;
    write_table(
        dir,
        "fills",
        vec![
            ("order_id", Col::U64(f.iter().map(|r| r.order_id).collect())),
            (
                "seq",
                Col::U64(f.iter().map(|r| u64::from(r.seq)).collect()),
            ),
            ("time", Col::Time(f.iter().map(|r| r.ts).collect())),
            (
                "ticker",
                Col::Str(f.iter().map(|r| name(r.ticker)).collect()),
            ),
            (
                "side",
                Col::Str(f.iter().map(|r| r.side.as_str().to_string()).collect()),
            ),
            ("quantity", Col::F64(f.iter().map(|r| r.quantity).collect())),
            ("price", Col::F64(f.iter().map(|r| r.price).collect())),
            (
                "commission",
                Col::F64(f.iter().map(|r| r.commission).collect()),
            ),
        ],
    )?;
    let p = &ledger.positions;
    write_table(
        dir,
        "positions",
        vec![
            ("time", Col::Time(p.iter().map(|r| r.ts).collect())),
            (
                "ticker",
                Col::Str(p.iter().map(|r| name(r.ticker)).collect()),
            ),
            ("quantity", Col::F64(p.iter().map(|r| r.quantity).collect())),
            (
                "entry_price",
                Col::F64(p.iter().map(|r| r.entry_price).collect()),
            ),
        ],
    )?;
    let e = &ledger.equity;
    let dd = crate::metrics::drawdowns(&e.iter().map(|r| r.equity).collect::<Vec<_>>());
    write_table(
        dir,
        "equity",
        vec![
            ("time", Col::Time(e.iter().map(|r| r.ts).collect())),
            ("cash", Col::F64(e.iter().map(|r| r.cash).collect())),
            (
                "positions_value",
                Col::F64(e.iter().map(|r| r.positions_value).collect()),
            ),
            ("equity", Col::F64(e.iter().map(|r| r.equity).collect())),
            ("drawdown", Col::F64(dd)),
            (
                "open_positions",
                Col::I64(e.iter().map(|r| r.open_positions as i64).collect()),
            ),
        ],
    )?;
    let t = &ledger.trades;
    write_table(
        dir,
        "trades",
        vec![
            (
                "ticker",
                Col::Str(t.iter().map(|r| name(r.ticker)).collect()),
            ),
            ("size", Col::F64(t.iter().map(|r| r.size).collect())),
            (
                "entry_time",
                Col::Time(t.iter().map(|r| r.entry_ts).collect()),
            ),
            (
                "entry_price",
                Col::F64(t.iter().map(|r| r.entry_price).collect()),
            ),
            (
                "exit_time",
                Col::Time(t.iter().map(|r| r.exit_ts).collect()),
            ),
            (
                "exit_price",
                Col::F64(t.iter().map(|r| r.exit_price).collect()),
            ),
            (
                "commission",
                Col::F64(t.iter().map(|r| r.commission).collect()),
            ),
            ("pnl", Col::F64(t.iter().map(|r| r.pnl).collect())),
            (
                "return_pct",
                Col::F64(t.iter().map(|r| r.return_pct).collect()),
            ),
            ("open", Col::Bool(t.iter().map(|r| r.open).collect())),
        ],
    )?;
    if tables.ml {
        for (table, cols) in ml_tables(&name, ledger) {
            write_table(dir, table, cols)?;
        }
    }
    if tables.drift {
        write_table(dir, "drift", drift_table(&name, ledger))?;
    }
    write_table(
        dir,
        "quarantine",
        vec![
            (
                "ticker",
                Col::Str(quarantine.iter().map(|r| r.ticker.clone()).collect()),
            ),
            (
                "time",
                Col::OptTime(quarantine.iter().map(|r| r.ts).collect()),
            ),
            (
                "reason",
                Col::Str(
                    quarantine
                        .iter()
                        .map(|r| r.reason.as_str().to_string())
                        .collect(),
                ),
            ),
            (
                "action",
                Col::Str(
                    quarantine
                        .iter()
                        .map(|r| r.action.as_str().to_string())
                        .collect(),
                ),
            ),
            (
                "detail",
                Col::Str(quarantine.iter().map(|r| r.detail.clone()).collect()),
            ),
            (
                "origin",
                Col::Str(quarantine.iter().map(|r| r.origin.clone()).collect()),
            ),
        ],
    )?;
    write_table(
        dir,
        "exposure",
        vec![
            ("time", Col::Time(exposure.iter().map(|r| r.ts).collect())),
            (
                "sector",
                Col::Str(exposure.iter().map(|r| r.sector.clone()).collect()),
            ),
            (
                "cost_basis",
                Col::F64(
                    exposure
                        .iter()
                        .map(|r| r.cost_cents as f64 / 100.0)
                        .collect(),
                ),
            ),
            (
                "positions",
                Col::I64(exposure.iter().map(|r| r.positions).collect()),
            ),
        ],
    )?;
    let json = serde_json::to_string_pretty(metrics).map_err(|e| SinkError::Encode {
        path: "metrics.json".into(),
        message: e.to_string(),
    })?;
    let mp = dir.join("metrics.json");
    std::fs::write(&mp, json + "\n").map_err(|source| SinkError::Io {
        path: mp.display().to_string(),
        source,
    })
}
