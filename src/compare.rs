//! `fdp compare RUN_A RUN_B`: what differs between two run folders — their making (`run.json`),
//! every metric (`metrics.json`), and the first order where they part.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::record_batch::RecordBatch;

/// A run folder that cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file of the folder cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// `metrics.json` is not JSON.
    #[error("{path}: {message}")]
    Metrics {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// `orders.parquet` cannot be decoded.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The decoder's failure.
        source: parquet::errors::ParquetError,
    },
    /// A batch of `orders.parquet` cannot be read or shown.
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: String,
        /// The failure.
        source: arrow::error::ArrowError,
    },
}

impl crate::fault::Blame for CompareError {
    /// A folder that is missing or not a run is the user's; one that does not decode, the data's.
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            CompareError::Io { .. } => Fault::Input,
            _ => Fault::Data,
        }
    }
}

/// One metric of both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Dotted name (`orders.filled` for a count by status).
    pub name: String,
    /// Run A's value (`None`: A has no such metric).
    pub a: Option<serde_json::Value>,
    /// Run B's value.
    pub b: Option<serde_json::Value>,
}

impl MetricRow {
    /// Whether the two differ.
    pub fn differs(&self) -> bool {
        self.a != self.b
    }
}

/// The first order where two runs part: its position in each run's order table and the
/// columns of each (`None`: that run has no order there).
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// 0-based position in time order.
    pub index: usize,
    /// Run A's order, column by column.
    pub a: Option<Vec<(String, String)>>,
    /// Run B's order.
    pub b: Option<Vec<(String, String)>>,
}

/// What differs between two runs.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Their manifests (`None`: a folder written before manifests).
    pub manifests: (
        Option<crate::manifest::Manifest>,
        Option<crate::manifest::Manifest>,
    ),
    /// Every metric of either run, in name order.
    pub metrics: Vec<MetricRow>,
    /// How many orders each run has.
    pub orders: (usize, usize),
    /// The first order that differs, if any.
    pub divergence: Option<Divergence>,
}

/// Compares two run folders.
///
/// # Errors
/// A folder without `metrics.json` or `orders.parquet`, or a file that does not decode.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison, CompareError> {
    let manifest = |d: &Path| {
        crate::manifest::read(d).map_err(|source| CompareError::Io {
            path: d.join("run.json").display().to_string(),
            source,
        })
    };
    let (ma, mb) = (metrics(a)?, metrics(b)?);
    let names: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    let rows = names
        .into_iter()
        .map(|n| MetricRow {
            name: n.clone(),
            a: ma.get(n).cloned(),
            b: mb.get(n).cloned(),
        })
        .collect();
    let (oa, ob) = (orders(a)?, orders(b)?);
    let divergence = (0..oa.len().max(ob.len()))
        .find(|&i| oa.get(i) != ob.get(i))
        .map(|index| Divergence {
            index,
            a: oa.get(index).cloned(),
            b: ob.get(index).cloned(),
        });
    Ok(Comparison {
        manifests: (manifest(a)?, manifest(b)?),
        metrics: rows,
        orders: (oa.len(), ob.len()),
        divergence,
    })
}

/// `metrics.json` flattened to dotted names.
fn metrics(dir: &Path) -> Result<BTreeMap<String, serde_json::Value>, CompareError> {
    let p = dir.join("metrics.json");
    let path = p.display().to_string();
    let text = std::fs::read_to_string(&p).map_err(|source| CompareError::Io {
        path: path.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| CompareError::Metrics {
        path,
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    Ok(out)
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Every order of a run, in the table's (time) order, as (column, shown value) pairs.
fn orders(dir: &Path) -> Result<Vec<Vec<(String, String)>>, CompareError> {
    let p = dir.join("orders.parquet");
    let path = p.display().to_string();
    let file = std::fs::File::open(&p).map_err(|source| CompareError::Io {
        path: path.clone(),
        source,
    })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|source| CompareError::Parquet {
            path: path.clone(),
            source,
        })?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| CompareError::Arrow {
            path: path.clone(),
            source,
        })?;
        shown_rows(&batch, &mut rows).map_err(|source| CompareError::Arrow {
            path: path.clone(),
            source,
        })?;
    }
    Ok(rows)
}

fn shown_rows(
    batch: &RecordBatch,
    rows: &mut Vec<Vec<(String, String)>>,
) -> Result<(), arrow::error::ArrowError> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("null");
    let schema = batch.schema();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for i in 0..batch.num_rows() {
        rows.push(
            schema
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(f, fmt)| (f.name().clone(), fmt.value(i).to_string()))
                .collect(),
        );
    }
    Ok(())
}

