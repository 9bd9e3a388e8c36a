//! `fdp`: the command line of findashpro.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use findashpro::config::Pipeline;
use findashpro::engine::{Cluster, RunOptions};
use findashpro::fault::{Blame, Fault};

/// An error `fdp` itself finds in its arguments or results, with who is at fault.
#[derive(Debug)]
struct Refused {
    fault: Fault,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Returns from the enclosing function with a [`Refused`] error.
macro_rules! refuse {
    ($fault:expr, $($arg:tt)*) => {
        return Err(anyhow::Error::new(Refused { fault: $fault, message: format!($($arg)*) }))
    };
}

/// Who is at fault for `e`: the first error in its chain that knows.
fn fault_of(e: &anyhow::Error) -> Option<Fault> {
    use findashpro::{
        backup::BackupError, config::ConfigError, engine::EngineError, features_cmd::FeaturesError,
        fetch_cmd::FetchError, names::NameError, operators::ml::registry::RegistryError,
        query::QueryError, sinks::alerts::AlertConfigError, sinks::files::SinkError,
        sinks::postgres::DbError, sinks::postgres::ModelStoreError, sources::SourceError,
        sources::redis_stream::StreamError, stream::StreamRunError,
    };
    for cause in e.chain() {
        macro_rules! blame {
            ($($t:ty),*) => {$(
                if let Some(x) = cause.downcast_ref::<$t>() {
                    return Some(x.fault());
                }
            )*};
        }
        if let Some(r) = cause.downcast_ref::<Refused>() {
            return Some(r.fault);
        }
        blame!(
            ConfigError,
            EngineError,
            findashpro::broker_cmd::BrokerCmdError,
            StreamRunError,
            BackupError,
            AlertConfigError,
            DbError,
            StreamError,
            SourceError,
            QueryError,
            findashpro::compare::CompareError,
            findashpro::manifest::HashError,
            findashpro::config::overrides::OverrideError,
            FeaturesError,
            FetchError,
            SinkError,
            RegistryError,
            ModelStoreError,
            NameError,
            std::io::Error
        );
    }
    None
}

/// findashpro: market data in, trading decisions out.
#[derive(Debug, Parser)]
#[command(name = "fdp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay history through a pipeline and write `runs/<run-id>/`.
    Backtest {
        /// Pipeline file (`pipelines/*.toml`).
        pipeline: PathBuf,
        /// Run id (default: `<pipeline name>-<UTC time>`).
        #[arg(long)]
        run_id: Option<String>,
        /// Output base directory (default: the pipeline's `outputs.dir`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write signals, orders, fills and positions to this PostgreSQL database
        /// (migrated first), with an audit event.
        #[arg(long)]
        database_url: Option<String>,
        /// Replace the file source's `paths` (glob patterns, repeatable; relative to the
        /// current directory), e.g. the whole S&P 500 set of `../shared/data/real`.
        #[arg(long = "source-paths")]
        source_paths: Vec<String>,
        /// Also write the run's figures as a Prometheus text exposition to this file at the end
        /// (for node_exporter's textfile collector or a push gateway; `-`: standard output).
        #[arg(long)]
        metrics_file: Option<PathBuf>,
        /// Change any key of the pipeline for this run: `--set model.fast=20`,
        /// `--set features.0.period=50`, `--set source.tickers='["AAPL"]'` (repeatable; the run's
        /// folder keeps the resolved pipeline as `pipeline.toml`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Run every combination of parameter values in one dataflow over one read of the data
    /// (features computed once per distinct set, a portfolio per combination) and write
    /// `<out>/<run-id>/sweep.parquet`, `sweep.json` and `sweep.html`; optionally walk forward.
    Sweep {
        /// Pipeline file with a rule model (crossover, threshold).
        pipeline: PathBuf,
        /// A swept key and its values: `a,b,c`, `lo..hi/step` or `lo..hi` (repeatable; every
        /// combination runs), e.g. `--set model.fast=5,10,20 --set model.slow=20..60/10`.
        #[arg(long = "set", value_name = "KEY=VALUES")]
        sets: Vec<String>,
        /// Rank by this figure (any column of sweep.parquet; higher is better).
        #[arg(long, default_value = "sharpe")]
        metric: String,
        /// How many of the best to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Walk-forward optimisation: TRAIN:TEST in days with a return (e.g. 252:63); each
        /// window trades the combination best by --walk-score on the TRAIN days before it.
        #[arg(long, value_name = "TRAIN:TEST")]
        walk_forward: Option<String>,
        /// Train every window from the first day (else a rolling TRAIN-day window).
        #[arg(long)]
        anchored: bool,
        /// What a walk-forward window maximises: sharpe, sortino, total_return, cagr, calmar,
        /// max_drawdown.
        #[arg(long, default_value = "sharpe")]
        walk_score: String,
        /// Run id (default: `<pipeline name>-sweep-<UTC time>`).
        #[arg(long)]
        run_id: Option<String>,
        /// Output base directory (default: the pipeline's `outputs.dir`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads.
        #[arg(short = 'w', long, default_value_t = 1)]
        workers: usize,
    },
    /// Download a providers pipeline's universe into the Parquet catalog
    /// (`<catalog>/<interval>/<TICKER>.parquet`, replayed by `format = "parquet"` sources),
    /// from where each file ends; resumable after an interrupt. FMP statements and Finnhub
    /// sentiment asked for under `[fundamentals]` go into its `fmp_dir` and `finnhub_dir`.
    Fetch {
        /// Pipeline file with a `kind = "providers"` source, or FMP/Finnhub fundamentals.
        pipeline: PathBuf,
        /// Fetch through this time (`YYYY-MM-DD` or RFC 3339; default now, at most the
        /// pipeline's end).
        #[arg(long)]
        until: Option<String>,
        /// Catalog root.
        #[arg(long, default_value = "data/catalog")]
        catalog: PathBuf,
    },
    /// Compute features over one bar file (any layout of the real data sets) into a CSV:
    /// `date` plus one column per output, named as TA-Lib's (the whole standard set by default).
    Features {
        /// Input bars (CSV).
        #[arg(long)]
        input: PathBuf,
        /// Output CSV.
        #[arg(long)]
        output: PathBuf,
        /// Only these columns, in this order (e.g. `RSI_14,MACD_12_26_9_signal`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Take the features declared by this pipeline file instead of the standard set.
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Check the audit log's hash chain (outside the database) and its protections; reports the
    /// first broken link and the head to record elsewhere.
    Audit {
        /// What to do (only `verify`).
        #[arg(value_enum)]
        action: AuditAction,
        /// PostgreSQL URL (default: `DATABASE_URL`, else the local server's `test` database).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Apply the database migrations (versioned, re-runnable).
    Migrate {
        /// PostgreSQL URL (default: `DATABASE_URL`, else the local server's `test` database).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Copy Redis (the stream, first) and then PostgreSQL (a base backup with its WAL) into a
    /// new folder while runs write, check both copies and record them in backup.json.
    Backup {
        /// The backup folder (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// PostgreSQL URL; the user needs the REPLICATION attribute and pg_hba.conf a
        /// `replication` line (default: `DATABASE_URL`).
        #[arg(long)]
        database_url: Option<String>,
        /// Redis URL (default: `REDIS_URL`, else redis://127.0.0.1:6379).
        #[arg(long)]
        redis_url: Option<String>,
    },
    /// Check a backup against backup.json and lay it out for fresh servers: a PostgreSQL data
    /// folder (replaying a WAL archive when given) and Redis's dump.rdb. Starts nothing.
    Restore {
        /// The backup folder `fdp backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// A new PostgreSQL data folder (new or empty).
        #[arg(long)]
        pg_data: PathBuf,
        /// A new folder for Redis's dump.rdb (new or empty).
        #[arg(long)]
        redis_dir: PathBuf,
        /// The WAL archive (archive_command's destination): replayed after the base backup.
        #[arg(long)]
        wal_archive: Option<PathBuf>,
        /// Stop the replay at this time (e.g. `2026-12-05 21:00:00+00`); the archive's end
        /// when absent.
        #[arg(long, requires = "wal_archive")]
        target_time: Option<String>,
    },
    /// Add a cycle of work items (one per ticker of the pipeline's universe) to the Redis stream
    /// `<prefix>:ticker_stream`, creating the consumer group `fdp_workers` if absent.
    Orchestrate {
        /// Pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        redis: RedisArgs,
        /// Cut-off of the cycle (`YYYY-MM-DD`, RFC 3339 or epoch seconds; default: now).
        #[arg(long)]
        until: Option<String>,
    },
    /// Push the pipeline's bars into the stream as bar messages, in time order with a watermark
    /// after each time (a replay feed for tests, demos and `fdp bench stream`).
    Feed {
        /// Pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        redis: RedisArgs,
        /// At most this many bars per second (positive).
        #[arg(long, value_parser = positive, allow_hyphen_values = true)]
        rate: Option<f64>,
    },
    /// The streaming production run: every worker is a consumer of `fdp_workers`, runs the
    /// pipeline's graph, commits decisions to PostgreSQL, then acknowledges. Ends on SIGTERM/SIGINT,
    /// on the kill-switch file `<data-dir>/STOP`, or after `--idle-shutdown` seconds without work.
    Run {
        /// Pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        redis: RedisArgs,
        /// PostgreSQL URL (default: `DATABASE_URL`, else the local server's `test` database).
        #[arg(long)]
        database_url: Option<String>,
        /// Run id for the rows written (default: the pipeline's name).
        #[arg(long)]
        run_id: Option<String>,
        /// End after this many seconds without messages.
        #[arg(long, value_parser = seconds, allow_hyphen_values = true)]
        idle_shutdown: Option<f64>,
        /// Seconds a work item may take.
        #[arg(long, default_value_t = 120.0, value_parser = seconds, allow_hyphen_values = true)]
        item_timeout: f64,
        /// Seconds a message's time may run ahead of its producer's clock (the stream id's time)
        /// before it is dead-lettered instead of moving the stream's floor.
        #[arg(long, default_value_t = 86_400)]
        max_ahead: i64,
        /// PostgreSQL connections the workers share (1–100; the run holds one more for its lease).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
        db_connections: u16,
        /// Failures after which a message goes to the dead-letter stream.
        #[arg(long, default_value_t = 3)]
        max_failures: u64,
        /// Seconds after which another consumer's pending message is reclaimed (more than 0: a
        /// message is never taken from a consumer that is still working on it).
        #[arg(long, default_value_t = 60.0, value_parser = seconds, allow_hyphen_values = true)]
        claim_idle: f64,
        /// Seconds a stop requested by SIGTERM/SIGINT may take before the process exits anyway
        /// (status 1; what was not committed stays pending). A second signal exits at once.
        #[arg(long, default_value_t = 30.0, value_parser = seconds, allow_hyphen_values = true)]
        stop_grace: f64,
        /// Directory holding the kill-switch file `STOP`.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Serve Prometheus metrics on this address (`GET /metrics`), with `/healthz` and
        /// `/readyz` (Redis, PostgreSQL with migrations applied, not stopping).
        #[arg(long)]
        metrics_addr: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// The broker sink of a live run: sends the run's committed orders to the venue of
    /// `[broker] kind` (alpaca, ibkr) exactly once, cancels there what the portfolio ended,
    /// follows each order, and reconciles the venue with the ledger at start and every
    /// `reconcile_minutes`. Keys come from the environment (`APCA_API_KEY_ID`,
    /// `APCA_API_SECRET_KEY`). Ends when `<data-dir>/STOP` appears, or after one pass with
    /// `--once`.
    Broker {
        /// Pipeline file.
        pipeline: PathBuf,
        /// PostgreSQL URL (default: `DATABASE_URL`, else the local server's `test` database).
        #[arg(long)]
        database_url: Option<String>,
        /// The run whose orders are sent (default: the pipeline's name).
        #[arg(long)]
        run_id: Option<String>,
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between passes.
        #[arg(long, default_value_t = 1.0, value_parser = seconds, allow_hyphen_values = true)]
        interval: f64,
        /// Directory holding the kill-switch file `STOP`.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Check a pipeline file without running it: the file, then its source (every bar read
    /// through the quality gate) unless --file-only.
    Validate {
        /// Pipeline file.
        pipeline: PathBuf,
        /// Check the file only (types, ranges, names, the alert channels' secrets in the
        /// environment), without opening the source: a providers pipeline would ask its providers.
        #[arg(long)]
        file_only: bool,
    },
    /// Benchmarks on seeded synthetic data: `graph` (default) gives bars/s of the whole graph and
    /// of each stage; `features` gives ns per bar of the standard feature set and each indicator;
    /// `stream` gives the streaming run's bars/s and XADD-to-commit latency (needs Redis and
    /// PostgreSQL); `ml` gives the ML predict path's bars/s and the time per retrain.
    Bench {
        /// What to measure.
        #[arg(value_enum, default_value_t = BenchWhat::Graph)]
        what: BenchWhat,
        /// Synthetic tickers.
        #[arg(long, default_value_t = 500)]
        tickers: usize,
        /// Bars per ticker (graph), or bars of the one series (features: default 1,000,000).
        #[arg(long)]
        bars: Option<usize>,
        /// Worker counts for the whole-graph runs and the stream cases.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Repeats (the best is reported); for `graph`, rounds of one run per worker count, whose
        /// medians, ranges and per-round speed-ups are reported too.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// `ml`: leave out the whole-graph line (its trainings take minutes), for repeated
        /// measurements of the predict path.
        #[arg(long)]
        no_graph: bool,
    },
    /// Run SQL (DataFusion) over a run's output tables: signals, orders, fills, positions, equity,
    /// trades, quarantine, exposure, ml_metrics, ml_features, drift.
    ///
    /// With several `--run`s each table holds every run's rows, with a first column `run_id`
    /// (the folder's name). `SHOW TABLES` lists the tables.
    Query {
        /// A run folder (`runs/<run-id>`); repeat for a query over several runs.
        #[arg(long, required = true)]
        run: Vec<PathBuf>,
        /// How to show the result.
        #[arg(long, value_enum, default_value_t = findashpro::query::Format::Table)]
        format: findashpro::query::Format,
        /// Write the result to this file (`-`: standard output).
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// The query.
        sql: String,
    },
    /// What differs between two run folders: how they were made (pipeline fingerprint,
    /// overrides, commit, inputs), every metric (B − A), and the first order where they part.
    Compare {
        /// Run A's folder.
        run_a: PathBuf,
        /// Run B's folder.
        run_b: PathBuf,
    },
    /// Write a commented pipeline to start from, `pipelines/<NAME>.toml` (never over an
    /// existing file); it runs as written, on seeded synthetic data.
    Init {
        /// The pipeline's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The folder to write it into.
        #[arg(long, default_value = "pipelines")]
        dir: PathBuf,
    },
    /// Print a shell completion script: `fdp completions bash > /etc/bash_completion.d/fdp`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The dashboard: runs in PostgreSQL (live, or backtests written with --database-url) and
    /// backtest folders, with charts, updated live; read-only but for the kill switch, which
    /// needs the token in FDP_SERVE_TOKEN (no token, no kill switch).
    Serve {
        /// Address to listen on; anything but loopback is reachable from other machines.
        #[arg(long, default_value = "127.0.0.1:8501")]
        addr: String,
        /// PostgreSQL of live runs (default: DATABASE_URL when set).
        #[arg(long)]
        database_url: Option<String>,
        /// Directory of backtest run folders.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Directory holding the kill-switch file `STOP` (the `--data-dir` of `fdp run`).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Redis of the runs, for the providers' breakers and budgets (default: REDIS_URL when
        /// set; no providers panel without it).
        #[arg(long)]
        redis_url: Option<String>,
        /// The key prefix the runs and fetches use.
        #[arg(long, default_value = "fdp")]
        prefix: String,
    },
}

/// What `fdp audit` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AuditAction {
    /// Recompute every link of the chain and check the protections.
    Verify,
}

/// What `fdp bench` measures.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BenchWhat {
    /// The whole graph and each stage, bars/s.
    Graph,
    /// The feature kernels, ns per bar.
    Features,
    /// The streaming run against loopback Redis (`REDIS_URL`) and PostgreSQL (`DATABASE_URL`):
    /// sustained bars/s, and XADD-to-commit latency at 1 k and 10 k bars/s.
    Stream,
    /// The ML pipeline: training time per retrain, the predict path's bars/s on one thread
    /// (features, drift, ensemble, risk, paper broker), and the graph with its trainings.
    Ml,
    /// The providers' shared rate limiter against `REDIS_URL`: decisions/s and p50/p99 latency
    /// per decision, for each `--workers` count of threads on one key.
    Limiter,
    /// Provider fetch throughput with the response cache cold, then warm: `--tickers` tickers of
    /// `--bars` daily bars from a loopback server answering Tiingo's body, on each `--workers`
    /// count of threads, through the whole control path (breaker, limiter, budget, cache).
    Fetch,
    /// Orders/s through the paper broker in the portfolio (`--tickers × --bars`, market, then
    /// limit entries with a bracket and a volume cap), and submit-to-acknowledgement p50/p99
    /// through the Alpaca adapter against a loopback server, `--workers` orders in flight.
    Broker,
    /// Peak memory: the SMA-cross backtest of `--tickers × --bars` in a child `fdp backtest` per
    /// worker count, its peak resident set size and wall seconds (outputs included).
    Memory,
    /// A parameter sweep's combination-bars/s: 190 SMA-cross combinations over the GOOG reference
    /// bars in one dataflow, per `--workers` count (vectorbt's side: scripts/vectorbt_sweep_bench.py).
    Sweep,
    /// Recording bars in PostgreSQL (`DATABASE_URL`, a scratch database): rows/s of
    /// `INSERT … UNNEST` and of binary COPY per batch size, new bars and bars recorded before.
    Pg,
}

/// Where the stream lives.
#[derive(Debug, Args)]
struct RedisArgs {
    /// Redis URL (default: `REDIS_URL`, else `redis://127.0.0.1:6379`).
    #[arg(long)]
    redis_url: Option<String>,
    /// Key prefix: the stream is `<prefix>:ticker_stream`.
    #[arg(long, default_value = "fdp")]
    prefix: String,
    /// Keep the stream at about this many entries (`XADD MAXLEN ~`); writers wait while more
    /// than half of them are undelivered.
    #[arg(long, default_value_t = 10_000)]
    maxlen: usize,
}

impl RedisArgs {
    fn url(&self) -> String {
        self.redis_url.clone().unwrap_or_else(default_redis_url)
    }
}

fn default_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Sets `flag` on SIGTERM or SIGINT (from a thread of its own). A signal always ends the process
/// in bounded time: if the run has not stopped `grace` after the first signal (a server
/// that accepts and never answers can hold a worker), or at a second signal, the process exits
/// with status 1. Nothing is lost that way: messages are acknowledged only after their commit, so
/// what was not committed stays pending for the next run.
fn on_signals(
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    grace: std::time::Duration,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("fdp-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    tracing::error!("cannot install signal handlers");
                    return;
                };
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM"),
                    _ = int.recv() => tracing::info!("SIGINT"),
                }
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                tokio::select! {
                    _ = tokio::time::sleep(grace) => tracing::error!(
                        ?grace,
                        "the run did not stop in time; exiting (uncommitted messages stay pending)"
                    ),
                    _ = term.recv() => tracing::error!("second signal; exiting now"),
                    _ = int.recv() => tracing::error!("second signal; exiting now"),
                }
                std::process::exit(1);
            });
        })?;
    Ok(())
}

