//! Microsoft Graph security `incident` (Defender XDR, `/security/incidents`) → Finding.
//!
//! An incident becomes an OCSF Incident Finding (2005). Its entities are those of its alerts
//! when they are expanded (`$expand=alerts`): the person of the first alert's user evidence,
//! the device of the first device evidence. An incident that Defender merged into another
//! carries `redirectIncidentId`; it is kept, with status Resolved and the redirect in
//! `fields`, so that no rule treats a dead incident as open. Enum values are matched
//! case-insensitively (Microsoft's own examples write `Active` and `active`).

use serde_json::{Map, Value};

use super::json::{first_time, path, scalar_text, text};
use super::{Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{Finding, Severity};

const FORMAT: &str = "graph_incident";
/// OCSF class `Incident Finding`.
pub const CLASS_INCIDENT_FINDING: i32 = 2005;

/// Normalizes Graph security incidents.
pub struct GraphIncidentNormalizer;

impl Normalizer for GraphIncidentNormalizer {
    fn format(&self) -> Format {
        Format::GraphIncident
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        match r.str_at("@odata.type") {
            Some(t) => t.eq_ignore_ascii_case("#microsoft.graph.security.incident"),
            None => r.has("incidentWebUrl") && r.has("displayName") && r.has("id"),
        }
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let id = text(r, &["id"]).ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "id",
        })?;
        let created = first_time(r, FORMAT, &[("createdDateTime", &["createdDateTime"])])?.ok_or(
            NormalizeError::MissingField {
                format: FORMAT,
                field: "createdDateTime",
            },
        )?;
        let updated = first_time(
            r,
            FORMAT,
            &[("lastUpdateDateTime", &["lastUpdateDateTime"])],
        )?
        .unwrap_or(created);
        let alerts: Vec<&Map<String, Value>> = path(r, &["alerts"])
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();

        // The incident's activity is that of its alerts, when they came with it.
        let mut activity = None;
        for a in &alerts {
            if let Some(t) = first_time(
                a,
                FORMAT,
                &[
                    ("alerts[].lastActivityDateTime", &["lastActivityDateTime"]),
                    ("alerts[].createdDateTime", &["createdDateTime"]),
                ],
            )? {
                activity = Some(activity.map_or(t, |x: chrono::DateTime<chrono::Utc>| x.max(t)));
            }
        }
        let mut f = Finding::new(
            super::graph_alert::SOURCE,
            format!("incident:{id}"),
            CLASS_INCIDENT_FINDING,
            activity.unwrap_or(created),
            raw.to_string(),
        );
        f.modified_time = updated;
        f.product = Some("Microsoft Defender XDR".into());
        f.event_code = Some("incident".into());
        f.set_severity(
            text(r, &["severity"])
                .as_deref()
                .and_then(Severity::parse_label)
                .unwrap_or(Severity::Unknown),
        );
        f.title = text(r, &["displayName"]);
        let redirect = text(r, &["redirectIncidentId"]);
        f.status = if redirect.is_some() {
            Some("Resolved".into())
        } else {
            text(r, &["status"]).and_then(|s| match s.to_ascii_lowercase().as_str() {
                "active" => Some("New".to_string()),
                "inprogress" => Some("In Progress".to_string()),
                "resolved" => Some("Resolved".to_string()),
                "redirected" => Some("Resolved".to_string()),
                "awaitingaction" => Some("In Progress".to_string()),
                _ => None,
            })
        };
        f.cloud_provider = Some("Azure".into());
        f.account_uid = text(r, &["tenantId"]);

        // Entities and ATT&CK of the expanded alerts, through the alert normalizer.
        for a in &alerts {
            let Ok(alert) = super::GraphAlertNormalizer.normalize(a, "{}") else {
                continue;
            };
            if f.identity_keys.is_empty() && !alert.identity_keys.is_empty() {
                f.identity_keys = alert.identity_keys.clone();
                f.actor_user = alert.actor_user.clone();
                f.actor_uid = alert.actor_uid.clone();
                f.actor_domain = alert.actor_domain.clone();
            }
            f.device_hostname = f.device_hostname.or(alert.device_hostname);
            f.src_ip = f.src_ip.or(alert.src_ip);
            f.resource_uid = f.resource_uid.or(alert.resource_uid);
            f.resource_type = f.resource_type.or(alert.resource_type);
            for t in alert.attack_techniques {
                if !f.attack_techniques.contains(&t) {
                    f.attack_techniques.push(t);
                }
            }
            for t in alert.attack_tactics {
                if !f.attack_tactics.contains(&t) {
                    f.attack_tactics.push(t);
                }
            }
        }
        if let Some(d) =
            text(r, &["determination"]).and_then(|d| attack::tactic_id(&d).map(str::to_string))
        {
            // Some determinations name a tactic; most do not.
            if !f.attack_tactics.contains(&d) {
                f.attack_tactics.push(d);
            }
        }
        for key in [
            "classification",
            "determination",
            "assignedTo",
            "incidentWebUrl",
            "createdDateTime",
            "redirectIncidentId",
        ] {
            if let Some(v) = r.get(key).and_then(scalar_text) {
                f.fields.insert(key, v);
            }
        }
        f.fields.insert("alertCount", alerts.len().to_string());
        if let Some(ids) = (!alerts.is_empty()).then(|| {
            alerts
                .iter()
                .filter_map(|a| text(a, &["id"]))
                .collect::<Vec<_>>()
                .join(",")
        }) {
            f.fields.insert("alertIds", ids);
        }
        Ok(f)
    }
}
