//! The store: findings of the live window, detections, incidents, cursors and dead letters.
//!
//! [`Store`] is the one interface the pipeline and the API use; [`sqlite::SqliteStore`] is the
//! embedded default (one file, WAL, versioned migrations). Guarantees every implementation
//! gives:
//! - a page's findings, its dead letters and the source's cursor commit in one transaction;
//! - findings are keyed by `(source, finding_uid)`: a newer `modified_time` replaces the row,
//!   an older one leaves it, an equal one replaces it only if the raw record differs (a
//!   workflow change that did not move the provider's update time), so replays never
//!   duplicate;
//! - dead letters are keyed by `(source, location, sha256(raw))`, so re-reading a bad input
//!   does not pile up copies;
//! - a correlation pass's detections, incidents and merge reasons commit together.

pub mod sqlite;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use cairn_ingest::{DeadLetter, DirectoryObject, Finding, Page};

use crate::error::Result;

/// The key of a detection: `sha256(rule_id, entity_key, bucket)`, so re-evaluation updates
/// rather than duplicates.
pub fn detection_id(rule_id: &str, entity_key: &str, bucket: i64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0]);
    h.update(entity_key.as_bytes());
    h.update([0]);
    h.update(bucket.to_le_bytes());
    hex::encode(h.finalize())[..32].to_string()
}

/// What committing a page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PageStats {
    /// Findings inserted or replaced by a newer version.
    pub stored: u64,
    /// Findings already stored with the same or a newer version.
    pub unchanged: u64,
    /// Dead letters recorded (repeats of a known one are not counted).
    pub dead_letters: u64,
    /// Directory objects written.
    pub directory_objects: u64,
    /// Directory objects removed because a complete synchronisation no longer had them.
    pub directory_removed: u64,
}

impl std::ops::AddAssign for PageStats {
    fn add_assign(&mut self, o: PageStats) {
        self.stored += o.stored;
        self.unchanged += o.unchanged;
        self.dead_letters += o.dead_letters;
        self.directory_objects += o.directory_objects;
        self.directory_removed += o.directory_removed;
    }
}

/// Everything the store knows about one identity, for `cairn identity show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityExplanation {
    /// The canonical identity id.
    pub identity_id: String,
    /// Its keys, in the order they were assigned.
    pub keys: Vec<String>,
    /// Ids it absorbed when records linked them to it.
    pub aliases: Vec<String>,
    /// Why its keys are one identity.
    pub links: Vec<crate::identity::Link>,
    /// Directory accounts that hold any of its keys.
    pub directory: Vec<cairn_ingest::DirectoryObject>,
    /// Findings in the store resolved to it.
    pub findings: i64,
}

/// Where an incident is in the analyst's workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Opened by Cairn, not yet looked at.
    New,
    /// Being worked.
    Active,
    /// Done; new detections open a new incident.
    Closed,
}

impl IncidentStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::New => "new",
            IncidentStatus::Active => "active",
            IncidentStatus::Closed => "closed",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        match s {
            "new" => Some(IncidentStatus::New),
            "active" => Some(IncidentStatus::Active),
            "closed" => Some(IncidentStatus::Closed),
            _ => None,
        }
    }
}

/// Something an incident is about: an identity, a host, an IP, a cloud resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entity {
    /// `identity`, `host`, `ip`, `resource` or `finding`.
    pub kind: String,
    /// The value (`admmig@offsec.lan`, `10.23.42.22`).
    pub value: String,
}

/// A rule's finding about one entity in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `sha256(rule_id, entity_key, bucket)`, so re-evaluation updates rather than duplicates.
    pub id: String,
    /// The rule that fired.
    pub rule_id: String,
    /// The rule's title or the row's own.
    pub title: String,
    /// What `entity_key` denotes.
    pub entity_kind: String,
    /// The entity.
    pub entity_key: String,
    /// `first_seen` divided by the rule's window.
    pub bucket: i64,
    /// OCSF severity id.
    pub severity_id: i32,
    /// Earliest evidence.
    pub first_seen: DateTime<Utc>,
    /// Latest evidence.
    pub last_seen: DateTime<Utc>,
    /// The evidence.
    pub finding_uids: Vec<String>,
    /// ATT&CK tactics of the rule.
    pub tactics: Vec<String>,
    /// ATT&CK techniques of the rule.
    pub techniques: Vec<String>,
    /// The incident it belongs to, once merged.
    pub incident_id: Option<String>,
}