/// Timely's cluster options.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Worker threads per process (default 1; `fdp run`: 20, one consumer each).
    #[arg(short = 'w', long = "workers")]
    workers: Option<usize>,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// This process's index.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// Host file: one `host:port` per process (timely's `-h`, spelled out here: `-h` is help).
    #[arg(long = "hostfile")]
    hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    fn cluster(&self) -> Result<Cluster> {
        self.cluster_or(1)
    }

    fn cluster_or(&self, default_workers: usize) -> Result<Cluster> {
        let workers = self.workers.unwrap_or(default_workers);
        if workers == 0 || self.processes == 0 || self.process >= self.processes {
            refuse!(
                Fault::Input,
                "need -w >= 1, -n >= 1 and -p < -n (got -w {} -n {} -p {})",
                workers,
                self.processes,
                self.process
            );
        }
        let addresses = match &self.hostfile {
            Some(h) => {
                let text = std::fs::read_to_string(h)
                    .with_context(|| format!("reading host file {}", h.display()))?;
                let a: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                if a.len() != self.processes {
                    refuse!(
                        Fault::Input,
                        "{}: {} addresses for -n {}",
                        h.display(),
                        a.len(),
                        self.processes
                    );
                }
                a
            }
            None => Vec::new(),
        };
        Ok(Cluster {
            workers,
            processes: self.processes,
            process: self.process,
            addresses,
        })
    }
}

