//! Indicator kernels: plain incremental state machines, no I/O, no clock.
//!
//! Each kernel takes one bar at a time (`update`), answers `None` (NaN in outputs) until warm,
//! and can `reset`. They follow TA-Lib's conventions (see `tests/fixtures/golden/README.md`) so that
//! values agree with TA-Lib to 1e-9 relative. The features operator holds one [`FeatureSet`] per
//! ticker and writes its outputs as columns.

mod atr;
mod bbands;
mod ema;
mod macd;
mod returns;
mod rsi;
mod sma;

pub use atr::{Atr, TrueRange};
pub use bbands::Bbands;
pub use ema::Ema;
pub use macd::Macd;
pub use returns::{LogReturn, Volatility};
pub use rsi::Rsi;
pub use sma::Sma;

use serde::Deserialize;

/// The fields of a bar a kernel may read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ohlcv {
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: f64,
}

/// A feature declared in a pipeline file: its kind and parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// Simple moving average of the close.
    Sma {
        /// Window length.
        period: usize,
    },
    /// Exponential moving average of the close, seeded with the SMA of its first window.
    Ema {
        /// Window length (k = 2/(period+1)).
        period: usize,
    },
    /// Wilder's relative strength index.
    Rsi {
        /// Window length.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Wilder's average true range.
    Atr {
        /// Window length.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Moving average convergence/divergence: macd, signal and histogram.
    Macd {
        /// Fast EMA period.
        #[serde(default = "p12")]
        fast: usize,
        /// Slow EMA period.
        #[serde(default = "p26")]
        slow: usize,
        /// Signal EMA period.
        #[serde(default = "p9")]
        signal: usize,
    },
    /// Bollinger bands around the SMA with population standard deviation: upper, middle, lower.
    Bbands {
        /// Window length.
        #[serde(default = "p20")]
        period: usize,
        /// Band width in standard deviations.
        #[serde(default = "two")]
        nbdev: f64,
    },
    /// `ln(close[t] / close[t-1])`.
    LogReturn,
    /// Annualized (√252) sample standard deviation (ddof 1) of the last `period` log returns.
    Volatility {
        /// Number of returns.
        #[serde(default = "p30")]
        period: usize,
    },
}

fn p9() -> usize {
    9
}
fn p12() -> usize {
    12
}
fn p14() -> usize {
    14
}
fn p20() -> usize {
    20
}
fn p26() -> usize {
    26
}
fn p30() -> usize {
    30
}
fn two() -> f64 {
    2.0
}

/// Formats a float parameter as TA-Lib column names do: `2` for 2.0, `0.02` otherwise.
fn param(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl FeatureSpec {
    /// Output column names, as in the golden file (`SMA_10`, `MACD_12_26_9_signal`, ...).
    pub fn output_names(&self) -> Vec<String> {
        match *self {
            FeatureSpec::Sma { period } => vec![format!("SMA_{period}")],
            FeatureSpec::Ema { period } => vec![format!("EMA_{period}")],
            FeatureSpec::Rsi { period } => vec![format!("RSI_{period}")],
            FeatureSpec::Atr { period } => vec![format!("ATR_{period}")],
            FeatureSpec::Macd { fast, slow, signal } => ["macd", "signal", "hist"]
                .iter()
                .map(|s| format!("MACD_{fast}_{slow}_{signal}_{s}"))
                .collect(),
            FeatureSpec::Bbands { period, nbdev } => ["upper", "middle", "lower"]
                .iter()
                .map(|s| format!("BBANDS_{period}_{}_{s}", param(nbdev)))
                .collect(),
            FeatureSpec::LogReturn => vec!["LOGRET_1".into()],
            FeatureSpec::Volatility { period } => vec![format!("VOL_{period}")],
        }
    }

    /// Checks parameters; the message says what is wrong.
    ///
    /// # Errors
    /// A period below its minimum, or a non-finite band width.
    pub fn validate(&self) -> Result<(), String> {
        let at_least = |name: &str, v: usize, min: usize| {
            if v >= min {
                Ok(())
            } else {
                Err(format!("{name} must be at least {min}, got {v}"))
            }
        };
        match *self {
            FeatureSpec::Sma { period } | FeatureSpec::Ema { period } => {
                at_least("period", period, 1)
            }
            FeatureSpec::Rsi { period } | FeatureSpec::Atr { period } => {
                at_least("period", period, 1)
            }
            FeatureSpec::Macd { fast, slow, signal } => {
                at_least("fast", fast, 2)?;
                at_least("slow", slow, 2)?;
                at_least("signal", signal, 1)?;
                if fast > slow {
                    return Err(format!("fast ({fast}) must not exceed slow ({slow})"));
                }
                Ok(())
            }
            FeatureSpec::Bbands { period, nbdev } => {
                at_least("period", period, 2)?;
                if nbdev.is_finite() && nbdev > 0.0 {
                    Ok(())
                } else {
                    Err(format!("nbdev must be positive, got {nbdev}"))
                }
            }
            FeatureSpec::LogReturn => Ok(()),
            FeatureSpec::Volatility { period } => at_least("period", period, 2),
        }
    }

    /// A fresh kernel for this spec.
    pub fn kernel(&self) -> Kernel {
        match *self {
            FeatureSpec::Sma { period } => Kernel::Sma(Sma::new(period)),
            FeatureSpec::Ema { period } => Kernel::Ema(Ema::new(period)),
            FeatureSpec::Rsi { period } => Kernel::Rsi(Rsi::new(period)),
            FeatureSpec::Atr { period } => Kernel::Atr(Atr::new(period)),
            FeatureSpec::Macd { fast, slow, signal } => Kernel::Macd(Macd::new(fast, slow, signal)),
            FeatureSpec::Bbands { period, nbdev } => Kernel::Bbands(Bbands::new(period, nbdev)),
            FeatureSpec::LogReturn => Kernel::LogReturn(LogReturn::default()),
            FeatureSpec::Volatility { period } => Kernel::Volatility(Volatility::new(period)),
        }
    }
}

/// One kernel of any kind (enum dispatch keeps the per-bar loop free of virtual calls).
#[derive(Debug, Clone)]
pub enum Kernel {
    /// See [`Sma`].
    Sma(Sma),
    /// See [`Ema`].
    Ema(Ema),
    /// See [`Rsi`].
    Rsi(Rsi),
    /// See [`Atr`].
    Atr(Atr),
    /// See [`Macd`].
    Macd(Macd),
    /// See [`Bbands`].
    Bbands(Bbands),
    /// See [`LogReturn`].
    LogReturn(LogReturn),
    /// See [`Volatility`].
    Volatility(Volatility),
}

fn nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

impl Kernel {
    /// Number of outputs.
    pub fn width(&self) -> usize {
        match self {
            Kernel::Macd(_) | Kernel::Bbands(_) => 3,
            _ => 1,
        }
    }

    /// Feeds one bar and writes `width()` outputs (NaN while warming up) into `out`.
    pub fn update(&mut self, bar: &Ohlcv, out: &mut [f64]) {
        match self {
            Kernel::Sma(k) => out[0] = nan(k.update(bar.close)),
            Kernel::Ema(k) => out[0] = nan(k.update(bar.close)),
            Kernel::Rsi(k) => out[0] = nan(k.update(bar.close)),
            Kernel::Atr(k) => out[0] = nan(k.update(bar.high, bar.low, bar.close)),
            Kernel::Macd(k) => {
                let v = k.update(bar.close);
                out[0] = nan(v.map(|m| m.macd));
                out[1] = nan(v.map(|m| m.signal));
                out[2] = nan(v.map(|m| m.hist));
            }
            Kernel::Bbands(k) => {
                let v = k.update(bar.close);
                out[0] = nan(v.map(|b| b.upper));
                out[1] = nan(v.map(|b| b.middle));
                out[2] = nan(v.map(|b| b.lower));
            }
            Kernel::LogReturn(k) => out[0] = nan(k.update(bar.close)),
            Kernel::Volatility(k) => out[0] = nan(k.update(bar.close)),
        }
    }

    /// Back to the state before the first bar.
    pub fn reset(&mut self) {
        match self {
            Kernel::Sma(k) => k.reset(),
            Kernel::Ema(k) => k.reset(),
            Kernel::Rsi(k) => k.reset(),
            Kernel::Atr(k) => k.reset(),
            Kernel::Macd(k) => k.reset(),
            Kernel::Bbands(k) => k.reset(),
            Kernel::LogReturn(k) => k.reset(),
            Kernel::Volatility(k) => k.reset(),
        }
    }
}

/// The kernels of one ticker, in declaration order, writing one row of outputs per bar.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    kernels: Vec<Kernel>,
    width: usize,
}

impl FeatureSet {
    /// Kernels for the given specs.
    pub fn new(specs: &[FeatureSpec]) -> Self {
        let kernels: Vec<Kernel> = specs.iter().map(FeatureSpec::kernel).collect();
        let width = kernels.iter().map(Kernel::width).sum();
        FeatureSet { kernels, width }
    }

    /// Total number of output columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Feeds one bar; `out` must have `width()` slots.
    pub fn update(&mut self, bar: &Ohlcv, out: &mut [f64]) {
        let mut at = 0;
        for k in &mut self.kernels {
            let w = k.width();
            k.update(bar, &mut out[at..at + w]);
            at += w;
        }
    }

    /// Resets every kernel.
    pub fn reset(&mut self) {
        self.kernels.iter_mut().for_each(Kernel::reset);
    }
}

/// TA-Lib's `TA_IS_ZERO`: |v| < 1e-8.
pub(crate) fn is_zero(v: f64) -> bool {
    -0.000_000_01 < v && v < 0.000_000_01
}

/// A fixed-capacity ring of the last `n` values.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    buf: Vec<f64>,
    pos: usize,
    len: usize,
}

