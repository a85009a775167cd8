//! Defender for Cloud regulatory compliance assessments → Finding: one per assessment and
//! state, its control (`<standard>/<control>`, from the ARM id) in `compliance_controls` and
//! its state as `Compliance.Status` (`PASSED`, `FAILED`, `SKIPPED`, `NOT_AVAILABLE`), as
//! Security Hub's compliance findings carry them, so evidence reports read both alike.

use serde_json::{Map, Value};

use super::json::{path, scalar_text, text};
use super::{Format, NormalizeError, Normalizer, Shape};
use crate::schema::{CLASS_COMPLIANCE_FINDING, Finding, Severity};

const FORMAT: &str = "arm_compliance_assessment";
/// The `source` column of Defender for Cloud regulatory compliance assessments.
pub const DEFENDER_COMPLIANCE_SOURCE: &str = "azure.defender_compliance";
const TYPE_SUFFIX: &str = "regulatorycompliancecontrols/regulatorycomplianceassessments";

/// Normalizes `Microsoft.Security/regulatoryComplianceStandards/…/regulatoryComplianceAssessments`.
pub struct ArmComplianceNormalizer;

/// `…/<name>/<value>/…` → `<value>`.
fn segment(id: &str, name: &str) -> Option<String> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case(name) {
            return parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        }
    }
    None
}

/// Defender's assessment state as ASFF writes compliance status.
fn status(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "passed" => "PASSED",
        "failed" => "FAILED",
        "skipped" => "SKIPPED",
        _ => "NOT_AVAILABLE",
    }
}

impl Normalizer for ArmComplianceNormalizer {
    fn format(&self) -> Format {
        Format::ArmComplianceAssessment
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        r.str_at("type")
            .is_some_and(|t| t.to_ascii_lowercase().ends_with(TYPE_SUFFIX))
            && r.is_object_at("properties")
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let missing = |field| NormalizeError::MissingField {
            format: FORMAT,
            field,
        };
        let p = path(r, &["properties"])
            .and_then(Value::as_object)
            .ok_or(missing("properties"))?;
        let id = text(r, &["id"]).ok_or(missing("id"))?;
        let standard =
            segment(&id, "regulatoryComplianceStandards").ok_or(missing("id (standard)"))?;
        let control =
            segment(&id, "regulatoryComplianceControls").ok_or(missing("id (control)"))?;
        let state = text(p, &["state"]).ok_or(missing("properties.state"))?;
        let status = status(&state);
        // Assessments carry no time: a state is stamped when it is read, and each state of an
        // assessment is its own finding, so the store keeps when it was last seen in it.
        let now = chrono::Utc::now();
        let mut f = Finding::new(
            DEFENDER_COMPLIANCE_SOURCE,
            format!("{id}#{status}"),
            CLASS_COMPLIANCE_FINDING,
            now,
            raw.to_string(),
        );
        let severity = if status == "FAILED" {
            Severity::Medium
        } else {
            Severity::Informational
        };
        f.severity_id = severity.id();
        f.severity = severity.caption().to_string();
        f.product = Some("Microsoft Defender for Cloud".into());
        f.title = text(p, &["description"]).or_else(|| text(r, &["name"]));
        f.status = Some(status.to_string());
        f.cloud_provider = Some("Azure".into());
        f.account_uid = segment(&id, "subscriptions");
        f.resource_uid = Some(id.clone());
        f.resource_type = Some("Microsoft.Security/regulatoryComplianceAssessments".into());
        f.compliance_controls = vec![format!("{standard}/{control}")];
        f.fields.insert("Compliance.Status", status);
        for k in [
            "assessmentType",
            "assessmentDetailsLink",
            "passedResources",
            "failedResources",
            "skippedResources",
            "unsupportedResources",
        ] {
            if let Some(v) = p.get(k).and_then(scalar_text) {
                f.fields.insert(k, &v);
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assessment_names_its_control_and_status() {
        let raw = r#"{"id":"/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/providers/Microsoft.Security/regulatoryComplianceStandards/PCI-DSS-4/regulatoryComplianceControls/1.1.1/regulatoryComplianceAssessments/968a2a1b-1b2c-4e3d-9f4a-5b6c7d8e9f01","name":"968a2a1b-1b2c-4e3d-9f4a-5b6c7d8e9f01","type":"Microsoft.Security/regulatoryComplianceStandards/regulatoryComplianceControls/regulatoryComplianceAssessments","properties":{"description":"Storage accounts should restrict network access","assessmentType":"BuiltIn","state":"Failed","passedResources":2,"failedResources":3,"skippedResources":0}}"#;
        let v: Value = serde_json::from_str(raw).expect("json");
        let f = crate::normalize::normalize(&v, raw).expect("normalized");
        assert_eq!(f.source, DEFENDER_COMPLIANCE_SOURCE);
        assert_eq!(f.compliance_controls, ["PCI-DSS-4/1.1.1"]);
        assert_eq!(f.fields.get("Compliance.Status"), Some("FAILED"));
        assert_eq!(f.fields.get("failedResources"), Some("3"));
        assert_eq!(
            f.account_uid.as_deref(),
            Some("20ff7fc3-e762-44dd-bd96-b71116dcdc23")
        );
        assert!(f.finding_uid.ends_with("#FAILED"));
        assert_eq!(f.class_uid, CLASS_COMPLIANCE_FINDING);
    }
}
