//! Azure Resource Manager security alerts → Finding: Microsoft Defender for Cloud alerts
//! (`Microsoft.Security/locations/alerts`) and the alerts of Microsoft Sentinel incidents
//! (`Microsoft.SecurityInsights` entities of kind `SecurityAlert`), which share a shape.
//!
//! Defender for Cloud also raises alerts on AWS and GCP resources through its multicloud
//! connectors; when an alert names an AWS ARN (in its entities, resource identifiers or
//! extended properties), the ARN becomes the resource and the cloud is AWS, so the alert
//! joins the Security Hub findings on the same resource.

use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{first_time, path, scalar_text, strings, text};
use super::{Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{CLASS_DETECTION_FINDING, Finding, Severity};

const FORMAT: &str = "arm_alert";
/// The `source` column of Defender for Cloud alerts.
pub const DEFENDER_CLOUD_SOURCE: &str = "azure.defender_cloud";
/// The `source` column of Sentinel alerts and incidents.
pub const SENTINEL_SOURCE: &str = "azure.sentinel";

/// Normalizes Defender for Cloud and Sentinel alerts.
pub struct ArmAlertNormalizer;

fn is_sentinel(r: &dyn Shape) -> bool {
    r.str_at("kind")
        .is_some_and(|k| k.eq_ignore_ascii_case("SecurityAlert"))
}

/// `/subscriptions/<sub>/…` → `<sub>`; `/locations/<region>/` → `<region>`.
fn arm_segment(id: &str, name: &str) -> Option<String> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case(name) {
            return parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        }
    }
    None
}

/// The first AWS ARN anywhere in `v`.
fn find_arn(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("arn:aws") => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(find_arn),
        Value::Object(o) => o.values().find_map(find_arn),
        _ => None,
    }
}

