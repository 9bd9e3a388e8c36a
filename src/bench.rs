//! The benchmark harness behind `fdp bench`: bars per second of the whole graph (1 and 2 workers)
//! and of each stage's kernel, on seeded synthetic data (default 500 tickers × 2,520 daily bars).

use std::time::Instant;

use crate::bar::Tickers;
use crate::config::{LoadedPipeline, Pipeline, QualitySpec, RiskSpec, Sizing};
use crate::engine::{Cluster, RunOptions, run};
use crate::operators::features::FeatureEngine;
use crate::operators::indicators::FeatureSpec;
use crate::operators::portfolio::Portfolio;
use crate::operators::quality::QualityGate;
use crate::operators::risk::{KillSwitch, RiskEngine};
use crate::operators::signal::{RuleModel, SignalBatch};
use crate::sinks::broker::PaperBroker;
use crate::sources::synthetic::Synthetic;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct BenchLine {
    /// What was measured.
    pub name: String,
    /// Bars processed.
    pub bars: u64,
    /// Seconds taken (best of the repeats).
    pub seconds: f64,
}

impl BenchLine {
    /// Throughput.
    pub fn bars_per_sec(&self) -> f64 {
        self.bars as f64 / self.seconds
    }
}

/// A pipeline named `name` over `tickers × bars` seeded synthetic bars on a weekday calendar;
/// `rest` holds its features, model, risk and broker tables.
pub fn synthetic_pipeline(name: &str, tickers: usize, bars: usize, rest: &str) -> LoadedPipeline {
    let text = format!(
        "name = \"{name}\"\n[source]\nkind = \"synthetic\"\ntickers = {tickers}\nbars = {bars}\nseed = 7\n\
         [quality]\ncalendar = \"weekdays\"\n{rest}"
    );
    let pipeline = Pipeline::parse(&text, std::path::Path::new("<bench>"))
        .unwrap_or_else(|e| unreachable!("built-in bench pipeline: {e}"));
    LoadedPipeline {
        pipeline,
        path: "<bench>".into(),
        base_dir: ".".into(),
        text,
    }
}

/// The SMA 10/30 crossover pipeline over synthetic data.
pub fn sma_cross_pipeline(tickers: usize, bars: usize) -> LoadedPipeline {
    synthetic_pipeline(
        "bench_sma_cross",
        tickers,
        bars,
        r#"[[features]]
kind = "sma"
period = 10
[[features]]
kind = "sma"
period = 30
[model]
kind = "crossover"
fast = "SMA_10"
slow = "SMA_30"
[risk.sizing]
kind = "fixed_fraction"
fraction = 0.02
[broker]
kind = "paper"
commission = 0.001
"#,
    )
}

fn best_of<F: FnMut() -> u64>(repeats: usize, mut f: F) -> (u64, f64) {
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (n, best)
}

