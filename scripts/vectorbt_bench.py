"""vectorbt's time for the SMA-cross backtest of `fdp bench graph`, on the same shape.

`fdp bench graph` runs SMA 10 / SMA 30 crossover, 2 % of equity per entry (here 2 % of the cash
left, the nearest sizing vectorbt's from_signals offers), 0.1 % commission, one shared cash
account, over 500 seeded synthetic tickers x 2,520 daily bars (default). This runs the
same strategy in vectorbt over a seeded random walk of the same shape: moving averages, cross
signals, a portfolio from the signals with shared cash, and its equity curve, timed together, best
of N after a warm-up run (numba compiles on the first). Prints bars/s (tickers x bars / seconds).
Needs `pip install vectorbt` (1.2 measured).

    python3 scripts/vectorbt_bench.py [TICKERS] [BARS] [REPEATS]
"""

import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt

tickers = int(sys.argv[1]) if len(sys.argv) > 1 else 500
bars = int(sys.argv[2]) if len(sys.argv) > 2 else 2520
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5

rng = np.random.default_rng(7)
returns = rng.normal(0.0002, 0.015, (bars, tickers))
close = pd.DataFrame(
    (20.0 + 180.0 * rng.random(tickers)) * np.exp(np.cumsum(returns, axis=0)),
    index=pd.bdate_range("2000-01-03", periods=bars, tz="UTC"),
    columns=[f"SYN{i:05}" for i in range(tickers)],
)


def run():
    fast = vbt.MA.run(close, 10)
    slow = vbt.MA.run(close, 30)
    entries = fast.ma_crossed_above(slow)
    exits = fast.ma_crossed_below(slow)
    pf = vbt.Portfolio.from_signals(
        close,
        entries.values,
        exits.values,
        size=0.02,
        size_type="percent",
        fees=0.001,
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
    )
    return float(pf.value().iloc[-1]), int(pf.orders.count())


final, orders = run()  # warm-up: numba compiles here
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter()
    run()
    best = min(best, time.perf_counter() - t)
n = tickers * bars
print(
    f"vectorbt {vbt.__version__}: SMA-cross, {tickers} x {bars} bars, shared cash: "
    f"{best:.4f} s, {n / best:,.0f} bars/s (best of {repeats}; {orders} orders, final value {final:,.2f})"
)
