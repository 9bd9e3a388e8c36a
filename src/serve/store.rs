//! Where the dashboard reads runs: PostgreSQL (live runs, and backtests written with
//! `--database-url`) on one shared read-only connection, and backtest folders (`runs/<id>/`)
//! through DataFusion.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Client;

use super::ServeError;
use super::table::Table;
use super::views::{PG_RUNS, View};

/// How long a database connection or query may take before the page is told so.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a run lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// PostgreSQL (`/runs/db/<id>`).
    Db,
    /// A backtest folder under the runs directory (`/runs/dir/<id>`).
    Dir,
}

impl Source {
    /// The name in URLs.
    pub fn name(self) -> &'static str {
        match self {
            Source::Db => "db",
            Source::Dir => "dir",
        }
    }

    /// The source of that name.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "db" => Some(Source::Db),
            "dir" => Some(Source::Dir),
            _ => None,
        }
    }
}

/// The runs the dashboard can show.
#[derive(Debug)]
pub struct Store {
    database_url: Option<String>,
    runs_dir: Option<PathBuf>,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Store {
    /// A store over a database, a runs directory, or both.
    pub fn new(database_url: Option<String>, runs_dir: Option<PathBuf>) -> Store {
        Store {
            database_url,
            runs_dir,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The database URL, when there is one.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// The shared connection, opened (read-only) on first use and again after it broke.
    async fn client(&self) -> Result<Arc<Client>, ServeError> {
        let Some(url) = &self.database_url else {
            return Err(ServeError::NoDatabase);
        };
        let mut held = self.client.lock().await;
        if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let c = tokio::time::timeout(DB_TIMEOUT, crate::sinks::postgres::connect(url))
            .await
            .map_err(|_| ServeError::DbTimeout)??;
        // The dashboard only reads: a statement that would write fails in the server.
        c.batch_execute("SET default_transaction_read_only = on")
            .await
            .map_err(crate::sinks::postgres::DbError::from)?;
        let c = Arc::new(c);
        *held = Some(Arc::clone(&c));
        Ok(c)
    }

    async fn pg(&self, sql: &str, run_id: Option<&str>) -> Result<Table, ServeError> {
        let c = self.client().await?;
        let work = async {
            let statement = c.prepare(sql).await?;
            let rows = match run_id {
                Some(id) => c.query(&statement, &[&id]).await?,
                None => c.query(&statement, &[]).await?,
            };
            Ok::<_, tokio_postgres::Error>((statement, rows))
        };
        let (statement, rows) = tokio::time::timeout(DB_TIMEOUT, work)
            .await
            .map_err(|_| ServeError::DbTimeout)?
            .map_err(crate::sinks::postgres::DbError::from)?;
        Ok(Table::from_pg(&statement, &rows)?)
    }

    /// Every run: PostgreSQL's (newest first), then the runs directory's folders (newest first).
    ///
    /// # Errors
    /// The database failing or unreachable; an unreadable runs directory.
    pub async fn runs(&self) -> Result<Table, ServeError> {
        let mut out = Table::empty(&[
            "source",
            "run_id",
            "kind",
            "pipeline",
            "created_at",
            "committed",
            "final_equity",
            "orders",
        ]);
        if self.database_url.is_some() {
            let t = self.pg(PG_RUNS, None).await?;
            for r in t.rows {
                let [id, pipeline, created, committed, equity, orders] = <[Value; 6]>::try_from(r)
                    .map_err(|_| ServeError::Columns {
                        view: "runs",
                        expected: 6,
                    })?;
                let kind = if committed.is_null() {
                    "backtest"
                } else {
                    "live"
                };
                out.rows.push(vec![
                    Value::from("db"),
                    id,
                    Value::from(kind),
                    pipeline,
                    created,
                    committed,
                    equity,
                    orders,
                ]);
            }
        }
        if let Some(dir) = &self.runs_dir {
            let mut folders = folders(dir)?;
            folders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (id, modified, metrics) in folders {
                out.rows.push(vec![
                    Value::from("dir"),
                    Value::from(id),
                    Value::from("backtest"),
                    Value::Null,
                    Value::from(modified),
                    Value::Null,
                    metrics.get("final_equity").cloned().unwrap_or(Value::Null),
                    Value::Null,
                ]);
            }
        }
        Ok(out)
    }

    /// One view of one run.
    ///
    /// # Errors
    /// An unknown run; the database failing or unreachable; an unreadable folder.
    pub async fn view(
        &self,
        source: Source,
        run_id: &str,
        view: View,
    ) -> Result<Table, ServeError> {
        match source {
            Source::Db => self.pg(view.postgres(), Some(run_id)).await,
            Source::Dir => {
                let dir = self.folder(run_id)?;
                match view.folder() {
                    Ok(sql) => {
                        let batches = crate::query::collect_filled(&dir, sql).await?;
                        Ok(Table::from_arrow(&batches)?)
                    }
                    Err(columns) => Ok(Table::empty(columns)),
                }
            }
        }
    }

    /// Whether PostgreSQL knows the run (`runs` holds it).
    ///
    /// # Errors
    /// The database failing or unreachable.
    pub async fn known(&self, run_id: &str) -> Result<bool, ServeError> {
        let t = self
            .pg("SELECT run_id FROM runs WHERE run_id = $1", Some(run_id))
            .await?;
        Ok(!t.rows.is_empty())
    }

    /// The folder of a backtest run, checked to be a plain name inside the runs directory.
    fn folder(&self, run_id: &str) -> Result<PathBuf, ServeError> {
        let Some(base) = &self.runs_dir else {
            return Err(ServeError::NoRunsDir);
        };
        crate::names::check_name("run id", run_id)?;
        let dir = base.join(run_id);
        if !dir.join("equity.parquet").is_file() {
            return Err(ServeError::NoRun {
                run_id: run_id.into(),
                place: base.display().to_string(),
            });
        }
        Ok(dir)
    }
}

/// The runs directory's run folders: (name, modified epoch seconds, metrics.json).
fn folders(dir: &Path) -> Result<Vec<(String, i64, Value)>, ServeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ServeError::Io {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // Hidden entries are outputs being written (`.<id>.partial-<pid>`).
        if name.starts_with('.') || !path.join("equity.parquet").is_file() {
            continue;
        }
        let metrics_path = path.join("metrics.json");
        let metrics = std::fs::read_to_string(&metrics_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        let modified = std::fs::metadata(&metrics_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        out.push((name, modified, metrics));
    }
    Ok(out)
}
