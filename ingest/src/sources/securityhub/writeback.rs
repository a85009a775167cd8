//! Write-back to Security Hub: when a finding joins a Cairn incident, `BatchUpdateFindings`
//! sets its workflow status to NOTIFIED and adds a note naming the incident, so AWS-side
//! teams see in their own console that Cairn has it.
//!
//! Calls carry at most 100 findings (the API's limit) and one note (the API takes one per
//! call), so findings are grouped by incident. Each finding is updated in the account that
//! owns it: through the role of that account when `role_arns` are configured, else with the
//! default credentials (an administrator account can update its members' findings).
//! Delivery is at least once: the caller records what Security Hub reports as processed.

use std::collections::BTreeMap;

use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::error::DisplayErrorContext;
use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, NoteUpdate, WorkflowStatus, WorkflowUpdate,
};

use super::client::{RateLimiter, sdk_client};
use super::config::{DEFAULT_SCOPE, SecurityHubConfig};
use crate::error::{IngestError, Result};

/// Largest number of findings per `BatchUpdateFindings` call.
pub const MAX_PER_CALL: usize = 100;
/// Largest note Security Hub accepts.
const MAX_NOTE: usize = 512;

/// One finding to mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    /// The account that owns the finding (`AwsAccountId`).
    pub account_id: String,
    /// `ProductArn` of the finding.
    pub product_arn: String,
    /// `Id` of the finding.
    pub id: String,
    /// The note (the incident it joined).
    pub note: String,
}

/// What Security Hub did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBackReport {
    /// `(product_arn, id)` updated.
    pub processed: Vec<(String, String)>,
    /// `(product_arn, id)` refused, with Security Hub's reason.
    pub unprocessed: Vec<((String, String), String)>,
}

/// Updates findings in Security Hub.
pub struct SecurityHubWriteBack {
    source_id: String,
    region: String,
    clients: BTreeMap<String, Client>,
    limiter: RateLimiter,
}

/// The account id of an IAM role ARN (`arn:aws:iam::111122223333:role/x`).
fn account_of(role_arn: &str) -> Option<&str> {
    role_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

impl SecurityHubWriteBack {
    /// Clients for every scope of the source's configuration.
    pub async fn connect(
        source_id: &str,
        config: &SecurityHubConfig,
    ) -> Result<SecurityHubWriteBack> {
        config.validate().map_err(|message| IngestError::Config {
            source_id: source_id.to_string(),
            message,
        })?;
        let mut clients = BTreeMap::new();
        for scope in config.scopes() {
            clients.insert(scope.clone(), sdk_client(config, &scope).await);
        }
        Ok(SecurityHubWriteBack {
            source_id: source_id.to_string(),
            region: config.region.clone(),
            clients,
            limiter: RateLimiter::new(config.requests_per_second),
        })
    }

    fn client_for(&self, account: &str) -> Option<(&str, &Client)> {
        self.clients
            .iter()
            .find(|(scope, _)| account_of(scope) == Some(account))
            .or_else(|| {
                self.clients
                    .iter()
                    .find(|(scope, _)| scope.as_str() == DEFAULT_SCOPE)
            })
            .or_else(|| self.clients.iter().next())
            .map(|(s, c)| (s.as_str(), c))
    }

    /// Marks `items`; a failed call is an error naming the scope, the others still count.
    pub async fn send(&self, items: &[WriteBack]) -> Result<WriteBackReport> {
        let mut groups: BTreeMap<(&str, &str), Vec<&WriteBack>> = BTreeMap::new();
        for w in items {
            groups
                .entry((w.account_id.as_str(), w.note.as_str()))
                .or_default()
                .push(w);
        }
        let mut report = WriteBackReport::default();
        for ((account, note), findings) in groups {
            let Some((scope, client)) = self.client_for(account) else {
                continue;
            };
            let note: String = note.chars().take(MAX_NOTE).collect();
            for chunk in findings.chunks(MAX_PER_CALL) {
                self.limiter.acquire().await;
                let ids: Vec<AwsSecurityFindingIdentifier> = chunk
                    .iter()
                    .map(|w| {
                        AwsSecurityFindingIdentifier::builder()
                            .id(&w.id)
                            .product_arn(&w.product_arn)
                            .build()
                    })
                    .collect();
                let out = client
                    .batch_update_findings()
                    .set_finding_identifiers(Some(ids))
                    .workflow(WorkflowUpdate::builder().status(WorkflowStatus::Notified).build())
                    .note(NoteUpdate::builder().text(&note).updated_by("cairn").build())
                    .send()
                    .await
                    .map_err(|e| IngestError::Upstream {
                        source_id: self.source_id.clone(),
                        status: e.raw_response().map(|r| r.status().as_u16()),
                        retry_after: None,
                        message: format!(
                            "BatchUpdateFindings for account {account} (scope `{scope}`) in {} failed: {}",
                            self.region,
                            DisplayErrorContext(&e)
                        ),
                    })?;
                for p in out.processed_findings() {
                    report.processed.push((
                        p.product_arn().unwrap_or_default().to_string(),
                        p.id().unwrap_or_default().to_string(),
                    ));
                }
                for u in out.unprocessed_findings() {
                    let id = u.finding_identifier().map(|f| {
                        (
                            f.product_arn().unwrap_or_default().to_string(),
                            f.id().unwrap_or_default().to_string(),
                        )
                    });
                    let reason = format!(
                        "{}: {}",
                        u.error_code().unwrap_or("unknown"),
                        u.error_message().unwrap_or_default()
                    );
                    if let Some(id) = id {
                        report.unprocessed.push((id, reason));
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_name_their_account() {
        assert_eq!(
            account_of("arn:aws:iam::111122223333:role/Reader"),
            Some("111122223333")
        );
        assert_eq!(account_of("default"), None);
    }
}
