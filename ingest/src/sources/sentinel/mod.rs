//! The Microsoft Sentinel source: incidents of Log Analytics workspaces through Azure
//! Resource Manager (`Microsoft.SecurityInsights/incidents`), incremental on
//! `properties/lastModifiedTimeUtc`, each new incident version with its alerts.
//!
//! Incidents are filtered and ordered on their last modification, follow `nextLink`, and are
//! de-duplicated by `(name, lastModifiedTimeUtc)` inside the look-back overlap. The alerts of
//! an incident come from its `alerts` list action (a POST), in the same page.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::error::{IngestError, Result};
use crate::microsoft::odata::{Feed, FeedRunner, parse_list};
use crate::microsoft::{ARM_SCOPE, ConnectionConfig, push_record, unkeyed_to_dead_letters};
use crate::source::{Page, Source};

/// A Sentinel workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the workspace.
    pub resource_group: String,
    /// Log Analytics workspace name.
    pub workspace: String,
}

/// `[sources.<id>] type = "microsoft_sentinel"`, with `[sources.<id>.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// Tenant, credential and transport.
    pub auth: ConnectionConfig,
    /// Workspaces to read.
    pub workspaces: Vec<Workspace>,
    /// Azure Resource Manager base URL.
    #[serde(default = "default_arm")]
    pub arm_url: String,
    /// `api-version` of `Microsoft.SecurityInsights`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Overlap re-read before the last modification seen.
    #[serde(default = "default_lookback", with = "serde_duration")]
    pub lookback: Duration,
    /// How far back the very first run starts.
    #[serde(default = "default_initial", with = "serde_duration")]
    pub initial_lookback: Duration,
    /// Incidents per page (`$top`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Also read each incident's alerts.
    #[serde(default = "yes")]
    pub alerts: bool,
}

fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn default_api_version() -> String {
    "2024-03-01".into()
}
fn default_lookback() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_initial() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_page_size() -> u32 {
    50
}
fn yes() -> bool {
    true
}

impl SentinelConfig {
    /// Checks the configuration; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.workspaces.is_empty() {
            return Err("workspaces must name at least one workspace".into());
        }
        if !self.arm_url.starts_with("https://") {
            return Err(format!(
                "arm_url `{}` must be https (use auth.endpoint_override for tests)",
                self.arm_url
            ));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(format!("page_size must be 1–1000, not {}", self.page_size));
        }
        Ok(())
    }
}

/// Reads Sentinel incidents (and their alerts) as a [`Source`].
pub struct SentinelSource {
    config: SentinelConfig,
    runner: FeedRunner,
}

impl SentinelSource {
    /// A source with an ARM client for `config.auth`.
    pub fn connect(id: &str, config: &SentinelConfig) -> Result<SentinelSource> {
        Ok(SentinelSource {
            config: config.clone(),
            runner: FeedRunner::connect(
                id,
                "Sentinel",
                &config.auth,
                ARM_SCOPE,
                config.validate(),
            )?,
        })
    }

    fn feeds(&self) -> Vec<Feed> {
        let arm = self.config.arm_url.trim_end_matches('/');
        self.config
            .workspaces
            .iter()
            .map(|w| Feed {
                name: format!("incidents/{}", w.workspace),
                url: format!(
                    "{arm}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.OperationalInsights/workspaces/{}/providers/Microsoft.SecurityInsights/incidents",
                    w.subscription_id, w.resource_group, w.workspace
                ),
                filter_field: Some("properties/lastModifiedTimeUtc".into()),
                version_pointer: "/properties/lastModifiedTimeUtc".into(),
                version_extra: Vec::new(),
                id_pointer: "/name".into(),
                query: vec![
                    ("api-version".into(), self.config.api_version.clone()),
                    ("$orderby".into(), "properties/lastModifiedTimeUtc asc".into()),
                    ("$top".into(), self.config.page_size.to_string()),
                ],
                next_link_field: "nextLink".into(),
            })
            .collect()
    }

    /// `POST {incident}/{action}` (the incident's `alerts` or `entities`).
    async fn list_action(&self, incident_id: &str, action: &str) -> Result<Vec<u8>> {
        let url = format!(
            "{}{incident_id}/{action}?api-version={}",
            self.config.arm_url.trim_end_matches('/'),
            self.config.api_version
        );
        self.runner
            .client
            .post(&url, "{}")
            .await
            .map_err(|e| IngestError::Upstream {
                source_id: self.runner.source_id.clone(),
                status: e.status,
                retry_after: None,
                message: format!(
                    "Sentinel {action} of incident {incident_id} failed: {}",
                    e.message
                ),
            })
    }

