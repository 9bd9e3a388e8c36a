//! Alpaca's REST endpoints, with the one rule that makes sending an order safe: an order whose
//! answer never came (a timeout, a 5xx, a reset connection) is looked up by its client order id
//! before it is sent again, and a "client_order_id must be unique" refusal means it arrived.
//! HTTP status is authoritative; `code` and `message` are detail (BROKERS.md §1.6).

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::AlpacaConfig;
use super::wire::{Account, Clock, ErrorBody, NewOrder, Order, Position, Replace};
use crate::order::{OrderType, TimeInForce};
use crate::sinks::broker::venue::{
    OrderRequest, Venue, VenueAccount, VenueError, VenueOrder, VenuePosition, http_client,
};

const VENUE: &str = "alpaca";

/// Most orders one page of `GET /v2/orders` returns.
const PAGE: usize = 500;

/// A client of one Alpaca account.
#[derive(Debug, Clone)]
pub struct AlpacaClient {
    cfg: AlpacaConfig,
    http: reqwest::Client,
}

/// What a call answered before it was read as JSON.
struct Reply {
    status: u16,
    reset: Option<u64>,
    body: Vec<u8>,
}

impl AlpacaClient {
    /// A client; no request is made.
    ///
    /// # Errors
    /// The TLS stack cannot start.
    pub fn new(cfg: AlpacaConfig) -> Result<Self, VenueError> {
        let http = http_client(VENUE, cfg.timeout, false)?;
        Ok(AlpacaClient { cfg, http })
    }

    /// The configuration.
    pub fn config(&self) -> &AlpacaConfig {
        &self.cfg
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Reply, VenueError> {
        let mut rq = self
            .http
            .request(method, format!("{}{path}", self.cfg.base_url))
            .header("APCA-API-KEY-ID", &self.cfg.key_id)
            .header("APCA-API-SECRET-KEY", &self.cfg.secret);
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let unavailable = |e: reqwest::Error| VenueError::transport(VENUE, None, e);
        let resp = rq.send().await.map_err(unavailable)?;
        let status = resp.status().as_u16();
        let reset = resp
            .headers()
            .get("X-Ratelimit-Reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.bytes().await.map_err(unavailable)?.to_vec();
        Ok(Reply {
            status,
            reset,
            body,
        })
    }

    /// Calls and reads a 2xx answer as `T`; any other status as the error it means.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &'static str,
    ) -> Result<T, VenueError> {
        let r = self.call(method, path, body).await?;
        if !(200..300).contains(&r.status) {
            return Err(error_of(&r));
        }
        serde_json::from_slice(&r.body).map_err(|e| VenueError::Protocol {
            venue: VENUE,
            what,
            message: e.to_string(),
        })
    }

    async fn post_order(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let body = serde_json::to_value(NewOrder::of(r)).map_err(|e| VenueError::Protocol {
            venue: VENUE,
            what: "an order",
            message: e.to_string(),
        })?;
        let o: Order = self
            .json(Method::POST, "/v2/orders", Some(body), "POST /v2/orders")
            .await?;
        Ok(o.to_venue())
    }

    /// Sends an order once: after an answer that never came it looks the order up by its client
    /// id and sends it again (with the same id) only when Alpaca does not know it; a rate limit
    /// waits for its reset. At most `attempts` posts.
    ///
    /// # Errors
    /// Alpaca's refusal (buying power, market closed, pattern day trader, bad input) with its
    /// reason; the last transport error when every attempt failed.
    pub async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let mut wait = self.cfg.backoff;
        let mut attempt = 1;
        loop {
            let err = match self.post_order(r).await {
                Ok(o) => return Ok(o),
                Err(VenueError::Rejected {
                    status: 422,
                    reason,
                    ..
                }) if duplicate(&reason) => {
                    tracing::info!(client_id = %r.client_id, "order already at Alpaca: adopting it");
                    return self.by_client_id(&r.client_id).await;
                }
                Err(e @ VenueError::RateLimited { .. }) => e,
                Err(e) if e.outcome_unknown() => {
                    tracing::warn!(client_id = %r.client_id, error = %e, "no answer to an order: looking it up");
                    match self.by_client_id(&r.client_id).await {
                        Ok(o) => return Ok(o),
                        Err(VenueError::NotFound { .. }) => e,
                        Err(other) => other,
                    }
                }
                Err(e) => return Err(e),
            };
            if attempt >= self.cfg.attempts {
                return Err(err);
            }
            attempt += 1;
            let pause = match &err {
                VenueError::RateLimited { retry_after, .. } => *retry_after,
                _ => wait,
            };
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(self.cfg.max_backoff);
        }
    }

    /// The order sent under `client_id`.
    ///
    /// # Errors
    /// [`VenueError::NotFound`] when Alpaca has none.
    pub async fn by_client_id(&self, client_id: &str) -> Result<VenueOrder, VenueError> {
        let path = format!(
            "/v2/orders:by_client_order_id?client_order_id={}",
            percent_encoding::utf8_percent_encode(client_id, percent_encoding::NON_ALPHANUMERIC)
        );
        let o: Order = self
            .json(
                Method::GET,
                &path,
                None,
                "GET /v2/orders:by_client_order_id",
            )
            .await?;
        Ok(o.to_venue())
    }

