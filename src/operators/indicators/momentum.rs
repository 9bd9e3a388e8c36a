//! Momentum indicators, each a kernel with TA-Lib's order of operations (fast %K and WILLR divide
//! once, see the module doc). Kernels with several outputs compute a family in one pass (ADX and
//! its relatives, AROON up/down/oscillator, MOM/ROC/ROCP, APO/PPO); each output starts at its own
//! TA-Lib lookback.

use super::atr::true_range;
use super::window::MaxMin;
use super::{Mirror, Ring, Rsi, Sma, THIRD, div2, is_zero, is_zero_or_neg, sum4};

/// TA-Lib's fast %K: `(close − lowest)/((highest − lowest)/100)`, 0 on a flat window. Computed as
/// `100·(close − lowest)/(highest − lowest)`: one division instead of two (the divider is the
/// scarcest unit on the per-bar path; the result moves by at most an ulp or two).
#[inline(always)]
fn fast_k(close: f64, hh: f64, ll: f64) -> f64 {
    let range = hh - ll;
    if range != 0.0 {
        ((close - ll) * 100.0) / range
    } else {
        0.0
    }
}

/// STOCH and STOCHF over one pair of highest-high / lowest-low windows (one raw fast %K serves
/// both): outputs `[STOCH slowk, STOCH slowd, STOCHF fastk, STOCHF fastd]`, each pair from its
/// longest lookback, NaN for a pair the pipeline did not declare. STOCH smooths %K with an SMA of
/// `slowk` then `slowd` bars, STOCHF takes %K as it is and smooths it over `fastd` bars.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stochastic {
    window: MaxMin,
    slow: Option<(Sma, Sma)>,
    fastd: Option<Sma>,
}

impl Stochastic {
    /// New family: `slow` is STOCH's `(slowk, slowd)`, `fastd` STOCHF's smoothing.
    pub fn new(fastk: usize, slow: Option<(usize, usize)>, fastd: Option<usize>) -> Self {
        Stochastic {
            window: MaxMin::new(fastk),
            slow: slow.map(|(k, d)| (Sma::new(k), Sma::new(d))),
            fastd: fastd.map(Sma::new),
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> [f64; 4] {
        let mut out = [f64::NAN; 4];
        let Some((hh, ll)) = self.window.update(high, low) else {
            return out;
        };
        let k = fast_k(close, hh, ll);
        if let Some((slowk, slowd)) = &mut self.slow
            && let Some(sk) = slowk.update(k)
            && let Some(sd) = slowd.update(sk)
        {
            out[0] = sk;
            out[1] = sd;
        }
        if let Some(fastd) = &mut self.fastd
            && let Some(fd) = fastd.update(k)
        {
            out[2] = k;
            out[3] = fd;
        }
        out
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.window.reset();
        if let Some((a, b)) = &mut self.slow {
            a.reset();
            b.reset();
        }
        if let Some(f) = &mut self.fastd {
            f.reset();
        }
    }

    /// Sums the smoothing averages afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        if let Some((a, b)) = &mut self.slow {
            a.reanchor();
            b.reanchor();
        }
        if let Some(f) = &mut self.fastd {
            f.reanchor();
        }
    }
}

/// RSI(n) and what is built on it: outputs `[RSI, CMO, STOCHRSI fastk, STOCHRSI fastd]`, with
/// STOCHRSI the STOCHF over RSI(n) (RSI as high, low and close: a [`Stochastic`] with only its
/// fast outputs); one pair of Wilder averages serves all three when a pipeline declares them with
/// the same period.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RsiFamily {
    rsi: Rsi,
    stoch: Option<Stochastic>,
}

impl RsiFamily {
    /// New family: `stoch` is STOCHRSI's `(fastk, fastd)` when declared.
    pub fn new(n: usize, stoch: Option<(usize, usize)>) -> Self {
        RsiFamily {
            rsi: Rsi::new(n),
            stoch: stoch.map(|(k, d)| Stochastic::new(k, None, Some(d))),
        }
    }

    /// Feeds a close.
    #[inline(always)]
    pub fn update(&mut self, close: f64) -> [f64; 4] {
        let mut out = [f64::NAN; 4];
        let Some([rsi, cmo]) = self.rsi.update_both(close) else {
            return out;
        };
        out[0] = rsi;
        out[1] = cmo;
        if let Some(st) = &mut self.stoch {
            let [_, _, k, d] = st.update(rsi, rsi, rsi);
            out[2] = k;
            out[3] = d;
        }
        out
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.rsi.reset();
        if let Some(s) = &mut self.stoch {
            s.reset();
        }
    }
}

