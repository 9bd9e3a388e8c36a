"""TA-Lib's outputs for the standard feature set (the 68 golden columns) over one bar file.

    python3 scripts/make_talib_golden.py INPUT.csv OUTPUT.csv

Needs `pip install ta-lib numpy` (made with the Python wrapper 0.8.2 on the TA-Lib C library 0.6.x
it bundles; `python3 -c 'import talib; print(talib.__version__, talib.__ta_version__)'` says which).
Reads the two layouts the goldens use:

* backtesting.py's `,Open,High,Low,Close,Volume` (the empty first header is the time index);
* CryptoDataDownload's exports (a banner line, then `unix,date,symbol,open,high,low,close,Volume X,...`,
  newest first): sorted ascending by `unix` (milliseconds, UTC), the base-currency volume.

Writes `date` (`YYYY-MM-DD` at midnight, else `YYYY-MM-DD HH:MM:SS`, UTC: the format of `fdp features`)
plus one column per output, each value Python's `repr()` of TA-Lib's float64 (shortest round-trip text),
`NaN` during warm-up. `LOGRET_1` is numpy's `log(c[t]/c[t-1])`, not TA-Lib's. All inputs are float64.
"""
import csv
import sys
from datetime import datetime, timezone

import numpy as np
import talib


def read(path):
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    if lines[0].startswith("http"):
        rows = list(csv.reader(lines[1:]))
        header = rows[0]
        body = sorted(rows[1:], key=lambda r: int(r[0]))
        col = {h: i for i, h in enumerate(header)}
        vol = next(i for i, h in enumerate(header) if h.startswith("Volume "))
        times = [datetime.fromtimestamp(int(r[0]) / 1000, timezone.utc) for r in body]
        fields = [[float(r[col[k]]) for r in body] for k in ("open", "high", "low", "close")]
        fields.append([float(r[vol]) for r in body])
    else:
        rows = list(csv.reader(lines))
        header = rows[0]
        assert header[1:6] == ["Open", "High", "Low", "Close", "Volume"], header
        body = rows[1:]
        times = [parse(r[0]) for r in body]
        fields = [[float(r[i]) for r in body] for i in range(1, 6)]
    return times, [np.array(x, dtype=np.float64) for x in fields]


def parse(text):
    for f in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, f).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise ValueError(text)


def stamp(t):
    if (t.hour, t.minute, t.second) == (0, 0, 0):
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M:%S")


