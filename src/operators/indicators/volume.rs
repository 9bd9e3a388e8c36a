//! Volume indicators: OBV, Chaikin A/D line and oscillator.

/// OBV: starts at the first bar's volume, then adds or subtracts each volume by the sign of the
/// close's change (unchanged on a flat close).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct Obv {
    state: Option<(f64, f64)>,
}

impl Obv {
    /// Feeds a close and volume.
    #[inline(always)]
    pub fn update(&mut self, close: f64, volume: f64) -> f64 {
        let (prev, mut obv) = self.state.unwrap_or((close, volume));
        if self.state.is_some() {
            // ±volume or nothing by the sign of the change, without a data-dependent branch
            // (adding ±1·v or 0·v gives the same bits as adding, subtracting or skipping v).
            let sign = f64::from(i8::from(close > prev) - i8::from(close < prev));
            obv += sign * volume;
        }
        self.state = Some((close, obv));
        obv
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.state = None;
    }
}

/// Chaikin accumulation/distribution: `Σ ((c−l) − (h−c))/(h−l)·v`, a bar with h = l adds nothing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Default)]
pub struct Ad {
    ad: f64,
}

impl Ad {
    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64, volume: f64) -> f64 {
        let range = high - low;
        if range > 0.0 {
            self.ad += (((close - low) - (high - close)) / range) * volume;
        }
        self.ad
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.ad = 0.0;
    }
}

/// ADOSC(fast, slow): EMA(fast) − EMA(slow) of the A/D line, both seeded with the first A/D value,
/// `ema = k·ad + (1−k)·ema`; first output after `slow` bars.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Adosc {
    fast_k: f64,
    slow_k: f64,
    slow: usize,
    ad: Ad,
    seen: usize,
    emas: Option<(f64, f64)>,
}

impl Adosc {
    /// New ADOSC.
    pub fn new(fast: usize, slow: usize) -> Self {
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Adosc {
            fast_k: 2.0 / (fast as f64 + 1.0),
            slow_k: 2.0 / (slow as f64 + 1.0),
            slow: slow.max(1),
            ad: Ad::default(),
            seen: 0,
            emas: None,
        }
    }

    /// Feeds a bar.
    #[inline(always)]
    pub fn update(&mut self, high: f64, low: f64, close: f64, volume: f64) -> Option<f64> {
        let ad = self.ad.update(high, low, close, volume);
        self.seen += 1;
        let (f, s) = match self.emas {
            None => (ad, ad),
            Some((f, s)) => (
                (self.fast_k * ad) + ((1.0 - self.fast_k) * f),
                (self.slow_k * ad) + ((1.0 - self.slow_k) * s),
            ),
        };
        self.emas = Some((f, s));
        (self.seen >= self.slow).then_some(f - s)
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.ad.reset();
        self.seen = 0;
        self.emas = None;
    }
}