impl Normalizer for ArmAlertNormalizer {
    fn format(&self) -> Format {
        Format::ArmAlert
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        let typed = r.str_at("type").is_some_and(|t| {
            t.to_ascii_lowercase()
                .ends_with("microsoft.security/locations/alerts")
        });
        (typed || is_sentinel(r)) && r.is_object_at("properties")
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let p = path(r, &["properties"]).and_then(Value::as_object).ok_or(
            NormalizeError::MissingField {
                format: FORMAT,
                field: "properties",
            },
        )?;
        // The ARM resource id is unique; `systemAlertId` is repeated across copies of an alert
        // (and in Microsoft's own examples).
        let uid = text(r, &["id"])
            .or_else(|| text(p, &["systemAlertId"]))
            .ok_or(NormalizeError::MissingField {
                format: FORMAT,
                field: "id",
            })?;
        let time = first_time(
            p,
            FORMAT,
            &[
                ("properties.endTimeUtc", &["endTimeUtc"]),
                ("properties.startTimeUtc", &["startTimeUtc"]),
                ("properties.timeGeneratedUtc", &["timeGeneratedUtc"]),
                ("properties.timeGenerated", &["timeGenerated"]),
            ],
        )?
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "properties.startTimeUtc",
        })?;
        let modified = first_time(
            p,
            FORMAT,
            &[
                ("properties.processingEndTimeUtc", &["processingEndTimeUtc"]),
                ("properties.processingEndTime", &["processingEndTime"]),
                ("properties.timeGeneratedUtc", &["timeGeneratedUtc"]),
            ],
        )?
        .unwrap_or(time);
        let source = if is_sentinel(r) {
            SENTINEL_SOURCE
        } else {
            DEFENDER_CLOUD_SOURCE
        };
        let mut f = Finding::new(source, uid, CLASS_DETECTION_FINDING, time, raw.to_string());
        f.modified_time = modified;
        f.product = text(p, &["productName"]);
        f.event_code = text(p, &["alertType"]);
        f.set_severity(
            text(p, &["severity"])
                .as_deref()
                .and_then(Severity::parse_label)
                .unwrap_or(Severity::Unknown),
        );
        f.title = text(p, &["alertDisplayName"]).or_else(|| text(p, &["friendlyName"]));
        f.status = text(p, &["status"]).and_then(|s| match s.to_ascii_lowercase().as_str() {
            "active" | "new" => Some("New".to_string()),
            "inprogress" => Some("In Progress".to_string()),
            "resolved" => Some("Resolved".to_string()),
            "dismissed" => Some("Suppressed".to_string()),
            _ => None,
        });
        f.cloud_provider = Some("Azure".into());
        let id = text(r, &["id"]).unwrap_or_default();
        f.account_uid = arm_segment(&id, "subscriptions");
        f.region = arm_segment(&id, "locations");

        let identifiers: Vec<&Map<String, Value>> = path(p, &["resourceIdentifiers"])
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        if let Some(res) = identifiers
            .iter()
            .find_map(|i| text(i, &["azureResourceId"]))
        {
            f.resource_type = res.rsplit_once("/providers/").and_then(|(_, t)| {
                let mut it = t.split('/');
                Some(format!("{}/{}", it.next()?, it.next()?))
            });
            f.resource_uid = Some(res);
        }
        // Multicloud: an AWS resource makes this an alert about AWS.
        let arn = path(p, &["entities"])
            .and_then(find_arn)
            .or_else(|| path(p, &["resourceIdentifiers"]).and_then(find_arn))
            .or_else(|| path(p, &["extendedProperties"]).and_then(find_arn));
        if let Some(arn) = arn {
            f.resource_type = arn.split(':').nth(2).map(|svc| format!("aws:{svc}"));
            f.resource_uid = Some(arn);
            f.cloud_provider = Some("AWS".into());
        }

        let mut keys = IdentityKeys::new();
        for e in path(p, &["entities"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            match text(e, &["type"])
                .unwrap_or_default()
                .to_ascii_lowercase()
                .as_str()
            {
                "ip" if f.src_ip.is_none() => f.src_ip = text(e, &["address"]),
                "host" if f.device_hostname.is_none() => {
                    f.device_hostname = text(e, &["hostName"])
                        .map(|h| match text(e, &["dnsDomain"]) {
                            Some(d) => format!("{h}.{d}"),
                            None => h,
                        })
                        .map(|h| h.to_lowercase());
                }
                "account" if f.actor_user.is_none() => {
                    let name = text(e, &["accountName"]).or_else(|| text(e, &["name"]));
                    let upn = match (&name, text(e, &["upnSuffix"])) {
                        (Some(n), Some(s)) => Some(format!("{n}@{s}")),
                        _ => None,
                    };
                    f.actor_user = upn.clone().or(name.clone());
                    f.actor_domain = text(e, &["ntDomain"]);
                    f.actor_uid = text(e, &["sid"]).or_else(|| text(e, &["aadUserId"]));
                    keys.upn(upn.as_deref())
                        .sid(text(e, &["sid"]).as_deref())
                        .aad(text(e, &["aadUserId"]).as_deref())
                        .account(f.actor_domain.as_deref(), name.as_deref());
                }
                _ => {}
            }
        }
        f.identity_keys = keys.into_vec();
        if f.device_hostname.is_none() {
            f.device_hostname = text(p, &["compromisedEntity"]).map(|h| h.to_lowercase());
        }

        for t in strings(p, &["techniques"])
            .into_iter()
            .chain(strings(p, &["subTechniques"]))
        {
            if attack::is_technique_id(&t) && !f.attack_techniques.contains(&t) {
                f.attack_techniques.push(t);
            }
        }
        let tactics: Vec<String> = strings(p, &["tactics"])
            .into_iter()
            .chain(
                text(p, &["intent"])
                    .map(|i| {
                        i.split(',')
                            .map(|s| s.trim().to_string())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            )
            .collect();
        for t in tactics {
            if let Some(id) = attack::tactic_id(&t)
                && !f.attack_tactics.iter().any(|x| x == id)
            {
                f.attack_tactics.push(id.to_string());
            }
        }
        for key in [
            "alertType",
            "compromisedEntity",
            "isIncident",
            "correlationKey",
            "alertUri",
            "vendorName",
            "intent",
            "confidenceLevel",
        ] {
            if let Some(v) = p.get(key).and_then(scalar_text) {
                f.fields.insert(key, v);
            }
        }
        if let Some(ext) = path(p, &["extendedProperties"]).and_then(Value::as_object) {
            for (k, v) in ext {
                if let Some(s) = scalar_text(v) {
                    f.fields.insert(format!("extendedProperties.{k}"), s);
                }
            }
        }
        if !id.is_empty() {
            f.fields.insert("armId", id);
        }
        Ok(f)
    }
}
