//! The alert sink: Telegram's Bot API `sendMessage`, Discord's Execute Webhook and PagerDuty's
//! Events API v2 (ALERTS.md §1–3), fed by [`crate::alert`] from anywhere in the run and delivered on a thread of its own, so
//! raising an alert never blocks the graph.
//!
//! A firing key already sent within the dedup window is not sent again; resolving a firing key
//! sends a resolved message. A 429 is honoured (`parameters.retry_after` in Telegram's body, a
//! float `retry_after` in Discord's, else `Retry-After`); a 5xx or a transport failure is retried
//! with a growing pause; a 4xx is permanent (a revoked token, an unknown chat or webhook) and
//! logged. Nothing is ever dropped silently: what cannot be delivered after the attempts is logged
//! with the channel's words. The Telegram token, the Discord webhook URL (its token is in the
//! path) and the PagerDuty routing key come from the environment only and are removed from every
//! logged message. PagerDuty gets only alerts at or above its configured severity (critical by
//! default: it pages someone); the alert key is its `dedup_key`, so a resolve closes the incident.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::alert::{Alert, Notify, Severity};
use crate::config::AlertsSpec;

/// A channel declared in a pipeline's `[alerts]` whose secret the environment lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "[alerts] declares {channel}, but {variable} is not set (secrets come from the environment only)"
)]
pub struct AlertConfigError {
    /// The channel.
    pub channel: &'static str,
    /// The variable that should hold its secret.
    pub variable: &'static str,
}

impl crate::fault::Blame for AlertConfigError {
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Input
    }
}

/// An environment variable, when set and not blank.
fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Telegram to `chat_id` when `FDP_TELEGRAM_TOKEN` is set.
fn telegram(chat_id: String, min_severity: Severity) -> Option<Channel> {
    Some(Channel::Telegram {
        base_url: var("FDP_TELEGRAM_BASE_URL").unwrap_or_else(|| "https://api.telegram.org".into()),
        token: var("FDP_TELEGRAM_TOKEN")?,
        chat_id,
        min_severity,
    })
}

/// Discord when `FDP_DISCORD_WEBHOOK_URL` is set.
fn discord(min_severity: Severity) -> Option<Channel> {
    Some(Channel::Discord {
        url: var("FDP_DISCORD_WEBHOOK_URL")?,
        min_severity,
    })
}

/// PagerDuty when `FDP_PAGERDUTY_ROUTING_KEY` is set.
fn pagerduty(min_severity: Severity) -> Option<Channel> {
    Some(Channel::PagerDuty {
        base_url: var("FDP_PAGERDUTY_BASE_URL")
            .unwrap_or_else(|| "https://events.pagerduty.com".into()),
        routing_key: var("FDP_PAGERDUTY_ROUTING_KEY")?,
        min_severity,
        source: var("HOSTNAME").unwrap_or_else(|| "findashpro".into()),
    })
}

/// Where alerts are delivered.
#[derive(Clone)]
pub enum Channel {
    /// A Telegram chat through a bot.
    Telegram {
        /// `https://api.telegram.org` unless a proxy's or a test's.
        base_url: String,
        /// The bot token (`123456:ABC-…`).
        token: String,
        /// The chat: a (negative) integer id or `@channel`.
        chat_id: String,
        /// The least severity sent.
        min_severity: Severity,
    },
    /// A Discord webhook: its whole URL, token included.
    Discord {
        /// `https://discord.com/api/v10/webhooks/<id>/<token>`.
        url: String,
        /// The least severity sent.
        min_severity: Severity,
    },
    /// A PagerDuty service's Events API v2 integration.
    PagerDuty {
        /// `https://events.pagerduty.com` unless a proxy's or a test's.
        base_url: String,
        /// The integration's routing key (the credential).
        routing_key: String,
        /// The least severity sent (PagerDuty pages: `critical` by default).
        min_severity: Severity,
        /// `payload.source`: this machine's name.
        source: String,
    },
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Channel {
    /// `telegram` or `discord`.
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Telegram { .. } => "telegram",
            Channel::Discord { .. } => "discord",
            Channel::PagerDuty { .. } => "pagerduty",
        }
    }

    /// Whether alerts of this severity go to this channel.
    fn wants(&self, severity: Severity) -> bool {
        match self {
            Channel::Telegram { min_severity, .. }
            | Channel::Discord { min_severity, .. }
            | Channel::PagerDuty { min_severity, .. } => severity >= *min_severity,
        }
    }

    /// `text` with the channel's secret replaced.
    fn redact(&self, text: &str) -> String {
        let secret = match self {
            Channel::Telegram { token, .. } => token.as_str(),
            Channel::Discord { url, .. } => url.rsplit('/').next().unwrap_or_default(),
            Channel::PagerDuty { routing_key, .. } => routing_key.as_str(),
        };
        if secret.is_empty() {
            text.to_string()
        } else {
            text.replace(secret, "<redacted>")
        }
    }
}

