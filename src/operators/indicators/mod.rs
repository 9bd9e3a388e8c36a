//! Indicator kernels: plain incremental state machines, no I/O, no clock.
//!
//! Each kernel takes one bar at a time, answers NaN until warm, and can `reset`. They follow
//! TA-Lib's conventions and order of operations (see `tests/fixtures/golden/README.md`) so that
//! values agree with TA-Lib to 1e-9 relative, except where a rewriting saves a division, the
//! scarcest unit on the per-bar path, at the cost of an ulp or two: a constant divisor becomes a
//! stored reciprocal (SMA, WMA, ATR, DMI, VAR, CCI, CORREL, LINEARREG, typical prices), fast %K
//! and WILLR divide once, LOGRET is a difference of logarithms. Independent pairs of divisions
//! share one `divpd` and keep TA-Lib's bits. A [`FeatureSet`] plans the declared features into
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
pub use bbands::{Bbands, Mean};
pub use ema::Ema;
pub use macd::Macd;
pub use momentum::{
    Aroon, Cci, Change, Dmi, HighLow, Mfi, PriceOsc, RsiFamily, Stochastic, UltOsc, bop,
};
pub use overlap::{EmaChain, Kama, Mid, Sar, Trima, Wma};
pub use returns::{LogReturn, Volatility};
pub use rsi::Rsi;
pub use sma::Sma;
pub use statistics::{Beta, Correl, LinReg, Var};
pub use volume::{Ad, Adosc, Obv};
pub use window::MaxMin;

pub use crate::config::{FeatureSpec, MAX_PERIOD, talib_standard};

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
    /// SMA(n), with BBANDS(n, nbdev bits) when declared.
    Mean(usize, Option<u64>),
    Ema(usize),
    Wma(usize),
    EmaChain(usize),
    Trima(usize),
    Kama(usize),
    Sar(u64, u64),
    Midpoint(usize),
    HiLo(usize),
    /// RSI/CMO(n), with STOCHRSI's (fastk, fastd) when declared.
    Rsi(usize, Option<(usize, usize)>),
    Macd(usize, usize, usize),
    /// Fast %K(n), with STOCH's (slowk, slowd) and STOCHF's fastd when declared.
    Stochastic(usize, Option<(usize, usize)>, Option<usize>),
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

impl Key {
    /// One key whose kernel computes what both `self` and `other` do, when one kernel can serve
    /// both (equal keys, or members of one family with compatible parameters).
    fn merge(self, other: Key) -> Option<Key> {
        /// Both parts, when they agree or one is absent.
        fn join<T: PartialEq>(a: Option<T>, b: Option<T>) -> Option<Option<T>> {
            match (a, b) {
                (Some(x), Some(y)) => (x == y).then_some(Some(x)),
                (x, None) => Some(x),
                (None, y) => Some(y),
            }
        }
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Key::Mean(n, a), Key::Mean(m, b)) if n == m => Some(Key::Mean(n, join(a, b)?)),
            (Key::Rsi(n, a), Key::Rsi(m, b)) if n == m => Some(Key::Rsi(n, join(a, b)?)),
            (Key::Stochastic(n, a, c), Key::Stochastic(m, b, d)) if n == m => {
                Some(Key::Stochastic(n, join(a, b)?, join(c, d)?))
            }
            _ => None,
        }
    }
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
            FeatureSpec::Sma { period: n } => vec![o(format!("SMA_{n}"), Key::Mean(n, None), 0)],
            FeatureSpec::Ema { period: n } => vec![o(format!("EMA_{n}"), Key::Ema(n), 0)],
            FeatureSpec::Wma { period: n } => vec![o(format!("WMA_{n}"), Key::Wma(n), 0)],
            FeatureSpec::Dema { period: n } => vec![o(format!("DEMA_{n}"), Key::EmaChain(n), 0)],
            FeatureSpec::Tema { period: n } => vec![o(format!("TEMA_{n}"), Key::EmaChain(n), 1)],
            FeatureSpec::Trima { period: n } => vec![o(format!("TRIMA_{n}"), Key::Trima(n), 0)],
            FeatureSpec::Kama { period: n } => vec![o(format!("KAMA_{n}"), Key::Kama(n), 0)],
            FeatureSpec::Trix { period: n } => vec![o(format!("TRIX_{n}"), Key::EmaChain(n), 2)],
            FeatureSpec::Bbands { period: n, nbdev } => ["upper", "middle", "lower"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    o(
                        format!("BBANDS_{n}_{}_{s}", param(nbdev)),
                        Key::Mean(n, Some(bits(nbdev))),
                        i + 1,
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
                vec![o(format!("MIDPRICE_{n}"), Key::HiLo(n), 0)]
            }
            FeatureSpec::Rsi { period: n } => vec![o(format!("RSI_{n}"), Key::Rsi(n, None), 0)],
            FeatureSpec::Cmo { period: n } => vec![o(format!("CMO_{n}"), Key::Rsi(n, None), 1)],
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
                        Key::Stochastic(fastk, Some((slowk, slowd)), None),
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
                        Key::Stochastic(fastk, None, Some(fastd)),
                        i + 2,
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
                        Key::Rsi(period, Some((fastk, fastd))),
                        i + 2,
                    )
                })
                .collect(),
            FeatureSpec::Willr { period: n } => vec![o(format!("WILLR_{n}"), Key::HiLo(n), 1)],
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
            FeatureSpec::Bop {} => vec![o("BOP".into(), Key::Bop, 0)],
            FeatureSpec::Atr { period: n } => vec![o(format!("ATR_{n}"), Key::Atr(n), 0)],
            FeatureSpec::Natr { period: n } => vec![o(format!("NATR_{n}"), Key::Atr(n), 1)],
            FeatureSpec::Trange {} => vec![o("TRANGE".into(), Key::TRange, 0)],
            FeatureSpec::Obv {} => vec![o("OBV".into(), Key::Obv, 0)],
            FeatureSpec::Ad {} => vec![o("AD".into(), Key::Ad, 0)],
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
            FeatureSpec::Avgprice {} => vec![o("AVGPRICE".into(), Key::Price, 0)],
            FeatureSpec::Medprice {} => vec![o("MEDPRICE".into(), Key::Price, 1)],
            FeatureSpec::Typprice {} => vec![o("TYPPRICE".into(), Key::Price, 2)],
            FeatureSpec::Wclprice {} => vec![o("WCLPRICE".into(), Key::Price, 3)],
            FeatureSpec::LogReturn {} => vec![o("LOGRET_1".into(), Key::LogRet, 0)],
            FeatureSpec::Volatility { period: n } => vec![o(format!("VOL_{n}"), Key::Vol(n), 0)],
        }
    }

    /// Output column names, as in the golden file (`SMA_10`, `MACD_12_26_9_signal`, ...).
    pub fn output_names(&self) -> Vec<String> {
        self.outputs().into_iter().map(|o| o.name).collect()
    }
}

