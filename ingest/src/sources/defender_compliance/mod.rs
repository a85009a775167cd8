//! Defender for Cloud regulatory compliance: the assessments behind each control of each
//! standard a subscription tracks (PCI DSS, NIST SP 800-53, HIPAA, FedRAMP, CIS, …), read
//! through Azure Resource Manager: standards, then each standard's controls, then each
//! control's assessments (`Microsoft.Security/regulatoryComplianceStandards/…`), following
//! `nextLink` at every level.
//!
//! The API is a snapshot with no time or version: every run reads it whole, one page per
//! subscription. Each state of an assessment is its own finding (`<id>#FAILED`), so the store
//! keeps when an assessment was last seen in each state, and evidence reports see a control
//! pass and fail over a period.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{IngestError, Result};
use crate::microsoft::{ARM_SCOPE, ConnectionConfig, MicrosoftClient, push_record};
use crate::reader::Record;
use crate::source::{Page, Source};

/// `[sources.<id>] type = "microsoft_defender_compliance"`, with `[sources.<id>.auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefenderComplianceConfig {
    /// Tenant, credential and transport.
    pub auth: ConnectionConfig,
    /// Subscription ids to read.
    pub subscriptions: Vec<String>,
    /// Azure Resource Manager base URL.
    #[serde(default = "default_arm")]
    pub arm_url: String,
    /// `api-version` of the regulatory compliance resources.
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn default_api_version() -> String {
    "2019-01-01-preview".into()
}

impl DefenderComplianceConfig {
    /// Checks the configuration; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        super::defender_cloud::validate_subscriptions(&self.subscriptions, &self.arm_url)
    }
}

/// Reads regulatory compliance assessments as a [`Source`].
pub struct DefenderComplianceSource {
    id: String,
    config: DefenderComplianceConfig,
    client: MicrosoftClient,
    /// The next subscription of this run.
    next: usize,
}

impl DefenderComplianceSource {
    /// A source with an ARM client for `config.auth`.
    pub fn connect(
        id: &str,
        config: &DefenderComplianceConfig,
    ) -> Result<DefenderComplianceSource> {
        let fail = |message: String| IngestError::Config {
            source_id: id.to_string(),
            message,
        };
        config.validate().map_err(fail)?;
        Ok(DefenderComplianceSource {
            id: id.to_string(),
            config: config.clone(),
            client: MicrosoftClient::new(&config.auth, ARM_SCOPE).map_err(fail)?,
            next: 0,
        })
    }

    /// Every item of the ARM list at `path` (under the ARM base URL), following `nextLink`.
    async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let arm = self.config.arm_url.trim_end_matches('/');
        let mut url = format!("{arm}{path}?api-version={}", self.config.api_version);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let bytes = self
                .client
                .get(&url)
                .await
                .map_err(|e| IngestError::Upstream {
                    source_id: self.id.clone(),
                    status: e.status,
                    retry_after: None,
                    message: format!("ARM {path} failed: {}", e.message),
                })?;
            let page: Value =
                serde_json::from_slice(&bytes).map_err(|e| IngestError::Upstream {
                    source_id: self.id.clone(),
                    status: None,
                    retry_after: None,
                    message: format!("ARM {path} answered with no JSON list: {e}"),
                })?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => url = next.to_string(),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// The resource id path of a listed item (`/subscriptions/…`), from its `id`.
    fn id_of(item: &Value) -> Option<String> {
        item["id"]
            .as_str()
            .filter(|s| s.starts_with('/'))
            .map(str::to_string)
    }
}

#[async_trait]
impl Source for DefenderComplianceSource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn next_page(&mut self, _cursor: Option<&str>) -> Result<Option<Page>> {
        let Some(sub) = self.config.subscriptions.get(self.next).cloned() else {
            return Ok(None);
        };
        self.next += 1;
        let mut page = Page::default();
        let standards = self
            .list(&format!(
                "/subscriptions/{sub}/providers/Microsoft.Security/regulatoryComplianceStandards"
            ))
            .await?;
        for standard in standards {
            // A standard Defender does not assess for this subscription has no controls to read.
            if standard["properties"]["state"].as_str() == Some("Unsupported") {
                continue;
            }
            let Some(standard_id) = Self::id_of(&standard) else {
                continue;
            };
            for control in self
                .list(&format!("{standard_id}/regulatoryComplianceControls"))
                .await?
            {
                let Some(control_id) = Self::id_of(&control) else {
                    continue;
                };
                let assessments = self
                    .list(&format!("{control_id}/regulatoryComplianceAssessments"))
                    .await?;
                for (i, a) in assessments.into_iter().enumerate() {
                    let record = Record {
                        raw: a.to_string(),
                        value: a,
                    };
                    push_record(
                        &self.id,
                        &mut page,
                        &record,
                        format!("arm{control_id}/regulatoryComplianceAssessments[{i}]"),
                        None,
                    );
                }
            }
        }
        page.cursor = Some(format!("snapshot {}", chrono::Utc::now().to_rfc3339()));
        Ok(Some(page))
    }
}
