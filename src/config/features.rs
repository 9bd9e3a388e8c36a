//! The feature schema of a pipeline file: which indicators a `[[features]]` entry may name, their
//! parameters with TA-Lib's defaults, and the rules a parameter must satisfy. The kernels that
//! compute them live in `operators::indicators`, which plans a list of these into kernels.

use serde::Deserialize;

/// The longest window a feature may declare (TA-Lib's bound for its periods).
pub const MAX_PERIOD: usize = 100_000;

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
    Bop {},
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
    Trange {},
    /// On-balance volume.
    Obv {},
    /// Chaikin accumulation/distribution line.
    Ad {},
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
    Avgprice {},
    /// (h + l)/2.
    Medprice {},
    /// (h + l + c)/3.
    Typprice {},
    /// (h + l + 2c)/4.
    Wclprice {},
    /// `ln(close[t] / close[t-1])`.
    LogReturn {},
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

impl FeatureSpec {
    /// Checks parameters; the message starts with the offending parameter's name.
    ///
    /// # Errors
    /// A period below its minimum, or a non-finite or non-positive factor.
    pub fn validate(&self) -> Result<(), String> {
        // At most TA-Lib's own bound: a period of 1e9 would ask for gigabytes per ticker.
        let at_least = |name: &str, v: usize, min: usize| {
            if (min..=MAX_PERIOD).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be from {min} to {MAX_PERIOD}, got {v}"
                ))
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
            FeatureSpec::Bop {}
            | FeatureSpec::Trange {}
            | FeatureSpec::Obv {}
            | FeatureSpec::Ad {}
            | FeatureSpec::Avgprice {}
            | FeatureSpec::Medprice {}
            | FeatureSpec::Typprice {}
            | FeatureSpec::Wclprice {}
            | FeatureSpec::LogReturn {} => Ok(()),
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
        F::Bop {},
        F::Atr { period: 14 },
        F::Natr { period: 14 },
        F::Trange {},
        F::Obv {},
        F::Ad {},
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
        F::Avgprice {},
        F::Medprice {},
        F::Typprice {},
        F::Wclprice {},
        F::LogReturn {},
    ]
}