/// Where a kernel's outputs go in the row: one position per output.
type Slots = [u32; 7];

/// Writes a kernel's outputs (NaN for all while it warms up) to their positions.
#[inline(always)]
fn put<R: Cells + ?Sized, const N: usize>(row: &mut R, s: &Slots, v: Option<[f64; N]>) {
    let v = v.unwrap_or([f64::NAN; N]);
    for k in 0..N {
        row.set(s[k], v[k]);
    }
}

/// Writes a one-output kernel's value (NaN while it warms up) to its position.
#[inline(always)]
fn put1<R: Cells + ?Sized>(row: &mut R, s: &Slots, v: Option<f64>) {
    row.set(s[0], v.unwrap_or(f64::NAN));
}

/// Cells of a row that kernels write by position.
trait Cells {
    /// Sets cell `i`.
    fn set(&mut self, i: u32, v: f64);
}

/// Cells of a row.
impl Cells for [f64] {
    #[inline(always)]
    fn set(&mut self, i: u32, v: f64) {
        self[i as usize] = v;
    }
}

/// Counts the cells a kernel writes (the planner's probe of each kernel's number of outputs).
#[derive(Default)]
struct Recorder {
    written: usize,
}

impl Cells for Recorder {
    fn set(&mut self, i: u32, _: f64) {
        self.written = self.written.max(i as usize + 1);
    }
}

/// The state of a kernel that has none (BOP, the price transforms).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Stateless;

impl Stateless {
    fn reset(&mut self) {}
}

