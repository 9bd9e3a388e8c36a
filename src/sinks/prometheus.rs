//! Live metrics of a streaming run in the Prometheus text format (version 0.0.4), served on
//! `GET /metrics` by a small HTTP/1.1 listener on its own thread.
//!
//! Lock-free counters shared by every worker thread; the latency histogram counts, per bar, the
//! time from the XADD that brought it (the stream id's milliseconds) to the acknowledgement that
//! follows the PostgreSQL commit of its decisions.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Counters and the latency histogram of a run.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    /// Messages read from the stream.
    pub messages: AtomicU64,
    /// Bars fed into the graph.
    pub bars: AtomicU64,
    /// Work items (tickers) processed.
    pub tickers: AtomicU64,
    /// Rows quarantined (committed).
    pub rejects: AtomicU64,
    /// Messages moved to the dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Redelivered messages whose effects were already committed.
    pub redelivered: AtomicU64,
    /// Orders committed.
    pub orders: AtomicU64,
    /// PostgreSQL commits.
    pub commits: AtomicU64,
    /// When set, every observation is also kept (for exact percentiles in `fdp bench stream`).
    pub keep_samples: std::sync::atomic::AtomicBool,
    samples: std::sync::Mutex<Vec<f64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl StreamMetrics {
    /// A shared, zeroed set.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records `n` bars that took `seconds` from XADD to commit.
    pub fn observe(&self, seconds: f64, n: u64) {
        let s = seconds.max(0.0);
        if self.keep_samples.load(Ordering::Relaxed)
            && let Ok(mut v) = self.samples.lock()
        {
            v.extend(std::iter::repeat_n(s, n as usize));
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((s * 1e6) as u64 * n, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn latency_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The latency below which a fraction `q` of the observations fall, as the upper bound of its
    /// bucket (`None` before any observation, `+inf` beyond the last bucket).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.latency_count();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil() as u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            if self.buckets[i].load(Ordering::Relaxed) >= want {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }

    /// The exact `q` quantile of the kept samples (see `keep_samples`), in seconds.
    pub fn sample_quantile(&self, q: f64) -> Option<f64> {
        let mut v = self.samples.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i])
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 9] = [
            ("fdp_messages_total", "Stream messages read", &self.messages),
            ("fdp_bars_total", "Bars fed into the graph", &self.bars),
            (
                "fdp_tickers_processed_total",
                "Ticker work items processed",
                &self.tickers,
            ),
            ("fdp_rejects_total", "Rows quarantined", &self.rejects),
            (
                "fdp_dead_letters_total",
                "Messages dead-lettered",
                &self.dead_letters,
            ),
            ("fdp_acked_total", "Messages acknowledged", &self.acked),
            (
                "fdp_redelivered_total",
                "Redelivered messages already committed",
                &self.redelivered,
            ),
            ("fdp_orders_total", "Orders committed", &self.orders),
            ("fdp_commits_total", "PostgreSQL commits", &self.commits),
        ];
        for (name, help, v) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        let name = "fdp_xadd_to_commit_seconds";
        out.push_str(&format!(
            "# HELP {name} Per bar, seconds from XADD to the commit of its decisions.\n# TYPE {name} histogram\n"
        ));
        for (i, b) in BUCKETS.iter().enumerate() {
            out.push_str(&format!(
                "{name}_bucket{{le=\"{b}\"}} {}\n",
                self.buckets[i].load(Ordering::Relaxed)
            ));
        }
        let n = self.latency_count();
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {n}\n"));
        out.push_str(&format!(
            "{name}_sum {}\n{name}_count {n}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out
    }
}

/// Serves `GET /metrics` on `addr` from a background thread; returns the bound address (port 0
/// picks a free one).
///
/// # Errors
/// The address cannot be bound.
pub fn serve(addr: &str, metrics: Arc<StreamMetrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fdp-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => continue,
                });
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the request headers.
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body, kind) = if path == "/metrics" {
                    ("200 OK", metrics.render(), "text/plain; version=0.0.4")
                } else {
                    ("404 Not Found", "not found\n".to_string(), "text/plain")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_quantiles_pick_buckets() {
        let m = StreamMetrics::default();
        m.observe(0.0007, 90);
        m.observe(0.03, 10);
        assert_eq!(m.quantile(0.5), Some(0.001));
        assert_eq!(m.quantile(0.99), Some(0.05));
        let text = m.render();
        assert!(text.contains("fdp_xadd_to_commit_seconds_bucket{le=\"0.001\"} 90"));
        assert!(text.contains("fdp_xadd_to_commit_seconds_bucket{le=\"0.05\"} 100"));
        assert!(text.contains("fdp_xadd_to_commit_seconds_count 100"));
    }

    #[test]
    fn serves_metrics_over_http() {
        let m = StreamMetrics::shared();
        m.dead_letters.fetch_add(3, Ordering::Relaxed);
        let addr = serve("127.0.0.1:0", Arc::clone(&m)).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("fdp_dead_letters_total 3"));
    }
}