/// What one delivery attempt came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    Sent,
    /// Try again after this long.
    Retry(Duration),
    /// Never will succeed; the channel's words.
    Permanent(String),
}

enum Job {
    Fire(Alert),
    Resolve(String, String),
}

/// Counts of what the sink did, for tests and metrics.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Messages a channel accepted.
    pub sent: AtomicU64,
    /// Messages given up on (permanent error, or attempts exhausted).
    pub failed: AtomicU64,
    /// Firings not sent again within the dedup window.
    pub deduplicated: AtomicU64,
    /// Attempts that a channel asked to retry later.
    pub retried: AtomicU64,
}

/// The alert sink: queues alerts and delivers them from its own thread.
pub struct Dispatcher {
    tx: Mutex<mpsc::Sender<Job>>,
    queued: Arc<AtomicUsize>,
    /// What it did.
    pub stats: Arc<AlertStats>,
}

/// Attempts per message before it is given up (and logged).
const ATTEMPTS: u32 = 5;
/// The longest pause a channel's `retry_after` is honoured for before giving up on the message.
const MAX_PAUSE: Duration = Duration::from_secs(120);

impl Dispatcher {
    /// The sink the environment configures: Telegram with `FDP_TELEGRAM_TOKEN` and
    /// `FDP_TELEGRAM_CHAT_ID` (`FDP_TELEGRAM_BASE_URL` for a proxy), Discord with
    /// `FDP_DISCORD_WEBHOOK_URL`, PagerDuty with `FDP_PAGERDUTY_ROUTING_KEY`
    /// (`FDP_PAGERDUTY_SEVERITY`, the least severity paged, `critical` by default;
    /// `FDP_PAGERDUTY_BASE_URL`); a firing key is sent at most once per `FDP_ALERT_DEDUP_SECONDS`
    /// (600). `None` when no channel is configured.
    pub fn from_env() -> Option<Arc<Dispatcher>> {
        let mut channels = Vec::new();
        if let Some(chat_id) = var("FDP_TELEGRAM_CHAT_ID") {
            channels.extend(telegram(chat_id, Severity::Info));
        }
        channels.extend(discord(Severity::Info));
        let min = match var("FDP_PAGERDUTY_SEVERITY").as_deref() {
            None | Some("critical") => Severity::Critical,
            Some("warning") => Severity::Warning,
            Some("info") => Severity::Info,
            Some(other) => {
                tracing::error!(
                    value = other,
                    "FDP_PAGERDUTY_SEVERITY is info, warning or critical: critical used"
                );
                Severity::Critical
            }
        };
        channels.extend(pagerduty(min));
        let dedup = var("FDP_ALERT_DEDUP_SECONDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(600);
        (!channels.is_empty()).then(|| Dispatcher::new(channels, Duration::from_secs(dedup)))
    }

    /// The sink a pipeline's `[alerts]` declares: exactly its channels, each at its least
    /// severity, each secret (and a proxy's base URL) from the environment as for
    /// [`Dispatcher::from_env`].
    ///
    /// # Errors
    /// A declared channel whose secret is not set: named with its variable.
    pub fn from_spec(spec: &AlertsSpec) -> Result<Arc<Dispatcher>, AlertConfigError> {
        let missing =
            |channel: &'static str, variable: &'static str| AlertConfigError { channel, variable };
        let mut channels = Vec::new();
        if let Some(t) = &spec.telegram {
            channels.push(
                telegram(t.chat_id.clone(), t.min_severity.unwrap_or(Severity::Info))
                    .ok_or(missing("telegram", "FDP_TELEGRAM_TOKEN"))?,
            );
        }
        if let Some(d) = &spec.discord {
            channels.push(
                discord(d.min_severity.unwrap_or(Severity::Info))
                    .ok_or(missing("discord", "FDP_DISCORD_WEBHOOK_URL"))?,
            );
        }
        if let Some(p) = &spec.pagerduty {
            channels.push(
                pagerduty(p.min_severity.unwrap_or(Severity::Critical))
                    .ok_or(missing("pagerduty", "FDP_PAGERDUTY_ROUTING_KEY"))?,
            );
        }
        Ok(Dispatcher::new(
            channels,
            Duration::from_secs(spec.dedup_seconds),
        ))
    }

    /// A sink delivering to `channels`, deduplicating a firing key within `dedup`.
    pub fn new(channels: Vec<Channel>, dedup: Duration) -> Arc<Dispatcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(AlertStats::default());
        let (q, s) = (Arc::clone(&queued), Arc::clone(&stats));
        let spawned = std::thread::Builder::new()
            .name("fdp-alerts".into())
            .spawn(move || deliver_all(&rx, &channels, dedup, &q, &s));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the alert thread cannot start: alerts are only logged");
        }
        Arc::new(Dispatcher {
            tx: Mutex::new(tx),
            queued,
            stats,
        })
    }

    fn enqueue(&self, job: Job) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .tx
            .lock()
            .map_err(|_| ())
            .and_then(|tx| tx.send(job).map_err(|_| ()));
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("the alert thread is gone: the alert is only logged");
        }
    }

    /// Waits until everything queued was delivered or given up, at most `within`; whether it was.
    pub fn wait_delivered(&self, within: Duration) -> bool {
        let started = Instant::now();
        while self.queued.load(Ordering::SeqCst) > 0 {
            if started.elapsed() >= within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Notify for Dispatcher {
    fn fire(&self, alert: Alert) {
        self.enqueue(Job::Fire(alert));
    }

    fn resolve(&self, key: &str, text: &str) {
        self.enqueue(Job::Resolve(key.to_string(), text.to_string()));
    }

    fn flush(&self, within: Duration) -> bool {
        self.wait_delivered(within)
    }
}

/// The delivery thread: deduplicates, sends to every channel, retries as each one says.
fn deliver_all(
    rx: &mpsc::Receiver<Job>,
    channels: &[Channel],
    dedup: Duration,
    queued: &AtomicUsize,
    stats: &AlertStats,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "alert runtime: alerts are only logged");
            return;
        }
    };
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent("DiscordBot (https://github.com/findashpro, 1) findashpro")
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.without_url(), "alert client: alerts are only logged");
            return;
        }
    };
    // Firing keys and when each was last sent.
    let mut firing: HashMap<String, (Alert, Instant)> = HashMap::new();
    for job in rx {
        let message = match job {
            Job::Fire(a) => match firing.get(&a.key) {
                Some((_, at)) if at.elapsed() < dedup => {
                    stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                    None
                }
                _ => {
                    firing.insert(a.key.clone(), (a.clone(), Instant::now()));
                    let severity = a.severity;
                    Some((a, false, severity))
                }
            },
            Job::Resolve(key, text) => firing.remove(&key).map(|(a, _)| {
                let severity = a.severity;
                let resolved = Alert {
                    text,
                    severity: Severity::Info,
                    ..a
                };
                (resolved, true, severity)
            }),
        };
        if let Some((alert, resolved, severity)) = message {
            // A channel that did not get the firing does not get its resolution either.
            for ch in channels.iter().filter(|c| c.wants(severity)) {
                rt.block_on(deliver(&client, ch, &alert, resolved, stats));
            }
        }
        queued.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn deliver(
    client: &reqwest::Client,
    ch: &Channel,
    alert: &Alert,
    resolved: bool,
    stats: &AlertStats,
) {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let outcome = match send(client, ch, alert, resolved).await {
            Ok(o) => o,
            Err(e) => {
                last = ch.redact(&e);
                Outcome::Retry(Duration::from_millis(250 << attempt))
            }
        };
        match outcome {
            Outcome::Sent => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Permanent(words) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(channel = ch.name(), key = %alert.key, error = %ch.redact(&words), "alert refused");
                return;
            }
            Outcome::Retry(after) if after <= MAX_PAUSE && attempt < ATTEMPTS => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = ch.name(), key = %alert.key, ?after, "alert delivery retried");
                tokio::time::sleep(after).await;
            }
            Outcome::Retry(after) => {
                last = format!("{last} (asked to wait {after:?})");
                break;
            }
        }
    }
    stats.failed.fetch_add(1, Ordering::Relaxed);
    tracing::error!(channel = ch.name(), key = %alert.key, error = %last, "alert not delivered");
}

