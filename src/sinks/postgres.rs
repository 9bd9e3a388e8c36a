//! PostgreSQL: the audit trail and the run's decisions.
//!
//! Migrations (`migrations/*.sql`) are embedded, versioned in `schema_migrations` with a checksum,
//! applied in one transaction under an advisory lock (so concurrent starters do not race) and
//! re-runnable. Writes are parameterised and idempotent: natural keys plus `ON CONFLICT DO
//! NOTHING`, one transaction per batch, so a redelivered message never doubles a row.

use chrono::{DateTime, Utc};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Transaction};

use crate::bar::Tickers;
use crate::operators::exposure::ExposureRow;
use crate::operators::portfolio::Ledger;
use crate::sinks::pg_pipeline::{Counts, Pipeline, Slot};

/// The embedded migrations: (version, name, SQL).
pub const MIGRATIONS: [(i32, &str, &str); 12] = [
    (1, "core", include_str!("../../migrations/0001_core.sql")),
    (
        2,
        "stream",
        include_str!("../../migrations/0002_stream.sql"),
    ),
    (
        3,
        "models",
        include_str!("../../migrations/0003_models.sql"),
    ),
    (4, "runs", include_str!("../../migrations/0004_runs.sql")),
    (
        5,
        "audit_chain",
        include_str!("../../migrations/0005_audit_chain.sql"),
    ),
    (
        6,
        "quarantine_origin",
        include_str!("../../migrations/0006_quarantine_origin.sql"),
    ),
    (
        7,
        "exposure",
        include_str!("../../migrations/0007_exposure.sql"),
    ),
    (
        8,
        "equity",
        include_str!("../../migrations/0008_equity.sql"),
    ),
    (
        9,
        "order_types",
        include_str!("../../migrations/0009_order_types.sql"),
    ),
    (
        10,
        "broker_outbox",
        include_str!("../../migrations/0010_broker_outbox.sql"),
    ),
    (
        11,
        "broker_replace",
        include_str!("../../migrations/0011_broker_replace.sql"),
    ),
    (
        12,
        "bars_time_key",
        include_str!("../../migrations/0012_bars_time_key.sql"),
    ),
];

/// Advisory lock key that serializes migrators.
const MIGRATION_LOCK: i64 = 0x66_6470_6d69_6772;

/// Errors talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server refused or failed a statement, or the connection broke.
    #[error("postgres: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The server did not answer in time.
    #[error("postgres: no answer after {after:?} {what}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The run id already holds the rows of another pipeline.
    #[error(
        "run id `{run_id}` already holds the rows of pipeline {theirs}; this is {ours}: choose another run id"
    )]
    AnotherPipeline {
        /// The run id.
        run_id: String,
        /// The fingerprint recorded.
        theirs: String,
        /// This run's fingerprint.
        ours: String,
    },
    /// The audit log's protections are not in place.
    #[error(
        "audit_log is not protected: {missing}; restore them (a fresh `fdp migrate` on a new database shows the intended state)"
    )]
    Unprotected {
        /// The protections missing.
        missing: String,
    },
    /// Another process holds the run id's lease.
    #[error(
        "run id `{run_id}` is already running (another process holds its lease); stop it or choose another run id"
    )]
    LeaseHeld {
        /// The run id.
        run_id: String,
    },
    /// A newer process took the run id's lease: this one may no longer commit.
    #[error(
        "run id `{run_id}`: lease epoch {ours} was superseded by {now}; this process was fenced out"
    )]
    Fenced {
        /// The run id.
        run_id: String,
        /// The epoch this process took.
        ours: i64,
        /// The epoch in force.
        now: i64,
    },
    /// A row this version cannot read back (edited by hand, or a bug that wrote it).
    #[error("postgres holds an unreadable row: {what}")]
    Corrupt {
        /// Which row, and what is wrong with it.
        what: String,
    },
    /// An applied migration's file changed since it was applied.
    #[error(
        "migration {version} ({name}) was edited after it was applied (checksum {applied} in the database, {now} now)"
    )]
    Edited {
        /// Version.
        version: i32,
        /// Name.
        name: String,
        /// Checksum recorded.
        applied: String,
        /// Checksum of the embedded file.
        now: String,
    },
}

impl crate::fault::Blame for DbError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            // The server's own refusals of what the user asked (a bad URL, a missing database,
            // a refused login) are the user's; a broken connection or a timeout is the service's.
            DbError::Postgres(e) => match e.code().map(|c| c.code()) {
                Some(c) if c.starts_with("28") || c.starts_with("3D") || c.starts_with("42") => {
                    Fault::Input
                }
                _ => Fault::Service,
            },
            DbError::Timeout { .. }
            | DbError::Unprotected { .. }
            | DbError::Edited { .. }
            | DbError::Corrupt { .. } => Fault::Service,
            DbError::AnotherPipeline { .. }
            | DbError::LeaseHeld { .. }
            | DbError::Fenced { .. } => Fault::Input,
        }
    }
}

