//! One Alpaca account as a stream of events about our orders: orders are sent through the REST
//! client's once-only submission, their updates arrive over the trade-updates websocket, and on
//! every (re)connection the orders still open are polled over REST, so a fill that happened while
//! the stream was down is reported anyway — once ([`FillTracker`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AlpacaConfig;
use super::rest::AlpacaClient;
use super::updates::{self, StreamStats, Update};
use crate::sinks::broker::venue::{FillTracker, OrderRequest, VenueError, VenueEvent, VenueOrder};

/// A live link to one Alpaca account.
pub struct AlpacaLink {
    client: AlpacaClient,
    tracker: Arc<Mutex<FillTracker>>,
    events_tx: mpsc::UnboundedSender<VenueEvent>,
    events: mpsc::UnboundedReceiver<VenueEvent>,
    stats: Arc<StreamStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AlpacaLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn apply(
    tracker: &Mutex<FillTracker>,
    tx: &mpsc::UnboundedSender<VenueEvent>,
    o: &VenueOrder,
    ts: i64,
    price: Option<f64>,
) {
    let events = match tracker.lock() {
        Ok(mut t) => t.observe(o, ts, price),
        Err(_) => return,
    };
    for e in events {
        let _ = tx.send(e);
    }
}

impl AlpacaLink {
    /// Starts the trade-updates stream (in the background, reconnecting) for `cfg`'s account.
    ///
    /// # Errors
    /// The HTTP client cannot start.
    pub fn start(cfg: AlpacaConfig) -> Result<Self, VenueError> {
        let client = AlpacaClient::new(cfg.clone())?;
        let tracker = Arc::new(Mutex::new(FillTracker::default()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let (utx, mut urx) = mpsc::channel(1024);
        let stats = Arc::new(StreamStats::default());
        let stream = tokio::spawn(updates::run(cfg, utx, Arc::clone(&stats)));
        let (c, t, tx) = (client.clone(), Arc::clone(&tracker), events_tx.clone());
        let pump = tokio::spawn(async move {
            while let Some(u) = urx.recv().await {
                match u {
                    Update::Trade(u) => {
                        let ts = u.time().unwrap_or_default();
                        let price = u.price.filter(|_| u.qty.is_some());
                        apply(&t, &tx, &u.order.to_venue(), ts, price);
                    }
                    Update::Listening => {
                        // Nothing is replayed: ask about every order still open.
                        let open = t.lock().map(|t| t.open()).unwrap_or_default();
                        for id in open {
                            match c.by_client_id(&id).await {
                                Ok(o) => apply(&t, &tx, &o, o.ts.unwrap_or_default(), None),
                                Err(VenueError::NotFound { .. }) => {}
                                Err(e) => {
                                    tracing::warn!(client_id = %id, error = %e, "alpaca: polling an open order failed")
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(AlpacaLink {
            client,
            tracker,
            events_tx,
            events,
            stats,
            tasks: vec![stream, pump],
        })
    }

    /// The REST client (positions, account, clock, open orders).
    pub fn client(&self) -> &AlpacaClient {
        &self.client
    }

    /// The stream's counters.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Sends an order once (see [`AlpacaClient::submit`]) and follows it; what its answer
    /// already says (an immediate fill) is reported as events too.
    ///
    /// # Errors
    /// Alpaca's refusal with its reason, or no answer after every attempt.
    pub async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        if let Ok(mut t) = self.tracker.lock() {
            t.track(&r.client_id);
        }
        let o = self.client.submit(r).await?;
        apply(
            &self.tracker,
            &self.events_tx,
            &o,
            o.ts.unwrap_or_default(),
            None,
        );
        Ok(o)
    }

    /// Follows an order sent earlier (a restarted run adopting what it finds at the broker).
    pub fn follow(&self, client_id: &str) {
        if let Ok(mut t) = self.tracker.lock() {
            t.track(client_id);
        }
    }

    /// The next event, waiting at most `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<VenueEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}