/// Declares the kernel kinds. Each kind gets a field of [`Kernels`] holding every kernel of that
/// kind with its output positions, a way to build one from its [`Key`], and its per-bar update.
/// One loop per kind (instead of one `match` per kernel) keeps the per-bar path free of indirect
/// jumps, and lets each loop inline its kernel.
macro_rules! kernel_kinds {
    ($( $field:ident: $ty:ty = $key:pat => $make:expr, |$k:ident, $b:ident, $row:ident, $s:ident| $update:expr; )*) => {
        /// The kernel kinds, numbered for [`Kernels::present`].
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum Kind {
            $( $field, )*
        }

        /// The planned kernels, grouped by kind.
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
        struct Kernels {
            /// One bit per kind that has kernels: a bar reads only their lists (with many tickers
            /// interleaved, each ticker's lists are cold, and reading every kind's would cost a
            /// dozen cache lines per bar).
            present: u64,
            $( $field: Vec<($ty, Slots)>, )*
        }

        impl Kernels {
            /// Adds the kernel for `key`, writing to `slots`.
            fn add(&mut self, key: Key, slots: Slots) {
                match key {
                    $( $key => {
                        self.present |= 1 << (Kind::$field as u32);
                        self.$field.push(($make, slots));
                    } )*
                }
            }

            /// How many kernels there are.
            #[cfg(test)]
            fn len(&self) -> usize {
                0 $( + self.$field.len() )*
            }

            /// Feeds one bar to every kernel; each writes its outputs (NaN while warming up) at
            /// its positions in `row`.
            #[inline(always)]
            fn update<R: Cells + ?Sized>(&mut self, bar: &Ohlcv, row: &mut R) {
                let present = self.present;
                $(
                    if present & (1 << (Kind::$field as u32)) != 0 {
                        for ($k, $s) in &mut self.$field {
                            let ($b, $row) = (bar, &mut *row);
                            $update;
                        }
                    }
                )*
            }

            /// Back to the state before the first bar.
            fn reset(&mut self) {
                $( self.$field.iter_mut().for_each(|(k, _)| k.reset()); )*
            }

            /// How many outputs each kernel writes, in update order: each kernel's copy is fed
            /// one bar with positions 0..7 into a [`Recorder`].
            fn arities(&self) -> Vec<usize> {
                let probe = Ohlcv { open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0 };
                let all: Slots = [0, 1, 2, 3, 4, 5, 6];
                let mut out = Vec::new();
                $(
                    for (kernel, _) in &self.$field {
                        let mut rec = Recorder::default();
                        let mut copy = kernel.clone();
                        let ($k, $b, $row, $s) = (&mut copy, &probe, &mut rec, &all);
                        $update;
                        out.push(rec.written);
                    }
                )*
                out
            }

            /// Every kernel's output positions, in update order.
            fn slots_mut(&mut self) -> Vec<&mut Slots> {
                let mut v = Vec::new();
                $( v.extend(self.$field.iter_mut().map(|(_, s)| s)); )*
                v
            }
        }
    };
}

