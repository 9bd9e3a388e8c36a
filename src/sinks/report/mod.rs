//! `report.html`: the run's tearsheet as one self-contained page — no network, every script and
//! style inline (uPlot, the dashboard's vendored chart library, and `report.js`). The tables are
//! written here as HTML, so the numbers read without a script; the charts (zoom by dragging, values
//! under the cursor, dated axes with gridlines) are drawn by `report.js` from the tearsheet's
//! series, embedded as JSON.

mod rows;

use std::fmt::Write;

use crate::metrics::Metrics;
use crate::tearsheet::Tearsheet;
use crate::time::format_time;

use rows::{Kind, RELATIVE, ROWS, lookup};

pub(crate) const UPLOT_JS: &str = include_str!("../../serve/assets/vendor/uPlot.iife.min.js");
pub(crate) const UPLOT_CSS: &str = include_str!("../../serve/assets/vendor/uPlot.min.css");
const REPORT_JS: &str = include_str!("report.js");
pub(crate) const SORTABLE_JS: &str = include_str!("sortable.js");
pub(crate) const REPORT_CSS: &str = include_str!("report.css");

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `1234567.891` → `1,234,567.89` (`decimals` places, thousands separated).
pub fn thousands(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    // No "-0.00": a value that rounds to zero shows unsigned.
    if v < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '−');
    }
    out
}

/// A fraction in percent, two decimals, thousands separated (`—` when not finite).
pub(crate) fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{} %", thousands(v * 100.0, 2))
    } else {
        "—".into()
    }
}

fn shown(v: Option<&serde_json::Value>, kind: Kind) -> String {
    match v.and_then(serde_json::Value::as_f64) {
        None => "—".into(),
        Some(x) => match kind {
            Kind::Pct => pct(x),
            Kind::Ratio => thousands(x, 2),
            Kind::Int => thousands(x, 0),
        },
    }
}

/// A `<td>` of a signed number, coloured by sign, carrying the raw value for sorting.
fn signed_cell(v: f64, text: String) -> String {
    let class = if v < 0.0 { "n neg" } else { "n" };
    format!("<td class=\"{class}\" data-v=\"{v}\">{text}</td>")
}

