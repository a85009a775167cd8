//! Defender for Cloud and Sentinel through Azure Resource Manager, end to end against the fake.

use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::fakes::graph::FakeGraph;
use crate::{ingest_source, repo_root, stdout, stored_findings, succeeded};

const TENANT: &str = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("ingest/testdata/normalize").join(name))
        .expect("fixture");
    serde_json::from_str(&text).expect("JSON")
}

fn config(dir: &Path, endpoint: &str, source: &str) -> PathBuf {
    let path = dir.join("cairn.toml");
    let text = format!(
        "{source}\n[sources.azure.auth]\ntenant_id = \"{TENANT}\"\nendpoint_override = \"{endpoint}\"\ntimeout = \"5s\"\n\
         credential = {{ type = \"client_secret\", client_id = \"0b5d6c4e-0000-4000-8000-0000000000c1\", client_secret_env = \"CAIRN_TEST_GRAPH_SECRET\" }}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn defender_for_cloud_alerts_once_and_status_changes_as_new_versions() {
    let mut alerts = fixture("defender_cloud_alerts.json")["value"]
        .as_array()
        .expect("value")
        .clone();
    let fake = FakeGraph::start(vec![], vec![]);
    fake.set_arm_alerts(alerts.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &fake.url(),
        "[sources.azure]\ntype = \"microsoft_defender_for_cloud\"\nsubscriptions = [\"20ff7fc3-e762-44dd-bd96-b71116dcdc23\"]\nretention = \"3650d\"",
    );
    let first = ingest_source(dir.path(), &cfg, "azure");
    let text = succeeded(&first);
    assert!(
        text.contains("Ingested 3 records: 3 findings (3 new or updated"),
        "{text}"
    );
    let found = stored_findings(dir.path());
    assert!(found.iter().all(|f| f.source == "azure.defender_cloud"));
    let aws = found
        .iter()
        .find(|f| f.cloud_provider.as_deref() == Some("AWS"))
        .expect("the multicloud alert");
    assert_eq!(
        aws.resource_uid.as_deref(),
        Some("arn:aws:ec2:us-east-1:193043430472:instance/i-0c10c2c7863d1a356")
    );

    let second = stdout(&ingest_source(dir.path(), &cfg, "azure"));
    assert!(second.contains("Ingested 0 records"), "{second}");

    // An analyst dismisses one: a new version, delivered once.
    alerts[1]["properties"]["status"] = json!("Dismissed");
    fake.set_arm_alerts(alerts);
    let third = stdout(&ingest_source(dir.path(), &cfg, "azure"));
    assert!(
        third.contains("Ingested 1 records: 1 findings (1 new or updated"),
        "{third}"
    );
    assert!(
        stored_findings(dir.path())
            .iter()
            .any(|f| f.status.as_deref() == Some("Suppressed"))
    );
}

#[test]
fn sentinel_incidents_with_their_alerts() {
    let mut incident = fixture("sentinel_incident.json");
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    incident["properties"]["lastModifiedTimeUtc"] = json!(now);
    let alerts = fixture("sentinel_incident_alerts.json")["value"]
        .as_array()
        .expect("value")
        .clone();
    let fake = FakeGraph::start(vec![], vec![]);
    fake.set_sentinel(vec![incident], alerts);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &fake.url(),
        "[sources.azure]\ntype = \"microsoft_sentinel\"\n\
         workspaces = [{ subscription_id = \"d0cfe6b2-9ac0-4464-9919-dccaee2e48c0\", resource_group = \"myRg\", workspace = \"myWorkspace\" }]",
    );
    let first = ingest_source(dir.path(), &cfg, "azure");
    let text = succeeded(&first);
    assert!(
        text.contains("Ingested 2 records: 2 findings (2 new or updated"),
        "{text}"
    );
    let found = stored_findings(dir.path());
    let classes: Vec<i32> = found.iter().map(|f| f.class_uid).collect();
    assert!(
        classes.contains(&2005) && classes.contains(&2004),
        "{classes:?}"
    );
    assert!(found.iter().all(|f| f.source == "azure.sentinel"));
    let incident = found
        .iter()
        .find(|f| f.class_uid == 2005)
        .expect("incident");
    assert_eq!(
        incident.device_hostname.as_deref(),
        Some("web01.contoso.com"),
        "host entity"
    );
    assert_eq!(
        incident.src_ip.as_deref(),
        Some("198.51.100.5"),
        "IP entity"
    );
    assert!(
        incident
            .identity_keys
            .contains(&"upn:john@contoso.com".to_string()),
        "{:?}",
        incident.identity_keys
    );
    let second = stdout(&ingest_source(dir.path(), &cfg, "azure"));
    assert!(second.contains("Ingested 0 records"), "{second}");
}