/// A merged incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (`inc-…`), derived from its first detection.
    pub id: String,
    /// Short number for people (`#12`), assigned by the store.
    pub number: i64,
    /// Title of its most severe detection.
    pub title: String,
    /// Workflow status.
    pub status: IncidentStatus,
    /// Highest severity id of its detections.
    pub severity_id: i32,
    /// Caption of `severity_id`.
    pub severity: String,
    /// Earliest evidence.
    pub first_seen: DateTime<Utc>,
    /// Latest evidence.
    pub last_seen: DateTime<Utc>,
    /// When Cairn opened it.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// ATT&CK tactics of its detections and findings.
    pub tactics: Vec<String>,
    /// ATT&CK techniques of its detections and findings.
    pub techniques: Vec<String>,
    /// Finding sources involved (`aws.securityhub`, `azure.defender`, `ad.windows`).
    pub sources: Vec<String>,
    /// Entities it is about.
    pub entities: Vec<Entity>,
    /// Number of detections.
    pub detection_count: i64,
    /// Number of distinct findings of its detections.
    pub finding_count: i64,
    /// The incident this one was merged into (it is then closed).
    #[serde(default)]
    pub merged_into: Option<String>,
}

/// Why a detection joined an incident (or opened it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReason {
    /// The incident.
    pub incident_id: String,
    /// The detection.
    pub detection_id: String,
    /// In words: `opened by …` or `shared identity admmig@offsec.lan with …`.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An incident with everything an analyst opens it for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentDetail {
    /// The incident.
    pub incident: Incident,
    /// Its detections, oldest first.
    pub detections: Vec<Detection>,
    /// Merge reasons, in order.
    pub reasons: Vec<MergeReason>,
}

/// Filters and paging of the incident list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this status.
    pub status: Option<IncidentStatus>,
    /// Only at least this severity id.
    pub min_severity: Option<i32>,
    /// Only incidents with evidence at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: usize,
    /// Continue after the incident with this number (incidents are listed newest first).
    pub before_number: Option<i64>,
}

/// One page of incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentPage {
    /// The incidents, newest first.
    pub items: Vec<Incident>,
    /// Pass as `before_number` for the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDeadLetter {
    /// Row id.
    pub id: i64,
    /// The record and why it failed.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// A finding whose resolved identity changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityUpdate {
    /// Finding source.
    pub source: String,
    /// Finding uid.
    pub finding_uid: String,
    /// New identity (or none).
    pub identity_id: Option<String>,
}

/// Everything a correlation pass writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CorrelationChanges {
    /// Detections to insert or replace.
    pub detections: Vec<Detection>,
    /// Incidents to insert or replace (with their entities).
    pub incidents: Vec<Incident>,
    /// Merge reasons to add.
    pub reasons: Vec<MergeReason>,
    /// Open incidents absorbed by another: (absorbed id, surviving id). The absorbed one is
    /// closed, and its detections, entities and reasons move to the survivor.
    pub merged: Vec<(String, String)>,
}

/// A finding in an incident whose provider has not been told yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWriteBack {
    /// The finding.
    pub finding: Finding,
    /// The incident it joined.
    pub incident_id: String,
    /// Its number.
    pub incident_number: i64,
    /// Its title.
    pub incident_title: String,
}

/// Row counts, for summaries and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// Findings, archived ones included (each once).
    pub findings: i64,
    /// Dead letters.
    pub dead_letters: i64,
    /// Detections.
    pub detections: i64,
    /// Incidents.
    pub incidents: i64,
}

/// An incident change waiting in the outbox for the sinks (SIEM forwarders).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEvent {
    /// Position in the outbox (delivery order).
    pub seq: i64,
    /// Stable id: the SHA-256 of the incident state it carries, so a receiver can drop a
    /// redelivery.
    pub event_id: String,
    /// The incident.
    pub incident_id: String,
    /// The incident's severity id at that state.
    pub severity_id: i32,
    /// The incident at that state (an [`Incident`] as JSON, entities included, and `rules`:
    /// the rule ids of its detections).
    pub payload: serde_json::Value,
    /// When the change was committed.
    pub created_at: DateTime<Utc>,
    /// Delivery attempts to this sink so far.
    pub attempts: i64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver acknowledged it.
    Delivered,
    /// Try again at this time (the receiver was down, busy or asked to wait).
    RetryAt(DateTime<Utc>, String),
    /// The receiver refused it for good (the event is kept, marked with the reason).
    Rejected(String),
}

