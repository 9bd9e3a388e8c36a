//! Log returns and realized volatility.

use super::Ring;

/// `ln(close[t]/close[t-1])`, computed as `ln(close[t]) − ln(close[t-1])` with the previous
/// logarithm kept: one logarithm and no division per bar (the two agree to ~1e-15); none for the
/// first value.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct LogReturn {
    prev_ln: Option<f64>,
}

impl LogReturn {
    /// Feeds one close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let ln = x.ln();
        let prev = self.prev_ln.replace(ln)?;
        Some(ln - prev)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.prev_ln = None;
    }
}

/// Annualized volatility: sample standard deviation (ddof 1) of the last `period` log returns,
/// times √252. First output after `period + 1` closes. O(1) per value from running sums of the
/// returns and their squares.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Volatility {
    period: usize,
    ret: LogReturn,
    window: Ring,
    sum: f64,
    sum2: f64,
}

impl Volatility {
    /// New (`period >= 2`).
    pub fn new(period: usize) -> Self {
        let period = period.max(2);
        Volatility {
            period,
            ret: LogReturn::default(),
            window: Ring::new(period),
            sum: 0.0,
            sum2: 0.0,
        }
    }

    /// Feeds one close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let r = self.ret.update(x)?;
        if let Some(old) = self.window.shift(r) {
            self.sum -= old;
            self.sum2 -= old * old;
        }
        self.sum += r;
        self.sum2 += r * r;
        if self.window.len() < self.period {
            return None;
        }
        let n = self.period as f64;
        let var = ((self.sum2 - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
        Some((var * 252.0).sqrt())
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Volatility::new(self.period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatility_matches_a_two_pass_computation() {
        let closes: Vec<f64> = (0..40)
            .map(|i| 100.0 + (i as f64 * 0.7).sin() * 3.0)
            .collect();
        let mut v = Volatility::new(30);
        let got = closes.iter().filter_map(|&c| v.update(c)).last().unwrap();
        let rets: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let last = &rets[rets.len() - 30..];
        let mean = last.iter().sum::<f64>() / 30.0;
        let var = last.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 29.0;
        assert!((got - (var * 252.0).sqrt()).abs() < 1e-12);
    }
}
