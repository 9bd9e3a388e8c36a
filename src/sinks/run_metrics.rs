//! A finished backtest's figures as a Prometheus text exposition (format 0.0.4), written once at
//! the end (`fdp backtest --metrics-file`), for node_exporter's textfile collector or a push: the
//! same names a live run's `/metrics` would use for the same things, prefixed `fdp_backtest_`, each
//! sample labelled with the run and the pipeline.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::RunOutput;
use crate::metrics::Metrics;

use super::prometheus::{label as esc, number as num};

/// The exposition of one finished run.
pub fn render(run_id: &str, pipeline: &str, out: &RunOutput, m: &Metrics) -> String {
    let base = format!("run_id=\"{}\",pipeline=\"{}\"", esc(run_id), esc(pipeline));
    let mut s = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        super::prometheus::family(&mut s, name, kind, help);
        for (labels, v) in samples {
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(s, "{name}{{{base}{sep}{labels}}} {}", num(v));
        }
    };
    let l = &out.ledger;
    family(
        "fdp_backtest_bars_total",
        "counter",
        "Bars through each stage: source = rows read (passed plus rejected), quality = bars passed on.",
        vec![
            (
                "stage=\"source\"".into(),
                m.bars as f64 + m.rejected.values().sum::<usize>() as f64,
            ),
            ("stage=\"quality\"".into(), m.bars as f64),
        ],
    );
    // The counts metrics.json holds, so the two never disagree.
    let quarantined = [("rejected", &m.rejected), ("flagged", &m.flagged)];
    family(
        "fdp_backtest_quarantine_rows_total",
        "counter",
        "Rows quarantined (rejected) or flagged, by reason.",
        quarantined
            .iter()
            .flat_map(|(action, by_reason)| {
                by_reason.iter().map(move |(reason, n)| {
                    (
                        format!("reason=\"{}\",action=\"{action}\"", esc(reason)),
                        *n as f64,
                    )
                })
            })
            .collect(),
    );
    family(
        "fdp_backtest_signals_total",
        "counter",
        "Non-empty signals of the model.",
        vec![(String::new(), l.signals.len() as f64)],
    );
    // Every outcome, 0 when none had it, so a series exists before its first order.
    let mut by_status: BTreeMap<&str, usize> =
        ["filled", "refused", "cancelled", "expired", "unfilled"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
    for (k, n) in &m.orders {
        *by_status.entry(k.as_str()).or_default() += n;
    }
    family(
        "fdp_backtest_orders_total",
        "counter",
        "Orders by outcome.",
        by_status
            .into_iter()
            .map(|(k, n)| (format!("status=\"{k}\""), n as f64))
            .collect(),
    );
    family(
        "fdp_backtest_fills_total",
        "counter",
        "Executions.",
        vec![(String::new(), l.fills.len() as f64)],
    );
    let mut drift: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for (_, d) in &l.drifts {
        let e = drift
            .entry(d.name.as_str())
            .or_insert((0, f64::NEG_INFINITY));
        e.0 += 1;
        e.1 = e.1.max(d.kl);
    }
    family(
        "fdp_backtest_drift_events_total",
        "counter",
        "Drift events, by feature.",
        drift
            .iter()
            .map(|(f, (n, _))| (format!("feature=\"{}\"", esc(f)), *n as f64))
            .collect(),
    );
    family(
        "fdp_backtest_drift_divergence_max",
        "gauge",
        "Largest KL divergence of a drift event, by feature.",
        drift
            .iter()
            .map(|(f, (_, kl))| (format!("feature=\"{}\"", esc(f)), *kl))
            .collect(),
    );
    let last = l.equity.last();
    for (name, help, v) in [
        (
            "fdp_backtest_equity",
            "Equity at the last bar, in the account currency.",
            last.map_or(f64::NAN, |e| e.equity),
        ),
        (
            "fdp_backtest_cash",
            "Cash at the last bar, in the account currency.",
            last.map_or(f64::NAN, |e| e.cash),
        ),
        (
            "fdp_backtest_open_positions",
            "Positions open at the last bar.",
            last.map_or(0.0, |e| e.open_positions as f64),
        ),
        (
            "fdp_backtest_max_drawdown_ratio",
            "Maximum drawdown from the running peak (a negative fraction).",
            m.max_drawdown,
        ),
        (
            "fdp_backtest_load_seconds",
            "Seconds worker 0 spent loading its share of the source.",
            out.load_seconds,
        ),
        (
            "fdp_backtest_graph_seconds",
            "Seconds from the first bar fed to the end of the graph.",
            out.graph_seconds,
        ),
    ] {
        family(name, "gauge", help, vec![(String::new(), v)]);
    }
    out.stages
        .render("fdp_backtest_stage_seconds", &base, &mut s);
    s
}
