//! The rule file format.
//!
//! A rule is a YAML file holding one SQL `SELECT` over the `findings` table that returns one
//! row per detection:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `entity_key` | string | what the detection is about (identity, host, IP, resource, finding uid) |
//! | `first_seen`, `last_seen` | timestamp | event-time span of the evidence |
//! | `finding_uids` | list of strings | the evidence |
//! | `severity_id` (optional) | integer | overrides the rule's severity for this row |
//! | `title` (optional) | string | overrides the rule's title for this row |
//!
//! ```yaml
//! id: cairn.ad.privileged_group_member_added
//! title: Member added to a privileged AD group
//! description: …
//! severity: high
//! attack: { tactics: [TA0003, TA0004], techniques: [T1098] }
//! entity: identity
//! window: 24h
//! partition_by: identity_id   # optional, see below
//! sql: |
//!   SELECT … AS entity_key, … FROM findings WHERE …
//! tests:               # see [`crate::rule_test`]
//!   - name: …
//!     findings: [ … ]
//!     expect: [ { entity_key: … } ]
//! ```
//!
//! `partition_by` is a SQL expression over one `findings` row that splits the window into
//! independent parts: the rule must give, over the whole window, exactly the union of what it
//! gives over each part (the rows with one value of the expression), and two parts never give
//! rows with the same `entity_key` (a tick sees only the touched parts' rows, so it could not
//! combine them as an evaluation over everything does). Rows where it is NULL belong to no
//! part, so the rule must not need them (typically its key is NULL there and its joins and
//! groups leave them out anyway). Partitioning by the expression the rule groups its
//! `entity_key` by meets both conditions when its joins are on that expression too.
//! Rules that compare a person's records with each other partition by the person; rules that
//! look at one record at a time by `finding_uid`. A tick then evaluates the rule only over the
//! parts that new, changed or expired records touch, and gives the same detections as
//! evaluating it over everything (the correlator's incremental-equals-full test checks the
//! built-in pack). A rule without it is evaluated over the whole window at every tick.

use std::time::Duration;

use cairn_ingest::Severity;
use serde::{Deserialize, Serialize};

/// What a rule's `entity_key` denotes; it decides which findings' entities count when
/// detections are merged into incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A resolved identity (or an account name when none resolved).
    Identity,
    /// A host name.
    Host,
    /// An IP address.
    Ip,
    /// A cloud resource id.
    Resource,
    /// One finding (pass-through of a provider's alert).
    Finding,
}

impl EntityKind {
    /// The lower-case name used in configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Identity => "identity",
            EntityKind::Host => "host",
            EntityKind::Ip => "ip",
            EntityKind::Resource => "resource",
            EntityKind::Finding => "finding",
        }
    }
}

/// MITRE ATT&CK ids a rule detects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// Tactic ids (`TA0006`).
    #[serde(default)]
    pub tactics: Vec<String>,
    /// Technique ids (`T1110`, `T1110.003`).
    #[serde(default)]
    pub techniques: Vec<String>,
}

/// A rule file as written, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub severity: String,
    #[serde(default)]
    pub attack: Attack,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compliance: Vec<String>,
    pub entity: EntityKind,
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<crate::rule_test::RuleTest>,
}

/// A validated rule: its SQL has been planned against the `findings` schema and returns
/// the columns a detection needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Stable id (`cairn.ad.bruteforce_then_logon`); part of every detection's key.
    pub id: String,
    /// One-line title shown in incident timelines.
    pub title: String,
    /// What the rule finds and why it matters.
    pub description: String,
    /// Severity of its detections (unless a row overrides it).
    pub severity: Severity,
    /// ATT&CK tactics and techniques.
    pub attack: Attack,
    /// Compliance controls the rule monitors, written as the frameworks' own references
    /// (`NIST.800-53.r5 AC-7`, `PCI DSS v4.0/10.2.1.4`): its detections are evidence for them in
    /// evidence reports.
    pub compliance: Vec<String>,
    /// What `entity_key` denotes.
    pub entity: EntityKind,
    /// How far apart the steps may be; also the width of the detection's time bucket.
    #[serde(with = "duration_secs")]
    pub window: Duration,
    /// The SQL `SELECT`.
    pub sql: String,
    /// A SQL expression over one `findings` row that splits the window into independent
    /// parts: the rule's result over the whole window is the union of its results over each
    /// part (rows with equal, non-NULL values of the expression). A tick then
    /// evaluates the rule only over the parts that new, changed or expired records touch.
    /// Without it the rule is evaluated over the whole window at every tick.
    pub partition_by: Option<String>,
    /// Tables the SQL reads besides `findings` (`identities`, `directory`), from its plan: when
    /// they change, the rule is evaluated over the whole window.
    pub reads: Vec<String>,
    /// Where it came from: a file path or `builtin:<path>`.
    pub origin: String,
    /// Line of the `sql:` key in the file, for error reports.
    #[serde(skip)]
    pub sql_line: usize,
    /// Inline tests (`cairn rules test` runs them).
    #[serde(skip)]
    pub tests: Vec<crate::rule_test::RuleTest>,
}

impl Rule {
    /// The rule as a rule file (YAML) that loads back into the same rule, e.g. to keep a
    /// compiled Sigma rule for tuning.
    pub fn to_yaml(&self) -> Result<String, yaml_serde::Error> {
        let file = RuleFile {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity.caption().to_lowercase(),
            attack: self.attack.clone(),
            compliance: self.compliance.clone(),
            entity: self.entity,
            window: format!("{}s", self.window.as_secs()),
            partition_by: self.partition_by.clone(),
            sql: self.sql.clone(),
            enabled: None,
            tests: self.tests.clone(),
        };
        yaml_serde::to_string(&file)
    }
}

mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// The longest window a rule may ask for; the correlation window keeps this much history.
pub const MAX_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// Parses `30m`, `1h`, `24h`, `2d` (also `90s`).
pub fn parse_window(s: &str) -> Option<Duration> {
    cairn_ingest::duration::parse_duration(s)
}