/// How long connecting and logging in to PostgreSQL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL error with its real cause first: the server's message, detail and hint for an
/// error the server sent, else the error and its source chain (tokio-postgres' own text is
/// often only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(c) = source {
        s.push_str(&format!(": {c}"));
        source = c.source();
    }
    s
}

/// Rows written by [`write_ledger`] (rows already present are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Signals.
    pub signals: u64,
    /// Orders.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Positions.
    pub positions: u64,
}

fn checksum(sql: &str) -> String {
    crate::config::checksum(sql)
}

/// Connects and drives the connection on the current tokio runtime.
///
/// # Errors
/// The server cannot be reached or refuses the login.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // A server that accepts the connection and never answers must not hang a command: the whole
    // handshake is bounded, and the OS drops a connection whose peer stopped acknowledging.
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .tcp_user_timeout(Duration::from_secs(60));
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| DbError::Timeout {
            what: "connecting and logging in",
            after: CONNECT_TIMEOUT,
        })??;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// How many embedded migrations the database has not applied (0: up to date), for readiness
/// checks. Reads only.
///
/// # Errors
/// The query fails, or an applied migration was edited since ([`DbError::Edited`]).
pub async fn migrations_pending(client: &Client) -> Result<usize, DbError> {
    Ok(pending(&applied_checksums(client).await?)?.len())
}

/// The roles of migration 5, created if missing, tolerating a concurrent creator.
const ENSURE_ROLES: &str = "
DO $$ BEGIN CREATE ROLE fdp_owner NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE fdp_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN GRANT fdp_writer TO CURRENT_USER;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
";

/// Applies the migrations not yet applied; returns their versions.
///
/// When every migration is applied already it runs no DDL at all, so a login that may only
/// write (a member of `fdp_writer`, no CREATE on the schema) can start a run.
///
/// # Errors
/// A failing statement, or an applied migration that was edited since.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, DbError> {
    if pending(&applied_checksums(client).await?)?.is_empty() {
        verify_protections(client).await?;
        return Ok(Vec::new());
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    // Roles belong to the cluster, not the database, and the migration lock is per database:
    // two databases migrating at once on a fresh cluster would race to create them (one failing
    // on the unique name). Created here first, each statement committed on its own and tolerant
    // of the other migrator, so migration 5's `IF NOT EXISTS` finds them.
    client.batch_execute(ENSURE_ROLES).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // Read again under the lock: another migrator may have applied some meanwhile.
    let mut applied = Vec::new();
    for (version, name, sql) in pending(&applied_checksums(&tx).await?)? {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&version, &name, &checksum(sql)],
        )
        .await?;
        applied.push(version);
    }
    tx.commit().await?;
    verify_protections(client).await?;
    Ok(applied)
}

/// The checksum of every applied migration by version (none before the first migration).
/// Reads only (`to_regclass`, a SELECT).
async fn applied_checksums(
    client: &impl tokio_postgres::GenericClient,
) -> Result<std::collections::HashMap<i32, String>, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Default::default());
    }
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The migrations not in `applied`, in order.
///
/// # Errors
/// [`DbError::Edited`] when an applied migration's text changed since.
fn pending(
    applied: &std::collections::HashMap<i32, String>,
) -> Result<Vec<(i32, &'static str, &'static str)>, DbError> {
    let mut todo = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        match applied.get(&version) {
            None => todo.push((version, name, sql)),
            Some(had) if *had != checksum(sql) => {
                return Err(DbError::Edited {
                    version,
                    name: name.into(),
                    applied: had.clone(),
                    now: checksum(sql),
                });
            }
            Some(_) => {}
        }
    }
    Ok(todo)
}

