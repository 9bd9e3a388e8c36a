//! Live metrics of a streaming run in the Prometheus text format (version 0.0.4), served on
//! `GET /metrics` by axum on hyper (timeouts, size and connection limits) on a thread of its own,
//! beside the probes an orchestrator asks: `GET /healthz` (the process answers) and `GET /readyz`
//! (Redis answers, PostgreSQL answers with every migration applied, and the run is not stopping;
//! 503 naming what is not, otherwise).
//!
//! Lock-free counters shared by every worker thread; the latency histogram counts, per bar, the
//! time from the XADD that brought it (the stream id's milliseconds) to the acknowledgement that
//! follows the PostgreSQL commit of its decisions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Upper bounds of the stage buckets (features, predict), in seconds: one event time's work of
/// one worker takes microseconds to a fraction of a second.
pub const STAGE_BUCKETS: [f64; 15] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// A cumulative histogram over fixed bucket bounds ([`BUCKETS`] by default), lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_bounds(&BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds, in seconds).
    pub fn with_bounds(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records `n` observations of `seconds`.
    pub fn observe(&self, seconds: f64, n: u64) {
        let s = seconds.max(0.0);
        for (i, b) in self.bounds.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((s * 1e6) as u64 * n, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding the `q` quantile (`None` before any observation,
    /// `+inf` beyond the last bucket).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil() as u64;
        for (i, b) in self.bounds.iter().enumerate() {
            if self.buckets[i].load(Ordering::Relaxed) >= want {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        family(out, name, "histogram", help);
        self.series(name, "", out);
    }

    /// The samples of one series of a histogram family, with `labels` (`k="v",…`, or empty).
    pub fn series(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}\n",
                self.buckets[i].load(Ordering::Relaxed)
            ));
        }
        let n = self.count();
        out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}\n"));
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        out.push_str(&format!(
            "{name}_sum{braces} {}\n{name}_count{braces} {n}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
    }
}

/// How long the graph's timed stages took, one observation per piece of work
/// ([`crate::meter`]): the features operator per event time, the model operator per activation.
#[derive(Debug)]
pub struct StageTimes {
    /// The features operator.
    pub features: Histogram,
    /// The model operator (predictions and retrainings).
    pub predict: Histogram,
}

impl Default for StageTimes {
    fn default() -> Self {
        StageTimes {
            features: Histogram::with_bounds(&STAGE_BUCKETS),
            predict: Histogram::with_bounds(&STAGE_BUCKETS),
        }
    }
}

impl StageTimes {
    /// The histogram family `name`, one series per stage (labelled `stage`, after `labels`).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        family(
            out,
            name,
            "histogram",
            "Seconds each piece of a stage's work took on one worker: the features operator per event time, the model operator (predict and retrain) per activation.",
        );
        let sep = if labels.is_empty() { "" } else { "," };
        for (stage, h) in [("features", &self.features), ("predict", &self.predict)] {
            h.series(name, &format!("{labels}{sep}stage=\"{stage}\""), out);
        }
    }
}

impl crate::meter::Observer for StageTimes {
    fn observe(&self, stage: crate::meter::Stage, seconds: f64) {
        match stage {
            crate::meter::Stage::Features => self.features.observe(seconds, 1),
            crate::meter::Stage::Predict => self.predict.observe(seconds, 1),
        }
    }
}

/// The latest committed state of the portfolio and of the stream, as gauges.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Gauges {
    /// Equity at the last committed time.
    pub equity: Option<f64>,
    /// Cash at the last committed time.
    pub cash: Option<f64>,
    /// Open positions at the last committed time.
    pub open_positions: Option<u64>,
    /// Messages delivered to the group and not acknowledged (XPENDING).
    pub pending: Option<u64>,
    /// Messages in the stream not yet delivered to the group (XINFO GROUPS' lag).
    pub lag: Option<u64>,
    /// Per monitored feature: drift events committed, and the divergence of the latest.
    pub drift: std::collections::BTreeMap<String, (u64, f64)>,
}

/// The labelled counter families of a live run, with their help: bars through each stage
/// (`stage="source"`: fed into the graph; `"quality"`: passed on by the quality gate and
/// decided on), quarantined and flagged rows by reason, orders by final status — committed.
pub const LABELLED: [(&str, &str); 3] = [
    (
        "fdp_stage_bars_total",
        "Bars through each stage: source = fed into the graph, quality = passed on and decided on (committed).",
    ),
    (
        "fdp_quarantine_rows_total",
        "Rows quarantined (rejected) or flagged, by reason (committed).",
    ),
    (
        "fdp_order_outcomes_total",
        "Orders ended, by final status (committed).",
    ),
];

/// Counters, histograms and gauges of a run.
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
    /// Per bar, seconds from its XADD to the commit of its decisions.
    pub latency: Histogram,
    /// Seconds each step's PostgreSQL transaction took.
    pub commit_seconds: Histogram,
    /// The features and model operators' work.
    pub stages: StageTimes,
    /// Counters with labels: family → label set (`k="v",…`) → count.
    labelled: std::sync::Mutex<
        std::collections::BTreeMap<&'static str, std::collections::BTreeMap<String, u64>>,
    >,
    /// The latest committed state.
    pub gauges: std::sync::Mutex<Gauges>,
}

