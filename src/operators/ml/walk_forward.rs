//! Leak-free validation for labels that span time (López de Prado, *Advances in Financial Machine
//! Learning*, ch. 7).
//!
//! A sample is the interval from its bar to the bar its label became known. Purged k-fold: the
//! test fold is a contiguous block of samples; a training sample is *purged* when its interval
//! overlaps the test block's span, and *embargoed* when it is among the `embargo` samples that
//! follow the purged ones (its features may carry information the test labels saw). Walk-forward: a model
//! trained at bar `T` sees only samples whose label was known at `T`.

use crate::time::EventTime;

/// A sample's span: its bar time and the time its label became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Bar time.
    pub start: EventTime,
    /// Label known at.
    pub end: EventTime,
}

/// One split: indices into the sample list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// Training samples.
    pub train: Vec<usize>,
    /// Test samples.
    pub test: Vec<usize>,
}

/// Purged, embargoed k-fold splits of samples sorted by start time. Folds are contiguous blocks
/// of near-equal size; `embargo` is a number of samples after each block.
pub fn purged_kfold(samples: &[Span], k: usize, embargo: usize) -> Vec<Split> {
    let n = samples.len();
    let k = k.clamp(1, n.max(1));
    let mut out = Vec::with_capacity(k);
    for f in 0..k {
        let (lo, hi) = (f * n / k, (f + 1) * n / k);
        if lo == hi {
            continue;
        }
        let test_start = samples[lo..hi].iter().map(|s| s.start).min().unwrap_or(0);
        let test_end = samples[lo..hi].iter().map(|s| s.end).max().unwrap_or(0);
        // The embargo starts at the first sample after the purged ones.
        let after = (hi..n).find(|&i| samples[i].start > test_end).unwrap_or(n);
        let embargo_until = after + embargo;
        let train = (0..n)
            .filter(|&i| i < lo || i >= hi)
            .filter(|&i| {
                let s = samples[i];
                // Purge: the label interval overlaps the test span.
                let overlaps = s.start <= test_end && s.end >= test_start;
                // Embargo: just after the test block.
                let embargoed = i >= after && i < embargo_until;
                !overlaps && !embargoed
            })
            .collect();
        out.push(Split {
            train,
            test: (lo..hi).collect(),
        });
    }
    out
}

/// The samples a model trained at bar time `at` may use: those whose label was known by then.
pub fn known_by(samples: &[Span], at: EventTime) -> Vec<usize> {
    (0..samples.len())
        .filter(|&i| samples[i].end <= at)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spans(n: usize, h: i64) -> Vec<Span> {
        (0..n as i64)
            .map(|i| Span {
                start: i,
                end: i + h,
            })
            .collect()
    }

    #[test]
    fn purges_overlaps_and_embargoes_the_block_after() {
        let s = spans(20, 3);
        let splits = purged_kfold(&s, 4, 2);
        assert_eq!(splits.len(), 4);
        // Fold 1 tests samples 5..10 (span 5..=12): samples 2..=4 end at 5..=7 and overlap;
        // 10, 11, 12 start within the span; 13, 14 are embargoed.
        let f = &splits[1];
        assert_eq!(f.test, (5..10).collect::<Vec<_>>());
        assert_eq!(f.train, vec![0, 1, 15, 16, 17, 18, 19]);
    }

    #[test]
    fn walk_forward_sees_only_known_labels() {
        let s = spans(10, 3);
        assert_eq!(known_by(&s, 5), vec![0, 1, 2]);
    }

    proptest! {
        #[test]
        fn no_training_sample_touches_its_test_span(
            n in 5usize..200, h in 0i64..20, k in 2usize..8, embargo in 0usize..10,
        ) {
            let s = spans(n, h);
            for split in purged_kfold(&s, k, embargo) {
                let lo = *split.test.first().unwrap_or(&0);
                let (a, b) = (s[lo].start, split.test.iter().map(|&i| s[i].end).max().unwrap_or(0));
                let after = (0..n).find(|&i| s[i].start > b).unwrap_or(n);
                for &i in &split.train {
                    prop_assert!(!split.test.contains(&i));
                    prop_assert!(s[i].end < a || s[i].start > b, "sample {i} overlaps {a}..={b}");
                    prop_assert!(!(i >= after && i < after + embargo), "sample {i} is embargoed");
                }
                // Everything else trains.
                let kept = split.train.len() + split.test.len();
                prop_assert!(kept + embargo.min(n - after) <= n);
            }
        }
    }
}
