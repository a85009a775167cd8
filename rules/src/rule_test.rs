//! Inline rule tests: input records and the detections they must (and must not) give.
//!
//! ```yaml
//! tests:
//!   - name: five failures, then the logon
//!     findings:
//!       - { source: ad.windows, class_uid: 3002, event_code: "4771", at: 0m, identity_id: bob }
//!       - { source: ad.windows, class_uid: 3002, event_code: "4624", at: 10m, identity_id: bob }
//!     expect:
//!       - { entity_key: bob, findings: 2 }
//!   - name: a near miss
//!     findings: [ … ]
//!     expect: []          # the rule must stay silent
//! ```
//!
//! A test finding names only what the rule looks at; the rest takes defaults (`at` is minutes
//! or hours after a fixed instant, `uid` is `f1`, `f2`, … in order). `directory` entries fill
//! the `directory` and `identities` tables. Each expected detection names its entity and,
//! optionally, how many findings it cites; the detections found must be exactly those
//! expected. `cairn rules test` runs them on the production engine.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use cairn_ingest::directory::provider;
use cairn_ingest::{DirectoryKind, DirectoryObject, Finding, Severity};

/// One inline test of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    /// What the case shows.
    pub name: String,
    /// The input records.
    #[serde(default)]
    pub findings: Vec<TestFinding>,
    /// Directory accounts (for rules over the `directory` table).
    #[serde(default)]
    pub directory: Vec<TestAccount>,
    /// The detections the rule must give, and no others.
    pub expect: Vec<ExpectedDetection>,
}

/// A detection a test expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDetection {
    /// Its entity.
    pub entity_key: String,
    /// How many findings it cites, if the test says.
    #[serde(default)]
    pub findings: Option<usize>,
}

/// A directory account of a test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAccount {
    /// Its identity id (also its only key, as `upn:<identity>`).
    pub identity: String,
    /// `active_directory`, `entra_id`, `aws_iam`, `aws_identity_center`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Whether it can sign in.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Whether it is privileged.
    #[serde(default)]
    pub privileged: Option<bool>,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_provider() -> String {
    provider::ACTIVE_DIRECTORY.into()
}

/// A finding of a test: the columns a rule reads, everything else defaulted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFinding {
    /// Finding uid (default `f<n>`).
    #[serde(default)]
    pub uid: Option<String>,
    /// Source (`ad.windows`, `aws.securityhub`, `azure.defender`, …).
    pub source: String,
    /// Event time as an offset from the test's fixed start: `0m`, `90s`, `2h`.
    #[serde(default)]
    pub at: Option<String>,
    /// OCSF class.
    #[serde(default)]
    pub class_uid: i32,
    /// Event code (Windows event id, GuardDuty type, …).
    #[serde(default)]
    pub event_code: Option<String>,
    /// Severity name (default informational).
    #[serde(default)]
    pub severity: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Provider status.
    #[serde(default)]
    pub status: Option<String>,
    /// `AWS` or `Azure`.
    #[serde(default)]
    pub cloud_provider: Option<String>,
    /// Cloud account / AD domain.
    #[serde(default)]
    pub account_uid: Option<String>,
    /// Cloud resource id.
    #[serde(default)]
    pub resource_uid: Option<String>,
    /// Cloud resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Acting account.
    #[serde(default)]
    pub actor_user: Option<String>,
    /// Acting account's id.
    #[serde(default)]
    pub actor_uid: Option<String>,
    /// Target account.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Target account's id.
    #[serde(default)]
    pub user_uid: Option<String>,
    /// Group name.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Group id.
    #[serde(default)]
    pub group_uid: Option<String>,
    /// Resolved identity.
    #[serde(default)]
    pub identity_id: Option<String>,
    /// Source IP.
    #[serde(default)]
    pub src_ip: Option<String>,
    /// Host.
    #[serde(default)]
    pub device_hostname: Option<String>,
    /// ATT&CK techniques.
    #[serde(default)]
    pub attack_techniques: Vec<String>,
    /// Source-specific fields (`fields['TicketEncryptionType']`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The original record (default `{}`), for rules that search it (Sigma keywords).
    #[serde(default)]
    pub raw: Option<String>,
}

/// The fixed instant test times count from.
pub fn test_epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default()
}

impl RuleTest {
    /// The test's findings as rows, or what is wrong with one of them.
    pub fn to_findings(&self) -> Result<Vec<Finding>, String> {
        self.findings
            .iter()
            .enumerate()
            .map(|(i, t)| t.to_finding(i + 1))
            .collect()
    }

    /// The test's directory accounts and their identity keys (`upn:<identity>` → identity).
    pub fn to_directory(&self) -> (Vec<DirectoryObject>, BTreeMap<String, String>) {
        let mut keys = BTreeMap::new();
        let objects = self
            .directory
            .iter()
            .map(|a| {
                let key = format!("upn:{}", a.identity);
                keys.insert(key.clone(), a.identity.clone());
                let mut o =
                    DirectoryObject::new("test", &a.provider, &a.identity, DirectoryKind::User);
                o.keys = vec![key];
                o.enabled = a.enabled;
                o.privileged = a.privileged;
                o.groups = a.groups.clone();
                o
            })
            .collect();
        (objects, keys)
    }
}

impl TestFinding {
    fn to_finding(&self, n: usize) -> Result<Finding, String> {
        let offset = match &self.at {
            None => std::time::Duration::ZERO,
            Some(a) if a.trim() == "0" || a.trim() == "0m" || a.trim() == "0s" => {
                std::time::Duration::ZERO
            }
            Some(a) => cairn_ingest::duration::parse_duration(a).ok_or_else(|| {
                format!("finding {n}: `at: {a}` is not an offset like 0m, 90s, 2h")
            })?,
        };
        let time = chrono::Duration::from_std(offset)
            .ok()
            .and_then(|d| test_epoch().checked_add_signed(d))
            .ok_or_else(|| format!("finding {n}: `at` is too far from the test's start"))?;
        let mut f = Finding::new(
            &self.source,
            self.uid.clone().unwrap_or_else(|| format!("f{n}")),
            self.class_uid,
            time,
            self.raw.clone().unwrap_or_else(|| "{}".into()),
        );
        if let Some(s) = &self.severity {
            let sev = Severity::parse_label(s)
                .ok_or_else(|| format!("finding {n}: unknown severity `{s}`"))?;
            f.set_severity(sev);
        }
        f.event_code = self.event_code.clone();
        f.title = self.title.clone();
        f.status = self.status.clone();
        f.cloud_provider = self.cloud_provider.clone();
        f.account_uid = self.account_uid.clone();
        f.resource_uid = self.resource_uid.clone();
        f.resource_type = self.resource_type.clone();
        f.actor_user = self.actor_user.clone();
        f.actor_uid = self.actor_uid.clone();
        f.user_name = self.user_name.clone();
        f.user_uid = self.user_uid.clone();
        f.group_name = self.group_name.clone();
        f.group_uid = self.group_uid.clone();
        f.identity_id = self.identity_id.clone();
        f.src_ip = self.src_ip.clone();
        f.device_hostname = self.device_hostname.clone();
        f.attack_techniques = self.attack_techniques.clone();
        f.fields = self.fields.iter().collect();
        Ok(f)
    }
}
