//! Microsoft Sentinel incident (`Microsoft.SecurityInsights/incidents`) → Incident Finding.

use serde_json::{Map, Value};

use super::arm_alert::SENTINEL_SOURCE;
use super::json::{first_time, path, scalar_text, strings, text};
use super::{CLASS_INCIDENT_FINDING, Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{Finding, Severity};

const FORMAT: &str = "sentinel_incident";

/// Normalizes Sentinel incidents.
pub struct SentinelIncidentNormalizer;

impl Normalizer for SentinelIncidentNormalizer {
    fn format(&self) -> Format {
        Format::SentinelIncident
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        r.str_at("type")
            .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.SecurityInsights/incidents"))
            && r.is_object_at("properties")
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let p = path(r, &["properties"]).and_then(Value::as_object).ok_or(
            NormalizeError::MissingField {
                format: FORMAT,
                field: "properties",
            },
        )?;
        let name = text(r, &["name"]).ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "name",
        })?;
        let time = first_time(
            p,
            FORMAT,
            &[
                ("properties.lastActivityTimeUtc", &["lastActivityTimeUtc"]),
                ("properties.createdTimeUtc", &["createdTimeUtc"]),
            ],
        )?
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "properties.createdTimeUtc",
        })?;
        let modified = first_time(
            p,
            FORMAT,
            &[("properties.lastModifiedTimeUtc", &["lastModifiedTimeUtc"])],
        )?
        .unwrap_or(time);
        let mut f = Finding::new(
            SENTINEL_SOURCE,
            format!("incident:{name}"),
            CLASS_INCIDENT_FINDING,
            time,
            raw.to_string(),
        );
        f.modified_time = modified;
        f.product = Some("Microsoft Sentinel".into());
        f.event_code = Some("incident".into());
        f.set_severity(
            text(p, &["severity"])
                .as_deref()
                .and_then(Severity::parse_label)
                .unwrap_or(Severity::Unknown),
        );
        f.title = text(p, &["title"]);
        f.status = text(p, &["status"]).and_then(|s| match s.to_ascii_lowercase().as_str() {
            "new" => Some("New".to_string()),
            "active" => Some("In Progress".to_string()),
            "closed" => Some("Resolved".to_string()),
            _ => None,
        });
        f.cloud_provider = Some("Azure".into());
        let id = text(r, &["id"]).unwrap_or_default();
        f.account_uid = id
            .split('/')
            .skip_while(|s| !s.eq_ignore_ascii_case("subscriptions"))
            .nth(1)
            .map(str::to_string);
        for t in strings(p, &["additionalData", "tactics"]) {
            if let Some(id) = attack::tactic_id(&t)
                && !f.attack_tactics.iter().any(|x| x == id)
            {
                f.attack_tactics.push(id.to_string());
            }
        }
        for t in strings(p, &["additionalData", "techniques"]) {
            if attack::is_technique_id(&t) && !f.attack_techniques.contains(&t) {
                f.attack_techniques.push(t);
            }
        }
        for (k, keys) in [
            ("incidentNumber", &["incidentNumber"][..]),
            ("classification", &["classification"]),
            ("classificationReason", &["classificationReason"]),
            ("owner.userPrincipalName", &["owner", "userPrincipalName"]),
            ("incidentUrl", &["incidentUrl"]),
            ("alertsCount", &["additionalData", "alertsCount"]),
            ("providerName", &["providerName"]),
            ("providerIncidentId", &["providerIncidentId"]),
        ] {
            if let Some(v) = path(p, keys).and_then(scalar_text) {
                f.fields.insert(k, v);
            }
        }
        if !id.is_empty() {
            f.fields.insert("armId", id);
        }
        Ok(f)
    }
}