    /// Puts the incident's entities (accounts, hosts, IPs; `POST {incident}/entities`) on its
    /// finding, so it merges with what other sources say about the same person or machine.
    async fn entities(&self, incident: &mut crate::Finding, incident_id: &str) -> Result<()> {
        let body = self.list_action(incident_id, "entities").await?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| IngestError::Upstream {
                source_id: self.runner.source_id.clone(),
                status: None,
                retry_after: None,
                message: format!(
                    "Sentinel entities of incident {incident_id}: unreadable body: {e}"
                ),
            })?;
        let mut keys = crate::normalize::identity::IdentityKeys::new();
        for entity in parsed
            .get("entities")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            let kind = entity
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            let p = &entity["properties"];
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
            match kind {
                "Account" => {
                    let upn = match (s("accountName"), s("upnSuffix")) {
                        (Some(n), Some(d)) => Some(format!("{n}@{d}")),
                        _ => None,
                    };
                    if incident.actor_user.is_none() {
                        incident.actor_user = upn.clone().or_else(|| s("accountName"));
                        incident.actor_uid = s("sid").or_else(|| s("aadUserId"));
                        incident.actor_domain = s("ntDomain");
                    }
                    keys.upn(upn.as_deref())
                        .sid(s("sid").as_deref())
                        .aad(s("aadUserId").as_deref())
                        .account(s("ntDomain").as_deref(), s("accountName").as_deref());
                }
                "Host" if incident.device_hostname.is_none() => {
                    incident.device_hostname = s("hostName").map(|h| match s("dnsDomain") {
                        Some(d) => format!("{h}.{d}").to_lowercase(),
                        None => h.to_lowercase(),
                    });
                }
                "Ip" if incident.src_ip.is_none() => incident.src_ip = s("address"),
                _ => {}
            }
        }
        if incident.identity_keys.is_empty() {
            incident.identity_keys = keys.into_vec();
        }
        Ok(())
    }

    /// The alerts of one incident (`POST {incident}/alerts`).
    async fn alerts(&self, page: &mut Page, incident_id: &str) -> Result<()> {
        let body = self.list_action(incident_id, "alerts").await?;
        let (alerts, _) =
            parse_list(&body, "nextLink").map_err(|message| IngestError::Upstream {
                source_id: self.runner.source_id.clone(),
                status: None,
                retry_after: None,
                message: format!("Sentinel alerts of incident {incident_id}: {message}"),
            })?;
        for (i, alert) in alerts.iter().enumerate() {
            push_record(
                &self.runner.source_id,
                page,
                alert,
                format!("arm{incident_id}/alerts[{i}]"),
                None,
            );
        }
        Ok(())
    }
}

#[async_trait]
impl Source for SentinelSource {
    fn id(&self) -> &str {
        &self.runner.source_id
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Option<Page>> {
        let lookback = chrono::Duration::from_std(self.config.lookback).unwrap_or_default();
        let initial = chrono::Duration::from_std(self.config.initial_lookback).unwrap_or_default();
        let feeds = self.feeds();
        let Some(polled) = self.runner.next(&feeds, cursor, lookback, initial).await? else {
            return Ok(None);
        };
        let mut page = Page::default();
        let at = format!("arm/{}/page {}", polled.feed.name, polled.page_no);
        for (i, record) in polled.page.records.iter().enumerate() {
            push_record(
                &self.runner.source_id,
                &mut page,
                record,
                format!("{at}[{i}]"),
                None,
            );
            if let (Some(incident), Some(id)) = (
                page.findings.last_mut(),
                record.value.get("id").and_then(|v| v.as_str()),
            ) && incident.class_uid == crate::normalize::CLASS_INCIDENT_FINDING
            {
                self.entities(incident, id).await?;
            }
            if self.config.alerts
                && let Some(id) = record.value.get("id").and_then(|v| v.as_str())
            {
                self.alerts(&mut page, id).await?;
            }
        }
        unkeyed_to_dead_letters(&self.runner.source_id, &mut page, polled.page.unkeyed, &at);
        page.cursor = Some(polled.cursor);
        Ok(Some(page))
    }
}
