//! Reconciliation: the venue's positions and open orders against the run's ledger and outbox.
//! Every difference is adopted from the venue — the broker's word is what the money did — with
//! an `audit_log` event and an alert each:
//! - a position whose quantity differs from the ledger's is recorded as the venue has it (a
//!   `position` event in `broker_events` for the run to book);
//! - a position in a ticker the run never traded is reported, never traded away;
//! - an order of the run whose state differs (cancelled or filled at the venue while the run
//!   was down) takes the venue's state and fills ([`super::outbox::observe`]);
//! - an open order the run did not send is reported and left alone.

use std::collections::BTreeMap;

use serde_json::json;
use tokio_postgres::Client;

use crate::sinks::postgres::{DbError, audit};

use super::outbox::{self, load};
use super::venue::{Venue, VenueError};

/// Why a reconciliation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The venue did not answer (the next pass tries again).
    #[error(transparent)]
    Venue(#[from] VenueError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One difference found (and adopted or reported).
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The venue holds `venue` shares of a ticker the ledger holds `ledger` of.
    Position {
        /// Ticker.
        ticker: String,
        /// The ledger's quantity.
        ledger: f64,
        /// The venue's.
        venue: f64,
        /// The venue's average entry price.
        avg_price: f64,
    },
    /// A position in a ticker the run never traded.
    Unowned {
        /// Ticker.
        ticker: String,
        /// Quantity.
        quantity: f64,
    },
    /// One of the run's orders stands differently at the venue.
    Order {
        /// Client order id.
        client_id: String,
        /// Where the outbox had it.
        was: String,
        /// Where the venue has it.
        now: String,
    },
    /// An open order the run did not send.
    Foreign {
        /// The venue's id.
        venue_id: String,
        /// Its client id.
        client_id: String,
        /// Symbol.
        symbol: String,
    },
}

impl Difference {
    fn event(&self) -> &'static str {
        match self {
            Difference::Position { .. } => "reconcile_position_adopted",
            Difference::Unowned { .. } => "reconcile_position_unowned",
            Difference::Order { .. } => "reconcile_order_adopted",
            Difference::Foreign { .. } => "reconcile_order_foreign",
        }
    }

    fn data(&self, run_id: &str, venue: &str) -> serde_json::Value {
        let mut v = match self {
            Difference::Position {
                ticker,
                ledger,
                venue,
                avg_price,
            } => {
                json!({"ticker": ticker, "ledger": ledger, "venue_quantity": venue, "avg_price": avg_price})
            }
            Difference::Unowned { ticker, quantity } => {
                json!({"ticker": ticker, "venue_quantity": quantity})
            }
            Difference::Order {
                client_id,
                was,
                now,
            } => {
                json!({"client_order_id": client_id, "was": was, "now": now})
            }
            Difference::Foreign {
                venue_id,
                client_id,
                symbol,
            } => {
                json!({"venue_order_id": venue_id, "client_order_id": client_id, "symbol": symbol})
            }
        };
        v["run_id"] = json!(run_id);
        v["venue"] = json!(venue);
        v
    }
}