/// Runs the suite: each stage's line, and the whole graph's lines (best of the rounds) with its
/// [`Rounds`].
pub fn suite(
    tickers: usize,
    bars: usize,
    workers: &[usize],
    repeats: usize,
) -> (Vec<BenchLine>, Vec<Rounds>) {
    let mut lines = Vec::new();
    let syn = Synthetic::new(tickers, bars, 7, None);
    let names: Tickers = syn.tickers();
    let (n, s) = best_of(repeats, || {
        syn.load(0, 1, &names)
            .batches
            .iter()
            .map(|b| b.1.len() as u64)
            .sum()
    });
    lines.push(BenchLine {
        name: "source: synthetic generation".into(),
        bars: n,
        seconds: s,
    });
    let data = syn.load(0, 1, &names).batches;

    let (n, s) = best_of(repeats, || {
        let mut gates: Vec<QualityGate> = (0..tickers)
            .map(|_| {
                QualityGate::new(&QualitySpec {
                    calendar: crate::config::CalendarKind::Weekdays,
                    ..QualitySpec::default()
                })
            })
            .collect();
        let mut n = 0;
        for (_, b) in &data {
            for bar in b.iter() {
                let _ = std::hint::black_box(gates[bar.ticker as usize].check(&bar));
                n += 1;
            }
        }
        n
    });
    lines.push(BenchLine {
        name: "stage: quality".into(),
        bars: n,
        seconds: s,
    });

    let specs = vec![
        FeatureSpec::Sma { period: 10 },
        FeatureSpec::Sma { period: 30 },
    ];
    let (n, s) = best_of(repeats, || {
        let mut fe = FeatureEngine::new(specs.clone());
        data.iter()
            .map(|(_, b)| {
                std::hint::black_box(fe.apply(crate::frame::Bars::from(b.clone())))
                    .bars
                    .len() as u64
            })
            .sum()
    });
    lines.push(BenchLine {
        name: "stage: features (SMA 10, SMA 30)".into(),
        bars: n,
        seconds: s,
    });

    let p = sma_cross_pipeline(tickers, bars);
    let cols = p.pipeline.feature_columns();
    let mut fe = FeatureEngine::new(specs.clone());
    let featured: Vec<_> = data
        .iter()
        .map(|(t, b)| (*t, fe.apply(crate::frame::Bars::from(b.clone()))))
        .collect();
    let (n, s) = best_of(repeats, || {
        let mut models: Vec<Option<RuleModel>> = vec![None; tickers];
        let mut n = 0;
        for (_, fb) in &featured {
            for i in 0..fb.bars.len() {
                let m = models[fb.bars.ticker()[i] as usize].get_or_insert_with(|| {
                    RuleModel::new(&p.pipeline.model, &cols).unwrap_or_else(|| unreachable!())
                });
                let _ = std::hint::black_box(m.update(fb.row(i)));
                n += 1;
            }
        }
        n
    });
    lines.push(BenchLine {
        name: "stage: signal (crossover)".into(),
        bars: n,
        seconds: s,
    });

    let mut models: Vec<Option<RuleModel>> = vec![None; tickers];
    let signals: Vec<(u64, SignalBatch)> = featured
        .iter()
        .map(|(t, fb)| {
            let signal = (0..fb.bars.len())
                .map(|i| {
                    models[fb.bars.ticker()[i] as usize]
                        .get_or_insert_with(|| {
                            RuleModel::new(&p.pipeline.model, &cols)
                                .unwrap_or_else(|| unreachable!())
                        })
                        .update(fb.row(i))
                })
                .collect();
            (
                *t,
                SignalBatch {
                    bars: fb.bars.clone(),
                    signal,
                    payoff: vec![1.0; fb.bars.len()],
                    ..SignalBatch::default()
                },
            )
        })
        .collect();
    let (n, s) = best_of(repeats, || {
        let risk = RiskSpec {
            sizing: Sizing::FixedFraction { fraction: 0.02 },
            ..RiskSpec::default()
        };
        let mut pf = Portfolio::new(
            RiskEngine::new(risk, KillSwitch::default()),
            PaperBroker::simple(0.0005, 0.001, true),
        );
        let mut rows = Vec::new();
        let mut n = 0;
        for (t, sb) in &signals {
            rows.clear();
            rows.extend((0..sb.bars.len()).map(|i| (sb.bars.get(i), sb.signal[i], sb.payoff[i])));
            pf.step(crate::time::event_time(*t), &rows);
            n += rows.len() as u64;
        }
        std::hint::black_box(pf.finish());
        n
    });
    lines.push(BenchLine {
        name: "stage: portfolio (risk + paper broker)".into(),
        bars: n,
        seconds: s,
    });

    let rounds = graph_rounds(&p, workers, repeats);
    for r in &rounds {
        if let Some((n, graph, total)) = r.best() {
            lines.push(BenchLine {
                name: format!("graph: SMA-cross pipeline, -w {}", r.workers),
                bars: n,
                seconds: graph,
            });
            lines.push(BenchLine {
                name: format!("  the same, with source generation, -w {}", r.workers),
                bars: n,
                seconds: total,
            });
        }
    }
    (lines, rounds)
}

/// The whole-graph runs of one worker count, one per round.
#[derive(Debug, Clone, PartialEq)]
pub struct Rounds {
    /// Timely workers.
    pub workers: usize,
    /// Per round: bars replayed, graph seconds and whole-run seconds (`None`: the run failed).
    pub runs: Vec<Option<(u64, f64, f64)>>,
}

impl Rounds {
    /// The run with the least whole-run time: (bars, its graph seconds, its whole-run seconds).
    pub fn best(&self) -> Option<(u64, f64, f64)> {
        self.runs
            .iter()
            .flatten()
            .copied()
            .min_by(|a, b| a.2.total_cmp(&b.2))
    }

    fn graph(&self, round: usize) -> Option<f64> {
        self.runs.get(round).copied().flatten().map(|r| r.1)
    }
}

/// Runs `p` once per worker count in each of `repeats` rounds, the counts' order reversed every
/// other round. On a host whose speed drifts within minutes, runs of one round saw the same
/// host: their ratio (the speed-up) is the figure to read, not one best time per count.
fn graph_rounds(p: &LoadedPipeline, workers: &[usize], repeats: usize) -> Vec<Rounds> {
    let mut rounds: Vec<Rounds> = workers
        .iter()
        .map(|&w| Rounds {
            workers: w,
            runs: Vec::new(),
        })
        .collect();
    for round in 0..repeats.max(1) {
        let mut order: Vec<usize> = (0..rounds.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let opts = RunOptions {
                cluster: Cluster {
                    workers: rounds[i].workers,
                    ..Cluster::default()
                },
                ..RunOptions::default()
            };
            let t = Instant::now();
            let run = match run(p, &opts) {
                Ok(Some(o)) => Some((o.ledger.bars, o.graph_seconds, t.elapsed().as_secs_f64())),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(workers = rounds[i].workers, error = %e, "bench run failed");
                    None
                }
            };
            rounds[i].runs.push(run);
        }
    }
    rounds
}

