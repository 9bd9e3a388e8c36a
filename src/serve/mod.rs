//! `fdp serve`: the live dashboard over PostgreSQL's runs and a backtest runs directory.
//!
//! Pages: `/` lists the runs; `/runs/{source}/{id}` shows one (`source` is `db` or `dir`). The
//! page reads JSON from `/api/runs` and `/api/runs/{source}/{id}/{view}` ([`views::View`]) and,
//! for a run in PostgreSQL, asks again every two seconds, so what a live run commits appears
//! without a reload. Charts are uPlot, vendored into the binary ([`assets`]); nothing is fetched
//! from anywhere else.
//!
//! Read-only: the database connection is opened with `default_transaction_read_only`. The one
//! action, tripping the kill switch (`POST /api/runs/db/{id}/kill`), needs the token `fdp serve`
//! was started with (`FDP_SERVE_TOKEN`; without one the action is disabled) as a bearer token and
//! the run id typed again as confirmation; it writes the kill-switch file that `fdp run` watches
//! (`<data-dir>/STOP`) and an `audit_log` event with the caller's address.

mod assets;
pub mod store;
pub mod table;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http_server::{Limits, Peer};
use store::{Source, Store};
use views::View;

/// What `fdp serve` serves and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (`127.0.0.1:8501` unless told otherwise).
    pub addr: String,
    /// PostgreSQL of live runs (and backtests written there).
    pub database_url: Option<String>,
    /// Directory of backtest run folders.
    pub runs_dir: Option<PathBuf>,
    /// Directory of the kill-switch file `STOP` (the `--data-dir` of `fdp run`).
    pub data_dir: PathBuf,
    /// The token the kill-switch action needs; `None` disables it.
    pub token: Option<String>,
    /// Redis of the runs and providers (their breakers and budgets); no providers panel
    /// without it.
    pub redis_url: Option<String>,
    /// The key prefix the runs use (`fdp`).
    pub prefix: String,
}