/// Checks that the audit log's protections are in place — its three triggers present and enabled,
/// owned by `fdp_owner`, `fdp_writer` without UPDATE, DELETE or TRUNCATE on it — so that a dropped
/// or disabled trigger does not pass unnoticed (migrations are versioned, so a rerun would not
/// recreate it).
///
/// # Errors
/// [`DbError::Unprotected`] naming what is missing.
pub async fn verify_protections(client: &Client) -> Result<(), DbError> {
    let mut missing = Vec::new();
    for trigger in [
        "audit_log_no_update_delete",
        "audit_log_no_truncate",
        "audit_log_chain",
    ] {
        let enabled: Option<String> = client
            .query_opt(
                "SELECT tgenabled::text FROM pg_trigger \
                 WHERE tgrelid = 'audit_log'::regclass AND tgname = $1",
                &[&trigger],
            )
            .await?
            .map(|r| r.get(0));
        match enabled.as_deref() {
            Some("O" | "A") => {}
            Some(_) => missing.push(format!("trigger {trigger} is disabled")),
            None => missing.push(format!("trigger {trigger} is missing")),
        }
    }
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text, \
                    has_table_privilege('fdp_writer', 'audit_log', 'UPDATE'), \
                    has_table_privilege('fdp_writer', 'audit_log', 'DELETE'), \
                    has_table_privilege('fdp_writer', 'audit_log', 'TRUNCATE') \
             FROM pg_class WHERE oid = 'audit_log'::regclass",
            &[],
        )
        .await?;
    let owner: String = row.get(0);
    if owner != "fdp_owner" {
        missing.push(format!("audit_log is owned by {owner}, not fdp_owner"));
    }
    for (i, what) in [(1, "UPDATE"), (2, "DELETE"), (3, "TRUNCATE")] {
        if row.get::<_, bool>(i) {
            missing.push(format!("fdp_writer may {what} audit_log"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DbError::Unprotected {
            missing: missing.join("; "),
        })
    }
}

/// Switches the session to the `fdp_writer` role, which writes the ledger but may only append to
/// the audit log (and cannot disable its triggers or change `session_replication_role`).
///
/// # Errors
/// The role is missing (run `fdp migrate`) or the login may not use it.
pub async fn as_writer(client: &Client) -> Result<(), DbError> {
    client.batch_execute("SET ROLE fdp_writer").await?;
    Ok(())
}

/// What `fdp audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Rows read.
    pub rows: u64,
    /// The last row's `seq` and hash (record them elsewhere: they anchor the chain).
    pub head: Option<(i64, String)>,
    /// The first broken link: `seq`, row id and what is wrong.
    pub broken: Option<(i64, i64, String)>,
}

/// Recomputes the audit log's hash chain outside the database, from the rows' text: SHA-256 of
/// the previous hash, `seq`, event type, data (canonical JSONB text), actor, origin address and
/// time (UTC, microseconds), joined by U+001F. Stops at the first broken link.
///
/// # Errors
/// A failing query.
pub async fn verify_audit(client: &Client) -> Result<AuditCheck, DbError> {
    use sha2::{Digest, Sha256};
    let rows = client
        .query(
            "SELECT seq, id, coalesce(prev_hash, ''), coalesce(hash, ''), event_type, data::text, \
                    actor, coalesce(host(origin_ip), ''), \
                    to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') \
             FROM audit_log ORDER BY seq NULLS FIRST, id",
            &[],
        )
        .await?;
    let mut check = AuditCheck {
        rows: 0,
        head: None,
        broken: None,
    };
    let mut prev = String::new();
    for (i, r) in rows.iter().enumerate() {
        check.rows += 1;
        let (seq, id): (Option<i64>, i64) = (r.get(0), r.get(1));
        let (prev_hash, hash): (String, String) = (r.get(2), r.get(3));
        let want_seq = i as i64 + 1;
        let fields: Vec<String> = (4..9).map(|c| r.get::<_, String>(c)).collect();
        let text = [prev_hash.clone(), seq.unwrap_or(0).to_string()]
            .into_iter()
            .chain(fields)
            .collect::<Vec<_>>()
            .join("\u{1f}");
        let computed: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let problem = if seq != Some(want_seq) {
            Some(format!(
                "seq is {} where {want_seq} was expected (a row is missing or was inserted)",
                seq.map_or("null".into(), |s| s.to_string())
            ))
        } else if prev_hash != prev {
            Some("prev_hash is not the previous row's hash".to_string())
        } else if hash != computed {
            Some("its hash does not match its contents (the row was changed)".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            check.broken = Some((seq.unwrap_or(0), id, p));
            return Ok(check);
        }
        prev = hash.clone();
        check.head = Some((want_seq, hash));
    }
    Ok(check)
}

/// Appends an event to the audit trail.
///
/// # Errors
/// A failing insert.
pub async fn audit(
    client: &Client,
    event_type: &str,
    data: &serde_json::Value,
) -> Result<(), DbError> {
    audit_from(client, event_type, data, None).await
}

/// Appends an event to the audit trail with the address it came from (`origin_ip`), for
/// actions a person took over the network, such as the dashboard's kill switch.
///
/// # Errors
/// A failing insert.
pub async fn audit_from(
    client: &Client,
    event_type: &str,
    data: &serde_json::Value,
    origin: Option<std::net::IpAddr>,
) -> Result<(), DbError> {
    let origin = origin.map(|ip| ip.to_string());
    client
        .execute(
            "INSERT INTO audit_log (event_type, data, origin_ip) VALUES ($1, $2, $3::text::inet)",
            &[&event_type, data, &origin],
        )
        .await?;
    Ok(())
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Writes a run's signals, orders, fills, positions and sector exposure in one transaction,
/// idempotently.
///
/// # Errors
/// A failing statement (the transaction then leaves nothing behind).
pub async fn write_ledger(
    client: &mut Client,
    run_id: &str,
    tickers: &Tickers,
    ledger: &Ledger,
    exposure: &[ExposureRow],
) -> Result<Written, DbError> {
    let tx = client.transaction().await?;
    let mut p = Pipeline::default();
    let rows = ledger_rows(&mut p, run_id, tickers, ledger);
    exposure_rows(&mut p, run_id, exposure);
    let counts = p.run(&tx).await?;
    withdraw(&tx, run_id, ledger).await?;
    tx.commit().await?;
    Ok(rows.written(&counts))
}

/// Adds the sector exposure rows (none: nothing); a row already there (a replay) is left as it
/// is.
fn exposure_rows<'a>(p: &mut Pipeline<'a>, run_id: &'a str, rows: &'a [ExposureRow]) {
    if rows.is_empty() {
        return;
    }
    p.push(
        "INSERT INTO exposure (run_id, time, sector, cost_cents, positions) \
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::text[], $4::int8[], $5::int8[]) \
         ON CONFLICT DO NOTHING",
        vec![
            Box::new(run_id),
            Box::new(rows.iter().map(|r| at(r.ts)).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.sector.as_str()).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.cost_cents).collect::<Vec<_>>()),
            Box::new(rows.iter().map(|r| r.positions).collect::<Vec<_>>()),
        ],
    );
}

