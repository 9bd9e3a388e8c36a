//! Alpaca's trade-updates websocket (BROKERS.md §1.7): authenticate, listen to `trade_updates`,
//! and hand every update on. Frames come as text or binary (the paper stream sends binary), a
//! frame that is not JSON is counted and skipped, a silent or closed connection is reconnected
//! with a doubling backoff. Alpaca replays nothing that happened while the connection was down:
//! every (re)connection is announced with [`Update::Listening`], on which the caller polls REST
//! for what it may have missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::AlpacaConfig;
use super::wire::{StreamMessage, TradeUpdate};
use crate::sinks::broker::venue::VenueError;

const VENUE: &str = "alpaca";

/// What the stream hands on.
#[derive(Debug, Clone)]
pub enum Update {
    /// Authorized and listening (again): whatever happened while it was not is not coming —
    /// poll REST for it.
    Listening,
    /// An order's update.
    Trade(Box<TradeUpdate>),
}

/// Counters of the stream's life.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Connections that reached `listening`.
    pub sessions: AtomicU64,
    /// Frames that were not a readable message, skipped.
    pub garbage: AtomicU64,
}

/// Runs the stream until `tx` is closed: connect, authenticate, listen, forward; on any end,
/// wait (doubling from `backoff` to `max_backoff`, reset by a session that reached listening)
/// and start again.
pub async fn run(cfg: AlpacaConfig, tx: mpsc::Sender<Update>, stats: Arc<StreamStats>) {
    // wss:// needs rustls' provider chosen for the process (ring, as for every HTTPS client).
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut wait = cfg.backoff;
    while !tx.is_closed() {
        let listened_before = stats.sessions.load(Ordering::Relaxed);
        match session(&cfg, &tx, &stats).await {
            Ok(()) => tracing::warn!("alpaca trade updates: the server closed the stream"),
            Err(e) => tracing::warn!(error = %e, "alpaca trade updates: the stream failed"),
        }
        if stats.sessions.load(Ordering::Relaxed) > listened_before {
            wait = cfg.backoff;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(cfg.max_backoff);
    }
}

fn broken(message: impl std::fmt::Display) -> VenueError {
    VenueError::Unavailable {
        venue: VENUE,
        status: None,
        message: message.to_string(),
    }
}

/// The text of a data frame; `None` for control frames.
fn payload(m: &Message) -> Option<&[u8]> {
    match m {
        Message::Text(t) => Some(t.as_bytes()),
        Message::Binary(b) => Some(b),
        _ => None,
    }
}

/// One connection, from connect to its end.
async fn session(
    cfg: &AlpacaConfig,
    tx: &mpsc::Sender<Update>,
    stats: &StreamStats,
) -> Result<(), VenueError> {
    let (mut ws, _) = tokio::time::timeout(
        cfg.timeout,
        tokio_tungstenite::connect_async(cfg.stream_url.as_str()),
    )
    .await
    .map_err(|_| broken("connecting timed out"))?
    .map_err(broken)?;
    let auth = serde_json::json!({
        "action": "authenticate",
        "data": {"key_id": cfg.key_id, "secret_key": cfg.secret},
    });
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .map_err(broken)?;
    let mut listening = false;
    let mut ping = tokio::time::interval(cfg.ping_every);
    ping.tick().await;
    let mut heard = Instant::now();
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = ping.tick() => {
                if heard.elapsed() > cfg.ping_every * 3 {
                    return Err(broken("no frame for three ping periods"));
                }
                ws.send(Message::Ping(Vec::new().into())).await.map_err(broken)?;
                continue;
            }
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.map_err(broken)?;
        heard = Instant::now();
        if matches!(frame, Message::Close(_)) {
            return Ok(());
        }
        let Some(bytes) = payload(&frame) else {
            continue;
        };
        let msg: StreamMessage = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                stats.garbage.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, bytes = bytes.len(), "alpaca trade updates: skipped a frame that is not a message");
                continue;
            }
        };
        match msg.stream.as_str() {
            "authorization" => {
                let status = msg.data.get("status").and_then(|s| s.as_str());
                if status != Some("authorized") {
                    return Err(VenueError::Unauthorized {
                        venue: VENUE,
                        message: format!("trade updates: {}", status.unwrap_or("no status")),
                    });
                }
                let listen = serde_json::json!({
                    "action": "listen",
                    "data": {"streams": ["trade_updates"]},
                });
                ws.send(Message::Text(listen.to_string().into()))
                    .await
                    .map_err(broken)?;
            }
            "listening" => {
                let on = msg
                    .data
                    .get("streams")
                    .and_then(|s| s.as_array())
                    .is_some_and(|s| s.iter().any(|x| x == "trade_updates"));
                if on && !listening {
                    listening = true;
                    stats.sessions.fetch_add(1, Ordering::Relaxed);
                    if tx.send(Update::Listening).await.is_err() {
                        return Ok(());
                    }
                }
            }
            "trade_updates" => match serde_json::from_value::<TradeUpdate>(msg.data) {
                Ok(u) => {
                    if tx.send(Update::Trade(Box::new(u))).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    stats.garbage.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "alpaca trade updates: skipped an unreadable update");
                }
            },
            other => tracing::debug!(stream = other, "alpaca: a message of another stream"),
        }
    }
}
