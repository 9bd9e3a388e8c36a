//! Simple moving average with TA-Lib's running sum.

use super::Ring;

/// SMA(n): the mean of the last n values. First output after n values.
///
/// Uses TA-Lib's running total (add the new value, output, subtract the one leaving) so the bits
/// agree with TA-Lib rather than with a two-pass mean.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sma {
    period: usize,
    ring: Ring,
    total: f64,
    /// 1/period (a multiplication instead of a division per bar).
    inv: f64,
}

impl Sma {
    /// A new SMA over `period` values (`period >= 1`).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Sma {
            period,
            ring: Ring::new(period),
            total: 0.0,
            inv: 1.0 / period as f64,
        }
    }

    /// Feeds one value; the average once `period` values have been seen.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.ring.push(x);
        self.total += x;
        let oldest = self.ring.oldest()?;
        let out = self.total * self.inv;
        self.total -= oldest;
        Some(out)
    }

    /// Sums the window afresh, between bars: a huge value (a bad 1e20 tick) that entered the
    /// running total took the small values' digits with it; summed afresh once it has left the
    /// window, the average is exact again. The feature set calls this every
    /// [`REANCHOR_EVERY`](super::REANCHOR_EVERY) bars, outside the per-bar path.
    pub(crate) fn reanchor(&mut self) {
        self.total = self.ring.sum_last(self.ring.kept());
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.ring.clear();
        self.total = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_window() {
        let mut s = Sma::new(3);
        assert_eq!(s.update(1.0), None);
        assert_eq!(s.update(2.0), None);
        assert_eq!(s.update(3.0), Some(2.0));
        assert_eq!(s.update(4.0), Some(3.0));
    }

    #[test]
    fn a_huge_value_is_forgotten_once_it_left_the_window() {
        let walk = |i: usize| 100.0 + (i as f64 * 0.37).sin();
        let (mut a, mut b) = (Sma::new(20), Sma::new(20));
        let (mut last_a, mut last_b) = (None, None);
        for i in 0..250 {
            last_a = a.update(if i == 10 { 1e20 } else { walk(i) });
            last_b = b.update(walk(i));
            if i == 100 {
                // The feature set's pass, once the spike has left the window.
                a.reanchor();
            }
        }
        let (a, b) = (last_a.unwrap_or(f64::NAN), last_b.unwrap_or(f64::NAN));
        assert!((a - b).abs() <= 1e-12 * b, "{a} vs {b}");
    }

    #[test]
    fn period_one_is_identity_and_reset_forgets() {
        let mut s = Sma::new(1);
        assert_eq!(s.update(5.0), Some(5.0));
        let mut s = Sma::new(2);
        s.update(1.0);
        s.reset();
        assert_eq!(s.update(7.0), None);
        assert_eq!(s.update(9.0), Some(8.0));
    }
}