    /// Every open order, oldest first, page by page.
    ///
    /// # Errors
    /// A failed page.
    pub async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v2/orders?status=open&limit={PAGE}&direction=asc");
            if let Some(a) = &after {
                path.push_str("&after=");
                path.push_str(
                    &percent_encoding::utf8_percent_encode(a, percent_encoding::NON_ALPHANUMERIC)
                        .to_string(),
                );
            }
            let page: Vec<Order> = self
                .json(Method::GET, &path, None, "GET /v2/orders")
                .await?;
            let full = page.len() >= PAGE;
            let last = page.last().and_then(|o| o.submitted_at.clone());
            out.extend(page.iter().map(Order::to_venue));
            match (full, last) {
                (true, Some(l)) if after.as_ref() != Some(&l) => after = Some(l),
                _ => return Ok(out),
            }
        }
    }

    /// Asks Alpaca to cancel an order (the cancellation itself arrives as a trade update).
    ///
    /// # Errors
    /// [`VenueError::NotFound`]; [`VenueError::Rejected`] (422) when it can no longer be
    /// cancelled, e.g. filled.
    pub async fn cancel(&self, order_id: &str) -> Result<(), VenueError> {
        let r = self
            .call(Method::DELETE, &format!("/v2/orders/{order_id}"), None)
            .await?;
        if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(error_of(&r))
        }
    }

    /// Replaces a working order's prices (and quantity), the new order taking `client_id` when
    /// given; Alpaca answers with the new order (a new id; the old one ends `replaced`).
    ///
    /// # Errors
    /// As Alpaca refuses it (422: no longer replaceable).
    pub async fn replace(
        &self,
        order_id: &str,
        order_type: OrderType,
        tif: TimeInForce,
        quantity: Option<f64>,
        client_id: Option<&str>,
    ) -> Result<VenueOrder, VenueError> {
        let body = serde_json::to_value(Replace::of(order_type, tif, quantity, client_id))
            .map_err(|e| VenueError::Protocol {
                venue: VENUE,
                what: "a replacement",
                message: e.to_string(),
            })?;
        let o: Order = self
            .json(
                Method::PATCH,
                &format!("/v2/orders/{order_id}"),
                Some(body),
                "PATCH /v2/orders",
            )
            .await?;
        Ok(o.to_venue())
    }

    /// Every open position.
    ///
    /// # Errors
    /// A failed call.
    pub async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let p: Vec<Position> = self
            .json(Method::GET, "/v2/positions", None, "GET /v2/positions")
            .await?;
        Ok(p.iter().map(Position::to_venue).collect())
    }

    /// The account.
    ///
    /// # Errors
    /// A failed call.
    pub async fn account(&self) -> Result<VenueAccount, VenueError> {
        let a: Account = self
            .json(Method::GET, "/v2/account", None, "GET /v2/account")
            .await?;
        Ok(a.to_venue())
    }

    /// The market clock.
    ///
    /// # Errors
    /// A failed call.
    pub async fn clock(&self) -> Result<Clock, VenueError> {
        self.json(Method::GET, "/v2/clock", None, "GET /v2/clock")
            .await
    }
}

/// Whether a 422's message says the client order id is taken (Alpaca has spelled it two ways).
fn duplicate(message: &str) -> bool {
    let m = message.to_ascii_lowercase().replace('_', " ");
    m.contains("client order id") && m.contains("unique")
}

/// The error a non-2xx answer means.
fn error_of(r: &Reply) -> VenueError {
    let body: ErrorBody = serde_json::from_slice(&r.body).unwrap_or_default();
    let message = if body.message.is_empty() {
        String::from_utf8_lossy(&r.body).chars().take(200).collect()
    } else {
        body.message
    };
    match r.status {
        401 => VenueError::Unauthorized {
            venue: VENUE,
            message,
        },
        403 if message.eq_ignore_ascii_case("forbidden") => VenueError::Unauthorized {
            venue: VENUE,
            message,
        },
        404 => VenueError::NotFound { venue: VENUE },
        429 => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let secs = r
                .reset
                .map_or(1, |reset| reset.saturating_sub(now))
                .clamp(1, 60);
            VenueError::RateLimited {
                venue: VENUE,
                retry_after: Duration::from_secs(secs),
            }
        }
        s if s >= 500 => VenueError::Unavailable {
            venue: VENUE,
            status: Some(s),
            message,
        },
        s => VenueError::Rejected {
            venue: VENUE,
            status: s,
            reason: message,
        },
    }
}

impl Venue for AlpacaClient {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        AlpacaClient::submit(self, r).await
    }

    async fn lookup(&self, client_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        match self.by_client_id(client_id).await {
            Ok(o) => Ok(Some(o)),
            Err(VenueError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        AlpacaClient::open_orders(self).await
    }

    async fn cancel(&self, venue_id: &str) -> Result<(), VenueError> {
        AlpacaClient::cancel(self, venue_id).await
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        AlpacaClient::positions(self).await
    }

    async fn replace(&self, venue_id: &str, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        AlpacaClient::replace(
            self,
            venue_id,
            r.order_type,
            r.tif,
            Some(r.quantity),
            Some(&r.client_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            reset: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_are_errors_by_who_is_at_fault() {
        let e = error_of(&reply(
            403,
            r#"{"buying_power":"176531.28","code":40310000,"cost_basis":"48640000","message":"insufficient buying power"}"#,
        ));
        assert!(
            matches!(e, VenueError::Rejected { status: 403, ref reason, .. } if reason == "insufficient buying power")
        );
        assert!(matches!(
            error_of(&reply(404, "")),
            VenueError::NotFound { .. }
        ));
        assert!(error_of(&reply(503, "<html>")).outcome_unknown());
        assert!(matches!(
            error_of(&reply(
                429,
                r#"{"code":42910000,"message":"rate limit exceeded"}"#
            )),
            VenueError::RateLimited { .. }
        ));
        assert!(duplicate("client_order_id must be unique"));
        assert!(duplicate("client order id must be unique"));
        assert!(!duplicate("insufficient buying power"));
    }
}
