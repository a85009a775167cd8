//! Microsoft Entra ID sign-in (`/auditLogs/signIns`, Graph `signIn`) → Authentication.
//!
//! A sign-in is an OCSF Authentication (3002) of the user (`user_*`: UPN and Entra object
//! id, both identity keys, so rules can follow the person into AD and AWS) from an address and
//! a device. Its risk (`riskLevelDuringSignIn`) sets the severity; a failed sign-in (non-zero
//! `status.errorCode`) is at least Low.

use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{first_time, scalar_text, strings, text};
use super::{Format, NormalizeError, Normalizer, Shape};
use crate::schema::{CLASS_AUTHENTICATION, Finding, Severity};

const FORMAT: &str = "entra_signin";
/// The `source` column of Entra ID sign-ins.
pub const SOURCE: &str = "azure.entra";

/// Normalizes Entra ID sign-in records.
pub struct EntraSignInNormalizer;

impl Normalizer for EntraSignInNormalizer {
    fn format(&self) -> Format {
        Format::EntraSignIn
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        match r.str_at("@odata.type") {
            Some(t) => t.eq_ignore_ascii_case("#microsoft.graph.signIn"),
            None => {
                r.has("userPrincipalName") && r.has("appDisplayName") && r.has("createdDateTime")
            }
        }
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let id = text(r, &["id"]).ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "id",
        })?;
        let time = first_time(r, FORMAT, &[("createdDateTime", &["createdDateTime"])])?.ok_or(
            NormalizeError::MissingField {
                format: FORMAT,
                field: "createdDateTime",
            },
        )?;
        let mut f = Finding::new(SOURCE, id, CLASS_AUTHENTICATION, time, raw.to_string());
        f.product = Some("Microsoft Entra ID".into());
        let error_code = r
            .get("status")
            .and_then(|s| s.get("errorCode"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let failed = error_code != 0;
        f.event_code = Some(
            if failed {
                "signIn.failure"
            } else {
                "signIn.success"
            }
            .into(),
        );
        let risk = text(r, &["riskLevelDuringSignIn"])
            .or_else(|| text(r, &["riskLevelAggregated"]))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let severity = match risk.as_str() {
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            _ if failed => Severity::Low,
            _ => Severity::Informational,
        };
        f.set_severity(severity);
        let app = text(r, &["appDisplayName"]).unwrap_or_else(|| "an application".into());
        f.title = Some(
            match text(r, &["status", "failureReason"]).filter(|_| failed) {
                Some(reason) => format!("Failed sign-in to {app}: {reason}"),
                None => format!("Sign-in to {app}"),
            },
        );
        f.status = Some(if failed { "Failure" } else { "Success" }.into());
        f.cloud_provider = Some("Azure".into());
        f.account_uid = text(r, &["homeTenantId"]).or_else(|| text(r, &["resourceTenantId"]));
        f.resource_uid = text(r, &["resourceId"]);
        f.resource_type = text(r, &["resourceDisplayName"]);
        let upn = text(r, &["userPrincipalName"]);
        f.user_name = upn.clone();
        f.user_uid = text(r, &["userId"]);
        let mut keys = IdentityKeys::new();
        keys.upn(upn.as_deref()).aad(f.user_uid.as_deref());
        f.identity_keys = keys.into_vec();
        f.src_ip = text(r, &["ipAddress"]);
        f.device_hostname = text(r, &["deviceDetail", "displayName"]).map(|h| h.to_lowercase());
        for (name, keys) in [
            ("appDisplayName", &["appDisplayName"][..]),
            ("appId", &["appId"]),
            ("clientAppUsed", &["clientAppUsed"]),
            ("conditionalAccessStatus", &["conditionalAccessStatus"]),
            ("isInteractive", &["isInteractive"]),
            ("riskLevelDuringSignIn", &["riskLevelDuringSignIn"]),
            ("riskLevelAggregated", &["riskLevelAggregated"]),
            ("riskState", &["riskState"]),
            ("riskDetail", &["riskDetail"]),
            ("status.errorCode", &["status", "errorCode"]),
            ("status.failureReason", &["status", "failureReason"]),
            ("location.countryOrRegion", &["location", "countryOrRegion"]),
            ("location.city", &["location", "city"]),
            ("deviceDetail.deviceId", &["deviceDetail", "deviceId"]),
            (
                "deviceDetail.operatingSystem",
                &["deviceDetail", "operatingSystem"],
            ),
            ("correlationId", &["correlationId"]),
        ] {
            if let Some(v) = super::json::path(r, keys).and_then(scalar_text) {
                f.fields.insert(name, v);
            }
        }
        let risks = strings(r, &["riskEventTypes_v2"]);
        if !risks.is_empty() {
            f.fields.insert("riskEventTypes_v2", risks.join(","));
        }
        Ok(f)
    }
}
