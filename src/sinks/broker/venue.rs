//! What every real broker adapter speaks: orders as the venue knows them, fills, positions, the
//! account, and errors by who is at fault. The adapters (Alpaca, Interactive Brokers) translate
//! their wire formats into these; the broker operator and reconciliation only see these.

use std::time::Duration;

use crate::order::{OrderSide, OrderType, TimeInForce};
use crate::time::EventTime;

/// An order as sent to a venue.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    /// Our id for it, derived from the run and the decision ([`client_order_id`]); the venue
    /// refuses a second order under it, which is what makes a retry safe.
    pub client_id: String,
    /// The venue's symbol.
    pub symbol: String,
    /// Buy or sell.
    pub side: OrderSide,
    /// Shares (fractional where the venue allows).
    pub quantity: f64,
    /// Market, limit, stop, stop-limit.
    pub order_type: OrderType,
    /// Day, GTC, IOC.
    pub tif: TimeInForce,
}

/// Where an order stands at the venue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenueStatus {
    /// Accepted and working (new, accepted, partially filled, pending anything).
    Open,
    /// Completely filled.
    Filled,
    /// Cancelled (by us or the venue).
    Cancelled,
    /// Its time in force ran out.
    Expired,
    /// Refused by the venue.
    Rejected,
    /// Replaced by another order (the new one carries on).
    Replaced,
    /// A status this adapter does not know, as sent: treated as open.
    Other(String),
}

impl VenueStatus {
    /// Whether no further update can come.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            VenueStatus::Filled
                | VenueStatus::Cancelled
                | VenueStatus::Expired
                | VenueStatus::Rejected
                | VenueStatus::Replaced
        )
    }
}

/// An order as the venue reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueOrder {
    /// The venue's id.
    pub id: String,
    /// Ours.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: OrderSide,
    /// Shares ordered (`None` for an order by notional value).
    pub quantity: Option<f64>,
    /// Shares filled so far.
    pub filled: f64,
    /// Average price of what filled.
    pub avg_price: Option<f64>,
    /// Where it stands.
    pub status: VenueStatus,
    /// When it last filled (else last changed), when the venue says.
    pub ts: Option<EventTime>,
}

/// One execution.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueFill {
    /// The venue's order id.
    pub order_id: String,
    /// Ours.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: OrderSide,
    /// Shares in this execution.
    pub quantity: f64,
    /// Its price.
    pub price: f64,
    /// When it executed (its event time).
    pub ts: EventTime,
    /// The order's filled shares after it (what makes applying an update twice harmless).
    pub cumulative: f64,
}

/// A position at the venue.
#[derive(Debug, Clone, PartialEq)]
pub struct VenuePosition {
    /// Symbol.
    pub symbol: String,
    /// Signed shares (negative: short).
    pub quantity: f64,
    /// Average entry price.
    pub avg_price: f64,
}

/// The account.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueAccount {
    /// The venue's account number.
    pub number: String,
    /// Cash.
    pub cash: f64,
    /// Equity.
    pub equity: f64,
    /// Buying power.
    pub buying_power: f64,
    /// Whether trading is blocked.
    pub blocked: bool,
}

/// What went wrong talking to a venue, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum VenueError {
    /// The venue refused the request with its reason (buying power, market closed, pattern day
    /// trader, a malformed order): ours or the account's fault, not to be retried.
    #[error("{venue} refused it (HTTP {status}): {reason}")]
    Rejected {
        /// Which venue.
        venue: &'static str,
        /// HTTP status.
        status: u16,
        /// The venue's reason, as sent.
        reason: String,
    },
    /// The venue knows no such order or position.
    #[error("{venue}: not found")]
    NotFound {
        /// Which venue.
        venue: &'static str,
    },
    /// Over the venue's rate limit; retry after the wait.
    #[error("{venue}: rate limited, retry in {retry_after:?}")]
    RateLimited {
        /// Which venue.
        venue: &'static str,
        /// How long to wait.
        retry_after: Duration,
    },
    /// The keys or the session were refused.
    #[error("{venue}: not authorized: {message}")]
    Unauthorized {
        /// Which venue.
        venue: &'static str,
        /// The venue's message.
        message: String,
    },
    /// No answer, a timeout or a server error: the venue's (or the network's) fault. For an
    /// order, whether it arrived is unknown until it is looked up.
    #[error("{venue} unavailable: {message}")]
    Unavailable {
        /// Which venue.
        venue: &'static str,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// What failed (never the keys).
        message: String,
    },
    /// An answer this adapter cannot read: the venue's fault.
    #[error("{venue} sent an unreadable answer to {what}: {message}")]
    Protocol {
        /// Which venue.
        venue: &'static str,
        /// Which request.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A key of the adapter's configuration is not set.
    #[error("{venue}: {key} is not set")]
    Unset {
        /// Which venue.
        venue: &'static str,
        /// The key (or environment variable).
        key: String,
    },
    /// The configuration names no account.
    #[error("{venue}: no account")]
    NoAccount {
        /// Which venue.
        venue: &'static str,
    },
    /// Live money named without `live = true`: the user must say so.
    #[error("{venue}: {what} needs `live = true` in [broker]")]
    NotLive {
        /// Which venue.
        venue: &'static str,
        /// What is live (the host, the account).
        what: String,
    },
    /// The venue says the account may not trade.
    #[error("{venue} account {account} is blocked from trading")]
    Blocked {
        /// Which venue.
        venue: &'static str,
        /// The account number.
        account: String,
    },
    /// The HTTP client could not be built (the TLS stack did not start).
    #[error("{venue}: HTTP client: {message}")]
    Client {
        /// Which venue.
        venue: &'static str,
        /// What failed (never a URL).
        message: String,
    },
}