/// Where [`ledger_rows`] put the statements whose counts [`Written`] reports.
struct LedgerSlots {
    signals: Option<Slot>,
    orders: Option<Slot>,
    fills: Option<Slot>,
    positions: Option<Slot>,
}

impl LedgerSlots {
    fn written(&self, counts: &Counts) -> Written {
        Written {
            signals: counts.of(self.signals),
            orders: counts.of(self.orders),
            fills: counts.of(self.fills),
            positions: counts.of(self.positions),
        }
    }
}

/// Adds the ledger's rows, one statement per table that has any. An order first written as
/// `unfilled` (a run that ended before its next bar) takes the outcome a later, longer run gives
/// it; every other row is written once. The withdrawn orders' cancels must see the orders this
/// step records: [`withdraw`] runs them after the pipeline.
fn ledger_rows<'a>(
    p: &mut Pipeline<'a>,
    run_id: &'a str,
    tickers: &'a Tickers,
    ledger: &'a Ledger,
) -> LedgerSlots {
    let name = |t: u32| tickers.name(t);
    let s = &ledger.signals;
    let signals = (!s.is_empty()).then(|| {
        p.push(
            "INSERT INTO signals (run_id, ticker, time, action, confidence, predicted_return) \
             SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::text[], $5::float8[], $6::float8[]) \
             ON CONFLICT DO NOTHING",
            vec![
                Box::new(run_id),
                Box::new(s.iter().map(|r| name(r.ticker)).collect::<Vec<_>>()),
                Box::new(s.iter().map(|r| at(r.ts)).collect::<Vec<_>>()),
                Box::new(s.iter().map(|r| r.signal.target.action()).collect::<Vec<_>>()),
                Box::new(s.iter().map(|r| r.signal.confidence).collect::<Vec<_>>()),
                Box::new(s.iter().map(|r| finite(r.signal.predicted_return)).collect::<Vec<_>>()),
            ],
        )
    });
    let o = &ledger.orders;
    let orders = (!o.is_empty()).then(|| {
        p.push(
            "INSERT INTO orders (run_id, order_id, time, ticker, side, intent, size_fraction, status, reason, \
                                 order_type, limit_price, stop_price, time_in_force, parent_id, filled_quantity) \
             SELECT $1, * FROM UNNEST($2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::float8[], \
                                      $8::text[], $9::text[], $10::text[], $11::float8[], $12::float8[], $13::text[], \
                                      $14::int8[], $15::float8[]) \
             ON CONFLICT (run_id, order_id) DO UPDATE \
                SET status = EXCLUDED.status, reason = EXCLUDED.reason, filled_quantity = EXCLUDED.filled_quantity \
             WHERE orders.status = 'unfilled' AND EXCLUDED.status <> 'unfilled'",
            vec![
                Box::new(run_id),
                Box::new(o.iter().map(|r| r.order.id as i64).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| at(r.order.ts)).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| name(r.order.ticker)).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.side.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.kind.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.size_fraction()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.status.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.order_type.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.order_type.limit()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.order_type.stop()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.tif.as_str()).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.order.parent.map(|p| p as i64)).collect::<Vec<_>>()),
                Box::new(o.iter().map(|r| r.filled).collect::<Vec<_>>()),
            ],
        )
    });
    crate::sinks::broker::outbox::record_in(p, run_id, tickers, &ledger.submitted);
    let f = &ledger.fills;
    let fills = (!f.is_empty()).then(|| {
        p.push(
            "INSERT INTO fills (run_id, order_id, seq, time, ticker, side, quantity, price, commission) \
             SELECT $1, * FROM UNNEST($2::int8[], $3::int4[], $4::timestamptz[], $5::text[], $6::text[], $7::float8[], $8::float8[], $9::float8[]) \
             ON CONFLICT DO NOTHING",
            vec![
                Box::new(run_id),
                Box::new(f.iter().map(|r| r.order_id as i64).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| r.seq as i32).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| at(r.ts)).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| name(r.ticker)).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| r.side.as_str()).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| r.quantity).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| r.price).collect::<Vec<_>>()),
                Box::new(f.iter().map(|r| r.commission).collect::<Vec<_>>()),
            ],
        )
    });
    ml_rows(p, run_id, ledger);
    let d = &ledger.drifts;
    if !d.is_empty() {
        p.push(
            "WITH ins AS ( \
               INSERT INTO drift_events (run_id, ticker, time, feature, kl) \
               SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::text[], $5::float8[]) \
               ON CONFLICT DO NOTHING RETURNING * ) \
             INSERT INTO audit_log (event_type, data) \
             SELECT 'drift_alert', jsonb_build_object('run_id', run_id, 'ticker', ticker, \
                    'time', time, 'feature', feature, 'kl', kl) FROM ins",
            vec![
                Box::new(run_id),
                Box::new(d.iter().map(|(t, _)| name(*t)).collect::<Vec<_>>()),
                Box::new(d.iter().map(|(_, r)| at(r.ts)).collect::<Vec<_>>()),
                Box::new(d.iter().map(|(_, r)| r.name.as_str()).collect::<Vec<_>>()),
                Box::new(d.iter().map(|(_, r)| r.kl).collect::<Vec<_>>()),
            ],
        );
    }
    let e = &ledger.equity;
    if !e.is_empty() {
        p.push(
            "INSERT INTO equity (run_id, time, cash, positions_value, equity, open_positions) \
             SELECT $1, * FROM UNNEST($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], \
             $6::int8[]) ON CONFLICT DO NOTHING",
            vec![
                Box::new(run_id),
                Box::new(e.iter().map(|r| at(r.ts)).collect::<Vec<_>>()),
                Box::new(e.iter().map(|r| r.cash).collect::<Vec<_>>()),
                Box::new(e.iter().map(|r| r.positions_value).collect::<Vec<_>>()),
                Box::new(e.iter().map(|r| r.equity).collect::<Vec<_>>()),
                Box::new(
                    e.iter()
                        .map(|r| i64::try_from(r.open_positions).unwrap_or(i64::MAX))
                        .collect::<Vec<_>>(),
                ),
            ],
        );
    }
    let ps = &ledger.positions;
    let positions = (!ps.is_empty()).then(|| {
        p.push(
            "INSERT INTO positions (run_id, ticker, time, quantity, entry_price) \
             SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::float8[], $5::float8[]) \
             ON CONFLICT DO NOTHING",
            vec![
                Box::new(run_id),
                Box::new(ps.iter().map(|r| name(r.ticker)).collect::<Vec<_>>()),
                Box::new(ps.iter().map(|r| at(r.ts)).collect::<Vec<_>>()),
                Box::new(ps.iter().map(|r| r.quantity).collect::<Vec<_>>()),
                Box::new(ps.iter().map(|r| r.entry_price).collect::<Vec<_>>()),
            ],
        )
    });
    LedgerSlots {
        signals,
        orders,
        fills,
        positions,
    }
}

