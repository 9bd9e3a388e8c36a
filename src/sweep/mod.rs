//! `fdp sweep PIPELINE --set KEY=VALUES …`: every combination of the values in one timely dataflow
//! over one read of the data ([`crate::engine::sweep`]): the features are the union of the
//! combinations' (each distinct one computed once per ticker), each combination has its own model
//! and its own portfolio. Then the results ([`output`]) and walk-forward optimisation ([`walk`]).
//!
//! Values: `a,b,c` (each read like a `--set` value), `lo..hi/step` (inclusive, numbers) or `lo..hi`
//! (step 1). Swept keys may be anything a combination can differ in — the model, `[risk]`,
//! `[broker]`'s costs, `[[features]]` — but not what the one read of the data shares (`source`,
//! `quality`, `fundamentals`, `cache`, `outputs`, `drift`, `alerts`, `name`). A crossover's
//! `model.fast`/`model.slow` or a threshold's `model.feature` given as a bare period (`fast=5`) means
//! the same indicator as the pipeline's with that period (`SMA_10` → `SMA_5`, the feature added).

pub mod output;
pub mod walk;

use std::path::Path;

use crate::config::{FeatureSpec, LoadedPipeline, ModelSpec, Pipeline};
use crate::engine::SweepSpec;
use crate::operators::signal::RuleModel;
use crate::operators::sweep::ComboModel;

/// Why a sweep cannot run, the user's fault in each case.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A `--set` that is not `KEY=VALUES`, or a range that does not read.
    #[error("--set {text:?}: {why}")]
    Malformed {
        /// The argument.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// A key the combinations must share.
    #[error(
        "--set {key}: a sweep reads the data once, so `{key}` cannot vary (sweep the model, [risk], [broker] costs or [[features]])"
    )]
    Shared {
        /// The key.
        key: String,
    },
    /// A combination's pipeline does not load.
    #[error("combination {index} ({values}): {source}")]
    Combination {
        /// Its position.
        index: usize,
        /// Its values.
        values: String,
        /// The loader's error.
        source: crate::config::ConfigError,
    },
    /// An ensemble model: it trains per combination.
    #[error(
        "a sweep runs rule models (crossover, threshold); an ensemble trains per combination — run those as backtests"
    )]
    Ensemble,
    /// A broker other than the paper one.
    #[error("a sweep simulates: [broker] kind must be \"paper\"")]
    NotPaper,
    /// A combination's model reads a column no feature makes.
    #[error("combination {index}: the model reads a column no feature makes ({columns})")]
    UnknownColumn {
        /// Its position.
        index: usize,
        /// The columns the features make, comma-separated.
        columns: String,
    },
    /// No `--set`.
    #[error("nothing to sweep: give --set KEY=VALUES (a,b,c or lo..hi/step)")]
    Nothing,
    /// More combinations than one sweep runs.
    #[error("more than {MAX_COMBINATIONS} combinations: sweep fewer values")]
    TooMany,
}

impl crate::fault::Blame for SweepError {
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Input
    }
}

/// Most combinations one sweep runs (each is a portfolio stepped on every time).
pub const MAX_COMBINATIONS: usize = 10_000;

/// One swept key and its values, as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Dotted key.
    pub key: String,
    /// Its values, each a `--set` value.
    pub values: Vec<String>,
}

/// Reads `KEY=VALUES`.
///
/// # Errors
/// No `=`, an empty value, or a range that is not `lo..hi[/step]` with `step > 0` and `lo ≤ hi`.
pub fn parse_param(arg: &str) -> Result<Param, SweepError> {
    let bad = |why: &str| SweepError::Malformed {
        text: arg.to_string(),
        why: why.to_string(),
    };
    let (key, values) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUES"))?;
    let key = key.trim().to_string();
    let values = values.trim();
    if key.is_empty() || values.is_empty() {
        return Err(bad("expected KEY=VALUES"));
    }
    // A TOML array, table or quoted string is one value, commas and all.
    let values = if values.starts_with(['[', '{', '"', '\'']) {
        vec![values.to_string()]
    } else if let Some((lo, rest)) = values.split_once("..") {
        let (hi, step) = rest.split_once('/').unwrap_or((rest, "1"));
        range(lo, hi, step)
            .ok_or_else(|| bad("a range is lo..hi or lo..hi/step, numbers, step > 0, lo ≤ hi"))?
    } else {
        values.split(',').map(|v| v.trim().to_string()).collect()
    };
    if values.iter().any(String::is_empty) {
        return Err(bad("an empty value"));
    }
    Ok(Param { key, values })
}

