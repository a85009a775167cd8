//! Microsoft Graph security `alert` (`/security/alerts_v2`, Defender XDR) → Finding.
//!
//! The alert's `evidence[]` carries its entities: `userEvidence` gives the account (UPN,
//! on-premises SID and sAMAccountName, Entra object id, all identifiers of one person),
//! `deviceEvidence` the host (and `vmMetadata`, the cloud VM behind it), `ipEvidence` the
//! remote address. Enum values are matched case-insensitively: Microsoft's own examples mix
//! `truePositive` and `TruePositive`.

use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{first_time, path, scalar_text, strings, text};
use super::{Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{CLASS_DETECTION_FINDING, Finding, Severity};

const FORMAT: &str = "graph_alert";
/// The `source` column of Defender XDR alerts from Microsoft Graph.
pub const SOURCE: &str = "azure.defender";

/// Normalizes Graph security alerts (alerts_v2).
pub struct GraphAlertNormalizer;

impl Normalizer for GraphAlertNormalizer {
    fn format(&self) -> Format {
        Format::GraphAlert
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        match r.str_at("@odata.type") {
            Some(t) => t.eq_ignore_ascii_case("#microsoft.graph.security.alert"),
            None => r.has("serviceSource") && r.has("detectionSource") && r.has("id"),
        }
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let id = text(r, &["id"]).ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "id",
        })?;
        let activity = first_time(
            r,
            FORMAT,
            &[
                ("lastActivityDateTime", &["lastActivityDateTime"]),
                ("firstActivityDateTime", &["firstActivityDateTime"]),
                ("createdDateTime", &["createdDateTime"]),
            ],
        )?
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "createdDateTime",
        })?;
        let updated = first_time(
            r,
            FORMAT,
            &[
                ("lastUpdateDateTime", &["lastUpdateDateTime"]),
                ("createdDateTime", &["createdDateTime"]),
            ],
        )?
        .unwrap_or(activity);

        let mut f = Finding::new(
            SOURCE,
            id,
            CLASS_DETECTION_FINDING,
            activity,
            raw.to_string(),
        );
        f.modified_time = updated;
        f.product = text(r, &["serviceSource"]).map(|s| product_name(&s));
        f.event_code = text(r, &["detectorId"]).or_else(|| text(r, &["providerAlertId"]));
        f.set_severity(
            text(r, &["severity"])
                .as_deref()
                .and_then(Severity::parse_label)
                .unwrap_or(Severity::Unknown),
        );
        f.title = text(r, &["title"]);
        f.status = text(r, &["status"]).and_then(|s| alert_status(&s));
        f.cloud_provider = Some("Azure".into());
        f.account_uid = text(r, &["tenantId"]);

        let evidence: Vec<&Map<String, Value>> = path(r, &["evidence"])
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default();
        let of_type = |t: &str| {
            let t = t.to_string();
            evidence.clone().into_iter().filter(move |e| {
                e.get("@odata.type")
                    .and_then(Value::as_str)
                    .is_some_and(|o| o.eq_ignore_ascii_case(&t))
            })
        };

        let mut keys = IdentityKeys::new();
        if let Some(account) = of_type("#microsoft.graph.security.userEvidence")
            .filter_map(|e| path(e, &["userAccount"]).and_then(Value::as_object))
            .find(|a| is_person(a))
        {
            let upn = text(account, &["userPrincipalName"]);
            let sam = text(account, &["accountName"]);
            let domain = text(account, &["domainName"]);
            let sid = text(account, &["userSid"]);
            let aad = text(account, &["azureAdUserId"]);
            f.actor_user = upn.clone().or_else(|| sam.clone());
            f.actor_uid = sid.clone().or_else(|| aad.clone());
            f.actor_domain = domain.clone();
            keys.upn(upn.as_deref())
                .sid(sid.as_deref())
                .account(domain.as_deref(), sam.as_deref())
                .aad(aad.as_deref());
        }
        f.identity_keys = keys.into_vec();

        let devices: Vec<_> = of_type("#microsoft.graph.security.deviceEvidence").collect();
        let device = devices
            .iter()
            .find(|d| {
                strings(d, &["roles"])
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case("compromised"))
            })
            .or(devices.first());
        if let Some(d) = device {
            f.device_hostname = text(d, &["deviceDnsName"]).map(|h| h.to_lowercase());
            if let Some(vm) = path(d, &["vmMetadata"]).and_then(Value::as_object) {
                f.resource_uid = text(vm, &["resourceId"]);
                f.resource_type = f.resource_uid.as_deref().and_then(azure_resource_type);
                if let Some(p) = text(vm, &["cloudProvider"]) {
                    f.fields.insert("vmMetadata.cloudProvider", p);
                }
                if let Some(s) = text(vm, &["subscriptionId"]) {
                    f.fields.insert("vmMetadata.subscriptionId", s);
                }
            }
            for key in ["mdeDeviceId", "azureAdDeviceId"] {
                if let Some(id) = text(d, &[key]) {
                    f.fields.insert(key, id);
                }
            }
        }
        // Cloud apps (OAuth consent phishing, Defender for Cloud Apps) name the application.
        if let Some(app) = of_type("#microsoft.graph.security.cloudApplicationEvidence").next() {
            for (key, field) in [
                ("displayName", "cloudApplication.displayName"),
                ("appId", "cloudApplication.appId"),
                ("instanceName", "cloudApplication.instanceName"),
            ] {
                if let Some(v) = app.get(key).and_then(scalar_text) {
                    f.fields.insert(field, v);
                }
            }
            if f.resource_uid.is_none() {
                f.resource_uid = app
                    .get("appId")
                    .and_then(scalar_text)
                    .map(|id| format!("app:{id}"));
                f.resource_type = Some("CloudApplication".into());
            }
        }
        f.src_ip =
            of_type("#microsoft.graph.security.ipEvidence").find_map(|e| text(e, &["ipAddress"]));

        for t in strings(r, &["mitreTechniques"]) {
            if attack::is_technique_id(&t) && !f.attack_techniques.contains(&t) {
                f.attack_techniques.push(t);
            }
        }
        if let Some(id) = text(r, &["category"])
            .as_deref()
            .and_then(attack::tactic_id)
        {
            f.attack_tactics.push(id.to_string());
        }
        for key in [
            "category",
            "serviceSource",
            "detectionSource",
            "providerAlertId",
            "incidentId",
            "classification",
            "determination",
            "alertWebUrl",
            "incidentWebUrl",
            "firstActivityDateTime",
            "createdDateTime",
            "threatDisplayName",
            "actorDisplayName",
        ] {
            if let Some(v) = r.get(key).and_then(scalar_text) {
                f.fields.insert(key, v);
            }
        }
        Ok(f)
    }
}