impl crate::meter::Observer for StreamMetrics {
    fn observe(&self, stage: crate::meter::Stage, seconds: f64) {
        crate::meter::Observer::observe(&self.stages, stage, seconds);
    }
}

impl StreamMetrics {
    /// A shared, zeroed set.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records `n` bars that took `seconds` from XADD to commit.
    pub fn observe(&self, seconds: f64, n: u64) {
        if self.keep_samples.load(Ordering::Relaxed)
            && let Ok(mut v) = self.samples.lock()
        {
            v.extend(std::iter::repeat_n(seconds.max(0.0), n as usize));
        }
        self.latency.observe(seconds, n);
    }

    /// Adds `n` to the labelled counter `family{labels}` (one of [`LABELLED`]).
    pub fn count(&self, family: &'static str, labels: String, n: u64) {
        let mut m = self
            .labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(family).or_default().entry(labels).or_insert(0) += n;
    }

    /// Sets the labelled counter `family{labels}` to `total` when that is more (a count kept
    /// elsewhere, read after each commit).
    pub fn count_to(&self, family: &'static str, labels: String, total: u64) {
        let mut m = self
            .labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = m.entry(family).or_default().entry(labels).or_insert(0);
        *v = (*v).max(total);
    }

    /// Observations of the XADD-to-commit latency so far.
    pub fn latency_count(&self) -> u64 {
        self.latency.count()
    }

    /// The XADD-to-commit latency below which a fraction `q` of the observations fall, as the
    /// upper bound of its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q)
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

    /// Changes the gauges under their lock (a poisoned lock is taken over: gauges are
    /// overwritten whole, never left half-updated in a way that matters).
    pub fn update_gauges(&self, f: impl FnOnce(&mut Gauges)) {
        let mut g = self
            .gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
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
            family(&mut out, name, "counter", &format!("{help}."));
            out.push_str(&format!("{name} {}\n", v.load(Ordering::Relaxed)));
        }
        self.latency.render(
            "fdp_xadd_to_commit_seconds",
            "Per bar, seconds from XADD to the commit of its decisions.",
            &mut out,
        );
        self.commit_seconds.render(
            "fdp_pg_commit_seconds",
            "Seconds each step's PostgreSQL transaction took.",
            &mut out,
        );
        self.stages.render("fdp_stage_seconds", "", &mut out);
        let labelled = self
            .labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (name, help) in LABELLED {
            let Some(series) = labelled.get(name) else {
                continue;
            };
            family(&mut out, name, "counter", help);
            for (labels, v) in series {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
        let g = self
            .gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let gauges: [(&str, &str, Option<f64>); 5] = [
            ("fdp_equity", "Equity at the last committed time", g.equity),
            ("fdp_cash", "Cash at the last committed time", g.cash),
            (
                "fdp_open_positions",
                "Open positions at the last committed time",
                g.open_positions.map(|n| n as f64),
            ),
            (
                "fdp_stream_pending_messages",
                "Messages delivered to the group and not acknowledged",
                g.pending.map(|n| n as f64),
            ),
            (
                "fdp_stream_lag_messages",
                "Messages in the stream not yet delivered to the group",
                g.lag.map(|n| n as f64),
            ),
        ];
        // A gauge appears once it has a value: no made-up zero before the first commit.
        for (name, help, v) in gauges {
            if let Some(v) = v {
                family(&mut out, name, "gauge", &format!("{help}."));
                out.push_str(&format!("{name} {}\n", number(v)));
            }
        }
        if !g.drift.is_empty() {
            let name = "fdp_drift_events_total";
            family(
                &mut out,
                name,
                "counter",
                "Drift events committed, by feature.",
            );
            for (f, (n, _)) in &g.drift {
                out.push_str(&format!("{name}{{feature=\"{}\"}} {n}\n", label(f)));
            }
            let name = "fdp_drift_divergence";
            family(
                &mut out,
                name,
                "gauge",
                "KL divergence of the latest drift event, by feature.",
            );
            for (f, (_, kl)) in &g.drift {
                out.push_str(&format!(
                    "{name}{{feature=\"{}\"}} {}\n",
                    label(f),
                    number(*kl)
                ));
            }
        }
        // The process's provider requests, when its source fetches over HTTP.
        out.push_str(&crate::sources::providers::metrics::render());
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines (`help` as written, its full stop included).
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// A label value escaped as the text format wants (backslash, quote, newline).
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as the text format spells it (`NaN`, `+Inf`, `-Inf`).
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a request may send before the connection is closed (a request line and headers).
pub const MAX_REQUEST: usize = 16 * 1024;
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// What `/readyz` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The run's Redis.
    pub redis_url: String,
    /// The run's PostgreSQL.
    pub database_url: String,
    /// Set when the run is stopping (a signal, the stop file): no new work should come to it.
    pub stopping: Arc<AtomicBool>,
}

/// How long each readiness check may take.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    /// What is not ready, one line each; empty when ready.
    pub async fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.stopping.load(Ordering::Relaxed) {
            out.push("stopping".to_string());
        }
        let url = self.redis_url.clone();
        let redis = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut c = client
                .get_connection_with_timeout(READY_TIMEOUT)
                .map_err(|e| e.to_string())?;
            c.set_read_timeout(Some(READY_TIMEOUT))
                .map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query::<String>(&mut c)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        match redis {
            Ok(Ok(())) => {}
            Ok(Err(e)) => out.push(format!("redis: {e}")),
            Err(e) => out.push(format!("redis: the check failed: {e}")),
        }
        let pg = tokio::time::timeout(READY_TIMEOUT, async {
            let c = super::postgres::connect(&self.database_url).await?;
            super::postgres::migrations_pending(&c).await
        })
        .await;
        match pg {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => out.push(format!("postgres: {n} migrations not applied")),
            Ok(Err(e)) => out.push(format!("postgres: {e}")),
            Err(_) => out.push(format!("postgres: no answer within {READY_TIMEOUT:?}")),
        }
        out
    }
}

