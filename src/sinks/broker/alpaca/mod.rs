//! Alpaca's Trading API v2 (BROKERS.md §1): orders, positions, account and clock over REST
//! ([`rest`]), trade updates over its websocket ([`updates`]), in Alpaca's JSON ([`wire`]).
//!
//! Keys come from the environment only (`APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`) and are never
//! logged or put in an error. Paper and live hosts are told apart by configuration: the adapter
//! refuses the live host unless `live` is set.

pub mod link;
pub mod rest;
pub mod updates;
pub mod wire;

use std::time::Duration;

use crate::sinks::broker::venue::VenueError;

/// Alpaca's paper trading host.
pub const PAPER_URL: &str = "https://paper-api.alpaca.markets";
/// Alpaca's live trading host.
pub const LIVE_URL: &str = "https://api.alpaca.markets";
/// The paper trade-updates stream.
pub const PAPER_STREAM_URL: &str = "wss://paper-api.alpaca.markets/stream";
/// The live trade-updates stream.
pub const LIVE_STREAM_URL: &str = "wss://api.alpaca.markets/stream";

/// Where and how to reach Alpaca.
#[derive(Clone)]
pub struct AlpacaConfig {
    /// REST base URL (paper by default; a local server in tests).
    pub base_url: String,
    /// Trade-updates websocket URL.
    pub stream_url: String,
    /// `APCA-API-KEY-ID`.
    pub key_id: String,
    /// `APCA-API-SECRET-KEY`.
    pub secret: String,
    /// Each request gives up after this.
    pub timeout: Duration,
    /// Attempts of one order submission (each after looking the order up).
    pub attempts: u32,
    /// First wait before a retry or a reconnect; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
    /// Ping the stream this often; three silent periods mean it is dead.
    pub ping_every: Duration,
}

impl std::fmt::Debug for AlpacaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaConfig")
            .field("base_url", &self.base_url)
            .field("stream_url", &self.stream_url)
            .field("key_id", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AlpacaConfig {
    /// A configuration for `base_url` and `stream_url` with the keys from the environment.
    /// The live host is refused unless `live`.
    ///
    /// # Errors
    /// [`VenueError::Unset`] when a key is missing, [`VenueError::NotLive`] when the live host is
    /// named without `live`.
    pub fn from_env(base_url: &str, stream_url: &str, live: bool) -> Result<Self, VenueError> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| VenueError::Unset {
                    venue: "alpaca",
                    key: k.to_string(),
                })
        };
        AlpacaConfig::new(
            base_url,
            stream_url,
            &var("APCA_API_KEY_ID")?,
            &var("APCA_API_SECRET_KEY")?,
            live,
        )
    }

    /// A configuration with explicit keys (tests); the live host is refused unless `live`.
    ///
    /// # Errors
    /// [`VenueError::NotLive`] for the live host without `live`.
    pub fn new(
        base_url: &str,
        stream_url: &str,
        key_id: &str,
        secret: &str,
        live: bool,
    ) -> Result<Self, VenueError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !live && (base_url == LIVE_URL || stream_url == LIVE_STREAM_URL) {
            return Err(VenueError::NotLive {
                venue: "alpaca",
                what: "the live host".into(),
            });
        }
        Ok(AlpacaConfig {
            base_url,
            stream_url: stream_url.to_string(),
            key_id: key_id.to_string(),
            secret: secret.to_string(),
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            ping_every: Duration::from_secs(10),
        })
    }
}
