//! `cairn demo`: the bundled story ends as one incident spanning AWS, Microsoft and AD, and
//! the API serves it.

use serde_json::Value;

use crate::{Server, run, stdout};

const ALL_THREE: &str = "ad.windows, aws.securityhub, azure.defender";

#[test]
fn demo_once_prints_one_incident_across_aws_microsoft_and_ad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["demo", "--once"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 dead letters"), "{text}");
    let spanning: Vec<&str> = text.lines().filter(|l| l.contains(ALL_THREE)).collect();
    assert_eq!(
        spanning.len(),
        1,
        "exactly one incident spans all three sources:\n{text}"
    );
    // The worst step names it: the attacker's DCSync.
    assert!(spanning[0].contains("Critical"), "{text}");
    assert!(spanning[0].contains("DCSync by admmig"), "{text}");
}

#[test]
fn demo_serves_the_incident_with_its_cross_source_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["demo"]);

    let (status, body) = server.get("/api/v1/incidents");
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let story: Vec<&Value> = items
        .iter()
        .filter(|i| {
            i["sources"] == serde_json::json!(["ad.windows", "aws.securityhub", "azure.defender"])
        })
        .collect();
    assert_eq!(story.len(), 1, "{body}");
    let id = story[0]["id"].as_str().expect("id");
    assert_eq!(story[0]["severity"], "Critical");
    assert!(
        story[0]["entities"]
            .as_array()
            .expect("entities")
            .iter()
            .any(|e| e["kind"] == "identity" && e["value"] == "admmig@offsec.lan")
    );

    let (status, body) = server.get(&format!("/api/v1/incidents/{id}"));
    assert_eq!(status, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("JSON");
    let timeline = detail["timeline"].as_array().expect("timeline");
    for source in ["ad.windows", "aws.securityhub", "azure.defender"] {
        assert!(
            timeline.iter().any(|t| t["source"] == source),
            "no {source} evidence in the timeline"
        );
    }
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = timeline
        .iter()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t["time"].as_str().expect("time"))
                .expect("RFC 3339")
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "timeline is in event-time order");
    let rules: Vec<&str> = detail["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["rule_id"].as_str())
        .collect();
    for r in [
        "cairn.ad.bruteforce_then_logon",
        "cairn.ad.privileged_group_member_added",
        "cairn.cross_cloud.identity_in_aws_and_microsoft",
    ] {
        assert!(rules.contains(&r), "{r} did not fire: {rules:?}");
    }
    let reasons = detail["merge_reasons"].as_array().expect("reasons");
    assert!(
        reasons[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("opened by"))
    );
    assert!(
        reasons
            .iter()
            .skip(1)
            .all(|r| r["reason"].as_str().is_some_and(|r| r.contains(" shares ")))
    );
    // The raw record is served as JSON for evidence.
    assert!(
        timeline
            .iter()
            .any(|t| t["raw"]["SchemaVersion"] == "2018-10-08")
    );

    let (status, body) = server.get("/healthz");
    assert_eq!(status, 200, "{body}");
}
