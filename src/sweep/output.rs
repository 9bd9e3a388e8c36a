//! A sweep's results: each combination's figures (the backtest's `metrics.json` numbers and the
//! tearsheet's against the benchmark), the best by a chosen metric, and the folder: `sweep.parquet`
//! (one row per combination, every metric), `sweep.json` (the plan, the best, the walk) and
//! `sweep.html` (heatmap, tables, the walk's stitched equity).

use std::fmt::Write;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::engine::sweep::SweepOutput;
use crate::sinks::files::{Col, SinkError, write_table};
use crate::sinks::report::{esc, pct, thousands};
use crate::time::date_of;

use super::Plan;
use super::walk::Walk;

/// One combination's results.
#[derive(Debug, Clone, Serialize)]
pub struct ComboResult {
    /// Its position.
    pub combination: usize,
    /// The value of each swept key.
    pub values: Vec<String>,
    /// Every numeric figure by name: `metrics.json`'s, then the tearsheet's (quantstats'
    /// definitions) that `metrics.json` lacks, then those against the benchmark.
    pub figures: Vec<(String, f64)>,
}

impl ComboResult {
    /// The figure named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures.iter().find(|(n, _)| n == name).map(|x| x.1)
    }
}

/// The numbers at the top level of a serialized struct, skipping names already taken.
fn numbers(v: &serde_json::Value, into: &mut Vec<(String, f64)>) {
    if let Some(obj) = v.as_object() {
        for (k, x) in obj {
            if let Some(f) = x.as_f64()
                && !into.iter().any(|(n, _)| n == k)
            {
                into.push((k.clone(), f));
            }
        }
    }
}

/// Every combination's figures, and each one's daily returns with their days (for the walk).
pub fn results(
    plan: &Plan,
    out: &SweepOutput,
) -> (Vec<ComboResult>, Vec<Vec<f64>>, Vec<NaiveDate>) {
    let benchmark = plan.base.pipeline.outputs.benchmark.as_str();
    let mut rows = Vec::with_capacity(out.ledgers.len());
    let mut returns = Vec::with_capacity(out.ledgers.len());
    let mut dates = Vec::new();
    for (c, ledger) in out.ledgers.iter().enumerate() {
        let m = crate::metrics::compute(ledger, &out.quarantine);
        let sheet = crate::tearsheet::build(benchmark, &out.tickers, ledger, &out.quarantine, &[]);
        let mut figures = Vec::new();
        numbers(&serde_json::to_value(&m).unwrap_or_default(), &mut figures);
        numbers(
            &serde_json::to_value(&sheet.strategy).unwrap_or_default(),
            &mut figures,
        );
        numbers(
            &serde_json::to_value(&sheet.relative).unwrap_or_default(),
            &mut figures,
        );
        figures.push(("benchmark_return".into(), sheet.bench.cumulative_return));
        if c == 0 {
            dates = sheet.daily.t.iter().skip(1).map(|t| date_of(*t)).collect();
        }
        returns.push(sheet.daily.returns.iter().skip(1).copied().collect());
        rows.push(ComboResult {
            combination: c,
            values: plan.combos[c].values.clone(),
            figures,
        });
    }
    (rows, returns, dates)
}

/// The combinations ranked by `metric`, best first (higher is better; NaN last; ties keep the
/// combination order).
pub fn ranked<'a>(rows: &'a [ComboResult], metric: &str) -> Vec<&'a ComboResult> {
    let mut v: Vec<&ComboResult> = rows.iter().collect();
    let key = |r: &ComboResult| r.get(metric).filter(|x| x.is_finite());
    v.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    v
}

/// What `sweep.json` holds.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// The pipeline file.
    pub pipeline: String,
    /// The swept keys and their values.
    pub params: Vec<(&'a str, &'a [String])>,
    /// Combinations run.
    pub combinations: usize,
    /// Distinct features computed per ticker (the union).
    pub features: usize,
    /// Bars read once for all of them.
    pub bars: u64,
    /// Seconds of the dataflow.
    pub graph_seconds: f64,
    /// The metric ranked by.
    pub metric: &'a str,
    /// The best combinations by it.
    pub best: Vec<&'a ComboResult>,
    /// The walk-forward, when asked for.
    pub walk: Option<&'a Walk>,
}