kernel_kinds! {
    mean: Mean = Key::Mean(n, k) => Mean::new(n, k.map(f64::from_bits)),
        |k, b, row, s| put(row, s, Some(k.update(b.close)));
    ema: Ema = Key::Ema(n) => Ema::new(n), |k, b, row, s| put1(row, s, k.update(b.close));
    wma: Wma = Key::Wma(n) => Wma::new(n), |k, b, row, s| put1(row, s, k.update(b.close));
    ema_chain: EmaChain = Key::EmaChain(n) => EmaChain::new(n),
        |k, b, row, s| put(row, s, Some(k.update(b.close)));
    trima: Trima = Key::Trima(n) => Trima::new(n), |k, b, row, s| put1(row, s, k.update(b.close));
    kama: Kama = Key::Kama(n) => Kama::new(n), |k, b, row, s| put1(row, s, k.update(b.close));
    sar: Sar = Key::Sar(a, m) => Sar::new(f64::from_bits(a), f64::from_bits(m)),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low));
    midpoint: Mid = Key::Midpoint(n) => Mid::new(n),
        |k, b, row, s| put1(row, s, k.update(b.close, b.close));
    hilo: HighLow = Key::HiLo(n) => HighLow::new(n),
        |k, b, row, s| put(row, s, k.update(b.high, b.low, b.close));
    rsi: RsiFamily = Key::Rsi(n, st) => RsiFamily::new(n, st),
        |k, b, row, s| put(row, s, Some(k.update(b.close)));
    macd: Macd = Key::Macd(a, b, c) => Macd::new(a, b, c),
        |k, b, row, s| put(row, s, k.update(b.close).map(|m| [m.macd, m.signal, m.hist]));
    stochastic: Stochastic = Key::Stochastic(n, slow, fast) => Stochastic::new(n, slow, fast),
        |k, b, row, s| put(row, s, Some(k.update(b.high, b.low, b.close)));
    cci: Cci = Key::Cci(n) => Cci::new(n),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low, b.close));
    dmi: Dmi = Key::Dmi(n) => Dmi::new(n),
        |k, b, row, s| put(row, s, Some(k.update(b.high, b.low, b.close)));
    mfi: Mfi = Key::Mfi(n) => Mfi::new(n),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low, b.close, b.volume));
    change: Change = Key::Change(n) => Change::new(n), |k, b, row, s| put(row, s, k.update(b.close));
    price_osc: PriceOsc = Key::PriceOsc(a, b) => PriceOsc::new(a, b),
        |k, b, row, s| put(row, s, k.update(b.close));
    ult_osc: UltOsc = Key::UltOsc(a, b, c) => UltOsc::new(a, b, c),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low, b.close));
    aroon: Aroon = Key::Aroon(n) => Aroon::new(n), |k, b, row, s| put(row, s, k.update(b.high, b.low));
    bop: Stateless = Key::Bop => Stateless, |_k, b, row, s| {
        put1(row, s, Some(bop(b.open, b.high, b.low, b.close)))
    };
    atr: Atr = Key::Atr(n) => Atr::new(n), |k, b, row, s| {
        let c = b.close;
        let natr = |a: f64| [a, if is_zero(c) { 0.0 } else { (a / c) * 100.0 }];
        put(row, s, k.update(b.high, b.low, c).map(natr))
    };
    trange: TrueRange = Key::TRange => TrueRange::default(),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low, b.close));
    obv: Obv = Key::Obv => Obv::default(), |k, b, row, s| put1(row, s, Some(k.update(b.close, b.volume)));
    ad: Ad = Key::Ad => Ad::default(),
        |k, b, row, s| put1(row, s, Some(k.update(b.high, b.low, b.close, b.volume)));
    adosc: Adosc = Key::Adosc(a, b) => Adosc::new(a, b),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low, b.close, b.volume));
    var: Var = Key::Var(n) => Var::new(n), |k, b, row, s| put(row, s, k.update(b.close));
    linreg: LinReg = Key::LinReg(n) => LinReg::new(n), |k, b, row, s| put(row, s, k.update(b.close));
    correl: Correl = Key::Correl(n) => Correl::new(n),
        |k, b, row, s| put1(row, s, k.update(b.high, b.low));
    beta: Beta = Key::Beta(n) => Beta::new(n), |k, b, row, s| put1(row, s, k.update(b.high, b.low));
    price: Stateless = Key::Price => Stateless, |_k, b, row, s| {
        let (o, h, l, c) = (b.open, b.high, b.low, b.close);
        put(row, s, Some([(h + l + c + o) / 4.0, (h + l) / 2.0, (h + l + c) * THIRD, (h + l + (c * 2.0)) / 4.0]))
    };
    log_ret: LogReturn = Key::LogRet => LogReturn::default(), |k, b, row, s| put1(row, s, k.update(b.close));
    vol: Volatility = Key::Vol(n) => Volatility::new(n), |k, b, row, s| put1(row, s, k.update(b.close));
}

/// Every how many bars (of one ticker) the running sums of windowed kernels are summed afresh
/// (see [`FeatureSet::update`]). A power of two; each time costs one pass over each such
/// kernel's window, so a window of up to this many bars costs at most one addition per bar.
pub const REANCHOR_EVERY: u64 = 256;

impl Kernels {
    /// Sums every running total of a windowed kernel afresh from the values in its window
    /// (between bars). A value that entered a running total took the small values' digits with
    /// it when it was huge (a bad tick that got past the gate); once it has left the window, the
    /// next pass makes the outputs what they would be without it. Kinds whose kernels keep no
    /// running sum over a window (EMAs, extremes, exact recomputations, CORREL's own centred
    /// sums) have nothing to do. Out of line: it runs once every [`REANCHOR_EVERY`] bars.
    #[cold]
    #[inline(never)]
    fn reanchor(&mut self) {
        self.mean.iter_mut().for_each(|(k, _)| k.reanchor());
        self.wma.iter_mut().for_each(|(k, _)| k.reanchor());
        self.trima.iter_mut().for_each(|(k, _)| k.reanchor());
        self.price_osc.iter_mut().for_each(|(k, _)| k.reanchor());
        self.stochastic.iter_mut().for_each(|(k, _)| k.reanchor());
        self.mfi.iter_mut().for_each(|(k, _)| k.reanchor());
        self.ult_osc.iter_mut().for_each(|(k, _)| k.reanchor());
        self.beta.iter_mut().for_each(|(k, _)| k.reanchor());
    }
}

/// The kernels of one ticker, planned so that features computed by the same kernel share it,
/// writing one row of outputs per bar in declaration order.
///
/// Kernels are grouped by kind, one loop per kind with the kernel inlined (no indirect jump per
/// kernel). Each writes its outputs straight to their columns of the caller's row (see
/// [`Writes`]); only a column that repeats another or is scaled (STDDEV's `nbdev`) needs a fix-up.
/// When the plan does not allow that (an undeclared output written after the last declared one),
/// the kernels write an internal row, with a spare cell for undeclared outputs, which is copied.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureSet {
    kernels: Kernels,
    writes: Writes,
    width: usize,
    /// Bars fed (with finite fields): every [`REANCHOR_EVERY`]-th, the running sums are summed
    /// afresh.
    bars: u64,
}

