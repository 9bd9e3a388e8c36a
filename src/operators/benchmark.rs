//! The run's benchmark, followed bar by bar beside the portfolio: buy-and-hold of one ticker, or an
//! equal-weight portfolio of the universe rebalanced at every close. Its return at a time uses the
//! closes of that time and the ones before, like the equity it is compared with.
//!
//! A time's closes may come in any order (each worker's batch as it lies): the equal-weight mean
//! sums the returns exactly, in fixed point, so the result does not depend on that order.

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

/// Fixed-point scale of the exact sum: 2⁸⁰, so a return down to 1e-24 keeps its bits and one up to
/// 2⁴⁷ (a price 10¹⁴ times its last) still fits; a wilder one saturates.
const SCALE_BITS: i32 = 80;
const SCALE: f64 = 1_208_925_819_614_629_174_706_176.0;

/// `r` in units of 2⁻⁸⁰, truncated toward zero (saturating past ±2⁴⁷; NaN counts as 0): read off
/// the float's bits, since a float-to-`i128` conversion is a slow library call.
fn fixed(r: f64) -> i128 {
    let bits = r.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let magnitude: i128 = match exponent {
        0x7ff if fraction != 0 => 0,
        0x7ff => i128::MAX,
        _ => {
            let (mantissa, e) = if exponent == 0 {
                (fraction, -1074)
            } else {
                (fraction | 1u64 << 52, exponent - 1075)
            };
            match e + SCALE_BITS {
                s if s > 74 => i128::MAX,
                s if s >= 0 => i128::from(mantissa) << s,
                s if s > -64 => i128::from(mantissa >> -s),
                _ => 0,
            }
        }
    };
    if bits >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// Part of one time's benchmark return: the exact sum of some tickers' returns (in units of
/// 1/[`SCALE`]), how many, and the first. Each worker sums the tickers it owns beside their
/// signals, and the portfolio adds the parts up ([`Share::combine`]): integer sums give the same
/// bits in any order and however the tickers are split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Share {
    sum: i128,
    count: u64,
    first: f64,
}

impl Share {
    /// The benchmark return of a time from all its parts (none or no return: 0; a lone return is
    /// returned as is, so a one-ticker benchmark keeps its bits).
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Share>) -> f64 {
        let mut total = Share::default();
        for p in parts {
            if p.count == 0 {
                continue;
            }
            if total.count == 0 {
                total.first = p.first;
            }
            total.sum = total.sum.wrapping_add(p.sum);
            total.count += p.count;
        }
        match total.count {
            0 => 0.0,
            1 => total.first,
            n => total.sum as f64 / SCALE / n as f64,
        }
    }
}

/// The benchmark's state: each ticker's last close, and the time being summed.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    which: Benchmark,
    last: Vec<f64>,
    /// Sum of this time's returns in units of 1/[`SCALE`] (wrapping addition is associative,
    /// so any order gives the same bits), how many, and the first (returned as is when alone).
    sum: i128,
    count: usize,
    first: f64,
}

impl Tracker {
    /// A tracker of `which` with no close seen.
    pub fn new(which: Benchmark) -> Self {
        Tracker {
            which,
            ..Tracker::default()
        }
    }

    /// Counts one ticker's close at the time being summed (each ticker once per time, in any
    /// order), and remembers it.
    fn observe(&mut self, ticker: TickerId, close: f64) {
        let i = ticker as usize;
        if i >= self.last.len() {
            self.last.resize(i + 1, f64::NAN);
        }
        let prev = std::mem::replace(&mut self.last[i], close);
        let wanted = match self.which {
            Benchmark::EqualWeight => true,
            Benchmark::Ticker(t) => t == ticker,
        };
        if wanted && prev.is_finite() && prev != 0.0 {
            let r = close / prev - 1.0;
            if self.count == 0 {
                self.first = r;
            }
            self.sum = self.sum.wrapping_add(fixed(r));
            self.count += 1;
        }
    }

    /// The part of the benchmark return summed from the closes observed since the last call.
    fn take_share(&mut self) -> Share {
        Share {
            sum: std::mem::take(&mut self.sum),
            count: std::mem::take(&mut self.count) as u64,
            first: self.first,
        }
    }

    /// Observes some of one time's `(ticker, close)` pairs (a worker's batch; each ticker once, in
    /// any order) and returns their part of the time's return.
    pub fn share(&mut self, closes: impl IntoIterator<Item = (TickerId, f64)>) -> Share {
        for (ticker, close) in closes {
            self.observe(ticker, close);
        }
        self.take_share()
    }

