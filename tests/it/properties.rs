//! Property tests of the invariants: incremental kernels equal a from-scratch recomputation, the
//! quality gate never passes a malformed bar, the portfolio never spends cash it does not have, and
//! sharding loses no bar.

use findashpro::bar::{Bar, BarBatch};
use findashpro::config::{QualitySpec, RiskSpec, Sizing};
use findashpro::operators::indicators::{Bbands, Ema, Rsi, Sma};
use findashpro::operators::portfolio::Portfolio;
use findashpro::operators::quality::{QualityGate, Verdict};
use findashpro::operators::risk::{KillSwitch, RiskEngine};
use findashpro::operators::signal::{Signal, Target};
use findashpro::sinks::broker::PaperBroker;
use proptest::prelude::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn series() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(1.0f64..1000.0, 1..120)
}

proptest! {
    #[test]
    fn sma_equals_the_window_mean(xs in series(), period in 1usize..30) {
        let mut k = Sma::new(period);
        for (i, &x) in xs.iter().enumerate() {
            let got = k.update(x);
            if i + 1 < period {
                prop_assert!(got.is_none());
            } else {
                let w = &xs[i + 1 - period..=i];
                prop_assert!(close(got.unwrap_or(f64::NAN), w.iter().sum::<f64>() / period as f64));
            }
        }
    }

    #[test]
    fn ema_equals_its_definition_recomputed(xs in series(), period in 1usize..30) {
        let mut k = Ema::new(period);
        let kf = 2.0 / (period as f64 + 1.0);
        for (i, &x) in xs.iter().enumerate() {
            let got = k.update(x);
            if i + 1 < period {
                prop_assert!(got.is_none());
                continue;
            }
            let mut e = xs[..period].iter().sum::<f64>() / period as f64;
            for &v in &xs[period..=i] {
                e += kf * (v - e);
            }
            prop_assert!(close(got.unwrap_or(f64::NAN), e));
        }
    }

    #[test]
    fn rsi_stays_in_range_and_matches_wilder(xs in series(), period in 1usize..20) {
        let mut k = Rsi::new(period);
        for (i, &x) in xs.iter().enumerate() {
            let got = k.update(x);
            if i < period {
                prop_assert!(got.is_none());
                continue;
            }
            let d: Vec<f64> = xs[..=i].windows(2).map(|w| w[1] - w[0]).collect();
            let n = period as f64;
            let mut g = d[..period].iter().filter(|v| **v > 0.0).sum::<f64>() / n;
            let mut l = -d[..period].iter().filter(|v| **v < 0.0).sum::<f64>() / n;
            for &v in &d[period..] {
                g = (g * (n - 1.0) + v.max(0.0)) / n;
                l = (l * (n - 1.0) + (-v).max(0.0)) / n;
            }
            let want = if (g + l).abs() < 1e-8 { 0.0 } else { 100.0 * g / (g + l) };
            let r = got.unwrap_or(f64::NAN);
            prop_assert!((0.0..=100.0).contains(&r));
            prop_assert!((r - want).abs() < 1e-7, "{} vs {}", r, want);
        }
    }

    #[test]
    fn bands_bracket_the_mean(xs in series(), period in 2usize..30) {
        let mut k = Bbands::new(period, 2.0);
        for &x in &xs {
            if let Some(b) = k.update(x) {
                prop_assert!(b.lower <= b.middle + 1e-9 && b.middle <= b.upper + 1e-9);
            }
        }
    }

    #[test]
    fn the_gate_passes_only_well_formed_bars(rows in prop::collection::vec((prop::num::f64::ANY, prop::num::f64::ANY, prop::num::f64::ANY, prop::num::f64::ANY, -10.0f64..1e6, 0i64..40), 1..60)) {
        let mut gate = QualityGate::new(&QualitySpec::default());
        let mut last = i64::MIN;
        for (open, high, low, close, volume, day) in rows {
            let ts = day * 86_400;
            let b = Bar { ticker: 0, ts, open, high, low, close, volume };
            if let Verdict::Pass(_) = gate.check(&b) {
                for v in [open, high, low, close] {
                    prop_assert!(v.is_finite() && v > 0.0);
                }
                prop_assert!(low <= open.min(close) && open.max(close) <= high && volume >= 0.0);
                prop_assert!(ts > last);
                last = ts;
            }
        }
    }

    #[test]
    fn all_in_never_spends_cash_it_lacks(prices in prop::collection::vec((5.0f64..500.0, 0.8f64..1.25), 2..80), flips in prop::collection::vec(any::<bool>(), 80)) {
        let risk = RiskSpec { capital: 10_000.0, sizing: Sizing::AllIn, min_order: 0.0, daily_loss_stop: 1.0, ..RiskSpec::default() };
        let mut p = Portfolio::new(RiskEngine::new(risk, KillSwitch::default()), PaperBroker::new(0.001, 0.002, true));
        for (i, &(open, ratio)) in prices.iter().enumerate() {
            let closing = open * ratio;
            let bar = Bar { ticker: 0, ts: i as i64 * 86_400, open, high: open.max(closing), low: open.min(closing), close: closing, volume: 1.0 };
            let target = if flips[i] { Target::Long } else { Target::Flat };
            p.step(bar.ts, &[(bar, Some(Signal { target, confidence: 0.6, predicted_return: f64::NAN }), 1.0)]);
        }
        let ledger = p.finish();
        for e in &ledger.equity {
            prop_assert!(e.cash >= -1e-9, "cash {}", e.cash);
            prop_assert!(close(e.cash + e.positions_value, e.equity));
        }
    }

    #[test]
    fn sharding_loses_no_bar(tickers in prop::collection::vec(0u32..1000, 0..200), peers in 1usize..8) {
        let mut b = BarBatch::default();
        for &t in &tickers {
            b.push(Bar { ticker: t, ts: 1, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 0.0 });
        }
        let mut got: Vec<u32> = b.shard(peers).into_iter().flat_map(|p| p.ticker).collect();
        let mut want = tickers.clone();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
    }
}

