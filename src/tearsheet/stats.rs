//! Return statistics with quantstats' definitions (0.0.86, the functions its full report calls, with
//! the report's arguments): every figure equals quantstats' on the same daily returns within 1e-9
//! (`tests/it/tearsheet.rs` on the GOOG reference run). Risk-free rate 0, 252 periods a year,
//! compounded. The definition of each is written beside its field.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::normal;

/// Periods per year.
const YEAR: f64 = 252.0;

/// The figures of one return series (the strategy's or the benchmark's). `r` is the daily simple
/// return series, `n` its length, `dd` the drawdown series `equity/cummax − 1` of the equity
/// `∏(1+r)` started from 1 (the start counts as a peak).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Share of days with a non-zero return, rounded **up** to the whole percent (quantstats'
    /// `exposure`).
    pub time_in_market: f64,
    /// `∏(1+r) − 1`.
    pub cumulative_return: f64,
    /// `(1 + cumulative)^(252/n) − 1` (years counted as n/252, not by the calendar).
    pub cagr: f64,
    /// `mean(r)/std(r)·√252`, std with ddof 1.
    pub sharpe: f64,
    /// Probabilistic Sharpe ratio: `Φ(SR/σ_SR)`, SR the per-day Sharpe, `σ_SR = √((1 − γ₃·SR +
    /// (γ₄−1)/4·SR²)/(n−1))` with γ₃ the skew and γ₄ the (non-excess) kurtosis below plus 3.
    pub prob_sharpe: f64,
    /// Sharpe with std multiplied by the autocorrelation penalty `√(1 + 2·Σ_{k=1}^{n−1} (n−k)/n·|ρ₁|^k)`,
    /// ρ₁ the lag-1 correlation.
    pub smart_sharpe: f64,
    /// `mean(r)/√(Σ_{r<0} r²/n)·√252` (every day in the denominator's count).
    pub sortino: f64,
    /// Sortino with the downside multiplied by the autocorrelation penalty.
    pub smart_sortino: f64,
    /// `Σ_{r>0} r / −Σ_{r<0} r` (threshold 0).
    pub omega: f64,
    /// `min(dd)`, a negative fraction.
    pub max_drawdown: f64,
    /// `std(r)·√252`.
    pub volatility: f64,
    /// `cagr/|max_drawdown|`.
    pub calmar: f64,
    /// Sample skewness, bias-adjusted (pandas' `skew`, G1).
    pub skew: f64,
    /// Sample excess kurtosis, bias-adjusted (pandas' `kurt`, G2).
    pub kurtosis: f64,
    /// `cumulative_return/ulcer_index`.
    pub ulcer_performance_index: f64,
    /// `cagr/time_in_market`.
    pub risk_adjusted_return: f64,
    /// `mean(r)/std(r)` (per day).
    pub risk_return_ratio: f64,
    /// Mean of the non-zero returns.
    pub avg_return: f64,
    /// Mean of the positive returns.
    pub avg_win: f64,
    /// Mean of the negative returns.
    pub avg_loss: f64,
    /// `avg_win/|avg_loss|`.
    pub win_loss_ratio: f64,
    /// `|mean(r≥0)/count(r≥0)| / |mean(r<0)/count(r<0)|` (zero days count as wins here).
    pub profit_ratio: f64,
    /// Geometric mean daily return `(∏(1+r))^(1/n) − 1`.
    pub expected_daily: f64,
    /// The same over calendar-month compounded returns.
    pub expected_monthly: f64,
    /// The same over calendar-year compounded returns.
    pub expected_yearly: f64,
    /// `(b·p − (1−p))/b`, p = `win_days`, b = `win_loss_ratio`.
    pub kelly_criterion: f64,
    /// `((1−p)/(1+p))^n`, p = `win_days`.
    pub risk_of_ruin: f64,
    /// Parametric 95 % daily VaR: `−|mean + std·Φ⁻¹(0.05)|`.
    pub daily_var: f64,
    /// Parametric 95 % expected shortfall: `−|mean − std·φ(Φ⁻¹(0.05))/0.05|`.
    pub cvar: f64,
    /// Longest run of positive days.
    pub max_consecutive_wins: f64,
    /// Longest run of negative days.
    pub max_consecutive_losses: f64,
    /// `Σr / |Σ_{r<0} r|`.
    pub gain_pain: f64,
    /// The same over calendar-month *sums* of returns.
    pub gain_pain_1m: f64,
    /// `avg_win/|avg_loss|` (quantstats reports it twice).
    pub payoff_ratio: f64,
    /// `Σ_{r≥0} r / |Σ_{r<0} r|`.
    pub profit_factor: f64,
    /// `profit_factor·tail_ratio`.
    pub common_sense_ratio: f64,
    /// `profit_factor·win_days·win_loss_ratio`.
    pub cpc_index: f64,
    /// `|q₀.₉₅(r)/q₀.₀₅(r)|`, quantiles linearly interpolated.
    pub tail_ratio: f64,
    /// `q₀.₉₉(r)/mean(r≥0)`.
    pub outlier_win_ratio: f64,
    /// `q₀.₀₁(r)/mean(r<0)`.
    pub outlier_loss_ratio: f64,
    /// Largest daily return.
    pub best_day: f64,
    /// Smallest daily return.
    pub worst_day: f64,
    /// Largest calendar-month compounded return.
    pub best_month: f64,
    /// Smallest calendar-month compounded return.
    pub worst_month: f64,
    /// Largest calendar-year compounded return.
    pub best_year: f64,
    /// Smallest calendar-year compounded return.
    pub worst_year: f64,
    /// `|Σr| / |max_drawdown|` (a sum of returns, not compounded).
    pub recovery_factor: f64,
    /// `√(Σ dd²/(n−1))`.
    pub ulcer_index: f64,
    /// `Σr / (ulcer_index · pitfall)`, pitfall = `−cvar(dd)/std(r)`, cvar(dd) the parametric
    /// expected shortfall of the drawdown series.
    pub serenity_index: f64,
    /// Mean of the positive calendar-month returns.
    pub avg_up_month: f64,
    /// Mean of the negative calendar-month returns.
    pub avg_down_month: f64,
    /// Positive days over non-zero days.
    pub win_days: f64,
    /// Positive months over non-zero months.
    pub win_month: f64,
    /// Positive quarters over non-zero quarters.
    pub win_quarter: f64,
    /// Positive years over non-zero years.
    pub win_year: f64,
    /// Trailing returns to the last day.
    pub periods: Trailing,
    /// The drawdown periods.
    pub drawdowns: Drawdowns,
}