/// Quantities equal to a part in 10⁹ (fractional shares go through decimal text at the venue).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The ledger's position per ticker: its latest `positions` row (or position adopted after it),
/// plus the venue's fills after it recorded but not yet booked and committed by the run — so a
/// fill on its way into the ledger is never adopted a second time.
async fn ledger_positions(c: &Client, run_id: &str) -> Result<BTreeMap<String, f64>, DbError> {
    let rows = c
        .query(
            "WITH committed AS ( \
                SELECT COALESCE((SELECT committed FROM stream_state WHERE run_id = $1), -1) AS t), \
             last AS ( \
                SELECT DISTINCT ON (ticker) ticker, time, quantity FROM ( \
                    SELECT ticker, time, quantity FROM positions WHERE run_id = $1 \
                    UNION ALL \
                    SELECT substr(client_order_id, 10), time, quantity FROM broker_events \
                     WHERE run_id = $1 AND kind = 'position' \
                ) p ORDER BY ticker, time DESC), \
             unbooked AS ( \
                SELECT o.ticker, CASE o.side WHEN 'buy' THEN e.quantity ELSE -e.quantity END AS quantity \
                  FROM broker_events e JOIN broker_orders o USING (run_id, client_order_id) \
                  CROSS JOIN committed LEFT JOIN last l ON l.ticker = o.ticker \
                 WHERE e.run_id = $1 AND e.kind = 'fill' AND (e.fed_at IS NULL OR e.fed_at > committed.t) \
                   AND (l.time IS NULL OR e.time > l.time)) \
             SELECT ticker, sum(quantity)::float8 FROM ( \
                SELECT ticker, quantity FROM last UNION ALL SELECT * FROM unbooked) q GROUP BY ticker",
            &[&run_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Compares the venue with the run's ledger and outbox and adopts or reports each difference
/// (an audit event and an alert each). Returns what was found.
///
/// # Errors
/// The venue or PostgreSQL failing; nothing is half-adopted (each difference is one statement
/// plus its audit event).
pub async fn run<V: Venue>(
    c: &Client,
    venue: &V,
    run_id: &str,
) -> Result<Vec<Difference>, ReconcileError> {
    let mut found = Vec::new();
    // Orders first: a fill found here explains a position below.
    let open = venue.open_orders().await?;
    let rows = load(
        c,
        run_id,
        &[
            "recorded",
            "sending",
            "accepted",
            "cancelling",
            "rejected",
            "halted",
            "filled",
            "cancelled",
            "expired",
        ],
    )
    .await?;
    let by_client: BTreeMap<&str, &outbox::OutboxRow> =
        rows.iter().map(|r| (r.client_id.as_str(), r)).collect();
    // The working row of each venue order: an order modified in place (IBKR) answers to the
    // client id of the row it replaced, which has ended.
    let working: BTreeMap<&str, &outbox::OutboxRow> = rows
        .iter()
        .filter(|r| matches!(r.state.as_str(), "accepted" | "cancelling"))
        .filter_map(|r| r.venue_order_id.as_deref().map(|v| (v, r)))
        .collect();
    let mut listed = std::collections::BTreeSet::new();
    for o in &open {
        if let Some(row) = working.get(o.id.as_str()) {
            listed.insert(row.client_id.clone());
            continue;
        }
        listed.insert(o.client_id.clone());
        match by_client.get(o.client_id.as_str()) {
            Some(row) if !matches!(row.state.as_str(), "accepted" | "cancelling") => {
                found.push(Difference::Order {
                    client_id: o.client_id.clone(),
                    was: row.state.clone(),
                    now: outbox::state_of(&o.status).into(),
                });
                outbox::observe(c, run_id, row, o).await?;
            }
            Some(_) => {}
            None => found.push(Difference::Foreign {
                venue_id: o.id.clone(),
                client_id: o.client_id.clone(),
                symbol: o.symbol.clone(),
            }),
        }
    }
    for row in rows
        .iter()
        .filter(|r| matches!(r.state.as_str(), "accepted" | "cancelling"))
        .filter(|r| !listed.contains(&r.client_id))
    {
        // Working in the outbox, not open at the venue: it ended while nobody listened.
        if let Some(o) = venue.lookup(&row.client_id).await? {
            let now = outbox::state_of(&o.status);
            if now != row.state {
                found.push(Difference::Order {
                    client_id: row.client_id.clone(),
                    was: row.state.clone(),
                    now: now.into(),
                });
            }
            outbox::observe(c, run_id, row, &o).await?;
        }
    }
    let ledger = ledger_positions(c, run_id).await?;
    let traded: std::collections::BTreeSet<String> = c
        .query(
            "SELECT DISTINCT ticker FROM orders WHERE run_id = $1 \
             UNION SELECT DISTINCT ticker FROM broker_orders WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let held = venue.positions().await?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &held {
        seen.insert(p.symbol.clone());
        let mine = ledger.get(&p.symbol).copied().unwrap_or(0.0);
        if same(mine, p.quantity) {
            continue;
        }
        if !traded.contains(&p.symbol) {
            found.push(Difference::Unowned {
                ticker: p.symbol.clone(),
                quantity: p.quantity,
            });
            continue;
        }
        found.push(Difference::Position {
            ticker: p.symbol.clone(),
            ledger: mine,
            venue: p.quantity,
            avg_price: p.avg_price,
        });
    }
    for (ticker, &q) in &ledger {
        if q != 0.0 && !seen.contains(ticker) {
            found.push(Difference::Position {
                ticker: ticker.clone(),
                ledger: q,
                venue: 0.0,
                avg_price: 0.0,
            });
        }
    }
    for d in &found {
        if let Difference::Position {
            ticker,
            venue: q,
            avg_price,
            ..
        } = d
        {
            c.execute(
                "INSERT INTO broker_events (run_id, client_order_id, event_id, kind, time, quantity, price) \
                 VALUES ($1, $2, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), \
                         'position', now(), $3, $4)",
                &[&run_id, &format!("position:{ticker}"), q, avg_price],
            )
            .await
            .map_err(DbError::from)?;
        }
        audit(c, d.event(), &d.data(run_id, venue.name())).await?;
        tracing::warn!(difference = ?d, "reconciliation");
        crate::alert::raise(
            format!("reconcile:{run_id}:{}", d.event()),
            crate::alert::Severity::Warning,
            format!("{} differs from the ledger", venue.name()),
            format!("run {run_id}: {d:?}"),
        );
    }
    Ok(found)
}
