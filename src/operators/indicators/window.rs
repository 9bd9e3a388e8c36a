//! Windowed extremes: the highest and lowest of the last `n` values in O(1) per value.

/// Highest (or lowest) of the last `n` values, with its position. On ties the most recent value
/// wins, as TA-Lib's AROON expects.
///
/// The van Herk/Gil-Werman scheme: the stream is cut into blocks of `n` values. Any window of `n`
/// values is the tail of the previous block plus the head of the current one, so its extreme is
/// the better of the previous block's *suffix* extreme (computed once, backwards, when that block
/// completes) and the current block's running *prefix* extreme. That is three comparisons per
/// value whatever the data, with no data-dependent branch (TA-Lib's rescan-when-the-extreme-leaves
/// costs a mispredicted branch on most bars of a random walk). A lowest is kept as the highest of
/// the negated values, so one comparison direction serves both.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Extreme {
    n: usize,
    /// +1 for a highest, −1 for a lowest (values are stored multiplied by it).
    sign: f64,
    seen: u64,
    /// Position of the next value within its block.
    k: usize,
    /// The current block's values so far (signed).
    block: Vec<f64>,
    /// Best of the current block so far, and where.
    prefix: (f64, u64),
    /// `suffix[j]`: best of the previous block from its j-th value on, and where; `suffix[n]` is
    /// the empty suffix.
    suffix: Vec<(f64, u64)>,
    /// The window's extreme after the last value, and where.
    best: (f64, u64),
}

/// The empty extreme: every finite value beats it.
const NONE: (f64, u64) = (f64::NEG_INFINITY, 0);

/// The better of two `(value, position)` pairs, `b` (the more recent) on ties, without a branch.
#[inline(always)]
fn better(a: (f64, u64), b: (f64, u64)) -> (f64, u64) {
    let take_b = b.0 >= a.0;
    (
        if take_b { b.0 } else { a.0 },
        if take_b { b.1 } else { a.1 },
    )
}

impl Extreme {
    /// Highest of the last `n` values.
    pub fn max(n: usize) -> Self {
        Self::new(n, 1.0)
    }

    /// Lowest of the last `n` values.
    pub fn min(n: usize) -> Self {
        Self::new(n, -1.0)
    }

    fn new(n: usize, sign: f64) -> Self {
        let n = n.max(1);
        Extreme {
            n,
            sign,
            seen: 0,
            k: 0,
            block: vec![0.0; n],
            prefix: NONE,
            suffix: vec![NONE; n + 1],
            best: NONE,
        }
    }

    /// The current block is complete (its last value had position `i − 1`): its suffix extremes
    /// serve the next n windows, and a new block starts.
    #[inline(never)]
    fn close_block(&mut self, i: u64) {
        self.k = 0;
        let mut acc = NONE;
        for j in (0..self.n).rev() {
            // Backwards, so the most recent of equal values is met first and kept.
            let here = (self.block[j], i - (self.n - j) as u64);
            acc = if here.0 > acc.0 { here } else { acc };
            self.suffix[j] = acc;
        }
        self.prefix = NONE;
    }

    /// Feeds a value; returns the extreme once `n` values have been seen.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let i = self.seen;
        let v = x * self.sign;
        if self.k == self.n {
            self.close_block(i);
        }
        let k = self.k;
        self.block[k] = v;
        self.prefix = better(self.prefix, (v, i));
        self.k = k + 1;
        self.seen = i + 1;
        // The window's oldest value is the previous block's (k+1)-th (none when k+1 == n).
        self.best = better(self.suffix[k + 1], self.prefix);
        (self.seen >= self.n as u64).then_some(self.best.0 * self.sign)
    }

    /// How many values ago the current extreme was seen (0 = the latest).
    pub fn age(&self) -> u64 {
        self.seen.saturating_sub(1) - self.best.1
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = Extreme::new(self.n, self.sign);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        /// Equals the brute-force extreme of the window, ties to the most recent, on series with
        /// many ties (small integers).
        #[test]
        fn equals_a_scan_of_the_window(
            xs in proptest::collection::vec(-3i32..4, 1..80),
            n in 1usize..9,
        ) {
            for highest in [true, false] {
                let mut e = if highest { Extreme::max(n) } else { Extreme::min(n) };
                for (i, &x) in xs.iter().enumerate() {
                    let got = e.update(f64::from(x));
                    if i + 1 < n {
                        prop_assert_eq!(got, None);
                        continue;
                    }
                    let w = &xs[i + 1 - n..=i];
                    let (mut best, mut at) = (w[0], 0);
                    for (j, &v) in w.iter().enumerate() {
                        if (highest && v >= best) || (!highest && v <= best) {
                            best = v;
                            at = j;
                        }
                    }
                    prop_assert_eq!(got, Some(f64::from(best)));
                    prop_assert_eq!(e.age(), (n - 1 - at) as u64);
                }
            }
        }
    }
}
