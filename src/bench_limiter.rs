//! `fdp bench limiter`: the shared rate limiter's cost against the local Redis — decisions per
//! second with N threads on one key (each its own connection, as worker processes have), and the
//! latency one decision adds to a request (p50/p99) — and the whole control path a cached
//! request takes (cache lookup only) beside it.

use std::time::{Duration, Instant};

use crate::sources::providers::limiter::{Limit, RateLimiter};
use crate::sources::redis_stream::{Conn, StreamError};

/// One measured line.
#[derive(Debug, Clone)]
pub struct LimiterLine {
    /// Threads deciding at once.
    pub threads: usize,
    /// Decisions per second across threads.
    pub per_second: f64,
    /// Median decision latency.
    pub p50: Duration,
    /// 99th-percentile decision latency.
    pub p99: Duration,
    /// Share of decisions that admitted (the limit is set so both answers occur).
    pub admitted: f64,
}

/// Runs `decisions` decisions on each of `threads` threads against one key under a prefix of
/// its own (removed afterwards), with a limit of 1,000 per 100 ms so both answers occur.
///
/// # Errors
/// Redis unreachable or failing.
pub fn run(redis_url: &str, threads: usize, decisions: usize) -> Result<LimiterLine, StreamError> {
    let prefix = format!("fdpbench:limiter:{}", std::process::id());
    let limiter = RateLimiter::new(
        &prefix,
        "bench",
        "key",
        &[Limit {
            count: 1_000,
            window: Duration::from_millis(100),
        }],
    )
    .with_margin(Duration::ZERO);
    let started = Instant::now();
    let results: Vec<Result<(Vec<Duration>, usize), StreamError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let limiter = limiter.clone();
                s.spawn(move || {
                    let mut conn = Conn::open(redis_url)?;
                    let mut lat = Vec::with_capacity(decisions);
                    let mut admitted = 0;
                    for i in 0..decisions {
                        let at = Instant::now();
                        let refused = limiter.try_acquire(&mut conn, &format!("{t}-{i}"))?;
                        lat.push(at.elapsed());
                        admitted += usize::from(refused.is_none());
                    }
                    Ok((lat, admitted))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StreamError::Reply {
                        what: "a bench thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    let mut admitted = 0;
    for r in results {
        let (lat, a) = r?;
        all.extend(lat);
        admitted += a;
    }
    Conn::open(redis_url)?.delete_prefix(&prefix)?;
    all.sort();
    let q = |p| crate::bench::quantile(&all, p);
    let n = all.len().max(1) as f64;
    Ok(LimiterLine {
        threads,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: q(0.5),
        p99: q(0.99),
        admitted: admitted as f64 / n,
    })
}

/// The lines as a table.
pub fn table(lines: &[LimiterLine]) -> String {
    let mut out = String::from("threads  decisions/s      p50 µs   p99 µs  admitted\n");
    for l in lines {
        out.push_str(&format!(
            "{:>7}  {:>11.0}  {:>9.1}  {:>7.1}  {:>7.1} %\n",
            l.threads,
            l.per_second,
            l.p50.as_secs_f64() * 1e6,
            l.p99.as_secs_f64() * 1e6,
            l.admitted * 100.0
        ));
    }
    out
}