/// Returns over trailing windows ending at the last day, as quantstats' report cuts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trailing {
    /// Compounded since the first day of the last day's month.
    pub mtd: f64,
    /// Compounded over the days on or after the last day minus 3 months.
    #[serde(rename = "3m")]
    pub m3: f64,
    /// … minus 6 months.
    #[serde(rename = "6m")]
    pub m6: f64,
    /// Compounded since 1 January of the last day's year.
    pub ytd: f64,
    /// … minus 1 year.
    #[serde(rename = "1y")]
    pub y1: f64,
    /// CAGR of the days on or after the last day minus 35 months.
    #[serde(rename = "3y_ann")]
    pub y3_ann: f64,
    /// … minus 59 months.
    #[serde(rename = "5y_ann")]
    pub y5_ann: f64,
    /// … minus 119 months.
    #[serde(rename = "10y_ann")]
    pub y10_ann: f64,
}

/// One drawdown period: from the first day under the peak to the last, as quantstats'
/// `drawdown_details` delimits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drawdown {
    /// First day under the previous peak.
    pub start: String,
    /// Day of the lowest point (the first, when several).
    pub valley: String,
    /// Last day under the peak (the series' last day when not recovered).
    pub end: String,
    /// `end − start` in calendar days, plus one.
    pub days: i64,
    /// Lowest `dd` of the period (negative).
    pub depth: f64,
    /// The day equity regained the peak (`None`: not by the end of the run).
    pub recovery: Option<String>,
}

/// The drawdown periods of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drawdowns {
    /// The five deepest, deepest first.
    pub worst: Vec<Drawdown>,
    /// How many periods.
    pub count: usize,
    /// Longest period in days.
    pub longest_days: i64,
    /// Mean depth of the periods.
    pub avg_depth: f64,
    /// Mean length of the periods in days.
    pub avg_days: f64,
}

/// The strategy against its benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relative {
    /// Squared Pearson correlation of strategy and benchmark returns.
    pub r_squared: f64,
    /// `mean(r−b)/std(r−b)` (per day, not annualized).
    pub information_ratio: f64,
    /// `cov(r,b)/var(b)`.
    pub beta: f64,
    /// `(mean(r) − beta·mean(b))·252`.
    pub alpha: f64,
    /// Pearson correlation of `r` and `b`.
    pub correlation: f64,
    /// `cumulative_return/beta`.
    pub treynor_ratio: f64,
}