/// How a bar's outputs reach the caller's row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Writes {
    /// Straight into it, instead of an internal row and a copy (the copy's wide loads of cells
    /// just written by narrow stores wait for those stores: ~5 ns a bar for the standard set).
    /// Outputs nobody declared go to the column written last, which its own write then
    /// overwrites; a scaled output's kernel writes the raw value to its column, scaled in place
    /// after the repeated columns took their copies of it.
    Direct {
        /// `(column, source column, factor)`: columns that repeat another's raw value.
        copies: Vec<(usize, usize, f64)>,
        /// `(column, factor)`: columns scaled in place, after the copies.
        scales: Vec<(usize, f64)>,
    },
    /// Into an internal row (columns, a spare cell for undeclared outputs, one cell per scaled
    /// output), copied out: when an undeclared output is written after the last declared one.
    Internal {
        /// Cells of the row.
        cells: usize,
        /// `(column, row position, factor)` for columns not written in place by their kernel.
        fixups: Vec<(usize, usize, f64)>,
        /// The row (scratch: every cell is rewritten each bar, so it is not saved).
        #[serde(skip)]
        row: Vec<f64>,
    },
}

impl FeatureSet {
    /// Version of the kernels' saved state (the feature cache's entries): raised whenever a
    /// kernel's fields or the planning change, so an older cache is recomputed, never misread.
    pub const STATE_VERSION: u32 = 6;

    /// Plans kernels for the given specs.
    pub fn new(specs: &[FeatureSpec]) -> Self {
        Self::plan(specs, true)
    }

    /// Plans kernels; `direct` allows writing straight into the caller's row when the plan
    /// permits it (tests compare both ways).
    fn plan(specs: &[FeatureSpec], direct: bool) -> Self {
        let outputs: Vec<Output> = specs.iter().flat_map(FeatureSpec::outputs).collect();
        let width = outputs.len();
        // Each output to a kernel: one that already serves a compatible key, or a new one.
        let mut keys: Vec<Key> = Vec::new();
        let mut of_output = Vec::with_capacity(width);
        for out in &outputs {
            let merged = keys
                .iter()
                .enumerate()
                .find_map(|(i, k)| k.merge(out.key).map(|m| (i, m)));
            match merged {
                Some((i, m)) => {
                    keys[i] = m;
                    of_output.push(i);
                }
                None => {
                    keys.push(out.key);
                    of_output.push(keys.len() - 1);
                }
            }
        }
        // Cells past the columns: one spare for unused outputs, then one per scaled output.
        let spare = width;
        let mut next = width + 1;
        // Columns repeating an output already placed: (column, its cell, factor).
        let mut repeats = Vec::new();
        // Extra cells of scaled outputs: (cell, column, factor).
        let mut scaled = Vec::new();
        let mut slots = vec![[spare as u32; 7]; keys.len()];
        for (col, (out, &i)) in outputs.iter().zip(&of_output).enumerate() {
            let slot = &mut slots[i][out.slot];
            if *slot as usize == spare {
                if out.scale == 1.0 {
                    *slot = col as u32;
                } else {
                    *slot = next as u32;
                    next += 1;
                    scaled.push((*slot as usize, col, out.scale));
                }
            } else {
                repeats.push((col, *slot as usize, out.scale));
            }
        }
        let mut kernels = Kernels::default();
        for (key, s) in keys.into_iter().zip(slots) {
            kernels.add(key, s);
        }
        let direct = if direct {
            Self::go_direct(&mut kernels, width, &repeats, &scaled)
        } else {
            None
        };
        let writes = direct.unwrap_or_else(|| Writes::Internal {
            cells: next,
            fixups: scaled
                .iter()
                .map(|&(cell, col, scale)| (col, cell, scale))
                .chain(repeats)
                .collect(),
            row: Vec::new(),
        });
        FeatureSet {
            kernels,
            writes,
            width,
            bars: 0,
        }
    }

