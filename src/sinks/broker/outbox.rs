//! The outbox: exactly once at the broker. An order bound for a venue is recorded in PostgreSQL
//! (`broker_orders`) in the transaction that commits the decision ([`record`]); only then does the
//! broker process send it ([`Outbox::send_pending`]). A row is marked `sending` — committed —
//! before its request leaves, so after a crash the process knows which orders may have reached
//! the venue, and [`Outbox::recover`] asks the venue about every unanswered row by its client
//! order id before it sends anything: an order the venue has is adopted, one it lacks is sent.
//! The client order id comes from the run and the decision ([`client_order_id`]), never at
//! random, so the venue itself refuses a second order under it.
//!
//! States: `recorded` → `sending` → `accepted` | `rejected` | `halted` (an entry the run would
//! not send while the venue was unreachable, with `failover = "halt"`), then `filled`,
//! `cancelled`, `expired` as the venue reports; `cancelling` once a cancel was sent; `paper`
//! once the venue was unreachable with `failover = "paper"` ([`Outbox::fail_over`]): the run
//! fills the order on paper and the process sends nothing more.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::Client;
use tracing::Instrument;

use crate::bar::Tickers;
use crate::config::Failover;
use crate::operators::portfolio::Submitted;
use crate::order::{OrderSide, OrderType, TimeInForce, VenueEnd, VenueUpdate, VenueUpdateKind};
use crate::sinks::pg_pipeline::{Pipeline, Slot};
use crate::sinks::postgres::{DbError, audit};

use super::venue::{
    OrderRequest, Venue, VenueError, VenueEvent, VenueOrder, VenueStatus, client_order_id,
};

/// Records the orders a committed step submitted, inside its transaction; returns the rows new
/// to `broker_orders`. A replay of the same decisions (after a restart) finds its rows there and
/// leaves them as they are.
///
/// # Errors
/// A failing insert.
pub async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: &str,
    tickers: &Tickers,
    submitted: &[Submitted],
) -> Result<u64, DbError> {
    let mut p = Pipeline::default();
    let slot = record_in(&mut p, run_id, tickers, submitted);
    Ok(p.run(tx).await?.of(slot))
}

/// [`record`] as a statement of the committing transaction's pipeline (nothing when none).
pub fn record_in<'a>(
    p: &mut Pipeline<'a>,
    run_id: &'a str,
    tickers: &'a Tickers,
    submitted: &'a [Submitted],
) -> Option<Slot> {
    if submitted.is_empty() {
        return None;
    }
    let s = submitted;
    let at = |ts: i64| chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    Some(p.push(
        "INSERT INTO broker_orders (run_id, client_order_id, order_id, decided_at, ticker, side, \
                                    intent, quantity, order_type, limit_price, stop_price, time_in_force, \
                                    replaces) \
         SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::timestamptz[], $5::text[], $6::text[], \
                                  $7::text[], $8::float8[], $9::text[], $10::float8[], $11::float8[], $12::text[], \
                                  $13::text[]) \
         ON CONFLICT DO NOTHING",
        vec![
            Box::new(run_id),
            Box::new(s.iter().map(|r| client_order_id(run_id, r.order.id)).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.id as i64).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| at(r.order.ts)).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| tickers.name(r.order.ticker)).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.side.as_str()).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.kind.as_str()).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.quantity).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.order_type.as_str()).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.order_type.limit()).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.order_type.stop()).collect::<Vec<_>>()),
            Box::new(s.iter().map(|r| r.order.tif.as_str()).collect::<Vec<_>>()),
            Box::new(
                s.iter()
                    .map(|r| r.replaces.map(|id| client_order_id(run_id, id)))
                    .collect::<Vec<_>>(),
            ),
        ],
    ))
}

/// Marks the orders the portfolio withdrew ([`crate::operators::portfolio::Ledger::cancels`])
/// inside the committing transaction: one not yet sent is never sent, one working at the venue
/// is cancelled there.
///
/// # Errors
/// A failing update.
pub async fn request_cancels(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: &str,
    order_ids: &[i64],
) -> Result<u64, DbError> {
    if order_ids.is_empty() {
        return Ok(0);
    }
    Ok(tx
        .execute(
            "UPDATE broker_orders SET cancel_requested = true \
             WHERE run_id = $1 AND order_id = ANY($2) AND NOT cancel_requested \
               AND state IN ('recorded', 'sending', 'accepted')",
            &[&run_id, &order_ids],
        )
        .await?)
}

/// One recorded order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The client order id.
    pub client_id: String,
    /// The portfolio's order id.
    pub order_id: i64,
    /// `entry`, `exit`, `take_profit`, `stop_loss`.
    pub intent: String,
    /// Where it stands (see the module's states).
    pub state: String,
    /// The venue's id, once it answered.
    pub venue_order_id: Option<String>,
    /// The portfolio ended it: cancel it, or never send it.
    pub cancel_requested: bool,
    /// The client order id of the order it replaces at the venue (a re-priced bracket leg).
    pub replaces: Option<String>,
    /// The request it is sent as.
    pub request: OrderRequest,
}