pub(crate) fn sum(x: impl IntoIterator<Item = f64>) -> f64 {
    x.into_iter().sum()
}

pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        f64::NAN
    } else {
        sum(x.iter().copied()) / x.len() as f64
    }
}

/// Sample standard deviation (ddof 1), two-pass.
pub(crate) fn std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    (sum(x.iter().map(|v| (v - m) * (v - m))) / (x.len() - 1) as f64).sqrt()
}

fn filtered(x: &[f64], keep: impl Fn(f64) -> bool) -> Vec<f64> {
    x.iter().copied().filter(|&v| keep(v)).collect()
}

/// `a/b`, NaN when `b` is 0 (quantstats' guard on most ratios).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

/// `∏(1+r) − 1`.
pub(crate) fn comp(x: &[f64]) -> f64 {
    x.iter().fold(1.0, |acc, r| acc * (1.0 + r)) - 1.0
}

fn cagr(x: &[f64]) -> f64 {
    let wealth = 1.0 + comp(x);
    if wealth < 0.0 {
        return f64::NAN;
    }
    wealth.powf(1.0 / (x.len() as f64 / YEAR)) - 1.0
}

/// Linear-interpolated quantile (numpy's and pandas' default).
pub(crate) fn quantile(x: &[f64], q: f64) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    let t = h - lo as f64;
    // numpy's lerp, from the nearer end.
    if t >= 0.5 {
        s[hi] - (s[hi] - s[lo]) * (1.0 - t)
    } else {
        s[lo] + (s[hi] - s[lo]) * t
    }
}

fn skew(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = mean(x);
    let m2 = sum(x.iter().map(|v| (v - m).powi(2)));
    let m3 = sum(x.iter().map(|v| (v - m).powi(3)));
    (n * (n - 1.0).sqrt() / (n - 2.0)) * (m3 / m2.powf(1.5))
}

fn kurtosis(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = mean(x);
    let m2 = sum(x.iter().map(|v| (v - m).powi(2)));
    let m4 = sum(x.iter().map(|v| (v - m).powi(4)));
    let adj = 3.0 * (n - 1.0).powi(2) / ((n - 2.0) * (n - 3.0));
    n * (n + 1.0) * (n - 1.0) * m4 / ((n - 2.0) * (n - 3.0) * m2 * m2) - adj
}

/// Pearson correlation of two equally long series.
pub(crate) fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov = sum(a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)));
    let va = sum(a.iter().map(|x| (x - ma).powi(2)));
    let vb = sum(b.iter().map(|y| (y - mb).powi(2)));
    cov / (va * vb).sqrt()
}

fn autocorr_penalty(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return 1.0;
    }
    let coef = correlation(&x[..n - 1], &x[1..]).abs();
    if coef.is_nan() {
        return 1.0;
    }
    let nf = n as f64;
    let s = sum((1..n).map(|k| (nf - k as f64) / nf * coef.powi(k as i32)));
    (1.0 + 2.0 * s).sqrt()
}

fn win_rate(x: &[f64]) -> f64 {
    let nonzero = x.iter().filter(|&&v| v != 0.0).count();
    if nonzero == 0 {
        return 0.0;
    }
    x.iter().filter(|&&v| v > 0.0).count() as f64 / nonzero as f64
}

fn longest_run(x: &[f64], hit: impl Fn(f64) -> bool) -> f64 {
    let (mut best, mut run) = (0usize, 0usize);
    for &v in x {
        run = if hit(v) { run + 1 } else { 0 };
        best = best.max(run);
    }
    best as f64
}

/// Parametric expected shortfall at 95 %: `mean − std·φ(z)/0.05`, z = Φ⁻¹(0.05).
fn gaussian_es(x: &[f64]) -> f64 {
    let (mu, sd) = (mean(x), std(x));
    if sd == 0.0 || sd.is_nan() {
        return mu;
    }
    let z = normal::ppf(0.05);
    mu - sd * normal::pdf(z) / 0.05
}