/// Escapes text for Telegram's HTML parse mode.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `n` characters.
fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

fn label(alert: &Alert, resolved: bool) -> String {
    if resolved {
        "RESOLVED".into()
    } else {
        alert.severity.as_str().to_ascii_uppercase()
    }
}

/// One attempt: the request in the channel's format, the answer classified. `Err` is a
/// transport failure (no URL in its words).
async fn send(
    client: &reqwest::Client,
    ch: &Channel,
    alert: &Alert,
    resolved: bool,
) -> Result<Outcome, String> {
    let (url, body) = match ch {
        Channel::Telegram {
            base_url,
            token,
            chat_id,
            ..
        } => {
            let text = format!(
                "<b>{}</b> {}\n{}",
                label(alert, resolved),
                html(&alert.title),
                html(&alert.text)
            );
            let chat: serde_json::Value = chat_id
                .parse::<i64>()
                .map_or_else(|_| chat_id.clone().into(), Into::into);
            (
                format!("{}/bot{token}/sendMessage", base_url.trim_end_matches('/')),
                serde_json::json!({
                    "chat_id": chat,
                    "parse_mode": "HTML",
                    "text": cut(&text, 4000),
                    "disable_notification": alert.severity == Severity::Info,
                }),
            )
        }
        Channel::Discord { url, .. } => {
            let color = match (resolved, alert.severity) {
                (true, _) => 0x2e_cc_71,
                (_, Severity::Info) => 0x34_98_db,
                (_, Severity::Warning) => 0xf1_c4_0f,
                (_, Severity::Critical) => 0x99_2d_22,
            };
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                format!("{url}{sep}wait=true"),
                serde_json::json!({
                    "username": "findashpro",
                    "content": cut(&format!("**{}** {}", label(alert, resolved), alert.title), 2000),
                    "allowed_mentions": {"parse": []},
                    "embeds": [{
                        "title": cut(&alert.title, 256),
                        "description": cut(&alert.text, 4000),
                        "color": color,
                        "fields": [{"name": "severity", "value": alert.severity.as_str(), "inline": true}],
                        "footer": {"text": cut(&format!("dedup={}", alert.key), 200)},
                    }],
                }),
            )
        }
        Channel::PagerDuty {
            base_url,
            routing_key,
            source,
            ..
        } => {
            let dedup_key = cut(&alert.key, 255);
            let body = if resolved {
                serde_json::json!({
                    "routing_key": routing_key,
                    "event_action": "resolve",
                    "dedup_key": dedup_key,
                })
            } else {
                serde_json::json!({
                    "routing_key": routing_key,
                    "event_action": "trigger",
                    "dedup_key": dedup_key,
                    "client": "findashpro",
                    "payload": {
                        "summary": cut(&format!("{}: {}", alert.title, alert.text), 1024),
                        "source": source,
                        "severity": alert.severity.as_str(),
                        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "custom_details": {"key": alert.key, "text": alert.text},
                    },
                })
            };
            (
                format!("{}/v2/enqueue", base_url.trim_end_matches('/')),
                body,
            )
        }
    };
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    let header_wait = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
    Ok(classify(ch, status, header_wait, &text))
}