/// Median (numpy's, as the tear sheet computes it) and range of the finite values of `xs`
/// (`None` when there are none).
fn spread(xs: &[f64]) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((crate::tearsheet::stats::quantile(&v, 0.5), lo, hi))
}

/// The rounds as text: each worker count's graph seconds (median, min–max) and, against the
/// first count, the speed-up of each round (median, min–max).
pub fn rounds_table(rounds: &[Rounds]) -> String {
    let n = rounds.iter().map(|r| r.runs.len()).max().unwrap_or(0);
    let mut s = format!("graph seconds over {n} alternating rounds (median, min-max):\n");
    let base = rounds.first();
    for r in rounds {
        let graph: Vec<f64> = r.runs.iter().flatten().map(|run| run.1).collect();
        let Some((med, lo, hi)) = spread(&graph) else {
            s.push_str(&format!("  -w {}: no run finished\n", r.workers));
            continue;
        };
        s.push_str(&format!("  -w {}: {med:.4} s ({lo:.4}-{hi:.4})", r.workers));
        if let Some(b) = base.filter(|b| b.workers != r.workers) {
            let ratios: Vec<f64> = (0..n)
                .filter_map(|k| Some(b.graph(k)? / r.graph(k)?))
                .collect();
            if let Some((m, lo, hi)) = spread(&ratios) {
                s.push_str(&format!(
                    "; speed-up over -w {} per round {m:.2}x ({lo:.2}-{hi:.2}x)",
                    b.workers
                ));
            }
        }
        s.push('\n');
    }
    s
}

/// One child backtest's peak memory.
#[derive(Debug, Clone)]
pub struct MemoryLine {
    /// What ran.
    pub name: String,
    /// Bars replayed.
    pub bars: u64,
    /// Wall-clock seconds of the whole process (loading, graph, outputs).
    pub seconds: f64,
    /// Peak resident set size of the process, bytes.
    pub peak_rss: u64,
}

