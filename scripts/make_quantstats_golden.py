#!/usr/bin/env python3
"""Tearsheet goldens: every metric of quantstats' full report, unrounded, on the GOOG reference run.

    pip install quantstats==0.0.86
    python3 scripts/make_quantstats_golden.py > tests/fixtures/golden/goog_sma_cross_quantstats.json

Strategy returns: r[t] = equity[t]/equity[t-1] - 1 of tests/fixtures/golden/goog_sma_cross_equity.csv
(backtesting.py's SMA 10/30 run, marked at each close). Benchmark: buy-and-hold of GOOG, its close
to close returns over the same dates (data/reference/GOOG.csv). Each value is the quantstats
function `quantstats.reports.metrics(mode="full")` calls for that row, with the same arguments, but:

* over the whole run (the report's `match_dates` cuts both series to start at the strategy's first
  non-zero return; a run's tearsheet covers the run),
* unrounded (the report rounds to two decimals).
"""

import json
import math
import sys
import warnings

import pandas as pd
import quantstats as qs
from dateutil.relativedelta import relativedelta

warnings.filterwarnings("ignore")
st = qs.stats

eq = pd.read_csv("tests/fixtures/golden/goog_sma_cross_equity.csv", parse_dates=["date"], index_col="date")
goog = pd.read_csv("data/reference/GOOG.csv", parse_dates=[0], index_col=0)
r = eq["equity"].pct_change().iloc[1:]
b = goog["Close"].pct_change().iloc[1:]
assert (r.index == b.index).all()
df = pd.DataFrame({"returns": r, "benchmark": b})


def f(x):
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def drawdowns(s):
    dd = st.to_drawdown_series(s)
    d = st.drawdown_details(dd)
    rows = d.sort_values("max drawdown").head(5)
    return {
        "worst": [
            {"start": x.start, "valley": x.valley, "end": x.end, "days": int(x.days), "depth": x["max drawdown"] / 100}
            for _, x in rows.iterrows()
        ],
        "count": len(d),
        "longest_days": int(d["days"].max()),
        "avg_depth": float(d["max drawdown"].mean() / 100),
        "avg_days": float(d["days"].mean()),
    }


def periods(s):
    today = s.index[-1]
    out = {
        "mtd": st.comp(s[s.index >= pd.Timestamp(today.year, today.month, 1)]),
        "3m": st.comp(s[s.index >= today - relativedelta(months=3)]),
        "6m": st.comp(s[s.index >= today - relativedelta(months=6)]),
        "ytd": st.comp(s[s.index >= pd.Timestamp(today.year, 1, 1)]),
        "1y": st.comp(s[s.index >= today - relativedelta(years=1)]),
        "3y_ann": st.cagr(s[s.index >= today - relativedelta(months=35)]),
        "5y_ann": st.cagr(s[s.index >= today - relativedelta(months=59)]),
        "10y_ann": st.cagr(s[s.index >= today - relativedelta(months=119)]),
    }
    return {k: f(v) for k, v in out.items()}


