//! Statistics: variance and deviation, the linear regression family, correlation and beta.

use super::{Mirror, Ring, div2, is_zero, is_zero_or_neg};

/// VAR(n) (population) and STDDEV = √VAR (0 below 1e-14, TA-Lib's guard): outputs `[VAR, STDDEV]`.
///
/// TA-Lib's golden values agree with the exact window variance to 1.5e-11, while `E[x²] − E[x]²`
/// from running sums loses ~2e-9 on prices near 600 (measured on GOOG). So this keeps a sliding
/// mean and sum of squared deviations (Welford's update, O(1) per value) and recomputes them
/// exactly from the window each time the ring wraps, which bounds the drift at O(1) amortized.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Var {
    n: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    ring: Mirror,
    mean: f64,
    m2: f64,
    since_exact: usize,
}

impl Var {
    /// New (`n >= 1`).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Var {
            n,
            inv: 1.0 / n as f64,
            ring: Mirror::new(n),
            mean: 0.0,
            m2: 0.0,
            since_exact: 0,
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<[f64; 2]> {
        match self.ring.shift(x) {
            None => {
                let k = self.ring.len() as f64;
                let d = x - self.mean;
                self.mean += d / k;
                self.m2 += d * (x - self.mean);
            }
            Some(old) => {
                self.since_exact += 1;
                if self.since_exact >= self.n {
                    self.since_exact = 0;
                    let n = self.n as f64;
                    let w = self.ring.window();
                    let mean = w.iter().sum::<f64>() / n;
                    self.m2 = w.iter().map(|v| (v - mean) * (v - mean)).sum();
                    self.mean = mean;
                } else {
                    let d = x - old;
                    let mean = self.mean + d * self.inv;
                    self.m2 += d * ((x - mean) + (old - self.mean));
                    self.mean = mean;
                }
            }
        }
        if self.ring.len() < self.n {
            return None;
        }
        let var = (self.m2 * self.inv).max(0.0);
        let sd = if is_zero_or_neg(var) { 0.0 } else { var.sqrt() };
        Some([var, sd])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Var::new(self.n);
    }
}

/// The least-squares line over the last n values (x = 0 oldest … n−1 newest), in TA-Lib's
/// formulation: outputs `[LINEARREG, LINEARREG_SLOPE, LINEARREG_INTERCEPT, LINEARREG_ANGLE, TSF]`,
/// all five from one pass. `Σy` and `Σ i·y` (i = bars ago) are updated in O(1) per bar and
/// recomputed exactly each time the ring wraps, which bounds their drift at O(1) amortized.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinReg {
    n: usize,
    /// `Σx` and `1/(Σx·Σx − n·Σx²)` over x = 0..n−1, and `1/n`: constants of the window.
    sum_x: f64,
    inv_divisor: f64,
    inv_n: f64,
    ring: Mirror,
    sum_y: f64,
    sum_xy: f64,
    since_exact: usize,
}

