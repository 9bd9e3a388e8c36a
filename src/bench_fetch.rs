//! `fdp bench fetch`: provider fetch throughput with the response cache cold and warm. A
//! loopback server answers Tiingo's daily body (PROVIDERS.md §4.3's shape) for every ticker; its
//! premium tier has only a daily quota, so the figure is this program's own cost — HTTP, parsing,
//! the breaker, limiter and budget scripts, the cache write — not a provider's pace. The warm
//! pass asks the server nothing (checked) and costs a cache lookup per ticker. Everything goes
//! under a Redis prefix of its own, removed afterwards.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::{LoadedPipeline, Pipeline};
use crate::sources::SourceError;
use crate::sources::providers::source::ProviderSource;
use crate::sources::providers::{ProviderKind, Secret};
use crate::sources::redis_stream::Conn;

/// One pass over the universe.
#[derive(Debug, Clone)]
pub struct FetchLine {
    /// `cold` or `warm`.
    pub cache: &'static str,
    /// Threads fetching at once (each with its own session).
    pub threads: usize,
    /// Tickers fetched.
    pub tickers: usize,
    /// Bars across tickers.
    pub bars: usize,
    /// Requests that reached the server.
    pub requests: usize,
    /// Wall time of the pass.
    pub seconds: f64,
    /// Median per-ticker fetch time.
    pub p50: Duration,
    /// 99th-percentile per-ticker fetch time.
    pub p99: Duration,
}

/// A Tiingo daily body of `bars` weekdays from 2000-01-03.
fn tiingo_body(bars: usize) -> (String, String) {
    let mut rows = Vec::with_capacity(bars);
    let mut d = chrono::NaiveDate::from_ymd_opt(2000, 1, 3).unwrap_or_default();
    while rows.len() < bars {
        if chrono::Datelike::weekday(&d).number_from_monday() <= 5 {
            let p = 100.0 + (rows.len() as f64 * 0.05).sin() * 10.0;
            rows.push(format!(
                r#"{{"date":"{d}T00:00:00.000Z","open":{p},"high":{h},"low":{l},"close":{p},"volume":1000000,"adjOpen":{p},"adjHigh":{h},"adjLow":{l},"adjClose":{p},"adjVolume":1000000,"divCash":0.0,"splitFactor":1.0}}"#,
                h = p + 1.0,
                l = p - 1.0
            ));
        }
        d = d.succ_opt().unwrap_or(d);
    }
    (format!("[{}]", rows.join(",")), d.to_string())
}

/// Serves `body` to every connection, each on a thread of its own; counts requests.
fn serve(body: String) -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (body, seen) = (Arc::clone(&body), Arc::clone(&seen));
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let mut reader = BufReader::new(read);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Ok((url, count))
}

/// Fetches `tickers` tickers of `bars` daily bars each on `threads` threads, cold then warm.
///
/// # Errors
/// Redis unreachable, the loopback server cannot start, or a fetch fails.
pub fn run(tickers: usize, bars: usize, threads: usize) -> Result<Vec<FetchLine>, SourceError> {
    let (body, last) = tiingo_body(bars);
    let (url, served) = serve(body).map_err(|e| SourceError::Providers {
        ticker: "bench".into(),
        reasons: format!("loopback server: {e}"),
    })?;
    let prefix = format!("fdpbench:fetch:{}", std::process::id());
    let names: Vec<String> = (0..tickers).map(|i| format!("T{i:05}")).collect();
    let text = format!(
        "name = \"bench_fetch\"\n[source]\nkind = \"providers\"\ntickers = {names:?}\n\
         start = \"2000-01-01\"\nend = \"{last}\"\nprefix = \"{prefix}\"\nmax_in_flight = {threads}\n\
         providers = [{{ name = \"tiingo\", base_url = \"{url}\", tier = \"premium\" }}]\n\
         [[features]]\nkind = \"sma\"\nperiod = 5\n[model]\nkind = \"threshold\"\nfeature = \"SMA_5\"\n\
         long_when = \"above\"\nenter = 0.0\nexit = 0.0\n"
    );
    let pipeline = Pipeline::parse(&text, std::path::Path::new("<bench>"))
        .unwrap_or_else(|e| unreachable!("built-in bench pipeline: {e}"));
    let p = LoadedPipeline {
        pipeline,
        path: "<bench>".into(),
        base_dir: ".".into(),
        text,
    };
    // The loopback server takes any token: the bench needs none in the environment.
    let source = ProviderSource::open(&p)?.with_key(ProviderKind::Tiingo, Secret::new("bench"));
    let passes = || -> Result<Vec<FetchLine>, SourceError> {
        let mut lines = Vec::new();
        for cache in ["cold", "warm"] {
            let before = served.load(Ordering::Relaxed);
            let mut l = pass(&source, threads, cache)?;
            l.requests = served.load(Ordering::Relaxed) - before;
            lines.push(l);
        }
        Ok(lines)
    };
    let lines = passes();
    let cleaned =
        Conn::open(&source.controls().redis_url).and_then(|mut c| c.delete_prefix(&prefix));
    let lines = lines?;
    cleaned.map_err(|e| SourceError::Providers {
        ticker: "bench".into(),
        reasons: format!("redis: {e}"),
    })?;
    Ok(lines)
}

/// One pass: each thread fetches its share of the tickers through a session of its own.
fn pass(
    source: &ProviderSource,
    threads: usize,
    cache: &'static str,
) -> Result<FetchLine, SourceError> {
    let tickers = source.tickers();
    let (start, end) = source.span();
    let threads = threads.max(1);
    let started = Instant::now();
    let results: Vec<Result<(Vec<Duration>, usize), SourceError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tickers = &tickers;
                s.spawn(move || {
                    let mut session = source.session("bench")?;
                    let (mut lat, mut bars) = (Vec::new(), 0);
                    for (id, name) in tickers.names().iter().enumerate().skip(t).step_by(threads) {
                        let at = Instant::now();
                        let (b, _) =
                            source.fetch_span(&mut session, name, id as u32, start, end)?;
                        lat.push(at.elapsed());
                        bars += b.len();
                    }
                    Ok((lat, bars))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(SourceError::Providers {
                        ticker: "bench".into(),
                        reasons: "a bench thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let (mut all, mut bars) = (Vec::new(), 0);
    for r in results {
        let (lat, b) = r?;
        all.extend(lat);
        bars += b;
    }
    all.sort();
    let q = |p| crate::bench::quantile(&all, p);
    Ok(FetchLine {
        cache,
        threads,
        tickers: all.len(),
        bars,
        requests: 0,
        seconds,
        p50: q(0.5),
        p99: q(0.99),
    })
}

/// The lines as a table.
pub fn table(lines: &[FetchLine]) -> String {
    let mut out = String::from(
        "cache  threads  tickers  requests      bars   tickers/s       bars/s   p50 ms   p99 ms\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{:<5}  {:>7}  {:>7}  {:>8}  {:>8}  {:>10.0}  {:>11.0}  {:>7.2}  {:>7.2}\n",
            l.cache,
            l.threads,
            l.tickers,
            l.requests,
            l.bars,
            l.tickers as f64 / l.seconds,
            l.bars as f64 / l.seconds,
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3
        ));
    }
    out
}
