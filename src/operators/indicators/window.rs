//! Monotonic deques: the highest and lowest of the last `n` values in O(1) amortized per value.

use std::collections::VecDeque;

/// Highest (or lowest) of the last `n` values, with its position. On ties the most recent value
/// wins, as TA-Lib's AROON expects.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Extreme {
    n: usize,
    highest: bool,
    seen: u64,
    deque: VecDeque<(u64, f64)>,
}

impl Extreme {
    /// Highest of the last `n` values.
    pub fn max(n: usize) -> Self {
        Extreme {
            n: n.max(1),
            highest: true,
            seen: 0,
            deque: VecDeque::with_capacity(n + 1),
        }
    }

    /// Lowest of the last `n` values.
    pub fn min(n: usize) -> Self {
        Extreme {
            n: n.max(1),
            highest: false,
            seen: 0,
            deque: VecDeque::with_capacity(n + 1),
        }
    }

    /// Feeds a value; returns the extreme once `n` values have been seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let i = self.seen;
        self.seen += 1;
        while let Some(&(_, v)) = self.deque.back() {
            let dominated = if self.highest { v <= x } else { v >= x };
            if !dominated {
                break;
            }
            self.deque.pop_back();
        }
        self.deque.push_back((i, x));
        while self
            .deque
            .front()
            .is_some_and(|&(j, _)| j + (self.n as u64) <= i)
        {
            self.deque.pop_front();
        }
        (self.seen >= self.n as u64).then(|| self.deque.front().map_or(f64::NAN, |f| f.1))
    }

    /// How many values ago the current extreme was seen (0 = the latest).
    pub fn age(&self) -> u64 {
        self.deque.front().map_or(0, |f| self.seen - 1 - f.0)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.seen = 0;
        self.deque.clear();
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
