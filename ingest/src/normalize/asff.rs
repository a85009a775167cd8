//! AWS Security Finding Format (ASFF, `SchemaVersion 2018-10-08`) → Finding.
//!
//! Follows AWS Security Lake's ASFF→OCSF mapping where it exists (`finding_info.uid` = `Id`,
//! `cloud.account.uid` = `AwsAccountId`, severity from `Severity.Label`, `status` from
//! `Workflow.Status`) with one deliberate difference: `time` is the last observed activity
//! (`LastObservedAt`, then `FirstObservedAt`), not `UpdatedAt`, because correlation windows are
//! about when the attacker acted. `UpdatedAt` becomes `modified_time`.

use serde_json::{Map, Value};

use super::identity::IdentityKeys;
use super::json::{first_time, meaningful, path, strings, text};
use super::{Format, NormalizeError, Normalizer, Shape, attack};
use crate::schema::{
    CLASS_COMPLIANCE_FINDING, CLASS_DETECTION_FINDING, CLASS_VULNERABILITY_FINDING, Finding,
    Severity,
};

const FORMAT: &str = "asff";
/// The `source` column of findings from Security Hub.
pub const SOURCE: &str = "aws.securityhub";

/// Normalizes ASFF findings from Security Hub (GuardDuty, Inspector, Macie, Config, partners).
pub struct AsffNormalizer;

impl Normalizer for AsffNormalizer {
    fn format(&self) -> Format {
        Format::Asff
    }

    fn recognises(&self, r: &dyn Shape) -> bool {
        r.has("SchemaVersion") && r.has("Id") && (r.has("ProductArn") || r.has("GeneratorId"))
    }

    fn normalize(&self, r: &Map<String, Value>, raw: &str) -> Result<Finding, NormalizeError> {
        let id = text(r, &["Id"]).ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "Id",
        })?;
        let updated = first_time(
            r,
            FORMAT,
            &[("UpdatedAt", &["UpdatedAt"]), ("CreatedAt", &["CreatedAt"])],
        )?
        .ok_or(NormalizeError::MissingField {
            format: FORMAT,
            field: "UpdatedAt",
        })?;
        let observed = first_time(
            r,
            FORMAT,
            &[
                ("LastObservedAt", &["LastObservedAt"]),
                ("FirstObservedAt", &["FirstObservedAt"]),
            ],
        )?;

        // The top-level fields are what Security Hub shows after analysts' updates
        // (BatchUpdateFindings); FindingProviderFields keeps the provider's original.
        let types = {
            let mut t = strings(r, &["Types"]);
            if t.is_empty() {
                t = strings(r, &["FindingProviderFields", "Types"]);
            }
            t
        };
        let mut f = Finding::new(
            SOURCE,
            id,
            class_of(r, &types),
            observed.unwrap_or(updated),
            raw.to_string(),
        );
        f.modified_time = updated;
        f.product = text(r, &["ProductName"])
            .or_else(|| text(r, &["ProductFields", "aws/securityhub/ProductName"]))
            .or_else(|| {
                text(r, &["ProductArn"]).and_then(|a| a.rsplit('/').next().map(str::to_string))
            });
        f.event_code = types.first().cloned();
        f.set_severity(severity(r));
        f.title = text(r, &["Title"]);
        f.status = text(r, &["Workflow", "Status"])
            .or_else(|| text(r, &["WorkflowState"]))
            .map(|s| workflow_status(&s));
        f.cloud_provider = Some("AWS".into());
        f.account_uid = text(r, &["AwsAccountId"]);
        f.region = text(r, &["Region"]).or_else(|| {
            // ProductArn is arn:aws:securityhub:<region>::product/...
            text(r, &["ProductArn"]).and_then(|a| a.split(':').nth(3).map(str::to_string))
        });

        let resources = path(r, &["Resources"]).and_then(Value::as_array);
        if let Some(first) = resources
            .and_then(|rs| rs.first())
            .and_then(Value::as_object)
        {
            f.resource_uid = text(first, &["Id"]);
            f.resource_type = text(first, &["Type"]);
        }
        let mut keys = IdentityKeys::new();
        for res in resources.into_iter().flatten().filter_map(Value::as_object) {
            principal_from_resource(res, &mut f, &mut keys);
        }
        f.identity_keys = keys.into_vec();
        f.src_ip = remote_ip(r);

        for t in &types {
            // ASFF types are `namespace/category/classifier`; TTPs categories are tactics.
            let mut parts = t.split('/');
            if parts.next() == Some("TTPs")
                && let Some(id) = parts.next().and_then(attack::tactic_id)
            {
                push_unique(&mut f.attack_tactics, id);
            }
        }
        // Consolidated control findings name the control; older standard-specific ones only
        // carry it in `StandardsControlArn` (`.../control/<standard>/v/<version>/<rule>`).
        let control = text(r, &["Compliance", "SecurityControlId"])
            .or_else(|| text(r, &["ProductFields", "ControlId"]))
            .or_else(|| {
                text(r, &["ProductFields", "StandardsControlArn"])
                    .and_then(|a| a.split_once(":control/").map(|(_, c)| c.to_string()))
            });
        if let Some(c) = control {
            push_unique(&mut f.compliance_controls, &c);
        }
        for req in strings(r, &["Compliance", "RelatedRequirements"]) {
            push_unique(&mut f.compliance_controls, &req);
        }

        if let Some(pf) = path(r, &["ProductFields"]).and_then(Value::as_object) {
            for (k, v) in pf {
                if let Some(s) = super::json::scalar_text(v) {
                    f.fields.insert(k, s);
                }
            }
        }
        for (name, keys) in [
            ("ProductArn", &["ProductArn"][..]),
            ("GeneratorId", &["GeneratorId"]),
            ("RecordState", &["RecordState"]),
            ("Compliance.Status", &["Compliance", "Status"]),
            ("FirstObservedAt", &["FirstObservedAt"]),
            ("CreatedAt", &["CreatedAt"]),
        ] {
            if let Some(v) = text(r, keys) {
                f.fields.insert(name, v);
            }
        }
        Ok(f)
    }
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !list.iter().any(|x| x == v) {
        list.push(v.to_string());
    }
}

