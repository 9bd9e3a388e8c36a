//! `fdp`: the command line of findashpro.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use findashpro::config::Pipeline;
use findashpro::engine::{Cluster, RunOptions};

/// findashpro: market data in, trading decisions out.
#[derive(Debug, Parser)]
#[command(name = "fdp", version, about, disable_help_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help, global = true)]
    help: Option<bool>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay history through a pipeline and write `runs/<run-id>/`.
    #[command(disable_help_flag = true)]
    Backtest {
        /// Pipeline file (`pipelines/*.toml`).
        pipeline: PathBuf,
        /// Run id (default: `<pipeline name>-<UTC time>`).
        #[arg(long)]
        run_id: Option<String>,
        /// Output base directory (default: the pipeline's `outputs.dir`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Check a pipeline file without running it.
    Validate {
        /// Pipeline file.
        pipeline: PathBuf,
    },
    /// Benchmarks: bars/s of the whole graph and each stage on synthetic data.
    Bench {
        /// Synthetic tickers.
        #[arg(long, default_value_t = 500)]
        tickers: usize,
        /// Bars per ticker.
        #[arg(long, default_value_t = 2520)]
        bars: usize,
        /// Worker counts for the whole-graph runs.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Repeats (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Run SQL (DataFusion) over a run's output tables: signals, orders, fills, positions, equity,
    /// trades, quarantine.
    Query {
        /// The run folder (`runs/<run-id>`).
        #[arg(long)]
        run: PathBuf,
        /// The query.
        sql: String,
    },
}

/// Timely's cluster options.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// This process's index.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// Host file: one `host:port` per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl ClusterArgs {
    fn cluster(&self) -> Result<Cluster> {
        if self.workers == 0 || self.processes == 0 || self.process >= self.processes {
            bail!(
                "need -w >= 1, -n >= 1 and -p < -n (got -w {} -n {} -p {})",
                self.workers,
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
                    bail!(
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
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            addresses,
        })
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FDP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { pipeline } => {
            let p = Pipeline::load(&pipeline)?;
            findashpro::sources::Source::open(&p)?;
            println!(
                "{}: ok ({} feature columns: {})",
                pipeline.display(),
                p.pipeline.feature_columns().len(),
                p.pipeline.feature_columns().join(", ")
            );
        }
        Command::Backtest {
            pipeline,
            run_id,
            out,
            cluster,
        } => {
            let p = Pipeline::load(&pipeline)?;
            let opts = RunOptions {
                cluster: cluster.cluster()?,
                progress: std::io::stderr().is_terminal(),
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
            let base = out.unwrap_or_else(|| PathBuf::from(&p.pipeline.outputs.dir));
            let dir = findashpro::output::run_dir(&base, &run_id);
            let m = findashpro::output::write(
                &dir,
                &format!("{} — {}", p.pipeline.name, run_id),
                &output,
                p.pipeline.outputs.report,
            )?;
            println!(
                "run {run_id}: {} bars, {} periods, final equity {:.2} ({:+.2}%), Sharpe {:.3}, max drawdown {:.2}%, {} closed trades, {} rejected, {} flagged",
                m.bars,
                m.periods,
                m.final_equity,
                m.total_return * 100.0,
                m.sharpe,
                m.max_drawdown * 100.0,
                m.trades,
                m.rejected.values().sum::<usize>(),
                m.flagged.values().sum::<usize>()
            );
            println!("outputs: {}", dir.display());
        }
        Command::Bench {
            tickers,
            bars,
            workers,
            repeats,
        } => {
            let lines = findashpro::bench::suite(tickers, bars, &workers, repeats);
            print!("{}", findashpro::bench::table(&lines));
        }
        Command::Query { run, sql } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(findashpro::query::run(&run, &sql))?;
        }
    }
    Ok(())
}
