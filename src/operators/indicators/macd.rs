//! MACD as TA-Lib computes it: both EMAs seeded on windows that end at the slow lookback.

use super::Ema;

/// One MACD output.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct MacdValue {
    /// Fast EMA minus slow EMA.
    pub macd: f64,
    /// EMA of `macd`.
    pub signal: f64,
    /// `macd - signal`.
    pub hist: f64,
}

/// MACD(fast, slow, signal). The fast EMA is seeded with the mean of the `fast` closes ending at
/// index `slow-1` (not the first `fast` closes), the slow EMA with the first `slow` closes; the
/// signal EMA is seeded with the mean of the first `signal` MACD values. Every output starts at
/// index `slow + signal - 2`, as in TA-Lib.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Macd {
    fast: usize,
    slow: usize,
    warm: Vec<f64>,
    fast_ema: Ema,
    slow_ema: Ema,
    signal_ema: Ema,
}

impl Macd {
    /// A new MACD (`2 <= fast <= slow`, `signal >= 1`).
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        let (fast, slow) = (fast.max(2), slow.max(2));
        let (fast, slow) = if fast > slow {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Macd {
            fast,
            slow,
            warm: Vec::with_capacity(slow),
            fast_ema: Ema::new(fast),
            slow_ema: Ema::new(slow),
            signal_ema: Ema::new(signal),
        }
    }

    /// Feeds one close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<MacdValue> {
        let macd = if self.warm.len() < self.slow {
            self.warm.push(x);
            if self.warm.len() < self.slow {
                return None;
            }
            let seed = |vals: &[f64]| vals.iter().fold(0.0, |a, v| a + v) / vals.len() as f64;
            self.fast_ema
                .seed(seed(&self.warm[self.slow - self.fast..]));
            self.slow_ema.seed(seed(&self.warm));
            self.fast_ema.value()? - self.slow_ema.value()?
        } else {
            self.fast_ema.update(x)? - self.slow_ema.update(x)?
        };
        let signal = self.signal_ema.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            hist: macd - signal,
        })
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.warm.clear();
        self.fast_ema.reset();
        self.slow_ema.reset();
        self.signal_ema.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_output_at_slow_plus_signal_minus_two() {
        let mut m = Macd::new(3, 5, 2);
        let first = (0..20)
            .map(|i| m.update(i as f64 * 1.5 + (i % 3) as f64))
            .position(|v| v.is_some());
        assert_eq!(first, Some(5 + 2 - 2));
    }

    #[test]
    fn a_constant_series_has_zero_macd() {
        let mut m = Macd::new(3, 5, 2);
        let v = (0..10).filter_map(|_| m.update(4.0)).last().unwrap();
        assert_eq!((v.macd, v.signal, v.hist), (0.0, 0.0, 0.0));
    }
}