def standard(o, h, l, c, v):
    out = {}
    out["SMA_20"] = talib.SMA(c, 20)
    out["EMA_20"] = talib.EMA(c, 20)
    out["EMA_12"] = talib.EMA(c, 12)
    out["EMA_26"] = talib.EMA(c, 26)
    out["WMA_20"] = talib.WMA(c, 20)
    out["DEMA_30"] = talib.DEMA(c, 30)
    out["TEMA_30"] = talib.TEMA(c, 30)
    out["TRIMA_30"] = talib.TRIMA(c, 30)
    out["KAMA_30"] = talib.KAMA(c, 30)
    u, m, lo = talib.BBANDS(c, 20, 2, 2, 0)
    out["BBANDS_20_2_upper"], out["BBANDS_20_2_middle"], out["BBANDS_20_2_lower"] = u, m, lo
    out["SAR_0.02_0.2"] = talib.SAR(h, l, 0.02, 0.2)
    out["MIDPOINT_14"] = talib.MIDPOINT(c, 14)
    out["MIDPRICE_14"] = talib.MIDPRICE(h, l, 14)
    out["RSI_14"] = talib.RSI(c, 14)
    a, b, d = talib.MACD(c, 12, 26, 9)
    out["MACD_12_26_9_macd"], out["MACD_12_26_9_signal"], out["MACD_12_26_9_hist"] = a, b, d
    out["STOCH_5_3_3_slowk"], out["STOCH_5_3_3_slowd"] = talib.STOCH(h, l, c, 5, 3, 0, 3, 0)
    out["STOCHF_5_3_fastk"], out["STOCHF_5_3_fastd"] = talib.STOCHF(h, l, c, 5, 3, 0)
    out["STOCHRSI_14_5_3_fastk"], out["STOCHRSI_14_5_3_fastd"] = talib.STOCHRSI(c, 14, 5, 3, 0)
    out["WILLR_14"] = talib.WILLR(h, l, c, 14)
    out["CCI_14"] = talib.CCI(h, l, c, 14)
    out["ADX_14"] = talib.ADX(h, l, c, 14)
    out["ADXR_14"] = talib.ADXR(h, l, c, 14)
    out["DX_14"] = talib.DX(h, l, c, 14)
    out["PLUS_DI_14"] = talib.PLUS_DI(h, l, c, 14)
    out["MINUS_DI_14"] = talib.MINUS_DI(h, l, c, 14)
    out["PLUS_DM_14"] = talib.PLUS_DM(h, l, 14)
    out["MINUS_DM_14"] = talib.MINUS_DM(h, l, 14)
    out["MFI_14"] = talib.MFI(h, l, c, v, 14)
    out["ROC_10"] = talib.ROC(c, 10)
    out["ROCP_10"] = talib.ROCP(c, 10)
    out["MOM_10"] = talib.MOM(c, 10)
    out["CMO_14"] = talib.CMO(c, 14)
    out["PPO_12_26_SMA"] = talib.PPO(c, 12, 26, 0)
    out["APO_12_26_SMA"] = talib.APO(c, 12, 26, 0)
    out["TRIX_30"] = talib.TRIX(c, 30)
    out["ULTOSC_7_14_28"] = talib.ULTOSC(h, l, c, 7, 14, 28)
    out["AROON_14_down"], out["AROON_14_up"] = talib.AROON(h, l, 14)
    out["AROONOSC_14"] = talib.AROONOSC(h, l, 14)
    out["BOP"] = talib.BOP(o, h, l, c)
    out["ATR_14"] = talib.ATR(h, l, c, 14)
    out["NATR_14"] = talib.NATR(h, l, c, 14)
    out["TRANGE"] = talib.TRANGE(h, l, c)
    out["OBV"] = talib.OBV(c, v)
    out["AD"] = talib.AD(h, l, c, v)
    out["ADOSC_3_10"] = talib.ADOSC(h, l, c, v, 3, 10)
    out["STDDEV_5_1"] = talib.STDDEV(c, 5, 1)
    out["STDDEV_20_1"] = talib.STDDEV(c, 20, 1)
    out["VAR_5_1"] = talib.VAR(c, 5, 1)
    out["LINEARREG_14"] = talib.LINEARREG(c, 14)
    out["LINEARREG_SLOPE_14"] = talib.LINEARREG_SLOPE(c, 14)
    out["LINEARREG_INTERCEPT_14"] = talib.LINEARREG_INTERCEPT(c, 14)
    out["LINEARREG_ANGLE_14"] = talib.LINEARREG_ANGLE(c, 14)
    out["TSF_14"] = talib.TSF(c, 14)
    out["CORREL_HL_30"] = talib.CORREL(h, l, 30)
    out["BETA_HL_5"] = talib.BETA(h, l, 5)
    out["AVGPRICE"] = talib.AVGPRICE(o, h, l, c)
    out["MEDPRICE"] = talib.MEDPRICE(h, l)
    out["TYPPRICE"] = talib.TYPPRICE(h, l, c)
    out["WCLPRICE"] = talib.WCLPRICE(h, l, c)
    logret = np.full(len(c), np.nan)
    logret[1:] = np.log(c[1:] / c[:-1])
    out["LOGRET_1"] = logret
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    times, (o, h, l, c, v) = read(src)
    out = standard(o, h, l, c, v)
    assert len(out) == 68, len(out)
    with open(dst, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["date", *out.keys()])
        for i, t in enumerate(times):
            w.writerow([stamp(t), *(repr(float(col[i])).replace("nan", "NaN") for col in out.values())])


if __name__ == "__main__":
    main()