/// Compliance checks and vulnerabilities are findings, but not detections of activity.
fn class_of(r: &Map<String, Value>, types: &[String]) -> i32 {
    if r.contains_key("Compliance") {
        CLASS_COMPLIANCE_FINDING
    } else if r.contains_key("Vulnerabilities")
        || types
            .iter()
            .any(|t| t.starts_with("Software and Configuration Checks/Vulnerabilities"))
    {
        CLASS_VULNERABILITY_FINDING
    } else if types
        .iter()
        .any(|t| t.starts_with("Software and Configuration Checks"))
    {
        CLASS_COMPLIANCE_FINDING
    } else {
        CLASS_DETECTION_FINDING
    }
}

/// `Severity.Label` (as updated in Security Hub), then the provider's
/// `FindingProviderFields.Severity.Label`, then `Severity.Normalized` banded as Security Hub
/// documents it (1–39 low, 40–69 medium, 70–89 high, 90–100 critical).
fn severity(r: &Map<String, Value>) -> Severity {
    let label = text(r, &["Severity", "Label"])
        .or_else(|| text(r, &["FindingProviderFields", "Severity", "Label"]));
    if let Some(s) = label.as_deref().and_then(Severity::parse_label) {
        return s;
    }
    match path(r, &["Severity", "Normalized"]).and_then(Value::as_f64) {
        Some(n) if n >= 90.0 => Severity::Critical,
        Some(n) if n >= 70.0 => Severity::High,
        Some(n) if n >= 40.0 => Severity::Medium,
        Some(n) if n >= 1.0 => Severity::Low,
        Some(_) => Severity::Informational,
        None => Severity::Unknown,
    }
}

fn workflow_status(s: &str) -> String {
    match s.to_ascii_uppercase().as_str() {
        "NEW" => "New",
        "NOTIFIED" | "IN_PROGRESS" => "In Progress",
        "SUPPRESSED" => "Suppressed",
        "RESOLVED" => "Resolved",
        _ => return s.to_string(),
    }
    .to_string()
}

