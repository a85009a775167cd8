//! Normalizers: one per input format, each turning one JSON record into one [`Finding`].
//!
//! [`normalize`] recognises the format of a record and applies the matching normalizer; a
//! record that no normalizer recognises, or that lacks what its format requires, yields a
//! [`NormalizeError`] that the caller turns into a dead letter. Normalizers never panic on
//! input and never drop a record silently.

mod arm_alert;
mod arm_compliance;
mod asff;
mod attack;
mod entra_signin;
mod graph_alert;
mod graph_incident;
pub mod identity;
mod json;
mod ocsf;
mod sentinel_incident;
mod windows;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use arm_alert::{ArmAlertNormalizer, DEFENDER_CLOUD_SOURCE, SENTINEL_SOURCE};
pub use arm_compliance::{ArmComplianceNormalizer, DEFENDER_COMPLIANCE_SOURCE};
pub use asff::AsffNormalizer;
pub use entra_signin::EntraSignInNormalizer;
pub use graph_alert::GraphAlertNormalizer;
pub use graph_incident::{CLASS_INCIDENT_FINDING, GraphIncidentNormalizer};
pub use ocsf::OcsfNormalizer;
pub use sentinel_incident::SentinelIncidentNormalizer;
pub use windows::WindowsEventNormalizer;

use crate::json::{Json, Object};
use crate::schema::Finding;

/// Why a record could not be normalized; becomes the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// No normalizer recognised the record.
    #[error("unrecognised record format (top-level keys: {keys})")]
    UnrecognisedFormat {
        /// The record's first top-level keys, to tell the operator what arrived.
        keys: String,
    },
    /// The record is not JSON.
    #[error("invalid JSON: {reason}")]
    InvalidJson {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The record is not a JSON object.
    #[error("record is a JSON {kind}, not an object")]
    NotAnObject {
        /// The JSON type found.
        kind: &'static str,
    },
    /// A field the format requires is absent or null.
    #[error("{format} record has no `{field}`")]
    MissingField {
        /// Format name (`asff`, `graph_alert`, `windows_event`).
        format: &'static str,
        /// JSON path of the field.
        field: &'static str,
    },
    /// A field is present but its value cannot be used.
    #[error("{format} record has an invalid `{field}` ({value:?}): {reason}")]
    InvalidField {
        /// Format name.
        format: &'static str,
        /// JSON path of the field.
        field: &'static str,
        /// The offending value, truncated.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The formats Cairn recognises in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// AWS Security Finding Format (Security Hub `GetFindings`, `BatchImportFindings`, exports).
    Asff,
    /// Microsoft Graph security `alert` (alerts_v2).
    GraphAlert,
    /// Microsoft Graph security `incident`.
    GraphIncident,
    /// Microsoft Entra ID `signIn`.
    EntraSignIn,
    /// An ARM security alert (Defender for Cloud, Sentinel).
    ArmAlert,
    /// A Defender for Cloud regulatory compliance assessment.
    ArmComplianceAssessment,
    /// A Sentinel incident.
    SentinelIncident,
    /// A Windows event log record as JSON (evtx JSON, Winlogbeat, NXLog/OTRF flat).
    WindowsEvent,
    /// An OCSF event or finding (Security Hub `GetFindingsV2`, Security Lake).
    Ocsf,
}

/// What format recognition may ask of a record's top level; both JSON trees answer it.
pub trait Shape {
    /// Whether `key` is present.
    fn has(&self, key: &str) -> bool;
    /// The string value of `key`.
    fn str_at(&self, key: &str) -> Option<&str>;
    /// Whether `key` holds an object.
    fn is_object_at(&self, key: &str) -> bool;
    /// Whether `key` holds a number.
    fn is_number_at(&self, key: &str) -> bool;
    /// Whether the path of object keys leads to a value.
    fn has_path(&self, keys: &[&str]) -> bool;
}

impl Shape for Map<String, Value> {
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    fn is_object_at(&self, key: &str) -> bool {
        self.get(key).is_some_and(Value::is_object)
    }
    fn is_number_at(&self, key: &str) -> bool {
        self.get(key).is_some_and(Value::is_number)
    }
    fn has_path(&self, keys: &[&str]) -> bool {
        json::path(self, keys).is_some()
    }
}

impl Shape for Object<'_> {
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Json::as_str)
    }
    fn is_object_at(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Json::Object(_)))
    }
    fn is_number_at(&self, key: &str) -> bool {
        matches!(self.get(key), Some(Json::Number(_)))
    }
    fn has_path(&self, keys: &[&str]) -> bool {
        self.path(keys).is_some()
    }
}

