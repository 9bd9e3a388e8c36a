//! `fdp features`: the feature kernels over one bar file, written as CSV (`date` plus one column
//! per output, named as TA-Lib's golden file, NaN during warm-up, shortest round-trip floats).

use std::io::Write;
use std::path::Path;

use crate::config::{FileFormat, QualitySpec};
use crate::operators::indicators::{FeatureSet, FeatureSpec, Ohlcv, talib_standard};
use crate::operators::quality::{QualityGate, Verdict};
use crate::sources::SourceError;
use crate::sources::files::{detect_format, read_bar_file};
use crate::time::format_time;

/// Errors of `fdp features`.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// The input could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--only` named a column no feature produces.
    #[error("unknown column `{column}` in --only (known: {known})")]
    UnknownColumn {
        /// The column asked for.
        column: String,
        /// The columns there are.
        known: String,
    },
    /// Not one row of the input was a usable bar; the output was not written.
    #[error("{input}: no usable row ({rows} read); the first rejected: {first}")]
    NoRows {
        /// The input file.
        input: String,
        /// Data rows seen (parsed or not).
        rows: usize,
        /// The first rejected rows, `file:line` and reason.
        first: String,
    },
    /// The output could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl crate::fault::Blame for FeaturesError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            FeaturesError::Source(e) => e.fault(),
            FeaturesError::UnknownColumn { .. } => Fault::Input,
            FeaturesError::NoRows { .. } => Fault::Data,
            FeaturesError::Write { source, .. } => source.fault(),
        }
    }
}

/// What a run of `fdp features` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesReport {
    /// Rows written.
    pub rows: usize,
    /// Columns written besides `date`.
    pub columns: usize,
    /// Input rows that were not bars (unparseable) or failed the quality gate; their output rows
    /// are all NaN, one message each.
    pub rejected: Vec<String>,
}

/// Computes `specs` (the standard set when `None`) over `input` and writes `output`; `only`
/// keeps the named columns, in the order given.
///
/// # Errors
/// An unreadable input, an input without one usable row (nothing is written then), an unknown
/// `--only` column, or a write failure.
pub fn run(
    input: &Path,
    output: &Path,
    specs: Option<Vec<FeatureSpec>>,
    only: &[String],
) -> Result<FeaturesReport, FeaturesError> {
    let format = detect_format(input)?;
    let specs = specs.unwrap_or_else(talib_standard);
    let names: Vec<String> = specs.iter().flat_map(FeatureSpec::output_names).collect();
    let keep: Vec<usize> = if only.is_empty() {
        (0..names.len()).collect()
    } else {
        only.iter()
            .map(|c| {
                names
                    .iter()
                    .position(|n| n == c)
                    .ok_or_else(|| FeaturesError::UnknownColumn {
                        column: c.clone(),
                        known: names.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let (mut bars, parse_rejects) = read_bar_file(input, format)?;
    if format == FileFormat::Cryptodatadownload {
        // Newest first in those files.
        let mut rows: Vec<_> = bars.iter().collect();
        rows.sort_by_key(|b| b.ts);
        bars = crate::bar::BarBatch::default();
        rows.into_iter().for_each(|b| bars.push(b));
    }
    let mut rejected: Vec<String> = parse_rejects.iter().map(|r| r.detail.clone()).collect();
    let no_rows = |rejected: &[String]| FeaturesError::NoRows {
        input: input.display().to_string(),
        rows: bars.len() + parse_rejects.len(),
        first: rejected
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    };
    if bars.is_empty() {
        return Err(no_rows(&rejected));
    }
    let mut gate = QualityGate::new(&QualitySpec {
        calendar: crate::config::CalendarKind::None,
        max_move: f64::INFINITY,
        ..QualitySpec::default()
    });
    let mut set = FeatureSet::new(&specs);
    let mut row = vec![f64::NAN; set.width()];
    let verdicts: Vec<Verdict> = bars.iter().map(|b| gate.check(&b)).collect();
    if verdicts.iter().all(|v| matches!(v, Verdict::Reject(..))) {
        for (b, v) in bars.iter().zip(&verdicts) {
            if let Verdict::Reject(reason, detail) = v {
                rejected.push(format!(
                    "{}: {} ({detail})",
                    format_time(b.ts),
                    reason.as_str()
                ));
            }
        }
        return Err(no_rows(&rejected));
    }
    let path = output.display().to_string();
    let io = |source| FeaturesError::Write {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::create(output).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let header: Vec<&str> = std::iter::once("date")
        .chain(keep.iter().map(|&i| names[i].as_str()))
        .collect();
    writeln!(w, "{}", header.join(",")).map_err(io)?;
    let mut line = String::new();
    for (b, verdict) in bars.iter().zip(verdicts) {
        match verdict {
            Verdict::Reject(reason, detail) => {
                rejected.push(format!(
                    "{}: {} ({detail})",
                    format_time(b.ts),
                    reason.as_str()
                ));
                row.fill(f64::NAN);
            }
            Verdict::Pass(_) => set.update(
                &Ohlcv {
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                },
                &mut row,
            ),
        }
        line.clear();
        line.push_str(&format_time(b.ts));
        for &i in &keep {
            line.push(',');
            line.push_str(&format!("{:?}", row[i]));
        }
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(FeaturesReport {
        rows: bars.len(),
        columns: keep.len(),
        rejected,
    })
}
