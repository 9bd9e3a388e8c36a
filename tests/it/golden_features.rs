//! The first feature set against TA-Lib's outputs on GOOG (tests/fixtures/golden).

use findashpro::operators::indicators::{FeatureSet, FeatureSpec, Ohlcv};

use crate::common::{close, read_csv, repo};

fn goog() -> Vec<Ohlcv> {
    let (_, rows) = read_csv(&repo("data/reference/GOOG.csv"));
    rows.iter()
        .map(|r| {
            let f = |i: usize| r[i].parse::<f64>().expect("number");
            Ohlcv {
                open: f(1),
                high: f(2),
                low: f(3),
                close: f(4),
                volume: f(5),
            }
        })
        .collect()
}

#[test]
fn first_feature_set_matches_talib_within_1e9() {
    let specs = vec![
        FeatureSpec::Sma { period: 20 },
        FeatureSpec::Ema { period: 20 },
        FeatureSpec::Ema { period: 12 },
        FeatureSpec::Ema { period: 26 },
        FeatureSpec::Rsi { period: 14 },
        FeatureSpec::Atr { period: 14 },
        FeatureSpec::Macd {
            fast: 12,
            slow: 26,
            signal: 9,
        },
        FeatureSpec::Bbands {
            period: 20,
            nbdev: 2.0,
        },
        FeatureSpec::LogReturn {},
    ];
    let names: Vec<String> = specs.iter().flat_map(FeatureSpec::output_names).collect();
    let (header, rows) = read_csv(&repo("tests/fixtures/golden/goog_daily_talib.csv"));
    let bars = goog();
    assert_eq!(rows.len(), bars.len());
    let mut set = FeatureSet::new(&specs);
    let mut out = vec![0.0; set.width()];
    let mut checked = 0;
    for (i, bar) in bars.iter().enumerate() {
        set.update(bar, &mut out);
        for (j, name) in names.iter().enumerate() {
            let col = header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("golden has {name}"));
            let golden: f64 = rows[i][col].parse().expect("golden number");
            let ours = out[j];
            assert_eq!(
                ours.is_nan(),
                golden.is_nan(),
                "{name} NaN mask differs at row {i}: ours {ours}, TA-Lib {golden}"
            );
            if !golden.is_nan() {
                assert!(
                    close(ours, golden, 1e-9),
                    "{name} at row {i} ({}): ours {ours}, TA-Lib {golden}",
                    rows[i][0]
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 2000 * names.len() - 200,
        "checked {checked} values"
    );
}

#[test]
fn the_standard_set_names_every_golden_column_in_order() {
    let (header, _) = read_csv(&repo("tests/fixtures/golden/goog_daily_talib.csv"));
    let names: Vec<String> = findashpro::operators::indicators::talib_standard()
        .iter()
        .flat_map(FeatureSpec::output_names)
        .collect();
    assert_eq!(names.len(), 68);
    assert_eq!(names, header[1..].to_vec());
}

/// The comparison rule, per value:
///
/// * NaN positions equal.
/// * Otherwise `|ours − talib| ≤ 1e-9·|talib| + 1e-13·S`, truly relative: `S` is 0 — so a value
///   TA-Lib gives as exactly 0 must be exactly 0 here too, and small values such as ROCP, LOGRET,
///   BOP, CORREL and BETA get no floor — except for the outputs that are a *difference of terms
///   of scale S*, whose last bits are rounding noise of those terms whichever correct order one
///   sums in: `S` = the bar's close for APO, MOM, MACD and LINEARREG_SLOPE (× 180/π for
///   LINEARREG_ANGLE), 100 for the percent oscillators PPO, CMO, TRIX and STOCHRSI, and the A/D
///   line for ADOSC (EMA(3) − EMA(10) of a line in the millions on hourly BTC). `1e-13·S` is
///   ~450 ulps of those terms. (On GOOG, TA-Lib's own LINEARREG_SLOPE is 1.9e-9 from exact
///   rational arithmetic where ours is 8.5e-11; its APO near 0 is ±2e-13 of noise.)
fn agrees(ours: f64, talib: f64, scale: f64) -> bool {
    if talib.is_nan() || ours.is_nan() {
        return talib.is_nan() == ours.is_nan();
    }
    (ours - talib).abs() <= 1e-9 * talib.abs() + 1e-13 * scale
}

/// `S` of [`agrees`] for a column, given the bar's close and the row's A/D value.
fn scale(column: &str, close: f64, ad: f64) -> f64 {
    let family = column.split('_').next().unwrap_or_default();
    match family {
        "APO" | "MOM" | "MACD" => close.abs(),
        "LINEARREG" if column.starts_with("LINEARREG_SLOPE") => close.abs(),
        "LINEARREG" if column.starts_with("LINEARREG_ANGLE") => {
            close.abs() * 180.0 / std::f64::consts::PI
        }
        "PPO" | "CMO" | "TRIX" | "STOCHRSI" => 100.0,
        "ADOSC" => ad.abs(),
        _ => 0.0,
    }
}

#[test]
fn the_tolerance_has_no_floor_for_small_values_and_zero_is_exact() {
    assert!(!agrees(1e-12, 0.0, scale("ROCP_10", 100.0, 0.0)));
    assert!(!agrees(0.010_000_01, 0.01, scale("LOGRET_1", 100.0, 0.0)));
    assert!(agrees(0.0, 0.0, 0.0));
    assert!(!agrees(1.0, f64::NAN, 0.0));
    assert!(agrees(
        -3.4e-13,
        -2.3e-13,
        scale("APO_12_26_SMA", 600.0, 0.0)
    ));
    assert!(!agrees(
        -3.4e-8,
        -2.3e-8,
        scale("APO_12_26_SMA", 600.0, 0.0)
    ));
}

/// Asserts the standard set over `data` agrees with TA-Lib's `golden`, listing every column that
/// does not.
fn assert_agrees(data: &str, golden: &str) {
    let f = standard_set_against(data, golden);
    assert!(
        f.is_empty(),
        "{} columns differ:\n{}",
        f.len(),
        f.join("\n")
    );
}

/// The standard set over one real bar file (read by the same reader as `fdp features`, in time
/// order) against TA-Lib's outputs for it (`scripts/make_talib_golden.py`): every failing column
/// with its first differing row.
fn standard_set_against(data: &str, golden: &str) -> Vec<String> {
    use findashpro::sources::files::{detect_format, read_bar_file};
    let path = repo(data);
    let (bars, rejects) =
        read_bar_file(&path, detect_format(&path).expect("format")).expect("reads");
    assert!(rejects.is_empty(), "{data}: {rejects:?}");
    let mut rows: Vec<_> = bars.iter().collect();
    rows.sort_by_key(|b| b.ts);
    let (header, golden_rows) = read_csv(&repo(golden));
    assert_eq!(golden_rows.len(), rows.len(), "{golden}: one row per bar");
    let specs = findashpro::operators::indicators::talib_standard();
    let mut set = FeatureSet::new(&specs);
    let mut out = vec![0.0; set.width()];
    let mut failures: Vec<String> = Vec::new();
    let ad_col = header.iter().position(|h| h == "AD").expect("AD column");
    for (i, b) in rows.iter().enumerate() {
        let ad: f64 = golden_rows[i][ad_col].parse().expect("AD");
        assert_eq!(
            findashpro::time::format_time(b.ts),
            golden_rows[i][0],
            "{golden}: row {i} is another bar"
        );
        let bar = Ohlcv {
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        };
        set.update(&bar, &mut out);
        for (j, ours) in out.iter().enumerate() {
            let name = &header[j + 1];
            let talib: f64 = golden_rows[i][j + 1].parse().expect("golden number");
            if !agrees(*ours, talib, scale(name, b.close, ad))
                && !failures.iter().any(|f| f.starts_with(&format!("{name} ")))
            {
                failures.push(format!(
                    "{name} first differs at row {i} ({}): ours {ours:e}, TA-Lib {talib:e}, relative {:e}",
                    golden_rows[i][0],
                    ((ours - talib) / talib).abs()
                ));
            }
        }
    }
    failures
}

#[test]
fn equities_in_the_hundreds_goog_daily_match_talib_to_1e9_relative() {
    assert_agrees(
        "data/reference/GOOG.csv",
        "tests/fixtures/golden/goog_daily_talib.csv",
    );
}

#[test]
fn fx_near_one_eurusd_hourly_matches_talib_to_1e9_relative() {
    assert_agrees(
        "data/reference/EURUSD.csv",
        "tests/fixtures/golden/eurusd_talib.csv",
    );
}

#[test]
fn crypto_in_the_tens_of_thousands_btcusdt_hourly_matches_talib_to_1e9_relative() {
    assert_agrees(
        "data/reference/BTCUSDT_Binance_futures_data_hour.csv",
        "tests/fixtures/golden/btcusdt_binance_futures_data_hour_talib.csv",
    );
}

#[test]
fn crypto_quoted_in_bitcoin_etcbtc_near_2e_4_matches_talib_to_1e9_relative() {
    assert_agrees(
        "data/reference/Binance_ETCBTC_d.csv",
        "tests/fixtures/golden/binance_etcbtc_d_talib.csv",
    );
}

#[test]
fn reset_then_replay_gives_the_same_values() {
    let mut specs = findashpro::operators::indicators::talib_standard();
    specs.push(FeatureSpec::Volatility { period: 30 });
    let bars = goog();
    let mut set = FeatureSet::new(&specs);
    let mut out = vec![0.0; set.width()];
    let run = |set: &mut FeatureSet, out: &mut Vec<f64>| -> Vec<u64> {
        bars.iter()
            .flat_map(|b| {
                set.update(b, out);
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            })
            .collect()
    };
    let first = run(&mut set, &mut out);
    set.reset();
    assert_eq!(first, run(&mut set, &mut out));
}

/// After a huge value (a 1e20 bar that got past the gate) has left every window, each windowed
/// feature equals what it is without it: the running sums are re-anchored exactly. (Features with
/// infinite memory — EMAs, Wilder's averages, OBV, AD, SAR, KAMA — cannot forget and are not
/// listed.)
#[test]
fn windowed_features_forget_a_huge_value_once_it_left_the_window() {
    const WINDOWED: [&str; 34] = [
        "SMA_20",
        "WMA_20",
        "TRIMA_30",
        "BBANDS_20_2_upper",
        "BBANDS_20_2_middle",
        "BBANDS_20_2_lower",
        "MIDPOINT_14",
        "MIDPRICE_14",
        "STOCH_5_3_3_slowk",
        "STOCH_5_3_3_slowd",
        "STOCHF_5_3_fastk",
        "STOCHF_5_3_fastd",
        "WILLR_14",
        "CCI_14",
        "MFI_14",
        "ROC_10",
        "ROCP_10",
        "MOM_10",
        "PPO_12_26_SMA",
        "APO_12_26_SMA",
        "ULTOSC_7_14_28",
        "AROON_14_down",
        "AROON_14_up",
        "AROONOSC_14",
        "BOP",
        "TRANGE",
        "STDDEV_5_1",
        "STDDEV_20_1",
        "VAR_5_1",
        "LINEARREG_14",
        "LINEARREG_SLOPE_14",
        "CORREL_HL_30",
        "BETA_HL_5",
        "LOGRET_1",
    ];
    let specs = findashpro::operators::indicators::talib_standard();
    let names: Vec<String> = specs.iter().flat_map(FeatureSpec::output_names).collect();
    let bars = goog();
    let run = |spike: bool| {
        let mut set = FeatureSet::new(&specs);
        let mut out = vec![0.0; set.width()];
        for (i, b) in bars[..400].iter().enumerate() {
            let bar = if spike && i == 100 {
                Ohlcv {
                    open: 1e20,
                    high: 1e20,
                    low: 1e20,
                    close: 1e20,
                    volume: b.volume,
                }
            } else {
                *b
            };
            set.update(&bar, &mut out);
        }
        out
    };
    let (with, without) = (run(true), run(false));
    let close = bars[399].close;
    for name in WINDOWED {
        let j = names.iter().position(|n| n == name).expect("column");
        assert!(
            agrees(with[j], without[j], scale(name, close, 0.0)),
            "{name}: {} with the spike 300 bars earlier, {} without",
            with[j],
            without[j]
        );
    }
}
