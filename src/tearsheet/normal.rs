//! The standard normal distribution's density, distribution and quantile functions, to full
//! double precision: the probabilistic Sharpe ratio, the parametric VaR and expected shortfall
//! need them, and they must equal scipy's `norm` (quantstats' source) within 1e-9.

use std::f64::consts::{PI, SQRT_2};

/// Density φ(x).
pub fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Distribution Φ(x) = P(Z ≤ x), through `erfc` so the tails keep their relative precision.
pub fn cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / SQRT_2)
}

/// Quantile Φ⁻¹(p) for `p` in (0, 1) (−∞ at 0, +∞ at 1, NaN outside): Newton's method on
/// [`cdf`] from a bracketing bisection, so the answer is as exact as `cdf` itself.
pub fn ppf(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    // Φ(−40) underflows to 0 and Φ(9) rounds to 1: the root lies between them.
    let (mut lo, mut hi) = (-40.0_f64, 9.0_f64);
    let mut x = 0.0_f64;
    for _ in 0..200 {
        let f = cdf(x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let d = pdf(x);
        let newton = x - f / d;
        let next = if d > 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - x).abs() <= 1e-15 * x.abs().max(1e-300) {
            return next;
        }
        x = next;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values_equal_scipy() {
        // scipy.stats.norm.ppf(0.05), .cdf(1.0), .pdf(-1.6448536269514729)
        assert!((ppf(0.05) - -1.6448536269514729).abs() < 1e-15);
        assert!((cdf(1.0) - 0.8413447460685429).abs() < 1e-16);
        assert!((pdf(-1.6448536269514729) - 0.10313564037537128).abs() < 1e-16);
        assert_eq!(ppf(0.5), 0.0);
        assert!(ppf(1.5).is_nan());
    }

    proptest! {
        #[test]
        fn ppf_inverts_cdf(p in 1e-12f64..0.999_999) {
            let x = ppf(p);
            prop_assert!((cdf(x) - p).abs() <= 1e-14 * p.max(1e-3), "p {p} x {x} cdf {}", cdf(x));
        }
    }
}