/// Groups consecutive returns whose key is equal, compounding (`compound`) or summing each group.
fn grouped<K: PartialEq>(
    r: &[f64],
    dates: &[NaiveDate],
    key: impl Fn(&NaiveDate) -> K,
    compound: bool,
) -> Vec<f64> {
    let mut out = Vec::new();
    let mut current: Option<(K, Vec<f64>)> = None;
    for (v, d) in r.iter().zip(dates) {
        let k = key(d);
        match &mut current {
            Some((ck, group)) if *ck == k => group.push(*v),
            _ => {
                if let Some((_, g)) = current.take() {
                    out.push(if compound { comp(&g) } else { sum(g) });
                }
                current = Some((k, vec![*v]));
            }
        }
    }
    if let Some((_, g)) = current {
        out.push(if compound { comp(&g) } else { sum(g) });
    }
    out
}

/// Calendar-month compounded returns, in order.
pub fn monthly(r: &[f64], dates: &[NaiveDate]) -> Vec<f64> {
    grouped(r, dates, |d| (d.year(), d.month()), true)
}

/// Calendar-year compounded returns, in order.
pub fn yearly(r: &[f64], dates: &[NaiveDate]) -> Vec<f64> {
    grouped(r, dates, |d| d.year(), true)
}

/// The drawdown series `equity/cummax − 1` of `∏(1+r)` started from 1.
pub fn drawdown_series(r: &[f64]) -> Vec<f64> {
    let (mut eq, mut peak) = (1.0_f64, 1.0_f64);
    r.iter()
        .map(|v| {
            eq *= 1.0 + v;
            peak = peak.max(eq);
            let d = eq / peak - 1.0;
            if d == 0.0 { 0.0 } else { d }
        })
        .collect()
}

fn drawdowns(dd: &[f64], dates: &[NaiveDate]) -> Drawdowns {
    let mut periods = Vec::new();
    let mut i = 0;
    while i < dd.len() {
        if dd[i] >= 0.0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < dd.len() && dd[i] < 0.0 {
            i += 1;
        }
        let end = i - 1;
        let mut valley = start;
        for k in start..=end {
            if dd[k] < dd[valley] {
                valley = k;
            }
        }
        periods.push(Drawdown {
            start: dates[start].to_string(),
            valley: dates[valley].to_string(),
            end: dates[end].to_string(),
            days: (dates[end] - dates[start]).num_days() + 1,
            depth: dd[valley],
            recovery: dates.get(i).map(ToString::to_string),
        });
    }
    let count = periods.len();
    let longest_days = periods.iter().map(|p| p.days).max().unwrap_or(0);
    let avg_depth = mean(&periods.iter().map(|p| p.depth).collect::<Vec<_>>());
    let avg_days = mean(&periods.iter().map(|p| p.days as f64).collect::<Vec<_>>());
    let mut worst = periods;
    // Deepest first; ties keep time order (a stable sort).
    worst.sort_by(|a, b| a.depth.total_cmp(&b.depth));
    worst.truncate(5);
    Drawdowns {
        worst,
        count,
        longest_days,
        avg_depth,
        avg_days,
    }
}

fn trailing(r: &[f64], dates: &[NaiveDate]) -> Trailing {
    let Some(&last) = dates.last() else {
        return Trailing {
            mtd: f64::NAN,
            m3: f64::NAN,
            m6: f64::NAN,
            ytd: f64::NAN,
            y1: f64::NAN,
            y3_ann: f64::NAN,
            y5_ann: f64::NAN,
            y10_ann: f64::NAN,
        };
    };
    let since = |from: Option<NaiveDate>| -> Vec<f64> {
        let from = from.unwrap_or(NaiveDate::MIN);
        r.iter()
            .zip(dates)
            .filter(|(_, d)| **d >= from)
            .map(|(v, _)| *v)
            .collect()
    };
    let back = |months: u32| last.checked_sub_months(Months::new(months));
    Trailing {
        mtd: comp(&since(last.with_day(1))),
        m3: comp(&since(back(3))),
        m6: comp(&since(back(6))),
        ytd: comp(&since(NaiveDate::from_ymd_opt(last.year(), 1, 1))),
        y1: comp(&since(back(12))),
        y3_ann: cagr(&since(back(35))),
        y5_ann: cagr(&since(back(59))),
        y10_ann: cagr(&since(back(119))),
    }
}