impl LinReg {
    /// New (`n >= 2`).
    pub fn new(n: usize) -> Self {
        let n = n.max(2);
        let nf = n as f64;
        let sum_x = nf * (nf - 1.0) * 0.5;
        let sum_x_sqr = nf * (nf - 1.0) * (2.0 * nf - 1.0) / 6.0;
        LinReg {
            n,
            sum_x,
            inv_divisor: 1.0 / (sum_x * sum_x - nf * sum_x_sqr),
            inv_n: 1.0 / nf,
            ring: Mirror::new(n),
            sum_y: 0.0,
            sum_xy: 0.0,
            since_exact: 0,
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<[f64; 5]> {
        let n = self.n as f64;
        // Read once, write once (see `Beta::update`).
        let (mut sum_y, mut sum_xy) = (self.sum_y, self.sum_xy);
        match self.ring.shift(x) {
            None => {
                // Every value seen ages by one bar.
                sum_xy += sum_y;
                sum_y += x;
            }
            Some(old) => {
                self.since_exact += 1;
                if self.since_exact >= self.n {
                    self.since_exact = 0;
                    let (mut sy, mut sxy) = (0.0, 0.0);
                    for (k, &y) in self.ring.window().iter().enumerate() {
                        sy += y;
                        sxy += (self.n - 1 - k) as f64 * y;
                    }
                    sum_y = sy;
                    sum_xy = sxy;
                } else {
                    sum_xy = (sum_xy - (n - 1.0) * old) + (sum_y - old);
                    sum_y += x - old;
                }
            }
        }
        (self.sum_y, self.sum_xy) = (sum_y, sum_xy);
        if self.ring.len() < self.n {
            return None;
        }
        let sum_x = self.sum_x;
        let m = (n * sum_xy - sum_x * sum_y) * self.inv_divisor;
        let b = (sum_y - m * sum_x) * self.inv_n;
        Some([
            b + m * (n - 1.0),
            m,
            b,
            m.atan() * (180.0 / std::f64::consts::PI),
            b + m * n,
        ])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = LinReg::new(self.n);
    }
}

/// CORREL(n): Pearson correlation of two series, `Sxy/√(Sxx·Syy)` over the window's centred sums
/// (`Sxy = Σ(x − x̄)(y − ȳ)`); 0 when `Sxx·Syy` is not positive (TA-Lib's guard).
///
/// The textbook running sums (`Σx² − (Σx)²/n`, TA-Lib before 0.6) subtract numbers of the price
/// squared: a quiet hour of BTC at 27,000 lost 7e-9 of the correlation that way. Centred sums lose
/// nothing to the price level: they are computed two-pass when the window fills and once every
/// window after (so no drift outlives a window), and in between a bar replaces the oldest pair
/// with `ΔSxy = a'b' − ab − ΔxΔy/n` (a, b the pair's deviations from the old means), O(1).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Correl {
    n: usize,
    inv_n: f64,
    xs: Mirror,
    ys: Mirror,
    /// `[x̄, ȳ, Sxx, Syy, Sxy]`.
    m: [f64; 5],
    since_exact: usize,
}

impl Correl {
    /// New (`n >= 1`).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Correl {
            n,
            inv_n: 1.0 / n as f64,
            xs: Mirror::new(n),
            ys: Mirror::new(n),
            m: [0.0; 5],
            since_exact: 0,
        }
    }

    /// The centred sums of the window, two-pass.
    fn exact(&self) -> [f64; 5] {
        let (xs, ys) = (self.xs.window(), self.ys.window());
        let n = self.n as f64;
        let mx = xs.iter().sum::<f64>() / n;
        let my = ys.iter().sum::<f64>() / n;
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for (&x, &y) in xs.iter().zip(ys) {
            let (a, b) = (x - mx, y - my);
            sxx += a * a;
            syy += b * b;
            sxy += a * b;
        }
        [mx, my, sxx, syy, sxy]
    }

    /// Feeds one pair.
    #[inline(always)]
    pub fn update(&mut self, x: f64, y: f64) -> Option<f64> {
        let old = (self.xs.shift(x), self.ys.shift(y));
        if self.xs.len() < self.n {
            return None;
        }
        self.since_exact += 1;
        let [mx, my, sxx, syy, sxy] = match old {
            (Some(ox), Some(oy)) if self.since_exact < self.n => {
                // Read once, write once (see `Beta::update`).
                let [mx, my, sxx, syy, sxy] = self.m;
                let (dx, dy) = (x - ox, y - oy);
                let (an, bn, ao, bo) = (x - mx, y - my, ox - mx, oy - my);
                let inv = self.inv_n;
                [
                    mx + dx * inv,
                    my + dy * inv,
                    sxx + ((an * an - ao * ao) - dx * dx * inv),
                    syy + ((bn * bn - bo * bo) - dy * dy * inv),
                    sxy + ((an * bn - ao * bo) - dx * dy * inv),
                ]
            }
            _ => {
                self.since_exact = 0;
                self.exact()
            }
        };
        self.m = [mx, my, sxx, syy, sxy];
        let t = sxx * syy;
        Some(if is_zero_or_neg(t) {
            0.0
        } else {
            sxy / t.sqrt()
        })
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Correl::new(self.n);
    }
}

/// BETA(n): regression slope of the second series' simple returns on the first's over the last n
/// returns, `(nΣxy − ΣxΣy)/(nΣx² − (Σx)²)`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Beta {
    n: usize,
    prev: Option<(f64, f64)>,
    xs: Ring,
    ys: Ring,
    s: [f64; 4],
}

impl Beta {
    /// New (`n >= 1`).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Beta {
            n,
            prev: None,
            xs: Ring::new(n),
            ys: Ring::new(n),
            s: [0.0; 4],
        }
    }

    /// Feeds one pair of prices.
    #[inline(always)]
    pub fn update(&mut self, px: f64, py: f64) -> Option<f64> {
        let (lx, ly) = self.prev.replace((px, py))?;
        // Both returns in one `divpd` (a lane whose previous price is zero is not used).
        let [rx, ry] = div2([px - lx, py - ly], [lx, ly]);
        let x = if is_zero(lx) { 0.0 } else { rx };
        let y = if is_zero(ly) { 0.0 } else { ry };
        self.xs.push(x);
        self.ys.push(y);
        // Read once, write once: updated in place, neighbouring sums were packed into 16-byte
        // loads over 8-byte stores, and every bar waited on a failed store forwarding.
        let [mut sxx, mut sxy, mut sx, mut sy] = self.s;
        sxx += x * x;
        sxy += x * y;
        sx += x;
        sy += y;
        let (Some(tx), Some(ty)) = (self.xs.oldest(), self.ys.oldest()) else {
            self.s = [sxx, sxy, sx, sy];
            return None;
        };
        let n = self.n as f64;
        let d = (n * sxx) - (sx * sx);
        let out = if is_zero(d) {
            0.0
        } else {
            ((n * sxy) - (sx * sy)) / d
        };
        self.s = [sxx - tx * tx, sxy - tx * ty, sx - tx, sy - ty];
        Some(out)
    }

    /// Sums the window afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        let mut s = [0.0; 4];
        for lag in (0..self.xs.kept()).rev() {
            let (x, y) = (self.xs.ago(lag), self.ys.ago(lag));
            s = [s[0] + x * x, s[1] + x * y, s[2] + x, s[3] + y];
        }
        self.s = s;
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Beta::new(self.n);
    }
}
