//! The HTTP client every provider shares: rustls (ring), a timeout on every request, a
//! browser-like `User-Agent` (Yahoo answers 429 to others), and answers handed back whole —
//! status, `Retry-After` and body — for the provider's own parser to classify. Transport errors
//! never carry the URL (it may hold a key).

use std::time::Duration;

use super::{ProviderConfig, ProviderError};

/// What a server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, when given in seconds.
    pub retry_after: Option<Duration>,
    /// The body, as sent.
    pub body: Vec<u8>,
}

/// A shared HTTP client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// The `User-Agent` sent: Yahoo refuses clients that do not look like a browser.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 findashpro";

impl Http {
    /// A client whose every request gives up after `timeout`.
    ///
    /// # Errors
    /// The TLS stack cannot start.
    pub fn new(timeout: Duration) -> Result<Http, ProviderError> {
        // rustls needs its crypto provider chosen once per process; a second call finds it set.
        // ring, not aws-lc (whose C build costs minutes on every clean build): rustls 0.23.48
        // deprecates ring's provider for lacking post-quantum key exchange, which the
        // providers' HTTPS does not need.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| ProviderError::Unavailable {
                provider: "http",
                status: None,
                message: e.without_url().to_string(),
            })?;
        Ok(Http { client })
    }

    /// GETs `url` (which may carry the key in its query) with `headers`, and returns the answer,
    /// whatever its status.
    ///
    /// # Errors
    /// No answer: refused connection, timeout, a body cut off. The message names neither the URL
    /// nor the key.
    pub async fn get(
        &self,
        cfg: &ProviderConfig,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Answer, ProviderError> {
        let provider = cfg.kind.name();
        let unavailable = |e: reqwest::Error| ProviderError::Unavailable {
            provider,
            status: None,
            message: cfg.redact(&transport_message(&e)),
        };
        let mut rq = self.client.get(url);
        for (k, v) in headers {
            rq = rq.header(*k, v.as_str());
        }
        let resp = rq.send().await.map_err(unavailable)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(unavailable)?.to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// What failed, without the URL: `timed out`, `connection refused`, ...
fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body was cut off"
    } else {
        "request failed"
    };
    let mut chain = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    format!("{what}{chain}")
}
