//! Feature rankings for selection: mutual information with the label class (features binned at
//! their quantiles) and the ANOVA F statistic between classes, each turned into ranks and averaged
//! into one combined rank. (The random-forest importance joins them with the models.)

use crate::operators::drift::monitor::Reference;

/// Mutual information (nats) between a feature, binned at `bins` quantiles, and a class label.
/// Rows with a non-finite feature are left out.
pub fn mutual_information(x: &[f64], y: &[usize], bins: usize) -> f64 {
    let rows: Vec<(f64, usize)> = x
        .iter()
        .zip(y)
        .filter(|(v, _)| v.is_finite())
        .map(|(v, c)| (*v, *c))
        .collect();
    let n = rows.len();
    if n == 0 {
        return 0.0;
    }
    // The drift monitor's quantile bins.
    let values: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let Some(reference) = Reference::fit(&values, bins, 0.0) else {
        return 0.0;
    };
    let classes = rows.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    let mut joint = vec![vec![0u64; classes]; reference.bins()];
    for (v, c) in &rows {
        joint[reference.bin(*v)][*c] += 1;
    }
    let nf = n as f64;
    let px: Vec<f64> = joint
        .iter()
        .map(|r| r.iter().sum::<u64>() as f64 / nf)
        .collect();
    let py: Vec<f64> = (0..classes)
        .map(|c| joint.iter().map(|r| r[c]).sum::<u64>() as f64 / nf)
        .collect();
    let mut mi = 0.0;
    for (b, row) in joint.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k > 0 {
                let p = k as f64 / nf;
                mi += p * (p / (px[b] * py[c])).ln();
            }
        }
    }
    mi.max(0.0)
}

/// One-way ANOVA F statistic of a feature across the label classes (0 when undefined).
pub fn f_statistic(x: &[f64], y: &[usize]) -> f64 {
    let classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let (mut sum, mut sq, mut cnt) = (vec![0.0; classes], vec![0.0; classes], vec![0u64; classes]);
    for (v, c) in x.iter().zip(y) {
        if v.is_finite() {
            sum[*c] += v;
            sq[*c] += v * v;
            cnt[*c] += 1;
        }
    }
    let n: u64 = cnt.iter().sum();
    let groups = cnt.iter().filter(|c| **c > 0).count();
    if groups < 2 || n as usize <= groups {
        return 0.0;
    }
    let mean = sum.iter().sum::<f64>() / n as f64;
    let (mut between, mut within) = (0.0, 0.0);
    for c in 0..classes {
        if cnt[c] == 0 {
            continue;
        }
        let m = sum[c] / cnt[c] as f64;
        between += cnt[c] as f64 * (m - mean).powi(2);
        within += sq[c] - cnt[c] as f64 * m * m;
    }
    let df_b = (groups - 1) as f64;
    let df_w = (n as usize - groups) as f64;
    if within <= 0.0 {
        return if between > 0.0 { f64::INFINITY } else { 0.0 };
    }
    (between / df_b) / (within / df_w)
}

/// Ranks of scores, 1 for the highest; ties share the mean of their ranks; NaN ranks last.
pub fn ranks(scores: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    idx.sort_by(|a, b| key(*b).total_cmp(&key(*a)));
    let mut out = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && key(idx[j + 1]) == key(idx[i]) {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = r;
        }
        i = j + 1;
    }
    out
}

/// A feature's scores and its combined rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Feature index.
    pub feature: usize,
    /// One score per ranking, in the order given.
    pub scores: Vec<f64>,
    /// Mean of its ranks (lower is better).
    pub combined: f64,
}

/// Combines rankings (each a score per feature, higher better) into the features ordered by mean
/// rank, the lower index first on ties.
pub fn combine(rankings: &[Vec<f64>]) -> Vec<Ranked> {
    let features = rankings.first().map_or(0, Vec::len);
    let all: Vec<Vec<f64>> = rankings.iter().map(|s| ranks(s)).collect();
    let mut out: Vec<Ranked> = (0..features)
        .map(|f| Ranked {
            feature: f,
            scores: rankings.iter().map(|s| s[f]).collect(),
            combined: all.iter().map(|r| r[f]).sum::<f64>() / all.len().max(1) as f64,
        })
        .collect();
    out.sort_by(|a, b| {
        a.combined
            .total_cmp(&b.combined)
            .then(a.feature.cmp(&b.feature))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    use rand_distr::StandardNormal;

    #[test]
    fn f_matches_a_hand_computed_anova() {
        // Groups {1, 2, 3} and {4, 5, 6}: between SS 13.5 (df 1), within SS 4 (df 4): F = 13.5.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [0, 0, 0, 1, 1, 1];
        assert!((f_statistic(&x, &y) - 13.5).abs() < 1e-12);
    }

    #[test]
    fn mutual_information_of_a_copy_is_the_label_entropy() {
        let y: Vec<usize> = (0..1000).map(|i| i % 2).collect();
        let x: Vec<f64> = y.iter().map(|c| *c as f64).collect();
        assert!((mutual_information(&x, &y, 10) - std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn informative_features_rank_first() {
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 4000;
        let signal: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let y: Vec<usize> = signal
            .iter()
            .map(|s| usize::from(s + 0.5 * rng.sample::<f64, _>(StandardNormal) > 0.0))
            .collect();
        let noise: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let weak: Vec<f64> = signal
            .iter()
            .map(|s| 0.2 * s + rng.sample::<f64, _>(StandardNormal))
            .collect();
        let cols = [noise, signal, weak];
        let mi: Vec<f64> = cols.iter().map(|c| mutual_information(c, &y, 10)).collect();
        let f: Vec<f64> = cols.iter().map(|c| f_statistic(c, &y)).collect();
        let order: Vec<usize> = combine(&[mi, f]).iter().map(|r| r.feature).collect();
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn ties_share_ranks_and_nan_is_last() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, f64::NAN]), vec![1.5, 3.0, 1.5, 4.0]);
    }
}