/// Adds the ML models' scores, one row per (training, model).
fn ml_rows<'a>(p: &mut Pipeline<'a>, run_id: &'a str, ledger: &'a Ledger) {
    let ml: Vec<(&str, DateTime<Utc>, &str, serde_json::Value)> = ledger
        .ml_metrics
        .iter()
        .flat_map(|(_, r)| {
            r.scores.iter().map(move |(m, s)| {
                (
                    r.model_id.as_str(),
                    at(r.trained_at),
                    m.as_str(),
                    serde_json::json!({
                        "samples": r.samples, "train_from": r.train_from,
                        "installed_at": r.installed_at,
                        "features": r.selection.iter().filter(|s| s.chosen).map(|s| s.feature.as_str()).collect::<Vec<_>>(),
                        "accuracy": finite(s.accuracy), "roc_auc": finite(s.roc_auc),
                        "log_loss": finite(s.log_loss), "brier": finite(s.brier),
                        "hit_rate": finite(s.hit_rate),
                    }),
                )
            })
        })
        .collect();
    if ml.is_empty() {
        return;
    }
    p.push(
        "INSERT INTO ml_metrics (run_id, model_id, trained_at, model, metrics) \
         SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::text[], $5::jsonb[]) \
         ON CONFLICT DO NOTHING",
        vec![
            Box::new(run_id),
            Box::new(ml.iter().map(|r| r.0).collect::<Vec<_>>()),
            Box::new(ml.iter().map(|r| r.1).collect::<Vec<_>>()),
            Box::new(ml.iter().map(|r| r.2).collect::<Vec<_>>()),
            Box::new(ml.into_iter().map(|r| r.3).collect::<Vec<_>>()),
        ],
    );
}

/// Marks the orders the portfolio withdrew, after the pipeline recorded this step's orders.
async fn withdraw(tx: &Transaction<'_>, run_id: &str, ledger: &Ledger) -> Result<(), DbError> {
    let withdrawn: Vec<i64> = ledger.cancels.iter().map(|c| c.1 as i64).collect();
    crate::sinks::broker::outbox::request_cancels(tx, run_id, &withdrawn).await?;
    Ok(())
}