    /// Rewrites the kernels' positions for writing straight into the caller's row, when every
    /// output nobody declared is written before the last declared one (else leaves them as they
    /// are and returns `None`).
    fn go_direct(
        kernels: &mut Kernels,
        width: usize,
        repeats: &[(usize, usize, f64)],
        scaled: &[(usize, usize, f64)],
    ) -> Option<Writes> {
        let spare = width;
        let column = |p: usize| -> usize {
            if p < width {
                p
            } else {
                scaled.iter().find(|s| s.0 == p).map_or(p, |s| s.1)
            }
        };
        let arities = kernels.arities();
        let mut slots = kernels.slots_mut();
        // The writes in update order, and the last that lands on a declared output.
        let writes: Vec<(usize, usize)> = arities
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| (0..n.min(7)).map(move |k| (i, k)))
            .collect();
        let last = writes
            .iter()
            .rposition(|&(i, k)| slots[i][k] as usize != spare)?;
        if writes[last + 1..]
            .iter()
            .any(|&(i, k)| slots[i][k] as usize == spare)
        {
            return None;
        }
        let (li, lk) = writes[last];
        let dump = column(slots[li][lk] as usize) as u32;
        for (i, k) in writes {
            let p = slots[i][k] as usize;
            slots[i][k] = if p == spare { dump } else { column(p) as u32 };
        }
        let copies = repeats
            .iter()
            .map(|&(col, at, scale)| (col, column(at), scale))
            .collect();
        let scales = scaled.iter().map(|&(_, col, scale)| (col, scale)).collect();
        Some(Writes::Direct { copies, scales })
    }

    /// Total number of output columns.
    pub fn width(&self) -> usize {
        self.width
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
        match &mut self.writes {
            Writes::Direct { copies, scales } => {
                let out = &mut out[..self.width];
                self.kernels.update(bar, out);
                for &(col, src, scale) in copies.iter() {
                    out[col] = out[src] * scale;
                }
                for &(col, scale) in scales.iter() {
                    out[col] *= scale;
                }
            }
            Writes::Internal { cells, fixups, row } => {
                if row.len() != *cells {
                    *row = vec![f64::NAN; *cells];
                }
                self.kernels.update(bar, &mut row[..]);
                out.copy_from_slice(&row[..self.width]);
                for &(col, at, scale) in fixups.iter() {
                    out[col] = row[at] * scale;
                }
            }
        }
        self.bars += 1;
        if self.bars.is_multiple_of(REANCHOR_EVERY) {
            self.kernels.reanchor();
        }
    }

    /// Resets every kernel.
    pub fn reset(&mut self) {
        self.kernels.reset();
        self.bars = 0;
    }
}

/// `1/3`: typical prices multiply by it instead of dividing by 3 (an ulp apart, and a division
/// less per bar).
pub(crate) const THIRD: f64 = 1.0 / 3.0;

/// Two independent divisions in one SSE2 `divpd`. Each lane is correctly rounded, so the bits
/// equal two `/`s; the divider is the busiest unit on the per-bar path, and a `divpd` costs it
/// what one `divsd` does.
#[inline(always)]
pub(crate) fn div2(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: compiled only where SSE2 is enabled (x86-64's baseline); no memory is touched.
    unsafe {
        use std::arch::x86_64::{_mm_cvtsd_f64, _mm_div_pd, _mm_set_pd, _mm_unpackhi_pd};
        let q = _mm_div_pd(_mm_set_pd(a[1], a[0]), _mm_set_pd(b[1], b[0]));
        [_mm_cvtsd_f64(q), _mm_cvtsd_f64(_mm_unpackhi_pd(q, q))]
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        [a[0] / b[0], a[1] / b[1]]
    }
}

/// TA-Lib's `TA_IS_ZERO`: |v| < `TA_EPSILON`, which is 1e-14 since TA-Lib 0.6 (1e-8 before: an
/// epsilon that zeroed real variances and ranges of FX and of coins quoted in bitcoin, whose
/// prices are near 1 or 1e-4).
#[inline(always)]
pub(crate) fn is_zero(v: f64) -> bool {
    // The same as TA-Lib's `-ε < v && v < ε` (NaN included), in one comparison.
    v.abs() < 1e-14
}

/// TA-Lib's `TA_IS_ZERO_OR_NEG`: v < `TA_EPSILON` (1e-14): the guard before a square root or a
/// division by a variance or a range.
#[inline(always)]
pub(crate) fn is_zero_or_neg(v: f64) -> bool {
    v < 1e-14
}

/// The last `n` values, in a power-of-two buffer indexed by a running count: a push is one store
/// and one masked load, with no wrap-around branch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ring {
    buf: Vec<f64>,
    mask: usize,
    n: usize,
    seen: usize,
}