/// Writes `sweep.parquet`, `sweep.json` and `sweep.html` into `dir`.
///
/// # Errors
/// The folder or a file cannot be written.
pub fn write(
    dir: &Path,
    plan: &Plan,
    rows: &[ComboResult],
    summary: &Summary<'_>,
) -> Result<(), SinkError> {
    std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut cols: Vec<(&str, Col)> = vec![(
        "combination",
        Col::U64(rows.iter().map(|r| r.combination as u64).collect()),
    )];
    for (k, p) in plan.params.iter().enumerate() {
        cols.push((
            p.key.as_str(),
            Col::Str(rows.iter().map(|r| r.values[k].clone()).collect()),
        ));
    }
    if let Some(first) = rows.first() {
        for (i, (name, _)) in first.figures.iter().enumerate() {
            cols.push((
                name.as_str(),
                Col::F64(
                    rows.iter()
                        .map(|r| r.figures.get(i).map_or(f64::NAN, |x| x.1))
                        .collect(),
                ),
            ));
        }
    }
    write_table(dir, "sweep", cols)?;
    let put = |name: &str, text: String| {
        let path = dir.join(name);
        crate::sinks::files::write_whole(&path, text.as_bytes()).map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    put(
        "sweep.json",
        serde_json::to_string_pretty(summary).unwrap_or_default() + "\n",
    )?;
    put("sweep.html", html(plan, rows, summary))?;
    Ok(())
}

fn shown(name: &str, v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "—".into();
    };
    let percent = [
        "total_return",
        "cagr",
        "max_drawdown",
        "volatility",
        "win_rate",
        "exposure",
        "benchmark_return",
        "alpha",
    ];
    if percent.contains(&name) {
        pct(v)
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        thousands(v, 0)
    } else {
        thousands(v, 3)
    }
}

/// Columns of the HTML tables (every figure is in `sweep.parquet`).
const SHOWN: &[&str] = &[
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "volatility",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
    "alpha",
    "beta",
];

