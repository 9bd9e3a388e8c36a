//! Criterion benchmarks: the SMA-cross graph on 1 and 2 workers and the feature stage, on seeded
//! synthetic data. `fdp bench` prints the full table (every stage, 500 × 2,520 bars).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use findashpro::bench::sma_cross_pipeline;
use findashpro::engine::{Cluster, RunOptions, run};
use findashpro::operators::features::FeatureEngine;
use findashpro::operators::indicators::FeatureSpec;
use findashpro::sources::synthetic::Synthetic;

const TICKERS: usize = 500;
const BARS: usize = 2520;

fn graph(c: &mut Criterion) {
    let p = sma_cross_pipeline(TICKERS, BARS);
    let mut g = c.benchmark_group("graph_sma_cross");
    g.sample_size(10);
    g.throughput(Throughput::Elements((TICKERS * BARS) as u64));
    for w in [1, 2] {
        let opts = RunOptions {
            cluster: Cluster {
                workers: w,
                ..Cluster::default()
            },
            ..RunOptions::default()
        };
        g.bench_function(format!("w{w}"), |b| {
            b.iter(|| run(&p, &opts).ok().flatten().map(|o| o.ledger.bars))
        });
    }
    g.finish();
}

fn features(c: &mut Criterion) {
    let syn = Synthetic::new(TICKERS, BARS, 7, None);
    let data = syn.load(0, 1, &syn.tickers()).batches;
    let specs = vec![
        FeatureSpec::Sma { period: 10 },
        FeatureSpec::Sma { period: 30 },
    ];
    let mut g = c.benchmark_group("features");
    g.sample_size(10);
    g.throughput(Throughput::Elements((TICKERS * BARS) as u64));
    g.bench_function("sma10_sma30", |b| {
        b.iter(|| {
            let mut fe = FeatureEngine::new(specs.clone());
            data.iter()
                .map(|(_, batch)| {
                    fe.apply(findashpro::frame::Bars::from(batch.clone()))
                        .bars
                        .len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

fn standard_set(c: &mut Criterion) {
    use findashpro::operators::indicators::{FeatureSet, talib_standard};
    const BARS: usize = 1_000_000;
    let input = findashpro::bench::ohlcv_series(BARS);
    let specs = talib_standard();
    let mut g = c.benchmark_group("features_standard_set");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BARS as u64));
    g.bench_function("68_outputs_1m_bars", |b| {
        b.iter(|| {
            let mut set = FeatureSet::new(&specs);
            let mut out = vec![0.0; set.width()];
            let mut acc = 0.0;
            for x in &input {
                set.update(x, &mut out);
                acc += out[0];
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, graph, features, standard_set);
criterion_main!(benches);