/// Runs the SMA-cross backtest over `tickers × bars` synthetic bars in a child `fdp backtest`
/// (this executable) per worker count, outputs written to a temporary folder, and reports each
/// child's peak resident set size as the kernel accounted it (`wait4`): the memory a user's run
/// of that size needs, not the harness's.
///
/// # Errors
/// The child cannot be started, or fails.
pub fn memory_suite(
    tickers: usize,
    bars: usize,
    workers: &[usize],
) -> Result<Vec<MemoryLine>, std::io::Error> {
    let dir = std::env::temp_dir().join(format!("fdp-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("memory.toml");
    let text = format!(
        "{}\n[outputs]\ndir = \"{}\"\nreport = false\n",
        sma_cross_pipeline(tickers, bars).text,
        dir.join("runs").display()
    );
    std::fs::write(&file, text)?;
    let exe = std::env::current_exe()?;
    let mut lines = Vec::new();
    for &w in workers {
        let started = Instant::now();
        let child = std::process::Command::new(&exe)
            .arg("backtest")
            .arg(&file)
            .args(["--run-id", &format!("w{w}"), "-w", &w.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let (status, peak_rss) = wait_with_peak_rss(child.id())?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "the benchmark's backtest (-w {w}) failed: {status}"
            )));
        }
        lines.push(MemoryLine {
            name: format!("backtest {tickers} × {bars} bars, -w {w}"),
            bars: (tickers * bars) as u64,
            seconds,
            peak_rss,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(lines)
}

/// Waits for child `pid` and returns its exit status with its peak resident set size in bytes.
fn wait_with_peak_rss(pid: u32) -> Result<(std::process::ExitStatus, u64), std::io::Error> {
    use std::os::unix::process::ExitStatusExt;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `status` and `usage` outlive the call, and
    // `pid` is a child this process spawned and has not waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Linux reports ru_maxrss in kibibytes.
    Ok((
        std::process::ExitStatus::from_raw(status),
        u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    ))
}

/// The `p` quantile (0–1, nearest rank) of sorted latencies; zero when there are none.
pub fn quantile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let last = sorted.len().saturating_sub(1) as f64;
    sorted
        .get((last * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Formats the memory lines as a table.
pub fn memory_table(lines: &[MemoryLine]) -> String {
    let mut s = format!(
        "{:<55} {:>12} {:>10} {:>14}\n",
        "benchmark", "bars", "seconds", "peak RSS MiB"
    );
    for l in lines {
        s.push_str(&format!(
            "{:<55} {:>12} {:>10.2} {:>14.1}\n",
            l.name,
            l.bars,
            l.seconds,
            l.peak_rss as f64 / (1024.0 * 1024.0)
        ));
    }
    s
}

/// Formats the lines as a table.
pub fn table(lines: &[BenchLine]) -> String {
    let mut s = format!(
        "{:<55} {:>12} {:>10} {:>14}\n",
        "benchmark", "bars", "seconds", "bars/s"
    );
    for l in lines {
        s.push_str(&format!(
            "{:<55} {:>12} {:>10.4} {:>14.0}\n",
            l.name,
            l.bars,
            l.seconds,
            l.bars_per_sec()
        ));
    }
    s
}

/// One seeded synthetic series of `bars` bars, as kernel input (the feature benchmarks' data).
pub fn ohlcv_series(bars: usize) -> Vec<crate::operators::indicators::Ohlcv> {
    Synthetic::new(1, bars, 11, crate::time::parse_time("1900-01-01"))
        .series(0)
        .iter()
        .map(|b| crate::operators::indicators::Ohlcv {
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        })
        .collect()
}

/// ns per bar of the whole standard feature set (68 outputs) and of each indicator alone, over
/// `bars` synthetic bars of one ticker (default 1,000,000).
pub fn features_suite(bars: usize, repeats: usize) -> Vec<BenchLine> {
    use crate::operators::indicators::{FeatureSet, talib_standard};
    let input = ohlcv_series(bars);
    let run = |specs: &[crate::operators::indicators::FeatureSpec]| {
        best_of(repeats, || {
            let mut set = FeatureSet::new(specs);
            let mut out = vec![0.0; set.width()];
            let mut acc = 0.0;
            for b in &input {
                set.update(b, &mut out);
                acc += out[0];
            }
            std::hint::black_box(acc);
            input.len() as u64
        })
    };
    let all = talib_standard();
    let mut lines = Vec::new();
    let (n, s) = run(&all);
    lines.push(BenchLine {
        name: "features: standard set, 68 outputs".into(),
        bars: n,
        seconds: s,
    });
    for spec in &all {
        let (n, s) = run(std::slice::from_ref(spec));
        lines.push(BenchLine {
            name: format!("  {}", spec.output_names().join(" ")),
            bars: n,
            seconds: s,
        });
    }
    lines
}

/// Formats feature lines as ns per bar.
pub fn ns_table(lines: &[BenchLine]) -> String {
    let mut s = format!("{:<70} {:>12} {:>10}\n", "benchmark", "bars", "ns/bar");
    for l in lines {
        s.push_str(&format!(
            "{:<70} {:>12} {:>10.1}\n",
            l.name,
            l.bars,
            l.seconds * 1e9 / l.bars as f64
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(workers: usize, runs: &[Option<(f64, f64)>]) -> Rounds {
        Rounds {
            workers,
            runs: runs.iter().map(|r| r.map(|(g, t)| (1000, g, t))).collect(),
        }
    }

    #[test]
    fn spread_is_the_median_and_range_of_the_finite_values() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(&[f64::NAN, 5.0]), Some((5.0, 5.0, 5.0)));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn the_best_run_is_the_one_with_the_least_whole_run_time() {
        let r = rounds(1, &[Some((0.10, 0.50)), None, Some((0.12, 0.40))]);
        assert_eq!(r.best(), Some((1000, 0.12, 0.40)));
        assert_eq!(rounds(2, &[None]).best(), None);
    }

    #[test]
    fn speed_ups_pair_the_runs_of_one_round() {
        // Paired by round, the speed-ups are 1.5x, 0.5x and 6x (median 1.5x); the counts' own
        // medians, taken apart, would give 0.20 / 0.10 = 2x.
        let one = rounds(
            1,
            &[Some((0.15, 1.0)), Some((0.20, 1.0)), Some((0.60, 1.0))],
        );
        let two = rounds(
            2,
            &[Some((0.10, 1.0)), Some((0.40, 1.0)), Some((0.10, 1.0))],
        );
        let text = rounds_table(&[one.clone(), two]);
        assert!(text.contains("over 3 alternating rounds"), "{text}");
        assert!(text.contains("-w 1: 0.2000 s (0.1500-0.6000)\n"), "{text}");
        assert!(
            text.contains(
                "-w 2: 0.1000 s (0.1000-0.4000); speed-up over -w 1 per round 1.50x (0.50-6.00x)"
            ),
            "{text}"
        );
        // A round where one count failed gives no ratio.
        let two = rounds(2, &[Some((0.10, 1.0)), None, None]);
        let text = rounds_table(&[one, two]);
        assert!(text.contains("per round 1.50x (1.50-1.50x)"), "{text}");
    }
}
