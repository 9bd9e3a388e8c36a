//! `[alerts]`: which channels a pipeline's runs alert, how loud an alert must be for each, and
//! how long a firing condition stays quiet. The credentials are never in the file: each channel
//! takes its secret from the environment, and a declared channel whose secret is missing is an
//! error at start, not a silence discovered during an outage.
//!
//! ```toml
//! [alerts]
//! dedup_seconds = 600
//! telegram = { chat_id = "-1001234567890", min_severity = "warning" }   # FDP_TELEGRAM_TOKEN
//! discord = {}                                                          # FDP_DISCORD_WEBHOOK_URL
//! pagerduty = { min_severity = "critical" }                             # FDP_PAGERDUTY_ROUTING_KEY
//! ```

use serde::Deserialize;

use crate::alert::Severity;

/// The `[alerts]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// A firing condition is sent at most once per this many seconds (600).
    #[serde(default = "default_dedup")]
    pub dedup_seconds: u64,
    /// Telegram (`sendMessage` through a bot; the token in `FDP_TELEGRAM_TOKEN`).
    pub telegram: Option<TelegramSpec>,
    /// A Discord webhook (its URL, which carries its token, in `FDP_DISCORD_WEBHOOK_URL`).
    pub discord: Option<ChannelSpec>,
    /// PagerDuty Events v2 (the routing key in `FDP_PAGERDUTY_ROUTING_KEY`); pages only at
    /// `critical` unless told otherwise.
    pub pagerduty: Option<ChannelSpec>,
}

fn default_dedup() -> u64 {
    600
}

/// Telegram's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSpec {
    /// The chat: a (negative) integer id or `@channel`.
    pub chat_id: String,
    /// The least severity sent (`info`).
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

/// A channel whose only setting is how loud an alert must be.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// The least severity sent (`info`; PagerDuty's default is `critical`).
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

impl AlertsSpec {
    /// Checks what serde cannot: a chat id that is not empty, a dedup window of at least a
    /// second.
    ///
    /// # Errors
    /// What is wrong, for the caller to place in the file.
    pub fn check(&self) -> Result<(), String> {
        if self.dedup_seconds == 0 {
            return Err("alerts.dedup_seconds must be at least 1".into());
        }
        if let Some(t) = &self.telegram
            && t.chat_id.trim().is_empty()
        {
            return Err("alerts.telegram.chat_id is empty".into());
        }
        if self.telegram.is_none() && self.discord.is_none() && self.pagerduty.is_none() {
            return Err("[alerts] names no channel (telegram, discord, pagerduty)".into());
        }
        Ok(())
    }
}
