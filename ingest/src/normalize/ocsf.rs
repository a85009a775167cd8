//! OCSF findings (Security Hub `GetFindingsV2`, Security Lake, any OCSF 1.x producer) → Finding.
//!
//! Cairn's schema is a flattening of OCSF, so the mapping is mostly paths: `cloud.account.uid`
//! → `account_uid`, `resources[0]` → the resource columns, `finding_info.attacks[]` → ATT&CK.
//! As with ASFF, `time` is the last observed activity (`finding_info.last_seen_time`) so that
//! recurring findings stay in the correlation window, and `modified_time` is
//! `finding_info.modified_time`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{checked_time, path, scalar_text, strings, text};
use super::{Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{Finding, Severity};

const FORMAT: &str = "ocsf";
/// The `source` column of OCSF records read from files; sources that pull OCSF from a known
/// service (Security Hub) set their own.
pub const SOURCE: &str = "ocsf";

/// Normalizes OCSF events and findings.
pub struct OcsfNormalizer;

/// An OCSF timestamp: `<name>_dt` (RFC 3339) or `<name>` (epoch milliseconds).
fn ocsf_time(
    obj: &Map<String, Value>,
    parent: &[&str],
    name: &'static str,
    dt: &'static str,
) -> Result<Option<DateTime<Utc>>, NormalizeError> {
    let at = |field: &str| {
        let mut keys: Vec<&str> = parent.to_vec();
        keys.push(field);
        path(obj, &keys).cloned()
    };
    if let Some(raw) = at(dt).as_ref().and_then(scalar_text) {
        return checked_time(FORMAT, dt, &raw).map(Some);
    }
    match at(name) {
        Some(Value::Number(n)) => {
            let ms = n.as_i64().ok_or_else(|| NormalizeError::InvalidField {
                format: FORMAT,
                field: name,
                value: n.to_string(),
                reason: "not epoch milliseconds".into(),
            })?;
            let t = DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                NormalizeError::InvalidField {
                    format: FORMAT,
                    field: name,
                    value: n.to_string(),
                    reason: "out of range".into(),
                }
            })?;
            checked_time(FORMAT, name, &t.to_rfc3339()).map(Some)
        }
        Some(Value::String(s)) => checked_time(FORMAT, name, &s).map(Some),
        _ => Ok(None),
    }
}

impl Normalizer for OcsfNormalizer {
    fn format(&self) -> Format {
        Format::Ocsf
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        r.is_number_at("class_uid") && r.is_object_at("metadata")
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let class_uid = r
            .get("class_uid")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .ok_or(NormalizeError::MissingField {
                format: FORMAT,
                field: "class_uid",
            })?;
        let uid = text(r, &["finding_info", "uid"])
            .or_else(|| text(r, &["metadata", "uid"]))
            .ok_or(NormalizeError::MissingField {
                format: FORMAT,
                field: "finding_info.uid",
            })?;
        let event_time = ocsf_time(r, &[], "time", "time_dt")?;
        let activity = ocsf_time(r, &["finding_info"], "last_seen_time", "last_seen_time_dt")?
            .or(ocsf_time(
                r,
                &["finding_info"],
                "first_seen_time",
                "first_seen_time_dt",
            )?)
            .or(event_time)
            .ok_or(NormalizeError::MissingField {
                format: FORMAT,
                field: "time",
            })?;
        let modified = ocsf_time(r, &["finding_info"], "modified_time", "modified_time_dt")?
            .or(event_time)
            .unwrap_or(activity);

        let mut f = Finding::new(SOURCE, uid, class_uid, activity, raw.to_string());
        f.modified_time = modified;
        f.product = text(r, &["metadata", "product", "name"]);
        f.event_code = strings(r, &["finding_info", "types"])
            .into_iter()
            .next()
            .or_else(|| text(r, &["metadata", "event_code"]));
        let severity = r
            .get("severity_id")
            .and_then(Value::as_i64)
            .and_then(|s| i32::try_from(s).ok())
            .map(Severity::from_id)
            .or_else(|| {
                text(r, &["severity"])
                    .as_deref()
                    .and_then(Severity::parse_label)
            })
            .unwrap_or(Severity::Unknown);
        f.set_severity(severity);
        f.title = text(r, &["finding_info", "title"]).or_else(|| text(r, &["message"]));
        f.status = text(r, &["status"]);
        f.cloud_provider = text(r, &["cloud", "provider"]);
        f.account_uid = text(r, &["cloud", "account", "uid"]);
        f.region = text(r, &["cloud", "region"]);
        if let Some(res) = path(r, &["resources"])
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_object)
        {
            f.resource_uid = text(res, &["uid"]);
            f.resource_type = text(res, &["type"]);
            f.region = f.region.or_else(|| text(res, &["region"]));
        }