impl Ring {
    pub(crate) fn new(n: usize) -> Self {
        let n = n.max(1);
        let cap = n.next_power_of_two();
        Ring {
            buf: vec![0.0; cap],
            mask: cap - 1,
            n,
            seen: 0,
        }
    }
    /// Pushes `x`.
    #[inline]
    pub(crate) fn push(&mut self, x: f64) {
        let s = self.seen;
        self.buf[s & self.mask] = x;
        self.seen = s + 1;
    }
    /// Pushes `x`; returns the value that fell out when the ring was full.
    #[inline]
    pub(crate) fn shift(&mut self, x: f64) -> Option<f64> {
        let s = self.seen;
        let out = (s >= self.n).then(|| self.buf[s.wrapping_sub(self.n) & self.mask]);
        self.buf[s & self.mask] = x;
        self.seen = s + 1;
        out
    }
    /// The oldest value held (the next to fall out), when full.
    #[inline]
    pub(crate) fn oldest(&self) -> Option<f64> {
        (self.seen >= self.n).then(|| self.buf[(self.seen - self.n) & self.mask])
    }
    /// The value `lag` pushes ago (0 = the latest); `lag` must be below `len()`.
    #[inline]
    pub(crate) fn ago(&self, lag: usize) -> f64 {
        self.buf[self.seen.wrapping_sub(lag + 1) & self.mask]
    }
    pub(crate) fn len(&self) -> usize {
        self.seen.min(self.n)
    }
    /// How many of the latest values a running total over the ring holds between bars: the
    /// whole window, but for its oldest value once the window is full (a kernel lets it go right
    /// after its output, before the next bar comes).
    pub(crate) fn kept(&self) -> usize {
        self.len() - usize::from(self.oldest().is_some())
    }
    /// The sum of the latest `k` values (`k <= len()`), oldest first.
    pub(crate) fn sum_last(&self, k: usize) -> f64 {
        (0..k).rev().map(|lag| self.ago(lag)).sum()
    }
    pub(crate) fn clear(&mut self) {
        self.seen = 0;
    }
}

/// The last `n` values as one contiguous slice, oldest first: each value is written twice, at
/// `i` and `i + n` of a buffer of `2n`, so the window never wraps. For kernels that read the
/// whole window (CCI's mean deviation every bar, VAR's and LINEARREG's exact recomputations) in
/// a loop of fixed length.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Mirror {
    buf: Vec<f64>,
    n: usize,
    /// Where the next value goes (and where the value `n` pushes ago is).
    at: usize,
    seen: usize,
}

impl Mirror {
    pub(crate) fn new(n: usize) -> Self {
        let n = n.max(1);
        Mirror {
            buf: vec![0.0; 2 * n],
            n,
            at: 0,
            seen: 0,
        }
    }
    /// Pushes `x`; returns the value that fell out when the window was full.
    #[inline]
    pub(crate) fn shift(&mut self, x: f64) -> Option<f64> {
        let at = self.at;
        let out = (self.seen >= self.n).then(|| self.buf[at]);
        self.buf[at] = x;
        self.buf[at + self.n] = x;
        self.at = if at + 1 == self.n { 0 } else { at + 1 };
        self.seen += 1;
        out
    }
    pub(crate) fn len(&self) -> usize {
        self.seen.min(self.n)
    }
    /// The values held, oldest first.
    #[inline]
    pub(crate) fn window(&self) -> &[f64] {
        let end = self.at + self.n;
        &self.buf[end - self.len()..end]
    }
}