/// `lo..hi/step`, inclusive of `hi` (within a millionth of a step), integers when all three are.
fn range(lo: &str, hi: &str, step: &str) -> Option<Vec<String>> {
    let (lo, hi, step) = (lo.trim(), hi.trim(), step.trim());
    if let (Ok(a), Ok(b), Ok(s)) = (lo.parse::<i64>(), hi.parse::<i64>(), step.parse::<i64>()) {
        if s <= 0 || a > b || (b - a) / s > MAX_COMBINATIONS as i64 {
            return None;
        }
        return Some((0..=(b - a) / s).map(|k| (a + k * s).to_string()).collect());
    }
    let (a, b, s) = (
        lo.parse::<f64>().ok()?,
        hi.parse::<f64>().ok()?,
        step.parse::<f64>().ok()?,
    );
    if !(s > 0.0 && a <= b && a.is_finite() && b.is_finite())
        || (b - a) / s > MAX_COMBINATIONS as f64
    {
        return None;
    }
    let n = ((b - a) / s + 1e-6).floor() as usize;
    // Each value from the start, rounded to 12 significant digits: 0.1 steps stay 0.3, not
    // 0.30000000000000004.
    Some(
        (0..=n)
            .map(|k| {
                let v = a + k as f64 * s;
                let r: f64 = format!("{v:.12e}").parse().unwrap_or(v);
                format!("{r}")
            })
            .collect(),
    )
}

/// The keys a combination may not change.
const SHARED: &[&str] = &[
    "name",
    "source",
    "quality",
    "fundamentals",
    "cache",
    "outputs",
    "drift",
    "alerts",
];

/// One combination: its values and the pipeline they make.
#[derive(Debug, Clone)]
pub struct Combination {
    /// The value of each swept key, in the keys' order.
    pub values: Vec<String>,
    /// The `--set`s applied (a bare period expanded).
    pub sets: Vec<String>,
    /// The pipeline.
    pub pipeline: LoadedPipeline,
}

/// A sweep ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The swept keys.
    pub params: Vec<Param>,
    /// Every combination, the first key varying slowest.
    pub combos: Vec<Combination>,
    /// The pipeline the data flows through: the first combination's, with the union of every
    /// combination's features.
    pub base: LoadedPipeline,
    /// What the graph's sweep tail needs.
    pub spec: SweepSpec,
}

impl Plan {
    /// How many distinct features the union computes.
    pub fn features(&self) -> usize {
        self.base.pipeline.features.len()
    }
}

/// TOML text of a JSON scalar (a feature's parameter).
fn toml_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A bare period for a model column: the `--set`s that name the same indicator with that period,
/// adding the feature when the pipeline lacks it. `None`: not such a key or value.
fn shorthand(
    base: &Pipeline,
    key: &str,
    value: &str,
    added: &mut Vec<FeatureSpec>,
) -> Option<Vec<String>> {
    let period: u64 = value.parse().ok()?;
    let column = match (key, &base.model) {
        ("model.fast", ModelSpec::Crossover { fast, .. }) => fast,
        ("model.slow", ModelSpec::Crossover { slow, .. }) => slow,
        ("model.feature", ModelSpec::Threshold { feature, .. }) => feature,
        _ => return None,
    };
    let (spec, at) = base.features.iter().find_map(|f| {
        let f = f.get_ref();
        f.output_names()
            .iter()
            .position(|c| c == column)
            .map(|i| (f.clone(), i))
    })?;
    let mut json = serde_json::to_value(&spec).ok()?;
    json.get("period")?;
    json["period"] = serde_json::json!(period);
    let new: FeatureSpec = serde_json::from_value(json.clone()).ok()?;
    let name = new.output_names().get(at)?.clone();
    let mut sets = vec![format!("{key}={name:?}")];
    let exists = base.features.iter().any(|f| *f.get_ref() == new) || added.contains(&new);
    if !exists {
        let n = base.features.len() + added.len();
        if let Some(obj) = json.as_object() {
            // `kind` first: it makes the appended table.
            let mut fields: Vec<(&String, &serde_json::Value)> = obj.iter().collect();
            fields.sort_by_key(|(k, _)| *k != "kind");
            sets.extend(
                fields
                    .into_iter()
                    .map(|(k, v)| format!("features.{n}.{k}={}", toml_text(v))),
            );
        }
        added.push(new);
    }
    Some(sets)
}

