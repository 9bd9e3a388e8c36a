"""TA-Lib's time for the standard feature set, to compare with `fdp bench features`.

The 59 TA-Lib calls behind the 68 golden columns (tests/fixtures/golden; LOGRET is numpy's, not
TA-Lib's, and is left out) over one seeded random walk of N bars (default 1,000,000), best of 5,
in ns per bar. Needs `pip install ta-lib numpy`. TA-Lib computes each indicator over the whole
array in one call; `fdp` updates every kernel bar by bar, as a live run does.

    python3 scripts/talib_bench.py [N]
"""
import sys, time
import numpy as np
import talib

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = np.random.default_rng(11)
close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, n)))
open_ = close * np.exp(rng.normal(0, 0.004, n))
high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
volume = np.round(1e6 * np.exp(rng.normal(0, 0.5, n)))
o, h, l, c, v = open_, high, low, close, volume

calls = [
    lambda: talib.SMA(c, 20), lambda: talib.EMA(c, 20), lambda: talib.EMA(c, 12),
    lambda: talib.EMA(c, 26), lambda: talib.WMA(c, 20), lambda: talib.DEMA(c, 30),
    lambda: talib.TEMA(c, 30), lambda: talib.TRIMA(c, 30), lambda: talib.KAMA(c, 30),
    lambda: talib.BBANDS(c, 20, 2, 2), lambda: talib.SAR(h, l, 0.02, 0.2),
    lambda: talib.MIDPOINT(c, 14), lambda: talib.MIDPRICE(h, l, 14), lambda: talib.RSI(c, 14),
    lambda: talib.MACD(c, 12, 26, 9), lambda: talib.STOCH(h, l, c, 5, 3, 0, 3, 0),
    lambda: talib.STOCHF(h, l, c, 5, 3, 0), lambda: talib.STOCHRSI(c, 14, 5, 3, 0),
    lambda: talib.WILLR(h, l, c, 14), lambda: talib.CCI(h, l, c, 14), lambda: talib.ADX(h, l, c, 14),
    lambda: talib.ADXR(h, l, c, 14), lambda: talib.DX(h, l, c, 14), lambda: talib.PLUS_DI(h, l, c, 14),
    lambda: talib.MINUS_DI(h, l, c, 14), lambda: talib.PLUS_DM(h, l, 14), lambda: talib.MINUS_DM(h, l, 14),
    lambda: talib.MFI(h, l, c, v, 14), lambda: talib.ROC(c, 10), lambda: talib.ROCP(c, 10),
    lambda: talib.MOM(c, 10), lambda: talib.CMO(c, 14), lambda: talib.PPO(c, 12, 26, 0),
    lambda: talib.APO(c, 12, 26, 0), lambda: talib.TRIX(c, 30), lambda: talib.ULTOSC(h, l, c, 7, 14, 28),
    lambda: talib.AROON(h, l, 14), lambda: talib.AROONOSC(h, l, 14), lambda: talib.BOP(o, h, l, c),
    lambda: talib.ATR(h, l, c, 14), lambda: talib.NATR(h, l, c, 14), lambda: talib.TRANGE(h, l, c),
    lambda: talib.OBV(c, v), lambda: talib.AD(h, l, c, v), lambda: talib.ADOSC(h, l, c, v, 3, 10),
    lambda: talib.STDDEV(c, 5, 1), lambda: talib.STDDEV(c, 20, 1), lambda: talib.VAR(c, 5, 1),
    lambda: talib.LINEARREG(c, 14), lambda: talib.LINEARREG_SLOPE(c, 14),
    lambda: talib.LINEARREG_INTERCEPT(c, 14), lambda: talib.LINEARREG_ANGLE(c, 14),
    lambda: talib.TSF(c, 14), lambda: talib.CORREL(h, l, 30), lambda: talib.BETA(h, l, 5),
    lambda: talib.AVGPRICE(o, h, l, c), lambda: talib.MEDPRICE(h, l), lambda: talib.TYPPRICE(h, l, c),
    lambda: talib.WCLPRICE(h, l, c),
]
best = float("inf")
for _ in range(5):
    t = time.perf_counter()
    for f in calls:
        f()
    best = min(best, time.perf_counter() - t)
print(f"TA-Lib: {len(calls)} calls over {n} bars: {best / n * 1e9:.1f} ns/bar (best of 5)")