/// Reads a run's rows in the given states, oldest decision first.
///
/// # Errors
/// A failing query, or a row this version cannot read (a bug or a hand edit: named).
pub async fn load(c: &Client, run_id: &str, states: &[&str]) -> Result<Vec<OutboxRow>, DbError> {
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    let rows = c
        .query(
            "SELECT client_order_id, order_id, intent, state, venue_order_id, cancel_requested, \
                    ticker, side, quantity, order_type, limit_price, stop_price, time_in_force, \
                    replaces \
             FROM broker_orders WHERE run_id = $1 AND state = ANY($2) ORDER BY order_id",
            &[&run_id, &states],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let client_id: String = r.get(0);
        let bad = |what: &str| DbError::Corrupt {
            what: format!("broker_orders row {client_id}: {what}"),
        };
        let side = match r.get::<_, &str>(7) {
            "buy" => OrderSide::Buy,
            "sell" => OrderSide::Sell,
            other => return Err(bad(&format!("side {other:?}"))),
        };
        let (limit, stop): (Option<f64>, Option<f64>) = (r.get(10), r.get(11));
        let order_type = match (r.get::<_, &str>(9), limit, stop) {
            ("market", _, _) => OrderType::Market,
            ("limit", Some(limit), _) => OrderType::Limit { limit },
            ("stop", _, Some(stop)) => OrderType::Stop { stop },
            ("stop_limit", Some(limit), Some(stop)) => OrderType::StopLimit { stop, limit },
            (other, _, _) => return Err(bad(&format!("order type {other:?} with its prices"))),
        };
        let tif = match r.get::<_, &str>(12) {
            "day" => TimeInForce::Day,
            "gtc" => TimeInForce::Gtc,
            "ioc" => TimeInForce::Ioc,
            other => return Err(bad(&format!("time in force {other:?}"))),
        };
        out.push(OutboxRow {
            order_id: r.get(1),
            intent: r.get(2),
            state: r.get(3),
            venue_order_id: r.get(4),
            cancel_requested: r.get(5),
            replaces: r.get(13),
            request: OrderRequest {
                client_id: client_id.clone(),
                symbol: r.get(6),
                side,
                quantity: r.get(8),
                order_type,
                tif,
            },
            client_id,
        });
    }
    Ok(out)
}

/// The outbox state an order's venue status maps to.
pub fn state_of(status: &VenueStatus) -> &'static str {
    match status {
        VenueStatus::Open | VenueStatus::Other(_) => "accepted",
        VenueStatus::Filled => "filled",
        VenueStatus::Cancelled | VenueStatus::Replaced => "cancelled",
        VenueStatus::Expired => "expired",
        VenueStatus::Rejected => "rejected",
    }
}

/// Failures in a row after which the venue counts as down.
const BREAKER_FAILURES: u32 = 3;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Orders the venue took.
    pub sent: u64,
    /// Orders found at the venue already (after a crash) and adopted, not sent again.
    pub adopted: u64,
    /// Orders the venue refused (with its reason recorded).
    pub rejected: u64,
    /// Entries not sent because the venue was down (`failover = "halt"`).
    pub halted: u64,
    /// Orders routed to the paper broker (`failover = "paper"`).
    pub routed: u64,
    /// Orders whose answer did not come (looked up on the next pass).
    pub unanswered: u64,
    /// Cancels the venue took, and orders ended before they were sent.
    pub cancelled: u64,
}

/// The broker process's side of the outbox for one run and one venue.
pub struct Outbox<'v, V: Venue> {
    venue: &'v V,
    run_id: String,
    /// Consecutive failed calls, and when the breaker opened.
    failures: u32,
    open_since: Option<Instant>,
    cooldown: Duration,
    failover: Failover,
    /// The run failed over to paper: nothing is sent any more.
    on_paper: bool,
}

