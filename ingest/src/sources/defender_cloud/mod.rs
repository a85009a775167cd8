//! The Microsoft Defender for Cloud source: security alerts of Azure subscriptions through
//! Azure Resource Manager (`Microsoft.Security/alerts`), including the multicloud alerts on
//! AWS resources (their ARN is kept as the resource, so they join Security Hub findings).
//!
//! The alerts API has no time filter: every run reads the subscription's alerts, following
//! `nextLink`, and delivers only versions it has not delivered yet, a version being the alert
//! with its `processingEndTimeUtc` and `status` (dismissing an alert makes a new version).
//! Delivered versions are remembered for `retention` (Defender keeps alerts 90 days).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::error::Result;
use crate::microsoft::odata::{Feed, FeedRunner};
use crate::microsoft::{ARM_SCOPE, ConnectionConfig, push_record, unkeyed_to_dead_letters};
use crate::source::{Page, Source};

/// `[sources.<id>] type = "microsoft_defender_for_cloud"`, with `[sources.<id>.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderCloudConfig {
    /// Tenant, credential and transport.
    pub auth: ConnectionConfig,
    /// Subscription ids to read.
    pub subscriptions: Vec<String>,
    /// Azure Resource Manager base URL.
    #[serde(default = "default_arm")]
    pub arm_url: String,
    /// `api-version` of `Microsoft.Security/alerts`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// How long delivered versions are remembered.
    #[serde(default = "default_retention", with = "serde_duration")]
    pub retention: Duration,
}

fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn default_api_version() -> String {
    "2022-01-01".into()
}
fn default_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}

impl DefenderCloudConfig {
    /// Checks the configuration; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_subscriptions(&self.subscriptions, &self.arm_url)
    }
}

/// The checks every ARM source of subscriptions makes; the message names the key.
pub(crate) fn validate_subscriptions(
    subscriptions: &[String],
    arm_url: &str,
) -> std::result::Result<(), String> {
    if subscriptions.is_empty() {
        return Err("subscriptions must name at least one subscription id".into());
    }
    if !arm_url.starts_with("https://") {
        return Err(format!(
            "arm_url `{arm_url}` must be https (use auth.endpoint_override for tests)"
        ));
    }
    Ok(())
}

/// Reads Defender for Cloud alerts as a [`Source`].
pub struct DefenderCloudSource {
    config: DefenderCloudConfig,
    runner: FeedRunner,
}

impl DefenderCloudSource {
    /// A source with an ARM client for `config.auth`.
    pub fn connect(id: &str, config: &DefenderCloudConfig) -> Result<DefenderCloudSource> {
        Ok(DefenderCloudSource {
            config: config.clone(),
            runner: FeedRunner::connect(id, "ARM", &config.auth, ARM_SCOPE, config.validate())?,
        })
    }

    fn feeds(&self) -> Vec<Feed> {
        let arm = self.config.arm_url.trim_end_matches('/');
        self.config
            .subscriptions
            .iter()
            .map(|sub| Feed {
                name: format!("alerts/{sub}"),
                url: format!("{arm}/subscriptions/{sub}/providers/Microsoft.Security/alerts"),
                filter_field: None,
                version_pointer: "/properties/processingEndTimeUtc".into(),
                version_extra: vec!["/properties/status".into()],
                id_pointer: "/id".into(),
                query: vec![("api-version".into(), self.config.api_version.clone())],
                next_link_field: "nextLink".into(),
            })
            .collect()
    }
}

#[async_trait]
impl Source for DefenderCloudSource {
    fn id(&self) -> &str {
        &self.runner.source_id
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Option<Page>> {
        let retention = chrono::Duration::from_std(self.config.retention).unwrap_or_default();
        let feeds = self.feeds();
        let Some(polled) = self
            .runner
            .next(&feeds, cursor, retention, retention)
            .await?
        else {
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
        }
        unkeyed_to_dead_letters(&self.runner.source_id, &mut page, polled.page.unkeyed, &at);
        page.cursor = Some(polled.cursor);
        Ok(Some(page))
    }
}