/// The highest high and lowest low of the last n bars and what TA-Lib derives from them:
/// outputs `[MIDPRICE, WILLR]`, with MIDPRICE `(highest + lowest)/2` and WILLR
/// `(highest − close)/((highest − lowest)/−100)` (0 on a flat window). One pair of windows serves
/// both when a pipeline declares them with the same period.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HighLow {
    window: MaxMin,
}

impl HighLow {
    /// New WILLR.
    pub fn new(n: usize) -> Self {
        HighLow {
            window: MaxMin::new(n),
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<[f64; 2]> {
        let (hh, ll) = self.window.update(high, low)?;
        // TA-Lib's `(hh − close)/((hh − ll)/−100)`, with one division.
        let range = hh - ll;
        let willr = if range != 0.0 {
            ((hh - close) * -100.0) / range
        } else {
            0.0
        };
        Some([(hh + ll) / 2.0, willr])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.window.reset();
    }
}

/// CCI(n) over typical prices: `(tp − mean)/(0.015 · mean absolute deviation)`. The mean comes
/// from a running sum (recomputed exactly each time the window has been replaced, which bounds
/// its drift); the deviation is from the current mean, so it is O(n) per bar as TA-Lib defines it,
/// in four interleaved partial sums.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cci {
    n: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    window: Mirror,
    sum: f64,
    since_exact: usize,
}

impl Cci {
    /// New CCI.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Cci {
            n,
            inv: 1.0 / n as f64,
            window: Mirror::new(n),
            sum: 0.0,
            since_exact: 0,
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let tp = (high + low + close) * THIRD;
        let old = self.window.shift(tp);
        self.since_exact += 1;
        if self.since_exact >= self.n {
            self.since_exact = 0;
            self.sum = sum4(self.window.window(), |v| v);
        } else {
            self.sum += tp - old.unwrap_or(0.0);
        }
        if self.window.len() < self.n {
            return None;
        }
        let n = self.n as f64;
        let avg = self.sum * self.inv;
        let dev = sum4(self.window.window(), |v| (v - avg).abs());
        let t = tp - avg;
        Some(if t != 0.0 && dev != 0.0 {
            (t * n) / (0.015 * dev)
        } else {
            0.0
        })
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Cci::new(self.n);
    }
}

/// The directional movement family over one pass: outputs
/// `[PLUS_DM, MINUS_DM, PLUS_DI, MINUS_DI, DX, ADX, ADXR]`, each from its own lookback
/// (n−1, n−1, n, n, n, 2n−1, 3n−2).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Dmi {
    n: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    prev: Option<(f64, f64, f64)>,
    bars: usize,
    pdm: f64,
    mdm: f64,
    tr: f64,
    dx_seen: usize,
    dx_sum: f64,
    adx: Option<f64>,
    adx_ring: Ring,
}

impl Dmi {
    /// New family over `n` bars.
    pub fn new(n: usize) -> Self {
        let n = n.max(2);
        Dmi {
            n,
            inv: 1.0 / n as f64,
            prev: None,
            bars: 0,
            pdm: 0.0,
            mdm: 0.0,
            tr: 0.0,
            dx_seen: 0,
            dx_sum: 0.0,
            adx: None,
            adx_ring: Ring::new(n),
        }
    }

    /// Feeds a bar; NaN marks outputs still warming up.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> [f64; 7] {
        let mut out = [f64::NAN; 7];
        let Some((ph, pl, pc)) = self.prev.replace((high, low, close)) else {
            return out;
        };
        self.bars += 1;
        let n = self.n as f64;
        let diff_p = high - ph;
        let diff_m = pl - low;
        let plus = if diff_p > 0.0 && diff_p > diff_m {
            diff_p
        } else {
            0.0
        };
        let minus = if diff_m > 0.0 && diff_m > diff_p {
            diff_m
        } else {
            0.0
        };
        let tr = true_range(high, low, pc);
        // Read once, write once (see `Beta::update`: stores and loads of neighbouring fields
        // must not straddle each other).
        let (mut pdm, mut mdm, mut trs) = (self.pdm, self.mdm, self.tr);
        if self.bars < self.n {
            pdm += plus;
            mdm += minus;
            trs += tr;
        } else {
            let inv = self.inv;
            pdm = pdm - (pdm * inv) + plus;
            mdm = mdm - (mdm * inv) + minus;
            trs = trs - (trs * inv) + tr;
        }
        (self.pdm, self.mdm, self.tr) = (pdm, mdm, trs);
        if self.bars < self.n - 1 {
            return out;
        }
        out[0] = self.pdm;
        out[1] = self.mdm;
        if self.bars < self.n {
            return out;
        }
        let dx = if is_zero(self.tr) {
            out[2] = 0.0;
            out[3] = 0.0;
            None
        } else {
            let per_tr = 100.0 / self.tr;
            let pdi = self.pdm * per_tr;
            let mdi = self.mdm * per_tr;
            out[2] = pdi;
            out[3] = mdi;
            let sum = mdi + pdi;
            (!is_zero(sum)).then(|| 100.0 * ((mdi - pdi).abs() / sum))
        };
        out[4] = dx.unwrap_or(0.0);
        match self.adx {
            None => {
                self.dx_sum += dx.unwrap_or(0.0);
                self.dx_seen += 1;
                if self.dx_seen == self.n {
                    self.adx = Some(self.dx_sum / n);
                }
            }
            Some(a) => {
                if let Some(d) = dx {
                    self.adx = Some(((a * (n - 1.0)) + d) * self.inv);
                }
            }
        }
        if let Some(a) = self.adx {
            out[5] = a;
            self.adx_ring.push(a);
            if let Some(old) = self.adx_ring.oldest() {
                out[6] = (a + old) / 2.0;
            }
        }
        out
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Dmi::new(self.n);
    }
}

