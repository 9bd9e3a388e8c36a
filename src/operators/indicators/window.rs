//! Windowed extremes: the highest and lowest of the last `n` values in O(1) per value.

/// The highest of the last `n` values of one series and the lowest of another's (a high and a
/// low), in O(1) per value.
///
/// The van Herk/Gil-Werman scheme: the stream is cut into blocks of `n` values. Any window of `n`
/// values is the tail of the previous block plus the head of the current one, so its extreme is
/// the better of the previous block's *suffix* extreme (computed once, backwards, when that block
/// completes) and the current block's running *prefix* extreme: three comparisons per value
/// whatever the data, with no data-dependent branch (TA-Lib's rescan-when-the-extreme-leaves costs
/// a mispredicted branch on most bars of a random walk). Each value is kept as the pair
/// `[high, −low]`, so one two-lane maximum (SSE2's `maxpd`) serves both sides.
///
/// With `AGE` it also tracks where each extreme was seen, ties going to the most recent (AROON's
/// convention); without it (STOCH, WILLR, MIDPRICE and MIDPOINT need only the values) that work
/// is compiled out.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MaxMin<const AGE: bool = false> {
    n: usize,
    /// Position of the next value within its block.
    k: usize,
    /// Values seen, and `n`, as floats (positions blend in the same two lanes as the values).
    seen: f64,
    nf: f64,
    /// The current block's pairs so far.
    block: Vec<[f64; 2]>,
    /// Best of the current block so far.
    prefix: [f64; 2],
    /// `suffix[j]`: best of the previous block from its j-th pair on; `suffix[n]` is empty.
    suffix: Vec<[f64; 2]>,
    /// With `AGE`: where `prefix`, each `suffix` and the window's extremes were seen.
    prefix_at: [f64; 2],
    suffix_at: Vec<[f64; 2]>,
    best_at: [f64; 2],
}

/// The empty pair: every finite value beats it.
const EMPTY: [f64; 2] = [f64::NEG_INFINITY; 2];

