//! The drift operator on real data: for a rule strategy it reports its inputs' moves without
//! touching a decision, on equities (the bundled S&P 500 sample), FX near 1.0 (EURUSD hourly) and
//! crypto in the tens of thousands (BTCUSDT hourly); its events repeat on 1 and 2 workers and
//! never depend on a later bar; a `[drift]` naming an unknown feature is refused with its place.

use std::path::Path;

use findashpro::config::{LoadedPipeline, Pipeline};
use findashpro::engine::RunOutput;
use findashpro::time::parse_time;

use crate::common::{pipeline_text, repo, run_with};
use crate::lookahead::perturbed_copy;

const DRIFT: &str = "[drift]\nwindow = 40\nreference = 120\nbins = 8\nthreshold = 0.3\n";

/// A crossover on SMA 5/20 with RSI beside it over `file` (`format`), with `drift` appended.
fn single(file: &str, format: &str, drift: &str) -> LoadedPipeline {
    let text = format!(
        "name = \"drift\"\n[source]\nkind = \"files\"\nformat = \"{format}\"\npaths = [\"{file}\"]\n\
         [quality]\ncalendar = \"none\"\n\
         [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 20\n\
         [[features]]\nkind = \"rsi\"\nperiod = 14\n\
         [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_20\"\n{drift}"
    );
    pipeline_text(&text, &repo("data/reference"))
}

/// `pipelines/sample.toml` over the sample in `dir`, with `drift` appended.
fn sample_in(dir: &Path, drift: &str) -> LoadedPipeline {
    let text = std::fs::read_to_string(repo("pipelines/sample.toml"))
        .expect("pipeline")
        .replace("data/sample/", "");
    pipeline_text(&format!("{text}\n{drift}"), dir)
}

/// Everything a rule strategy decides, as text (NaN-safe).
fn decisions(o: &RunOutput) -> String {
    let l = &o.ledger;
    format!("{:?}{:?}{:?}{:?}", l.signals, l.orders, l.fills, l.equity)
}

#[test]
fn a_rule_strategy_learns_its_inputs_moved_and_decides_exactly_as_without_the_operator() {
    for (file, format, watched) in [
        ("EURUSD.csv", "backtesting_py", "RSI_14"),
        (
            "BTCUSDT_Binance_futures_data_hour.csv",
            "cryptodatadownload",
            "RSI_14",
        ),
    ] {
        let plain = run_with(&single(file, format, ""), 1);
        let watched_run = run_with(
            &single(
                file,
                format,
                &format!("{DRIFT}features = [\"{watched}\"]\n"),
            ),
            1,
        );
        assert!(
            plain.ledger.drifts.is_empty(),
            "{file}: no [drift], no operator"
        );
        assert_eq!(decisions(&plain), decisions(&watched_run), "{file}");
        let d = &watched_run.ledger.drifts;
        assert!(!d.is_empty(), "{file}: real data drifts");
        let bars = plain.ledger.bars as usize;
        assert!(
            d.len() < bars / 40,
            "{file}: {} events over {bars} bars",
            d.len()
        );
        for (_, r) in d {
            assert_eq!((r.feature, r.name.as_str()), (0, watched), "{file}");
            assert!(r.kl > 0.3 && r.kl.is_finite(), "{file}: {r:?}");
        }
        // One shift raises one event: the reference is gathered again after each, so two events
        // of a ticker are at least reference + window bars apart.
        let mut times: Vec<i64> = d.iter().map(|(_, r)| r.ts).collect();
        times.sort_unstable();
        let all: Vec<i64> = plain.ledger.equity.iter().map(|e| e.ts).collect();
        for w in times.windows(2) {
            let between = all.iter().filter(|t| **t > w[0] && **t <= w[1]).count();
            assert!(between >= 160, "{file}: events {w:?} {between} bars apart");
        }
    }
}

#[test]
fn drift_events_repeat_on_two_workers_and_ignore_later_bars() {
    let drift = format!("{DRIFT}features = [\"RSI_14\", \"VOL_30\"]\n");
    let p = sample_in(&repo("data/sample"), &drift);
    let one = run_with(&p, 1);
    let two = run_with(&p, 2);
    assert!(
        one.ledger.drifts.len() >= 20,
        "{:?}",
        one.ledger.drifts.len()
    );
    assert_eq!(format!("{:?}", one.ledger), format!("{:?}", two.ledger));
    // Perturb every bar after T: no event up to T changes.
    let t = parse_time("2015-06-01").expect("time");
    let dir = tempfile::tempdir().expect("tempdir");
    perturbed_copy(dir.path(), t, 11);
    let changed = run_with(&sample_in(dir.path(), &drift), 1);
    let before = |o: &RunOutput| -> Vec<String> {
        o.ledger
            .drifts
            .iter()
            .filter(|(_, r)| r.ts <= t)
            .map(|x| format!("{x:?}"))
            .collect()
    };
    assert!(!before(&one).is_empty());
    assert_eq!(before(&one), before(&changed));
    assert_ne!(
        format!("{:?}", one.ledger.drifts),
        format!("{:?}", changed.ledger.drifts),
        "the perturbation reaches the events after T"
    );
}

#[test]
fn a_drift_section_with_an_unknown_feature_or_bad_number_names_its_line() {
    let base = std::fs::read_to_string(repo("pipelines/sample.toml")).expect("pipeline");
    for (drift, says, line_of) in [
        (
            "[drift]\nfeatures = [\"RSI_41\"]\n",
            "drift feature `RSI_41` is not a declared feature output",
            "features",
        ),
        (
            "[drift]\nwindow = 0\n",
            "drift: window must be in",
            "window",
        ),
        (
            "[drift]\nthreshold = -2.0\n",
            "drift: threshold must be positive",
            "threshold",
        ),
    ] {
        let text = format!("{base}\n{drift}");
        let err = Pipeline::parse(&text, Path::new("p.toml"))
            .expect_err("refused")
            .to_string();
        let want_line = text
            .lines()
            .enumerate()
            .skip_while(|(_, l)| *l != "[drift]")
            .find(|(_, l)| l.starts_with(line_of))
            .map(|(i, _)| i + 1);
        assert!(err.contains(says), "{err}");
        assert!(
            err.starts_with(&format!("p.toml:{}:", want_line.expect("a line"))),
            "{err}"
        );
    }
}