/// Persistent state of Cairn. See the module docs for the guarantees.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a page's findings and dead letters and the source's cursor, atomically.
    async fn commit_page(&self, source_id: &str, page: &Page) -> Result<PageStats>;
    /// The last committed cursor of a source.
    async fn cursor(&self, source_id: &str) -> Result<Option<String>>;
    /// The latest event time of any stored finding (the correlation clock).
    async fn watermark(&self) -> Result<Option<DateTime<Utc>>>;
    /// Findings with event time at or after `since`, oldest first.
    async fn findings_since(&self, since: DateTime<Utc>) -> Result<Vec<Finding>>;
    /// Findings by uid (any source), oldest first, archived ones included.
    async fn findings_by_uid(&self, uids: &[String]) -> Result<Vec<Finding>>;
    /// The archive that findings older than the window move to.
    fn archive(&self) -> &crate::archive::FindingsArchive;
    /// Moves findings with event time before `cutoff` to the archive; returns how many. The
    /// store remembers which version it archived, so reading it again is no change.
    async fn archive_before(&self, cutoff: DateTime<Utc>) -> Result<usize>;
    /// Records resolved identities of findings.
    async fn set_identities(&self, updates: &[IdentityUpdate]) -> Result<()>;
    /// Identity ids already assigned to these keys.
    async fn identity_assignments(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, crate::identity::Assigned>>;
    /// Records key → identity assignments, absorbed ids (old → surviving) and the links that
    /// explain them. Everything keyed on an absorbed id moves to the survivor in the same
    /// transaction: findings, identity detections (re-keyed, or folded into the survivor's
    /// detection of the same rule and bucket) and incident entities.
    async fn record_identities(
        &self,
        assignments: &std::collections::BTreeMap<String, String>,
        aliases: &std::collections::BTreeMap<String, String>,
        links: &[crate::identity::Link],
    ) -> Result<()>;
    /// Every identity id in use and the anchor keys (`sid:`, `guid:`, `aad:`) of each.
    async fn identity_catalog(&self) -> Result<crate::identity::Catalog>;
    /// Every directory object of every directory source.
    async fn directory_objects(&self) -> Result<Vec<DirectoryObject>>;
    /// The identity a key is assigned to, following aliases.
    async fn identity_of_key(&self, key: &str) -> Result<Option<String>>;
    /// What the store knows about an identity (by id or absorbed id).
    async fn identity_explanation(&self, identity_id: &str) -> Result<Option<IdentityExplanation>>;
    /// Every absorbed identity id and the id that absorbed it.
    async fn identity_aliases(&self) -> Result<std::collections::HashMap<String, String>>;
    /// Stored detections with these ids.
    async fn detections_by_id(&self, ids: &[String]) -> Result<Vec<Detection>>;
    /// Stored detections of one rule about one entity, oldest first.
    async fn detections_for_entity(
        &self,
        rule_id: &str,
        entity_key: &str,
    ) -> Result<Vec<Detection>>;
    /// Incidents that are not closed, with their entities.
    async fn open_incidents(&self) -> Result<Vec<Incident>>;
    /// Closed incidents (not merged ones) with evidence at or after `since`, with their
    /// entities: new incidents about the same entities name them.
    async fn closed_incidents_since(&self, since: DateTime<Utc>) -> Result<Vec<Incident>>;
    /// Writes a correlation pass's results atomically; new incidents get their numbers here.
    /// An incident's status is the analyst's: a pass changes it only to close an incident it
    /// merges into another (`changes.merged`).
    async fn apply(&self, changes: &CorrelationChanges) -> Result<()>;
    /// Sets an incident's status (an analyst's decision); false when there is no such
    /// incident or it was merged into another (its detections live there now).
    async fn set_incident_status(&self, id: &str, status: IncidentStatus) -> Result<bool>;
    /// Lists incidents, newest first.
    async fn incidents(&self, filter: &IncidentFilter) -> Result<IncidentPage>;
    /// One incident with its detections and merge reasons.
    async fn incident(&self, id: &str) -> Result<Option<IncidentDetail>>;
    /// The id of the incident with this number.
    async fn incident_id_by_number(&self, number: i64) -> Result<Option<String>>;
    /// Findings of `source` in incidents that have not been written back, oldest incident
    /// first.
    async fn pending_writebacks(&self, source: &str, limit: usize)
    -> Result<Vec<PendingWriteBack>>;
    /// Records that these `(finding_uid, incident_id)` were written back.
    async fn record_writebacks(&self, done: &[(String, String)]) -> Result<()>;
    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<StoredDeadLetter>>;
    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts>;
    /// Outbox events not yet delivered to (nor rejected by) `sink` whose next attempt is due at
    /// `now`, oldest first; an incident's event waits until its earlier ones are done, so a
    /// receiver gets one incident's states in order and never two in one batch.
    async fn outbox_pending(
        &self,
        sink: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>>;
    /// Records what became of delivering these events to `sink`.
    async fn outbox_record(&self, sink: &str, outcomes: &[(String, DeliveryOutcome)])
    -> Result<()>;
    /// Events `sink` has not had delivered or rejected yet (the outbox depth).
    async fn outbox_depth(&self, sink: &str) -> Result<i64>;
    /// Events in the outbox, and the depth of every sink that has tried a delivery, by name.
    async fn outbox_depths(&self) -> Result<(i64, Vec<(String, i64)>)>;
}
