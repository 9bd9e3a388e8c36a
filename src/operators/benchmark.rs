//! The run's benchmark, followed bar by bar beside the portfolio: buy-and-hold of one ticker, or an
//! equal-weight portfolio of the universe rebalanced at every close. Its return at a time uses the
//! closes of that time and the ones before, like the equity it is compared with.

use serde::{Deserialize, Serialize};

use crate::bar::TickerId;

/// What the strategy is measured against (`[outputs] benchmark`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Benchmark {
    /// The mean of the close-to-close returns of every ticker with a bar now and one before
    /// (a universe of one ticker: that ticker held).
    #[default]
    EqualWeight,
    /// One ticker bought at its first close and held (a time without its bar: return 0).
    Ticker(TickerId),
}

/// The benchmark's state: each ticker's last close.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    which: Benchmark,
    last: Vec<f64>,
}

impl Tracker {
    /// A tracker of `which` with no close seen.
    pub fn new(which: Benchmark) -> Self {
        Tracker {
            which,
            last: Vec::new(),
        }
    }

    /// The benchmark's simple return at the time of `closes` (one time's tickers and closes,
    /// sorted by ticker), and remembers the closes.
    pub fn step(&mut self, closes: impl IntoIterator<Item = (TickerId, f64)>) -> f64 {
        let (mut sum, mut count) = (0.0, 0usize);
        for (ticker, close) in closes {
            let i = ticker as usize;
            if i >= self.last.len() {
                self.last.resize(i + 1, f64::NAN);
            }
            let prev = self.last[i];
            self.last[i] = close;
            let wanted = match self.which {
                Benchmark::EqualWeight => true,
                Benchmark::Ticker(t) => t == ticker,
            };
            if wanted && prev.is_finite() && prev != 0.0 {
                sum += close / prev - 1.0;
                count += 1;
            }
        }
        if count == 0 { 0.0 } else { sum / count as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weight_averages_the_tickers_seen_twice() {
        let mut t = Tracker::new(Benchmark::EqualWeight);
        assert_eq!(t.step([(0, 100.0)]), 0.0);
        // Ticker 1 has no previous close yet: only ticker 0 counts.
        assert!((t.step([(0, 110.0), (1, 50.0)]) - 0.1).abs() < 1e-15);
        let r = t.step([(0, 99.0), (1, 55.0)]);
        assert!((r - (-0.1 + 0.1) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn one_ticker_is_held_and_its_gaps_return_zero() {
        let mut t = Tracker::new(Benchmark::Ticker(1));
        t.step([(0, 1.0), (1, 20_000.0)]);
        assert_eq!(t.step([(0, 2.0)]), 0.0);
        assert!((t.step([(1, 21_000.0)]) - 0.05).abs() < 1e-15);
    }
}
