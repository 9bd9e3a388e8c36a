//! The live run's PostgreSQL connections: a client that reconnects and retries while the server
//! is away, the run id's lease, what a previous run of the id committed, and the pool the
//! workers share.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bar::Tickers;
use crate::sinks::postgres::{self, DbError, StoredBar};
use crate::time::EventTime;

use super::StreamRunError;

/// A PostgreSQL client on the worker's own runtime that reconnects when the server restarts.
pub(super) struct Pg {
    rt: tokio::runtime::Runtime,
    url: String,
    client: Option<tokio_postgres::Client>,
    patience: Duration,
    /// Works as `fdp_writer` (every connection but the one that migrates).
    pub(super) writer: bool,
}

impl Pg {
    pub(super) fn open(url: &str) -> Result<Pg, StreamRunError> {
        Pg::open_with(url, true)
    }

    /// A connection as the URL's own user: only to migrate.
    pub(super) fn open_admin(url: &str) -> Result<Pg, StreamRunError> {
        Pg::open_with(url, false)
    }

    fn open_with(url: &str, writer: bool) -> Result<Pg, StreamRunError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StreamRunError::Worker {
                message: e.to_string(),
            })?;
        let mut pg = Pg {
            rt,
            url: url.into(),
            client: None,
            patience: Duration::from_secs(60),
            writer,
        };
        pg.client()?;
        Ok(pg)
    }

    fn client(&mut self) -> Result<&mut tokio_postgres::Client, DbError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let c = self.rt.block_on(postgres::connect(&self.url))?;
            if self.writer {
                self.rt.block_on(postgres::as_writer(&c))?;
            }
            self.client = Some(c);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => unreachable!("client was just set"),
        }
    }

    /// Runs `f`, reconnecting and retrying while the server is away (every operation here is
    /// idempotent, so a retry after a lost reply is harmless).
    pub(super) fn retry<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&tokio::runtime::Runtime, &mut tokio_postgres::Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let r = match self.client() {
                Ok(_) => {
                    let Pg { rt, client, .. } = self;
                    match client.as_mut() {
                        Some(c) => f(rt, c),
                        None => continue,
                    }
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(DbError::Postgres(e))
                    if (e.is_closed() || e.as_db_error().is_none())
                        && started.elapsed() < self.patience =>
                {
                    tracing::warn!(error = %e, what, "postgres unavailable, retrying");
                    self.client = None;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(DbError::Timeout { what: w, .. }) if started.elapsed() < self.patience => {
                    tracing::warn!(waited_for = w, what, "postgres did not answer, retrying");
                    self.client = None;
                    std::thread::sleep(wait);
                }
                Err(DbError::Postgres(e))
                    if e.as_db_error().is_some_and(|d| {
                        // The server is shutting down or starting up.
                        matches!(d.code().code(), "57P01" | "57P02" | "57P03")
                    }) && started.elapsed() < self.patience =>
                {
                    self.client = None;
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The run id's lease: a connection of its own holding the advisory lock while the run lives
/// (dropped with the run, which releases it) and the epoch it took.
pub(super) struct Lease {
    _pg: Pg,
    pub(super) epoch: i64,
}

impl Lease {
    /// Takes the lease, waiting up to 5 s for a process that just died to let go of it (the
    /// server notices a killed client's socket within moments).
    pub(super) fn take(url: &str, run_id: &str) -> Result<Lease, StreamRunError> {
        let mut pg = Pg::open(url)?;
        let holder = format!("pid {}", std::process::id());
        let started = Instant::now();
        loop {
            match pg.retry("lease", |rt, c| {
                rt.block_on(postgres::take_lease(c, run_id, &holder))
            }) {
                Ok(epoch) => {
                    tracing::info!(run_id, epoch, "lease taken");
                    return Ok(Lease { _pg: pg, epoch });
                }
                Err(DbError::LeaseHeld { .. }) if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What a previous run of this id committed: the time through which its decisions are written,
/// the bars it recorded up to then, and the stream ids that carried them.
pub(super) struct History {
    pub(super) committed: EventTime,
    pub(super) bars: Vec<StoredBar>,
    pub(super) ids: HashSet<String>,
}

impl History {
    pub(super) fn load(
        pg: &mut Pg,
        run_id: &str,
        tickers: &Tickers,
    ) -> Result<History, StreamRunError> {
        let committed = pg
            .retry("committed", |rt, c| {
                rt.block_on(postgres::committed(c, run_id))
            })?
            .unwrap_or(EventTime::MIN);
        let bars = if committed > EventTime::MIN {
            pg.retry("history", |rt, c| {
                rt.block_on(postgres::load_bars(c, run_id, committed, tickers))
            })?
        } else {
            Vec::new()
        };
        let ids = bars.iter().map(|b| b.stream_id.clone()).collect();
        tracing::info!(bars = bars.len(), committed, "history of the run");
        Ok(History {
            committed,
            bars,
            ids,
        })
    }
}

/// The process's PostgreSQL connections for its workers: at most `--db-connections` however many
/// workers run (`-w 20` used to open 40); worker `i` uses connection `i % n`, one worker at a time.
/// Each connection drives its own runtime only while a worker holds it, as a worker's own did.
pub(super) struct PgPool {
    slots: Vec<std::sync::Mutex<Pg>>,
}

impl PgPool {
    pub(super) fn open(url: &str, size: usize) -> Result<Arc<PgPool>, StreamRunError> {
        let slots = (0..size.max(1))
            .map(|_| Pg::open(url).map(std::sync::Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(PgPool { slots }))
    }
}

/// A worker's handle on its connection of the pool.
pub(super) struct PgSlot {
    pub(super) pool: Arc<PgPool>,
    pub(super) slot: usize,
}

impl PgSlot {
    /// [`Pg::retry`] on this worker's connection, holding it for the call.
    pub(super) fn retry<T>(
        &mut self,
        what: &str,
        f: impl FnMut(&tokio::runtime::Runtime, &mut tokio_postgres::Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let slots = &self.pool.slots;
        let mut pg = slots[self.slot % slots.len()]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pg.retry(what, f)
    }
}
