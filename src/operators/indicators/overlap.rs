//! Overlap studies beyond SMA/EMA/BBANDS: WMA, DEMA, TEMA, TRIMA, KAMA, MIDPOINT, MIDPRICE, SAR.

use super::window::MaxMin;
use super::{Ema, Ring, Sma, is_zero};

/// WMA(n): weights 1..n (newest n) over n(n+1)/2, with TA-Lib's running sums.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Wma {
    n: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    ring: Ring,
    sum: f64,
    sub: f64,
    trailing: f64,
}

impl Wma {
    /// New WMA (`n >= 1`).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Wma {
            n,
            inv: 1.0 / ((n * (n + 1)) / 2) as f64,
            ring: Ring::new(n),
            sum: 0.0,
            sub: 0.0,
            trailing: 0.0,
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.ring.push(x);
        let k = self.ring.len();
        if k < self.n {
            self.sub += x;
            self.sum += x * k as f64;
            return None;
        }
        self.sub += x;
        self.sub -= self.trailing;
        self.sum += x * self.n as f64;
        self.trailing = self.ring.oldest().unwrap_or(0.0);
        let out = self.sum * self.inv;
        self.sum -= self.sub;
        Some(out)
    }

    /// Sums the window afresh, between bars (see `Sma::reanchor`): `sub` holds the whole
    /// window and `sum` weighs it as the next bar will (the oldest, `trailing`, at 0). Before the
    /// window first fills it does nothing (the next call will).
    pub(crate) fn reanchor(&mut self) {
        if self.ring.len() < self.n {
            return;
        }
        let (mut sub, mut sum) = (0.0, 0.0);
        for lag in (0..self.n).rev() {
            let v = self.ring.ago(lag);
            sub += v;
            sum += (self.n - 1 - lag) as f64 * v;
        }
        (self.sub, self.sum) = (sub, sum);
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Wma::new(self.n);
    }
}

/// The triple EMA chain `E1 = EMA(x)`, `E2 = EMA(E1)`, `E3 = EMA(E2)` and what TA-Lib derives
/// from it: outputs `[DEMA, TEMA, TRIX]` (`2·E1 − E2`, `3·E1 − 3·E2 + E3`, and the one-bar rate of
/// change of E3 in percent), each from its own lookback. One chain serves all three when a
/// pipeline declares them with the same period.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EmaChain {
    e1: Ema,
    e2: Ema,
    e3: Ema,
    prev: Option<f64>,
}

impl EmaChain {
    /// New chain over `n` bars.
    pub fn new(n: usize) -> Self {
        EmaChain {
            e1: Ema::new(n),
            e2: Ema::new(n),
            e3: Ema::new(n),
            prev: None,
        }
    }

    /// Feeds a value; NaN marks outputs still warming up.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> [f64; 3] {
        let mut out = [f64::NAN; 3];
        let Some(a) = self.e1.update(x) else {
            return out;
        };
        let Some(b) = self.e2.update(a) else {
            return out;
        };
        out[0] = (2.0 * a) - b;
        let Some(c) = self.e3.update(b) else {
            return out;
        };
        out[1] = c + ((3.0 * a) - (3.0 * b));
        if let Some(prev) = self.prev.replace(c) {
            out[2] = if prev != 0.0 {
                ((c / prev) - 1.0) * 100.0
            } else {
                0.0
            };
        }
        out
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.e1.reset();
        self.e2.reset();
        self.e3.reset();
        self.prev = None;
    }
}

/// TRIMA(n) = SMA(SMA(x, ⌈n/2⌉ or n/2), n/2 + 1) (TA-Lib's definition for even and odd n).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Trima {
    a: Sma,
    b: Sma,
}

impl Trima {
    /// New TRIMA.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        let (p1, p2) = if n.is_multiple_of(2) {
            (n / 2, n / 2 + 1)
        } else {
            (n.div_ceil(2), n.div_ceil(2))
        };
        Trima {
            a: Sma::new(p1),
            b: Sma::new(p2),
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.a.update(x).and_then(|v| self.b.update(v))
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.a.reset();
        self.b.reset();
    }

    /// Sums both averages afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        self.a.reanchor();
        self.b.reanchor();
    }
}

/// KAMA(n) (fast 2, slow 30), TA-Lib's order of operations: ER = |x[t] − x[t−n]| over the sum of
/// the last n one-bar moves (1 when that sum is zero or not above the signed change), smoothing
/// `sc = (ER·(2/3 − 2/31) + 2/31)²`, seeded with x[n−1]; first output at n.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Kama {
    n: usize,
    /// The last n+2 values.
    last: Ring,
    sum_roc: f64,
    kama: Option<f64>,
}

impl Kama {
    /// New KAMA.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Kama {
            n,
            last: Ring::new(n + 2),
            sum_roc: 0.0,
            kama: None,
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = (self.last.len() > 0).then(|| self.last.ago(0));
        self.last.push(x);
        let seen = self.kama.is_some();
        if !seen {
            if let Some(p) = prev {
                self.sum_roc += (p - x).abs();
            }
            if self.last.len() < self.n + 1 {
                return None;
            }
        }
        let prev = prev.unwrap_or(x);
        // The value n bars ago; once running, the one before it leaves the sum of moves.
        let trailing = self.last.ago(self.n);
        if seen {
            self.sum_roc -= (self.last.ago(self.n + 1) - trailing).abs();
            self.sum_roc += (x - prev).abs();
        }
        let period_roc = x - trailing;
        let const_max = 2.0 / (30.0 + 1.0);
        let const_diff = 2.0 / (2.0 + 1.0) - const_max;
        let er = if self.sum_roc <= period_roc || is_zero(self.sum_roc) {
            1.0
        } else {
            (period_roc / self.sum_roc).abs()
        };
        let mut sc = (er * const_diff) + const_max;
        sc *= sc;
        let base = self.kama.unwrap_or(prev);
        let k = ((x - base) * sc) + base;
        self.kama = Some(k);
        Some(k)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Kama::new(self.n);
    }
}

