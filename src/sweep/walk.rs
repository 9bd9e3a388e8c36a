//! Walk-forward optimisation over a sweep's combinations: on each window the combination with the
//! best in-sample score is chosen, and its returns over the next window — which the choice never
//! saw — are the out-of-sample record; the windows roll (a fixed-length training window) or grow
//! (anchored at the start). The stitched out-of-sample returns are the honest number.
//!
//! Every combination's portfolio runs over the whole history, so a switch takes over the chosen
//! combination's book as it stands (its open positions included), as a live switch between
//! strategies running side by side would.

use chrono::NaiveDate;
use serde::Serialize;

use crate::tearsheet::stats::{self, comp, mean, std};

/// What a window's choice maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// `mean/std·√252`.
    Sharpe,
    /// `mean/√(Σ_{r<0} r²/n)·√252`.
    Sortino,
    /// `∏(1+r) − 1`.
    TotalReturn,
    /// `(1+total)^(252/n) − 1`.
    Cagr,
    /// `cagr/|max drawdown|`.
    Calmar,
    /// The maximum drawdown (negative: the shallowest wins).
    MaxDrawdown,
}

impl Score {
    /// Reads a name (`sharpe`, `sortino`, `total_return`, `cagr`, `calmar`, `max_drawdown`).
    pub fn parse(name: &str) -> Option<Score> {
        Some(match name {
            "sharpe" => Score::Sharpe,
            "sortino" => Score::Sortino,
            "total_return" => Score::TotalReturn,
            "cagr" => Score::Cagr,
            "calmar" => Score::Calmar,
            "max_drawdown" => Score::MaxDrawdown,
            _ => return None,
        })
    }

    /// The name [`Score::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Score::Sharpe => "sharpe",
            Score::Sortino => "sortino",
            Score::TotalReturn => "total_return",
            Score::Cagr => "cagr",
            Score::Calmar => "calmar",
            Score::MaxDrawdown => "max_drawdown",
        }
    }

    /// The score of daily returns `r` (NaN when undefined, e.g. no variation).
    pub fn of(self, r: &[f64]) -> f64 {
        let year = 252f64;
        let cagr = || (1.0 + comp(r)).powf(year / r.len() as f64) - 1.0;
        let max_dd = || {
            stats::drawdown_series(r)
                .into_iter()
                .fold(0.0_f64, f64::min)
        };
        match self {
            Score::Sharpe => mean(r) / std(r) * year.sqrt(),
            Score::Sortino => {
                let down =
                    (r.iter().map(|v| v.min(0.0).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
                mean(r) / down * year.sqrt()
            }
            Score::TotalReturn => comp(r),
            Score::Cagr => cagr(),
            Score::Calmar => cagr() / max_dd().abs(),
            Score::MaxDrawdown => max_dd(),
        }
    }
}

/// How the windows are laid out, in days with a return.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WalkSpec {
    /// Training days (the first window's, when anchored).
    pub train: usize,
    /// Trading days after each training window.
    pub test: usize,
    /// Training starts at the first day every time (else it rolls, `train` days long).
    pub anchored: bool,
    /// What the choice maximises.
    pub score: Score,
}

/// One window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// First training day.
    pub train_from: String,
    /// Last training day.
    pub train_to: String,
    /// First out-of-sample day.
    pub test_from: String,
    /// Last out-of-sample day.
    pub test_to: String,
    /// The chosen combination.
    pub chosen: usize,
    /// Its in-sample score.
    pub in_sample: f64,
    /// Its compounded return over the out-of-sample days.
    pub out_of_sample: f64,
}

/// The walk's result.
#[derive(Debug, Clone, Serialize)]
pub struct Walk {
    /// The layout.
    pub spec: WalkSpec,
    /// Every window, in time order.
    pub windows: Vec<Window>,
    /// The stitched out-of-sample daily returns.
    pub returns: Vec<f64>,
    /// Their days.
    pub dates: Vec<String>,
    /// Windows whose choice differs from the previous window's.
    pub changes: usize,
    /// Out-of-sample figures: total return, CAGR, Sharpe, max drawdown.
    pub total_return: f64,
    /// `(1+total)^(252/n) − 1` over the out-of-sample days.
    pub cagr: f64,
    /// Sharpe of the out-of-sample days.
    pub sharpe: f64,
    /// Maximum drawdown of the stitched equity.
    pub max_drawdown: f64,
    /// The best single combination's total return over the same days, with hindsight (what
    /// the in-sample optimum promises; the gap to `total_return` is the overfitting).
    pub hindsight_best: f64,
}