/// IAM principals named by a finding's resources: access keys (GuardDuty's API-call findings)
/// and IAM users. An assumed-role session name is the person behind the role when IAM
/// Identity Center or SAML federation set it to their user name or e-mail.
fn principal_from_resource(res: &Map<String, Value>, f: &mut Finding, keys: &mut IdentityKeys) {
    if let Some(key) = path(res, &["Details", "AwsIamAccessKey"]).and_then(Value::as_object) {
        let principal_id = text(key, &["PrincipalId"]);
        let principal_name = text(key, &["PrincipalName"]).or_else(|| text(key, &["UserName"]));
        let principal_type = text(key, &["PrincipalType"]);
        let session = principal_id
            .as_deref()
            .and_then(|p| p.split_once(':'))
            .map(|(_, s)| s.to_string());
        let is_role = principal_type.as_deref() == Some("AssumedRole");
        if f.actor_user.is_none() {
            f.actor_user = if is_role {
                session.clone()
            } else {
                principal_name.clone()
            };
            f.actor_uid = principal_id.clone();
        }
        if is_role {
            keys.upn(session.as_deref());
        } else {
            keys.upn(principal_name.as_deref());
        }
        if let Some(n) = principal_name {
            f.fields.insert("AwsIamAccessKey.PrincipalName", n);
        }
        if let Some(t) = principal_type {
            f.fields.insert("AwsIamAccessKey.PrincipalType", t);
        }
    }
    if let Some(user) = path(res, &["Details", "AwsIamUser"]).and_then(Value::as_object) {
        let name = text(user, &["UserName"]);
        if f.actor_user.is_none() {
            f.actor_user = name.clone();
            f.actor_uid = text(user, &["UserId"]);
        }
        keys.upn(name.as_deref());
        if text(res, &["Type"]).as_deref() == Some("AwsIamUser") {
            keys.aws_arn(text(res, &["Id"]).as_deref());
        }
    }
}

/// The remote IP of GuardDuty's action (API call, network connection, port probe, Kubernetes
/// or RDS login), from `Action` or the flattened `ProductFields`, else `Network.SourceIpV4`.
///
/// An outbound connection's remote address is where the instance connected *to* (a
/// command-and-control server, say), not a source: it stays in `fields` only.
fn remote_ip(r: &Map<String, Value>) -> Option<String> {
    let outbound = |dir: Option<String>| dir.is_some_and(|d| d.eq_ignore_ascii_case("OUTBOUND"));
    if let Some(action) = path(r, &["Action"]).and_then(Value::as_object) {
        for (_, detail) in action.iter() {
            let Some(d) = detail.as_object() else {
                continue;
            };
            if !outbound(text(d, &["ConnectionDirection"]))
                && let Some(ip) = text(d, &["RemoteIpDetails", "IpAddressV4"])
            {
                return Some(ip);
            }
            // A port probe lists its probers.
            if let Some(ip) = path(d, &["PortProbeDetails"])
                .and_then(Value::as_array)
                .and_then(|probes| {
                    probes
                        .iter()
                        .filter_map(Value::as_object)
                        .find_map(|p| text(p, &["RemoteIpDetails", "IpAddressV4"]))
                })
            {
                return Some(ip);
            }
        }
    }
    if let Some(pf) = path(r, &["ProductFields"]).and_then(Value::as_object) {
        let direction = pf
            .iter()
            .find(|(k, _)| k.ends_with("/connectionDirection"))
            .and_then(|(_, v)| super::json::scalar_text(v));
        if !outbound(direction) {
            let mut ips = pf
                .iter()
                .filter(|(k, _)| k.ends_with("/remoteIpDetails/ipAddressV4"))
                .filter_map(|(_, v)| meaningful(super::json::scalar_text(v)));
            if let Some(ip) = ips.next() {
                return Some(ip);
            }
        }
    }
    text(r, &["Network", "SourceIpV4"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn remote_ips_of_guardduty_actions() {
        let inbound = obj(
            json!({"Action": {"ActionType": "NETWORK_CONNECTION", "NetworkConnectionAction": {
            "ConnectionDirection": "INBOUND", "RemoteIpDetails": {"IpAddressV4": "198.51.100.7"}}}}),
        );
        assert_eq!(remote_ip(&inbound).as_deref(), Some("198.51.100.7"));
        let outbound = obj(json!({"Action": {"NetworkConnectionAction": {
            "ConnectionDirection": "OUTBOUND", "RemoteIpDetails": {"IpAddressV4": "203.0.113.9"}}}}));
        assert_eq!(remote_ip(&outbound), None, "a C2 server is not a source");
        let probe = obj(json!({"Action": {"PortProbeAction": {"PortProbeDetails": [
            {"LocalPortDetails": {"Port": 22}, "RemoteIpDetails": {"IpAddressV4": "192.0.2.44"}}]}}}));
        assert_eq!(remote_ip(&probe).as_deref(), Some("192.0.2.44"));
        let api = obj(
            json!({"Action": {"AwsApiCallAction": {"Api": "DeleteTrail", "RemoteIpDetails": {"IpAddressV4": "52.94.133.131"}}}}),
        );
        assert_eq!(remote_ip(&api).as_deref(), Some("52.94.133.131"));
    }
}
