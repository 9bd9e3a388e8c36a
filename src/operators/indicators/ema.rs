//! Exponential moving average, TA-Lib style (seeded with the SMA of the first window).

/// EMA(n) with k = 2/(n+1): the first output, after n values, is their mean; then
/// `ema = (x - ema)·k + ema` (TA-Lib's order of operations).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    count: usize,
    seed_sum: f64,
    value: f64,
}

impl Ema {
    /// A new EMA (`period >= 1`).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self::with_k(period, 2.0 / (period as f64 + 1.0))
    }

    /// A new EMA with an explicit smoothing factor.
    pub fn with_k(period: usize, k: f64) -> Self {
        Ema {
            period: period.max(1),
            k,
            count: 0,
            seed_sum: 0.0,
            value: f64::NAN,
        }
    }

    /// Starts the average at `seed` as if `period` values had been seen.
    pub fn seed(&mut self, seed: f64) {
        self.count = self.period;
        self.value = seed;
    }

    /// Feeds one value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.count < self.period {
            self.seed_sum += x;
            self.count += 1;
            if self.count < self.period {
                return None;
            }
            self.value = self.seed_sum / self.period as f64;
            return Some(self.value);
        }
        self.value = (x - self.value) * self.k + self.value;
        Some(self.value)
    }

    /// The current value, once warm.
    pub fn value(&self) -> Option<f64> {
        (self.count >= self.period).then_some(self.value)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.count = 0;
        self.seed_sum = 0.0;
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_with_the_mean_then_smooths() {
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        assert_eq!(e.update(3.0), Some(2.0));
        assert_eq!(e.update(6.0), Some(4.0));
        e.reset();
        assert_eq!(e.value(), None);
    }
}
