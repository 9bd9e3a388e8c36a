//! Interactive Brokers through the Client Portal Web API (BROKERS.md §2a, the recommended one):
//! the session kept alive with `/tickle`, contract ids looked up once per symbol, orders placed
//! with the reply/confirm flow answered by policy, live orders (read twice: the first snapshot is
//! often empty), positions page by page.
//!
//! The gateway's address and the account come from configuration; a live account (ids not
//! starting with `DU`, IBKR's paper prefix) is refused unless `live` is set. An order whose answer
//! never came is looked up among the live orders by its `cOID` before it is placed again.

pub mod wire;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::sinks::broker::venue::{
    OrderRequest, Venue, VenueError, VenueFill, VenueOrder, VenuePosition, http_client,
};
use wire::{Placement, SecDef, Tickle};

const VENUE: &str = "ibkr";

/// The local Client Portal Gateway's default base URL.
pub const GATEWAY_URL: &str = "https://localhost:5000/v1/api";

/// Where and how to reach the gateway.
#[derive(Debug, Clone)]
pub struct IbkrConfig {
    /// Base URL up to `/v1/api`.
    pub base_url: String,
    /// The account orders go to (`DU…` for paper).
    pub account: String,
    /// Accept the gateway's self-signed certificate (it has no other).
    pub accept_self_signed: bool,
    /// Questions answered `confirmed: true` by their message id (`o163`, `o354`, …); any other
    /// question refuses the order.
    pub confirm: Vec<String>,
    /// Most question rounds for one order.
    pub max_replies: usize,
    /// Each request gives up after this.
    pub timeout: Duration,
    /// Placements of one order (each after looking it up).
    pub attempts: u32,
}

impl IbkrConfig {
    /// A configuration; a live account needs `live`.
    ///
    /// # Errors
    /// [`VenueError::NotLive`] for a live account without `live`, [`VenueError::NoAccount`] for
    /// none.
    pub fn new(base_url: &str, account: &str, live: bool) -> Result<Self, VenueError> {
        if account.trim().is_empty() {
            return Err(VenueError::NoAccount { venue: "ibkr" });
        }
        if !account.starts_with("DU") && !live {
            return Err(VenueError::NotLive {
                venue: "ibkr",
                what: format!("live account {account}"),
            });
        }
        Ok(IbkrConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            account: account.to_string(),
            accept_self_signed: true,
            confirm: vec!["o163".into(), "o354".into(), "o0".into()],
            max_replies: 5,
            timeout: Duration::from_secs(10),
            attempts: 3,
        })
    }
}

/// A client of one account through the gateway. Placements are serialized: a question must be
/// answered before any other request, or IBKR cancels the pending order.
#[derive(Debug)]
pub struct IbkrClient {
    cfg: IbkrConfig,
    http: reqwest::Client,
    conids: Mutex<BTreeMap<String, String>>,
    placing: tokio::sync::Mutex<bool>,
}

