//! The Microsoft Defender XDR source end to end: the real binary, configured by file, against
//! a fake identity platform and Graph (real record shapes from Microsoft's documentation).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::fakes::graph::{FakeGraph, Fault};
use crate::{ingest_source, repo_root, stdout, stored_count, stored_findings, succeeded};

const TENANT: &str = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/microsoft").join(name))
        .expect("fixture");
    serde_json::from_str::<Value>(&text).expect("JSON")["value"][0].clone()
}

fn ago(minutes: i64) -> String {
    (Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Variations of the documentation alert: distinct ids, one minute apart, some with a user.
fn alerts(n: usize) -> Vec<Value> {
    let base = fixture("graph-alerts_v2.json");
    (0..n)
        .map(|i| {
            let mut a = base.clone();
            a["id"] = json!(format!("da6375512276775608{i:02}_-96144481"));
            a["createdDateTime"] = json!(ago(120 - i as i64));
            a["lastActivityDateTime"] = json!(ago(119 - i as i64));
            a["lastUpdateDateTime"] = json!(ago(110 - i as i64));
            if i % 2 == 0 {
                a["evidence"].as_array_mut().expect("evidence").push(json!({
                    "@odata.type": "#microsoft.graph.security.userEvidence",
                    "roles": ["compromised"],
                    "userAccount": {"accountName": format!("user{i}"), "domainName": "CONTOSO",
                        "userSid": format!("S-1-5-21-1-2-3-{}", 1100 + i), "azureAdUserId": null,
                        "userPrincipalName": format!("user{i}@contoso.com"), "displayName": null}
                }));
            }
            a
        })
        .collect()
}

/// Three incidents: one with two of the alerts expanded, one Defender merged into a third,
/// and that third, old enough to be outside the time filter (only the redirect finds it).
fn incidents(alerts: &[Value]) -> Vec<Value> {
    let base = fixture("graph-incidents.json");
    let mut live = base.clone();
    live["id"] = json!("100");
    live["lastUpdateDateTime"] = json!(ago(100));
    live["alerts"] = json!([alerts[0], alerts[1]]);
    let mut merged = base.clone();
    merged["id"] = json!("101");
    merged["lastUpdateDateTime"] = json!(ago(99));
    merged["status"] = json!("redirected");
    merged["redirectIncidentId"] = json!("102");
    merged["alerts"] = json!([]);
    let mut target = base;
    target["id"] = json!("102");
    target["createdDateTime"] = json!(ago(60 * 24 * 30));
    target["lastUpdateDateTime"] = json!(ago(60 * 24 * 30));
    let mut extra = alerts[0].clone();
    extra["id"] = json!("da637000000000000000_1");
    extra["lastUpdateDateTime"] = json!(ago(60 * 24 * 30));
    target["alerts"] = json!([extra]);
    vec![live, merged, target]
}

fn config(dir: &Path, endpoint: &str, extra: &str) -> PathBuf {
    let path = dir.join("cairn.toml");
    let text = format!(
        "[sources.defender]\ntype = \"microsoft_defender\"\npage_size = 3\n{extra}\n\
         [sources.defender.auth]\ntenant_id = \"{TENANT}\"\nendpoint_override = \"{endpoint}\"\n\
         timeout = \"2s\"\nmax_retries = 4\nretry_delay = \"1s\"\n\
         credential = {{ type = \"client_secret\", client_id = \"0b5d6c4e-0000-4000-8000-0000000000c1\", client_secret_env = \"CAIRN_TEST_GRAPH_SECRET\" }}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn every_record_once_redirects_followed_and_late_records_caught() {
    let alerts = alerts(7);
    let fake = FakeGraph::start(alerts.clone(), incidents(&alerts));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &fake.url(), "");

    let first = ingest_source(dir.path(), &cfg, "defender");
    let text = succeeded(&first);
    // 7 alerts; incident 100 with its 2 alerts (already stored); 101 and, through its
    // redirect, 102 with an alert of its own.
    assert!(
        text.contains("Ingested 13 records: 13 findings (11 new or updated, 2 unchanged)"),
        "{text}"
    );
    assert_eq!(stored_count(dir.path()), 11);

    let second = stdout(&ingest_source(dir.path(), &cfg, "defender"));
    assert!(second.contains("Ingested 0 records"), "{second}");

    // An alert that becomes visible late, dated inside the look-back overlap.
    let mut late = alerts[3].clone();
    late["id"] = json!("da637551227677560899_-1");
    late["lastUpdateDateTime"] = json!(ago(106));
    fake.add_alert(late);
    let third = stdout(&ingest_source(dir.path(), &cfg, "defender"));
    assert!(
        third.contains("Ingested 1 records: 1 findings (1 new or updated"),
        "{third}"
    );
    assert_eq!(stored_count(dir.path()), 12);
    assert_eq!(fake.tokens_issued(), 3, "one token per run");
}

#[test]
fn faults_lose_nothing_tokens_refresh_and_retry_after_is_honoured() {
    let alerts = alerts(7);
    let fake = FakeGraph::start(alerts.clone(), incidents(&alerts));
    fake.fail_next([
        Fault::Pass,                          // page 1
        Fault::TooManyRequests(2),            // page 2: throttled, wait 2 s
        Fault::Unavailable,                   //   503, back off
        Fault::ExpireTokens,                  //   401: new token, same request again
        Fault::Delay(Duration::from_secs(3)), // longer than the 2 s attempt timeout
        Fault::Pass,                          //   served
        Fault::Truncate,                      // page 3: a truncated body, the run stops
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &fake.url(), "feeds = [\"alerts\"]");
    let failed = ingest_source(dir.path(), &cfg, "defender");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{}\n{err}", stdout(&failed));
    assert!(err.contains("Graph alerts_v2 page 3 for tenant"), "{err}");
    assert_eq!(stored_count(dir.path()), 6, "pages 1 and 2 are stored");
    assert_eq!(fake.tokens_issued(), 2, "the expired token was replaced");
    let requests = fake.requests();
    let throttled = requests
        .iter()
        .position(|(_, q)| q.contains("skiptoken=3"))
        .expect("page 2 asked");
    let waited = requests[throttled + 1].0 - requests[throttled].0;
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 was not honoured ({waited:?})"
    );

    fake.recover();
    let resumed = ingest_source(dir.path(), &cfg, "defender");
    let text = succeeded(&resumed);
    assert!(
        text.contains("Ingested 1 records"),
        "only the failed page is read again: {text}"
    );
    let last = fake
        .requests()
        .last()
        .map(|(_, q)| q.clone())
        .unwrap_or_default();
    assert!(
        last.contains("skiptoken=6"),
        "the run resumed at page 3: {last}"
    );
    assert_eq!(stored_count(dir.path()), 7);
}

#[test]
fn entra_sign_ins_arrive_as_authentication_records() {
    let text =
        std::fs::read_to_string(repo_root().join("ingest/testdata/normalize/entra_signins.json"))
            .expect("fixture");
    let mut signins = serde_json::from_str::<Value>(&text).expect("JSON")["value"]
        .as_array()
        .expect("value")
        .clone();
    for (i, s) in signins.iter_mut().enumerate() {
        s["createdDateTime"] = json!(ago(30 - i as i64));
    }
    let fake = FakeGraph::start(vec![], vec![]);
    fake.set_signins(signins);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &fake.url(), "feeds = [\"signins\"]");
    let out = ingest_source(dir.path(), &cfg, "defender");
    let text = succeeded(&out);
    assert!(
        text.contains("Ingested 2 records: 2 findings (2 new or updated"),
        "{text}"
    );
    let found = stored_findings(dir.path());
    assert!(
        found
            .iter()
            .all(|f| f.source == "azure.entra" && f.class_uid == 3002)
    );
    assert!(
        found
            .iter()
            .any(|f| f.severity == "High" && f.src_ip.as_deref() == Some("203.0.113.45"))
    );
    let again = stdout(&ingest_source(dir.path(), &cfg, "defender"));
    assert!(again.contains("Ingested 0 records"), "{again}");
}
