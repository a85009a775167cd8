//! Normalizers: one per input format, each turning one JSON record into one [`Finding`].
//!
//! [`normalize`] recognises the format of a record and applies the matching normalizer; a
//! record that no normalizer recognises, or that lacks what its format requires, yields a
//! [`NormalizeError`] that the caller turns into a dead letter. Normalizers never panic on
//! input and never drop a record silently.

mod arm_alert;
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

use serde_json::Value;

pub use arm_alert::{ArmAlertNormalizer, DEFENDER_CLOUD_SOURCE, SENTINEL_SOURCE};
pub use asff::AsffNormalizer;
pub use entra_signin::EntraSignInNormalizer;
pub use graph_alert::GraphAlertNormalizer;
pub use graph_incident::{CLASS_INCIDENT_FINDING, GraphIncidentNormalizer};
pub use ocsf::OcsfNormalizer;
pub use sentinel_incident::SentinelIncidentNormalizer;
pub use windows::WindowsEventNormalizer;

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
    /// A Sentinel incident.
    SentinelIncident,
    /// A Windows event log record as JSON (evtx JSON, Winlogbeat, NXLog/OTRF flat).
    WindowsEvent,
    /// An OCSF event or finding (Security Hub `GetFindingsV2`, Security Lake).
    Ocsf,
}

/// One input format: recognises its records and maps them to the Finding schema.
pub trait Normalizer: Send + Sync {
    /// The format this normalizer handles.
    fn format(&self) -> Format;
    /// Whether `record` is of this format (cheap structural test, no full parse).
    fn recognises(&self, record: &serde_json::Map<String, Value>) -> bool;
    /// Maps the record to a finding; `raw` is the record's text as received (kept verbatim in
    /// the finding). `ingested_at` is left to the caller.
    fn normalize(
        &self,
        record: &serde_json::Map<String, Value>,
        raw: &str,
    ) -> Result<Finding, NormalizeError>;
}

/// Every registered normalizer, in the order in which formats are tried.
pub fn normalizers() -> &'static [&'static dyn Normalizer] {
    &[
        &AsffNormalizer,
        &GraphAlertNormalizer,
        &GraphIncidentNormalizer,
        &EntraSignInNormalizer,
        &ArmAlertNormalizer,
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
    for n in normalizers() {
        if n.recognises(object) {
            return n.normalize(object, raw);
        }
    }
    Err(NormalizeError::UnrecognisedFormat {
        keys: object
            .keys()
            .take(8)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    })
}