impl<'v, V: Venue> Outbox<'v, V> {
    /// The outbox of `run_id` sending through `venue`; after [`BREAKER_FAILURES`] failed calls
    /// in a row the venue counts as down for `cooldown`, and `failover` says what happens then.
    ///
    /// # Errors
    /// PostgreSQL failing (a run that failed over to paper before stays on paper).
    pub async fn open(
        c: &Client,
        venue: &'v V,
        run_id: &str,
        cooldown: Duration,
        failover: Failover,
    ) -> Result<Self, DbError> {
        let on_paper = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM broker_orders WHERE run_id = $1 AND state = 'paper')",
                &[&run_id],
            )
            .await?
            .get(0);
        Ok(Outbox {
            venue,
            run_id: run_id.to_string(),
            failures: 0,
            open_since: None,
            cooldown,
            failover,
            on_paper,
        })
    }

    /// Whether the run failed over to paper (then nothing is sent or reconciled any more).
    pub fn on_paper(&self) -> bool {
        self.on_paper
    }

    /// Whether the breaker is open (the venue counts as down).
    pub fn breaker_open(&self) -> bool {
        self.open_since.is_some_and(|t| t.elapsed() < self.cooldown)
    }

    fn failed(&mut self, e: &VenueError) {
        self.failures += 1;
        if self.failures >= BREAKER_FAILURES && !self.breaker_open() {
            self.open_since = Some(Instant::now());
            tracing::error!(venue = self.venue.name(), error = %e, "broker breaker open");
            crate::alert::raise(
                format!("breaker:{}:{}", self.venue.name(), self.run_id),
                crate::alert::Severity::Critical,
                format!("{} unreachable", self.venue.name()),
                format!(
                    "run {}: {} failed calls in a row, the last: {e}; new entries are halted",
                    self.run_id, self.failures
                ),
            );
        }
    }

    fn answered(&mut self) {
        self.failures = 0;
        self.open_since = None;
    }

    async fn set_answer(&self, c: &Client, row: &OutboxRow, o: &VenueOrder) -> Result<(), DbError> {
        c.execute(
            "UPDATE broker_orders SET venue_order_id = $3, answered_at = now() \
             WHERE run_id = $1 AND client_order_id = $2",
            &[&self.run_id, &row.client_id, &o.id],
        )
        .await?;
        observe(c, &self.run_id, row, o).await
    }

    async fn set_state(
        &self,
        c: &Client,
        row: &OutboxRow,
        state: &str,
        reason: Option<&str>,
    ) -> Result<(), DbError> {
        c.execute(
            "UPDATE broker_orders SET state = $3, reason = COALESCE($4, reason), \
                    sent_at = CASE WHEN $3 = 'sending' THEN now() ELSE sent_at END, \
                    answered_at = CASE WHEN $3 IN ('sending', 'recorded') THEN answered_at ELSE now() END \
             WHERE run_id = $1 AND client_order_id = $2",
            &[&self.run_id, &row.client_id, &state, &reason],
        )
        .await?;
        Ok(())
    }

    /// After a start or a lost answer: asks the venue about every row that may have reached it
    /// (`recorded` and `sending`) by its client order id. One the venue knows is adopted (an
    /// `audit_log` event each); a `sending` one it does not know goes back to `recorded`.
    /// Nothing is sent here.
    ///
    /// # Errors
    /// PostgreSQL failing. A venue that does not answer leaves the rows as they are (they are
    /// asked about again before they are sent).
    pub async fn recover(&mut self, c: &Client) -> Result<Pass, DbError> {
        if self.on_paper {
            // A paper run: its orders are the paper broker's.
            return Ok(Pass::default());
        }
        let rows = load(c, &self.run_id, &["recorded", "sending"]).await?;
        self.recover_rows(c, rows).await
    }

    /// [`Outbox::recover`] of the given rows.
    async fn recover_rows(&mut self, c: &Client, rows: Vec<OutboxRow>) -> Result<Pass, DbError> {
        let mut pass = Pass::default();
        for row in rows {
            match self.venue.lookup(&row.client_id).await {
                Ok(Some(o)) => {
                    self.answered();
                    self.set_answer(c, &row, &o).await?;
                    audit(
                        c,
                        "broker_order_adopted",
                        &json!({
                            "run_id": self.run_id, "client_order_id": row.client_id,
                            "venue": self.venue.name(), "venue_order_id": o.id,
                            "state_before": row.state, "venue_status": state_of(&o.status),
                            "filled": o.filled,
                        }),
                    )
                    .await?;
                    tracing::info!(client_id = %row.client_id, venue_id = %o.id, "order found at the venue: adopted");
                    pass.adopted += 1;
                }
                Ok(None) => {
                    self.answered();
                    if row.state == "sending" {
                        self.set_state(c, &row, "recorded", None).await?;
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    tracing::warn!(client_id = %row.client_id, error = %e, "could not ask the venue about an order");
                    pass.unanswered += 1;
                }
            }
        }
        Ok(pass)
    }

    /// Sends every `recorded` row, oldest first: an order the portfolio already ended is never
    /// sent; an entry while the venue is down is `halted` (recorded, audited, alerted) and an
    /// exit waits for the next pass; a row whose answer does not come stays `sending` and is
    /// looked up by [`Outbox::recover`] before anything sends it again.
    ///
    /// # Errors
    /// PostgreSQL failing.
    pub async fn send_pending(&mut self, c: &Client) -> Result<Pass, DbError> {
        // Unanswered rows first: they may be at the venue. (A `recorded` row never left: only
        // a `sending` one can have reached it since the start's recovery.)
        if self.on_paper {
            // Orders the run recorded before it heard of the failover.
            return self.fail_over(c).await;
        }
        let unanswered = load(c, &self.run_id, &["sending"]).await?;
        let mut pass = self.recover_rows(c, unanswered).await?;
        if self.breaker_open() && self.failover == Failover::Paper {
            return self.fail_over(c).await;
        }
        for row in load(c, &self.run_id, &["recorded"]).await? {
            if row.cancel_requested {
                let why = "withdrawn before it was sent";
                self.set_state(c, &row, "cancelled", Some(why)).await?;
                end_event(c, &self.run_id, &row.client_id, "cancelled", why).await?;
                pass.cancelled += 1;
                continue;
            }
            if self.breaker_open() {
                if self.failover == Failover::Paper {
                    let routed = self.fail_over(c).await?;
                    pass.routed += routed.routed;
                    pass.cancelled += routed.cancelled;
                    break;
                }
                if row.intent == "entry" {
                    self.halt(c, &row).await?;
                    pass.halted += 1;
                }
                continue;
            }
            if let Some(old) = row.replaces.clone() {
                self.send_replacement(c, &row, &old, &mut pass).await?;
                continue;
            }
            // Committed before the request leaves: a crash from here on is looked up.
            self.set_state(c, &row, "sending", None).await?;
            let span = tracing::info_span!("send", client_id = %row.client_id);
            match self.venue.submit(&row.request).instrument(span).await {
                Ok(o) => {
                    self.answered();
                    self.set_answer(c, &row, &o).await?;
                    pass.sent += 1;
                }
                Err(VenueError::Rejected { reason, .. }) => {
                    self.answered();
                    self.set_state(c, &row, "rejected", Some(&reason)).await?;
                    end_event(c, &self.run_id, &row.client_id, "rejected", &reason).await?;
                    audit(
                        c,
                        "broker_order_rejected",
                        &json!({
                            "run_id": self.run_id, "client_order_id": row.client_id,
                            "venue": self.venue.name(), "reason": reason,
                        }),
                    )
                    .await?;
                    crate::alert::raise(
                        format!("rejected:{}:{}", self.run_id, row.client_id),
                        crate::alert::Severity::Warning,
                        format!("{} refused an order", self.venue.name()),
                        format!(
                            "run {}: {} {} {} {}: {reason}",
                            self.run_id,
                            row.request.side.as_str(),
                            row.request.quantity,
                            row.request.symbol,
                            row.intent
                        ),
                    );
                    pass.rejected += 1;
                }
                Err(e @ (VenueError::RateLimited { .. } | VenueError::Unauthorized { .. })) => {
                    // Refused before it was taken: nothing arrived.
                    self.failed(&e);
                    self.set_state(c, &row, "recorded", None).await?;
                    pass.unanswered += 1;
                }
                Err(e) => {
                    self.failed(&e);
                    tracing::warn!(error = %e, "no answer to an order: it is looked up before any resend");
                    pass.unanswered += 1;
                }
            }
        }
        Ok(pass)
    }

    /// Fails the run over to paper (`failover = "paper"`), in one statement: every order not
    /// yet done at the venue (`recorded`, `sending`, `accepted`, `cancelling`) becomes `paper`
    /// with a `paper` event the run takes as [`VenueUpdateKind::Rerouted`], after which its
    /// paper broker fills them and records nothing more for the venue. An order withdrawn before
    /// it was sent just ends. Orders that may still be working at the venue (sent, its answer
    /// unknown or open) are named in the audit event and the alert: the venue cannot be asked
    /// to cancel them while it is down, and reconciliation, which stops with the failover,
    /// will not adopt what they do. Later calls route what the run recorded meanwhile.
    ///
    /// # Errors
    /// PostgreSQL failing.
    pub async fn fail_over(&mut self, c: &Client) -> Result<Pass, DbError> {
        let reason = format!(
            "{} unreachable: routed to paper (failover = paper)",
            self.venue.name()
        );
        let withdrawn = load(c, &self.run_id, &["recorded"]).await?;
        let mut pass = Pass::default();
        for row in withdrawn.iter().filter(|r| r.cancel_requested) {
            let why = "withdrawn before it was sent";
            self.set_state(c, row, "cancelled", Some(why)).await?;
            end_event(c, &self.run_id, &row.client_id, "cancelled", why).await?;
            pass.cancelled += 1;
        }
        let moved = c
            .query(
                "WITH before AS (                      SELECT client_order_id, state FROM broker_orders                      WHERE run_id = $1 AND state IN ('recorded', 'sending', 'accepted', 'cancelling')                      FOR UPDATE),                  moved AS (                      UPDATE broker_orders o SET state = 'paper', reason = $2, answered_at = now()                      FROM before b WHERE o.run_id = $1 AND o.client_order_id = b.client_order_id                      RETURNING o.client_order_id, b.state AS before, o.order_id),                  fed AS (                      INSERT INTO broker_events (run_id, client_order_id, event_id, kind, time, reason)                      SELECT $1, client_order_id, 'paper', 'paper', now(), $2 FROM moved                      ON CONFLICT DO NOTHING)                  SELECT client_order_id, before FROM moved ORDER BY order_id",
                &[&self.run_id, &reason],
            )
            .await?;
        let first = !self.on_paper;
        self.on_paper = true;
        pass.routed = moved.len() as u64;
        if !first && moved.is_empty() {
            return Ok(pass);
        }
        let at_venue: Vec<String> = moved
            .iter()
            .filter(|r| r.get::<_, &str>(1) != "recorded")
            .map(|r| r.get(0))
            .collect();
        tracing::error!(routed = moved.len(), at_venue = at_venue.len(), "{reason}");
        audit(
            c,
            "broker_failover",
            &json!({
                "run_id": self.run_id, "venue": self.venue.name(), "failover": "paper",
                "routed": moved.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(),
                "may_be_at_venue": at_venue,
            }),
        )
        .await?;
        if first {
            let left = if at_venue.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} order(s) may still be working at the venue and are not followed: {}",
                    at_venue.len(),
                    at_venue.join(", ")
                )
            };
            crate::alert::raise(
                format!("failover:{}:{}", self.venue.name(), self.run_id),
                crate::alert::Severity::Critical,
                format!("{} down: the run trades on paper", self.venue.name()),
                format!("run {}: {reason}{left}", self.run_id),
            );
        }
        Ok(pass)
    }

    /// Sends `row` as the venue's replacement of the order recorded as `old` (a re-priced
    /// bracket leg), once the venue has accepted that one: the venue's answer is the order that
    /// carries on (at IBKR the same order, whose fills so far stay the old row's), and the old
    /// row ends `cancelled` (reason `replaced by …`). An old order that ended first (filled,
    /// say) makes the replacement `rejected`; one not yet accepted makes it wait.
    async fn send_replacement(
        &mut self,
        c: &Client,
        row: &OutboxRow,
        old: &str,
        pass: &mut Pass,
    ) -> Result<(), DbError> {
        let found = c
            .query_opt(
                "SELECT state, venue_order_id, filled_quantity, avg_price FROM broker_orders \
                 WHERE run_id = $1 AND client_order_id = $2",
                &[&self.run_id, &old],
            )
            .await?;
        let (state, venue_id, filled, avg): (String, Option<String>, f64, Option<f64>) =
            match &found {
                Some(r) => (r.get(0), r.get(1), r.get(2), r.get(3)),
                None => ("missing".into(), None, 0.0, None),
            };
        let venue_id = match (state.as_str(), venue_id) {
            ("recorded" | "sending", _) | ("accepted", None) => return Ok(()),
            ("accepted", Some(id)) => id,
            (ended, _) => {
                let why = format!("the order it replaces ended ({ended}) before it was replaced");
                self.set_state(c, row, "rejected", Some(&why)).await?;
                end_event(c, &self.run_id, &row.client_id, "rejected", &why).await?;
                pass.rejected += 1;
                return Ok(());
            }
        };
        self.set_state(c, row, "sending", None).await?;
        let span = tracing::info_span!("replace", client_id = %row.client_id, replaces = %old);
        match self
            .venue
            .replace(&venue_id, &row.request)
            .instrument(span)
            .await
        {
            Ok(o) => {
                self.answered();
                if o.id == venue_id {
                    // Modified in place: its fills so far are the old row's.
                    c.execute(
                        "UPDATE broker_orders SET filled_quantity = $3, avg_price = $4 \
                         WHERE run_id = $1 AND client_order_id = $2",
                        &[&self.run_id, &row.client_id, &filled, &avg],
                    )
                    .await?;
                }
                c.execute(
                    "UPDATE broker_orders SET reason = $3 WHERE run_id = $1 AND client_order_id = $2",
                    &[&self.run_id, &old, &format!("replaced by {}", row.client_id)],
                )
                .await?;
                let now = chrono::Utc::now().timestamp();
                book_end(c, &self.run_id, old, "cancelled", filled, now).await?;
                self.set_answer(c, row, &o).await?;
                pass.sent += 1;
            }
            Err(VenueError::Rejected { reason, .. }) => {
                self.answered();
                tracing::warn!(client_id = %row.client_id, %reason, "the venue would not replace the order: it keeps working as it was");
                self.set_state(c, row, "rejected", Some(&reason)).await?;
                end_event(c, &self.run_id, &row.client_id, "rejected", &reason).await?;
                pass.rejected += 1;
            }
            Err(e @ (VenueError::RateLimited { .. } | VenueError::Unauthorized { .. })) => {
                self.failed(&e);
                self.set_state(c, row, "recorded", None).await?;
                pass.unanswered += 1;
            }
            Err(e) => {
                self.failed(&e);
                tracing::warn!(error = %e, "no answer to a replacement: it is looked up before any resend");
                pass.unanswered += 1;
            }
        }
        Ok(())
    }

    async fn halt(&self, c: &Client, row: &OutboxRow) -> Result<(), DbError> {
        let reason = format!(
            "{} unreachable: entries halted (failover = halt)",
            self.venue.name()
        );
        self.set_state(c, row, "halted", Some(&reason)).await?;
        end_event(c, &self.run_id, &row.client_id, "rejected", &reason).await?;
        audit(
            c,
            "broker_failover",
            &json!({
                "run_id": self.run_id, "client_order_id": row.client_id,
                "venue": self.venue.name(), "failover": "halt",
            }),
        )
        .await?;
        crate::alert::raise(
            format!("failover:{}:{}", self.venue.name(), self.run_id),
            crate::alert::Severity::Critical,
            format!("{} down: entries halted", self.venue.name()),
            format!("run {}: {reason}", self.run_id),
        );
        Ok(())
    }

    /// Cancels at the venue the orders the portfolio ended that the venue accepted.
    ///
    /// # Errors
    /// PostgreSQL failing; a venue refusal (an order that filled meanwhile) is logged and left
    /// for the venue's own report and reconciliation.
    pub async fn send_cancels(&mut self, c: &Client) -> Result<u64, DbError> {
        let mut n = 0;
        for row in load(c, &self.run_id, &["accepted"]).await? {
            let (true, Some(id)) = (row.cancel_requested, row.venue_order_id.as_deref()) else {
                continue;
            };
            match self.venue.cancel(id).await {
                Ok(()) => {
                    self.answered();
                    self.set_state(c, &row, "cancelling", None).await?;
                    n += 1;
                }
                Err(e @ (VenueError::Rejected { .. } | VenueError::NotFound { .. })) => {
                    self.answered();
                    tracing::warn!(client_id = %row.client_id, error = %e, "the venue would not cancel: left to its report");
                    c.execute(
                        "UPDATE broker_orders SET cancel_requested = false, reason = $3 \
                         WHERE run_id = $1 AND client_order_id = $2",
                        &[&self.run_id, &row.client_id, &e.to_string()],
                    )
                    .await?;
                }
                Err(e) => self.failed(&e),
            }
        }
        Ok(n)
    }
}

