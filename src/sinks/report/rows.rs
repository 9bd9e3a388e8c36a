//! The metrics table of the report: each row's label, where its value sits in
//! [`crate::tearsheet::Stats`] (serialized), how it is shown, and its definition (quantstats').

/// How a value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A fraction shown in percent, two decimals.
    Pct,
    /// A ratio, two decimals.
    Ratio,
    /// A count.
    Int,
}

/// One row: label, key (dotted for nested), kind, definition.
pub type Row = (&'static str, &'static str, Kind, &'static str);

/// The rows, in quantstats' full report order; `None` marks a section break.
#[rustfmt::skip]
pub const ROWS: &[Option<Row>] = &[
    Some(("Time in market", "time_in_market", Kind::Pct, "days with a non-zero return / days, rounded up to the percent")),
    Some(("Cumulative return", "cumulative_return", Kind::Pct, "∏(1+r) − 1")),
    Some(("CAGR", "cagr", Kind::Pct, "(1 + cumulative)^(252/n) − 1")),
    None,
    Some(("Sharpe", "sharpe", Kind::Ratio, "mean(r) / std(r) · √252 (risk-free 0, std ddof 1)")),
    Some(("Prob. Sharpe ratio", "prob_sharpe", Kind::Pct, "Φ(SR / √((1 − skew·SR + (kurt+2)/4·SR²)/(n−1))), SR daily")),
    Some(("Smart Sharpe", "smart_sharpe", Kind::Ratio, "Sharpe with std × the lag-1 autocorrelation penalty")),
    Some(("Sortino", "sortino", Kind::Ratio, "mean(r) / √(Σ_{r<0} r² / n) · √252")),
    Some(("Smart Sortino", "smart_sortino", Kind::Ratio, "Sortino with the downside × the autocorrelation penalty")),
    Some(("Omega", "omega", Kind::Ratio, "Σ_{r>0} r / −Σ_{r<0} r")),
    None,
    Some(("Max drawdown", "max_drawdown", Kind::Pct, "min(equity / running peak − 1)")),
    Some(("Longest drawdown (days)", "drawdowns.longest_days", Kind::Int, "calendar days from the first to the last day under a peak, + 1")),
    Some(("Volatility (ann.)", "volatility", Kind::Pct, "std(r) · √252")),
    Some(("Calmar", "calmar", Kind::Ratio, "CAGR / |max drawdown|")),
    Some(("Skew", "skew", Kind::Ratio, "sample skewness, bias-adjusted (G1)")),
    Some(("Kurtosis", "kurtosis", Kind::Ratio, "sample excess kurtosis, bias-adjusted (G2)")),
    Some(("Ulcer performance index", "ulcer_performance_index", Kind::Ratio, "cumulative return / ulcer index")),
    Some(("Risk-adjusted return", "risk_adjusted_return", Kind::Pct, "CAGR / time in market")),
    Some(("Risk-return ratio", "risk_return_ratio", Kind::Ratio, "mean(r) / std(r), daily")),
    None,
    Some(("Avg. return", "avg_return", Kind::Pct, "mean of the non-zero daily returns")),
    Some(("Avg. win", "avg_win", Kind::Pct, "mean of the positive daily returns")),
    Some(("Avg. loss", "avg_loss", Kind::Pct, "mean of the negative daily returns")),
    Some(("Win/loss ratio", "win_loss_ratio", Kind::Ratio, "avg. win / |avg. loss|")),
    Some(("Profit ratio", "profit_ratio", Kind::Ratio, "|mean(r≥0)/count(r≥0)| / |mean(r<0)/count(r<0)|")),
    None,
    Some(("Expected daily", "expected_daily", Kind::Pct, "(∏(1+r))^(1/n) − 1")),
    Some(("Expected monthly", "expected_monthly", Kind::Pct, "the same over calendar months")),
    Some(("Expected yearly", "expected_yearly", Kind::Pct, "the same over calendar years")),
    Some(("Kelly criterion", "kelly_criterion", Kind::Pct, "(payoff · p − (1 − p)) / payoff, p = win days")),
    Some(("Risk of ruin", "risk_of_ruin", Kind::Pct, "((1 − p)/(1 + p))^n")),
    Some(("Daily value-at-risk", "daily_var", Kind::Pct, "−|mean + std · Φ⁻¹(0.05)| (parametric, 95 %)")),
    Some(("Expected shortfall (cVaR)", "cvar", Kind::Pct, "−|mean − std · φ(Φ⁻¹(0.05)) / 0.05| (parametric, 95 %)")),
    None,
    Some(("Max consecutive wins", "max_consecutive_wins", Kind::Int, "longest run of positive days")),
    Some(("Max consecutive losses", "max_consecutive_losses", Kind::Int, "longest run of negative days")),
    Some(("Gain/pain ratio", "gain_pain", Kind::Ratio, "Σr / |Σ_{r<0} r|")),
    Some(("Gain/pain (1M)", "gain_pain_1m", Kind::Ratio, "the same over monthly sums of r")),
    None,
    Some(("Payoff ratio", "payoff_ratio", Kind::Ratio, "avg. win / |avg. loss|")),
    Some(("Profit factor", "profit_factor", Kind::Ratio, "Σ_{r≥0} r / |Σ_{r<0} r|")),
    Some(("Common sense ratio", "common_sense_ratio", Kind::Ratio, "profit factor · tail ratio")),
    Some(("CPC index", "cpc_index", Kind::Ratio, "profit factor · win days · win/loss ratio")),
    Some(("Tail ratio", "tail_ratio", Kind::Ratio, "|q95(r) / q5(r)|, quantiles interpolated")),
    Some(("Outlier win ratio", "outlier_win_ratio", Kind::Ratio, "q99(r) / mean(r≥0)")),
    Some(("Outlier loss ratio", "outlier_loss_ratio", Kind::Ratio, "q1(r) / mean(r<0)")),
    None,
    Some(("MTD", "periods.mtd", Kind::Pct, "compounded since the 1st of the last month")),
    Some(("3M", "periods.3m", Kind::Pct, "compounded over the last 3 months")),
    Some(("6M", "periods.6m", Kind::Pct, "compounded over the last 6 months")),
    Some(("YTD", "periods.ytd", Kind::Pct, "compounded since 1 January")),
    Some(("1Y", "periods.1y", Kind::Pct, "compounded over the last year")),
    Some(("3Y (ann.)", "periods.3y_ann", Kind::Pct, "CAGR over the last 35 months")),
    Some(("5Y (ann.)", "periods.5y_ann", Kind::Pct, "CAGR over the last 59 months")),
    Some(("10Y (ann.)", "periods.10y_ann", Kind::Pct, "CAGR over the last 119 months")),
    None,
    Some(("Best day", "best_day", Kind::Pct, "largest daily return")),
    Some(("Worst day", "worst_day", Kind::Pct, "smallest daily return")),
    Some(("Best month", "best_month", Kind::Pct, "largest calendar-month return")),
    Some(("Worst month", "worst_month", Kind::Pct, "smallest calendar-month return")),
    Some(("Best year", "best_year", Kind::Pct, "largest calendar-year return")),
    Some(("Worst year", "worst_year", Kind::Pct, "smallest calendar-year return")),
    None,
    Some(("Avg. drawdown", "drawdowns.avg_depth", Kind::Pct, "mean depth of the drawdown periods")),
    Some(("Recovery factor", "recovery_factor", Kind::Ratio, "|Σr| / |max drawdown|")),
    Some(("Ulcer index", "ulcer_index", Kind::Ratio, "√(Σ dd² / (n − 1))")),
    Some(("Serenity index", "serenity_index", Kind::Ratio, "Σr / (ulcer · (−cVaR(dd) / std(r)))")),
    None,
    Some(("Avg. up month", "avg_up_month", Kind::Pct, "mean of the positive monthly returns")),
    Some(("Avg. down month", "avg_down_month", Kind::Pct, "mean of the negative monthly returns")),
    Some(("Win days", "win_days", Kind::Pct, "positive days / non-zero days")),
    Some(("Win months", "win_month", Kind::Pct, "positive months / non-zero months")),
    Some(("Win quarters", "win_quarter", Kind::Pct, "positive quarters / non-zero quarters")),
    Some(("Win years", "win_year", Kind::Pct, "positive years / non-zero years")),
];

/// The strategy-against-benchmark rows ([`crate::tearsheet::Relative`]).
#[rustfmt::skip]
pub const RELATIVE: &[Row] = &[
    ("Beta", "beta", Kind::Ratio, "cov(r, b) / var(b)"),
    ("Alpha (ann.)", "alpha", Kind::Pct, "(mean(r) − β · mean(b)) · 252"),
    ("Correlation", "correlation", Kind::Pct, "Pearson correlation of r and b"),
    ("R²", "r_squared", Kind::Ratio, "correlation²"),
    ("Information ratio", "information_ratio", Kind::Ratio, "mean(r − b) / std(r − b), daily"),
    ("Treynor ratio", "treynor_ratio", Kind::Pct, "cumulative return / β"),
];

/// Looks a dotted key up in a serialized value.
pub fn lookup<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}
