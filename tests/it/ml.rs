//! The ML model in the signal slot (`pipelines/sp500_ml.toml`, on three tickers to keep the debug
//! build quick): walk-forward training repeats exactly on one and two workers, and perturbing the
//! bars after T changes no prediction, order or fill up to T, across retrains.

use std::path::Path;

use findashpro::config::LoadedPipeline;
use findashpro::time::parse_time;

use crate::common::{pipeline_text, repo, run_with};
use crate::lookahead::{perturbed_copy, up_to};

pub fn ml_in(dir: &Path) -> LoadedPipeline {
    let text = std::fs::read_to_string(repo("pipelines/sp500_ml.toml"))
        .expect("pipeline")
        .replace("data/sample/", "")
        .replace(
            "start = \"2013-02-08\"",
            "tickers = [\"AAPL\", \"JPM\", \"XOM\"]\nstart = \"2013-02-08\"",
        );
    pipeline_text(&text, dir)
}

#[test]
fn ml_signals_repeat_exactly_on_one_and_two_workers() {
    let p = ml_in(&repo("data/sample"));
    let one = run_with(&p, 1);
    let two = run_with(&p, 2);
    // Compared as text: scores may be NaN (a hit rate without confident calls), and NaN ≠ NaN.
    assert_eq!(format!("{:?}", one.ledger), format!("{:?}", two.ledger));
    let s = &one.ledger.signals;
    assert!(s.len() > 50, "{} signals", s.len());
    for r in s {
        assert!(
            r.signal.confidence > 0.5 && r.signal.confidence <= 1.0,
            "{r:?}"
        );
        assert!(r.signal.predicted_return.is_finite(), "{r:?}");
    }
    assert!(!one.ledger.fills.is_empty());
    // Every training is scored out of sample: four base models, the ensemble, the baseline.
    let ml = &one.ledger.ml_metrics;
    assert!(ml.len() >= 3 * 4, "{} trainings", ml.len());
    for (_, r) in ml {
        let names: Vec<&str> = r.scores.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "random_forest",
                "logistic_regression",
                "decision_tree",
                "naive_bayes",
                "ensemble",
                "baseline"
            ]
        );
        assert!(r.samples >= 250 && r.train_from < r.trained_at);
    }
}

#[test]
fn perturbing_the_future_leaves_ml_decisions_before_it_unchanged() {
    let original = run_with(&ml_in(&repo("data/sample")), 2);
    // After the first training (~bar 255) and across later retrains (every 250 bars).
    for (seed, date) in [(4, "2015-06-01"), (5, "2017-03-01")] {
        let t = parse_time(date).expect("date");
        let dir = tempfile::tempdir().expect("tempdir");
        perturbed_copy(dir.path(), t, seed);
        let perturbed = run_with(&ml_in(dir.path()), 2);
        let (a, b) = (up_to(&original, t), up_to(&perturbed, t));
        assert!(!a.0.is_empty() && !a.1.is_empty());
        assert_eq!(
            a, b,
            "the past changed when bars after {date} were perturbed"
        );
        assert_ne!(
            original.ledger.signals.last(),
            perturbed.ledger.signals.last(),
            "the perturbation reached the model"
        );
    }
}