impl Ring {
    pub(crate) fn new(n: usize) -> Self {
        Ring {
            buf: vec![0.0; n.max(1)],
            pos: 0,
            len: 0,
        }
    }
    /// Pushes `x`; returns the value that fell out when the ring was full.
    pub(crate) fn push(&mut self, x: f64) -> Option<f64> {
        let out = if self.len == self.buf.len() {
            Some(self.buf[self.pos])
        } else {
            None
        };
        self.buf[self.pos] = x;
        self.pos = (self.pos + 1) % self.buf.len();
        if self.len < self.buf.len() {
            self.len += 1;
        }
        out
    }
    /// The oldest value held (the next to fall out), when full.
    pub(crate) fn oldest(&self) -> Option<f64> {
        (self.len == self.buf.len()).then(|| self.buf[self.pos])
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// Values oldest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let cap = self.buf.len();
        let start = (self.pos + cap - self.len) % cap;
        (0..self.len).map(move |i| self.buf[(start + i) % cap])
    }
    pub(crate) fn clear(&mut self) {
        self.pos = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_golden_columns() {
        assert_eq!(
            FeatureSpec::Bbands {
                period: 20,
                nbdev: 2.0
            }
            .output_names()[0],
            "BBANDS_20_2_upper"
        );
        assert_eq!(
            FeatureSpec::Macd {
                fast: 12,
                slow: 26,
                signal: 9
            }
            .output_names()[1],
            "MACD_12_26_9_signal"
        );
    }

    #[test]
    fn ring_yields_what_falls_out() {
        let mut r = Ring::new(2);
        assert_eq!(r.push(1.0), None);
        assert_eq!(r.push(2.0), None);
        assert_eq!(r.oldest(), Some(1.0));
        assert_eq!(r.push(3.0), Some(1.0));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![2.0, 3.0]);
    }
}