/// Books what the venue says of a row's order (a REST snapshot): a fill for each growth of its
/// filled quantity, its end, and its state ([`book_fill`], [`book_end`]).
///
/// # Errors
/// A failing statement.
pub async fn observe(
    c: &Client,
    run_id: &str,
    row: &OutboxRow,
    o: &VenueOrder,
) -> Result<(), DbError> {
    let ts = o.ts.unwrap_or_else(|| chrono::Utc::now().timestamp());
    if let Some(avg) = o.avg_price {
        book_fill(
            c,
            run_id,
            &row.client_id,
            o.filled,
            FillReport::Average(avg),
            ts,
        )
        .await?;
    }
    if o.status.is_terminal() {
        book_end(c, run_id, &row.client_id, state_of(&o.status), o.filled, ts).await?;
    } else {
        c.execute(
            "UPDATE broker_orders SET state = $3 WHERE run_id = $1 AND client_order_id = $2 \
               AND state NOT IN ('filled', 'cancelled', 'expired', 'rejected')",
            &[&run_id, &row.client_id, &state_of(&o.status)],
        )
        .await?;
    }
    Ok(())
}

/// How a venue reported an order's filled quantity growing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillReport {
    /// A snapshot (REST): the order's average price after the growth.
    Average(f64),
    /// One execution (the stream) at this price; a growth larger than the execution (some were
    /// missed) is priced at it too.
    Execution(f64),
}