/// What an answer means: 2xx sent (Telegram also needs `"ok": true`); 429 retry after the body's
/// or header's wait; 5xx retry; any other status permanent.
fn classify(ch: &Channel, status: u16, header_wait: Option<f64>, body: &str) -> Outcome {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let words = v
        .get("description")
        .or_else(|| v.get("message"))
        .and_then(|d| d.as_str())
        .map_or_else(|| cut(body, 200), str::to_string);
    // PagerDuty's 400 says what is wrong in `errors`.
    let words = match v.get("errors").and_then(|e| e.as_array()) {
        Some(errors) if !errors.is_empty() => format!(
            "{words}: {}",
            errors
                .iter()
                .filter_map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => words,
    };
    match status {
        200..=299 => match ch {
            Channel::Telegram { .. } if v.get("ok") != Some(&serde_json::Value::Bool(true)) => {
                Outcome::Permanent(format!("HTTP {status} without ok: {words}"))
            }
            _ => Outcome::Sent,
        },
        429 => {
            let body_wait = v
                .pointer("/parameters/retry_after")
                .or_else(|| v.get("retry_after"))
                .and_then(serde_json::Value::as_f64);
            // PagerDuty names no wait; its docs retry a 429 30 s apart.
            let default = if matches!(ch, Channel::PagerDuty { .. }) {
                30.0
            } else {
                1.0
            };
            let secs = body_wait.or(header_wait).unwrap_or(default).max(0.0);
            Outcome::Retry(Duration::from_secs_f64(secs))
        }
        500..=599 => Outcome::Retry(Duration::from_millis(500)),
        _ => Outcome::Permanent(format!("HTTP {status}: {words}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg() -> Channel {
        Channel::Telegram {
            base_url: "http://127.0.0.1:9".into(),
            token: "123456:ABC-DEF".into(),
            chat_id: "-100123".into(),
            min_severity: Severity::Info,
        }
    }

    #[test]
    fn answers_are_classified_as_each_api_documents() {
        let flood = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 17","parameters":{"retry_after":17}}"#;
        assert_eq!(
            classify(&tg(), 429, Some(3.0), flood),
            Outcome::Retry(Duration::from_secs(17))
        );
        let kicked = r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the supergroup chat"}"#;
        assert!(
            matches!(classify(&tg(), 403, None, kicked), Outcome::Permanent(w) if w.contains("kicked"))
        );
        assert_eq!(
            classify(&tg(), 200, None, r#"{"ok":true,"result":{}}"#),
            Outcome::Sent
        );
        let d = Channel::Discord {
            url: "http://127.0.0.1:9/api/v10/webhooks/1/TOKEN".into(),
            min_severity: Severity::Info,
        };
        let limited =
            r#"{"message":"You are being rate limited.","retry_after":64.57,"global":false}"#;
        assert_eq!(
            classify(&d, 429, Some(65.0), limited),
            Outcome::Retry(Duration::from_secs_f64(64.57))
        );
        assert_eq!(classify(&d, 204, None, ""), Outcome::Sent);
        assert!(matches!(
            classify(&d, 404, None, r#"{"message":"Unknown Webhook","code":10015}"#),
            Outcome::Permanent(w) if w.contains("Unknown Webhook")
        ));
        assert_eq!(
            classify(&d, 502, None, "<html>"),
            Outcome::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            d.redact("POST /api/v10/webhooks/1/TOKEN failed"),
            "POST /api/v10/webhooks/1/<redacted> failed"
        );
        assert_eq!(
            tg().redact("bot123456:ABC-DEF/sendMessage"),
            "bot<redacted>/sendMessage"
        );
        assert_eq!(html("a<b & c>"), "a&lt;b &amp; c&gt;");
    }

    #[test]
    fn pagerduty_answers_and_severity_floor() {
        let pd = Channel::PagerDuty {
            base_url: "http://127.0.0.1:9".into(),
            routing_key: "0123456789abcdef0123456789abcdef".into(),
            min_severity: Severity::Critical,
            source: "host".into(),
        };
        let ok = r#"{"status":"success","message":"Event processed","dedup_key":"k"}"#;
        assert_eq!(classify(&pd, 202, None, ok), Outcome::Sent);
        let invalid = r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#;
        assert!(matches!(
            classify(&pd, 400, None, invalid),
            Outcome::Permanent(w) if w.contains("Event object is invalid: Length of 'routing_key'")
        ));
        assert_eq!(
            classify(
                &pd,
                429,
                None,
                r#"{"status":"throttle event","message":"Request Limit Exceeded"}"#
            ),
            Outcome::Retry(Duration::from_secs(30)),
            "PagerDuty's documented 30 s between retries"
        );
        assert!(pd.wants(Severity::Critical) && !pd.wants(Severity::Warning));
        assert!(tg().wants(Severity::Info));
        assert_eq!(
            pd.redact("key 0123456789abcdef0123456789abcdef refused"),
            "key <redacted> refused"
        );
    }
}
