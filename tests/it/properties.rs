//! Property tests of the invariants: incremental kernels equal a from-scratch recomputation, the
//! quality gate never passes a malformed bar, the portfolio never spends cash it does not have, and
//! sharding loses no bar.

use findashpro::bar::{Bar, BarBatch};
use findashpro::config::{QualitySpec, RiskSpec, Sizing};
use findashpro::operators::benchmark::{Benchmark, Tracker};
use findashpro::operators::indicators::{Bbands, Ema, Rsi, Sma};
use findashpro::operators::portfolio::{MergeScratch, Merged, OrderPolicy, Portfolio, TimeRows};
use findashpro::operators::quality::{QualityGate, Verdict};
use findashpro::operators::risk::{KillSwitch, RiskEngine};
use findashpro::operators::signal::{Signal, SignalBatch, Target};
use findashpro::order::{EntryType, TimeInForce};
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
        let risk = RiskSpec { capital: 10_000.0, sizing: Sizing::AllIn {}, min_order: 0.0, daily_loss_stop: 1.0, max_position: 1.0, ..RiskSpec::default() };
        let mut p = Portfolio::new(RiskEngine::new(risk, KillSwitch::default()), PaperBroker::simple(0.001, 0.002, true));
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

    /// The portfolio operator reads each time's rows from the workers' batches in place, looking
    /// for fills only on tickers with working orders: whatever the batches' split and order, it
    /// books exactly what stepping the same rows, sorted by ticker, books. Limit entries with a
    /// bracket keep orders working across bars, so fills land on later steps.
    #[test]
    fn stepping_workers_batches_books_what_stepping_sorted_rows_books(
        steps in prop::collection::vec(prop::collection::vec((0.9f64..1.1, 0u8..4, any::<bool>()), 6), 2..40),
        reversed in any::<bool>(),
    ) {
        let portfolio = || {
            let risk = RiskSpec { sizing: Sizing::FixedFraction { fraction: 0.1 }, ..RiskSpec::default() };
            let policy = OrderPolicy {
                entry: EntryType::Limit,
                offset: 0.01,
                tif: TimeInForce::Gtc,
                take_profit: Some(0.05),
                stop_loss: Some(0.03),
            };
            Portfolio::with_policy(RiskEngine::new(risk, KillSwitch::default()), PaperBroker::simple(0.0, 0.001, true), policy)
        };
        let (mut merged, mut sorted) = (portfolio(), portfolio());
        let mut scratch = MergeScratch::default();
        // Each worker sums the benchmark over its own tickers.
        let mut shares = [Tracker::new(Benchmark::EqualWeight), Tracker::new(Benchmark::EqualWeight)];
        for (day, row) in steps.iter().enumerate() {
            let ts = day as i64 * 86_400;
            // Six tickers split over two workers by their last bit.
            let mut parts = [BarBatch::default(), BarBatch::default()];
            let mut signals: [Vec<Option<Signal>>; 2] = [Vec::new(), Vec::new()];
            for (t, &(move_, wants, present)) in row.iter().enumerate() {
                if !present && t > 0 {
                    continue;
                }
                let base = 50.0 * (t as f64 + 1.0);
                let (open, close) = (base, base * move_);
                let bar = Bar { ticker: t as u32, ts, open, high: open.max(close) * 1.02, low: open.min(close) * 0.98, close, volume: 1e6 };
                let target = match wants { 0 => None, 1 => Some(Target::Flat), _ => Some(Target::Long) };
                parts[t % 2].push(bar);
                signals[t % 2].push(target.map(|target| Signal { target, confidence: 0.6, predicted_return: f64::NAN }));
            }
            let mut batches: Vec<SignalBatch> = parts
                .into_iter()
                .zip(signals)
                .zip(shares.iter_mut())
                .map(|((b, signal), share)| {
                    let mut sb = SignalBatch { payoff: vec![1.0; b.len()], benchmark: share.share(b.ticker.iter().copied().zip(b.close.iter().copied())), bars: b.into(), signal, ..SignalBatch::default() };
                    sb.index_signals();
                    sb
                })
                .collect();
            if reversed {
                batches.reverse();
            }
            let rows = Merged::new(&batches, &mut scratch);
            let mut slice: Vec<(Bar, Option<Signal>, f64)> =
                batches.iter().flat_map(|b| (0..b.bars.len()).map(move |i| (b.bars.get(i), b.signal[i], b.payoff[i]))).collect();
            slice.sort_by_key(|r| r.0.ticker);
            prop_assert_eq!(rows.len(), slice.len());
            merged.step_rows(ts, &rows, &[]);
            sorted.step(ts, &slice);
        }
        let (a, b) = (merged.finish(), sorted.finish());
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
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

/// Consistent bars (low ≤ open, close ≤ high, positive volume) around random mid prices.
fn ohlcv_bars(
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<findashpro::operators::indicators::Ohlcv>> {
    prop::collection::vec(
        (
            10.0f64..200.0,
            0.001f64..0.05,
            0.001f64..0.05,
            0.0f64..1.0,
            1.0f64..1e6,
        ),
        len,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .map(|(mid, up, down, at, volume)| {
                let (high, low) = (mid * (1.0 + up), mid * (1.0 - down));
                findashpro::operators::indicators::Ohlcv {
                    open: low + (high - low) * at,
                    high,
                    low,
                    close: low + (high - low) * (1.0 - at),
                    volume,
                }
            })
            .collect()
    })
}

mod standard_set {
    use findashpro::operators::indicators::{FeatureSet, Ohlcv, talib_standard};
    use proptest::prelude::*;

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
        fn incremental_equals_recomputation_and_reset_replays(bars in super::ohlcv_bars(40..160)) {
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

mod oracles {
    //! Window indicators against direct recomputation over the window at every bar, and the NaN
    //! policy: a bad bar costs its own row only.
    use findashpro::operators::indicators::{FeatureSet, FeatureSpec, Ohlcv};
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-7 * b.abs().max(1.0)
    }

    /// Direct definitions over the last n bars (x = 0 oldest).
    fn oracle(name: &str, w: &[Ohlcv], prev_close: f64) -> f64 {
        let n = w.len() as f64;
        let c: Vec<f64> = w.iter().map(|b| b.close).collect();
        let hh = w.iter().map(|b| b.high).fold(f64::MIN, f64::max);
        let ll = w.iter().map(|b| b.low).fold(f64::MAX, f64::min);
        let mean = c.iter().sum::<f64>() / n;
        let last = w[w.len() - 1];
        match name {
            "SMA" => mean,
            "WMA" => {
                c.iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1) as f64 * v)
                    .sum::<f64>()
                    / (n * (n + 1.0) / 2.0)
            }
            "VAR" => c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n,
            "MIDPRICE" => (hh + ll) / 2.0,
            "WILLR" => -100.0 * (hh - last.close) / (hh - ll),
            "MOM" => last.close - prev_close,
            "LINEARREG" | "SLOPE" => {
                let xm = (n - 1.0) / 2.0;
                let sxy: f64 = c
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 - xm) * (v - mean))
                    .sum();
                let sxx: f64 = (0..w.len()).map(|i| (i as f64 - xm).powi(2)).sum();
                let b = sxy / sxx;
                if name == "SLOPE" {
                    b
                } else {
                    mean + b * (n - 1.0 - xm)
                }
            }
            "CCI" => {
                let tp: Vec<f64> = w.iter().map(|b| (b.high + b.low + b.close) / 3.0).collect();
                let m = tp.iter().sum::<f64>() / n;
                let md = tp.iter().map(|v| (v - m).abs()).sum::<f64>() / n;
                (tp[tp.len() - 1] - m) / (0.015 * md)
            }
            _ => unreachable!(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn window_indicators_equal_their_definitions(bars in super::ohlcv_bars(40..120), n in 2usize..12) {
            let cases: Vec<(&str, FeatureSpec, usize)> = vec![
                ("SMA", FeatureSpec::Sma { period: n }, n),
                ("WMA", FeatureSpec::Wma { period: n }, n),
                ("VAR", FeatureSpec::Var { period: n, nbdev: 1.0 }, n),
                ("MIDPRICE", FeatureSpec::Midprice { period: n }, n),
                ("WILLR", FeatureSpec::Willr { period: n }, n),
                ("MOM", FeatureSpec::Mom { period: n }, n + 1),
                ("LINEARREG", FeatureSpec::Linearreg { period: n }, n),
                ("SLOPE", FeatureSpec::LinearregSlope { period: n }, n),
                ("CCI", FeatureSpec::Cci { period: n }, n),
            ];
            let specs: Vec<FeatureSpec> = cases.iter().map(|c| c.1.clone()).collect();
            let mut set = FeatureSet::new(&specs);
            let mut out = vec![0.0; set.width()];
            for (t, b) in bars.iter().enumerate() {
                set.update(b, &mut out);
                for (j, (name, _, span)) in cases.iter().enumerate() {
                    if t + 1 < *span {
                        prop_assert!(out[j].is_nan(), "{} warm at {}", name, t);
                        continue;
                    }
                    // The window of the last n bars; MOM also needs the close n bars back.
                    let w = &bars[t + 1 - n..=t];
                    let prev = bars[t + 1 - span].close;
                    let want = oracle(name, w, prev);
                    prop_assert!(close(out[j], want), "{} at {}: {} vs {}", name, t, out[j], want);
                }
            }
        }

        #[test]
        fn a_nan_bar_costs_only_its_own_row(bars in super::ohlcv_bars(40..120), at in 0usize..40) {
            let specs = findashpro::operators::indicators::talib_standard();
            let at = at % bars.len();
            let mut with_nan = bars.clone();
            with_nan.insert(at, Ohlcv { close: f64::NAN, ..bars[at] });
            let mut a = FeatureSet::new(&specs);
            let mut b = FeatureSet::new(&specs);
            let (mut oa, mut ob) = (vec![0.0; a.width()], vec![0.0; b.width()]);
            let mut clean = Vec::new();
            for x in &bars {
                a.update(x, &mut oa);
                clean.push(oa.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
            let mut k = 0;
            for (i, x) in with_nan.iter().enumerate() {
                b.update(x, &mut ob);
                if i == at {
                    prop_assert!(ob.iter().all(|v| v.is_nan()));
                } else {
                    prop_assert_eq!(&ob.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), &clean[k]);
                    k += 1;
                }
            }
        }
    }
}
