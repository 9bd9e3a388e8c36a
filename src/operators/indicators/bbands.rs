//! Bollinger bands with TA-Lib's running sums and population deviation.

use super::{Ring, Sma, is_zero_or_neg};

/// One Bollinger output.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
pub struct Band {
    /// `middle + nbdev·σ`.
    pub upper: f64,
    /// SMA of the window.
    pub middle: f64,
    /// `middle - nbdev·σ`.
    pub lower: f64,
}

/// BBANDS(n, k) with SMA middle; σ is the population deviation `sqrt(E[x²] - E[x]²)` from running
/// sums, 0 when that variance is below 1e-14 (TA-Lib's `TA_IS_ZERO_OR_NEG`). First output after n values.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bbands {
    period: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    nbdev: f64,
    sma: Sma,
    squares: Ring,
    total2: f64,
}

impl Bbands {
    /// New bands (`period >= 1`).
    pub fn new(period: usize, nbdev: f64) -> Self {
        let period = period.max(1);
        Bbands {
            period,
            inv: 1.0 / period as f64,
            nbdev,
            sma: Sma::new(period),
            squares: Ring::new(period),
            total2: 0.0,
        }
    }

    /// Feeds one close.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<Band> {
        let middle = self.sma.update(x);
        let sq = x * x;
        self.squares.push(sq);
        self.total2 += sq;
        let middle = middle?;
        let oldest = self.squares.oldest()?;
        let mut var = self.total2 * self.inv;
        self.total2 -= oldest;
        var -= middle * middle;
        // TA-Lib: `!TA_IS_ZERO_OR_NEG(var)`, i.e. var >= 1e-14, else a zero deviation.
        let sd = if is_zero_or_neg(var) { 0.0 } else { var.sqrt() };
        let dev = if self.nbdev == 1.0 {
            sd
        } else {
            sd * self.nbdev
        };
        Some(Band {
            upper: middle + dev,
            middle,
            lower: middle - dev,
        })
    }

    /// Sums the window and its squares afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        self.sma.reanchor();
        self.total2 = self.squares.sum_last(self.squares.kept());
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.sma.reset();
        self.squares.clear();
        self.total2 = 0.0;
    }
}

/// SMA(n) and, when declared, BBANDS(n, nbdev) over the same window: outputs
/// `[SMA, upper, middle, lower]` (the bands' middle is the SMA, so one running sum serves both).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Mean {
    /// The SMA alone.
    Sma(Sma),
    /// The bands, whose middle is the SMA.
    Bands(Bbands),
}

impl Mean {
    /// New: `nbdev` when bands are declared.
    pub fn new(n: usize, nbdev: Option<f64>) -> Self {
        match nbdev {
            Some(k) => Mean::Bands(Bbands::new(n, k)),
            None => Mean::Sma(Sma::new(n)),
        }
    }

    /// Feeds a value.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> [f64; 4] {
        match self {
            Mean::Sma(s) => [
                s.update(x).unwrap_or(f64::NAN),
                f64::NAN,
                f64::NAN,
                f64::NAN,
            ],
            Mean::Bands(b) => match b.update(x) {
                Some(b) => [b.middle, b.upper, b.middle, b.lower],
                None => [f64::NAN; 4],
            },
        }
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        match self {
            Mean::Sma(s) => s.reset(),
            Mean::Bands(b) => b.reset(),
        }
    }

    /// Sums afresh, between bars (see `Sma::reanchor`).
    pub(crate) fn reanchor(&mut self) {
        match self {
            Mean::Sma(s) => s.reanchor(),
            Mean::Bands(b) => b.reanchor(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_deviation() {
        let mut b = Bbands::new(2, 2.0);
        assert_eq!(b.update(1.0), None);
        let v = b.update(3.0).unwrap();
        assert_eq!((v.middle, v.upper, v.lower), (2.0, 4.0, 0.0));
    }

    #[test]
    fn a_huge_value_is_forgotten_once_it_left_the_window() {
        let walk = |i: usize| 100.0 + (i as f64 * 0.37).sin();
        let (mut a, mut b) = (Bbands::new(20, 2.0), Bbands::new(20, 2.0));
        let (mut x, mut y) = (None, None);
        for i in 0..250 {
            x = a.update(if i == 10 { 1e20 } else { walk(i) });
            y = b.update(walk(i));
            if i == 100 {
                a.reanchor();
            }
        }
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            (x.upper - y.upper).abs() <= 1e-9 * y.upper,
            "{x:?} vs {y:?}"
        );
        assert!(
            (x.lower - y.lower).abs() <= 1e-9 * y.lower,
            "{x:?} vs {y:?}"
        );
    }

    #[test]
    fn a_flat_window_has_no_width() {
        let mut b = Bbands::new(3, 2.0);
        let v = (0..5).filter_map(|_| b.update(10.0)).last().unwrap();
        assert_eq!((v.upper, v.lower), (10.0, 10.0));
    }
}