/// MFI(n): money flow index with TA-Lib's `< 1` guard on the total flow.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mfi {
    n: usize,
    prev_tp: Option<f64>,
    pos: Ring,
    neg: Ring,
    pos_sum: f64,
    neg_sum: f64,
}

impl Mfi {
    /// New MFI.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Mfi {
            n,
            prev_tp: None,
            pos: Ring::new(n),
            neg: Ring::new(n),
            pos_sum: 0.0,
            neg_sum: 0.0,
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64, volume: f64) -> Option<f64> {
        let tp = (high + low + close) * THIRD;
        let prev = self.prev_tp.replace(tp)?;
        if let (Some(p), Some(q)) = (self.pos.oldest(), self.neg.oldest()) {
            self.pos_sum -= p;
            self.neg_sum -= q;
        }
        let diff = tp - prev;
        let flow = tp * volume;
        // Two selects rather than a three-way branch on the sign of a random walk's change. As
        // TA-Lib (0.6 on), a change within ±1e-14 is no change: typical prices that are equal
        // on paper can differ by an ulp after the division.
        let p = if diff > 1e-14 { flow } else { 0.0 };
        let q = if diff < -1e-14 { flow } else { 0.0 };
        self.pos.push(p);
        self.neg.push(q);
        self.pos_sum += p;
        self.neg_sum += q;
        if self.pos.len() < self.n {
            return None;
        }
        let total = self.pos_sum + self.neg_sum;
        Some(if total < 1.0 {
            0.0
        } else {
            100.0 * (self.pos_sum / total)
        })
    }

    /// Sums the flows afresh, between bars (see `Sma::reanchor`): the whole window, whose
    /// oldest flow leaves at the start of the next bar.
    pub(crate) fn reanchor(&mut self) {
        self.pos_sum = self.pos.sum_last(self.pos.len());
        self.neg_sum = self.neg.sum_last(self.neg.len());
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Mfi::new(self.n);
    }
}

/// MOM, ROC and ROCP over n bars: outputs `[ROC, ROCP, MOM]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    ring: Ring,
}

impl Change {
    /// New (`n >= 1`).
    pub fn new(n: usize) -> Self {
        Change {
            ring: Ring::new(n.max(1) + 1),
        }
    }

    /// Feeds a close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<[f64; 3]> {
        self.ring.push(x);
        let prev = self.ring.oldest()?;
        if prev == 0.0 {
            return Some([0.0, 0.0, x - prev]);
        }
        // TA-Lib's ROC = (x/prev − 1)·100 and ROCP = (x − prev)/prev, both divisions in one `divpd`.
        let [ratio, rocp] = div2([x, x - prev], [prev, prev]);
        Some([(ratio - 1.0) * 100.0, rocp, x - prev])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.ring.clear();
    }
}

/// APO and PPO with simple moving averages: outputs `[APO, PPO]` from the slow lookback.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PriceOsc {
    fast: Sma,
    slow: Sma,
}

impl PriceOsc {
    /// New (fast and slow are swapped if given the other way round, as TA-Lib does).
    pub fn new(fast: usize, slow: usize) -> Self {
        let (f, s) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        PriceOsc {
            fast: Sma::new(f),
            slow: Sma::new(s),
        }
    }

    /// Feeds a close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<[f64; 2]> {
        let f = self.fast.update(x);
        let s = self.slow.update(x)?;
        let f = f?;
        let ppo = if is_zero(s) {
            0.0
        } else {
            ((f - s) / s) * 100.0
        };
        Some([f - s, ppo])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.fast.reset();
        self.slow.reset();
    }

    /// Sums both averages afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        self.fast.reanchor();
        self.slow.reanchor();
    }
}