/// A positive, finite number (a rate).
fn positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e12 => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive number (at most 1e12)")),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration in seconds: positive, finite, at most ten years (a `Duration` of anything else would
/// panic or never end).
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 315_360_000.0 => Ok(v),
        Ok(v) => Err(format!(
            "{v} is not a duration: seconds must be more than 0 and at most 315360000 (ten years)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// What made a backtest: `run.json` (version, commit, command line, fingerprint, overrides,
/// every input file's SHA-256) and the resolved pipeline.
fn provenance(
    p: &findashpro::config::LoadedPipeline,
    pipeline: &std::path::Path,
    run_id: &str,
    sets: &[String],
    inputs: &[PathBuf],
) -> Result<findashpro::manifest::Provenance> {
    let inputs = findashpro::manifest::hash_inputs(inputs)?;
    Ok(findashpro::manifest::Provenance {
        manifest: findashpro::manifest::Manifest {
            run_id: run_id.to_string(),
            fdp_version: env!("CARGO_PKG_VERSION").to_string(),
            commit: findashpro::manifest::COMMIT.to_string(),
            command_line: std::env::args().collect(),
            working_dir: std::env::current_dir()?.display().to_string(),
            pipeline: pipeline.display().to_string(),
            fingerprint: p.fingerprint(),
            overrides: sets.to_vec(),
            inputs,
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
        pipeline_text: p.text.clone(),
    })
}

/// Writes `text` to `path`, or to standard output for `-`.
fn write_or_print(path: &std::path::Path, text: &str) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, text.as_bytes())?;
        if !text.ends_with('\n') {
            std::io::Write::write_all(&mut out, b"\n")?;
        }
        Ok(())
    } else {
        findashpro::sinks::files::write_whole(path, text.as_bytes())?;
        Ok(())
    }
}

