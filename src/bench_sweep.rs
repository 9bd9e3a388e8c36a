//! `fdp bench sweep`: combination-bars per second of a parameter sweep — the grid of
//! `scripts/vectorbt_sweep_bench.py` (SMA fast 5..50/5 × slow 20..200/10, 190 combinations) over
//! `pipelines/reference_sma_cross.toml`'s GOOG bars: the dataflow alone (as vectorbt's timing,
//! which starts from prices in memory), and with the source's CSV read and the graph's setup;
//! planning, metrics and files are outside both. Slowest and fastest of the repeats per worker
//! count.

use std::path::Path;
use std::time::Instant;

use crate::bench::BenchLine;
use crate::engine::{Cluster, EngineError, RunOptions};
use crate::sweep::{SweepError, parse_param, plan};

/// Why the benchmark cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BenchSweepError {
    /// The grid does not plan (the pipeline file missing: run from the repository root).
    #[error(transparent)]
    Plan(#[from] SweepError),
    /// The sweep failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The grid, as `--set` arguments.
pub const GRID: [&str; 2] = ["model.fast=5..50/5", "model.slow=20..200/10"];

/// For each worker count, the slowest and fastest of `repeats` sweeps as two lines (`bars` counts
/// combination-bars).
///
/// # Errors
/// The pipeline does not load (run from the repository root) or a sweep fails.
pub fn run(
    pipeline: &Path,
    workers: &[usize],
    repeats: usize,
) -> Result<Vec<BenchLine>, BenchSweepError> {
    let params = GRID
        .iter()
        .map(|s| parse_param(s))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = plan(pipeline, params)?;
    let mut lines = Vec::new();
    for &w in workers {
        let opts = RunOptions {
            cluster: Cluster {
                workers: w.max(1),
                ..Cluster::default()
            },
            ..RunOptions::default()
        };
        let (mut graph, mut whole) = (Vec::new(), Vec::new());
        let mut work = 0;
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            let out = crate::engine::sweep::run(&plan.base, plan.spec.clone(), &opts)?;
            whole.push(started.elapsed().as_secs_f64());
            graph.push(out.graph_seconds);
            work = out.bars * plan.combos.len() as u64;
        }
        let range = |v: &[f64]| {
            v.iter()
                .fold((f64::INFINITY, 0.0_f64), |(a, b), &t| (a.min(t), b.max(t)))
        };
        let name = format!("sweep {} combinations, -w {w}", plan.combos.len());
        for (what, times) in [("dataflow", &graph), ("with the CSV read", &whole)] {
            let (lo, hi) = range(times);
            for (which, seconds) in [("slowest", hi), ("fastest", lo)] {
                lines.push(BenchLine {
                    name: format!("{name}, {what} ({which})"),
                    bars: work,
                    seconds,
                });
            }
        }
    }
    Ok(lines)
}