fn metrics_table(t: &Tearsheet) -> String {
    let s = serde_json::to_value(&t.strategy).unwrap_or_default();
    let b = serde_json::to_value(&t.bench).unwrap_or_default();
    let mut html = format!(
        "<table class=\"metrics\"><thead><tr><th>Metric</th><th class=\"n\">Strategy</th><th class=\"n\">Benchmark ({})</th><th>Definition (r: daily returns)</th></tr></thead><tbody>",
        esc(&t.benchmark)
    );
    for row in ROWS {
        match row {
            None => html.push_str("<tr class=\"gap\"><td colspan=\"4\"></td></tr>"),
            Some((label, key, kind, def)) => {
                let _ = write!(
                    html,
                    "<tr data-key=\"{key}\"><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"def\">{}</td></tr>",
                    esc(label),
                    shown(lookup(&s, key), *kind),
                    shown(lookup(&b, key), *kind),
                    esc(def)
                );
            }
        }
    }
    let r = serde_json::to_value(&t.relative).unwrap_or_default();
    html.push_str("<tr class=\"gap\"><td colspan=\"4\"></td></tr>");
    for (label, key, kind, def) in RELATIVE {
        let _ = write!(
            html,
            "<tr data-key=\"{key}\"><th>{}</th><td class=\"n\">{}</td><td class=\"n\">—</td><td class=\"def\">{}</td></tr>",
            esc(label),
            shown(lookup(&r, key), *kind),
            esc(def)
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn drawdown_table(t: &Tearsheet) -> String {
    let mut html = String::from(
        "<table id=\"drawdowns\"><thead><tr><th>#</th><th>Start</th><th>Trough</th><th>Recovered</th><th class=\"n\">Depth</th><th class=\"n\">Days</th></tr></thead><tbody>",
    );
    for (i, d) in t.strategy.drawdowns.worst.iter().enumerate() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td class=\"n\">{}</td></tr>",
            i + 1,
            d.start,
            d.valley,
            d.recovery.as_deref().unwrap_or("not yet"),
            signed_cell(d.depth, pct(d.depth)),
            thousands(d.days as f64, 0)
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn heat(v: f64) -> String {
    // Green up, red down, saturating at ±10 % a month.
    let a = (v.abs() / 0.10).min(1.0) * 0.75;
    if v >= 0.0 {
        format!("background:rgba(26,127,55,{a:.3})")
    } else {
        format!("background:rgba(207,34,46,{a:.3})")
    }
}

fn monthly_table(t: &Tearsheet) -> String {
    let mut html = String::from("<table class=\"heat\" id=\"monthly\"><thead><tr><th>Year</th>");
    for m in [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ] {
        let _ = write!(html, "<th class=\"n\">{m}</th>");
    }
    html.push_str("<th class=\"n\">Year</th><th class=\"n\">Benchmark</th></tr></thead><tbody>");
    for (row, (_, _, bench)) in t.monthly.iter().zip(&t.yearly) {
        let _ = write!(html, "<tr><th>{}</th>", row.year);
        for m in row.months {
            match m {
                Some(v) => {
                    let _ = write!(
                        html,
                        "<td class=\"n\" style=\"{}\">{}</td>",
                        heat(v),
                        thousands(v * 100.0, 1)
                    );
                }
                None => html.push_str("<td></td>"),
            }
        }
        let _ = write!(
            html,
            "<td class=\"n\" style=\"{}\"><b>{}</b></td><td class=\"n\">{}</td></tr>",
            heat(row.year_return / 4.0),
            thousands(row.year_return * 100.0, 1),
            thousands(bench * 100.0, 1)
        );
    }
    html.push_str("</tbody></table><p class=\"muted\">Compounded monthly returns in percent.</p>");
    html
}

fn tickers_table(t: &Tearsheet) -> String {
    let mut html = String::from(
        "<table class=\"sortable\" id=\"per-ticker\"><thead><tr><th>Ticker</th><th class=\"n\">Closed trades</th><th class=\"n\">Win rate</th><th class=\"n\">Realized P&amp;L</th><th class=\"n\">Open P&amp;L</th><th class=\"n\">Total</th></tr></thead><tbody>",
    );
    for p in &t.tickers {
        let total = p.realized + p.open;
        let win = if p.trades == 0 {
            f64::NAN
        } else {
            p.wins as f64 / p.trades as f64
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>{}{}{}</tr>",
            esc(&p.ticker),
            p.trades,
            p.trades,
            if win.is_finite() { win } else { -1.0 },
            pct(win),
            signed_cell(p.realized, thousands(p.realized, 2)),
            signed_cell(p.open, thousands(p.open, 2)),
            signed_cell(total, thousands(total, 2)),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn trades_table(t: &Tearsheet) -> String {
    let mut html = String::from(
        "<table class=\"sortable\" id=\"trades\"><thead><tr><th>Ticker</th><th>Side</th><th class=\"n\">Size</th><th>Entry</th><th class=\"n\">Entry price</th><th>Exit</th><th class=\"n\">Exit price</th><th class=\"n\">Days</th><th class=\"n\">P&amp;L</th><th class=\"n\">Return</th></tr></thead><tbody>",
    );
    for tr in &t.trades {
        let _ = write!(
            html,
            "<tr{}><td>{}</td><td>{}</td><td class=\"n\" data-v=\"{}\">{}</td><td>{}</td><td class=\"n\" data-v=\"{}\">{}</td><td>{}{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>{}{}</tr>",
            if tr.open { " class=\"open\"" } else { "" },
            esc(&tr.ticker),
            tr.side,
            tr.size,
            thousands(tr.size, if tr.size.fract() == 0.0 { 0 } else { 4 }),
            tr.entry,
            tr.entry_price,
            price(tr.entry_price),
            tr.exit,
            if tr.open { " (open)" } else { "" },
            tr.exit_price,
            price(tr.exit_price),
            tr.days,
            tr.days,
            signed_cell(tr.pnl, thousands(tr.pnl, 2)),
            signed_cell(tr.return_pct, format!("{} %", thousands(tr.return_pct, 2))),
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// A price with as many decimals as its size needs (FX near 1.0 shows five).
fn price(p: f64) -> String {
    let decimals = if p.abs() >= 1000.0 {
        2
    } else if p.abs() >= 10.0 {
        3
    } else {
        5
    };
    thousands(p, decimals)
}

fn counts_table(id: &str, head: &[&str], rows: &[(String, String, usize)], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\" id=\"{id}\">{empty}</p>");
    }
    let mut html = format!("<table id=\"{id}\"><thead><tr>");
    for (i, h) in head.iter().enumerate() {
        let class = if i + 1 == head.len() {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(html, "<th{class}>{h}</th>");
    }
    html.push_str("</tr></thead><tbody>");
    for (a, b, n) in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(a),
            esc(b),
            thousands(*n as f64, 0)
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn ml_section(t: &Tearsheet) -> String {
    let Some(ml) = &t.ml else {
        return String::new();
    };
    let mut html = String::from(
        "<h2>Models</h2><div class=\"chart\" id=\"chart-auc\" data-title=\"Out-of-sample ROC AUC at each training (mean over tickers)\"></div>",
    );
    html.push_str("<div class=\"cols\"><div><h3>Feature importance (mean over trainings)</h3><table id=\"importance\"><tbody>");
    let top = ml.importance.first().map_or(1.0, |x| x.1.max(1e-12));
    for (f, v) in &ml.importance {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"bar\"><span style=\"width:{:.1}%\"></span></td></tr>",
            esc(f),
            thousands(*v, 4),
            v / top * 100.0
        );
    }
    html.push_str("</tbody></table></div><div><h3>Drift events</h3>");
    if ml.drifts.is_empty() {
        html.push_str("<p class=\"muted\">None.</p>");
    } else {
        html.push_str("<table id=\"drifts\"><thead><tr><th>Time</th><th>Ticker</th><th>Feature</th><th class=\"n\">KL divergence</th></tr></thead><tbody>");
        for (ts, ticker, feature, kl) in ml.drifts.iter().take(200) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                format_time(*ts),
                esc(ticker),
                esc(feature),
                thousands(*kl, 4)
            );
        }
        html.push_str("</tbody></table>");
        if ml.drifts.len() > 200 {
            let _ = write!(
                html,
                "<p class=\"muted\">The first 200 of {}; all are in <code>drift.parquet</code>.</p>",
                ml.drifts.len()
            );
        }
    }
    html.push_str("</div></div>");
    html
}

fn kpis(t: &Tearsheet, m: &Metrics) -> String {
    let s = &t.strategy;
    let refused = m.orders.get("refused").copied().unwrap_or(0);
    let rejected: usize = m.rejected.values().sum();
    let mut cards = vec![
        (
            "Return",
            pct(s.cumulative_return),
            format!("benchmark {}", pct(t.bench.cumulative_return)),
        ),
        (
            "CAGR",
            pct(s.cagr),
            format!("benchmark {}", pct(t.bench.cagr)),
        ),
        (
            "Sharpe",
            thousands(s.sharpe, 2),
            format!("benchmark {}", thousands(t.bench.sharpe, 2)),
        ),
        (
            "Max drawdown",
            pct(s.max_drawdown),
            format!("benchmark {}", pct(t.bench.max_drawdown)),
        ),
        (
            "Trades",
            thousands(m.trades as f64, 0),
            format!("win rate {}", pct(m.win_rate)),
        ),
        (
            "Final equity",
            thousands(m.final_equity, 2),
            format!("from {}", thousands(m.initial_equity, 2)),
        ),
    ];
    if refused > 0 || rejected > 0 {
        cards.push((
            "Refused / rejected",
            format!(
                "{} / {}",
                thousands(refused as f64, 0),
                thousands(rejected as f64, 0)
            ),
            "orders / data rows".into(),
        ));
    }
    let mut html = String::from("<div class=\"kpis\">");
    for (k, v, sub) in cards {
        let _ = write!(
            html,
            "<div class=\"kpi\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div><div class=\"s\">{}</div></div>",
            esc(&sub)
        );
    }
    html.push_str("</div>");
    html
}

/// Renders the report page of a run.
pub fn render(title: &str, t: &Tearsheet, m: &Metrics) -> String {
    // `</` cannot end the JSON's script element early: every `<` is escaped.
    let data = serde_json::to_string(t)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c");
    let charts = [
        (
            "chart-cumulative",
            "Cumulative return vs benchmark (ML runs: drift events dashed)",
        ),
        ("chart-log", "Growth of 1 (log scale)"),
        (
            "chart-drawdown",
            "Drawdown (underwater); the 5 worst shaded",
        ),
        ("chart-sharpe", "Rolling Sharpe ratio (6 and 12 months)"),
        (
            "chart-vol",
            "Rolling volatility, annualized (6 and 12 months)",
        ),
        ("chart-exposure", "Exposure: gross and net, share of equity"),
        ("chart-sectors", "Sector exposure (entry value)"),
        ("chart-yearly", "Yearly returns vs benchmark"),
        ("chart-hist", "Distribution of daily returns"),
    ];
    let mut chart_html = String::new();
    for (id, caption) in charts {
        let _ = write!(
            chart_html,
            "<div class=\"chart\" id=\"{id}\" data-title=\"{}\"></div>",
            esc(caption)
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>{UPLOT_CSS}</style>
<style>{REPORT_CSS}</style>
</head><body>
<header><h1>{title}</h1><p class="muted">{start} → {end} · {days} days · benchmark: {bench}</p></header>
{kpis}
<h2>Performance</h2>
{charts}
<h2>Worst drawdowns</h2>
{drawdowns}
<h2>Monthly returns</h2>
{monthly}
<h2>Metrics</h2>
{metrics}
<h2>Per ticker</h2>
{tickers}
<h2>Trades <span class="muted">({ntrades}; click a column to sort)</span></h2>
{trades}
<div class="cols"><div><h2>Orders not filled, by reason</h2>
{orders}</div><div><h2>Data quality</h2>
{quality}</div></div>
{ml}
<script id="tearsheet" type="application/json">{data}</script>
<script>{UPLOT_JS}</script>
<script>{REPORT_JS}</script>
<script>{SORTABLE_JS}</script>
</body></html>
"#,
        title = esc(title),
        start = esc(&m.start),
        end = esc(&m.end),
        days = thousands(t.daily.t.len() as f64, 0),
        bench = esc(&t.benchmark),
        kpis = kpis(t, m),
        charts = chart_html,
        drawdowns = drawdown_table(t),
        monthly = monthly_table(t),
        metrics = metrics_table(t),
        tickers = tickers_table(t),
        ntrades = thousands(t.trades.len() as f64, 0),
        trades = trades_table(t),
        orders = counts_table(
            "order-reasons",
            &["Status", "Reason", "Orders"],
            &t.order_reasons,
            "Every order filled."
        ),
        quality = counts_table(
            "quality",
            &["Reason", "Action", "Rows"],
            &t.quality,
            "No row rejected or flagged."
        ),
        ml = ml_section(t),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_and_signs_kept() {
        assert_eq!(thousands(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(thousands(-1234.5, 1), "−1,234.5");
        assert_eq!(thousands(999.0, 0), "999");
        assert_eq!(thousands(-0.001, 2), "0.00");
        assert_eq!(thousands(f64::NAN, 2), "—");
    }

    #[test]
    fn prices_keep_the_decimals_their_market_needs() {
        assert_eq!(price(1.08213), "1.08213");
        assert_eq!(price(27_345.5), "27,345.50");
    }
}