def one(s):
    m = {
        "time_in_market": st.exposure(s, prepare_returns=False),
        "cumulative_return": st.comp(s),
        "cagr": st.cagr(s, 0.0, True, 252),
        "sharpe": st.sharpe(s, 0.0, 252, True),
        "prob_sharpe": st.probabilistic_sharpe_ratio(s, 0.0, 252, False),
        "smart_sharpe": st.smart_sharpe(s, 0.0, 252, True),
        "sortino": st.sortino(s, 0.0, 252, True),
        "smart_sortino": st.smart_sortino(s, 0.0, 252, True),
        "omega": st.omega(s, 0.0, 0.0, 252),
        "max_drawdown": st.max_drawdown(s),
        "volatility": st.volatility(s, 252, True, prepare_returns=False),
        "calmar": st.calmar(s, prepare_returns=False, compounded=True, periods=252),
        "skew": st.skew(s, prepare_returns=False),
        "kurtosis": st.kurtosis(s, prepare_returns=False),
        "ulcer_performance_index": st.ulcer_performance_index(s, 0.0),
        "risk_adjusted_return": st.rar(s, 0.0, periods=252, compounded=True),
        "risk_return_ratio": st.risk_return_ratio(s, prepare_returns=False),
        "avg_return": st.avg_return(s, prepare_returns=False),
        "avg_win": st.avg_win(s, prepare_returns=False),
        "avg_loss": st.avg_loss(s, prepare_returns=False),
        "win_loss_ratio": st.win_loss_ratio(s, prepare_returns=False),
        "profit_ratio": st.profit_ratio(s, prepare_returns=False),
        "expected_daily": st.expected_return(s, compounded=True, prepare_returns=False),
        "expected_monthly": st.expected_return(s, compounded=True, aggregate="ME", prepare_returns=False),
        "expected_yearly": st.expected_return(s, compounded=True, aggregate="YE", prepare_returns=False),
        "kelly_criterion": st.kelly_criterion(s, prepare_returns=False),
        "risk_of_ruin": st.risk_of_ruin(s, prepare_returns=False),
        "daily_var": -abs(st.var(s, prepare_returns=False)),
        "cvar": -abs(st.cvar(s, prepare_returns=False)),
        "max_consecutive_wins": st.consecutive_wins(s),
        "max_consecutive_losses": st.consecutive_losses(s),
        "gain_pain": st.gain_to_pain_ratio(s, 0.0),
        "gain_pain_1m": st.gain_to_pain_ratio(s, 0.0, "ME"),
        "payoff_ratio": st.payoff_ratio(s, prepare_returns=False),
        "profit_factor": st.profit_factor(s, prepare_returns=False),
        "common_sense_ratio": st.common_sense_ratio(s, prepare_returns=False),
        "cpc_index": st.cpc_index(s, prepare_returns=False),
        "tail_ratio": st.tail_ratio(s, prepare_returns=False),
        "outlier_win_ratio": st.outlier_win_ratio(s, prepare_returns=False),
        "outlier_loss_ratio": st.outlier_loss_ratio(s, prepare_returns=False),
        "best_day": st.best(s, compounded=True, prepare_returns=False),
        "worst_day": st.worst(s, prepare_returns=False),
        "best_month": st.best(s, compounded=True, aggregate="ME", prepare_returns=False),
        "worst_month": st.worst(s, aggregate="ME", prepare_returns=False),
        "best_year": st.best(s, compounded=True, aggregate="YE", prepare_returns=False),
        "worst_year": st.worst(s, compounded=True, aggregate="YE", prepare_returns=False),
        "recovery_factor": st.recovery_factor(s),
        "ulcer_index": st.ulcer_index(s),
        "serenity_index": st.serenity_index(s, 0.0),
        "avg_up_month": st.avg_win(s, compounded=True, aggregate="ME", prepare_returns=False),
        "avg_down_month": st.avg_loss(s, compounded=True, aggregate="ME", prepare_returns=False),
        "win_days": st.win_rate(s, prepare_returns=False),
        "win_month": st.win_rate(s, compounded=True, aggregate="ME", prepare_returns=False),
        "win_quarter": st.win_rate(s, compounded=True, aggregate="QE", prepare_returns=False),
        "win_year": st.win_rate(s, compounded=True, aggregate="YE", prepare_returns=False),
    }
    m = {k: f(v) for k, v in m.items()}
    m["periods"] = periods(s)
    m["drawdowns"] = drawdowns(s)
    months = st.monthly_returns(s, eoy=True, compounded=True, prepare_returns=False)
    m["monthly"] = {y: [f(v) for v in row] for y, row in months.iterrows()}
    m["rolling_sharpe_126_last"] = f(st.rolling_sharpe(s, rolling_period=126).iloc[-1])
    m["rolling_volatility_252_last"] = f(st.rolling_volatility(s, rolling_period=252).iloc[-1])
    return m


greeks = st.greeks(df["returns"], df["benchmark"], 252, prepare_returns=False)
out = {
    "what": __doc__.strip().splitlines()[0],
    "versions": {"quantstats": qs.__version__, "pandas": pd.__version__},
    "n_returns": len(r),
    "first": str(r.index[0].date()),
    "last": str(r.index[-1].date()),
    "strategy": one(df["returns"]),
    "benchmark": one(df["benchmark"]),
    "vs_benchmark": {
        "r_squared": f(st.r_squared(df["returns"], df["benchmark"], prepare_returns=False)),
        "information_ratio": f(st.information_ratio(df["returns"], df["benchmark"], prepare_returns=False)),
        "beta": f(greeks["beta"]),
        "alpha": f(greeks["alpha"]),
        "correlation": f(df["benchmark"].corr(df["returns"])),
        "treynor_ratio": f(st.treynor_ratio(df["returns"], df["benchmark"], 252, 0.0)),
    },
}
json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")