/// `DATABASE_URL`, else the local server's `test` database.
fn default_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// mimalloc: the graph allocates and frees many small Arrow buffers at every timestamp, and with
/// several workers frees on one thread what another allocated; glibc's malloc spent a tenth of a
/// run there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command; on an error prints it with its cause chain and who is at fault, and exits
/// with the fault's status (2 input, 3 data, 4 service, 70 bug; 1 when unclassified).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let fault = fault_of(&e);
            eprintln!(
                "Error ({}): {e:?}",
                fault.map_or("unclassified", Fault::label)
            );
            std::process::ExitCode::from(fault.map_or(1, Fault::exit_code))
        }
    }
}

/// Logs on stderr at `FDP_LOG`'s levels (default `warn`): with `FDP_LOG_FORMAT=json`, one JSON
/// object per line (time, level, message, fields, the current span and the span chain), for a log
/// shipper; otherwise text, coloured only on a terminal.
fn init_logs() -> Result<()> {
    let filter =
        || tracing_subscriber::EnvFilter::try_from_env("FDP_LOG").unwrap_or_else(|_| "warn".into());
    match std::env::var("FDP_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Ok("") | Err(_) => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => refuse!(Fault::Input, "FDP_LOG_FORMAT={other:?}: `json` or `text`"),
    }
    Ok(())
}

fn run() -> Result<()> {
    init_logs()?;
    let cli = Cli::parse();
    install_alerts(&cli.command)?;
    let result = command(cli);
    // Alerts raised on the way out (a run's stop, its crash) are delivered before the exit.
    if !findashpro::alert::flush(std::time::Duration::from_secs(15)) {
        tracing::error!("alerts still queued at exit were not delivered");
    }
    result
}