/// Every combination of `params` over the pipeline at `path`, checked and resolved.
///
/// # Errors
/// No parameter, too many combinations, a shared key, a combination whose pipeline does not load,
/// an ML model or a venue broker.
pub fn plan(path: &Path, params: Vec<Param>) -> Result<Plan, SweepError> {
    if params.is_empty() {
        return Err(SweepError::Nothing);
    }
    for p in &params {
        let head = p.key.split('.').next().unwrap_or_default();
        if SHARED.contains(&head) {
            return Err(SweepError::Shared { key: p.key.clone() });
        }
    }
    let total = params
        .iter()
        .try_fold(1usize, |n, p| n.checked_mul(p.values.len()))
        .filter(|n| *n <= MAX_COMBINATIONS)
        .ok_or(SweepError::TooMany)?;
    let base = crate::config::Pipeline::load(path).map_err(|source| SweepError::Combination {
        index: 0,
        values: "the pipeline itself".into(),
        source,
    })?;
    let mut combos = Vec::with_capacity(total);
    for index in 0..total {
        // Mixed radix, the first key slowest.
        let mut rest = index;
        let mut picks = vec![0usize; params.len()];
        for (k, p) in params.iter().enumerate().rev() {
            picks[k] = rest % p.values.len();
            rest /= p.values.len();
        }
        let values: Vec<String> = params
            .iter()
            .zip(&picks)
            .map(|(p, &i)| p.values[i].clone())
            .collect();
        let mut sets = Vec::new();
        let mut added = Vec::new();
        for (p, v) in params.iter().zip(&values) {
            match shorthand(&base.pipeline, &p.key, v, &mut added) {
                Some(s) => sets.extend(s),
                None => sets.push(format!("{}={v}", p.key)),
            }
        }
        let shown = || {
            params
                .iter()
                .zip(&values)
                .map(|(p, v)| format!("{}={v}", p.key))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let pipeline = crate::config::Pipeline::load_with(path, &sets).map_err(|source| {
            SweepError::Combination {
                index,
                values: shown(),
                source,
            }
        })?;
        if matches!(pipeline.pipeline.model, ModelSpec::Ml(_)) {
            return Err(SweepError::Ensemble);
        }
        if pipeline.pipeline.broker.kind != crate::config::BrokerKind::Paper {
            return Err(SweepError::NotPaper);
        }
        combos.push(Combination {
            values,
            sets,
            pipeline,
        });
    }
    // The union of the features, each distinct one once, in order of first appearance.
    let mut union = combos[0].pipeline.clone();
    for c in &combos[1..] {
        for f in &c.pipeline.pipeline.features {
            if !union
                .pipeline
                .features
                .iter()
                .any(|u| u.get_ref() == f.get_ref())
            {
                union.pipeline.features.push(f.clone());
            }
        }
    }
    let columns = union.pipeline.feature_columns();
    let mut models = Vec::with_capacity(combos.len());
    let mut books = Vec::with_capacity(combos.len());
    for (index, c) in combos.iter().enumerate() {
        let p = &c.pipeline.pipeline;
        let model =
            RuleModel::new(&p.model, &columns).ok_or_else(|| SweepError::UnknownColumn {
                index,
                columns: columns.join(", "),
            })?;
        models.push(ComboModel {
            model,
            payoff_window: p.risk.sizing.payoff_window(),
        });
        books.push((p.risk.clone(), p.broker.clone()));
    }
    Ok(Plan {
        params,
        combos,
        base: union,
        spec: SweepSpec { models, books },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_lists_and_inclusive_ranges() {
        assert_eq!(
            parse_param("model.fast=5,10, 20").unwrap().values,
            ["5", "10", "20"]
        );
        assert_eq!(
            parse_param("model.slow=20..60/10").unwrap().values,
            ["20", "30", "40", "50", "60"]
        );
        assert_eq!(
            parse_param("risk.sizing.fraction=0.1..0.3/0.1")
                .unwrap()
                .values,
            ["0.1", "0.2", "0.3"]
        );
        assert_eq!(parse_param("x=1..3").unwrap().values, ["1", "2", "3"]);
        assert_eq!(
            parse_param("source.tickers=[\"A\",\"B\"]")
                .unwrap()
                .values
                .len(),
            1
        );
        for bad in ["x", "x=", "x=5..1", "x=1..5/0", "x=1..b", "x=1,,2"] {
            assert!(parse_param(bad).is_err(), "{bad}");
        }
    }
}
