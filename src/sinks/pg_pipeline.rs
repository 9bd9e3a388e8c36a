//! Statements sent to PostgreSQL together. A live commit writes up to a dozen tables in one
//! transaction. One statement after another, each prepared and then executed, that is two round
//! trips apiece: ~17 in all, 1.5–2 ms per commit on loopback, most of a 10 ms latency budget.
//!
//! A [`Pipeline`] instead prepares all its statements in one round trip and executes them in the
//! next. tokio-postgres sends a request when its future is first polled, and `try_join_all`
//! polls a short list in order, so the server runs the statements in the order they were pushed.
//! Only independent statements go in one pipeline; a statement that must see another's effect
//! runs after the pipeline.

use futures_util::future::try_join_all;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::postgres::DbError;

/// A parameter a pipeline owns or borrows for as long as it lives.
pub type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// Statements to run together inside one transaction, in the order pushed.
#[derive(Default)]
pub struct Pipeline<'a> {
    statements: Vec<(&'static str, Vec<Param<'a>>)>,
}

/// Where a pushed statement's row count will be in [`Pipeline::run`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

impl<'a> Pipeline<'a> {
    /// Adds `sql` with its parameters.
    pub fn push(&mut self, sql: &'static str, params: Vec<Param<'a>>) -> Slot {
        self.statements.push((sql, params));
        Slot(self.statements.len() - 1)
    }

    /// Runs the statements inside `tx`: all prepared in one round trip, all executed in the
    /// next. Returns each one's row count.
    ///
    /// # Errors
    /// A statement that fails to prepare or execute (the transaction is then aborted).
    pub async fn run(&self, tx: &Transaction<'_>) -> Result<Counts, DbError> {
        if self.statements.is_empty() {
            return Ok(Counts(Vec::new()));
        }
        let prepared = try_join_all(self.statements.iter().map(|(sql, _)| tx.prepare(sql))).await?;
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .statements
            .iter()
            .map(|(_, p)| p.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect())
            .collect();
        let counts = try_join_all(
            prepared
                .iter()
                .zip(&params)
                .map(|(statement, p)| tx.execute(statement, p)),
        )
        .await?;
        Ok(Counts(counts))
    }
}

/// The row counts of a pipeline's statements.
#[derive(Debug)]
pub struct Counts(Vec<u64>);

impl Counts {
    /// The row count of the statement pushed at `slot` (0 for one that was not pushed).
    pub fn of(&self, slot: Option<Slot>) -> u64 {
        slot.and_then(|Slot(i)| self.0.get(i).copied()).unwrap_or(0)
    }
}