/// The comparison as text: the making (where it differs), the metrics (differences marked
/// `*`, numbers with B − A) and the first diverging order.
pub fn render(c: &Comparison, a_name: &str, b_name: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if let (Some(ma), Some(mb)) = &c.manifests {
        let fields = [
            ("fingerprint", &ma.fingerprint, &mb.fingerprint),
            ("commit", &ma.commit, &mb.commit),
            ("fdp_version", &ma.fdp_version, &mb.fdp_version),
        ];
        for (name, x, y) in fields {
            if x != y {
                let _ = writeln!(out, "{name}: {x} → {y}");
            }
        }
        if ma.overrides != mb.overrides {
            let _ = writeln!(
                out,
                "overrides: [{}] → [{}]",
                ma.overrides.join(" "),
                mb.overrides.join(" ")
            );
        }
        let hashes = |m: &crate::manifest::Manifest| {
            m.inputs
                .iter()
                .map(|i| (i.path.clone(), i.sha256.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let (ha, hb) = (hashes(ma), hashes(mb));
        let changed = ha
            .keys()
            .chain(hb.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| ha.get(*p) != hb.get(*p))
            .count();
        if changed > 0 {
            let _ = writeln!(
                out,
                "inputs: {changed} file(s) differ or are in one run only"
            );
        }
    }
    let width = c
        .metrics
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let show = |v: &Option<serde_json::Value>| match v {
        None => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f:.6}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    };
    let _ = writeln!(
        out,
        "  {:width$}  {:>18}  {:>18}  {:>14}",
        "metric", a_name, b_name, "B − A"
    );
    for r in &c.metrics {
        let delta = match (&r.a, &r.b) {
            (Some(serde_json::Value::Number(x)), Some(serde_json::Value::Number(y))) => {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) if r.differs() => format!("{:+.6}", y - x),
                    _ => String::new(),
                }
            }
            _ => String::new(),
        };
        let mark = if r.differs() { '*' } else { ' ' };
        let _ = writeln!(
            out,
            "{mark} {:width$}  {:>18}  {:>18}  {:>14}",
            r.name,
            show(&r.a),
            show(&r.b),
            delta
        );
    }
    let _ = writeln!(out, "orders: {} and {}", c.orders.0, c.orders.1);
    match &c.divergence {
        None => {
            let _ = writeln!(out, "no order differs");
        }
        Some(d) => {
            let _ = writeln!(out, "first diverging order: #{}", d.index);
            let line = |o: &Option<Vec<(String, String)>>| match o {
                None => "(none)".to_string(),
                Some(cols) => cols
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            let _ = writeln!(out, "  {a_name}: {}", line(&d.a));
            let _ = writeln!(out, "  {b_name}: {}", line(&d.b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_metrics_flatten_to_dotted_names() {
        let v = serde_json::json!({"sharpe": 1.5, "orders": {"filled": 3, "refused": 1}});
        let mut out = BTreeMap::new();
        flatten("", &v, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out["orders.filled"], serde_json::json!(3));
        assert_eq!(out["sharpe"], serde_json::json!(1.5));
    }

    #[test]
    fn the_text_marks_differences_and_shows_the_diverging_order() {
        let c = Comparison {
            manifests: (None, None),
            metrics: vec![
                MetricRow {
                    name: "sharpe".into(),
                    a: Some(serde_json::json!(1.0)),
                    b: Some(serde_json::json!(1.25)),
                },
                MetricRow {
                    name: "bars".into(),
                    a: Some(serde_json::json!(10)),
                    b: Some(serde_json::json!(10)),
                },
            ],
            orders: (2, 3),
            divergence: Some(Divergence {
                index: 2,
                a: None,
                b: Some(vec![("ticker".into(), "BRK.B".into())]),
            }),
        };
        let text = render(&c, "a", "b");
        assert!(text.contains("* sharpe"), "{text}");
        assert!(text.contains("+0.250000"), "{text}");
        assert!(text.contains("  bars"), "{text}");
        assert!(text.contains("first diverging order: #2"), "{text}");
        assert!(text.contains("b: ticker=BRK.B"), "{text}");
        assert!(text.contains("a: (none)"), "{text}");
    }
}
