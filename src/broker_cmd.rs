//! `fdp broker`: the broker sink of a live run, as its own process. It sends the run's committed
//! orders to the venue named by `[broker] kind` exactly once (the [`outbox`]), cancels there what
//! the portfolio ended, follows each open order's state, and reconciles the venue with the ledger
//! at start and every `reconcile_minutes`. It never decides anything: the run decides and
//! commits, this process only carries committed decisions out, so a crash of either loses
//! nothing and sends nothing twice.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{BrokerKind, LoadedPipeline};
use crate::sinks::broker::alpaca::link::AlpacaLink;
use crate::sinks::broker::alpaca::{AlpacaConfig, PAPER_STREAM_URL, PAPER_URL};
use crate::sinks::broker::ibkr::{IbkrClient, IbkrConfig};
use crate::sinks::broker::outbox::{self, Outbox, Pass};
use crate::sinks::broker::reconcile;
use crate::sinks::broker::venue::{Venue, VenueError};
use crate::sinks::postgres::{self, DbError};

/// The Client Portal gateway's default address (BROKERS.md §2a).
const IBKR_GATEWAY: &str = "https://localhost:5000/v1/api";

/// The advisory lock class of `fdp broker`'s per-run lease ("FDPB").
const LEASE_CLASS: i32 = 0x4644_5042;

/// How long the venue counts as down once its breaker opened.
const COOLDOWN: Duration = Duration::from_secs(30);

/// Options of `fdp broker`.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The run whose orders are sent.
    pub run_id: String,
    /// PostgreSQL URL.
    pub database_url: String,
    /// One pass (recover, reconcile, send, cancel, follow), then exit.
    pub once: bool,
    /// Pause between passes.
    pub interval: Duration,
    /// The kill-switch file: the process ends when it appears.
    pub stop_file: std::path::PathBuf,
}

/// Why `fdp broker` stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerCmdError {
    /// The venue's configuration or an unrecoverable answer.
    #[error(transparent)]
    Venue(#[from] VenueError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The pipeline's `[broker]` names no venue.
    #[error(
        "[broker] kind = \"paper\": the paper broker fills inside the run; `fdp broker` needs kind = \"alpaca\" or \"ibkr\""
    )]
    Paper,
    /// Another `fdp broker` holds the run's lease: two senders could each send an order the
    /// other has marked `sending` but not yet answered.
    #[error(
        "another `fdp broker` is running for run {0:?} (it holds the run's lease in PostgreSQL); stop it first"
    )]
    Busy(String),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl crate::fault::Blame for BrokerCmdError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            BrokerCmdError::Venue(e) if e.is_config() => Fault::Input,
            BrokerCmdError::Paper | BrokerCmdError::Busy(_) => Fault::Input,
            BrokerCmdError::Venue(_) => Fault::Service,
            BrokerCmdError::Db(e) => e.fault(),
            BrokerCmdError::Runtime(_) => Fault::Service,
        }
    }
}

/// What the process did, summed over its passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSummary {
    /// Sent, adopted, rejected, halted, unanswered and cancelled orders.
    pub pass: Pass,
    /// Cancels sent.
    pub cancels: u64,
    /// Differences reconciliation adopted from the venue.
    pub differences: u64,
}

/// Runs the broker sink of `opts.run_id` for the pipeline's venue until the stop file appears (or
/// after one pass with `once`).
///
/// # Errors
/// A venue configuration that is refused (a live account without `live = true`, missing keys),
/// or PostgreSQL failing.
pub fn run(p: &LoadedPipeline, opts: &BrokerOptions) -> Result<BrokerSummary, BrokerCmdError> {
    let b = &p.pipeline.broker;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match b.kind {
        BrokerKind::Paper => Err(BrokerCmdError::Paper),
        BrokerKind::Alpaca => {
            let base = b.base_url.as_deref().unwrap_or(PAPER_URL);
            let stream = b.stream_url.as_deref().unwrap_or(PAPER_STREAM_URL);
            let cfg = AlpacaConfig::from_env(base, stream, b.live)?;
            rt.block_on(async {
                // Trade updates over the websocket (REST polled on every reconnection).
                let mut link = AlpacaLink::start(cfg)?;
                let client = link.client().clone();
                // The paper and live hosts are told apart by the configured URL (the adapter
                // refuses the live host without `live = true`); the account must be able to trade.
                let account = client.account().await?;
                if account.blocked {
                    return Err(VenueError::Blocked {
                        venue: "alpaca",
                        account: account.number.clone(),
                    }
                    .into());
                }
                drive(&client, Some(&mut link), p, opts).await
            })
        }
        BrokerKind::Ibkr => {
            let base = b.base_url.as_deref().unwrap_or(IBKR_GATEWAY);
            let account = b.account.as_deref().unwrap_or_default();
            let client =
                std::sync::Arc::new(IbkrClient::new(IbkrConfig::new(base, account, b.live)?)?);
            rt.block_on(async {
                client.tickle().await?;
                let _keep = client.keep_alive(Duration::from_secs(60));
                drive(client.as_ref(), None, p, opts).await
            })
        }
    }
}

