"""vectorbt's time for the parameter grid of `fdp sweep`, on the same data.

The grid: SMA fast x slow crossover on data/reference/GOOG.csv (2,148 daily bars), all-in long/flat,
0.1 % commission per side, fills at the close of the signal bar in vectorbt (fdp fills at the next
open: same work, different fill), fast in 5..50/5 and slow in 20..200/10 (10 x 19 = 190
combinations). vectorbt broadcasts the grid: both moving averages for every parameter, the cross
signals of every pair (param_product), one portfolio per column, and per column the total return
and the Sharpe ratio, timed together, best of N after a warm-up run (numba compiles on the first).
Prints combinations x bars per second. Needs `pip install vectorbt` (1.2.0 measured).

The fdp side of the comparison, from the repository root:

    cargo build --release
    target/release/fdp sweep pipelines/reference_sma_cross.toml \\
        --set model.fast=5..50/5 --set model.slow=20..200/10 --out /tmp/sweep-bench

    python3 scripts/vectorbt_sweep_bench.py [REPEATS]
"""

import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5

goog = pd.read_csv("data/reference/GOOG.csv", parse_dates=[0], index_col=0)
close = goog["Close"].astype(float)
fast_periods = list(range(5, 51, 5))
slow_periods = list(range(20, 201, 10))


def run():
    fast = vbt.MA.run(close, fast_periods, short_name="fast", param_product=True)
    slow = vbt.MA.run(close, slow_periods, short_name="slow", param_product=True)
    # Every (fast, slow) pair: broadcast fast's columns against slow's.
    f = np.repeat(fast.ma.values, len(slow_periods), axis=1)
    s = np.tile(slow.ma.values, (1, len(fast_periods)))
    above = f > s
    prev = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
    valid = ~np.isnan(f) & ~np.isnan(s)
    prev_valid = np.vstack([np.zeros((1, valid.shape[1]), bool), valid[:-1]])
    entries = above & ~prev & valid & prev_valid
    exits = ~above & prev & valid & prev_valid
    columns = pd.MultiIndex.from_product([fast_periods, slow_periods], names=["fast", "slow"])
    price = pd.DataFrame(np.tile(close.values[:, None], (1, len(columns))), index=close.index, columns=columns)
    pf = vbt.Portfolio.from_signals(
        price,
        pd.DataFrame(entries, index=close.index, columns=columns),
        pd.DataFrame(exits, index=close.index, columns=columns),
        size=np.inf,
        fees=0.001,
        init_cash=10_000.0,
        freq="1D",
    )
    return pf.total_return(), pf.sharpe_ratio()


run()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    total, sharpe = run()
    times.append(time.perf_counter() - t0)
combos = len(fast_periods) * len(slow_periods)
work = combos * len(close)
print(
    f"vectorbt {vbt.__version__}: {combos} combinations x {len(close)} bars in "
    f"{min(times):.3f}-{max(times):.3f} s: {work / max(times):,.0f}-{work / min(times):,.0f} "
    f"combination-bars/s (best Sharpe {np.max(sharpe.values[np.isfinite(sharpe.values)]):.3f})"
)