/// Defender for Cloud regulatory compliance through ARM (standards → controls → assessments,
/// paged): each assessment state is a finding with its control, and evidence reports of PCI DSS
/// and NIST SP 800-53 hold the controls with their status over time (a control that failed and
/// then passed shows both checks and passes).
#[test]
fn defender_compliance_assessments_are_evidence_for_their_controls() {
    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    let assessment = |standard: &str, control: &str, n: u32, state: &str| {
        json!({
            "id": format!("/subscriptions/{SUB}/providers/Microsoft.Security/regulatoryComplianceStandards/{standard}/regulatoryComplianceControls/{control}/regulatoryComplianceAssessments/00000000-0000-4000-8000-{n:012}"),
            "name": format!("00000000-0000-4000-8000-{n:012}"),
            "type": "Microsoft.Security/regulatoryComplianceStandards/regulatoryComplianceControls/regulatoryComplianceAssessments",
            "properties": {"description": format!("assessment {n}"), "assessmentType": "BuiltIn", "state": state,
                           "passedResources": 1, "failedResources": u32::from(state == "Failed"), "skippedResources": 0}
        })
    };
    let mut assessments = vec![
        assessment("PCI-DSS-4", "1.1.1", 1, "Failed"),
        assessment("PCI-DSS-4", "1.2.1", 2, "Passed"),
        assessment("NIST-SP-800-53-R5", "AC-2", 3, "Failed"),
        assessment("NIST-SP-800-53-R5", "AC-2", 4, "Passed"),
        assessment("NIST-SP-800-53-R5", "AC-2", 5, "Passed"),
    ];
    let fake = FakeGraph::start(vec![], vec![]);
    fake.set_compliance(assessments.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &fake.url(),
        &format!(
            "[sources.azure]\ntype = \"microsoft_defender_compliance\"\nsubscriptions = [\"{SUB}\"]"
        ),
    );
    let first = succeeded(&ingest_source(dir.path(), &cfg, "azure"));
    assert!(first.contains("Ingested 5 records: 5 findings"), "{first}");
    let found = stored_findings(dir.path());
    assert!(
        found
            .iter()
            .all(|f| f.source == "azure.defender_compliance")
    );

    // The PCI control is fixed: a new state, a new finding.
    assessments[0]["properties"]["state"] = json!("Passed");
    fake.set_compliance(assessments);
    succeeded(&ingest_source(dir.path(), &cfg, "azure"));
    assert_eq!(stored_findings(dir.path()).len(), 6);

    let report = |framework: &str| -> Vec<Value> {
        let out = dir.path().join(framework);
        let o = crate::run(
            dir.path(),
            &[
                "report",
                "evidence",
                "--framework",
                framework,
                "--out",
                out.to_str().expect("utf-8"),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&std::fs::read(out.join("controls.json")).expect("controls"))
            .expect("JSON")
    };
    let pci = report("pci-dss");
    let control = |list: &[Value], id: &str| -> Value {
        list.iter()
            .find(|c| c["control"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing from {list:#?}"))
    };
    let fixed = control(&pci, "PCI-DSS-4/1.1.1");
    assert_eq!(fixed["status"], "PASSED");
    assert_eq!(fixed["checks"], json!({"FAILED": 1, "PASSED": 1}));
    assert_eq!(control(&pci, "PCI-DSS-4/1.2.1")["status"], "PASSED");
    assert_eq!(pci.len(), 2, "only PCI DSS controls");
    let nist = report("nist-800-53");
    let ac2 = control(&nist, "NIST-SP-800-53-R5/AC-2");
    assert_eq!(ac2["status"], "FAILED", "one of its assessments fails");
    assert_eq!(ac2["history"].as_array().map(Vec::len), Some(3));
}
