//! The feature cache: a repeated run serves rows from it (shown by tampering with one), and a
//! changed bar makes the run recompute from there, giving what a run without cache gives.

use std::path::Path;

use findashpro::config::LoadedPipeline;
use findashpro::engine::RunOutput;
use findashpro::operators::feature_cache::FeatureCache;
use findashpro::operators::indicators::FeatureSpec;

use crate::common::{pipeline_text, repo, run_with};

fn sample_with(data: &Path, cache: Option<&Path>) -> LoadedPipeline {
    let mut text = std::fs::read_to_string(repo("pipelines/sample.toml"))
        .expect("sample")
        .replace(
            "data/sample/*_data.csv",
            &format!("{}/*_data.csv", data.display()),
        )
        .replace(
            "data/sample/universe",
            &format!("{}/universe", data.display()),
        );
    if let Some(c) = cache {
        text.push_str(&format!("\n[cache]\nfeatures = \"{}\"\n", c.display()));
    }
    pipeline_text(&text, &repo(""))
}

fn text(o: &RunOutput) -> String {
    format!("{:?}{:?}", o.ledger, o.quarantine)
}

fn specs(p: &LoadedPipeline) -> Vec<FeatureSpec> {
    p.pipeline
        .features
        .iter()
        .map(|f| f.get_ref().clone())
        .collect()
}

#[test]
fn a_repeated_run_serves_rows_from_the_cache_and_a_changed_bar_recomputes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let sample = repo("data/sample");
    let plain = run_with(&sample_with(&sample, None), 1);
    let first = run_with(&sample_with(&sample, Some(&cache_dir)), 2);
    assert_eq!(text(&plain), text(&first), "the cache changes no result");
    let p = sample_with(&sample, Some(&cache_dir));
    let cache = FeatureCache::new(&cache_dir, &specs(&p));
    let mut entry = cache.load("AAPL").expect("AAPL cached");
    assert_eq!(entry.ts.len(), 1259);
    let second = run_with(&p, 1);
    assert_eq!(
        text(&plain),
        text(&second),
        "served rows equal computed ones"
    );

    // Tamper with AAPL's cached SMA_10 (column 0): a run that serves from the cache now sees it.
    for r in 0..entry.ts.len() {
        entry.rows[r * entry.width] = 1e9;
    }
    cache.store("AAPL", &entry).expect("store");
    let tampered = run_with(&p, 1);
    let aapl = tampered.tickers.id("AAPL").expect("AAPL");
    let golden_crosses =
        |o: &RunOutput| o.ledger.signals.iter().filter(|s| s.ticker == aapl).count();
    assert_eq!(
        golden_crosses(&tampered),
        0,
        "SMA_10 at 1e9 never crosses: the rows came from the cache"
    );

    // Change one AAPL bar in 2016: from there the run recomputes, as a run without cache does.
    std::fs::remove_dir_all(&cache_dir).expect("clear the tampered cache");
    let _populate = run_with(&p, 2);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    for f in std::fs::read_dir(&sample).expect("sample") {
        let f = f.expect("entry").path();
        let name = f.file_name().expect("name").to_owned();
        let mut text = std::fs::read_to_string(&f).expect("read");
        if name == "AAPL_data.csv" {
            text = text.replace("2016-06-01,99.02,", "2016-06-01,99.03,");
        }
        std::fs::write(data.join(name), text).expect("write");
    }
    let changed_plain = run_with(&sample_with(&data, None), 1);
    let changed_cached = run_with(&sample_with(&data, Some(&cache_dir)), 1);
    assert_eq!(text(&changed_plain), text(&changed_cached));
    assert_ne!(golden_crosses(&changed_cached), 0);
}
