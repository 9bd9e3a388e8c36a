//! Wilder's RSI (and CMO, from the same averages) as TA-Lib computes them.

use super::{div2, is_zero};

/// RSI(n): average gain and loss seeded with the simple mean of the first n changes, then Wilder
/// smoothing `avg = (avg·(n-1) + x)/n`; `100·g/(g+l)`, 0 when `g+l` is (TA-Lib's) zero.
/// First output after n+1 values.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rsi {
    period: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    prev: Option<f64>,
    changes: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// A new RSI (`period >= 1`).
    pub fn new(period: usize) -> Self {
        Rsi {
            period: period.max(1),
            inv: 1.0 / period.max(1) as f64,
            prev: None,
            changes: 0,
            gain: 0.0,
            loss: 0.0,
        }
    }

    /// Feeds one close; the RSI once warm.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.update_both(x).map(|v| v[0])
    }

    /// Feeds one close; `[RSI, CMO]` from the same Wilder averages once warm
    /// (CMO = `100·(g−l)/(g+l)`, 0 when `g+l` is TA-Lib's zero).
    #[inline(always)]
    pub fn update_both(&mut self, x: f64) -> Option<[f64; 2]> {
        let prev = self.prev.replace(x)?;
        let d = x - prev;
        let n = self.period as f64;
        // Both averages take a change every bar (the other side takes +0.0, which changes no
        // bits): selects instead of a branch that a random walk mispredicts half the time.
        let (up, down) = if d < 0.0 { (0.0, -d) } else { (d, 0.0) };
        // Read once, write once (see `Beta::update`).
        let (mut gain, mut loss) = (self.gain, self.loss);
        if self.changes < self.period {
            loss += down;
            gain += up;
            self.changes += 1;
            if self.changes < self.period {
                (self.gain, self.loss) = (gain, loss);
                return None;
            }
            loss *= self.inv;
            gain *= self.inv;
        } else {
            loss = ((loss * (n - 1.0)) + down) * self.inv;
            gain = ((gain * (n - 1.0)) + up) * self.inv;
        }
        (self.gain, self.loss) = (gain, loss);
        let sum = gain + loss;
        if is_zero(sum) {
            return Some([0.0, 0.0]);
        }
        // TA-Lib's two divisions (one reciprocal, `gain·(100/sum)`, can come out an ulp above
        // 100 when there is no loss), in one `divpd`.
        let [rsi, cmo] = div2([gain, gain - loss], [sum, sum]);
        Some([100.0 * rsi, 100.0 * cmo])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Rsi::new(self.period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gains_give_100_and_flat_gives_0() {
        let mut r = Rsi::new(2);
        assert_eq!(r.update(1.0), None);
        assert_eq!(r.update(2.0), None);
        assert_eq!(r.update(3.0), Some(100.0));
        let mut r = Rsi::new(2);
        for _ in 0..3 {
            r.update(5.0);
        }
        assert_eq!(r.update(5.0), Some(0.0));
        // A reciprocal of the sum once gave 100.00000000000001 here.
        let mut r = Rsi::new(1);
        r.update(356.387_628_325_249_64);
        assert_eq!(r.update(948.482_256_374_003_6), Some(100.0));
    }
}