/// MIDPOINT(n) = (max + min)/2 of the last n closes; MIDPRICE(n) = (highest high + lowest low)/2.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mid {
    window: MaxMin,
}

impl Mid {
    /// New (`n >= 1`).
    pub fn new(n: usize) -> Self {
        Mid {
            window: MaxMin::new(n),
        }
    }

    /// Feeds the value for the high side and for the low side (the close twice for MIDPOINT).
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64) -> Option<f64> {
        let (h, l) = self.window.update(high, low)?;
        Some((h + l) / 2.0)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.window.reset();
    }
}

/// Parabolic SAR, as TA-Lib computes it (first output at the second bar).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sar {
    acceleration: f64,
    maximum: f64,
    first: Option<(f64, f64)>,
    state: Option<SarState>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy)]
struct SarState {
    long: bool,
    sar: f64,
    ep: f64,
    af: f64,
    new_high: f64,
    new_low: f64,
}

impl Sar {
    /// New SAR with TA-Lib's acceleration and maximum (0.02, 0.2 by default).
    pub fn new(acceleration: f64, maximum: f64) -> Self {
        Sar {
            acceleration,
            maximum,
            first: None,
            state: None,
        }
    }

    /// Feeds one bar's high and low.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64) -> Option<f64> {
        let mut s = match self.state {
            Some(s) => s,
            None => {
                let Some((h0, l0)) = self.first else {
                    self.first = Some((high, low));
                    return None;
                };
                // Direction from bar 0 to 1: short when −DM > +DM and −DM > 0.
                let dm_minus = l0 - low;
                let dm_plus = high - h0;
                let long = !(dm_minus > 0.0 && dm_plus < dm_minus);
                let (ep, sar) = if long { (high, l0) } else { (low, h0) };
                SarState {
                    long,
                    sar,
                    ep,
                    af: self.acceleration,
                    new_high: high,
                    new_low: low,
                }
            }
        };
        let (prev_low, prev_high) = (s.new_low, s.new_high);
        s.new_low = low;
        s.new_high = high;
        let (a, m) = (self.acceleration, self.maximum);
        let out;
        if s.long {
            if s.new_low <= s.sar {
                s.long = false;
                s.sar = s.ep.max(prev_high).max(s.new_high);
                out = s.sar;
                s.af = a;
                s.ep = s.new_low;
                s.sar += s.af * (s.ep - s.sar);
                s.sar = s.sar.max(prev_high).max(s.new_high);
            } else {
                out = s.sar;
                if s.new_high > s.ep {
                    s.ep = s.new_high;
                    s.af = (s.af + a).min(m);
                }
                s.sar += s.af * (s.ep - s.sar);
                s.sar = s.sar.min(prev_low).min(s.new_low);
            }
        } else if s.new_high >= s.sar {
            s.long = true;
            s.sar = s.ep.min(prev_low).min(s.new_low);
            out = s.sar;
            s.af = a;
            s.ep = s.new_high;
            s.sar += s.af * (s.ep - s.sar);
            s.sar = s.sar.min(prev_low).min(s.new_low);
        } else {
            out = s.sar;
            if s.new_low < s.ep {
                s.ep = s.new_low;
                s.af = (s.af + a).min(m);
            }
            s.sar += s.af * (s.ep - s.sar);
            s.sar = s.sar.max(prev_high).max(s.new_high);
        }
        self.state = Some(s);
        Some(out)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.first = None;
        self.state = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wma_forgets_a_huge_value_once_it_left_the_window() {
        let walk = |i: usize| 100.0 + (i as f64 * 0.37).sin();
        let (mut a, mut b) = (Wma::new(20), Wma::new(20));
        let (mut x, mut y) = (None, None);
        for i in 0..250 {
            x = a.update(if i == 10 { 1e20 } else { walk(i) });
            y = b.update(walk(i));
            if i == 100 {
                a.reanchor();
            }
        }
        let (x, y) = (x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN));
        assert!((x - y).abs() <= 1e-12 * y, "{x} vs {y}");
    }

    #[test]
    fn wma_weights_the_newest_most() {
        let mut w = Wma::new(3);
        assert_eq!(w.update(1.0), None);
        assert_eq!(w.update(2.0), None);
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-15 * b);
        assert!(near(w.update(3.0), (1.0 + 4.0 + 9.0) / 6.0));
        assert!(near(w.update(4.0), (2.0 + 6.0 + 12.0) / 6.0));
        // Summed afresh between bars: the next bars see the same weights.
        w.reanchor();
        assert!(near(w.update(5.0), (3.0 + 8.0 + 15.0) / 6.0));
        assert!(near(w.update(6.0), (4.0 + 10.0 + 18.0) / 6.0));
    }
}