/// The figures of daily returns `r` dated `dates` (the day each return ends on).
pub fn compute(r: &[f64], dates: &[NaiveDate]) -> Stats {
    let n = r.len() as f64;
    let (m, sd) = (mean(r), std(r));
    let wins = filtered(r, |v| v > 0.0);
    let losses = filtered(r, |v| v < 0.0);
    let non_negative = filtered(r, |v| v >= 0.0);
    let (avg_win, avg_loss) = (mean(&wins), mean(&losses));
    let loss_sum = sum(losses.iter().copied()).abs();
    let downside = (sum(losses.iter().map(|v| v * v)) / n).sqrt();
    let penalty = autocorr_penalty(r);
    let cumulative = comp(r);
    let growth = cagr(r);
    let dd = drawdown_series(r);
    let max_dd = dd.iter().copied().fold(0.0, f64::min);
    let ulcer = (sum(dd.iter().map(|d| d * d)) / (n - 1.0)).sqrt();
    let nonzero = r.iter().filter(|&&v| v != 0.0).count() as f64;
    let time_in_market = if r.is_empty() {
        0.0
    } else {
        (nonzero / n * 100.0).ceil() / 100.0
    };
    let payoff = ratio(avg_win, avg_loss.abs());
    let p = win_rate(r);
    let profit_factor = if loss_sum == 0.0 {
        f64::NAN
    } else {
        sum(non_negative.iter().copied()) / loss_sum
    };
    let tail = {
        let (up, down) = (quantile(r, 0.95), quantile(r, 0.05));
        if down == 0.0 {
            f64::NAN
        } else {
            (up / down).abs()
        }
    };
    let (g3, g4) = (skew(r), kurtosis(r));
    let sr = m / sd;
    let sigma_sr = ((1.0 - g3 * sr + (g4 + 3.0 - 1.0) / 4.0 * sr * sr) / (n - 1.0)).sqrt();
    let z = normal::ppf(0.05);
    let months = monthly(r, dates);
    let month_sums = grouped(r, dates, |d| (d.year(), d.month()), false);
    let quarters = grouped(r, dates, |d| (d.year(), d.month0() / 3), true);
    let years = yearly(r, dates);
    let geometric = |x: &[f64]| (1.0 + comp(x)).powf(1.0 / x.len() as f64) - 1.0;
    let extreme = |x: &[f64], max: bool| {
        x.iter().copied().fold(f64::NAN, |a, b| {
            if a.is_nan() || (max && b > a) || (!max && b < a) {
                b
            } else {
                a
            }
        })
    };
    let up_months = filtered(&months, |v| v > 0.0);
    let down_months = filtered(&months, |v| v < 0.0);
    let neg_month_sums = sum(month_sums.iter().copied().filter(|v| *v < 0.0)).abs();
    Stats {
        time_in_market,
        cumulative_return: cumulative,
        cagr: growth,
        sharpe: sr * YEAR.sqrt(),
        prob_sharpe: normal::cdf(sr / sigma_sr),
        smart_sharpe: m / (sd * penalty) * YEAR.sqrt(),
        sortino: ratio(m, downside) * YEAR.sqrt(),
        smart_sortino: ratio(m, downside * penalty) * YEAR.sqrt(),
        omega: ratio(sum(wins.iter().copied()), loss_sum),
        max_drawdown: max_dd,
        volatility: sd * YEAR.sqrt(),
        calmar: growth / max_dd.abs(),
        skew: g3,
        kurtosis: g4,
        ulcer_performance_index: ratio(cumulative, ulcer),
        risk_adjusted_return: growth / time_in_market,
        risk_return_ratio: ratio(m, sd),
        avg_return: mean(&filtered(r, |v| v != 0.0)),
        avg_win,
        avg_loss,
        win_loss_ratio: payoff,
        profit_ratio: {
            let w = (mean(&non_negative) / non_negative.len() as f64).abs();
            let l = (avg_loss / losses.len() as f64).abs();
            if non_negative.is_empty() {
                0.0
            } else {
                ratio(w, l)
            }
        },
        expected_daily: geometric(r),
        expected_monthly: geometric(&months),
        expected_yearly: geometric(&years),
        kelly_criterion: if payoff == 0.0 || payoff.is_nan() {
            f64::NAN
        } else {
            (payoff * p - (1.0 - p)) / payoff
        },
        risk_of_ruin: ((1.0 - p) / (1.0 + p)).powf(n),
        daily_var: -(m + sd * z).abs(),
        cvar: -gaussian_es(r).abs(),
        max_consecutive_wins: longest_run(r, |v| v > 0.0),
        max_consecutive_losses: longest_run(r, |v| v < 0.0),
        gain_pain: ratio(sum(r.iter().copied()), loss_sum),
        gain_pain_1m: ratio(sum(month_sums.iter().copied()), neg_month_sums),
        payoff_ratio: payoff,
        profit_factor,
        common_sense_ratio: profit_factor * tail,
        cpc_index: profit_factor * p * payoff,
        tail_ratio: tail,
        outlier_win_ratio: ratio(quantile(r, 0.99), mean(&non_negative)),
        outlier_loss_ratio: ratio(quantile(r, 0.01), avg_loss),
        best_day: extreme(r, true),
        worst_day: extreme(r, false),
        best_month: extreme(&months, true),
        worst_month: extreme(&months, false),
        best_year: extreme(&years, true),
        worst_year: extreme(&years, false),
        recovery_factor: ratio(sum(r.iter().copied()).abs(), max_dd.abs()),
        ulcer_index: ulcer,
        serenity_index: {
            let pitfall = -gaussian_es(&dd) / sd;
            ratio(sum(r.iter().copied()), ulcer * pitfall)
        },
        avg_up_month: mean(&up_months),
        avg_down_month: mean(&down_months),
        win_days: p,
        win_month: win_rate(&months),
        win_quarter: win_rate(&quarters),
        win_year: win_rate(&years),
        periods: trailing(r, dates),
        drawdowns: drawdowns(&dd, dates),
    }
}