impl VenueError {
    /// A request that got no (whole) answer: `timed out`, or what failed, never the URL.
    pub fn transport(venue: &'static str, status: Option<u16>, e: reqwest::Error) -> Self {
        VenueError::Unavailable {
            venue,
            status,
            message: if e.is_timeout() {
                "timed out".into()
            } else {
                e.without_url().to_string()
            },
        }
    }

    /// Whether the request may have arrived without its answer reaching us (so an order must be
    /// looked up before it is sent again).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, VenueError::Unavailable { .. })
    }

    /// Whether the user's configuration or account is at fault (nothing to retry).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            VenueError::Unset { .. }
                | VenueError::NoAccount { .. }
                | VenueError::NotLive { .. }
                | VenueError::Blocked { .. }
        )
    }
}

/// The HTTP client of a venue adapter: rustls with ring (installed once per process), every
/// request bounded by `timeout`; `self_signed` accepts a local gateway's own certificate.
///
/// # Errors
/// [`VenueError::Client`] when the TLS stack cannot start.
pub fn http_client(
    venue: &'static str,
    timeout: Duration,
    self_signed: bool,
) -> Result<reqwest::Client, VenueError> {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .danger_accept_invalid_certs(self_signed)
        .build()
        .map_err(|e| VenueError::Client {
            venue,
            message: e.without_url().to_string(),
        })
}