/// What went wrong serving a request, by who is at fault; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The path names neither `db` nor `dir` as the run's source.
    #[error("no run source {0:?} (db or dir)")]
    NoSource(String),
    /// The path names no view the dashboard has.
    #[error("no view {0:?}")]
    NoView(String),
    /// No such run where the path looked.
    #[error("no run {run_id} in {place}")]
    NoRun {
        /// The run id asked for.
        run_id: String,
        /// Where it was looked for: `the database`, or the runs directory.
        place: String,
    },
    /// The path's run id is not a name a run can have.
    #[error(transparent)]
    RunId(#[from] crate::names::NameError),
    /// The kill switch was asked of a backtest folder.
    #[error("a backtest folder has no kill switch: only live runs in the database do")]
    NoKillSwitch,
    /// The kill action's body is not `{"confirm": "<run id>"}`.
    #[error("body: {0} (expected {{\"confirm\": \"<run id>\"}})")]
    KillBody(serde_json::Error),
    /// The kill action's confirmation is not the run id.
    #[error("confirmation `{typed}` is not the run id `{run_id}`")]
    Confirmation {
        /// What was typed.
        typed: String,
        /// The run the path names.
        run_id: String,
    },
    /// The action needs a valid token.
    #[error("the kill switch needs the dashboard's token (Authorization: Bearer ...)")]
    Unauthorized,
    /// The action is disabled.
    #[error("the kill switch is disabled: fdp serve was started without FDP_SERVE_TOKEN")]
    Disabled,
    /// The page asked for PostgreSQL runs but none was configured.
    #[error("no database: start fdp serve with --database-url")]
    NoDatabase,
    /// The page asked for a backtest folder but no runs directory was configured.
    #[error("no runs directory: start fdp serve with --runs")]
    NoRunsDir,
    /// The page asked for the providers but no Redis was configured.
    #[error("no Redis: start fdp serve with --redis-url")]
    NoRedis,
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] crate::sources::redis_stream::StreamError),
    /// Redis did not answer in time.
    #[error("redis: no answer within {:?}", store::DB_TIMEOUT)]
    RedisTimeout,
    /// PostgreSQL failed or broke.
    #[error(transparent)]
    Db(#[from] crate::sinks::postgres::DbError),
    /// PostgreSQL did not answer in time.
    #[error("postgres: no answer within {:?}", store::DB_TIMEOUT)]
    DbTimeout,
    /// A backtest folder could not be queried.
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A query's answer did not fit the dashboard's answer shape (this program's mistake).
    #[error("bug: {0}")]
    Table(#[from] table::TableError),
    /// A query's answer had another number of columns than its view selects.
    #[error("bug: {view}: {expected} columns expected")]
    Columns {
        /// The view.
        view: &'static str,
        /// How many it selects.
        expected: usize,
    },
    /// An answer could not be written as JSON (this program's mistake).
    #[error("bug: {0}")]
    Json(serde_json::Error),
    /// A helper task panicked or was cancelled (this program's mistake).
    #[error("bug: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServeError {
    fn status(&self) -> StatusCode {
        match self {
            ServeError::NoSource(_)
            | ServeError::NoView(_)
            | ServeError::NoRun { .. }
            | ServeError::NoDatabase
            | ServeError::NoRunsDir
            | ServeError::NoRedis => StatusCode::NOT_FOUND,
            ServeError::Redis(_) | ServeError::RedisTimeout => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::RunId(_)
            | ServeError::NoKillSwitch
            | ServeError::KillBody(_)
            | ServeError::Confirmation { .. } => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::Disabled => StatusCode::FORBIDDEN,
            ServeError::Db(_) | ServeError::DbTimeout => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Query(_)
            | ServeError::Io { .. }
            | ServeError::Table(_)
            | ServeError::Columns { .. }
            | ServeError::Json(_)
            | ServeError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl crate::fault::Blame for ServeError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            ServeError::NoSource(_)
            | ServeError::NoView(_)
            | ServeError::NoRun { .. }
            | ServeError::RunId(_)
            | ServeError::NoKillSwitch
            | ServeError::KillBody(_)
            | ServeError::Confirmation { .. }
            | ServeError::Unauthorized
            | ServeError::Disabled
            | ServeError::NoDatabase
            | ServeError::NoRunsDir
            | ServeError::NoRedis => Fault::Input,
            ServeError::Db(_)
            | ServeError::DbTimeout
            | ServeError::Redis(_)
            | ServeError::RedisTimeout
            | ServeError::Io { .. } => Fault::Service,
            ServeError::Query(e) => e.fault(),
            ServeError::Table(_)
            | ServeError::Columns { .. }
            | ServeError::Json(_)
            | ServeError::Task(_) => Fault::Bug,
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "dashboard request failed");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string() + "\n",
        )
            .into_response()
    }
}

struct App {
    store: Store,
    data_dir: PathBuf,
    token: Option<String>,
    redis_url: Option<String>,
    prefix: String,
}

/// Starts the dashboard on a thread of its own; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub fn start(opts: ServeOptions) -> std::io::Result<SocketAddr> {
    let app = Arc::new(App {
        store: Store::new(opts.database_url, opts.runs_dir),
        data_dir: opts.data_dir,
        token: opts.token.filter(|t| !t.is_empty()),
        redis_url: opts.redis_url,
        prefix: opts.prefix,
    });
    let router = axum::Router::new()
        .route("/", axum::routing::get(assets::page))
        .route("/runs/{source}/{id}", axum::routing::get(assets::page))
        .route("/assets/{name}", axum::routing::get(assets::asset))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/api/runs", axum::routing::get(runs))
        .route("/api/providers", axum::routing::get(providers))
        .route("/api/runs/{source}/{id}/{view}", axum::routing::get(view))
        .route("/api/runs/{source}/{id}/kill", axum::routing::post(kill))
        .with_state(app);
    let bound = crate::http_server::spawn(
        "fdp-serve",
        &opts.addr,
        router,
        Limits {
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            max_request: 64 * 1024,
            max_connections: 64,
        },
    )?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the dashboard answers beyond this machine");
    }
    Ok(bound)
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => ServeError::Json(e).into_response(),
    }
}

async fn runs(State(app): State<Arc<App>>) -> Result<Response, ServeError> {
    Ok(json(&app.store.runs().await?))
}