/// ULTOSC(p1, p2, p3): `100·(4·A1 + 2·A2 + A3)/7` with `Ak = Σ buying pressure / Σ true range`
/// over the k-th window (shortest first). One ring of (pressure, range) pairs, as long as the
/// longest window, feeds the three pairs of running totals (TA-Lib's order: add the new value,
/// report, drop the trailing one).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UltOsc {
    prev_close: Option<f64>,
    periods: [usize; 3],
    /// `[buying pressure, true range]` of the last bars (as many as the longest window, rounded
    /// up to a power of two), indexed by the running count `seen`.
    ring: Vec<[f64; 2]>,
    seen: usize,
    sums: [[f64; 2]; 3],
}

/// Lane-wise `a + b` and `a − b` (one `addpd`/`subpd` for the pressure and range sums together).
#[inline(always)]
fn add2(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] + b[0], a[1] + b[1]]
}
#[inline(always)]
fn sub2(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

impl UltOsc {
    /// New ULTOSC; the periods are sorted so the shortest gets weight 4.
    pub fn new(p1: usize, p2: usize, p3: usize) -> Self {
        let mut p = [p1.max(1), p2.max(1), p3.max(1)];
        p.sort_unstable();
        UltOsc {
            prev_close: None,
            periods: p,
            ring: vec![[0.0; 2]; p[2].next_power_of_two()],
            seen: 0,
            sums: [[0.0; 2]; 3],
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let pc = self.prev_close.replace(close)?;
        let true_low = if low < pc { low } else { pc };
        let v = [close - true_low, true_range(high, low, pc)];
        let mask = self.ring.len() - 1;
        let s = self.seen;
        self.ring[s & mask] = v;
        self.seen = s + 1;
        let mut at = [[0.0; 2]; 3];
        for (k, (sum, &n)) in self.sums.iter_mut().zip(&self.periods).enumerate() {
            *sum = add2(*sum, v);
            at[k] = *sum;
            if s + 1 >= n {
                // The window's oldest value leaves before the next bar.
                *sum = sub2(*sum, self.ring[(s + 1 - n) & mask]);
            }
        }
        if s + 1 < self.periods[2] {
            return None;
        }
        let [[a1, b1], [a2, b2], [a3, b3]] = at;
        // The first two ratios in one `divpd` (a lane whose range is zero is not used).
        let [r1, r2] = div2([a1, a2], [b1, b2]);
        let mut out = 0.0;
        if !is_zero(b1) {
            out += 4.0 * r1;
        }
        if !is_zero(b2) {
            out += 2.0 * r2;
        }
        if !is_zero(b3) {
            out += a3 / b3;
        }
        Some(out * (100.0 / 7.0))
    }

    /// Sums each window afresh, between bars (see `Sma::reanchor`): over the values it keeps
    /// for the next bar (a full window has already let its oldest go).
    pub(crate) fn reanchor(&mut self) {
        let (mask, seen) = (self.ring.len() - 1, self.seen);
        for (sum, &n) in self.sums.iter_mut().zip(&self.periods) {
            let keep = if seen >= n { n - 1 } else { seen };
            *sum = (0..keep).rev().fold([0.0; 2], |acc, lag| {
                add2(acc, self.ring[(seen - 1 - lag) & mask])
            });
        }
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = UltOsc::new(self.periods[0], self.periods[1], self.periods[2]);
    }
}

/// AROON(n) over the last n+1 bars: outputs `[down, up, oscillator]`; on ties the most recent
/// extreme wins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Aroon {
    n: usize,
    /// `100/n`, TA-Lib's factor.
    factor: f64,
    window: MaxMin<true>,
}

impl Aroon {
    /// New AROON.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Aroon {
            n,
            factor: 100.0 / n as f64,
            window: MaxMin::new(n + 1),
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64) -> Option<[f64; 3]> {
        self.window.update(high, low)?;
        let factor = self.factor;
        let n = self.n as f64;
        let (age_h, age_l) = self.window.ages();
        let up = factor * (n - age_h);
        let down = factor * (n - age_l);
        Some([down, up, factor * (age_l - age_h)])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.window.reset();
    }
}

/// BOP: `(close − open)/(high − low)`, 0 when the range is below 1e-14.
pub fn bop(open: f64, high: f64, low: f64, close: f64) -> f64 {
    let range = high - low;
    if is_zero_or_neg(range) {
        0.0
    } else {
        (close - open) / range
    }
}