/// Σ f(x) over `xs`, in four interleaved partial sums (a dependency chain a quarter as long as
/// one running total, so the loop runs at the adder's throughput).
#[inline]
pub(crate) fn sum4(xs: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let (mut a, mut b, mut c, mut d) = (0.0, 0.0, 0.0, 0.0);
    let mut chunks = xs.chunks_exact(4);
    for q in &mut chunks {
        a += f(q[0]);
        b += f(q[1]);
        c += f(q[2]);
        d += f(q[3]);
    }
    for &x in chunks.remainder() {
        a += f(x);
    }
    (a + b) + (c + d)
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
    fn reanchoring_between_any_two_bars_changes_only_rounding() {
        // Each kernel's `reanchor` must leave its sums as the next bar expects them: summing
        // afresh after every bar (the feature set does it every `REANCHOR_EVERY`) gives the same
        // outputs but for the last digits, on every column, warm-up included.
        let bars = crate::bench::ohlcv_series(700);
        let all = talib_standard();
        let (mut every, mut never) = (FeatureSet::new(&all), FeatureSet::new(&all));
        let (mut a, mut b) = (vec![0.0; every.width()], vec![0.0; never.width()]);
        for bar in &bars {
            every.update(bar, &mut a);
            every.kernels.reanchor();
            never.update(bar, &mut b);
            for (j, (x, y)) in a.iter().zip(&b).enumerate() {
                let tol = 1e-10 * y.abs().max(bar.close.abs()).max(1.0);
                assert!(
                    (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol,
                    "column {j}: {x} with reanchoring after every bar, {y} without"
                );
            }
        }
    }

    #[test]
    fn shared_kernels_give_each_feature_the_values_it_has_alone() {
        // The standard set shares kernels (SMA with BBANDS, RSI with CMO and STOCHRSI, STOCH with
        // STOCHF, DEMA with TEMA and TRIX, MIDPRICE with WILLR, ...): every column must equal, bit
        // for bit, the same feature computed by a set of its own.
        let bars = crate::bench::ohlcv_series(600);
        let all = talib_standard();
        let mut set = FeatureSet::new(&all);
        let mut row = vec![0.0; set.width()];
        let mut alone: Vec<(FeatureSet, Vec<f64>)> = all
            .iter()
            .map(|s| {
                let f = FeatureSet::new(std::slice::from_ref(s));
                let w = f.width();
                (f, vec![0.0; w])
            })
            .collect();
        assert!(
            set.kernels.len() < all.len() - 8,
            "{} kernels",
            set.kernels.len()
        );
        for b in &bars {
            set.update(b, &mut row);
            let mut col = 0;
            for (f, out) in &mut alone {
                f.update(b, out);
                for v in out.iter() {
                    assert_eq!(v.to_bits(), row[col].to_bits(), "column {col}");
                    col += 1;
                }
            }
        }
    }

    #[test]
    fn writing_straight_into_the_row_gives_the_internal_rows_values() {
        use FeatureSpec as F;
        let sets: Vec<(Vec<FeatureSpec>, bool)> = vec![
            (talib_standard(), true),
            // A scaled output, its repeat at another scale, and the raw value beside them.
            (
                vec![
                    F::Stddev {
                        period: 20,
                        nbdev: 2.0,
                    },
                    F::Sma { period: 5 },
                    F::Stddev {
                        period: 20,
                        nbdev: 1.5,
                    },
                    F::Var {
                        period: 20,
                        nbdev: 1.0,
                    },
                    F::Stddev {
                        period: 20,
                        nbdev: 2.0,
                    },
                ],
                true,
            ),
            // The last kernel (STOCH's) writes STOCHF's outputs nobody declared after its own.
            (
                vec![
                    F::Sma { period: 10 },
                    F::Stoch {
                        fastk: 5,
                        slowk: 3,
                        slowd: 3,
                    },
                ],
                false,
            ),
        ];
        let bars = crate::bench::ohlcv_series(300);
        for (specs, direct) in sets {
            let mut a = FeatureSet::plan(&specs, true);
            let mut b = FeatureSet::plan(&specs, false);
            let is_direct = matches!(a.writes, Writes::Direct { .. });
            assert_eq!(is_direct, direct, "{specs:?}");
            let (mut ra, mut rb) = (vec![0.0; a.width()], vec![0.0; b.width()]);
            for bar in &bars {
                a.update(bar, &mut ra);
                b.update(bar, &mut rb);
                let bits = |r: &[f64]| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&ra), bits(&rb), "{specs:?}");
            }
        }
    }

    #[test]
    fn families_with_different_parameters_keep_separate_kernels() {
        let specs = [
            FeatureSpec::Stoch {
                fastk: 5,
                slowk: 3,
                slowd: 3,
            },
            FeatureSpec::Stoch {
                fastk: 5,
                slowk: 4,
                slowd: 3,
            },
            FeatureSpec::Stochf { fastk: 5, fastd: 3 },
        ];
        let set = FeatureSet::new(&specs);
        assert_eq!(
            set.kernels.len(),
            2,
            "the second STOCH cannot share the first's smoothing"
        );
        assert_eq!(set.width(), 6);
    }

    #[test]
    fn ring_yields_what_falls_out() {
        let mut r = Ring::new(2);
        assert_eq!(r.shift(1.0), None);
        assert_eq!(r.shift(2.0), None);
        assert_eq!(r.oldest(), Some(1.0));
        assert_eq!(r.shift(3.0), Some(1.0));
        assert_eq!((r.ago(0), r.ago(1)), (3.0, 2.0));
    }

    #[test]
    fn mirror_holds_the_window_in_order() {
        let mut m = Mirror::new(3);
        assert_eq!(m.shift(1.0), None);
        assert_eq!(m.window(), &[1.0]);
        m.shift(2.0);
        assert_eq!(m.shift(3.0), None);
        assert_eq!(m.window(), &[1.0, 2.0, 3.0]);
        assert_eq!(m.shift(4.0), Some(1.0));
        assert_eq!(m.window(), &[2.0, 3.0, 4.0]);
        for x in 5..=9 {
            m.shift(f64::from(x));
        }
        assert_eq!(m.window(), &[7.0, 8.0, 9.0]);
    }
}
