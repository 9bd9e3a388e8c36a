//! True range and Wilder's average true range.

use super::Sma;

/// TRANGE: `max(h-l, |h-c[t-1]|, |l-c[t-1]|)`; none for the first bar (no previous close).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct TrueRange {
    prev_close: Option<f64>,
}

/// TA-Lib's true range of a bar given the previous close: `max(h−l, |pc−h|, |pc−l|)`, compared in
/// that order (ATR, the DM family and ULTOSC all use it).
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut greatest = high - low;
    let v2 = (prev_close - high).abs();
    if v2 > greatest {
        greatest = v2;
    }
    let v3 = (prev_close - low).abs();
    if v3 > greatest {
        greatest = v3;
    }
    greatest
}

impl TrueRange {
    /// Feeds one bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let pc = self.prev_close.replace(close)?;
        Some(true_range(high, low, pc))
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.prev_close = None;
    }
}

/// ATR(n): seeded with the mean of the first n true ranges, then `(atr·(n-1) + tr)/n`.
/// First output after n+1 bars.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Atr {
    period: usize,
    /// The reciprocal of the window (a multiplication per bar instead of a division).
    inv: f64,
    tr: TrueRange,
    seed: Sma,
    value: Option<f64>,
}

impl Atr {
    /// A new ATR (`period >= 1`).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Atr {
            period,
            inv: 1.0 / period as f64,
            tr: TrueRange::default(),
            seed: Sma::new(period),
            value: None,
        }
    }

    /// Feeds one bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let tr = self.tr.update(high, low, close)?;
        let n = self.period as f64;
        self.value = match self.value {
            None => self.seed.update(tr),
            Some(v) => Some((v * (n - 1.0) + tr) * self.inv),
        };
        self.value
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.tr.reset();
        self.seed.reset();
        self.value = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_range_uses_the_previous_close() {
        let mut t = TrueRange::default();
        assert_eq!(t.update(10.0, 9.0, 9.5), None);
        assert_eq!(t.update(12.0, 11.0, 11.5), Some(2.5));
    }

    #[test]
    fn atr_seeds_then_smooths() {
        let mut a = Atr::new(2);
        assert_eq!(a.update(10.0, 9.0, 9.5), None);
        assert_eq!(a.update(10.0, 9.0, 9.5), None);
        assert_eq!(a.update(10.0, 9.0, 9.5), Some(1.0));
        assert_eq!(a.update(12.0, 9.5, 9.5), Some(1.75));
    }
}