        // The actor: top-level, else the first evidence that names one.
        let evidences: Vec<&Map<String, Value>> = path(r, &["evidences"])
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        let user = path(r, &["actor", "user"])
            .and_then(Value::as_object)
            .or_else(|| {
                evidences
                    .iter()
                    .find_map(|e| path(e, &["actor", "user"]).and_then(Value::as_object))
            });
        let mut keys = IdentityKeys::new();
        if let Some(u) = user {
            let name = text(u, &["name"]);
            f.actor_user = name.clone();
            f.actor_uid = text(u, &["uid"]);
            f.actor_domain = text(u, &["domain"]);
            keys.upn(name.as_deref())
                .upn(text(u, &["email_addr"]).as_deref())
                .account(f.actor_domain.as_deref(), name.as_deref());
        }
        // AWS role sessions carry the person in the session name (`AROA…:alice@corp`).
        if let Some(session) = f
            .actor_uid
            .as_deref()
            .and_then(|u| u.split_once(':'))
            .map(|(_, s)| s.to_string())
        {
            keys.upn(Some(&session));
        }
        f.identity_keys = keys.into_vec();
        f.src_ip = text(r, &["src_endpoint", "ip"]).or_else(|| {
            evidences
                .iter()
                .find_map(|e| text(e, &["src_endpoint", "ip"]))
        });
        f.device_hostname = text(r, &["device", "hostname"]).map(|h| h.to_lowercase());

        for a in path(r, &["finding_info", "attacks"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            if let Some(t) = text(a, &["technique", "uid"]).filter(|t| attack::is_technique_id(t))
                && !f.attack_techniques.contains(&t)
            {
                f.attack_techniques.push(t);
            }
            let tactic = text(a, &["tactic", "uid"]).or_else(|| {
                text(a, &["tactic", "name"]).and_then(|n| attack::tactic_id(&n).map(str::to_string))
            });
            if let Some(t) = tactic
                && !f.attack_tactics.contains(&t)
            {
                f.attack_tactics.push(t);
            }
        }
        if let Some(c) = text(r, &["compliance", "control"]) {
            f.compliance_controls.push(c);
        }
        for req in strings(r, &["compliance", "requirements"]) {
            if !f.compliance_controls.contains(&req) {
                f.compliance_controls.push(req);
            }
        }
        if let Some(unmapped) = path(r, &["unmapped"]).and_then(Value::as_object) {
            for (k, v) in unmapped {
                if let Some(s) = scalar_text(v) {
                    f.fields.insert(k, s);
                }
            }
        }
        for (name, keys) in [
            ("metadata.product.uid", &["metadata", "product", "uid"][..]),
            ("metadata.version", &["metadata", "version"]),
            ("finding_info.src_url", &["finding_info", "src_url"]),
            ("compliance.status", &["compliance", "status"]),
        ] {
            if let Some(v) = text(r, keys) {
                f.fields.insert(name, v);
            }
        }
        Ok(f)
    }
}