    /// The benchmark's simple return at the time of `closes` (all of one time's tickers and
    /// closes, each ticker once, in any order), and remembers the closes.
    pub fn step(&mut self, closes: impl IntoIterator<Item = (TickerId, f64)>) -> f64 {
        Share::combine([&self.share(closes)])
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
        assert_eq!(t.step([(1, 21_000.0)]), 21_000.0 / 20_000.0 - 1.0);
    }

    fn pairs<'a>(
        tickers: &'a [TickerId],
        closes: &'a [f64],
    ) -> impl Iterator<Item = (TickerId, f64)> + 'a {
        tickers.iter().copied().zip(closes.iter().copied())
    }

    #[test]
    fn parts_split_any_way_combine_to_the_whole() {
        let tickers: Vec<TickerId> = (0..6).collect();
        let before = [1.08421, 187.31, 43_250.5, 0.0123, 1.3377, 612.0];
        let after = [1.08437, 186.02, 44_101.25, 0.0125, 1.33769, 612.0];
        let mut whole = Tracker::new(Benchmark::EqualWeight);
        whole.share(pairs(&tickers, &before));
        let want = Share::combine([&whole.share(pairs(&tickers, &after))]);
        for cut in 0..=6 {
            let (mut a, mut b) = (
                Tracker::new(Benchmark::EqualWeight),
                Tracker::new(Benchmark::EqualWeight),
            );
            a.share(pairs(&tickers[..cut], &before[..cut]));
            b.share(pairs(&tickers[cut..], &before[cut..]));
            let parts = [
                b.share(pairs(&tickers[cut..], &after[cut..])),
                a.share(pairs(&tickers[..cut], &after[..cut])),
            ];
            assert_eq!(
                Share::combine(&parts).to_bits(),
                want.to_bits(),
                "cut {cut}"
            );
        }
        // One ticker's benchmark: its return as is, whichever part holds it.
        let mut one = Tracker::new(Benchmark::Ticker(2));
        let mut none = Tracker::new(Benchmark::Ticker(2));
        one.share(pairs(&tickers[2..3], &before[2..3]));
        none.share(pairs(&tickers[..2], &before[..2]));
        let parts = [
            none.share(pairs(&tickers[..2], &after[..2])),
            one.share(pairs(&tickers[2..3], &after[2..3])),
        ];
        assert_eq!(Share::combine(&parts), after[2] / before[2] - 1.0);
        assert_eq!(Share::combine(&[]), 0.0);
    }

    #[test]
    fn fixed_point_is_the_float_times_two_to_the_eighty_truncated() {
        for r in [
            0.0, -0.0, 1.0, -1.0, 0.05, -0.013, 1e-20, -3.7e-9, 12_345.678, 1e14,
        ] {
            let want = (r * SCALE) as i128;
            assert_eq!(fixed(r), want, "{r}");
        }
        assert_eq!(fixed(1e-30), 0);
        assert_eq!(fixed(1e20), i128::MAX);
        assert_eq!(fixed(f64::NEG_INFINITY), -i128::MAX);
        assert_eq!(fixed(f64::NAN), 0);
    }

    #[test]
    fn the_mean_is_the_same_bits_in_any_order_and_close_to_the_float_sum() {
        // FX near 1.0, equities in the hundreds, crypto in the tens of thousands, a penny stock.
        let before = [1.08421, 187.31, 43_250.5, 0.0123, 1.3377, 612.0];
        let after = [1.08437, 186.02, 44_101.25, 0.0125, 1.33769, 612.0];
        let mut want = None;
        for rotate in 0..before.len() {
            let mut t = Tracker::new(Benchmark::EqualWeight);
            let order: Vec<usize> = (0..before.len())
                .map(|k| (k + rotate) % before.len())
                .collect();
            t.step(order.iter().map(|&k| (k as TickerId, before[k])));
            let got = t.step(order.iter().rev().map(|&k| (k as TickerId, after[k])));
            assert_eq!(*want.get_or_insert(got), got, "order {order:?}");
        }
        let float: f64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a / b - 1.0)
            .sum::<f64>()
            / 6.0;
        let got = want.unwrap_or(f64::NAN);
        assert!((got - float).abs() <= 1e-16, "{got} vs {float}");
    }
}
