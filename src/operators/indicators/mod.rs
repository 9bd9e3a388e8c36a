//! Indicator kernels: plain incremental state machines, no I/O, no clock.
//!
//! Each kernel takes one bar at a time, answers NaN until warm, and can `reset`. They follow
//! TA-Lib's conventions and order of operations (see `tests/fixtures/golden/README.md`) so that
//! values agree with TA-Lib to 1e-9 relative. A [`FeatureSet`] plans the declared features into
//! as few kernels as possible — the ADX family, the LINEARREG family, AROON, MOM/ROC/ROCP, APO/PPO,
//! RSI/CMO, VAR/STDDEV and ATR/NATR each share one pass — and writes the outputs as columns.
//!
//! Non-finite input: [`FeatureSet::update`] skips a bar with a NaN or infinite field (its outputs
//! are NaN, the kernels continue from the previous bar), so a bad value never poisons running
//! sums. Gaps (missing bars) are simply not seen: kernels count bars, not calendar days. In the
//! graph the quality gate quarantines such bars before they get here.

mod atr;
mod bbands;
mod ema;
mod macd;
mod momentum;
mod overlap;
mod returns;
mod rsi;
mod sma;
mod statistics;
mod volume;
mod window;

pub use atr::{Atr, TrueRange};
pub use bbands::Bbands;
pub use ema::Ema;
pub use macd::Macd;
pub use momentum::{
    Aroon, Cci, Change, Dmi, Mfi, PriceOsc, Stoch, StochF, StochRsi, UltOsc, WillR, bop,
};
pub use overlap::{Kama, Mid, MultiEma, Sar, Trima, Trix, Wma};
pub use returns::{LogReturn, Volatility};
pub use rsi::Rsi;
pub use sma::Sma;
pub use statistics::{Beta, Correl, LinReg, Var};
pub use volume::{Ad, Adosc, Obv};
pub use window::Extreme;

use serde::Deserialize;

/// The fields of a bar a kernel may read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq)]
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

