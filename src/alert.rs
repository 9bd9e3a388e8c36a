//! Alerts: what the run tells people about (a dead letter, a breaker opening, the spend warning,
//! the run starting and stopping), raised from anywhere without knowing where they go. A sink
//! (`sinks::alerts`: Telegram, Discord) registers itself once per process; until one does, an
//! alert is only logged. Raising never blocks: the sink queues and delivers on a thread of its
//! own.

use std::sync::{Arc, OnceLock};

/// How loud an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs a look.
    Warning,
    /// Needs someone now.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert. `key` names the condition (`breaker:polygon`): a repeat of a firing key within the
/// dedup window is not sent again, and [`resolve`] of the key sends a resolved message.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The condition's name, the deduplication key.
    pub key: String,
    /// How loud.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The details.
    pub text: String,
}

/// Where alerts go: implemented by the alert sink.
pub trait Notify: Send + Sync {
    /// Queues `alert` (firing) for delivery; must not block.
    fn fire(&self, alert: Alert);
    /// Queues the resolution of `key` if it is firing; must not block.
    fn resolve(&self, key: &str, text: &str);
    /// Waits until what is queued was delivered or given up, at most `within`.
    fn flush(&self, within: std::time::Duration) -> bool;
}

static SINK: OnceLock<Arc<dyn Notify>> = OnceLock::new();

/// Registers the process's alert sink; `false` when one was registered already.
pub fn install(sink: Arc<dyn Notify>) -> bool {
    SINK.set(sink).is_ok()
}

/// Raises an alert: logged always, and sent when a sink is registered.
pub fn raise(
    key: impl Into<String>,
    severity: Severity,
    title: impl Into<String>,
    text: impl Into<String>,
) {
    let alert = Alert {
        key: key.into(),
        severity,
        title: title.into(),
        text: text.into(),
    };
    tracing::warn!(key = %alert.key, severity = alert.severity.as_str(), title = %alert.title, "alert");
    if let Some(s) = SINK.get() {
        s.fire(alert);
    }
}

/// Clears the condition `key`: a resolved message when it was firing.
pub fn resolve(key: &str, text: &str) {
    if let Some(s) = SINK.get() {
        s.resolve(key, text);
    }
}

/// Waits for the registered sink to deliver what is queued, at most `within` (before the process
/// exits); `true` when there is nothing left or no sink.
pub fn flush(within: std::time::Duration) -> bool {
    SINK.get().is_none_or(|s| s.flush(within))
}