/// Books an order's filled quantity reaching `cumulative`: the growth since what is booked is
/// one fill (`broker_events`, keyed by the cumulative quantity, so hearing it again — from the
/// stream, a REST poll or reconciliation — adds nothing). A snapshot's fill is priced from the
/// change of the average, an execution's at its price.
///
/// # Errors
/// A failing statement.
pub async fn book_fill(
    c: &Client,
    run_id: &str,
    client_id: &str,
    cumulative: f64,
    report: FillReport,
    ts: i64,
) -> Result<bool, DbError> {
    let Some(r) = c
        .query_opt(
            "SELECT filled_quantity, avg_price, state FROM broker_orders \
             WHERE run_id = $1 AND client_order_id = $2",
            &[&run_id, &client_id],
        )
        .await?
    else {
        tracing::warn!(
            client_id,
            "a fill of an order this run did not record: left to reconciliation"
        );
        return Ok(false);
    };
    if r.get::<_, &str>(2) == "paper" {
        // The run fills it on paper: the venue's fill is not the run's any more.
        tracing::error!(
            client_id,
            cumulative,
            "the venue filled an order the run routed to paper"
        );
        audit(
            c,
            "broker_fill_after_failover",
            &json!({ "run_id": run_id, "client_order_id": client_id, "cumulative": cumulative }),
        )
        .await?;
        return Ok(false);
    }
    let (done, avg): (f64, f64) = (r.get(0), r.get::<_, Option<f64>>(1).unwrap_or(0.0));
    let qty = cumulative - done;
    if qty <= 1e-9 * cumulative.max(1.0) {
        return Ok(false);
    }
    let (fill_price, avg_after) = match report {
        FillReport::Average(a) => ((cumulative * a - done * avg) / qty, a),
        FillReport::Execution(p) => (p, (done * avg + qty * p) / cumulative),
    };
    let at = chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    c.execute(
        "INSERT INTO broker_events (run_id, client_order_id, event_id, kind, time, quantity, \
                                    price, cumulative) \
         VALUES ($1, $2, $3, 'fill', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &[
            &run_id,
            &client_id,
            &format!("fill@{cumulative}"),
            &at,
            &qty,
            &fill_price,
            &cumulative,
        ],
    )
    .await?;
    c.execute(
        "UPDATE broker_orders SET filled_quantity = $3, avg_price = $4 \
         WHERE run_id = $1 AND client_order_id = $2",
        &[&run_id, &client_id, &cumulative, &avg_after],
    )
    .await?;
    Ok(true)
}

