//! `BatchImportFindings`: Cairn's own findings (its correlated incidents) into Security Hub, so
//! AWS-side teams see them in their console. At most 100 findings per call and 240 KB per
//! finding, as the API allows; a finding is identified by `(ProductArn, Id)`, so importing the
//! same id again updates it rather than adding one.

use std::collections::BTreeMap;

use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::error::DisplayErrorContext;
use aws_sdk_securityhub::primitives::DateTime as AwsDateTime;
use aws_sdk_securityhub::types::{AwsSecurityFinding, Resource, Severity, SeverityLabel};
use chrono::{DateTime, Utc};

use super::client::{RateLimiter, sdk_client};
use super::config::{DEFAULT_SCOPE, SecurityHubConfig};
use crate::error::{IngestError, Result};

/// Largest ASFF finding Security Hub imports.
pub const MAX_FINDING_BYTES: usize = 240 * 1024;

/// A finding to import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFinding {
    /// `Id` (stable: the same id updates the finding).
    pub id: String,
    /// `GeneratorId` (what made it: a rule id, or `cairn`).
    pub generator_id: String,
    /// `Title` (at most 256 characters are kept).
    pub title: String,
    /// `Description` (at most 1,024 characters are kept).
    pub description: String,
    /// `Severity.Label`: `INFORMATIONAL`, `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub severity: String,
    /// `Types` (`TTPs/Credential Access`, …; at least one).
    pub types: Vec<String>,
    /// `CreatedAt`.
    pub created_at: DateTime<Utc>,
    /// `UpdatedAt`.
    pub updated_at: DateTime<Utc>,
    /// `Resources` as `(Type, Id)` (at least one).
    pub resources: Vec<(String, String)>,
    /// `ProductFields`.
    pub product_fields: BTreeMap<String, String>,
    /// `SourceUrl`, if any.
    pub source_url: Option<String>,
}

/// What Security Hub did with one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Ids imported.
    pub imported: Vec<String>,
    /// Ids refused, with Security Hub's reason.
    pub failed: Vec<(String, String)>,
}

/// Imports Cairn findings into one account's Security Hub.
pub struct SecurityHubImport {
    client: Client,
    region: String,
    account_id: String,
    limiter: RateLimiter,
}

fn aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_millis(t.timestamp_millis())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl SecurityHubImport {
    /// A client for `account_id` with the configuration's region, endpoint and credentials
    /// (its default scope).
    pub async fn connect(
        config: &SecurityHubConfig,
        account_id: &str,
    ) -> Result<SecurityHubImport> {
        config.validate().map_err(|message| IngestError::Config {
            source_id: "security_hub import".into(),
            message,
        })?;
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IngestError::Config {
                source_id: "security_hub import".into(),
                message: format!("account_id `{account_id}` is not a 12-digit AWS account id"),
            });
        }
        Ok(SecurityHubImport {
            client: sdk_client(config, DEFAULT_SCOPE).await,
            region: config.region.clone(),
            account_id: account_id.to_string(),
            limiter: RateLimiter::new(config.requests_per_second),
        })
    }

    /// The `ProductArn` of the account's own (custom) findings.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:aws:securityhub:{}:{}:product/{}/default",
            self.region, self.account_id, self.account_id
        )
    }

    fn asff(&self, f: &ImportFinding) -> std::result::Result<AwsSecurityFinding, String> {
        if !SeverityLabel::values().contains(&f.severity.as_str()) {
            return Err(format!("severity `{}` is not an ASFF label", f.severity));
        }
        let label = SeverityLabel::from(f.severity.as_str());
        if f.resources.is_empty() || f.types.is_empty() {
            return Err("a finding needs at least one resource and one type".into());
        }
        let resources: Vec<Resource> = f
            .resources
            .iter()
            .take(32)
            .map(|(t, id)| {
                Resource::builder()
                    .r#type(truncate(t, 256))
                    .id(truncate(id, 512))
                    .build()
            })
            .collect();
        let mut b = AwsSecurityFinding::builder()
            .schema_version("2018-10-08")
            .id(truncate(&f.id, 512))
            .product_arn(self.product_arn())
            .generator_id(truncate(&f.generator_id, 512))
            .aws_account_id(&self.account_id)
            .created_at(aws_time(f.created_at).to_string())
            .updated_at(aws_time(f.updated_at).to_string())
            .severity(Severity::builder().label(label).build())
            .title(truncate(&f.title, 256))
            .description(truncate(&f.description, 1024))
            .set_types(Some(f.types.iter().take(50).cloned().collect()))
            .set_resources(Some(resources));
        for (k, v) in &f.product_fields {
            b = b.product_fields(truncate(k, 128), truncate(v, 2048));
        }
        if let Some(u) = &f.source_url {
            b = b.source_url(u);
        }
        Ok(b.build())
    }

    /// Imports `findings`, 100 per call; a failed call is an error, the findings Security Hub
    /// refuses are reported with the reason.
    pub async fn send(&self, findings: &[ImportFinding]) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let mut ready = Vec::new();
        for f in findings {
            match self.asff(f) {
                Ok(a) => {
                    // The size limit is the serialized finding's; the JSON is close to it.
                    let size = serde_json::to_vec(&(
                        &f.title,
                        &f.description,
                        &f.product_fields,
                        &f.resources,
                    ))
                    .map_or(0, |v| v.len());
                    if size > MAX_FINDING_BYTES {
                        report.failed.push((
                            f.id.clone(),
                            format!("larger than {MAX_FINDING_BYTES} bytes"),
                        ));
                    } else {
                        ready.push(a);
                    }
                }
                Err(e) => report
                    .failed
                    .push((f.id.clone(), format!("not a valid ASFF finding: {e}"))),
            }
        }
        for chunk in ready.chunks(super::MAX_PER_CALL) {
            self.limiter.acquire().await;
            let out = self
                .client
                .batch_import_findings()
                .set_findings(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| IngestError::Upstream {
                    source_id: "security_hub import".into(),
                    status: e.raw_response().map(|r| r.status().as_u16()),
                    retry_after: None,
                    message: format!(
                        "BatchImportFindings into account {} in {} failed: {}",
                        self.account_id,
                        self.region,
                        DisplayErrorContext(&e)
                    ),
                })?;
            let failed: BTreeMap<String, String> = out
                .failed_findings()
                .iter()
                .map(|f| {
                    (
                        f.id().unwrap_or_default().to_string(),
                        format!(
                            "{}: {}",
                            f.error_code().unwrap_or_default(),
                            f.error_message().unwrap_or_default()
                        ),
                    )
                })
                .collect();
            for a in chunk {
                let id = a.id().unwrap_or_default().to_string();
                match failed.get(&id) {
                    Some(why) => report.failed.push((id, why.clone())),
                    None => report.imported.push(id),
                }
            }
        }
        Ok(report)
    }
}
