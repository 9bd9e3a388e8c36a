//! `fdp bench pg`: recording bars in PostgreSQL, `INSERT … UNNEST` against binary `COPY`
//! ([`crate::sinks::pg_copy`]) for each batch size, in a scratch database, the two paths
//! alternating so the host's drift falls on both. Each batch is new bars (the common case), then
//! the same batch again (a restarted run's re-recording, all conflicts).

use std::time::Instant;

use crate::bar::Bar;
use crate::bench::BenchLine;
use crate::sinks::pg_copy::write_bars_copy;
use crate::sinks::postgres::{self, DbError, StoredBar, write_bars_unnest};

/// Batch sizes measured.
pub const SIZES: [usize; 5] = [100, 500, 2_000, 10_000, 50_000];

fn rows(n: usize, offset: i64) -> Vec<StoredBar> {
    (0..n)
        .map(|i| {
            let close = 100.0 + (i % 97) as f64 * 0.25;
            StoredBar {
                ticker: format!("T{:04}.X", i % 500),
                bar: Bar {
                    ticker: (i % 500) as u32,
                    ts: 1_600_000_000 + offset + (i / 500) as i64 * 86_400,
                    open: close,
                    high: close + 1.0,
                    low: close - 1.0,
                    close,
                    volume: 1_000.0,
                },
                stream_id: format!("{}-{i}", 1_700_000_000_000i64 + offset),
            }
        })
        .collect()
}

/// For each size, rows/s of new and of already recorded bars by UNNEST and by COPY (the
/// slowest and fastest of `repeats`).
///
/// # Errors
/// PostgreSQL unreachable, or a failing statement.
pub fn run(database_url: &str, repeats: usize) -> Result<Vec<BenchLine>, DbError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DbError::Corrupt {
            what: format!("no runtime: {e}"),
        })?;
    let name = format!("fdp_bench_pg_{}", std::process::id());
    let admin = rt.block_on(postgres::connect(database_url))?;
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))?;
    let url = match database_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => database_url.to_string(),
    };
    let result = rt.block_on(async {
        let mut c = postgres::connect(&url).await?;
        postgres::migrate(&mut c).await?;
        let mut lines = Vec::new();
        // Every batch is new bars: its times start 10⁸ s (three years) after the last one's.
        let mut offset = 0;
        for &n in &SIZES {
            let mut times: [[Vec<f64>; 2]; 2] = Default::default();
            for r in 0..repeats.max(1) {
                // Alternate which path goes first.
                let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
                for path in order {
                    offset += 100_000_000;
                    let batch = rows(n, offset);
                    for (again, slot) in times[path].iter_mut().enumerate() {
                        let started = Instant::now();
                        let written = if path == 0 {
                            write_bars_unnest(&mut c, "bench", &batch).await?
                        } else {
                            write_bars_copy(&mut c, "bench", &batch).await?
                        };
                        slot.push(started.elapsed().as_secs_f64());
                        let expected = if again == 0 { n as u64 } else { 0 };
                        if written != expected {
                            return Err(DbError::Corrupt {
                                what: format!("{written} rows written of {expected}"),
                            });
                        }
                    }
                }
            }
            for (path, label) in ["UNNEST", "COPY binary"].iter().enumerate() {
                for (again, what) in ["new bars", "recorded before"].iter().enumerate() {
                    let t = &times[path][again];
                    let slow = t.iter().copied().fold(0.0, f64::max);
                    let fast = t.iter().copied().fold(f64::INFINITY, f64::min);
                    for (s, which) in [(slow, "slowest"), (fast, "fastest")] {
                        lines.push(BenchLine {
                            name: format!("bars {n:>6} per batch, {label}, {what} ({which})"),
                            bars: n as u64,
                            seconds: s,
                        });
                    }
                }
            }
        }
        Ok(lines)
    });
    let _ =
        rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
    result
}