/// A feature declared in a pipeline file: its kind and parameters (TA-Lib's defaults).
/// Output columns are named as in TA-Lib's golden file (see [`FeatureSpec::output_names`]).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// Simple moving average of the close.
    Sma {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Exponential moving average (k = 2/(n+1)), seeded with the SMA of its first window.
    Ema {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Linearly weighted moving average.
    Wma {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Double EMA: 2·E1 − E2.
    Dema {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Triple EMA: 3·E1 − 3·E2 + E3.
    Tema {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Triangular moving average.
    Trima {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Kaufman adaptive moving average.
    Kama {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// One-bar rate of change of the triple EMA, percent.
    Trix {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Bollinger bands (SMA middle, population deviation): upper, middle, lower.
    Bbands {
        /// Window.
        #[serde(default = "p20")]
        period: usize,
        /// Width in deviations.
        #[serde(default = "two")]
        nbdev: f64,
    },
    /// Parabolic SAR.
    Sar {
        /// Acceleration step.
        #[serde(default = "sar_acc")]
        acceleration: f64,
        /// Acceleration cap.
        #[serde(default = "sar_max")]
        maximum: f64,
    },
    /// (max + min)/2 of the close.
    Midpoint {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// (highest high + lowest low)/2.
    Midprice {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Wilder's relative strength index.
    Rsi {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Chande momentum oscillator (Wilder averages, = 2·RSI − 100).
    Cmo {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// MACD: macd, signal, hist.
    Macd {
        /// Fast EMA.
        #[serde(default = "p12")]
        fast: usize,
        /// Slow EMA.
        #[serde(default = "p26")]
        slow: usize,
        /// Signal EMA.
        #[serde(default = "p9")]
        signal: usize,
    },
    /// Slow stochastic: slowk, slowd.
    Stoch {
        /// %K window.
        #[serde(default = "p5")]
        fastk: usize,
        /// Slow %K smoothing.
        #[serde(default = "p3")]
        slowk: usize,
        /// %D smoothing.
        #[serde(default = "p3")]
        slowd: usize,
    },
    /// Fast stochastic: fastk, fastd.
    Stochf {
        /// %K window.
        #[serde(default = "p5")]
        fastk: usize,
        /// %D smoothing.
        #[serde(default = "p3")]
        fastd: usize,
    },
    /// Stochastic of RSI: fastk, fastd.
    Stochrsi {
        /// RSI window.
        #[serde(default = "p14")]
        period: usize,
        /// %K window.
        #[serde(default = "p5")]
        fastk: usize,
        /// %D smoothing.
        #[serde(default = "p3")]
        fastd: usize,
    },
    /// Williams %R.
    Willr {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Commodity channel index.
    Cci {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Average directional index.
    Adx {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// ADX rating: (ADX + ADX n−1 bars ago)/2.
    Adxr {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Directional movement index.
    Dx {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Plus directional indicator.
    PlusDi {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Minus directional indicator.
    MinusDi {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Plus directional movement (Wilder sum).
    PlusDm {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Minus directional movement (Wilder sum).
    MinusDm {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Money flow index.
    Mfi {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Rate of change, percent: 100·(c/c[t−n] − 1).
    Roc {
        /// Lag.
        #[serde(default = "p10")]
        period: usize,
    },
    /// Rate of change, fraction: (c − c[t−n])/c[t−n].
    Rocp {
        /// Lag.
        #[serde(default = "p10")]
        period: usize,
    },
    /// Momentum: c − c[t−n].
    Mom {
        /// Lag.
        #[serde(default = "p10")]
        period: usize,
    },
    /// Absolute price oscillator with SMAs: fast − slow.
    Apo {
        /// Fast SMA.
        #[serde(default = "p12")]
        fast: usize,
        /// Slow SMA.
        #[serde(default = "p26")]
        slow: usize,
    },
    /// Percentage price oscillator with SMAs: 100·(fast − slow)/slow.
    Ppo {
        /// Fast SMA.
        #[serde(default = "p12")]
        fast: usize,
        /// Slow SMA.
        #[serde(default = "p26")]
        slow: usize,
    },
    /// Ultimate oscillator.
    Ultosc {
        /// Short window (weight 4).
        #[serde(default = "p7")]
        p1: usize,
        /// Middle window (weight 2).
        #[serde(default = "p14")]
        p2: usize,
        /// Long window (weight 1).
        #[serde(default = "p28")]
        p3: usize,
    },
    /// Aroon down and up.
    Aroon {
        /// Window (the last n+1 bars).
        #[serde(default = "p14")]
        period: usize,
    },
    /// Aroon oscillator: up − down.
    Aroonosc {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Balance of power.
    Bop,
    /// Wilder's average true range.
    Atr {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// ATR as a percent of the close.
    Natr {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// True range (NaN on the first bar).
    Trange,
    /// On-balance volume.
    Obv,
    /// Chaikin accumulation/distribution line.
    Ad,
    /// Chaikin A/D oscillator.
    Adosc {
        /// Fast EMA.
        #[serde(default = "p3")]
        fast: usize,
        /// Slow EMA.
        #[serde(default = "p10")]
        slow: usize,
    },
    /// Population standard deviation times `nbdev`.
    Stddev {
        /// Window.
        #[serde(default = "p5")]
        period: usize,
        /// Multiplier.
        #[serde(default = "one")]
        nbdev: f64,
    },
    /// Population variance (`nbdev` only names the column, as in TA-Lib).
    Var {
        /// Window.
        #[serde(default = "p5")]
        period: usize,
        /// Kept for TA-Lib's column name.
        #[serde(default = "one")]
        nbdev: f64,
    },
    /// Least-squares line's value at the current bar.
    Linearreg {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Least-squares slope per bar.
    LinearregSlope {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Least-squares value at the oldest bar of the window.
    LinearregIntercept {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Slope as an angle in degrees.
    LinearregAngle {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Time series forecast: the line one bar ahead.
    Tsf {
        /// Window.
        #[serde(default = "p14")]
        period: usize,
    },
    /// Pearson correlation of high with low.
    Correl {
        /// Window.
        #[serde(default = "p30")]
        period: usize,
    },
    /// Beta of the low's returns on the high's.
    Beta {
        /// Window (returns).
        #[serde(default = "p5")]
        period: usize,
    },
    /// (o + h + l + c)/4.
    Avgprice,
    /// (h + l)/2.
    Medprice,
    /// (h + l + c)/3.
    Typprice,
    /// (h + l + 2c)/4.
    Wclprice,
    /// `ln(close[t] / close[t-1])`.
    LogReturn,
    /// Annualized (√252) sample deviation (ddof 1) of the last `period` log returns.
    Volatility {
        /// Number of returns.
        #[serde(default = "p30")]
        period: usize,
    },
}

fn p3() -> usize {
    3
}
fn p5() -> usize {
    5
}
fn p7() -> usize {
    7
}
fn p9() -> usize {
    9
}
fn p10() -> usize {
    10
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
fn p28() -> usize {
    28
}
fn p30() -> usize {
    30
}
fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn sar_acc() -> f64 {
    0.02
}
fn sar_max() -> f64 {
    0.2
}

/// Formats a float parameter as TA-Lib column names do: `2` for 2.0, `0.02` otherwise.
fn param(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// What one kernel computes, with its parameters; equal keys share a kernel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Copy, PartialEq, Eq, Hash)]
enum Key {
    Sma(usize),
    Ema(usize),
    Wma(usize),
    Dema(usize),
    Tema(usize),
    Trima(usize),
    Kama(usize),
    Trix(usize),
    Bbands(usize, u64),
    Sar(u64, u64),
    Midpoint(usize),
    Midprice(usize),
    GainLoss(usize),
    Macd(usize, usize, usize),
    Stoch(usize, usize, usize),
    StochF(usize, usize),
    StochRsi(usize, usize, usize),
    WillR(usize),
    Cci(usize),
    Dmi(usize),
    Mfi(usize),
    Change(usize),
    PriceOsc(usize, usize),
    UltOsc(usize, usize, usize),
    Aroon(usize),
    Bop,
    Atr(usize),
    TRange,
    Obv,
    Ad,
    Adosc(usize, usize),
    Var(usize),
    LinReg(usize),
    Correl(usize),
    Beta(usize),
    Price,
    LogRet,
    Vol(usize),
}

/// One declared output: its column name, the kernel that computes it, which of the kernel's
/// outputs it is, and a factor (STDDEV's `nbdev`).
struct Output {
    name: String,
    key: Key,
    slot: usize,
    scale: f64,
}

impl FeatureSpec {
    fn outputs(&self) -> Vec<Output> {
        let o = |name: String, key: Key, slot: usize| Output {
            name,
            key,
            slot,
            scale: 1.0,
        };
        let bits = f64::to_bits;
        match *self {
            FeatureSpec::Sma { period: n } => vec![o(format!("SMA_{n}"), Key::Sma(n), 0)],
            FeatureSpec::Ema { period: n } => vec![o(format!("EMA_{n}"), Key::Ema(n), 0)],
            FeatureSpec::Wma { period: n } => vec![o(format!("WMA_{n}"), Key::Wma(n), 0)],
            FeatureSpec::Dema { period: n } => vec![o(format!("DEMA_{n}"), Key::Dema(n), 0)],
            FeatureSpec::Tema { period: n } => vec![o(format!("TEMA_{n}"), Key::Tema(n), 0)],
            FeatureSpec::Trima { period: n } => vec![o(format!("TRIMA_{n}"), Key::Trima(n), 0)],
            FeatureSpec::Kama { period: n } => vec![o(format!("KAMA_{n}"), Key::Kama(n), 0)],
            FeatureSpec::Trix { period: n } => vec![o(format!("TRIX_{n}"), Key::Trix(n), 0)],
            FeatureSpec::Bbands { period: n, nbdev } => ["upper", "middle", "lower"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("BBANDS_{n}_{}_{s}", param(nbdev)),
                        Key::Bbands(n, bits(nbdev)),
                        i,
                    )
                })
                .collect(),
            FeatureSpec::Sar {
                acceleration: a,
                maximum: m,
            } => {
                vec![o(
                    format!("SAR_{}_{}", param(a), param(m)),
                    Key::Sar(bits(a), bits(m)),
                    0,
                )]
            }
            FeatureSpec::Midpoint { period: n } => {
                vec![o(format!("MIDPOINT_{n}"), Key::Midpoint(n), 0)]
            }
            FeatureSpec::Midprice { period: n } => {
                vec![o(format!("MIDPRICE_{n}"), Key::Midprice(n), 0)]
            }
            FeatureSpec::Rsi { period: n } => vec![o(format!("RSI_{n}"), Key::GainLoss(n), 0)],
            FeatureSpec::Cmo { period: n } => vec![o(format!("CMO_{n}"), Key::GainLoss(n), 1)],
            FeatureSpec::Macd { fast, slow, signal } => ["macd", "signal", "hist"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("MACD_{fast}_{slow}_{signal}_{s}"),
                        Key::Macd(fast, slow, signal),
                        i,
                    )
                })
                .collect(),
            FeatureSpec::Stoch {
                fastk,
                slowk,
                slowd,
            } => ["slowk", "slowd"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("STOCH_{fastk}_{slowk}_{slowd}_{s}"),
                        Key::Stoch(fastk, slowk, slowd),
                        i,
                    )
                })
                .collect(),
            FeatureSpec::Stochf { fastk, fastd } => ["fastk", "fastd"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("STOCHF_{fastk}_{fastd}_{s}"),
                        Key::StochF(fastk, fastd),
                        i,
                    )
                })
                .collect(),
            FeatureSpec::Stochrsi {
                period,
                fastk,
                fastd,
            } => ["fastk", "fastd"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("STOCHRSI_{period}_{fastk}_{fastd}_{s}"),
                        Key::StochRsi(period, fastk, fastd),
                        i,
                    )
                })
                .collect(),
            FeatureSpec::Willr { period: n } => vec![o(format!("WILLR_{n}"), Key::WillR(n), 0)],
            FeatureSpec::Cci { period: n } => vec![o(format!("CCI_{n}"), Key::Cci(n), 0)],
            FeatureSpec::PlusDm { period: n } => vec![o(format!("PLUS_DM_{n}"), Key::Dmi(n), 0)],
            FeatureSpec::MinusDm { period: n } => vec![o(format!("MINUS_DM_{n}"), Key::Dmi(n), 1)],
            FeatureSpec::PlusDi { period: n } => vec![o(format!("PLUS_DI_{n}"), Key::Dmi(n), 2)],
            FeatureSpec::MinusDi { period: n } => vec![o(format!("MINUS_DI_{n}"), Key::Dmi(n), 3)],
            FeatureSpec::Dx { period: n } => vec![o(format!("DX_{n}"), Key::Dmi(n), 4)],
            FeatureSpec::Adx { period: n } => vec![o(format!("ADX_{n}"), Key::Dmi(n), 5)],
            FeatureSpec::Adxr { period: n } => vec![o(format!("ADXR_{n}"), Key::Dmi(n), 6)],
            FeatureSpec::Mfi { period: n } => vec![o(format!("MFI_{n}"), Key::Mfi(n), 0)],
            FeatureSpec::Roc { period: n } => vec![o(format!("ROC_{n}"), Key::Change(n), 0)],
            FeatureSpec::Rocp { period: n } => vec![o(format!("ROCP_{n}"), Key::Change(n), 1)],
            FeatureSpec::Mom { period: n } => vec![o(format!("MOM_{n}"), Key::Change(n), 2)],
            FeatureSpec::Apo { fast, slow } => vec![o(
                format!("APO_{fast}_{slow}_SMA"),
                Key::PriceOsc(fast, slow),
                0,
            )],
            FeatureSpec::Ppo { fast, slow } => vec![o(
                format!("PPO_{fast}_{slow}_SMA"),
                Key::PriceOsc(fast, slow),
                1,
            )],
            FeatureSpec::Ultosc { p1, p2, p3 } => vec![o(
                format!("ULTOSC_{p1}_{p2}_{p3}"),
                Key::UltOsc(p1, p2, p3),
                0,
            )],
            FeatureSpec::Aroon { period: n } => vec![
                o(format!("AROON_{n}_down"), Key::Aroon(n), 0),
                o(format!("AROON_{n}_up"), Key::Aroon(n), 1),
            ],
            FeatureSpec::Aroonosc { period: n } => {
                vec![o(format!("AROONOSC_{n}"), Key::Aroon(n), 2)]
            }
            FeatureSpec::Bop => vec![o("BOP".into(), Key::Bop, 0)],
            FeatureSpec::Atr { period: n } => vec![o(format!("ATR_{n}"), Key::Atr(n), 0)],
            FeatureSpec::Natr { period: n } => vec![o(format!("NATR_{n}"), Key::Atr(n), 1)],
            FeatureSpec::Trange => vec![o("TRANGE".into(), Key::TRange, 0)],
            FeatureSpec::Obv => vec![o("OBV".into(), Key::Obv, 0)],
            FeatureSpec::Ad => vec![o("AD".into(), Key::Ad, 0)],
            FeatureSpec::Adosc { fast, slow } => {
                vec![o(format!("ADOSC_{fast}_{slow}"), Key::Adosc(fast, slow), 0)]
            }
            FeatureSpec::Stddev { period: n, nbdev } => vec![Output {
                name: format!("STDDEV_{n}_{}", param(nbdev)),
                key: Key::Var(n),
                slot: 1,
                scale: nbdev,
            }],
            FeatureSpec::Var { period: n, nbdev } => {
                vec![o(format!("VAR_{n}_{}", param(nbdev)), Key::Var(n), 0)]
            }
            FeatureSpec::Linearreg { period: n } => {
                vec![o(format!("LINEARREG_{n}"), Key::LinReg(n), 0)]
            }
            FeatureSpec::LinearregSlope { period: n } => {
                vec![o(format!("LINEARREG_SLOPE_{n}"), Key::LinReg(n), 1)]
            }
            FeatureSpec::LinearregIntercept { period: n } => {
                vec![o(format!("LINEARREG_INTERCEPT_{n}"), Key::LinReg(n), 2)]
            }
            FeatureSpec::LinearregAngle { period: n } => {
                vec![o(format!("LINEARREG_ANGLE_{n}"), Key::LinReg(n), 3)]
            }
            FeatureSpec::Tsf { period: n } => vec![o(format!("TSF_{n}"), Key::LinReg(n), 4)],
            FeatureSpec::Correl { period: n } => {
                vec![o(format!("CORREL_HL_{n}"), Key::Correl(n), 0)]
            }
            FeatureSpec::Beta { period: n } => vec![o(format!("BETA_HL_{n}"), Key::Beta(n), 0)],
            FeatureSpec::Avgprice => vec![o("AVGPRICE".into(), Key::Price, 0)],
            FeatureSpec::Medprice => vec![o("MEDPRICE".into(), Key::Price, 1)],
            FeatureSpec::Typprice => vec![o("TYPPRICE".into(), Key::Price, 2)],
            FeatureSpec::Wclprice => vec![o("WCLPRICE".into(), Key::Price, 3)],
            FeatureSpec::LogReturn => vec![o("LOGRET_1".into(), Key::LogRet, 0)],
            FeatureSpec::Volatility { period: n } => vec![o(format!("VOL_{n}"), Key::Vol(n), 0)],
        }
    }

    /// Output column names, as in the golden file (`SMA_10`, `MACD_12_26_9_signal`, ...).
    pub fn output_names(&self) -> Vec<String> {
        self.outputs().into_iter().map(|o| o.name).collect()
    }

    /// Checks parameters; the message starts with the offending parameter's name.
    ///
    /// # Errors
    /// A period below its minimum, or a non-finite or non-positive factor.
    pub fn validate(&self) -> Result<(), String> {
        let at_least = |name: &str, v: usize, min: usize| {
            if v >= min {
                Ok(())
            } else {
                Err(format!("{name} must be at least {min}, got {v}"))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive number, got {v}"))
            }
        };
        match *self {
            FeatureSpec::Sma { period }
            | FeatureSpec::Ema { period }
            | FeatureSpec::Wma { period }
            | FeatureSpec::Dema { period }
            | FeatureSpec::Tema { period }
            | FeatureSpec::Trima { period }
            | FeatureSpec::Kama { period }
            | FeatureSpec::Trix { period }
            | FeatureSpec::Rsi { period }
            | FeatureSpec::Cmo { period }
            | FeatureSpec::Atr { period }
            | FeatureSpec::Natr { period }
            | FeatureSpec::Mfi { period }
            | FeatureSpec::Roc { period }
            | FeatureSpec::Rocp { period }
            | FeatureSpec::Mom { period }
            | FeatureSpec::Aroon { period }
            | FeatureSpec::Aroonosc { period }
            | FeatureSpec::Beta { period }
            | FeatureSpec::Correl { period }
            | FeatureSpec::Var { period, .. } => at_least("period", period, 1),
            FeatureSpec::Midpoint { period }
            | FeatureSpec::Midprice { period }
            | FeatureSpec::Willr { period }
            | FeatureSpec::Cci { period }
            | FeatureSpec::Volatility { period }
            | FeatureSpec::Linearreg { period }
            | FeatureSpec::LinearregSlope { period }
            | FeatureSpec::LinearregIntercept { period }
            | FeatureSpec::LinearregAngle { period }
            | FeatureSpec::Tsf { period }
            | FeatureSpec::Adx { period }
            | FeatureSpec::Adxr { period }
            | FeatureSpec::Dx { period }
            | FeatureSpec::PlusDi { period }
            | FeatureSpec::MinusDi { period }
            | FeatureSpec::PlusDm { period }
            | FeatureSpec::MinusDm { period } => at_least("period", period, 2),
            FeatureSpec::Bbands { period, nbdev } => {
                at_least("period", period, 2)?;
                positive("nbdev", nbdev)
            }
            FeatureSpec::Stddev { period, nbdev } => {
                at_least("period", period, 1)?;
                positive("nbdev", nbdev)
            }
            FeatureSpec::Sar {
                acceleration,
                maximum,
            } => {
                positive("acceleration", acceleration)?;
                positive("maximum", maximum)?;
                if acceleration > maximum {
                    Err(format!(
                        "acceleration ({acceleration}) must not exceed maximum ({maximum})"
                    ))
                } else {
                    Ok(())
                }
            }
            FeatureSpec::Macd { fast, slow, signal } => {
                at_least("fast", fast, 2)?;
                at_least("slow", slow, 2)?;
                at_least("signal", signal, 1)?;
                if fast > slow {
                    Err(format!("fast ({fast}) must not exceed slow ({slow})"))
                } else {
                    Ok(())
                }
            }
            FeatureSpec::Apo { fast, slow } | FeatureSpec::Ppo { fast, slow } => {
                at_least("fast", fast, 1)?;
                at_least("slow", slow, 1)
            }
            FeatureSpec::Adosc { fast, slow } => {
                at_least("fast", fast, 1)?;
                at_least("slow", slow, 1)
            }
            FeatureSpec::Stoch {
                fastk,
                slowk,
                slowd,
            } => {
                at_least("fastk", fastk, 1)?;
                at_least("slowk", slowk, 1)?;
                at_least("slowd", slowd, 1)
            }
            FeatureSpec::Stochf { fastk, fastd } => {
                at_least("fastk", fastk, 1)?;
                at_least("fastd", fastd, 1)
            }
            FeatureSpec::Stochrsi {
                period,
                fastk,
                fastd,
            } => {
                at_least("period", period, 1)?;
                at_least("fastk", fastk, 1)?;
                at_least("fastd", fastd, 1)
            }
            FeatureSpec::Ultosc { p1, p2, p3 } => {
                at_least("p1", p1, 1)?;
                at_least("p2", p2, 1)?;
                at_least("p3", p3, 1)
            }
            FeatureSpec::Bop
            | FeatureSpec::Trange
            | FeatureSpec::Obv
            | FeatureSpec::Ad
            | FeatureSpec::Avgprice
            | FeatureSpec::Medprice
            | FeatureSpec::Typprice
            | FeatureSpec::Wclprice
            | FeatureSpec::LogReturn => Ok(()),
        }
    }
}

/// The standard set: TA-Lib's outputs with its default parameters (and the log return), in the
/// column order of `tests/fixtures/golden/goog_daily_talib.csv` — 68 columns.
pub fn talib_standard() -> Vec<FeatureSpec> {
    use FeatureSpec as F;
    vec![
        F::Sma { period: 20 },
        F::Ema { period: 20 },
        F::Ema { period: 12 },
        F::Ema { period: 26 },
        F::Wma { period: 20 },
        F::Dema { period: 30 },
        F::Tema { period: 30 },
        F::Trima { period: 30 },
        F::Kama { period: 30 },
        F::Bbands {
            period: 20,
            nbdev: 2.0,
        },
        F::Sar {
            acceleration: 0.02,
            maximum: 0.2,
        },
        F::Midpoint { period: 14 },
        F::Midprice { period: 14 },
        F::Rsi { period: 14 },
        F::Macd {
            fast: 12,
            slow: 26,
            signal: 9,
        },
        F::Stoch {
            fastk: 5,
            slowk: 3,
            slowd: 3,
        },
        F::Stochf { fastk: 5, fastd: 3 },
        F::Stochrsi {
            period: 14,
            fastk: 5,
            fastd: 3,
        },
        F::Willr { period: 14 },
        F::Cci { period: 14 },
        F::Adx { period: 14 },
        F::Adxr { period: 14 },
        F::Dx { period: 14 },
        F::PlusDi { period: 14 },
        F::MinusDi { period: 14 },
        F::PlusDm { period: 14 },
        F::MinusDm { period: 14 },
        F::Mfi { period: 14 },
        F::Roc { period: 10 },
        F::Rocp { period: 10 },
        F::Mom { period: 10 },
        F::Cmo { period: 14 },
        F::Ppo { fast: 12, slow: 26 },
        F::Apo { fast: 12, slow: 26 },
        F::Trix { period: 30 },
        F::Ultosc {
            p1: 7,
            p2: 14,
            p3: 28,
        },
        F::Aroon { period: 14 },
        F::Aroonosc { period: 14 },
        F::Bop,
        F::Atr { period: 14 },
        F::Natr { period: 14 },
        F::Trange,
        F::Obv,
        F::Ad,
        F::Adosc { fast: 3, slow: 10 },
        F::Stddev {
            period: 5,
            nbdev: 1.0,
        },
        F::Stddev {
            period: 20,
            nbdev: 1.0,
        },
        F::Var {
            period: 5,
            nbdev: 1.0,
        },
        F::Linearreg { period: 14 },
        F::LinearregSlope { period: 14 },
        F::LinearregIntercept { period: 14 },
        F::LinearregAngle { period: 14 },
        F::Tsf { period: 14 },
        F::Correl { period: 30 },
        F::Beta { period: 5 },
        F::Avgprice,
        F::Medprice,
        F::Typprice,
        F::Wclprice,
        F::LogReturn,
    ]
}

/// One kernel of any kind (enum dispatch keeps the per-bar loop free of virtual calls).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Kernel {
    Sma(Sma),
    Ema(Ema),
    Wma(Wma),
    MultiEma(MultiEma),
    Trima(Trima),
    Kama(Kama),
    Trix(Trix),
    Bbands(Bbands),
    Sar(Sar),
    Midpoint(Mid),
    Midprice(Mid),
    GainLoss(Rsi),
    Macd(Macd),
    Stoch(Stoch),
    StochF(StochF),
    StochRsi(StochRsi),
    WillR(WillR),
    Cci(Cci),
    Dmi(Dmi),
    Mfi(Mfi),
    Change(Change),
    PriceOsc(PriceOsc),
    UltOsc(UltOsc),
    Aroon(Aroon),
    Bop,
    Atr(Atr),
    TRange(TrueRange),
    Obv(Obv),
    Ad(Ad),
    Adosc(Adosc),
    Var(Var),
    LinReg(LinReg),
    Correl(Correl),
    Beta(Beta),
    Price,
    LogRet(LogReturn),
    Vol(Volatility),
}

fn put<const N: usize>(out: &mut [f64], v: Option<[f64; N]>) {
    match v {
        Some(v) => out[..N].copy_from_slice(&v),
        None => out[..N].fill(f64::NAN),
    }
}

impl Kernel {
    fn new(key: Key) -> Kernel {
        let f = f64::from_bits;
        match key {
            Key::Sma(n) => Kernel::Sma(Sma::new(n)),
            Key::Ema(n) => Kernel::Ema(Ema::new(n)),
            Key::Wma(n) => Kernel::Wma(Wma::new(n)),
            Key::Dema(n) => Kernel::MultiEma(MultiEma::new(n, false)),
            Key::Tema(n) => Kernel::MultiEma(MultiEma::new(n, true)),
            Key::Trima(n) => Kernel::Trima(Trima::new(n)),
            Key::Kama(n) => Kernel::Kama(Kama::new(n)),
            Key::Trix(n) => Kernel::Trix(Trix::new(n)),
            Key::Bbands(n, k) => Kernel::Bbands(Bbands::new(n, f(k))),
            Key::Sar(a, m) => Kernel::Sar(Sar::new(f(a), f(m))),
            Key::Midpoint(n) => Kernel::Midpoint(Mid::new(n)),
            Key::Midprice(n) => Kernel::Midprice(Mid::new(n)),
            Key::GainLoss(n) => Kernel::GainLoss(Rsi::new(n)),
            Key::Macd(a, b, c) => Kernel::Macd(Macd::new(a, b, c)),
            Key::Stoch(a, b, c) => Kernel::Stoch(Stoch::new(a, b, c)),
            Key::StochF(a, b) => Kernel::StochF(StochF::new(a, b)),
            Key::StochRsi(n, a, b) => Kernel::StochRsi(StochRsi::new(n, a, b)),
            Key::WillR(n) => Kernel::WillR(WillR::new(n)),
            Key::Cci(n) => Kernel::Cci(Cci::new(n)),
            Key::Dmi(n) => Kernel::Dmi(Dmi::new(n)),
            Key::Mfi(n) => Kernel::Mfi(Mfi::new(n)),
            Key::Change(n) => Kernel::Change(Change::new(n)),
            Key::PriceOsc(a, b) => Kernel::PriceOsc(PriceOsc::new(a, b)),
            Key::UltOsc(a, b, c) => Kernel::UltOsc(UltOsc::new(a, b, c)),
            Key::Aroon(n) => Kernel::Aroon(Aroon::new(n)),
            Key::Bop => Kernel::Bop,
            Key::Atr(n) => Kernel::Atr(Atr::new(n)),
            Key::TRange => Kernel::TRange(TrueRange::default()),
            Key::Obv => Kernel::Obv(Obv::default()),
            Key::Ad => Kernel::Ad(Ad::default()),
            Key::Adosc(a, b) => Kernel::Adosc(Adosc::new(a, b)),
            Key::Var(n) => Kernel::Var(Var::new(n)),
            Key::LinReg(n) => Kernel::LinReg(LinReg::new(n)),
            Key::Correl(n) => Kernel::Correl(Correl::new(n)),
            Key::Beta(n) => Kernel::Beta(Beta::new(n)),
            Key::Price => Kernel::Price,
            Key::LogRet => Kernel::LogRet(LogReturn::default()),
            Key::Vol(n) => Kernel::Vol(Volatility::new(n)),
        }
    }

    /// Number of outputs.
    fn width(&self) -> usize {
        match self {
            Kernel::Dmi(_) => 7,
            Kernel::LinReg(_) => 5,
            Kernel::Price => 4,
            Kernel::Bbands(_) | Kernel::Macd(_) | Kernel::Change(_) | Kernel::Aroon(_) => 3,
            Kernel::GainLoss(_)
            | Kernel::Stoch(_)
            | Kernel::StochF(_)
            | Kernel::StochRsi(_)
            | Kernel::PriceOsc(_)
            | Kernel::Atr(_)
            | Kernel::Var(_) => 2,
            _ => 1,
        }
    }

    /// Feeds one bar and writes `width()` outputs (NaN while warming up) into `out`.
    fn update(&mut self, b: &Ohlcv, out: &mut [f64]) {
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let (o, h, l, c, v) = (b.open, b.high, b.low, b.close, b.volume);
        match self {
            Kernel::Sma(k) => out[0] = nan(k.update(c)),
            Kernel::Ema(k) => out[0] = nan(k.update(c)),
            Kernel::Wma(k) => out[0] = nan(k.update(c)),
            Kernel::MultiEma(k) => out[0] = nan(k.update(c)),
            Kernel::Trima(k) => out[0] = nan(k.update(c)),
            Kernel::Kama(k) => out[0] = nan(k.update(c)),
            Kernel::Trix(k) => out[0] = nan(k.update(c)),
            Kernel::Bbands(k) => put(out, k.update(c).map(|b| [b.upper, b.middle, b.lower])),
            Kernel::Sar(k) => out[0] = nan(k.update(h, l)),
            Kernel::Midpoint(k) => out[0] = nan(k.update(c, c)),
            Kernel::Midprice(k) => out[0] = nan(k.update(h, l)),
            Kernel::GainLoss(k) => put(out, k.update_both(c)),
            Kernel::Macd(k) => put(out, k.update(c).map(|m| [m.macd, m.signal, m.hist])),
            Kernel::Stoch(k) => put(out, k.update(h, l, c)),
            Kernel::StochF(k) => put(out, k.update(h, l, c)),
            Kernel::StochRsi(k) => put(out, k.update(c)),
            Kernel::WillR(k) => out[0] = nan(k.update(h, l, c)),
            Kernel::Cci(k) => out[0] = nan(k.update(h, l, c)),
            Kernel::Dmi(k) => out[..7].copy_from_slice(&k.update(h, l, c)),
            Kernel::Mfi(k) => out[0] = nan(k.update(h, l, c, v)),
            Kernel::Change(k) => put(out, k.update(c)),
            Kernel::PriceOsc(k) => put(out, k.update(c)),
            Kernel::UltOsc(k) => out[0] = nan(k.update(h, l, c)),
            Kernel::Aroon(k) => put(out, k.update(h, l)),
            Kernel::Bop => out[0] = bop(o, h, l, c),
            Kernel::Atr(k) => put(
                out,
                k.update(h, l, c)
                    .map(|a| [a, if is_zero(c) { 0.0 } else { (a / c) * 100.0 }]),
            ),
            Kernel::TRange(k) => out[0] = nan(k.update(h, l, c)),
            Kernel::Obv(k) => out[0] = k.update(c, v),
            Kernel::Ad(k) => out[0] = k.update(h, l, c, v),
            Kernel::Adosc(k) => out[0] = nan(k.update(h, l, c, v)),
            Kernel::Var(k) => put(out, k.update(c)),
            Kernel::LinReg(k) => put(out, k.update(c)),
            Kernel::Correl(k) => out[0] = nan(k.update(h, l)),
            Kernel::Beta(k) => out[0] = nan(k.update(h, l)),
            Kernel::Price => {
                out[0] = (h + l + c + o) / 4.0;
                out[1] = (h + l) / 2.0;
                out[2] = (h + l + c) / 3.0;
                out[3] = (h + l + (c * 2.0)) / 4.0;
            }
            Kernel::LogRet(k) => out[0] = nan(k.update(c)),
            Kernel::Vol(k) => out[0] = nan(k.update(c)),
        }
    }

    /// Back to the state before the first bar.
    fn reset(&mut self) {
        match self {
            Kernel::Sma(k) => k.reset(),
            Kernel::Ema(k) => k.reset(),
            Kernel::Wma(k) => k.reset(),
            Kernel::MultiEma(k) => k.reset(),
            Kernel::Trima(k) => k.reset(),
            Kernel::Kama(k) => k.reset(),
            Kernel::Trix(k) => k.reset(),
            Kernel::Bbands(k) => k.reset(),
            Kernel::Sar(k) => k.reset(),
            Kernel::Midpoint(k) | Kernel::Midprice(k) => k.reset(),
            Kernel::GainLoss(k) => k.reset(),
            Kernel::Macd(k) => k.reset(),
            Kernel::Stoch(k) => k.reset(),
            Kernel::StochF(k) => k.reset(),
            Kernel::StochRsi(k) => k.reset(),
            Kernel::WillR(k) => k.reset(),
            Kernel::Cci(k) => k.reset(),
            Kernel::Dmi(k) => k.reset(),
            Kernel::Mfi(k) => k.reset(),
            Kernel::Change(k) => k.reset(),
            Kernel::PriceOsc(k) => k.reset(),
            Kernel::UltOsc(k) => k.reset(),
            Kernel::Aroon(k) => k.reset(),
            Kernel::Atr(k) => k.reset(),
            Kernel::TRange(k) => k.reset(),
            Kernel::Obv(k) => k.reset(),
            Kernel::Ad(k) => k.reset(),
            Kernel::Adosc(k) => k.reset(),
            Kernel::Var(k) => k.reset(),
            Kernel::LinReg(k) => k.reset(),
            Kernel::Correl(k) => k.reset(),
            Kernel::Beta(k) => k.reset(),
            Kernel::LogRet(k) => k.reset(),
            Kernel::Vol(k) => k.reset(),
            Kernel::Bop | Kernel::Price => {}
        }
    }
}

/// The kernels of one ticker, planned so that features computed by the same kernel share it,
/// writing one row of outputs per bar in declaration order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureSet {
    kernels: Vec<(Kernel, usize)>,
    scratch: Vec<f64>,
    map: Vec<(usize, f64)>,
}

impl FeatureSet {
    /// Plans kernels for the given specs.
    pub fn new(specs: &[FeatureSpec]) -> Self {
        let mut keys: Vec<Key> = Vec::new();
        let mut kernels: Vec<(Kernel, usize)> = Vec::new();
        let mut offset = 0;
        let mut map = Vec::new();
        for out in specs.iter().flat_map(FeatureSpec::outputs) {
            let at = match keys.iter().position(|k| *k == out.key) {
                Some(i) => kernels[i].1,
                None => {
                    let k = Kernel::new(out.key);
                    let at = offset;
                    offset += k.width();
                    keys.push(out.key);
                    kernels.push((k, at));
                    at
                }
            };
            map.push((at + out.slot, out.scale));
        }
        FeatureSet {
            kernels,
            scratch: vec![f64::NAN; offset],
            map,
        }
    }

    /// Total number of output columns.
    pub fn width(&self) -> usize {
        self.map.len()
    }

    /// Feeds one bar; `out` must have `width()` slots.
    ///
    /// A bar with a non-finite field is skipped: its outputs are NaN and every kernel continues
    /// from the previous bar as if the bar had never come (the same as a gap in the data), so one
    /// bad value costs one row instead of poisoning running sums forever.
    pub fn update(&mut self, bar: &Ohlcv, out: &mut [f64]) {
        if ![bar.open, bar.high, bar.low, bar.close, bar.volume]
            .iter()
            .all(|v| v.is_finite())
        {
            out.fill(f64::NAN);
            return;
        }
        for (k, at) in &mut self.kernels {
            let w = k.width();
            k.update(bar, &mut self.scratch[*at..*at + w]);
        }
        for (o, &(slot, scale)) in out.iter_mut().zip(&self.map) {
            let v = self.scratch[slot];
            *o = if scale == 1.0 { v } else { v * scale };
        }
    }

    /// Resets every kernel.
    pub fn reset(&mut self) {
        self.kernels.iter_mut().for_each(|(k, _)| k.reset());
    }
}

/// TA-Lib's `TA_IS_ZERO`: |v| < 1e-8.
pub(crate) fn is_zero(v: f64) -> bool {
    -0.000_000_01 < v && v < 0.000_000_01
}

/// A fixed-capacity ring of the last `n` values.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
        self.pos += 1;
        if self.pos == self.buf.len() {
            self.pos = 0;
        }
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
    pub(crate) fn ordered(&self) -> impl Iterator<Item = f64> + '_ {
        let cap = self.buf.len();
        let start = (self.pos + cap - self.len) % cap;
        (0..self.len).map(move |i| self.buf[(start + i) % cap])
    }
    pub(crate) fn clear(&mut self) {
        self.pos = 0;
        self.len = 0;
    }
    /// The values in storage order (TA-Lib's circular buffers sum in this order).
    pub(crate) fn storage(&self) -> &[f64] {
        &self.buf[..self.len]
    }
}

/// A rolling total with TA-Lib's order: add the new value, report, then drop the trailing one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RollingTotal {
    ring: Ring,
    total: f64,
}

impl RollingTotal {
    pub(crate) fn new(n: usize) -> Self {
        RollingTotal {
            ring: Ring::new(n),
            total: 0.0,
        }
    }
    /// The total of the last n values, once n have been seen.
    pub(crate) fn update(&mut self, x: f64) -> Option<f64> {
        self.ring.push(x);
        self.total += x;
        let old = self.ring.oldest()?;
        let out = self.total;
        self.total -= old;
        Some(out)
    }
    pub(crate) fn reset(&mut self) {
        self.ring.clear();
        self.total = 0.0;
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
        assert_eq!(r.ordered().collect::<Vec<_>>(), vec![2.0, 3.0]);
    }
}