/// Serves `GET /metrics`, `/healthz` and (with `ready`) `/readyz` on `addr` through
/// [`crate::http_server`]; returns the bound address (port 0 picks a free one).
///
/// A client gets [`HEADER_TIMEOUT`] to send its headers, at most [`MAX_REQUEST`] bytes of them,
/// and [`CONNECTION_TIMEOUT`] in all; past [`MAX_CONNECTIONS`] new connections are closed.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    addr: &str,
    metrics: Arc<StreamMetrics>,
    ready: Option<Readiness>,
) -> std::io::Result<SocketAddr> {
    let mut app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = metrics.render();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    if let Some(ready) = ready {
        app = app.route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.clone();
                async move {
                    let problems = ready.problems().await;
                    if problems.is_empty() {
                        (axum::http::StatusCode::OK, "ready\n".to_string())
                    } else {
                        tracing::warn!(?problems, "not ready");
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            problems.join("\n") + "\n",
                        )
                    }
                }
            }),
        );
    }
    crate::http_server::spawn(
        "fdp-metrics",
        addr,
        app,
        crate::http_server::Limits {
            header_timeout: HEADER_TIMEOUT,
            connection_timeout: CONNECTION_TIMEOUT,
            max_request: MAX_REQUEST,
            max_connections: MAX_CONNECTIONS,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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
    fn gauges_appear_once_set_and_drift_labels_are_escaped() {
        let m = StreamMetrics::default();
        let text = m.render();
        assert!(!text.contains("fdp_equity") && !text.contains("fdp_drift"));
        assert!(text.contains("fdp_pg_commit_seconds_count 0"));
        m.commit_seconds.observe(0.004, 1);
        m.update_gauges(|g| {
            g.equity = Some(101_234.5);
            g.cash = Some(-20.25);
            g.open_positions = Some(3);
            g.pending = Some(0);
            g.lag = None;
            g.drift.insert("RSI_14".into(), (2, 0.75));
            g.drift.insert("odd\"name\\".into(), (1, f64::INFINITY));
        });
        let text = m.render();
        for line in [
            "fdp_equity 101234.5",
            "fdp_cash -20.25",
            "fdp_open_positions 3",
            "fdp_stream_pending_messages 0",
            "fdp_pg_commit_seconds_bucket{le=\"0.005\"} 1",
            "fdp_drift_events_total{feature=\"RSI_14\"} 2",
            "fdp_drift_divergence{feature=\"RSI_14\"} 0.75",
            "fdp_drift_divergence{feature=\"odd\\\"name\\\\\"} +Inf",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("fdp_stream_lag_messages"),
            "unknown lag is left out"
        );
    }

    #[test]
    fn an_idle_socket_or_an_endless_line_blocks_no_scrape() {
        use std::io::Read;
        let m = StreamMetrics::shared();
        let addr = serve("127.0.0.1:0", Arc::clone(&m), None).unwrap();
        let scrape = || {
            let started = std::time::Instant::now();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            assert!(body.contains("fdp_messages_total"), "{body}");
            started.elapsed()
        };
        // Idle sockets that never send a byte.
        let idle: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        assert!(scrape() < Duration::from_secs(2));
        // A request line without end: the server closes the connection past its limit instead
        // of buffering 64 MB.
        let mut endless = std::net::TcpStream::connect(addr).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        let closed = loop {
            match endless.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break true,
            }
            if sent >= 64 << 20 {
                break false;
            }
        };
        assert!(closed, "the server read {sent} bytes of one request line");
        assert!(scrape() < Duration::from_secs(2));
        drop(idle);
    }

    #[test]
    fn serves_metrics_over_http() {
        let m = StreamMetrics::shared();
        m.dead_letters.fetch_add(3, Ordering::Relaxed);
        let addr = serve("127.0.0.1:0", Arc::clone(&m), None).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("fdp_dead_letters_total 3"));
    }
}