/// A bar as it entered a streaming run, with the stream entry it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBar {
    /// Ticker name.
    pub ticker: String,
    /// The bar (its ticker id is the run's).
    pub bar: crate::bar::Bar,
    /// Stream id of the message that carried it.
    pub stream_id: String,
}

/// Records bars a streaming worker is about to feed into the graph (before it feeds them), so a
/// restarted run can rebuild its state. Re-recording a bar is a no-op. Batches of
/// [`crate::sinks::pg_copy::COPY_FROM_ROWS`] bars or more go through binary COPY, smaller ones
/// through one `INSERT … UNNEST` (`fdp bench pg` measures where each is faster).
///
/// # Errors
/// A failing insert or copy.
pub async fn write_bars(
    client: &mut Client,
    run_id: &str,
    bars: &[StoredBar],
) -> Result<u64, DbError> {
    if bars.len() >= crate::sinks::pg_copy::COPY_FROM_ROWS {
        crate::sinks::pg_copy::write_bars_copy(client, run_id, bars).await
    } else {
        write_bars_unnest(client, run_id, bars).await
    }
}

/// The transaction that records bars (by UNNEST or COPY). Its commit need not wait for the WAL
/// flush: the synchronous commit that later covers these bars' time flushes them too, and nothing
/// is acknowledged before it.
///
/// # Errors
/// A failing statement.
pub(crate) async fn bars_transaction(client: &mut Client) -> Result<Transaction<'_>, DbError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    Ok(tx)
}

/// [`write_bars`] as one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING`.
///
/// # Errors
/// A failing insert.
pub async fn write_bars_unnest(
    client: &mut Client,
    run_id: &str,
    bars: &[StoredBar],
) -> Result<u64, DbError> {
    if bars.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&crate::bar::Bar) -> f64| bars.iter().map(|b| f(&b.bar)).collect::<Vec<_>>();
    let tx = bars_transaction(client).await?;
    let n = tx
        .execute(
            "INSERT INTO bars (run_id, ticker, time, open, high, low, close, volume, stream_id) \
             SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::text[]) \
             ON CONFLICT DO NOTHING",
            &[
                &run_id,
                &bars.iter().map(|b| b.ticker.clone()).collect::<Vec<_>>(),
                &bars.iter().map(|b| at(b.bar.ts)).collect::<Vec<_>>(),
                &col(|b| b.open),
                &col(|b| b.high),
                &col(|b| b.low),
                &col(|b| b.close),
                &col(|b| b.volume),
                &bars.iter().map(|b| b.stream_id.clone()).collect::<Vec<_>>(),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// The bars of `run_id` at or before `through`, by time then ticker (ticker ids from `tickers`;
/// rows of tickers no longer in the run are skipped).
///
/// # Errors
/// A failing query.
pub async fn load_bars(
    client: &Client,
    run_id: &str,
    through: i64,
    tickers: &Tickers,
) -> Result<Vec<StoredBar>, DbError> {
    let rows = client
        .query(
            "SELECT ticker, time, open, high, low, close, volume, stream_id FROM bars \
             WHERE run_id = $1 AND time <= $2 ORDER BY time, ticker",
            &[&run_id, &at(through)],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let ticker: String = r.get(0);
            let id = tickers.id(&ticker)?;
            let time: DateTime<Utc> = r.get(1);
            Some(StoredBar {
                bar: crate::bar::Bar {
                    ticker: id,
                    ts: time.timestamp(),
                    open: r.get(2),
                    high: r.get(3),
                    low: r.get(4),
                    close: r.get(5),
                    volume: r.get(6),
                },
                ticker,
                stream_id: r.get(7),
            })
        })
        .collect())
}

/// The event time through which `run_id`'s decisions are committed, if any.
///
/// # Errors
/// A failing query.
pub async fn committed(client: &Client, run_id: &str) -> Result<Option<i64>, DbError> {
    Ok(client
        .query_opt(
            "SELECT committed FROM stream_state WHERE run_id = $1",
            &[&run_id],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Records that `run_id` belongs to the pipeline `fingerprint` (see
/// [`crate::config::LoadedPipeline::fingerprint`]), or checks that it already does.
///
/// # Errors
/// [`DbError::AnotherPipeline`] when another pipeline wrote under this run id.
pub async fn claim_run(
    client: &Client,
    run_id: &str,
    pipeline: &str,
    fingerprint: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO runs (run_id, pipeline, fingerprint) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id) DO NOTHING",
            &[&run_id, &pipeline, &fingerprint],
        )
        .await?;
    let theirs: String = client
        .query_one("SELECT fingerprint FROM runs WHERE run_id = $1", &[&run_id])
        .await?
        .get(0);
    if theirs == fingerprint {
        Ok(())
    } else {
        Err(DbError::AnotherPipeline {
            run_id: run_id.into(),
            theirs,
            ours: fingerprint.into(),
        })
    }
}

/// Takes the lease of `run_id` on this connection, which must stay open while the run lives: a
/// session advisory lock (so a second process is refused while this one is alive) and a new
/// epoch (returned; [`commit_step`] checks it).
///
/// # Errors
/// [`DbError::LeaseHeld`] when another session holds the lock.
pub async fn take_lease(client: &Client, run_id: &str, holder: &str) -> Result<i64, DbError> {
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('fdp-run:' || $1, 0))",
            &[&run_id],
        )
        .await?
        .get(0);
    if !locked {
        return Err(DbError::LeaseHeld {
            run_id: run_id.into(),
        });
    }
    Ok(client
        .query_one(
            "INSERT INTO run_leases (run_id, epoch, holder) VALUES ($1, 1, $2) \
             ON CONFLICT (run_id) DO UPDATE SET epoch = run_leases.epoch + 1, \
             holder = EXCLUDED.holder, acquired_at = now() RETURNING epoch",
            &[&run_id, &holder],
        )
        .await?
        .get(0))
}

