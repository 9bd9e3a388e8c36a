//! `fdp bench stream`: the streaming run against the loopback Redis and PostgreSQL.
//!
//! Three cases on seeded synthetic bars through the SMA-cross pipeline:
//! - *sustained*: the stream is filled first, then `fdp run`'s engine drains it; bars/s from its
//!   start to the acknowledgement of the last message (every decision committed first);
//! - *1 k/s* and *10 k/s*: a feeder pushes bars at that rate while the engine runs; per bar, the
//!   time from its XADD to the acknowledgement that follows the commit, p50 and p99.
//!
//! Each case uses a key prefix and run id of its own in a scratch database that is dropped at the
//! end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bench::sma_cross_pipeline;
use crate::sinks::postgres;
use crate::sources::redis_stream::{Conn, Keys};
use crate::stream::{self, StreamOptions, StreamRunError};

/// One measured case.
#[derive(Debug, Clone)]
pub struct StreamLine {
    /// What ran.
    pub label: String,
    /// Bars pushed.
    pub bars: u64,
    /// Seconds from the engine's start (sustained) or the first XADD (rates) to the last ack.
    pub seconds: f64,
    /// p50 XADD-to-commit latency, seconds.
    pub p50: Option<f64>,
    /// p99 XADD-to-commit latency, seconds.
    pub p99: Option<f64>,
}

/// Runs the three cases with `workers` consumers. `database_url` names a server database the
/// scratch database is created from.
///
/// # Errors
/// Redis or PostgreSQL unreachable, or a failing run.
pub fn suite(
    redis_url: &str,
    database_url: &str,
    workers: usize,
) -> Result<Vec<StreamLine>, StreamRunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StreamRunError::Worker {
            message: e.to_string(),
        })?;
    let name = format!("fdp_bench_{}", std::process::id());
    let admin = rt.block_on(postgres::connect(database_url))?;
    remove_leftovers(&rt, &admin, redis_url)?;
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
        .map_err(postgres::DbError::from)?;
    let url = match database_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => database_url.to_string(),
    };
    let cases: [(&str, usize, usize, Option<f64>); 3] = [
        ("sustained", 200, 500, None),
        ("1k bars/s", 20, 250, Some(1_000.0)),
        ("10k bars/s", 100, 500, Some(10_000.0)),
    ];
    let mut out = Vec::new();
    let mut result = Ok(());
    for (label, tickers, bars, rate) in cases {
        match case(redis_url, &url, workers, label, tickers, bars, rate) {
            Ok(l) => out.push(l),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ =
        rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
    result.map(|()| out)
}

/// Whether process `pid` is gone (no `/proc/<pid>`): a scratch database or key prefix named after
/// it is a leftover of a bench that was killed. A reused pid keeps a leftover one run longer.
fn gone(pid: &str) -> bool {
    pid.parse::<u32>()
        .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// Drops the scratch databases and Redis keys of earlier benches that were killed before their
/// own cleanup ran (named `fdp_bench_<pid>` and `fdpbench:<pid>:…` after a process now gone).
fn remove_leftovers(
    rt: &tokio::runtime::Runtime,
    admin: &tokio_postgres::Client,
    redis_url: &str,
) -> Result<(), StreamRunError> {
    let rows = rt
        .block_on(admin.query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'fdp\\_bench\\_%'",
            &[],
        ))
        .map_err(postgres::DbError::from)?;
    for row in rows {
        let db: String = row.get(0);
        if db.strip_prefix("fdp_bench_").is_some_and(gone) {
            tracing::info!(database = %db, "dropping a killed bench's scratch database");
            rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                .map_err(postgres::DbError::from)?;
        }
    }
    let mut r = Conn::open(redis_url)?;
    let mut prefixes: Vec<String> = r
        .scan("fdpbench:*")?
        .into_iter()
        .filter_map(|k| k.split(':').nth(1).map(str::to_string))
        .filter(|pid| gone(pid))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    for pid in prefixes {
        let removed = r.delete_prefix(&format!("fdpbench:{pid}"))?;
        tracing::info!(pid = %pid, removed, "removed a killed bench's Redis keys");
    }
    Ok(())
}

fn case(
    redis_url: &str,
    database_url: &str,
    workers: usize,
    label: &str,
    tickers: usize,
    bars: usize,
    rate: Option<f64>,
) -> Result<StreamLine, StreamRunError> {
    let p = sma_cross_pipeline(tickers, bars);
    let prefix = format!(
        "fdpbench:{}:{}",
        std::process::id(),
        label.replace(' ', "_")
    );
    let keys = Keys::new(&prefix);
    let total_bars = (tickers * bars) as u64;
    // Bars plus one watermark per time.
    let total_messages = total_bars + bars as u64;
    let maxlen = (total_messages as usize * 2).max(10_000);
    let mut o = StreamOptions::new(redis_url, database_url, label);
    o.prefix = prefix.clone();
    o.cluster.workers = workers;
    o.idle_shutdown = Some(Duration::from_secs(2));
    o.batch = 2048;
    o.metrics.keep_samples.store(true, Ordering::Relaxed);
    let metrics = Arc::clone(&o.metrics);
    let done = |m: &crate::sinks::prometheus::StreamMetrics| {
        m.acked.load(Ordering::Relaxed) + m.redelivered.load(Ordering::Relaxed) >= total_messages
    };
    let seconds;
    if rate.is_none() {
        stream::feed(&p, redis_url, &prefix, maxlen, None)?;
        let p2 = p.clone();
        let started = Instant::now();
        let engine = std::thread::spawn(move || stream::run(&p2, &o));
        while !done(&metrics) && !engine.is_finished() {
            std::thread::sleep(Duration::from_micros(200));
        }
        seconds = started.elapsed().as_secs_f64();
        join(engine)?;
    } else {
        let p2 = p.clone();
        let engine = std::thread::spawn(move || stream::run(&p2, &o));
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        stream::feed(&p, redis_url, &prefix, maxlen, rate)?;
        while !done(&metrics) && !engine.is_finished() {
            std::thread::sleep(Duration::from_micros(200));
        }
        seconds = started.elapsed().as_secs_f64();
        join(engine)?;
    }
    Conn::open(redis_url)?.delete_prefix(&keys.prefix)?;
    Ok(StreamLine {
        label: format!("{label} ({tickers} tickers × {bars} bars, -w {workers})"),
        bars: total_bars,
        seconds,
        p50: metrics.sample_quantile(0.5),
        p99: metrics.sample_quantile(0.99),
    })
}

fn join(
    h: std::thread::JoinHandle<Result<stream::Ending, StreamRunError>>,
) -> Result<(), StreamRunError> {
    match h.join() {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(StreamRunError::Worker {
            message: "the engine thread panicked".into(),
        }),
    }
}

/// The cases as a table.
pub fn table(lines: &[StreamLine]) -> String {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.2} ms", s * 1e3));
    let mut out = format!(
        "{:<48} {:>10} {:>12} {:>12} {:>12}\n",
        "case", "bars", "bars/s", "p50", "p99"
    );
    for l in lines {
        out.push_str(&format!(
            "{:<48} {:>10} {:>12.0} {:>12} {:>12}\n",
            l.label,
            l.bars,
            l.bars as f64 / l.seconds,
            ms(l.p50),
            ms(l.p99)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_process_that_is_gone_leaves_leftovers() {
        assert!(!gone(&std::process::id().to_string()));
        assert!(!gone("not-a-pid"));
        // Above Linux's largest pid (2^22).
        assert!(gone("4294967295"));
    }
}