/// Books an order's end as the venue reported it (once), with its final state.
///
/// # Errors
/// A failing statement.
pub async fn book_end(
    c: &Client,
    run_id: &str,
    client_id: &str,
    state: &str,
    cumulative: f64,
    ts: i64,
) -> Result<(), DbError> {
    let at = chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    c.execute(
        "INSERT INTO broker_events (run_id, client_order_id, event_id, kind, time, status, \
                                    cumulative) \
         VALUES ($1, $2, 'end', 'ended', $3, $4, $5) ON CONFLICT DO NOTHING",
        &[&run_id, &client_id, &at, &state, &cumulative],
    )
    .await?;
    c.execute(
        "UPDATE broker_orders SET state = $3 WHERE run_id = $1 AND client_order_id = $2",
        &[&run_id, &client_id, &state],
    )
    .await?;
    Ok(())
}

/// Books an event of the venue's stream (a fill, an end) about one of the run's orders.
///
/// # Errors
/// A failing statement.
pub async fn record_event(c: &Client, run_id: &str, e: &VenueEvent) -> Result<(), DbError> {
    match e {
        VenueEvent::Fill(f) => {
            book_fill(
                c,
                run_id,
                &f.client_id,
                f.cumulative,
                FillReport::Execution(f.price),
                f.ts,
            )
            .await?;
        }
        VenueEvent::Ended { client_id, status } => {
            let Some(r) = c
                .query_opt(
                    "SELECT filled_quantity, state FROM broker_orders \
                     WHERE run_id = $1 AND client_order_id = $2",
                    &[&run_id, client_id],
                )
                .await?
            else {
                tracing::warn!(%client_id, "the end of an order this run did not record: ignored");
                return Ok(());
            };
            if r.get::<_, &str>(1) == "paper" {
                tracing::warn!(%client_id, ?status, "the venue ended an order the run routed to paper");
                return Ok(());
            }
            let cumulative: f64 = r.get(0);
            book_end(
                c,
                run_id,
                client_id,
                state_of(status),
                cumulative,
                chrono::Utc::now().timestamp(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Asks the venue about every order it works for the run (`accepted`, `cancelling`) and books
/// what changed ([`observe`]): the REST path that needs no stream, and that covers any gap in
/// one. Returns how many orders were asked about.
///
/// # Errors
/// PostgreSQL failing; a venue that does not answer is asked again next pass.
pub async fn follow<V: Venue>(c: &Client, venue: &V, run_id: &str) -> Result<u64, DbError> {
    let mut n = 0;
    let rows = load(c, run_id, &["accepted", "cancelling"]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let executions = venue.executions().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not list the venue's executions: fills priced from averages");
        Vec::new()
    });
    for row in rows {
        let found = match venue.lookup(&row.client_id).await {
            // An order modified in place answers to the client id it was placed with.
            Ok(None) if row.venue_order_id.is_some() => {
                venue
                    .lookup_id(row.venue_order_id.as_deref().unwrap_or_default())
                    .await
            }
            other => other,
        };
        match found {
            Ok(Some(o)) => {
                book_executions(c, run_id, &row, &o, &executions).await?;
                observe(c, run_id, &row, &o).await?;
                n += 1;
            }
            Ok(None) => {
                tracing::warn!(client_id = %row.client_id, "an accepted order is unknown to the venue: left to reconciliation");
            }
            Err(e) => {
                tracing::warn!(client_id = %row.client_id, error = %e, "could not follow an order");
                break;
            }
        }
    }
    Ok(n)
}

/// Books an order's executions one by one, each at its price and time, when the venue's list
/// holds all of them (their sum is the order's filled quantity); otherwise (some older than the
/// list reaches) nothing here, and [`observe`] prices the growth from the averages.
async fn book_executions(
    c: &Client,
    run_id: &str,
    row: &OutboxRow,
    o: &VenueOrder,
    executions: &[super::venue::VenueFill],
) -> Result<(), DbError> {
    let mine: Vec<_> = executions
        .iter()
        .filter(|f| {
            (!f.client_id.is_empty() && f.client_id == row.client_id)
                || (!f.order_id.is_empty() && f.order_id == o.id)
        })
        .collect();
    let Some(last) = mine.last() else {
        return Ok(());
    };
    if (last.cumulative - o.filled).abs() > 1e-9 * o.filled.max(1.0) {
        tracing::debug!(client_id = %row.client_id, listed = last.cumulative, filled = o.filled,
            "the execution list does not hold every fill of the order: priced from its average");
        return Ok(());
    }
    for f in mine {
        book_fill(
            c,
            run_id,
            &row.client_id,
            f.cumulative,
            FillReport::Execution(f.price),
            f.ts,
        )
        .await?;
    }
    Ok(())
}

/// Records that an order ended before the venue worked it (refused, halted, withdrawn before it
/// was sent), for the run to book.
async fn end_event(
    c: &Client,
    run_id: &str,
    client_id: &str,
    status: &str,
    reason: &str,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO broker_events (run_id, client_order_id, event_id, kind, time, status, reason) \
         VALUES ($1, $2, 'end', 'ended', now(), $3, $4) ON CONFLICT DO NOTHING",
        &[&run_id, &client_id, &status, &reason],
    )
    .await?;
    Ok(())
}

/// The update a `broker_events` row holds; `None` for a position in a ticker outside the
/// run's universe (reconciliation reports it; nothing to book).
fn update_of(
    r: &tokio_postgres::Row,
    tickers: &Tickers,
) -> Result<Option<(i64, VenueUpdate)>, DbError> {
    let client_id: String = r.get(0);
    let kind: &str = r.get(1);
    let ts: i64 = r.get(2);
    let order_id: i64 = r.get(7);
    let bad = |what: String| DbError::Corrupt {
        what: format!("broker_events row of {client_id}: {what}"),
    };
    let kind = match kind {
        "fill" => match (r.get::<_, Option<f64>>(3), r.get::<_, Option<f64>>(4)) {
            (Some(quantity), Some(price)) if quantity > 0.0 && price.is_finite() => {
                VenueUpdateKind::Fill { quantity, price }
            }
            (q, p) => return Err(bad(format!("fill of {q:?} at {p:?}"))),
        },
        "ended" => {
            let end = match r.get::<_, Option<&str>>(5) {
                Some("filled") => VenueEnd::Filled,
                Some("cancelled") => VenueEnd::Cancelled,
                Some("expired") => VenueEnd::Expired,
                Some("rejected") => VenueEnd::Rejected,
                other => return Err(bad(format!("end {other:?}"))),
            };
            VenueUpdateKind::Ended {
                end,
                reason: r.get::<_, Option<String>>(6).unwrap_or_default(),
            }
        }
        "position" => {
            let name = client_id.strip_prefix("position:").unwrap_or_default();
            let Some(ticker) = tickers.id(name) else {
                tracing::warn!(
                    ticker = name,
                    "an adopted position outside the universe: not booked"
                );
                return Ok(None);
            };
            match (r.get::<_, Option<f64>>(3), r.get::<_, Option<f64>>(4)) {
                (Some(quantity), Some(price)) if quantity.is_finite() && price.is_finite() => {
                    VenueUpdateKind::Position {
                        ticker,
                        quantity,
                        price,
                    }
                }
                (q, p) => return Err(bad(format!("position of {q:?} at {p:?}"))),
            }
        }
        "paper" => VenueUpdateKind::Rerouted,
        other => return Err(bad(format!("kind {other:?}"))),
    };
    Ok(Some((
        r.get(8),
        VenueUpdate {
            ts,
            order_id: order_id as u64,
            kind,
        },
    )))
}

const EVENTS: &str = "SELECT e.client_order_id, e.kind, extract(epoch FROM e.time)::int8, e.quantity, \
            e.price, e.status, e.reason, COALESCE(o.order_id, 0), COALESCE(e.fed_at, 0), e.event_id \
     FROM broker_events e LEFT JOIN broker_orders o USING (run_id, client_order_id) \
     WHERE e.run_id = $1 AND e.kind IN ('fill', 'ended', 'position', 'paper')";

/// The venue's fills, ends and adopted positions the run booked at or before `through` (its committed time), each
/// at the time it was booked, for a restarted run to replay; those booked later (not committed)
/// are forgotten, to be taken again.
///
/// # Errors
/// A failing statement, or an unreadable row.
pub async fn replay_updates(
    c: &Client,
    run_id: &str,
    tickers: &Tickers,
    through: i64,
) -> Result<Vec<(i64, VenueUpdate)>, DbError> {
    c.execute(
        "UPDATE broker_events SET fed_at = NULL WHERE run_id = $1 AND fed_at > $2",
        &[&run_id, &through],
    )
    .await?;
    let sql = format!(
        "{EVENTS} AND e.fed_at IS NOT NULL ORDER BY e.fed_at, e.time, o.order_id, e.kind = 'ended', e.cumulative"
    );
    let mut out = Vec::new();
    for r in c.query(&sql, &[&run_id]).await? {
        out.extend(update_of(&r, tickers)?);
    }
    Ok(out)
}

/// Takes the venue's fills, ends and adopted positions the run has not booked yet: each is given its booking time —
/// its own, or `floor` when it came later — recorded (committed) before it is returned, so a
/// replay books it at the same time.
///
/// # Errors
/// A failing statement, or an unreadable row.
pub async fn take_updates(
    c: &mut Client,
    run_id: &str,
    tickers: &Tickers,
    floor: i64,
) -> Result<Vec<(i64, VenueUpdate)>, DbError> {
    let tx = c.transaction().await?;
    let sql = format!(
        "{EVENTS} AND e.fed_at IS NULL ORDER BY e.time, o.order_id, e.kind = 'ended', e.cumulative \
         FOR UPDATE OF e"
    );
    let mut out = Vec::new();
    let mut keys: (Vec<String>, Vec<String>, Vec<i64>) = Default::default();
    for r in tx.query(&sql, &[&run_id]).await? {
        let update = update_of(&r, tickers)?;
        let at = update.as_ref().map_or(floor, |(_, u)| u.ts.max(floor));
        keys.0.push(r.get(0));
        keys.1.push(r.get(9));
        keys.2.push(at);
        out.extend(update.map(|(_, u)| (at, u)));
    }
    if keys.0.is_empty() {
        return Ok(out);
    }
    tx.execute(
        "UPDATE broker_events e SET fed_at = k.at \
         FROM UNNEST($2::text[], $3::text[], $4::int8[]) AS k(cid, event_id, at) \
         WHERE e.run_id = $1 AND e.client_order_id = k.cid AND e.event_id = k.event_id",
        &[&run_id, &keys.0, &keys.1, &keys.2],
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}