/// The client order id of decision `order_id` of run `run_id`: a stable checksum of the run id
/// and the order's number, at most 37 characters (Alpaca takes 48, IBKR's `cOID` any). The same
/// run deciding the same order again (a replay after a restart) gets the same id, so the venue
/// refuses to take it twice.
pub fn client_order_id(run_id: &str, order_id: u64) -> String {
    format!("fdp-{}-{order_id}", crate::config::checksum(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_stable_short_and_distinct() {
        let a = client_order_id("live-2026-12-06_BRK.B^x", 7);
        assert_eq!(a, client_order_id("live-2026-12-06_BRK.B^x", 7));
        assert_ne!(a, client_order_id("live-2026-12-06_BRK.B^x", 8));
        assert_ne!(a, client_order_id("live-2026-12-07", 7));
        assert!(client_order_id(&"x".repeat(64), u64::MAX).len() <= 48);
    }
}

/// The calls the broker process makes of a venue, whichever it is: the outbox sends through it,
/// reconciliation compares the ledger with what it answers.
#[allow(async_fn_in_trait)]
pub trait Venue {
    /// The venue's name in records and logs (`alpaca`, `ibkr`).
    fn name(&self) -> &'static str;
    /// Sends an order; a lost answer is looked up by its client id before any resend.
    ///
    /// # Errors
    /// The venue's refusal with its reason, or the transport's failure.
    async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError>;
    /// The order the venue knows under `client_id`, if any.
    ///
    /// # Errors
    /// A failed call (never "not found": that is `None`).
    async fn lookup(&self, client_id: &str) -> Result<Option<VenueOrder>, VenueError>;
    /// Every open order of the account.
    ///
    /// # Errors
    /// A failed call.
    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError>;
    /// Cancels an order by the venue's id.
    ///
    /// # Errors
    /// The venue's refusal (an order no longer cancelable) or a failed call.
    async fn cancel(&self, venue_id: &str) -> Result<(), VenueError>;
    /// Every position of the account.
    ///
    /// # Errors
    /// A failed call.
    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError>;
    /// The account's recent executions, each with its order's filled shares after it over
    /// what the list holds, for fills at their own prices and times where the venue has no
    /// stream of them (IBKR's `/iserver/account/trades`); none by default.
    ///
    /// # Errors
    /// A failed call.
    async fn executions(&self) -> Result<Vec<VenueFill>, VenueError> {
        Ok(Vec::new())
    }
    /// Replaces the working order `venue_id` by `r` (its prices, quantity and time in force),
    /// atomically at the venue: the answer is the order that carries on (a new one at Alpaca,
    /// the same one modified at IBKR).
    ///
    /// # Errors
    /// The venue's refusal (an order no longer replaceable) or a failed call.
    async fn replace(&self, venue_id: &str, r: &OrderRequest) -> Result<VenueOrder, VenueError>;
    /// The order the venue knows under its own id, where its client id may not be ours (an
    /// order modified in place keeps the client id it was placed with); none by default.
    ///
    /// # Errors
    /// A failed call.
    async fn lookup_id(&self, venue_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let _ = venue_id;
        Ok(None)
    }
}

/// What a venue reports about our orders, in the order it learned them.
#[derive(Debug, Clone, PartialEq)]
pub enum VenueEvent {
    /// Shares executed.
    Fill(VenueFill),
    /// The order ended (filled, cancelled, expired, rejected, replaced), with the venue's word.
    Ended {
        /// Ours.
        client_id: String,
        /// How.
        status: VenueStatus,
    },
}

#[derive(Debug, Clone, Default)]
struct Tracked {
    filled: f64,
    avg: f64,
    ended: bool,
}

/// Turns what a venue says about an order — a streamed update, a REST snapshot after a
/// reconnection, the answer to the submission — into fills, each execution once: an order's
/// filled quantity only grows, so a fill is the growth since the last report, priced from the
/// averages. Hearing the same thing twice, or a snapshot after the update, yields nothing new.
#[derive(Debug, Default)]
pub struct FillTracker {
    orders: std::collections::BTreeMap<String, Tracked>,
}

impl FillTracker {
    /// Starts following an order (before it is sent, so its first update is never missed).
    pub fn track(&mut self, client_id: &str) {
        self.orders.entry(client_id.to_string()).or_default();
    }

    /// Orders followed that have not ended: those a REST poll must ask about.
    pub fn open(&self) -> Vec<String> {
        self.orders
            .iter()
            .filter(|(_, t)| !t.ended)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// What `o`, as reported at `ts` with this execution's `price` when the report is of one
    /// execution, adds to what was known. Orders not followed are ignored (reconciliation
    /// reports them).
    pub fn observe(
        &mut self,
        o: &VenueOrder,
        ts: EventTime,
        price: Option<f64>,
    ) -> Vec<VenueEvent> {
        let Some(t) = self.orders.get_mut(&o.client_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let grown = o.filled - t.filled;
        if grown > 1e-9 {
            let from_averages = o
                .avg_price
                .map(|avg| (avg * o.filled - t.avg * t.filled) / grown);
            let fill_price = if t.filled == 0.0 {
                o.avg_price.or(price)
            } else {
                price.filter(|_| from_averages.is_none()).or(from_averages)
            };
            if let Some(p) = fill_price {
                out.push(VenueEvent::Fill(VenueFill {
                    order_id: o.id.clone(),
                    client_id: o.client_id.clone(),
                    symbol: o.symbol.clone(),
                    side: o.side,
                    quantity: grown,
                    price: p,
                    ts,
                    cumulative: o.filled,
                }));
                t.avg = o.avg_price.unwrap_or(p);
                t.filled = o.filled;
            }
        }
        if o.status.is_terminal() && !t.ended {
            t.ended = true;
            out.push(VenueEvent::Ended {
                client_id: o.client_id.clone(),
                status: o.status.clone(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tracker_tests {
    use super::*;

    fn order(filled: f64, avg: Option<f64>, status: VenueStatus) -> VenueOrder {
        VenueOrder {
            id: "v1".into(),
            client_id: "c1".into(),
            symbol: "EUR/USD".into(),
            side: OrderSide::Buy,
            quantity: Some(100.0),
            filled,
            avg_price: avg,
            status,
            ts: None,
        }
    }

    #[test]
    fn each_execution_once_whichever_way_it_is_heard() {
        let mut t = FillTracker::default();
        assert!(
            t.observe(&order(10.0, Some(1.1), VenueStatus::Open), 1, None)
                .is_empty(),
            "not followed"
        );
        t.track("c1");
        let a = t.observe(
            &order(40.0, Some(1.0850), VenueStatus::Open),
            10,
            Some(1.0850),
        );
        assert!(matches!(&a[..], [VenueEvent::Fill(f)] if f.quantity == 40.0 && f.price == 1.0850));
        assert!(
            t.observe(&order(40.0, Some(1.0850), VenueStatus::Open), 11, None)
                .is_empty(),
            "heard twice"
        );
        // A snapshot after a gap: 60 more at an average that puts them at 1.0860.
        let avg = (40.0 * 1.0850 + 60.0 * 1.0860) / 100.0;
        let b = t.observe(&order(100.0, Some(avg), VenueStatus::Filled), 20, None);
        assert!(
            matches!(&b[0], VenueEvent::Fill(f) if f.quantity == 60.0 && (f.price - 1.0860).abs() < 1e-12)
        );
        assert_eq!(
            b[1],
            VenueEvent::Ended {
                client_id: "c1".into(),
                status: VenueStatus::Filled
            }
        );
        assert!(t.open().is_empty());
        assert!(
            t.observe(
                &order(100.0, Some(avg), VenueStatus::Filled),
                21,
                Some(1.0860)
            )
            .is_empty()
        );
    }
}
