//! `report.html`: one self-contained page (inline SVG, no script, no network) with the equity and
//! drawdown charts and the metrics table.

use std::fmt::Write;

use crate::metrics::{Metrics, drawdowns};
use crate::operators::portfolio::EquityPoint;
use crate::time::format_time;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG line chart of `ys` over `ts`, `w`×`h` pixels, with min/max labels.
fn chart(ts: &[i64], ys: &[f64], w: f64, h: f64, color: &str, fill: bool, pct: bool) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img">"#
    );
    if ys.is_empty() {
        svg.push_str("</svg>");
        return svg;
    }
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (pl, pr, pt, pb) = (70.0, 10.0, 10.0, 24.0);
    let n = ys.len().max(2) - 1;
    let x = |i: usize| pl + (w - pl - pr) * i as f64 / n as f64;
    let y = |v: f64| pt + (h - pt - pb) * (1.0 - (v - lo) / span);
    // Thin to at most ~2 points per pixel.
    let step = (ys.len() / (2 * w as usize)).max(1);
    let mut d = String::new();
    for (k, i) in (0..ys.len())
        .step_by(step)
        .chain(std::iter::once(ys.len() - 1))
        .enumerate()
    {
        let _ = write!(
            d,
            "{}{:.1},{:.1}",
            if k == 0 { "M" } else { " L" },
            x(i),
            y(ys[i])
        );
    }
    if fill {
        let _ = write!(
            d,
            " L{:.1},{:.1} L{:.1},{:.1} Z",
            x(ys.len() - 1),
            y(hi.min(0.0).max(lo)),
            x(0),
            y(hi.min(0.0).max(lo))
        );
    }
    let label = |v: f64| {
        if pct {
            format!("{:.1}%", v * 100.0)
        } else {
            format!("{v:.0}")
        }
    };
    let _ = write!(
        svg,
        r##"<rect x="{pl}" y="{pt}" width="{}" height="{}" fill="#fafafa" stroke="#ddd"/><path d="{d}" fill="{}" stroke="{color}" stroke-width="1.2"/><text x="4" y="{}" font-size="11">{}</text><text x="4" y="{}" font-size="11">{}</text><text x="{pl}" y="{}" font-size="11">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text></svg>"##,
        w - pl - pr,
        h - pt - pb,
        if fill { color } else { "none" },
        pt + 10.0,
        label(hi),
        h - pb,
        label(lo),
        h - 6.0,
        format_time(ts[0]),
        w - pr,
        h - 6.0,
        format_time(ts[ts.len() - 1]),
    );
    svg
}

/// Renders the report page.
pub fn render(title: &str, equity: &[EquityPoint], m: &Metrics) -> String {
    let ts: Vec<i64> = equity.iter().map(|p| p.ts).collect();
    let eq: Vec<f64> = equity.iter().map(|p| p.equity).collect();
    let dd = drawdowns(&eq);
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let num = |v: f64| format!("{v:.4}");
    let rows: Vec<(&str, String)> = vec![
        (
            "Period",
            format!("{} → {} ({} bars)", m.start, m.end, m.periods),
        ),
        ("Initial equity", format!("{:.2}", m.initial_equity)),
        ("Final equity", format!("{:.2}", m.final_equity)),
        ("Total return", pct(m.total_return)),
        ("CAGR (252)", pct(m.cagr)),
        ("CAGR (calendar)", pct(m.cagr_calendar)),
        ("Sharpe", num(m.sharpe)),
        ("Sortino", num(m.sortino)),
        ("Max drawdown", pct(m.max_drawdown)),
        ("Calmar", num(m.calmar)),
        ("Volatility", pct(m.volatility)),
        ("Closed trades", m.trades.to_string()),
        ("Open at end", m.open_trades.to_string()),
        ("Win rate", pct(m.win_rate)),
        ("Exposure", pct(m.exposure)),
        ("Turnover", format!("{:.2}×", m.turnover)),
        ("Commissions", format!("{:.2}", m.commissions)),
        (
            "Rejected rows",
            m.rejected
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "Flagged bars",
            m.flagged
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "Orders",
            m.orders
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    let mut rows = rows.to_vec();
    if m.ml_trainings > 0 {
        rows.push((
            "ML trainings / drift events",
            format!("{} / {}", m.ml_trainings, m.drift_events),
        ));
        rows.push((
            "ML out-of-sample ROC AUC (mean over trainings)",
            m.ml_mean_auc
                .iter()
                .map(|(k, v)| format!("{k}: {v:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let mut table = String::new();
    for (k, v) in rows {
        let _ = write!(table, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font:14px system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}th,td{{padding:3px 12px;border-bottom:1px solid #eee;text-align:left}}h2{{margin-top:1.5em}}</style>
</head><body>
<h1>{t}</h1>
<h2>Equity</h2>
{eq}
<h2>Drawdown</h2>
{dd}
<h2>Metrics</h2>
<table>{table}</table>
</body></html>
"#,
        t = esc(title),
        eq = chart(&ts, &eq, 900.0, 280.0, "#1f6feb", false, false),
        dd = chart(&ts, &dd, 900.0, 160.0, "#cf222e", true, true),
    )
}
