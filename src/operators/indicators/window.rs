//! Windowed extremes: the highest and lowest of the last `n` values in O(1) amortized per value.

/// Highest (or lowest) of the last `n` values, with its position. On ties the most recent value
/// wins, as TA-Lib's AROON expects.
///
/// Keeps the current extreme and where it was seen; only when it leaves the window is the window
/// rescanned (TA-Lib's own method), which on market data happens about once per `n` values, so the
/// cost is O(1) amortized with a small constant.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Extreme {
    n: usize,
    highest: bool,
    seen: u64,
    ring: Vec<f64>,
    pos: usize,
    best: f64,
    best_at: u64,
}

impl Extreme {
    /// Highest of the last `n` values.
    pub fn max(n: usize) -> Self {
        Self::new(n, true)
    }

    /// Lowest of the last `n` values.
    pub fn min(n: usize) -> Self {
        Self::new(n, false)
    }

    fn new(n: usize, highest: bool) -> Self {
        let n = n.max(1);
        Extreme {
            n,
            highest,
            seen: 0,
            ring: vec![0.0; n],
            pos: 0,
            best: f64::NAN,
            best_at: 0,
        }
    }

    #[inline]
    fn better_or_equal(&self, x: f64, than: f64) -> bool {
        if self.highest { x >= than } else { x <= than }
    }

    /// Feeds a value; returns the extreme once `n` values have been seen.
    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let i = self.seen;
        self.ring[self.pos] = x;
        self.pos += 1;
        if self.pos == self.n {
            self.pos = 0;
        }
        self.seen += 1;
        if i == 0 || self.better_or_equal(x, self.best) {
            self.best = x;
            self.best_at = i;
        } else if self.best_at + (self.n as u64) <= i {
            // The extreme left the window: rescan it, oldest first (the full ring's oldest value
            // sits at the next write position), ties to the newest.
            let first = i + 1 - self.n as u64;
            let (newest, oldest) = self.ring.split_at(self.pos);
            let (mut best, mut at) = (f64::NAN, first);
            for (j, &v) in oldest.iter().chain(newest.iter()).enumerate() {
                if j == 0 || self.better_or_equal(v, best) {
                    best = v;
                    at = first + j as u64;
                }
            }
            self.best = best;
            self.best_at = at;
        }
        (self.seen >= self.n as u64).then_some(self.best)
    }

    /// How many values ago the current extreme was seen (0 = the latest).
    pub fn age(&self) -> u64 {
        self.seen.saturating_sub(1) - self.best_at
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.seen = 0;
        self.pos = 0;
        self.best = f64::NAN;
        self.best_at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_the_window_extreme_and_its_age() {
        let mut m = Extreme::max(3);
        assert_eq!(m.update(1.0), None);
        assert_eq!(m.update(5.0), None);
        assert_eq!(m.update(2.0), Some(5.0));
        assert_eq!(m.age(), 1);
        assert_eq!(m.update(5.0), Some(5.0));
        assert_eq!(m.age(), 0, "ties: the most recent wins");
        assert_eq!(m.update(1.0), Some(5.0));
        assert_eq!(m.update(0.0), Some(5.0));
        assert_eq!(m.update(0.5), Some(1.0));
        let mut lo = Extreme::min(2);
        lo.update(3.0);
        assert_eq!(lo.update(4.0), Some(3.0));
        assert_eq!(lo.update(5.0), Some(4.0));
    }
}
