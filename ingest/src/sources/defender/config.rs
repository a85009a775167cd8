//! Configuration of the Microsoft Defender XDR source.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::microsoft::ConnectionConfig;

/// What to read from Graph security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefenderFeed {
    /// `/security/alerts_v2`.
    Alerts,
    /// `/security/incidents?$expand=alerts`.
    Incidents,
    /// `/auditLogs/signIns`: Entra ID sign-ins, as Authentication records.
    Signins,
}

impl DefenderFeed {
    /// Name in cursors and messages.
    pub fn name(self) -> &'static str {
        match self {
            DefenderFeed::Alerts => "alerts_v2",
            DefenderFeed::Incidents => "incidents",
            DefenderFeed::Signins => "signins",
        }
    }
}

/// `[sources.<id>] type = "microsoft_defender"`, with `[sources.<id>.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderConfig {
    /// Tenant, credential and transport.
    pub auth: ConnectionConfig,
    /// Feeds to read (default: alerts and incidents).
    #[serde(default = "default_feeds")]
    pub feeds: Vec<DefenderFeed>,
    /// Microsoft Graph base URL (national clouds differ).
    #[serde(default = "default_graph")]
    pub graph_url: String,
    /// Overlap re-read before the last update seen: Graph shows alerts minutes late.
    #[serde(default = "default_lookback", with = "serde_duration")]
    pub lookback: Duration,
    /// How far back the very first run starts.
    #[serde(default = "default_initial", with = "serde_duration")]
    pub initial_lookback: Duration,
    /// Records per page (`$top`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_feeds() -> Vec<DefenderFeed> {
    vec![DefenderFeed::Alerts, DefenderFeed::Incidents]
}
fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}
fn default_lookback() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_initial() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_page_size() -> u32 {
    100
}

impl DefenderConfig {
    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=2000).contains(&self.page_size) {
            return Err(format!("page_size must be 1–2000, not {}", self.page_size));
        }
        if self.feeds.is_empty() {
            return Err("feeds must name at least one of alerts, incidents, signins".into());
        }
        if !self.graph_url.starts_with("https://") {
            return Err(format!(
                "graph_url `{}` must be https (use auth.endpoint_override for tests)",
                self.graph_url
            ));
        }
        Ok(())
    }
}