/// One step of a live run to commit: what worker 0 took out of the graph through `committed`.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The run's tickers (ledger rows carry their ids).
    pub tickers: &'a Tickers,
    /// The ledger rows decided since the last step.
    pub ledger: &'a Ledger,
    /// Quarantined and flagged rows.
    pub quarantine: &'a [crate::reject::Reject],
    /// Sector exposure rows at or before `committed`.
    pub exposure: &'a [ExposureRow],
    /// The time through which everything is decided.
    pub committed: i64,
    /// The lease epoch the committing process holds.
    pub epoch: i64,
}

/// Commits a streaming step in one transaction: the ledger rows decided since the last step, the
/// sector exposure and quarantine rows, and the committed watermark (which never moves back) —
/// only while the run's lease is still at the step's epoch ([`take_lease`]).
///
/// # Errors
/// [`DbError::Fenced`] when a newer process took the lease; a failing statement (the transaction
/// then leaves nothing behind).
pub async fn commit_step(
    client: &mut Client,
    run_id: &str,
    step: &Step<'_>,
) -> Result<Written, DbError> {
    let Step {
        tickers,
        ledger,
        quarantine,
        exposure,
        committed,
        epoch,
    } = *step;
    let tx = client.transaction().await?;
    let mut p = Pipeline::default();
    // Fencing: the lease is still this process's (a newer holder's update waits for this
    // transaction, and this one's next commit then sees the new epoch). Checked before COMMIT.
    let lease = p.push(
        "SELECT 1 FROM run_leases WHERE run_id = $1 AND epoch = $2 FOR SHARE",
        vec![Box::new(run_id), Box::new(epoch)],
    );
    let rows = ledger_rows(&mut p, run_id, tickers, ledger);
    exposure_rows(&mut p, run_id, exposure);
    if !quarantine.is_empty() {
        let q = quarantine;
        p.push(
            "INSERT INTO quarantine (run_id, ticker, ts, reason, action, detail, origin) \
             SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
             $7::text[]) ON CONFLICT DO NOTHING",
            vec![
                Box::new(run_id),
                Box::new(q.iter().map(|r| r.ticker.as_str()).collect::<Vec<_>>()),
                Box::new(q.iter().map(|r| r.ts.unwrap_or(-1)).collect::<Vec<_>>()),
                Box::new(q.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>()),
                Box::new(q.iter().map(|r| r.action.as_str()).collect::<Vec<_>>()),
                Box::new(q.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>()),
                Box::new(q.iter().map(|r| r.origin.as_str()).collect::<Vec<_>>()),
            ],
        );
    }
    p.push(
        "INSERT INTO stream_state (run_id, committed) VALUES ($1, $2) \
         ON CONFLICT (run_id) DO UPDATE SET committed = GREATEST(stream_state.committed, EXCLUDED.committed), updated_at = now()",
        vec![Box::new(run_id), Box::new(committed)],
    );
    let counts = p.run(&tx).await?;
    if counts.of(Some(lease)) != 1 {
        let now: Option<i64> = tx
            .query_opt("SELECT epoch FROM run_leases WHERE run_id = $1", &[&run_id])
            .await?
            .map(|r| r.get(0));
        // Dropping the transaction rolls every row of the step back.
        return Err(DbError::Fenced {
            run_id: run_id.into(),
            ours: epoch,
            now: now.unwrap_or(0),
        });
    }
    withdraw(&tx, run_id, ledger).await?;
    tx.commit().await?;
    Ok(rows.written(&counts))
}

/// The model registry in PostgreSQL (`ml_models`), used by streaming runs with a database: the
/// same metadata and bincode bytes as the filesystem registry, written from the training thread
/// on its own connection (opened on first use, reopened after a failure).
#[derive(Debug)]
pub struct PgModelStore {
    url: String,
    run_id: String,
    ttl_days: u32,
    conn: std::sync::Mutex<Option<(tokio::runtime::Runtime, Client)>>,
}