/// Registers the alert sink: the channels the command's pipeline declares under `[alerts]`
/// (their secrets from the environment), else those the environment configures. A pipeline that
/// does not load is left to the command to report.
fn install_alerts(command: &Command) -> Result<()> {
    let pipeline = match command {
        Command::Backtest { pipeline, .. }
        | Command::Fetch { pipeline, .. }
        | Command::Orchestrate { pipeline, .. }
        | Command::Feed { pipeline, .. }
        | Command::Run { pipeline, .. }
        | Command::Broker { pipeline, .. }
        | Command::Validate { pipeline, .. } => Pipeline::load(pipeline).ok(),
        _ => None,
    };
    let spec = pipeline.and_then(|p| p.pipeline.alerts.map(toml::Spanned::into_inner));
    let sink = match spec {
        Some(spec) => match findashpro::sinks::alerts::Dispatcher::from_spec(&spec) {
            Ok(d) => Some(d),
            // A backtest of a production pipeline on a desk without its tokens still runs.
            Err(e) if matches!(command, Command::Backtest { .. }) => {
                tracing::warn!(error = %e, "alerts off for this backtest");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => findashpro::sinks::alerts::Dispatcher::from_env(),
    };
    if let Some(d) = sink {
        findashpro::alert::install(d);
    }
    Ok(())
}

fn command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate {
            pipeline,
            file_only,
        } => {
            let p = Pipeline::load(&pipeline)?;
            if file_only {
                println!(
                    "{}: ok (the file; {} feature columns: {})",
                    pipeline.display(),
                    p.pipeline.feature_columns().len(),
                    p.pipeline.feature_columns().join(", ")
                );
                return Ok(());
            }
            let source = findashpro::sources::Source::open(&p)?;
            let survey = findashpro::sources::survey(&source, &p.pipeline.quality)?;
            if survey.usable == 0 {
                refuse!(
                    Fault::Data,
                    "{}: no usable bar in the source ({} rows rejected; the first: {})",
                    pipeline.display(),
                    survey.rejected.len(),
                    survey.first_rejects(5)
                );
            }
            println!(
                "{}: ok ({} tickers, {} usable bars, {} rows rejected; {} feature columns: {})",
                pipeline.display(),
                source.tickers().len(),
                survey.usable,
                survey.rejected.len(),
                p.pipeline.feature_columns().len(),
                p.pipeline.feature_columns().join(", ")
            );
        }
        Command::Audit {
            action: AuditAction::Verify,
            database_url,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (check, protected) = rt.block_on(async {
                use findashpro::sinks::postgres as pg;
                let c = pg::connect(&database_url.unwrap_or_else(default_database_url)).await?;
                let check = pg::verify_audit(&c).await?;
                Ok::<_, pg::DbError>((check, pg::verify_protections(&c).await))
            })?;
            if let Some((seq, id, what)) = &check.broken {
                refuse!(
                    Fault::Data,
                    "audit log broken at seq {seq} (row id {id}): {what}; {} rows read",
                    check.rows
                );
            }
            protected?;
            match &check.head {
                Some((seq, hash)) => println!(
                    "audit log intact: {} rows, head seq {seq} hash {hash} (record it elsewhere to anchor the chain)",
                    check.rows
                ),
                None => println!("audit log intact: empty"),
            }
        }
        Command::Backup {
            out,
            database_url,
            redis_url,
        } => {
            let m = findashpro::backup::backup(
                &out,
                &database_url.unwrap_or_else(default_database_url),
                &redis_url.unwrap_or_else(default_redis_url),
            )?;
            println!(
                "backup in {}: redis {} bytes (sha256 {}), postgres base backup verified, {} run(s) committed",
                out.display(),
                m.redis.bytes,
                m.redis.sha256,
                m.runs.len()
            );
        }
        Command::Restore {
            from,
            pg_data,
            redis_dir,
            wal_archive,
            target_time,
        } => {
            let to = findashpro::backup::RestoreTo {
                pg_data,
                redis_dir,
                wal_archive,
                target_time,
            };
            let m = findashpro::backup::restore(&from, &to)?;
            println!(
                "restored the backup of {}: PostgreSQL data in {} ({}), Redis snapshot in {}; \
                 start the servers on them (deploy/README.md, \"Recovery\")",
                m.finished,
                to.pg_data.display(),
                if to.wal_archive.is_some() {
                    "replays the WAL archive when started"
                } else {
                    "as of the base backup"
                },
                to.redis_dir.join("dump.rdb").display()
            );
        }
        Command::Broker {
            pipeline,
            database_url,
            run_id,
            once,
            interval,
            data_dir,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let opts = findashpro::broker_cmd::BrokerOptions {
                run_id: run_id.unwrap_or_else(|| p.pipeline.name.clone()),
                database_url: database_url.unwrap_or_else(default_database_url),
                once,
                interval: std::time::Duration::from_secs_f64(interval),
                stop_file: data_dir.join("STOP"),
            };
            let sum = findashpro::broker_cmd::run(&p, &opts)?;
            let s = &sum.pass;
            println!(
                "broker: {} sent, {} adopted, {} rejected, {} halted, {} unanswered, {} cancelled before sending, {} routed to paper, {} cancels sent, {} reconciliation differences",
                s.sent,
                s.adopted,
                s.rejected,
                s.halted,
                s.unanswered,
                s.cancelled,
                s.routed,
                sum.cancels,
                sum.differences
            );
        }
        Command::Migrate { database_url } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let applied = rt.block_on(async {
                let mut c = findashpro::sinks::postgres::connect(
                    &database_url.unwrap_or_else(default_database_url),
                )
                .await?;
                findashpro::sinks::postgres::migrate(&mut c).await
            })?;
            println!("migrations applied: {applied:?}");
        }
        Command::Backtest {
            pipeline,
            run_id,
            out,
            database_url,
            source_paths,
            metrics_file,
            sets,
            cluster,
        } => {
            if let Some(id) = &run_id {
                findashpro::names::check_name("run id", id)?;
            }
            let mut sets = sets;
            let p = Pipeline::load_with(&pipeline, &sets)?;
            if !source_paths.is_empty() {
                if !matches!(
                    p.pipeline.source,
                    findashpro::config::SourceSpec::Files { .. }
                ) {
                    refuse!(
                        Fault::Input,
                        "--source-paths needs a pipeline whose [source] is files"
                    );
                }
                // Recorded as an override, so the run's pipeline.toml says what it read.
                let cwd = std::env::current_dir()?;
                let paths: Vec<String> = source_paths
                    .iter()
                    .map(|s| cwd.join(s).to_string_lossy().into_owned())
                    .collect();
                sets.push(format!("source.paths={}", serde_json::to_string(&paths)?));
            }
            let p = if source_paths.is_empty() {
                p
            } else {
                Pipeline::load_with(&pipeline, &sets)?
            };
            let base = out.unwrap_or_else(|| p.resolve(&p.pipeline.outputs.dir));
            let opts = RunOptions {
                cluster: cluster.cluster()?,
                progress: std::io::stderr().is_terminal(),
                models: findashpro::engine::ModelPlace::Files(
                    base.join("models").join(&p.pipeline.name),
                ),
                ..RunOptions::default()
            };
            let _span = tracing::info_span!("backtest", pipeline = %pipeline.display()).entered();
            let Some(output) = findashpro::engine::run(&p, &opts)? else {
                return Ok(());
            };
            let run_id = run_id.unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    p.pipeline.name,
                    chrono::Utc::now().format("%Y%m%dT%H%M%S")
                )
            });
            let dir = findashpro::output::run_dir(&base, &run_id);
            let provenance = provenance(&p, &pipeline, &run_id, &sets, &output.inputs)?;
            let m = findashpro::output::write(
                &dir,
                &format!("{} — {}", p.pipeline.name, run_id),
                &output,
                &findashpro::output::Contents {
                    report: p.pipeline.outputs.report,
                    tables: findashpro::sinks::files::Tables::of(&p.pipeline),
                    provenance: Some(&provenance),
                    benchmark: &p.pipeline.outputs.benchmark,
                },
            )?;
            print!("{}", run_summary(&run_id, &m));
            println!("outputs: {}", dir.display());
            if let Some(path) = metrics_file {
                let text =
                    findashpro::sinks::run_metrics::render(&run_id, &p.pipeline.name, &output, &m);
                write_or_print(&path, &text)?;
            }
            if let Some(url) = database_url {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let written = rt.block_on(async {
                    use findashpro::sinks::postgres as pg;
                    let mut c = pg::connect(&url).await?;
                    pg::migrate(&mut c).await?;
                    pg::as_writer(&c).await?;
                    pg::claim_run(&c, &run_id, &p.pipeline.name, &p.fingerprint()).await?;
                    let w = pg::write_ledger(&mut c, &run_id, &output.tickers, &output.ledger, &output.exposure).await?;
                    pg::audit(&c, "backtest_written", &serde_json::json!({"run_id": run_id, "pipeline": p.pipeline.name, "final_equity": m.final_equity})).await?;
                    Ok::<_, findashpro::sinks::postgres::DbError>(w)
                })?;
                println!("postgres: {written:?}");
            }
        }
        Command::Sweep {
            pipeline,
            sets,
            metric,
            top,
            walk_forward,
            anchored,
            walk_score,
            run_id,
            out,
            workers,
        } => {
            use findashpro::sweep::{output, walk};
            let params = sets
                .iter()
                .map(|s| findashpro::sweep::parse_param(s))
                .collect::<Result<Vec<_>, _>>()?;
            let walk_spec = match walk_forward.as_deref() {
                None => None,
                Some(text) => {
                    let parsed = text
                        .split_once(':')
                        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                    let Some((train, test)) = parsed else {
                        refuse!(
                            Fault::Input,
                            "--walk-forward {text:?}: expected TRAIN:TEST in days, e.g. 252:63"
                        );
                    };
                    let Some(score) = walk::Score::parse(&walk_score) else {
                        refuse!(
                            Fault::Input,
                            "--walk-score {walk_score:?}: one of sharpe, sortino, total_return, cagr, calmar, max_drawdown"
                        );
                    };
                    Some(walk::WalkSpec {
                        train,
                        test,
                        anchored,
                        score,
                    })
                }
            };
            let plan = findashpro::sweep::plan(&pipeline, params)?;
            let opts = RunOptions {
                cluster: Cluster {
                    workers: workers.max(1),
                    ..Cluster::default()
                },
                progress: std::io::stderr().is_terminal(),
                ..RunOptions::default()
            };
            let _span = tracing::info_span!("sweep", pipeline = %pipeline.display(), combinations = plan.combos.len()).entered();
            let result = findashpro::engine::sweep::run(&plan.base, plan.spec.clone(), &opts)?;
            let (rows, returns, dates) = output::results(&plan, &result);
            if let Some(first) = rows.first()
                && first.get(&metric).is_none()
            {
                let names: Vec<&str> = first.figures.iter().map(|(n, _)| n.as_str()).collect();
                refuse!(
                    Fault::Input,
                    "--metric {metric:?} is not a figure of the sweep: {}",
                    names.join(", ")
                );
            }
            let walked = match walk_spec {
                Some(spec) => match walk::walk(&returns, &dates, spec) {
                    Ok(w) => Some(w),
                    Err(why) => refuse!(Fault::Input, "{why}"),
                },
                None => None,
            };
            let best: Vec<&output::ComboResult> = output::ranked(&rows, &metric)
                .into_iter()
                .take(top)
                .collect();
            let summary = output::Summary {
                pipeline: pipeline.display().to_string(),
                params: plan
                    .params
                    .iter()
                    .map(|p| (p.key.as_str(), p.values.as_slice()))
                    .collect(),
                combinations: rows.len(),
                features: plan.features(),
                bars: result.bars,
                graph_seconds: result.graph_seconds,
                metric: &metric,
                best,
                walk: walked.as_ref(),
            };
            let base = out.unwrap_or_else(|| plan.base.resolve(&plan.base.pipeline.outputs.dir));
            let run_id = run_id.unwrap_or_else(|| {
                format!(
                    "{}-sweep-{}",
                    plan.base.pipeline.name,
                    chrono::Utc::now().format("%Y%m%dT%H%M%S")
                )
            });
            let dir = findashpro::output::run_dir(&base, &run_id);
            output::write(&dir, &plan, &rows, &summary)?;
            println!(
                "sweep {run_id}: {} combinations over {} bars read once ({} distinct features), {:.2} s",
                rows.len(),
                result.bars,
                plan.features(),
                result.graph_seconds
            );
            for r in &summary.best {
                let values: Vec<String> = plan
                    .params
                    .iter()
                    .zip(&r.values)
                    .map(|(p, v)| format!("{}={v}", p.key))
                    .collect();
                println!(
                    "  #{:<4} {:<40} {metric} {:>9.4}  return {:+.2}%  max drawdown {:.2}%  {} trades",
                    r.combination,
                    values.join(" "),
                    r.get(&metric).unwrap_or(f64::NAN),
                    r.get("total_return").unwrap_or(f64::NAN) * 100.0,
                    r.get("max_drawdown").unwrap_or(f64::NAN) * 100.0,
                    r.get("trades").unwrap_or(f64::NAN),
                );
            }
            if let Some(w) = &walked {
                println!(
                    "  walk-forward {}:{}{} by {}: out of sample {:+.2}% (Sharpe {:.2}, max drawdown {:.2}%) over {} days, {} windows, choice changed {} times; best single combination with hindsight {:+.2}%",
                    w.spec.train,
                    w.spec.test,
                    if w.spec.anchored { " anchored" } else { "" },
                    w.spec.score.name(),
                    w.total_return * 100.0,
                    w.sharpe,
                    w.max_drawdown * 100.0,
                    w.returns.len(),
                    w.windows.len(),
                    w.changes,
                    w.hindsight_best * 100.0
                );
            }
            println!("outputs: {}", dir.display());
        }
        Command::Fetch {
            pipeline,
            until,
            catalog,
        } => {
            let until = match until.as_deref() {
                None => None,
                Some(t) => match findashpro::time::parse_time(t) {
                    Some(v) => Some(v),
                    None => refuse!(
                        Fault::Input,
                        "--until {t:?}: expected YYYY-MM-DD or RFC 3339"
                    ),
                },
            };
            let p = Pipeline::load(&pipeline)?;
            let now = findashpro::time::wall_unix();
            let r = findashpro::fetch_cmd::run(&p, &catalog, until, now)?;
            println!(
                "{}: {} tickers fetched, {} up to date, {} bars added, {} statement files, {} sentiment snapshots, {} rows quarantined, {} failed",
                catalog.display(),
                r.fetched,
                r.up_to_date,
                r.bars,
                r.statements,
                r.snapshots,
                r.rejected,
                r.failed.len()
            );
            if !r.failed.is_empty() {
                let list: Vec<String> = r
                    .failed
                    .iter()
                    .map(|(t, why)| format!("{t}: {why}"))
                    .collect();
                refuse!(
                    Fault::Service,
                    "no provider gave {} ticker(s); fetch again to retry them: {}",
                    r.failed.len(),
                    list.join("; ")
                );
            }
        }
        Command::Features {
            input,
            output,
            only,
            pipeline,
        } => {
            let specs = match pipeline {
                Some(p) => Some(
                    Pipeline::load(&p)?
                        .pipeline
                        .features
                        .iter()
                        .map(|f| f.get_ref().clone())
                        .collect(),
                ),
                None => None,
            };
            let report = findashpro::features_cmd::run(&input, &output, specs, &only)?;
            for r in &report.rejected {
                tracing::warn!(row = %r, "row not used (its outputs are NaN)");
            }
            eprintln!(
                "{}: {} rows × {} columns ({} rows rejected)",
                output.display(),
                report.rows,
                report.columns,
                report.rejected.len()
            );
        }
        Command::Bench {
            what,
            tickers,
            bars,
            workers,
            repeats,
            no_graph,
        } => match what {
            BenchWhat::Sweep => {
                let lines = findashpro::bench_sweep::run(
                    std::path::Path::new("pipelines/reference_sma_cross.toml"),
                    &workers,
                    repeats,
                )?;
                print!("{}", findashpro::bench::table(&lines));
            }
            BenchWhat::Graph => {
                let (lines, rounds) =
                    findashpro::bench::suite(tickers, bars.unwrap_or(2520), &workers, repeats);
                print!("{}", findashpro::bench::table(&lines));
                print!("{}", findashpro::bench::rounds_table(&rounds));
            }
            BenchWhat::Stream => {
                let redis = default_redis_url();
                // Every worker count asked for, as the graph does (it took only the first).
                let mut lines = Vec::new();
                for &w in &workers {
                    lines.extend(findashpro::bench_stream::suite(
                        &redis,
                        &default_database_url(),
                        w,
                    )?);
                }
                print!("{}", findashpro::bench_stream::table(&lines));
            }
            BenchWhat::Limiter => {
                let redis = default_redis_url();
                let mut lines = Vec::new();
                for &w in &workers {
                    lines.push(findashpro::bench_limiter::run(
                        &redis,
                        w,
                        bars.unwrap_or(20_000),
                    )?);
                }
                print!("{}", findashpro::bench_limiter::table(&lines));
            }
            BenchWhat::Fetch => {
                let mut lines = Vec::new();
                for &w in &workers {
                    lines.extend(findashpro::bench_fetch::run(
                        tickers,
                        bars.unwrap_or(2520),
                        w,
                    )?);
                }
                print!("{}", findashpro::bench_fetch::table(&lines));
            }
            BenchWhat::Broker => {
                let mut lines = findashpro::bench_broker::paper(tickers, bars.unwrap_or(2520));
                for &w in &workers {
                    lines.push(findashpro::bench_broker::alpaca(5000, w)?);
                }
                print!("{}", findashpro::bench_broker::table(&lines));
            }
            BenchWhat::Features => {
                let lines = findashpro::bench::features_suite(bars.unwrap_or(1_000_000), repeats);
                print!("{}", findashpro::bench::ns_table(&lines));
            }
            BenchWhat::Memory => {
                let lines =
                    findashpro::bench::memory_suite(tickers, bars.unwrap_or(2520), &workers)?;
                print!("{}", findashpro::bench::memory_table(&lines));
            }
            BenchWhat::Ml => {
                let lines =
                    findashpro::bench_ml::suite(tickers, bars.unwrap_or(2520), repeats, !no_graph);
                print!("{}", findashpro::bench::table(&lines));
            }
            BenchWhat::Pg => {
                let lines = findashpro::bench_pg::run(&default_database_url(), repeats)?;
                print!("{}", findashpro::bench::table(&lines));
            }
        },
        Command::Orchestrate {
            pipeline,
            redis,
            until,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let until = match until {
                Some(u) => findashpro::sources::redis_stream::parse_ts(&u)
                    .with_context(|| format!("--until {u:?} is not a time"))?,
                None => chrono::Utc::now().timestamp(),
            };
            let c = findashpro::stream::orchestrate(
                &p,
                &redis.url(),
                &redis.prefix,
                until,
                redis.maxlen,
            )?;
            println!(
                "cycle {}: {} work items up to {} on {}:ticker_stream",
                c.cycle, c.items, c.until, redis.prefix
            );
        }
        Command::Feed {
            pipeline,
            redis,
            rate,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let n = findashpro::stream::feed(&p, &redis.url(), &redis.prefix, redis.maxlen, rate)?;
            println!("{n} bars pushed to {}:ticker_stream", redis.prefix);
        }
        Command::Run {
            pipeline,
            redis,
            database_url,
            run_id,
            idle_shutdown,
            item_timeout,
            max_ahead,
            db_connections,
            max_failures,
            claim_idle,
            stop_grace,
            data_dir,
            metrics_addr,
            cluster,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let run_id = run_id.unwrap_or_else(|| p.pipeline.name.clone());
            findashpro::names::check_name("run id", &run_id)?;
            let db = database_url.unwrap_or_else(default_database_url);
            let mut o = findashpro::stream::StreamOptions::new(&redis.url(), &db, &run_id);
            o.cluster = cluster.cluster_or(20)?;
            o.prefix = redis.prefix.clone();
            o.idle_shutdown = idle_shutdown.map(std::time::Duration::from_secs_f64);
            o.item_timeout = std::time::Duration::from_secs_f64(item_timeout);
            o.max_failures = max_failures;
            o.max_ahead = max_ahead;
            o.db_connections = usize::from(db_connections);
            o.claim_idle = std::time::Duration::from_secs_f64(claim_idle);
            o.stop_file = Some(data_dir.join("STOP"));
            on_signals(
                o.shutdown.clone(),
                std::time::Duration::from_secs_f64(stop_grace),
            )?;
            if let Some(addr) = metrics_addr {
                let ready = findashpro::sinks::prometheus::Readiness {
                    redis_url: o.redis_url.clone(),
                    database_url: o.database_url.clone(),
                    stopping: o.shutdown.clone(),
                };
                let bound =
                    findashpro::sinks::prometheus::serve(&addr, o.metrics.clone(), Some(ready))?;
                eprintln!("metrics on http://{bound}/metrics (probes /healthz, /readyz)");
            }
            let _span = tracing::info_span!("run", %run_id).entered();
            let ending = findashpro::stream::run(&p, &o)?;
            let m = &o.metrics;
            use std::sync::atomic::Ordering::Relaxed;
            println!(
                "run {run_id} ended ({ending:?}): {} messages, {} bars, {} tickers, {} orders, {} rejects, {} dead letters, {} acked",
                m.messages.load(Relaxed),
                m.bars.load(Relaxed),
                m.tickers.load(Relaxed),
                m.orders.load(Relaxed),
                m.rejects.load(Relaxed),
                m.dead_letters.load(Relaxed),
                m.acked.load(Relaxed)
            );
        }
        Command::Query {
            run,
            format,
            output,
            sql,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let text = rt.block_on(findashpro::query::run(&run, &sql, format))?;
            write_or_print(&output, &text)?;
        }
        Command::Compare { run_a, run_b } => {
            let c = findashpro::compare::compare(&run_a, &run_b)?;
            let name = |p: &std::path::Path| {
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            };
            print!(
                "{}",
                findashpro::compare::render(&c, &name(&run_a), &name(&run_b))
            );
        }
        Command::Init { name, dir } => {
            findashpro::names::check_name("pipeline name", &name)?;
            let path = dir.join(format!("{name}.toml"));
            let text = findashpro::config::template(&name);
            std::fs::create_dir_all(&dir)?;
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => refuse!(
                    Fault::Input,
                    "{} exists; fdp init writes only a new file",
                    path.display()
                ),
                Err(e) => return Err(e.into()),
            };
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            println!(
                "wrote {} — run it with: fdp backtest {}",
                path.display(),
                path.display()
            );
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "fdp", &mut std::io::stdout());
        }
        Command::Serve {
            addr,
            database_url,
            runs,
            data_dir,
            redis_url,
            prefix,
        } => {
            let bound = findashpro::serve::start(findashpro::serve::ServeOptions {
                addr,
                database_url: database_url.or_else(|| std::env::var("DATABASE_URL").ok()),
                runs_dir: Some(runs),
                data_dir,
                token: std::env::var("FDP_SERVE_TOKEN").ok(),
                redis_url: redis_url.or_else(|| std::env::var("REDIS_URL").ok()),
                prefix,
            })?;
            eprintln!("dashboard on http://{bound}/");
            loop {
                std::thread::park();
            }
        }
    }
    Ok(())
}

