//! The AWS Security Hub source end to end: the real binary, configured by file, against moto
//! (`GetFindings`) and a local fake (`GetFindingsV2`, faults).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use cairn_correlate::Store;

use crate::fakes::securityhub::{FakeSecurityHub, Fault};
use crate::moto::Moto;
use crate::{ingest_source, repo_root, run, stdout, stored_count, succeeded, with_store};

fn samples() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/securityhub/asff-samples.json"))
            .expect("fixture");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["Findings"].as_array().expect("Findings").clone()
}

fn distinct(findings: &[Value]) -> usize {
    findings
        .iter()
        .map(|f| (f["ProductArn"].to_string(), f["Id"].to_string()))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Writes a configuration with one Security Hub source and returns its path.
fn config(dir: &Path, endpoint: &str, extra: &str) -> PathBuf {
    let path = dir.join("cairn.toml");
    let text = format!(
        "[sources.sechub]\ntype = \"aws_security_hub\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\
         initial_lookback = \"3650d\"\nrequests_per_second = 50.0\n{extra}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn moto_every_finding_once_nothing_new_twice_and_updates_replace() {
    let moto = Moto::start();
    let findings = samples();
    assert_eq!(moto.import(&findings), findings.len() as u64);
    let expected = distinct(&findings);

    let dir = tempfile::tempdir().expect("tempdir");
    // Small pages: 62 findings in 9 pages must lose nothing.
    let cfg = config(dir.path(), &moto.url(), "page_size = 7");
    let first = ingest_source(dir.path(), &cfg, "sechub");
    let text = succeeded(&first);
    assert!(
        text.contains(&format!(
            "Ingested {expected} records: {expected} findings ({expected} new or updated"
        )),
        "{text}"
    );
    let count = stored_count(dir.path());
    assert_eq!(count as usize, expected);

    let second = stdout(&ingest_source(dir.path(), &cfg, "sechub"));
    assert!(
        second.contains("Ingested 0 records"),
        "moto ignores the UpdatedAt filter; the source must not:\n{second}"
    );

    // Re-import one finding with a later UpdatedAt and a new title: an update, not a copy.
    let mut changed = findings[0].clone();
    changed["UpdatedAt"] = json!(chrono::Utc::now().to_rfc3339());
    changed["Title"] = json!("Re-imported by the test");
    assert_eq!(moto.import(&[changed.clone()]), 1);
    let third = stdout(&ingest_source(dir.path(), &cfg, "sechub"));
    assert!(
        third.contains("Ingested 1 records: 1 findings (1 new or updated, 0 unchanged)"),
        "{third}"
    );
    let (count, title) = with_store(dir.path(), async |s| {
        let uid = changed["Id"].as_str().expect("id").to_string();
        let f = s.findings_by_uid(&[uid]).await.expect("lookup");
        (
            s.counts().await.expect("counts").findings,
            f[0].title.clone(),
        )
    });
    assert_eq!(count as usize, expected);
    assert_eq!(title.as_deref(), Some("Re-imported by the test"));
    // The raw record is the one Security Hub returned, JSON for JSON.
    let raw: Value = with_store(dir.path(), async |s| {
        let uid = changed["Id"].as_str().expect("id").to_string();
        serde_json::from_str(&s.findings_by_uid(&[uid]).await.expect("lookup")[0].raw)
            .expect("raw JSON")
    });
    assert_eq!(raw["Title"], "Re-imported by the test");
}

#[test]
fn moto_with_an_assumed_role_per_account() {
    let moto = Moto::start();
    let findings: Vec<Value> = samples().into_iter().take(10).collect();
    moto.import(&findings);
    let dir = tempfile::tempdir().expect("tempdir");
    // moto's STS answers AssumeRole with temporary credentials of the role's account.
    let cfg = config(
        dir.path(),
        &moto.url(),
        "role_arns = [\"arn:aws:iam::123456789012:role/CairnSecurityHubReader\"]\nexternal_id = \"cairn-test\"",
    );
    let out = ingest_source(dir.path(), &cfg, "sechub");
    let text = succeeded(&out);
    let expected = distinct(&findings);
    assert!(
        text.contains(&format!("Ingested {expected} records")),
        "{text}"
    );
    let cursor: Value = with_store(dir.path(), async |s| {
        serde_json::from_str(&s.cursor("sechub").await.expect("cursor").expect("cursor"))
            .expect("JSON")
    });
    assert!(
        cursor["scopes"]["arn:aws:iam::123456789012:role/CairnSecurityHubReader"]["high_water"]
            .is_string(),
        "{cursor}"
    );
}

#[test]
fn get_findings_v2_reads_ocsf_findings_from_a_fake() {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/securityhub/ocsf-finding.json"))
            .expect("fixture");
    let base: Value = serde_json::from_str(&text).expect("JSON");
    let findings: Vec<Value> = (0..5)
        .map(|i| {
            let mut f = base.clone();
            f["finding_info"]["uid"] = json!(format!(
                "{}-{i}",
                base["finding_info"]["uid"].as_str().unwrap_or_default()
            ));
            f["finding_info"]["modified_time_dt"] = json!(format!("2025-06-0{}T10:00:00Z", i + 1));
            f
        })
        .collect();
    let fake = FakeSecurityHub::start(findings);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &fake.url(),
        "api = \"get_findings_v2\"\npage_size = 2",
    );
    let out = ingest_source(dir.path(), &cfg, "sechub");
    let text = succeeded(&out);
    assert!(
        text.contains("Ingested 5 records: 5 findings (5 new or updated"),
        "{text}"
    );
    assert_eq!(fake.calls(), ["GetFindingsV2"; 3], "three pages of two");
    let sources = with_store(dir.path(), async |s| {
        let all = s
            .findings_since(chrono::DateTime::UNIX_EPOCH)
            .await
            .expect("read");
        all.iter()
            .map(|f| (f.source.clone(), f.class_uid))
            .collect::<BTreeSet<_>>()
    });
    assert_eq!(
        sources,
        BTreeSet::from([("aws.securityhub".to_string(), 2004)])
    );
    let again = stdout(&ingest_source(dir.path(), &cfg, "sechub"));
    assert!(again.contains("Ingested 0 records"), "{again}");
}

#[test]
fn faults_lose_nothing_and_a_failed_page_is_not_committed() {
    let findings: Vec<Value> = samples().into_iter().take(18).collect();
    let fake = FakeSecurityHub::start(findings.clone());
    // Page 1: throttled, then a 500, then served (the SDK retries with jittered backoff).
    // Page 2: too slow for the attempt timeout once, then served.
    // Page 3: a truncated body on every attempt: the run fails there.
    fake.fail_next([
        Fault::Throttle,
        Fault::ServerError,
        Fault::Delay(Duration::ZERO),
        Fault::Delay(Duration::from_secs(4)),
        Fault::Delay(Duration::ZERO),
        Fault::Truncate,
        Fault::Truncate,
        Fault::Truncate,
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &fake.url(),
        "page_size = 5\nmax_attempts = 3\ntimeout = \"2s\"",
    );
    let failed = ingest_source(dir.path(), &cfg, "sechub");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{}\n{err}", stdout(&failed));
    assert!(
        err.contains("GetFindings page 3 for account scope `default` in us-east-1 failed"),
        "{err}"
    );

    let (count, cursor) = with_store(dir.path(), async |s| {
        (
            s.counts().await.expect("counts").findings,
            s.cursor("sechub").await.expect("cursor"),
        )
    });
    assert_eq!(count, 10, "pages 1 and 2 are stored");
    let cursor: Value =
        serde_json::from_str(&cursor.expect("a committed cursor")).expect("JSON cursor");
    assert_eq!(
        cursor["scopes"]["default"]["query"]["next_token"], "10",
        "the cursor stops before the failed page"
    );

    fake.recover();
    let resumed = ingest_source(dir.path(), &cfg, "sechub");
    let text = succeeded(&resumed);
    assert!(
        text.contains("Ingested 8 records: 8 findings (8 new or updated"),
        "{text}"
    );
    let count = stored_count(dir.path());
    assert_eq!(count as usize, distinct(&findings));
}

#[test]
fn findings_that_join_an_incident_are_written_back_once() {
    // The demo story: AD and Defender from files, Security Hub from the fake.
    let demo = repo_root().join("api/demo/data");
    let text =
        std::fs::read_to_string(demo.join("securityhub-findings.json")).expect("demo findings");
    let findings = serde_json::from_str::<Value>(&text).expect("JSON")["Findings"]
        .as_array()
        .expect("Findings")
        .clone();
    let fake = FakeSecurityHub::start(findings);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &fake.url(), "write_back = true");
    let files = [
        demo.join("ad-security-events.jsonl"),
        demo.join("defender-alerts.json"),
    ];
    let out = run(
        dir.path(),
        &[
            "ingest",
            files[0].to_str().expect("utf-8"),
            files[1].to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));

    let out = run(
        dir.path(),
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "ingest",
            "--source",
            "sechub",
        ],
    );
    let text = succeeded(&out);
    assert!(
        text.contains("Security Hub write-back (sechub): 1 findings marked NOTIFIED"),
        "{text}"
    );
    let updates = fake.updates();
    assert_eq!(updates.len(), 1, "{updates:#?}");
    let update = &updates[0];
    assert_eq!(update["Workflow"]["Status"], "NOTIFIED");
    assert_eq!(update["Note"]["UpdatedBy"], "cairn");
    assert!(
        update["Note"]["Text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Cairn incident #")),
        "{update}"
    );
    let ids = update["FindingIdentifiers"]
        .as_array()
        .expect("identifiers");
    assert_eq!(
        ids.len(),
        1,
        "only the finding in an incident, not the background: {update}"
    );
    assert!(
        ids[0]["Id"]
            .as_str()
            .is_some_and(|i| i.ends_with("/finding/a6c556fcbc9bea427a19f8b787099a0b")),
        "{update}"
    );
    assert_eq!(
        ids[0]["ProductArn"],
        "arn:aws:securityhub:us-east-2::product/aws/guardduty"
    );

    // A later pass does not repeat it.
    let again = run(
        dir.path(),
        &["--config", cfg.to_str().expect("utf-8"), "correlate"],
    );
    assert!(again.status.success(), "{}", stdout(&again));
    assert_eq!(fake.updates().len(), 1);
}