fn table(id: &str, plan: &Plan, rows: &[&ComboResult]) -> String {
    let mut h = format!(
        "<div style=\"overflow-x:auto\"><table class=\"sortable\" id=\"{id}\"><thead><tr><th class=\"n\">#</th>"
    );
    for p in &plan.params {
        let _ = write!(h, "<th>{}</th>", esc(&p.key));
    }
    for m in SHOWN {
        let _ = write!(h, "<th class=\"n\">{m}</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        let _ = write!(h, "<tr><td class=\"n\">{}</td>", r.combination);
        for v in &r.values {
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        for m in SHOWN {
            let v = r.get(m);
            let _ = write!(
                h,
                "<td class=\"n\" data-v=\"{}\">{}</td>",
                v.filter(|x| x.is_finite()).unwrap_or(f64::NEG_INFINITY),
                shown(m, v)
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div>");
    h
}

/// The metric over the first two keys (the best over the others when there are more).
fn heatmap(plan: &Plan, rows: &[ComboResult], metric: &str) -> String {
    if plan.params.len() < 2 {
        return String::new();
    }
    let (a, b) = (&plan.params[0], &plan.params[1]);
    let cell = |i: &str, j: &str| {
        rows.iter()
            .filter(|r| r.values[0] == i && r.values[1] == j)
            .filter_map(|r| r.get(metric).filter(|x| x.is_finite()))
            .fold(None, |best: Option<f64>, x| {
                Some(best.map_or(x, |b| b.max(x)))
            })
    };
    let all: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get(metric))
        .filter(|x| x.is_finite())
        .collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    let mut h = format!(
        "<h2>{metric} by {} × {}{}</h2><table class=\"heat\" id=\"heatmap\"><thead><tr><th>{} \\ {}</th>",
        esc(&a.key),
        esc(&b.key),
        if plan.params.len() > 2 {
            " (best over the other keys)"
        } else {
            ""
        },
        esc(&a.key),
        esc(&b.key)
    );
    for j in &b.values {
        let _ = write!(h, "<th class=\"n\">{}</th>", esc(j));
    }
    h.push_str("</tr></thead><tbody>");
    for i in &a.values {
        let _ = write!(h, "<tr><th>{}</th>", esc(i));
        for j in &b.values {
            match cell(i, j) {
                Some(v) => {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    // Red (worst) through white to green (best).
                    let (r, g, bl) = if t < 0.5 {
                        (
                            207.0,
                            34.0 + (255.0 - 34.0) * t * 2.0,
                            46.0 + (255.0 - 46.0) * t * 2.0,
                        )
                    } else {
                        (
                            255.0 - (255.0 - 26.0) * (t - 0.5) * 2.0,
                            255.0 - (255.0 - 127.0) * (t - 0.5) * 2.0,
                            255.0 - (255.0 - 55.0) * (t - 0.5) * 2.0,
                        )
                    };
                    let _ = write!(
                        h,
                        "<td class=\"n\" style=\"background:rgb({r:.0},{g:.0},{bl:.0})\" data-v=\"{v}\">{}</td>",
                        shown(metric, Some(v))
                    );
                }
                None => h.push_str("<td class=\"n\">—</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

fn walk_section(w: &Walk, rows: &[ComboResult], plan: &Plan) -> String {
    let mut h = format!(
        "<h2>Walk-forward ({} training days{}, {} trading days, by {})</h2>\
         <p>Out of sample: total return <b>{}</b>, CAGR {}, Sharpe {}, max drawdown {} over {} days; \
         the choice changed in {} of {} windows. The best single combination over the same days, with hindsight: {}.</p>\
         <div class=\"chart\" id=\"chart-walk\"></div>\
         <table id=\"windows\"><thead><tr><th>Train</th><th>Trade</th><th>Chosen</th><th class=\"n\">In-sample {}</th><th class=\"n\">Out-of-sample return</th></tr></thead><tbody>",
        w.spec.train,
        if w.spec.anchored {
            ", anchored"
        } else {
            ", rolling"
        },
        w.spec.test,
        w.spec.score.name(),
        shown("total_return", Some(w.total_return)),
        shown("cagr", Some(w.cagr)),
        shown("sharpe", Some(w.sharpe)),
        shown("max_drawdown", Some(w.max_drawdown)),
        w.returns.len(),
        w.changes,
        w.windows.len(),
        shown("total_return", Some(w.hindsight_best)),
        w.spec.score.name(),
    );
    for x in &w.windows {
        let values = rows
            .get(x.chosen)
            .map(|r| {
                plan.params
                    .iter()
                    .zip(&r.values)
                    .map(|(p, v)| format!("{}={v}", p.key))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{} → {}</td><td>{} → {}</td><td>#{} {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            x.train_from,
            x.train_to,
            x.test_from,
            x.test_to,
            x.chosen,
            esc(&values),
            thousands(x.in_sample, 3),
            shown("total_return", Some(x.out_of_sample))
        );
    }
    h.push_str("</tbody></table>");
    h
}

const SCRIPT: &str = r#"
'use strict';
(function () {
  const S = JSON.parse(document.getElementById('sweep').textContent);
  const fmt = (v, d) => v == null || !isFinite(v) ? '—' : Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  if (S.walk && S.walk.dates.length > 1) {
    let eq = 1; const ys = S.walk.returns.map(r => (eq *= 1 + r) - 1);
    const xs = S.walk.dates.map(d => Date.parse(d) / 1000);
    const h = document.getElementById('chart-walk');
    new uPlot({
      width: Math.min(1100, document.body.clientWidth - 20), height: 260,
      scales: { x: { time: true } },
      axes: [{ grid: { stroke: '#eaeef2' } }, { grid: { stroke: '#eaeef2' }, size: 70, values: (u, vs) => vs.map(v => v == null ? '' : fmt(v * 100, 1) + ' %') }],
      series: [{ label: 'Date', value: (u, v) => v == null ? '—' : new Date(v * 1000).toISOString().slice(0, 10) },
        { label: 'Out-of-sample return (stitched)', stroke: '#1f6feb', width: 1.5, value: (u, v) => fmt(v * 100, 2) + ' %', points: { show: false } }],
      cursor: { drag: { x: true, y: false } },
    }, [xs, ys], h);
  }
  document.body.setAttribute('data-ready', '1');
})();
"#;

fn html(plan: &Plan, rows: &[ComboResult], s: &Summary<'_>) -> String {
    let all: Vec<&ComboResult> = rows.iter().collect();
    let walk = s
        .walk
        .map(|w| walk_section(w, rows, plan))
        .unwrap_or_default();
    let data = serde_json::json!({ "walk": s.walk })
        .to_string()
        .replace('<', "\\u003c");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sweep — {name}</title>
<style>{uplot_css}</style>
<style>{css}</style></head><body>
<h1>Sweep of {name}</h1>
<p class="muted">{n} combinations of {keys} in one dataflow over one read of {bars} bars ({features} distinct features computed once per ticker), {secs:.2} s: {rate} combination-bars per second.</p>
<h2>Best {top} by {metric}</h2>
{best}
{heat}
{walk}
<h2>Every combination <span class="muted">(click a column to sort; every figure is in sweep.parquet)</span></h2>
{table}
<script id="sweep" type="application/json">{data}</script>
<script>{uplot}</script>
<script>{sortable}</script>
<script>{SCRIPT}</script>
</body></html>
"#,
        name = esc(&plan.base.pipeline.name),
        uplot_css = crate::sinks::report::UPLOT_CSS,
        css = crate::sinks::report::REPORT_CSS,
        uplot = crate::sinks::report::UPLOT_JS,
        sortable = crate::sinks::report::SORTABLE_JS,
        n = thousands(rows.len() as f64, 0),
        keys = esc(&plan
            .params
            .iter()
            .map(|p| p.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
        bars = thousands(s.bars as f64, 0),
        features = s.features,
        secs = s.graph_seconds,
        rate = thousands(
            rows.len() as f64 * s.bars as f64 / s.graph_seconds.max(1e-9),
            0
        ),
        top = s.best.len(),
        metric = esc(s.metric),
        best = table("best", plan, &s.best),
        heat = heatmap(plan, rows, s.metric),
        table = table("all", plan, &all),
    )
}
