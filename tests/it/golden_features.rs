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
        FeatureSpec::LogReturn,
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

#[test]
fn every_golden_column_matches_talib_within_1e9_with_equal_nan_positions() {
    let specs = findashpro::operators::indicators::talib_standard();
    let (header, rows) = read_csv(&repo("tests/fixtures/golden/goog_daily_talib.csv"));
    let bars = goog();
    let mut set = FeatureSet::new(&specs);
    let mut out = vec![0.0; set.width()];
    let mut failures: Vec<String> = Vec::new();
    for (i, bar) in bars.iter().enumerate() {
        set.update(bar, &mut out);
        for (j, ours) in out.iter().enumerate() {
            let name = &header[j + 1];
            let golden: f64 = rows[i][j + 1].parse().expect("golden number");
            let bad = if golden.is_nan() || ours.is_nan() {
                golden.is_nan() != ours.is_nan()
            } else {
                !close(*ours, golden, 1e-9)
            };
            if bad && !failures.iter().any(|f| f.starts_with(name.as_str())) {
                failures.push(format!(
                    "{name} first differs at row {i} ({}): ours {ours}, TA-Lib {golden}",
                    rows[i][0]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} columns differ:\n{}",
        failures.len(),
        failures.join("\n")
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