/// What a backtest prints at the end: return against the benchmark, Sharpe, drawdown, trades, and
/// what was refused or rejected when anything was.
fn run_summary(run_id: &str, m: &findashpro::metrics::Metrics) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "run {run_id}: {} bars, {} periods, {} → {}\n",
        m.bars, m.periods, m.start, m.end
    );
    match &m.vs_benchmark {
        Some(f) => {
            let _ = writeln!(
                s,
                "  return {:+.2}% vs benchmark {} {:+.2}% (CAGR {:.2}% vs {:.2}%), Sharpe {:.2} vs {:.2}, max drawdown {:.2}% vs {:.2}%",
                f.strategy.cumulative_return * 100.0,
                f.benchmark,
                f.bench.cumulative_return * 100.0,
                f.strategy.cagr * 100.0,
                f.bench.cagr * 100.0,
                f.strategy.sharpe,
                f.bench.sharpe,
                f.strategy.max_drawdown * 100.0,
                f.bench.max_drawdown * 100.0,
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  return {:+.2}%, Sharpe {:.2}, max drawdown {:.2}%",
                m.total_return * 100.0,
                m.sharpe,
                m.max_drawdown * 100.0
            );
        }
    }
    let _ = writeln!(
        s,
        "  {} closed trades (win rate {:.1}%), {} open at the end, final equity {:.2}",
        m.trades,
        m.win_rate * 100.0,
        m.open_trades,
        m.final_equity
    );
    let by = |map: &std::collections::BTreeMap<String, usize>| {
        map.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(&n) = m.orders.get("refused").filter(|n| **n > 0) {
        let _ = writeln!(
            s,
            "  {n} orders refused by risk (see orders.parquet's reason)"
        );
    }
    for (what, map) in [("rejected", &m.rejected), ("flagged", &m.flagged)] {
        let n: usize = map.values().sum();
        if n > 0 {
            let _ = writeln!(s, "  {n} rows {what}: {}", by(map));
        }
    }
    s
}