/// Walks `returns` (per combination, the same `dates`).
///
/// # Errors
/// A window shorter than two days, or a history too short for one training window and one day
/// after it.
pub fn walk(returns: &[Vec<f64>], dates: &[NaiveDate], spec: WalkSpec) -> Result<Walk, String> {
    let n = dates.len();
    if spec.train < 2 || spec.test < 1 {
        return Err(format!(
            "--walk-forward {}:{}: the training window needs two days or more, the test window one or more",
            spec.train, spec.test
        ));
    }
    if n <= spec.train {
        return Err(format!(
            "--walk-forward {}:{}: the run has {n} days of returns, not enough to train {} and trade after",
            spec.train, spec.test, spec.train
        ));
    }
    let mut windows = Vec::new();
    let (mut oos, mut oos_dates) = (Vec::new(), Vec::new());
    let mut start = spec.train;
    while start < n {
        let from = if spec.anchored { 0 } else { start - spec.train };
        let end = (start + spec.test).min(n);
        let (mut chosen, mut best) = (0usize, f64::NEG_INFINITY);
        for (c, r) in returns.iter().enumerate() {
            let s = spec.score.of(&r[from..start]);
            if s.is_finite() && s > best {
                (chosen, best) = (c, s);
            }
        }
        let test = &returns[chosen][start..end];
        oos.extend_from_slice(test);
        oos_dates.extend(dates[start..end].iter().map(ToString::to_string));
        windows.push(Window {
            train_from: dates[from].to_string(),
            train_to: dates[start - 1].to_string(),
            test_from: dates[start].to_string(),
            test_to: dates[end - 1].to_string(),
            chosen,
            in_sample: best,
            out_of_sample: comp(test),
        });
        start = end;
    }
    let changes = windows
        .windows(2)
        .filter(|w| w[0].chosen != w[1].chosen)
        .count();
    let first = spec.train;
    let hindsight_best = returns
        .iter()
        .map(|r| comp(&r[first..]))
        .fold(f64::NEG_INFINITY, f64::max);
    Ok(Walk {
        spec,
        total_return: Score::TotalReturn.of(&oos),
        cagr: Score::Cagr.of(&oos),
        sharpe: Score::Sharpe.of(&oos),
        max_drawdown: Score::MaxDrawdown.of(&oos),
        hindsight_best,
        windows,
        returns: oos,
        dates: oos_dates,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize) -> Vec<NaiveDate> {
        let d0 = NaiveDate::from_ymd_opt(2021, 1, 1).expect("date");
        (0..n).map(|i| d0 + chrono::Days::new(i as u64)).collect()
    }

    #[test]
    fn each_window_trades_the_previous_windows_winner() {
        // Combination 0 wins the first half, 1 the second.
        let a: Vec<f64> = (0..8).map(|i| if i < 4 { 0.01 } else { -0.01 }).collect();
        let b: Vec<f64> = (0..8).map(|i| if i < 4 { -0.01 } else { 0.02 }).collect();
        let spec = WalkSpec {
            train: 2,
            test: 2,
            anchored: false,
            score: Score::TotalReturn,
        };
        let w = walk(&[a.clone(), b.clone()], &days(8), spec).expect("walk");
        let chosen: Vec<usize> = w.windows.iter().map(|x| x.chosen).collect();
        // Windows test days 2-3 (trained on 0-1: a), 4-5 (on 2-3: a), 6-7 (on 4-5: b).
        assert_eq!(chosen, vec![0, 0, 1]);
        assert_eq!(w.changes, 1);
        assert_eq!(w.returns, [&a[2..6], &b[6..8]].concat());
        assert_eq!(w.dates.first().map(String::as_str), Some("2021-01-03"));
    }

    #[test]
    fn anchored_training_grows_from_the_first_day() {
        let r = vec![vec![0.01; 10]];
        let spec = WalkSpec {
            train: 3,
            test: 3,
            anchored: true,
            score: Score::Sharpe,
        };
        let w = walk(&r, &days(10), spec).expect("walk");
        assert!(w.windows.iter().all(|x| x.train_from == "2021-01-01"));
        assert_eq!(w.windows.len(), 3);
        assert!(walk(&r, &days(3), spec).is_err());
    }
}