impl IbkrClient {
    /// A client; no request is made.
    ///
    /// # Errors
    /// The TLS stack cannot start.
    pub fn new(cfg: IbkrConfig) -> Result<Self, VenueError> {
        let http = http_client(VENUE, cfg.timeout, cfg.accept_self_signed)?;
        Ok(IbkrClient {
            cfg,
            http,
            conids: Mutex::new(BTreeMap::new()),
            placing: tokio::sync::Mutex::new(false),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VenueError> {
        // POST endpoints want a JSON body even when empty.
        let body = body.or_else(|| (method == Method::POST).then(|| serde_json::json!({})));
        let mut rq = self
            .http
            .request(method, format!("{}{path}", self.cfg.base_url));
        if let Some(b) = &body {
            rq = rq.json(b);
        }
        let resp = rq
            .send()
            .await
            .map_err(|e| VenueError::transport(VENUE, None, e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| VenueError::transport(VENUE, Some(status), e))?;
        let text = || {
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(300)
                .collect::<String>()
        };
        match status {
            200..=299 => serde_json::from_slice(&bytes).map_err(|e| VenueError::Protocol {
                venue: VENUE,
                what: "a gateway answer",
                message: e.to_string(),
            }),
            401 | 403 => Err(VenueError::Unauthorized {
                venue: VENUE,
                message: text(),
            }),
            404 => Err(VenueError::NotFound { venue: VENUE }),
            // IBKR puts the address in a penalty box for ten minutes.
            429 => Err(VenueError::RateLimited {
                venue: VENUE,
                retry_after: Duration::from_secs(600),
            }),
            s if s >= 500 => Err(VenueError::Unavailable {
                venue: VENUE,
                status: Some(s),
                message: text(),
            }),
            s => Err(VenueError::Rejected {
                venue: VENUE,
                status: s,
                reason: text(),
            }),
        }
    }

    /// Keeps the session alive; an unauthenticated or taken-over session is an error.
    ///
    /// # Errors
    /// [`VenueError::Unauthorized`] when the brokerage session is not authenticated.
    pub async fn tickle(&self) -> Result<(), VenueError> {
        let v = self.call(Method::POST, "/tickle", None).await?;
        let t: Tickle = serde_json::from_value(v).map_err(|e| VenueError::Protocol {
            venue: VENUE,
            what: "/tickle",
            message: e.to_string(),
        })?;
        let a = t.iserver.map(|i| i.auth_status).unwrap_or_default();
        if !a.authenticated || a.competing {
            return Err(VenueError::Unauthorized {
                venue: VENUE,
                message: format!(
                    "brokerage session {}",
                    if a.competing {
                        "taken by another login"
                    } else {
                        "not authenticated"
                    }
                ),
            });
        }
        Ok(())
    }

    /// Ticks the session every `every` until the task is aborted; a failure is logged.
    pub fn keep_alive(self: &std::sync::Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.tickle().await {
                    tracing::warn!(error = %e, "ibkr: keep-alive failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// The contract id of a stock symbol, looked up once and kept.
    ///
    /// # Errors
    /// No stock under the symbol.
    pub async fn conid(&self, symbol: &str) -> Result<String, VenueError> {
        if let Some(c) = self.conids.lock().ok().and_then(|m| m.get(symbol).cloned()) {
            return Ok(c);
        }
        let v = self
            .call(
                Method::POST,
                "/iserver/secdef/search",
                Some(serde_json::json!({"symbol": symbol})),
            )
            .await?;
        let found: Vec<SecDef> = serde_json::from_value(v).unwrap_or_default();
        let c = found
            .iter()
            .find(|d| d.symbol == symbol && d.sections.iter().any(|s| s.sec_type == "STK"))
            .or_else(|| found.first())
            .map(|d| d.conid.clone())
            .ok_or_else(|| VenueError::Rejected {
                venue: VENUE,
                status: 200,
                reason: format!("no contract for {symbol}"),
            })?;
        if let Ok(mut m) = self.conids.lock() {
            m.insert(symbol.to_string(), c.clone());
        }
        Ok(c)
    }

    async fn place_once(&self, r: &OrderRequest) -> Result<String, VenueError> {
        let path = format!("/iserver/account/{}/orders", self.cfg.account);
        self.place_at(&path, r, false).await
    }

    /// Posts `r` to `path` — a placement (`{"orders": [one]}`), or with `single` the one order
    /// object a modification takes — and answers the gateway's questions by policy until it
    /// acknowledges with an order id.
    async fn place_at(
        &self,
        path: &str,
        r: &OrderRequest,
        single: bool,
    ) -> Result<String, VenueError> {
        let conid = self.conid(&r.symbol).await?;
        let _one_at_a_time = self.placing.lock().await;
        let mut body = wire::order_body(r, &self.cfg.account, &conid);
        if single {
            body = body["orders"][0].take();
        }
        let mut answer = self.call(Method::POST, path, Some(body)).await?;
        for _ in 0..=self.cfg.max_replies {
            match wire::placement(&answer) {
                Placement::Placed { order_id, .. } => return Ok(order_id),
                Placement::Refused(why) => {
                    return Err(VenueError::Rejected {
                        venue: VENUE,
                        status: 200,
                        reason: why,
                    });
                }
                Placement::Question {
                    id,
                    message,
                    message_ids,
                } => {
                    let ok = !message_ids.is_empty()
                        && message_ids.iter().all(|m| self.cfg.confirm.contains(m));
                    let reply = serde_json::json!({"confirmed": ok});
                    let back = self
                        .call(Method::POST, &format!("/iserver/reply/{id}"), Some(reply))
                        .await?;
                    if !ok {
                        return Err(VenueError::Rejected {
                            venue: VENUE,
                            status: 200,
                            reason: format!(
                                "question {message_ids:?} not confirmed by policy: {message}"
                            ),
                        });
                    }
                    answer = back;
                }
            }
        }
        Err(VenueError::Rejected {
            venue: VENUE,
            status: 200,
            reason: format!("more than {} questions", self.cfg.max_replies),
        })
    }

    /// Places an order once: after an answer that never came, the live orders are searched for
    /// its `cOID` before it is placed again.
    ///
    /// # Errors
    /// IBKR's refusal (or a question the policy does not confirm) with its words; the last
    /// transport error after every attempt.
    pub async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let mut attempt = 1;
        loop {
            let err = match self.place_once(r).await {
                Ok(_) => {
                    if let Some(o) = self.find(&r.client_id).await? {
                        return Ok(o);
                    }
                    return Err(VenueError::Protocol {
                        venue: VENUE,
                        what: "the live orders",
                        message: format!("{} acknowledged but not listed", r.client_id),
                    });
                }
                Err(e) if e.outcome_unknown() => match self.find(&r.client_id).await {
                    Ok(Some(o)) => return Ok(o),
                    Ok(None) => e,
                    Err(other) => other,
                },
                Err(e) => return Err(e),
            };
            if attempt >= self.cfg.attempts {
                return Err(err);
            }
            attempt += 1;
        }
    }

    /// The live orders, asked twice when the first snapshot comes back empty (the gateway's
    /// pre-flight quirk).
    ///
    /// # Errors
    /// A failed call.
    pub async fn live_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let mut rows = Vec::new();
        for _ in 0..2 {
            let v = self
                .call(Method::GET, "/iserver/account/orders?force=true", None)
                .await?;
            rows = v
                .get("orders")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !rows.is_empty() {
                break;
            }
        }
        Ok(rows.iter().filter_map(wire::live_order).collect())
    }

    /// The order placed under `client_id`, if the gateway lists it.
    ///
    /// # Errors
    /// A failed call.
    pub async fn find(&self, client_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        Ok(self
            .live_orders()
            .await?
            .into_iter()
            .find(|o| o.client_id == client_id))
    }

    /// Modifies the live order `order_id` to `r`'s prices, quantity and time in force (the body
    /// is one order object, shaped as in a placement; the same question flow); the order keeps
    /// its id and its `cOID`.
    ///
    /// # Errors
    /// As the gateway refuses it (an order no longer live), or a failed call.
    pub async fn modify(&self, order_id: &str, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let path = format!("/iserver/account/{}/order/{order_id}", self.cfg.account);
        self.place_at(&path, r, true).await?;
        self.order_by_id(order_id)
            .await?
            .ok_or_else(|| VenueError::Protocol {
                venue: VENUE,
                what: "the live orders",
                message: format!("order {order_id} modified but not listed"),
            })
    }

    /// The live order with IBKR's id `order_id`, if listed.
    ///
    /// # Errors
    /// A failed call.
    pub async fn order_by_id(&self, order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        Ok(self
            .live_orders()
            .await?
            .into_iter()
            .find(|o| o.id == order_id))
    }

    /// Cancels an order.
    ///
    /// # Errors
    /// As the gateway refuses it.
    pub async fn cancel(&self, order_id: &str) -> Result<(), VenueError> {
        let path = format!("/iserver/account/{}/order/{order_id}", self.cfg.account);
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// The account's executions of the last `days` (at most 7, the gateway's limit), each with
    /// its order's filled shares after it over what the list holds.
    ///
    /// # Errors
    /// A failed call.
    pub async fn executions(&self, days: u8) -> Result<Vec<VenueFill>, VenueError> {
        let v = self
            .call(
                Method::GET,
                &format!("/iserver/account/trades?days={}", days.clamp(1, 7)),
                None,
            )
            .await?;
        let rows = v.as_array().cloned().unwrap_or_default();
        Ok(wire::cumulate(
            rows.iter().filter_map(wire::execution).collect(),
        ))
    }

    /// Every position, page by page until an empty page.
    ///
    /// # Errors
    /// A failed page.
    pub async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let mut out = Vec::new();
        for page in 0..1000 {
            let v = self
                .call(
                    Method::GET,
                    &format!("/portfolio/{}/positions/{page}", self.cfg.account),
                    None,
                )
                .await?;
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                break;
            }
            out.extend(rows.iter().filter_map(wire::position));
        }
        Ok(out)
    }
}

impl Venue for IbkrClient {
    fn name(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        IbkrClient::submit(self, r).await
    }

    async fn lookup(&self, client_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.find(client_id).await
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        self.live_orders().await.map(|all| {
            all.into_iter()
                .filter(|o| !o.status.is_terminal())
                .collect()
        })
    }

    async fn cancel(&self, venue_id: &str) -> Result<(), VenueError> {
        IbkrClient::cancel(self, venue_id).await
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        IbkrClient::positions(self).await
    }

    async fn executions(&self) -> Result<Vec<VenueFill>, VenueError> {
        IbkrClient::executions(self, 7).await
    }

    async fn replace(&self, venue_id: &str, r: &OrderRequest) -> Result<VenueOrder, VenueError> {
        self.modify(venue_id, r).await
    }

    async fn lookup_id(&self, venue_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.order_by_id(venue_id).await
    }
}
