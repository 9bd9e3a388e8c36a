//! No operator sees a bar later than the one it decides on: perturb every bar after T at random;
//! every signal, order decision, fill and equity value up to T is unchanged.

use std::path::Path;

use findashpro::engine::RunOutput;
use findashpro::time::parse_time;

use crate::common::{pipeline_text, repo, run_with};

/// Copies the sample files into `dir`, scaling every bar after `t` by a random factor (prices by
/// one factor per bar, so the bar stays consistent; volume by another).
pub fn perturbed_copy(dir: &Path, t: i64, seed: u64) {
    let mut state = seed;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        0.6 + 0.8 * ((state >> 11) as f64 / (1u64 << 53) as f64)
    };
    for entry in std::fs::read_dir(repo("data/sample")).expect("sample dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        if !name.ends_with("_data.csv") {
            std::fs::write(dir.join(&name), text).expect("copy");
            continue;
        }
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split(',').collect();
            let late = i > 0 && parse_time(f[0]).is_some_and(|d| d > t);
            if !late {
                out.push_str(line);
            } else {
                let (k, kv) = (rnd(), rnd());
                let scale = |s: &str, k: f64| {
                    s.parse::<f64>()
                        .map(|v| format!("{}", v * k))
                        .unwrap_or_default()
                };
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}",
                    f[0],
                    scale(f[1], k),
                    scale(f[2], k),
                    scale(f[3], k),
                    scale(f[4], k),
                    scale(f[5], kv),
                    f[6]
                ));
            }
            out.push('\n');
        }
        std::fs::write(dir.join(&name), out).expect("write");
    }
}

fn sample_in(dir: &Path) -> findashpro::config::LoadedPipeline {
    let text = std::fs::read_to_string(repo("pipelines/sample.toml"))
        .expect("pipeline")
        .replace("data/sample/", "");
    pipeline_text(&text, dir)
}

pub fn up_to(out: &RunOutput, t: i64) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let l = &out.ledger;
    (
        l.signals
            .iter()
            .filter(|s| s.ts <= t)
            .map(|s| format!("{s:?}"))
            .collect(),
        l.orders
            .iter()
            .filter(|o| o.order.ts <= t)
            .map(|o| format!("{:?} {:?}", o.order, o.order.side))
            .collect(),
        l.fills
            .iter()
            .filter(|f| f.ts <= t)
            .map(|f| format!("{f:?}"))
            .collect(),
        l.equity
            .iter()
            .filter(|e| e.ts <= t)
            .map(|e| format!("{e:?}"))
            .collect(),
    )
}

#[test]
fn perturbing_the_future_leaves_the_past_unchanged() {
    let original = run_with(&crate::common::pipeline("sample.toml"), 2);
    for (seed, date) in [(1, "2014-06-02"), (2, "2016-01-04"), (3, "2017-09-15")] {
        let t = parse_time(date).expect("date");
        let dir = tempfile::tempdir().expect("tempdir");
        perturbed_copy(dir.path(), t, seed);
        let perturbed = run_with(&sample_in(dir.path()), 2);
        let (a, b) = (up_to(&original, t), up_to(&perturbed, t));
        assert!(!a.0.is_empty() && !a.1.is_empty() && !a.2.is_empty());
        assert_eq!(
            a, b,
            "the past changed when bars after {date} were perturbed"
        );
        assert_ne!(
            original.ledger.equity.last(),
            perturbed.ledger.equity.last(),
            "the perturbation reached the run"
        );
    }
}