mod standard_set {
    use findashpro::operators::indicators::{FeatureSet, Ohlcv, talib_standard};
    use proptest::prelude::*;

    fn bars() -> impl Strategy<Value = Vec<Ohlcv>> {
        prop::collection::vec(
            (
                10.0f64..200.0,
                0.0f64..0.05,
                0.0f64..0.05,
                0.0f64..1.0,
                0.0f64..1e6,
            ),
            40..160,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .map(|(mid, up, down, at, volume)| {
                    let (high, low) = (mid * (1.0 + up), mid * (1.0 - down));
                    let open = low + (high - low) * at;
                    let close = low + (high - low) * (1.0 - at);
                    Ohlcv {
                        open,
                        high,
                        low,
                        close,
                        volume,
                    }
                })
                .collect()
        })
    }

    fn rows(set: &mut FeatureSet, bars: &[Ohlcv]) -> Vec<Vec<u64>> {
        let mut out = vec![0.0; set.width()];
        bars.iter()
            .map(|b| {
                set.update(b, &mut out);
                out.iter().map(|v| v.to_bits()).collect()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Feeding bars one at a time gives, at every bar, what a fresh set computes from scratch
        /// over the same prefix, and a reset set replays to identical bits.
        #[test]
        fn incremental_equals_recomputation_and_reset_replays(bars in bars()) {
            let specs = talib_standard();
            let mut set = FeatureSet::new(&specs);
            let incremental = rows(&mut set, &bars);
            for cut in [1usize, bars.len() / 3, bars.len() / 2, bars.len()] {
                let mut fresh = FeatureSet::new(&specs);
                let scratch = rows(&mut fresh, &bars[..cut]);
                prop_assert_eq!(&scratch[cut - 1], &incremental[cut - 1]);
            }
            set.reset();
            prop_assert_eq!(rows(&mut set, &bars), incremental);
        }
    }
}