/// System and service accounts appear in process evidence of nearly every endpoint alert.
fn is_person(account: &Map<String, Value>) -> bool {
    let sid = text(account, &["userSid"]).unwrap_or_default();
    let domain = text(account, &["domainName"]).unwrap_or_default();
    !(domain.eq_ignore_ascii_case("NT AUTHORITY")
        || ["S-1-5-18", "S-1-5-19", "S-1-5-20"].contains(&sid.as_str()))
}

fn product_name(service_source: &str) -> String {
    match service_source.to_ascii_lowercase().as_str() {
        "microsoftdefenderforendpoint" => "Microsoft Defender for Endpoint",
        "microsoftdefenderforidentity" => "Microsoft Defender for Identity",
        "microsoftdefenderforcloudapps" => "Microsoft Defender for Cloud Apps",
        "microsoftdefenderforoffice365" => "Microsoft Defender for Office 365",
        "microsoft365defender" => "Microsoft Defender XDR",
        "azureadidentityprotection" => "Microsoft Entra ID Protection",
        "microsoftappgovernance" => "App Governance",
        "datalossprevention" => "Microsoft Purview DLP",
        "microsoftdefenderforcloud" => "Microsoft Defender for Cloud",
        "microsoftsentinel" => "Microsoft Sentinel",
        _ => return service_source.to_string(),
    }
    .to_string()
}

fn alert_status(s: &str) -> Option<String> {
    Some(
        match s.to_ascii_lowercase().as_str() {
            "new" => "New",
            "inprogress" => "In Progress",
            "resolved" => "Resolved",
            _ => return None,
        }
        .to_string(),
    )
}

/// `Microsoft.Compute/virtualMachines` from `/subscriptions/…/providers/Microsoft.Compute/virtualMachines/NAME`.
fn azure_resource_type(resource_id: &str) -> Option<String> {
    let (_, after) = resource_id.rsplit_once("/providers/")?;
    let mut parts = after.split('/');
    let namespace = parts.next()?;
    let kind = parts.next()?;
    Some(format!("{namespace}/{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_from_arm_id() {
        assert_eq!(
            azure_resource_type(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm1"
            )
            .as_deref(),
            Some("Microsoft.Compute/virtualMachines")
        );
        assert_eq!(azure_resource_type("i-123"), None);
    }
}