/// The providers' breakers and today's requests, credits and spend, as every process shares
/// them in Redis.
async fn providers(State(app): State<Arc<App>>) -> Result<Response, ServeError> {
    let url = app.redis_url.clone().ok_or(ServeError::NoRedis)?;
    let prefix = app.prefix.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut c = crate::sources::redis_stream::Conn::open(&url)?;
        crate::sources::providers::status::read(&mut c, &prefix)
    });
    let (rows, spend) = tokio::time::timeout(store::DB_TIMEOUT, read)
        .await
        .map_err(|_| ServeError::RedisTimeout)???;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|p| {
            serde_json::json!([
                p.provider,
                p.breaker.as_str(),
                p.failures,
                p.opened_at_ms
                    .map(|ms| ms / 1000)
                    .map_or(serde_json::Value::Null, serde_json::Value::from),
                p.requests_today,
                p.credits_today,
            ])
        })
        .collect();
    Ok(json(&serde_json::json!({
        "columns": ["provider", "breaker", "failures", "opened_at", "requests_today", "credits_today"],
        "rows": rows,
        "spend_today": spend,
    })))
}

fn source(s: &str) -> Result<Source, ServeError> {
    Source::parse(s).ok_or_else(|| ServeError::NoSource(s.into()))
}

async fn view(
    State(app): State<Arc<App>>,
    Path((src, id, name)): Path<(String, String, String)>,
) -> Result<Response, ServeError> {
    let v = View::parse(&name).ok_or(ServeError::NoView(name))?;
    let src = source(&src)?;
    if src == Source::Db && v == View::Summary && !app.store.known(&id).await? {
        return Err(ServeError::NoRun {
            run_id: id,
            place: "the database".into(),
        });
    }
    Ok(json(&app.store.view(src, &id, v).await?))
}

/// The kill action's body: the run id typed again.
#[derive(Debug, Deserialize)]
struct KillBody {
    confirm: String,
}

/// Equal bytes in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn kill(
    State(app): State<Arc<App>>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Path((src, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ServeError> {
    let Some(token) = &app.token else {
        tracing::warn!(%peer, run_id = %id, "kill switch asked for, but it is disabled");
        return Err(ServeError::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same(given.as_bytes(), token.as_bytes()) {
        tracing::warn!(%peer, run_id = %id, "kill switch refused: no valid token");
        return Err(ServeError::Unauthorized);
    }
    if source(&src)? != Source::Db {
        return Err(ServeError::NoKillSwitch);
    }
    let confirm: KillBody = serde_json::from_str(&body).map_err(ServeError::KillBody)?;
    if confirm.confirm != id {
        return Err(ServeError::Confirmation {
            typed: confirm.confirm,
            run_id: id,
        });
    }
    if !app.store.known(&id).await? {
        return Err(ServeError::NoRun {
            run_id: id,
            place: "the database".into(),
        });
    }
    let stop = app.data_dir.join("STOP");
    trip(&stop, &id, peer)?;
    tracing::warn!(%peer, run_id = %id, file = %stop.display(), "kill switch tripped from the dashboard");
    let data = serde_json::json!({
        "run_id": id,
        "via": "dashboard",
        "stop_file": stop.display().to_string(),
    });
    audit(&app.store, &data, peer).await?;
    Ok(json(
        &serde_json::json!({"tripped": true, "stop_file": stop.display().to_string()}),
    ))
}

/// Writes the kill-switch file whole ([`crate::sinks::files::write_whole`]).
fn trip(stop: &std::path::Path, run_id: &str, peer: SocketAddr) -> Result<(), ServeError> {
    let text = serde_json::json!({
        "run_id": run_id,
        "from": peer.ip().to_string(),
        "at": chrono::Utc::now().to_rfc3339(),
    })
    .to_string();
    crate::sinks::files::write_whole(stop, (text + "\n").as_bytes()).map_err(|source| {
        ServeError::Io {
            path: stop.display().to_string(),
            source,
        }
    })
}

/// Records the action in `audit_log` on a connection of its own (the shared one is read-only).
async fn audit(
    store: &Store,
    data: &serde_json::Value,
    peer: SocketAddr,
) -> Result<(), ServeError> {
    let url = store.database_url().ok_or(ServeError::NoDatabase)?;
    let write = async {
        let c = crate::sinks::postgres::connect(url).await?;
        crate::sinks::postgres::audit_from(&c, "kill_switch", data, Some(peer.ip())).await
    };
    tokio::time::timeout(store::DB_TIMEOUT, write)
        .await
        .map_err(|_| ServeError::DbTimeout)?
        .map_err(ServeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(ServeError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ServeError::Disabled.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            ServeError::DbTimeout.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ServeError::NoView("x".into()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