/// One input format: recognises its records and maps them to the Finding schema.
pub trait Normalizer: Send + Sync {
    /// The format this normalizer handles.
    fn format(&self) -> Format;
    /// Whether `record` is of this format (cheap structural test of its top level).
    fn recognises(&self, record: &dyn Shape) -> bool;
    /// Maps the record to a finding; `raw` is the record's text as received (kept verbatim in
    /// the finding). `ingested_at` is left to the caller.
    fn normalize(&self, record: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError>;
    /// Maps a record read into the borrowed [`Json`] tree, for formats that read it directly
    /// (no `serde_json::Value` built); `None` means this normalizer needs a `Value`.
    fn normalize_borrowed(
        &self,
        _record: &Object<'_>,
        _raw: &str,
    ) -> Option<Result<Finding, NormalizeError>> {
        None
    }
}

/// Every registered normalizer, in the order in which formats are tried.
pub fn normalizers() -> &'static [&'static dyn Normalizer] {
    &[
        &AsffNormalizer,
        &GraphAlertNormalizer,
        &GraphIncidentNormalizer,
        &EntraSignInNormalizer,
        &ArmAlertNormalizer,
        &ArmComplianceNormalizer,
        &SentinelIncidentNormalizer,
        &WindowsEventNormalizer,
        &OcsfNormalizer,
    ]
}

/// Recognises the format of `record` and normalizes it; `raw` is its text as received.
pub fn normalize(record: &Value, raw: &str) -> Result<Finding, NormalizeError> {
    let Some(object) = record.as_object() else {
        return Err(NormalizeError::NotAnObject {
            kind: json::kind(record),
        });
    };
    match normalizers().iter().find(|n| n.recognises(object)) {
        Some(n) => n.normalize(object, raw),
        None => Err(unrecognised(object.keys().map(String::as_str))),
    }
}

/// [`normalize`] for a record read into the borrowed [`Json`] tree (files and Kafka): formats
/// that read the tree directly skip building a `serde_json::Value`.
pub fn normalize_json(record: &Json<'_>, raw: &str) -> Result<Finding, NormalizeError> {
    let Some(object) = record.as_object() else {
        return Err(NormalizeError::NotAnObject {
            kind: record.kind(),
        });
    };
    match normalizers().iter().find(|n| n.recognises(object)) {
        Some(n) => match n.normalize_borrowed(object, raw) {
            Some(result) => result,
            None => n.normalize(&object.to_map(), raw),
        },
        None => {
            let mut keys: Vec<&str> = Vec::new();
            for (k, _) in object.iter() {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            Err(unrecognised(keys.into_iter()))
        }
    }
}

/// Parses `raw` and normalizes it ([`normalize_json`]).
pub fn normalize_text(raw: &str) -> Result<Finding, NormalizeError> {
    let json = Json::parse(raw).map_err(|e| NormalizeError::InvalidJson {
        reason: e.to_string(),
    })?;
    normalize_json(&json, raw)
}

fn unrecognised<'a>(keys: impl Iterator<Item = &'a str>) -> NormalizeError {
    NormalizeError::UnrecognisedFormat {
        keys: keys.take(8).collect::<Vec<_>>().join(", "),
    }
}