/// The strategy's returns `r` against the benchmark's `b` (same days).
pub fn relative(r: &[f64], b: &[f64]) -> Relative {
    let (mr, mb) = (mean(r), mean(b));
    let n1 = r.len() as f64 - 1.0;
    let cov = sum(r.iter().zip(b).map(|(x, y)| (x - mr) * (y - mb))) / n1;
    let var_b = sum(b.iter().map(|y| (y - mb).powi(2))) / n1;
    let beta = ratio(cov, var_b);
    let corr = correlation(r, b);
    let diff: Vec<f64> = r.iter().zip(b).map(|(x, y)| x - y).collect();
    Relative {
        r_squared: corr * corr,
        information_ratio: {
            let s = std(&diff);
            if s == 0.0 { 0.0 } else { mean(&diff) / s }
        },
        beta,
        alpha: (mr - beta * mb) * YEAR,
        correlation: corr,
        treynor_ratio: ratio(comp(r), beta),
    }
}

/// Rolling `mean/std·√252` over `window` days (NaN before the window fills).
pub fn rolling_sharpe(r: &[f64], window: usize) -> Vec<f64> {
    rolling(r, window, |w| mean(w) / std(w) * YEAR.sqrt())
}

/// Rolling `std·√252` over `window` days.
pub fn rolling_volatility(r: &[f64], window: usize) -> Vec<f64> {
    rolling(r, window, |w| std(w) * YEAR.sqrt())
}

fn rolling(r: &[f64], window: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..r.len())
        .map(|i| {
            if window == 0 || i + 1 < window {
                f64::NAN
            } else {
                f(&r[i + 1 - window..=i])
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize) -> Vec<NaiveDate> {
        let d0 = NaiveDate::from_ymd_opt(2020, 1, 1).expect("date");
        (0..n).map(|i| d0 + chrono::Days::new(i as u64)).collect()
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.95) = 3.85
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.95) - 3.85).abs() < 1e-15);
    }

    #[test]
    fn drawdown_periods_run_from_first_to_last_day_under_the_peak() {
        let r = [0.1, -0.1, 0.05, 0.1, -0.2];
        let d = drawdowns(&drawdown_series(&r), &days(5));
        assert_eq!(d.count, 2);
        assert_eq!(
            (d.worst[0].start.as_str(), d.worst[0].recovery.as_deref()),
            ("2020-01-05", None)
        );
        assert_eq!(
            (d.worst[1].start.as_str(), d.worst[1].end.as_str()),
            ("2020-01-02", "2020-01-03")
        );
        assert_eq!(d.worst[1].days, 2);
        assert_eq!(d.worst[1].recovery.as_deref(), Some("2020-01-04"));
    }

    #[test]
    fn a_flat_series_has_no_ratios_but_no_panic() {
        let s = compute(&[0.0; 10], &days(10));
        assert_eq!(s.cumulative_return, 0.0);
        assert!(s.sortino.is_nan() && s.omega.is_nan());
        assert_eq!(s.drawdowns.count, 0);
    }
}