fn stop_requested(file: &Path) -> bool {
    file.exists()
}

/// How often working orders are asked about over REST when a stream reports their updates (the
/// safety net under the stream; without a stream, every pass).
const POLL_UNDER_STREAM: Duration = Duration::from_secs(30);

/// The passes: recover and reconcile at start, then send, cancel and follow every `interval`,
/// reconciling every `reconcile_minutes`. With a `stream` (Alpaca's trade updates) its events
/// are booked as they come and REST asks about working orders only every
/// [`POLL_UNDER_STREAM`].
async fn drive<V: Venue>(
    venue: &V,
    mut stream: Option<&mut AlpacaLink>,
    p: &LoadedPipeline,
    opts: &BrokerOptions,
) -> Result<BrokerSummary, BrokerCmdError> {
    let mut c = postgres::connect(&opts.database_url).await?;
    postgres::migrate(&mut c).await?;
    let run_id = &opts.run_id;
    // One sender per run: the lease is a session advisory lock, held while this connection
    // lives and released by PostgreSQL when the process dies however it dies.
    let leased: bool = c
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LEASE_CLASS, run_id],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if !leased {
        return Err(BrokerCmdError::Busy(run_id.clone()));
    }
    let mut out = Outbox::open(&c, venue, run_id, COOLDOWN, p.pipeline.broker.failover).await?;
    let mut sum = BrokerSummary::default();
    let span = tracing::info_span!("broker", run_id = %run_id, venue = venue.name());
    let _g = span.enter();
    tracing::info!("broker sink started");
    let recovered = out.recover(&c).await?;
    sum.pass.adopted += recovered.adopted;
    let every = Duration::from_secs_f64(p.pipeline.broker.reconcile_minutes * 60.0);
    let mut reconciled: Option<Instant> = None;
    let mut polled: Option<Instant> = None;
    loop {
        if !out.on_paper() && reconciled.is_none_or(|t| t.elapsed() >= every) {
            match reconcile::run(&c, venue, run_id).await {
                Ok(found) => sum.differences += found.len() as u64,
                Err(reconcile::ReconcileError::Venue(e)) => {
                    tracing::warn!(error = %e, "reconciliation could not ask the venue: retried next pass");
                }
                Err(reconcile::ReconcileError::Db(e)) => return Err(e.into()),
            }
            reconciled = Some(Instant::now());
        }
        if let Some(link) = stream.as_deref_mut() {
            // Followed before they are sent, so no update of theirs is missed.
            let live = ["recorded", "sending", "accepted", "cancelling"];
            for row in outbox::load(&c, run_id, &live).await? {
                link.follow(&row.client_id);
            }
        }
        let pass = out.send_pending(&c).await?;
        add(&mut sum.pass, &pass);
        sum.cancels += out.send_cancels(&c).await?;
        let poll_every = if stream.is_some() {
            POLL_UNDER_STREAM
        } else {
            Duration::ZERO
        };
        if opts.once || polled.is_none_or(|t| t.elapsed() >= poll_every) {
            outbox::follow(&c, venue, run_id).await?;
            polled = Some(Instant::now());
        }
        if opts.once || stop_requested(&opts.stop_file) {
            break;
        }
        match stream.as_deref_mut() {
            Some(link) => {
                // Waits for the stream up to the interval, then takes what else is there.
                let mut wait = opts.interval;
                while let Some(e) = link.next_event(wait).await {
                    outbox::record_event(&c, run_id, &e).await?;
                    wait = Duration::ZERO;
                }
            }
            None => tokio::time::sleep(opts.interval).await,
        }
    }
    tracing::info!(?sum, "broker sink stopped");
    Ok(sum)
}

fn add(a: &mut Pass, b: &Pass) {
    a.sent += b.sent;
    a.adopted += b.adopted;
    a.rejected += b.rejected;
    a.halted += b.halted;
    a.routed += b.routed;
    a.unanswered += b.unanswered;
    a.cancelled += b.cancelled;
}