/// Errors of the PostgreSQL model registry.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The runtime could not start.
    #[error("ml_models: {0}")]
    Runtime(#[from] std::io::Error),
    /// A stored model does not decode.
    #[error("ml_models row {id}: {message}")]
    Corrupt {
        /// The model id.
        id: String,
        /// What failed.
        message: String,
    },
    /// The connection's lock was poisoned by a panicking thread.
    #[error("ml_models: connection lock poisoned")]
    Poisoned,
}

impl crate::fault::Blame for ModelStoreError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            ModelStoreError::Db(e) => e.fault(),
            ModelStoreError::Runtime(_) => Fault::Service,
            ModelStoreError::Corrupt { .. } => Fault::Data,
            ModelStoreError::Poisoned => Fault::Bug,
        }
    }
}

impl PgModelStore {
    /// A store for the models of run `run_id`, keeping rows `ttl_days` days.
    pub fn new(url: &str, run_id: &str, ttl_days: u32) -> Self {
        PgModelStore {
            url: url.into(),
            run_id: run_id.into(),
            ttl_days,
            conn: std::sync::Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, DbError>,
    ) -> Result<T, ModelStoreError> {
        let mut guard = self.conn.lock().map_err(|_| ModelStoreError::Poisoned)?;
        if guard.as_ref().is_none_or(|(_, c)| c.is_closed()) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(connect(&self.url))?;
            rt.block_on(as_writer(&client))?;
            *guard = Some((rt, client));
        }
        let Some((rt, client)) = guard.as_ref() else {
            return Err(ModelStoreError::Poisoned);
        };
        let out = rt.block_on(f(client));
        if out.is_err() {
            *guard = None;
        }
        Ok(out?)
    }

    /// Deletes every model (of any run) created more than the time-to-live ago; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub fn cleanup(&self) -> Result<u64, ModelStoreError> {
        let days = i32::try_from(self.ttl_days).unwrap_or(i32::MAX);
        self.with(async |c| {
            Ok(c.execute(
                "DELETE FROM ml_models WHERE created_at < now() - make_interval(days => $1)",
                &[&days],
            )
            .await?)
        })
    }

    /// Loads a model of this run by id.
    ///
    /// # Errors
    /// The database failed or the row does not decode.
    pub fn load(
        &self,
        id: &str,
    ) -> Result<
        Option<(
            crate::operators::ml::registry::ModelMeta,
            crate::operators::ml::stacking::Stacking,
        )>,
        ModelStoreError,
    > {
        let row = self.with(async |c| {
            Ok(c.query_opt(
                "SELECT model FROM ml_models WHERE run_id = $1 AND model_id = $2",
                &[&self.run_id, &id],
            )
            .await?)
        })?;
        row.map(|r| {
            let bytes: Vec<u8> = r.get(0);
            bincode::deserialize(&bytes).map_err(|e| ModelStoreError::Corrupt {
                id: id.into(),
                message: e.to_string(),
            })
        })
        .transpose()
    }
}

impl crate::operators::ml::registry::ModelStore for PgModelStore {
    fn save(
        &self,
        meta: &crate::operators::ml::registry::ModelMeta,
        model: &crate::operators::ml::stacking::Stacking,
    ) -> Result<(), String> {
        let bytes = bincode::serialize(&(meta, model))
            .map_err(|e| format!("ml_models {}: {e}", meta.id))?;
        let json = serde_json::to_value(meta).map_err(|e| format!("ml_models {}: {e}", meta.id))?;
        let trained_at = at(meta.trained_at);
        self.with(async |c| {
            c.execute(
                "INSERT INTO ml_models (run_id, model_id, ticker, trained_at, meta, model) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (run_id, model_id) DO UPDATE \
                 SET meta = EXCLUDED.meta, model = EXCLUDED.model, created_at = now()",
                &[
                    &self.run_id,
                    &meta.id,
                    &meta.ticker,
                    &trained_at,
                    &json,
                    &bytes,
                ],
            )
            .await?;
            Ok(())
        })
        .map_err(|e| format!("ml_models {}: {e}", meta.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lists_the_missing_migrations_and_refuses_an_edited_one() {
        let all: std::collections::HashMap<i32, String> = MIGRATIONS
            .iter()
            .map(|(v, _, sql)| (*v, checksum(sql)))
            .collect();
        assert!(pending(&all).is_ok_and(|p| p.is_empty()));
        let mut some = all.clone();
        some.remove(&6);
        let versions = |m| pending(m).map(|p| p.iter().map(|m| m.0).collect::<Vec<_>>());
        assert_eq!(versions(&some).ok(), Some(vec![6]));
        assert_eq!(
            versions(&Default::default()).ok(),
            Some(MIGRATIONS.iter().map(|m| m.0).collect())
        );
        let mut edited = all;
        edited.insert(2, "0".into());
        assert!(matches!(
            pending(&edited),
            Err(DbError::Edited { version: 2, .. })
        ));
    }
}