/// Lane-wise the better of an older and a newer pair, the newer on ties: SSE2's `maxpd` on x86-64
/// (which keeps its second operand on ties), a branch-free select elsewhere. The inputs are
/// finite, so no NaN handling is needed.
#[inline(always)]
fn max2(old: [f64; 2], new: [f64; 2]) -> [f64; 2] {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the block is compiled only where SSE2 is enabled (it is part of x86-64's baseline),
    // and these intrinsics touch no memory.
    unsafe {
        use std::arch::x86_64::{_mm_cvtsd_f64, _mm_max_pd, _mm_set_pd, _mm_unpackhi_pd};
        let m = _mm_max_pd(_mm_set_pd(old[1], old[0]), _mm_set_pd(new[1], new[0]));
        [_mm_cvtsd_f64(m), _mm_cvtsd_f64(_mm_unpackhi_pd(m, m))]
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        [
            if old[0] > new[0] { old[0] } else { new[0] },
            if old[1] > new[1] { old[1] } else { new[1] },
        ]
    }
}

/// Lane-wise the positions that go with [`max2`]: `old_at` where the older value is strictly
/// better, `new_at` otherwise (a compare and a bitwise blend on x86-64, no branch).
#[inline(always)]
fn max2_at(old: [f64; 2], new: [f64; 2], old_at: [f64; 2], new_at: [f64; 2]) -> [f64; 2] {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: as in `max2`: compiled only where SSE2 is enabled; no memory is touched.
    unsafe {
        use std::arch::x86_64::{
            _mm_and_pd, _mm_andnot_pd, _mm_cmpgt_pd, _mm_cvtsd_f64, _mm_or_pd, _mm_set_pd,
            _mm_unpackhi_pd,
        };
        let v = |p: [f64; 2]| _mm_set_pd(p[1], p[0]);
        let keep = _mm_cmpgt_pd(v(old), v(new));
        let m = _mm_or_pd(_mm_and_pd(keep, v(old_at)), _mm_andnot_pd(keep, v(new_at)));
        [_mm_cvtsd_f64(m), _mm_cvtsd_f64(_mm_unpackhi_pd(m, m))]
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        [
            if old[0] > new[0] {
                old_at[0]
            } else {
                new_at[0]
            },
            if old[1] > new[1] {
                old_at[1]
            } else {
                new_at[1]
            },
        ]
    }
}

impl<const AGE: bool> MaxMin<AGE> {
    /// Highest and lowest of the last `n` values (`n >= 1`).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        let at = if AGE { n + 1 } else { 0 };
        MaxMin {
            n,
            k: 0,
            seen: 0.0,
            nf: n as f64,
            block: vec![EMPTY; n],
            prefix: EMPTY,
            suffix: vec![EMPTY; n + 1],
            prefix_at: [0.0; 2],
            suffix_at: vec![[0.0; 2]; at],
            best_at: [0.0; 2],
        }
    }

    /// The block is complete: its suffix extremes serve the next `n` windows.
    #[inline(never)]
    fn close_block(&mut self) {
        let start = self.seen - self.nf;
        let (mut acc, mut acc_at) = (EMPTY, [0.0; 2]);
        // Backwards, so the most recent of equal values is met first and kept.
        for (j, &b) in self.block.iter().enumerate().rev() {
            if AGE {
                acc_at = max2_at(b, acc, [start + j as f64; 2], acc_at);
                self.suffix_at[j] = acc_at;
            }
            acc = max2(b, acc);
            self.suffix[j] = acc;
        }
        self.k = 0;
        self.prefix = EMPTY;
    }

    /// Feeds a high and a low; returns `(highest, lowest)` once `n` pairs have been seen.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64) -> Option<(f64, f64)> {
        if self.k >= self.n {
            self.close_block();
        }
        let v = [high, -low];
        let k = self.k;
        self.block[k] = v;
        if AGE {
            self.prefix_at = max2_at(self.prefix, v, self.prefix_at, [self.seen; 2]);
        }
        self.prefix = max2(self.prefix, v);
        self.k = k + 1;
        // The window's oldest pair is the previous block's (k+1)-th (none when k+1 == n).
        let s = self.suffix[k + 1];
        if AGE {
            self.best_at = max2_at(s, self.prefix, self.suffix_at[k + 1], self.prefix_at);
        }
        let best = max2(s, self.prefix);
        self.seen += 1.0;
        (self.seen >= self.nf).then_some((best[0], -best[1]))
    }

    /// How many values ago the highest and the lowest were seen (0 = the latest); meaningful
    /// with `AGE` once warm.
    pub fn ages(&self) -> (f64, f64) {
        let last = self.seen - 1.0;
        (last - self.best_at[0], last - self.best_at[1])
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        *self = MaxMin::new(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The highest of the highs and the lowest of the lows equal a scan of the window.
        #[test]
        fn max_min_equals_a_scan_of_the_window(
            xs in proptest::collection::vec((-3i32..4, -3i32..4), 1..80),
            n in 1usize..9,
        ) {
            let mut m = MaxMin::<false>::new(n);
            let mut aged = MaxMin::<true>::new(n);
            for (i, &(h, l)) in xs.iter().enumerate() {
                let got = m.update(f64::from(h), f64::from(l));
                prop_assert_eq!(aged.update(f64::from(h), f64::from(l)), got);
                if i + 1 < n {
                    prop_assert_eq!(got, None);
                    continue;
                }
                let w = &xs[i + 1 - n..=i];
                let hi = w.iter().map(|p| p.0).max().map(f64::from);
                let lo = w.iter().map(|p| p.1).min().map(f64::from);
                prop_assert_eq!(got.map(|g| g.0), hi);
                prop_assert_eq!(got.map(|g| g.1), lo);
                // Ages: the most recent position of each extreme.
                let age = |f: &dyn Fn(&(i32, i32)) -> i32, best: i32| {
                    w.iter().rev().position(|p| f(p) == best).map(|a| a as f64)
                };
                let (ah, al) = aged.ages();
                prop_assert_eq!(Some(ah), age(&|p| p.0, hi.unwrap_or(0.0) as i32));
                prop_assert_eq!(Some(al), age(&|p| p.1, lo.unwrap_or(0.0) as i32));
            }
        }
    }

    #[test]
    fn tracks_the_window_extremes_and_their_ages() {
        let mut m = MaxMin::<true>::new(3);
        assert_eq!(m.update(1.0, 3.0), None);
        assert_eq!(m.update(5.0, 4.0), None);
        assert_eq!(m.update(2.0, 5.0), Some((5.0, 3.0)));
        assert_eq!(m.ages(), (1.0, 2.0));
        assert_eq!(m.update(5.0, 4.0), Some((5.0, 4.0)));
        assert_eq!(m.ages(), (0.0, 0.0), "ties: the most recent wins");
        assert_eq!(m.update(1.0, 6.0), Some((5.0, 4.0)));
        assert_eq!(m.update(0.0, 7.0), Some((5.0, 4.0)));
        assert_eq!(m.update(0.5, 8.0), Some((1.0, 6.0)));
        assert_eq!(m.ages(), (2.0, 2.0));
    }
}
