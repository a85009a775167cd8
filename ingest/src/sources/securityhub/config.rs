//! Configuration of the AWS Security Hub source.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;

/// Which Security Hub API to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityHubApi {
    /// `GetFindings`: ASFF findings (Security Hub CSPM).
    #[default]
    GetFindings,
    /// `GetFindingsV2`: OCSF findings of the new Security Hub.
    GetFindingsV2,
}

/// `[sources.<id>] type = "aws_security_hub"`.
///
/// Credentials come from the standard `aws-config` chain (environment, profile, web identity,
/// IMDS, SSO); with `role_arns`, each role is assumed in turn and read as its own account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHubConfig {
    /// The Region to read (the aggregation Region when cross-Region aggregation is on).
    pub region: String,
    /// `get_findings` (ASFF, default) or `get_findings_v2` (OCSF).
    #[serde(default)]
    pub api: SecurityHubApi,
    /// Roles to assume, one per member account; empty reads with the default credentials.
    #[serde(default)]
    pub role_arns: Vec<String>,
    /// External id required by the roles' trust policy, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Endpoint override (tests point it at 127.0.0.1; VPC endpoints).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Overlap re-read before the last `UpdatedAt` seen, for findings that become visible late.
    #[serde(default = "default_lookback", with = "serde_duration")]
    pub lookback: Duration,
    /// How far back the very first run starts.
    #[serde(default = "default_initial_lookback", with = "serde_duration")]
    pub initial_lookback: Duration,
    /// Findings per request (1–100).
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// Client-side request rate per account (GetFindings allows about 3 per second).
    #[serde(default = "default_rate")]
    pub requests_per_second: f64,
    /// Timeout of one request attempt.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Attempts per request, with jittered exponential backoff on throttling, 5xx and timeouts.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// How often open findings are re-read to pick up workflow changes that do not move
    /// `UpdatedAt` (analysts' `BatchUpdateFindings`).
    #[serde(default = "default_reconcile", with = "serde_duration")]
    pub reconcile_interval: Duration,
    /// When a finding joins an incident, set its workflow status to NOTIFIED and add a note
    /// naming the incident (`BatchUpdateFindings`; needs `securityhub:BatchUpdateFindings`).
    /// ASFF findings (`get_findings`) only.
    #[serde(default)]
    pub write_back: bool,
}

fn default_lookback() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_initial_lookback() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_page_size() -> i32 {
    100
}
fn default_rate() -> f64 {
    3.0
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_attempts() -> u32 {
    5
}
fn default_reconcile() -> Duration {
    Duration::from_secs(6 * 3600)
}

impl SecurityHubConfig {
    /// A configuration for `region` with every default.
    pub fn new(region: &str) -> SecurityHubConfig {
        SecurityHubConfig {
            region: region.to_string(),
            api: SecurityHubApi::default(),
            role_arns: Vec::new(),
            external_id: None,
            endpoint_url: None,
            lookback: default_lookback(),
            initial_lookback: default_initial_lookback(),
            page_size: default_page_size(),
            requests_per_second: default_rate(),
            timeout: default_timeout(),
            max_attempts: default_attempts(),
            reconcile_interval: default_reconcile(),
            write_back: false,
        }
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.page_size) {
            return Err(format!("page_size must be 1–100, not {}", self.page_size));
        }
        if !(self.requests_per_second > 0.0 && self.requests_per_second.is_finite()) {
            return Err("requests_per_second must be a positive number".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.region.trim().is_empty() {
            return Err("region must be set".into());
        }
        for arn in &self.role_arns {
            if !arn.starts_with("arn:aws") || !arn.contains(":role/") {
                return Err(format!("`{arn}` is not an IAM role ARN"));
            }
        }
        Ok(())
    }

    /// The scopes read in turn: one per role, or the default credentials.
    pub fn scopes(&self) -> Vec<String> {
        if self.role_arns.is_empty() {
            vec![DEFAULT_SCOPE.to_string()]
        } else {
            self.role_arns.clone()
        }
    }
}

/// Scope name of the default credentials.
pub const DEFAULT_SCOPE: &str = "default";
