//! Portfolio metrics of a run, with the conventions of `tests/fixtures/golden/README.md`:
//! simple returns of the equity marked at each close (flat periods count as zero returns),
//! risk-free 0, 252 periods a year.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::operators::portfolio::Ledger;
use crate::operators::quality::{Action, Reject};
use crate::tearsheet::stats::{mean, std};
use crate::time::{DAY, format_time};

/// The numbers of `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// First bar time (`YYYY-MM-DD`).
    pub start: String,
    /// Last bar time.
    pub end: String,
    /// Equity points (timestamps).
    pub periods: usize,
    /// Bars that passed the quality gate.
    pub bars: u64,
    /// Starting capital.
    pub initial_equity: f64,
    /// Equity at the last close.
    pub final_equity: f64,
    /// `final/initial − 1`.
    pub total_return: f64,
    /// `(final/initial)^(252/N) − 1`, N = number of returns (empyrical's annual return).
    pub cagr: f64,
    /// `(final/initial)^(365/days) − 1` over calendar days.
    pub cagr_calendar: f64,
    /// `mean(r)/std(r, ddof 1)·√252`.
    pub sharpe: f64,
    /// `mean(r)·252 / (sqrt(mean(min(r,0)²))·√252)`.
    pub sortino: f64,
    /// `min(equity/cummax − 1)`, a negative fraction.
    pub max_drawdown: f64,
    /// `cagr / |max_drawdown|`.
    pub calmar: f64,
    /// `std(r, ddof 1)·√252`.
    pub volatility: f64,
    /// Closed round trips.
    pub trades: usize,
    /// Positions still open at the end.
    pub open_trades: usize,
    /// Share of closed trades with positive pnl.
    pub win_rate: f64,
    /// Share of periods ending with a position open.
    pub exposure: f64,
    /// Traded value over the run divided by the average equity.
    pub turnover: f64,
    /// Commissions paid.
    pub commissions: f64,
    /// Orders by final status.
    pub orders: BTreeMap<String, usize>,
    /// Quarantined bars and rows by reason.
    pub rejected: BTreeMap<String, usize>,
    /// Flagged bars (kept) by reason.
    pub flagged: BTreeMap<String, usize>,
    /// ML trainings (0 for rule models).
    pub ml_trainings: usize,
    /// ML drift events.
    pub drift_events: usize,
    /// Mean out-of-sample ROC AUC over the trainings, per model (base models, `ensemble`,
    /// `baseline`).
    pub ml_mean_auc: BTreeMap<String, f64>,
    /// quantstats' full set of figures for the strategy and its benchmark over the run's days
    /// ([`crate::tearsheet`]); filled where the run's output is written.
    #[serde(default)]
    pub vs_benchmark: Option<Figures>,
}

/// The tearsheet's figures kept in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// What the strategy is measured against (`[outputs] benchmark`).
    pub benchmark: String,
    /// The strategy's daily-return figures.
    pub strategy: crate::tearsheet::Stats,
    /// The benchmark's.
    pub bench: crate::tearsheet::Stats,
    /// The strategy against the benchmark.
    pub relative: crate::tearsheet::Relative,
}

/// Drawdown at each point: `equity/cummax − 1` (zero or negative).
pub fn drawdowns(equity: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    equity
        .iter()
        .map(|&e| {
            peak = peak.max(e);
            e / peak - 1.0
        })
        .collect()
}

/// Computes the metrics of a ledger and its quarantine.
pub fn compute(ledger: &Ledger, quarantine: &[Reject]) -> Metrics {
    let eq: Vec<f64> = ledger.equity.iter().map(|p| p.equity).collect();
    let r: Vec<f64> = eq.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let n = r.len() as f64;
    let first = eq.first().copied().unwrap_or(ledger.capital);
    let last = eq.last().copied().unwrap_or(ledger.capital);
    let sd = std(&r);
    let m = mean(&r);
    let downside = (r.iter().map(|v| v.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let max_dd = drawdowns(&eq).into_iter().fold(0.0, f64::min);
    let cagr = (last / first).powf(252.0 / n) - 1.0;
    let (t0, t1) = (
        ledger.equity.first().map_or(0, |p| p.ts),
        ledger.equity.last().map_or(0, |p| p.ts),
    );
    let years = (t1 - t0) as f64 / DAY as f64 / 365.0;
    let closed: Vec<_> = ledger.trades.iter().filter(|t| !t.open).collect();
    let winners = closed.iter().filter(|t| t.pnl > 0.0).count();
    let traded: f64 = ledger.fills.iter().map(|f| f.quantity * f.price).sum();
    let mut orders = BTreeMap::new();
    for o in &ledger.orders {
        *orders.entry(o.status.as_str().to_string()).or_insert(0) += 1;
    }
    let (mut rejected, mut flagged) = (BTreeMap::new(), BTreeMap::new());
    for q in quarantine {
        let map = if q.action == Action::Rejected {
            &mut rejected
        } else {
            &mut flagged
        };
        *map.entry(q.reason.as_str().to_string()).or_insert(0) += 1;
    }
    Metrics {
        start: format_time(t0),
        end: format_time(t1),
        periods: eq.len(),
        bars: ledger.bars,
        initial_equity: ledger.capital,
        final_equity: last,
        total_return: last / ledger.capital - 1.0,
        cagr,
        cagr_calendar: (last / first).powf(1.0 / years) - 1.0,
        sharpe: m / sd * 252f64.sqrt(),
        sortino: m * 252.0 / (downside * 252f64.sqrt()),
        max_drawdown: max_dd,
        calmar: cagr / max_dd.abs(),
        volatility: sd * 252f64.sqrt(),
        trades: closed.len(),
        open_trades: ledger.trades.len() - closed.len(),
        win_rate: if closed.is_empty() {
            0.0
        } else {
            winners as f64 / closed.len() as f64
        },
        exposure: ledger
            .equity
            .iter()
            .filter(|p| p.open_positions > 0)
            .count() as f64
            / eq.len().max(1) as f64,
        turnover: traded / mean(&eq),
        commissions: ledger.fills.iter().map(|f| f.commission).sum(),
        orders,
        rejected,
        flagged,
        ml_trainings: ledger.ml_metrics.len(),
        drift_events: ledger.drifts.len(),
        ml_mean_auc: {
            let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (_, r) in &ledger.ml_metrics {
                for (m, s) in &r.scores {
                    if s.roc_auc.is_finite() {
                        by.entry(m.clone()).or_default().push(s.roc_auc);
                    }
                }
            }
            by.into_iter().map(|(m, v)| (m, mean(&v))).collect()
        },
        vs_benchmark: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_is_from_the_running_peak() {
        assert_eq!(drawdowns(&[1.0, 2.0, 1.0, 3.0]), vec![0.0, 0.0, -0.5, 0.0]);
    }
}
