//! The source's logic against a scripted API that, like moto, ignores filters and sorting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;

/// Serves a fixed list of findings in pages, optionally failing given calls.
struct Scripted {
    findings: Mutex<Vec<serde_json::Value>>,
    fail_calls: Vec<usize>,
    calls: Mutex<Vec<(QueryKind, Option<String>)>>,
}

impl Scripted {
    fn new(findings: Vec<serde_json::Value>, fail_calls: Vec<usize>) -> Arc<Scripted> {
        Arc::new(Scripted {
            findings: Mutex::new(findings),
            fail_calls,
            calls: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl FindingsApi for Scripted {
    async fn page(
        &self,
        query: &QueryKind,
        next_token: Option<&str>,
        page_size: i32,
    ) -> Result<ApiPage, ApiError> {
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push((query.clone(), next_token.map(str::to_string)));
            calls.len()
        };
        if self.fail_calls.contains(&call) {
            return Err(ApiError {
                status: Some(500),
                retry_after: None,
                message: "InternalException".into(),
            });
        }
        let all = self.findings.lock().expect("lock").clone();
        let start: usize = next_token.and_then(|t| t.parse().ok()).unwrap_or(0);
        let end = (start + page_size as usize).min(all.len());
        let records = all[start..end]
            .iter()
            .map(|v| Record {
                value: v.clone(),
                raw: v.to_string(),
            })
            .collect();
        Ok(ApiPage {
            records,
            next_token: (end < all.len()).then(|| end.to_string()),
        })
    }
}

fn asff(i: usize, updated: &str) -> serde_json::Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/{i}"),
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "GeneratorId": "g",
        "AwsAccountId": "111122223333",
        "Types": ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"],
        "CreatedAt": updated,
        "UpdatedAt": updated,
        "Severity": {"Label": "MEDIUM"},
        "Title": format!("finding {i}"),
        "Resources": [{"Type": "AwsEc2Instance", "Id": format!("i-{i}")}],
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE"
    })
}

fn config() -> SecurityHubConfig {
    let mut c = SecurityHubConfig::new("us-east-1");
    c.page_size = 3;
    c
}

fn source(api: Arc<Scripted>, config: SecurityHubConfig) -> SecurityHubSource {
    let apis: BTreeMap<String, Arc<dyn FindingsApi>> =
        BTreeMap::from([(DEFAULT_SCOPE.to_string(), api as Arc<dyn FindingsApi>)]);
    SecurityHubSource::with_apis("sechub", config, apis)
}

/// Drains a run, committing each page's cursor like the runner does.
async fn run(source: &mut SecurityHubSource, cursor: &mut Option<String>) -> Result<Vec<Page>> {
    let mut pages = Vec::new();
    while let Some(p) = source.next_page(cursor.as_deref()).await? {
        *cursor = p.cursor.clone();
        pages.push(p);
    }
    Ok(pages)
}

fn recent(minutes_ago: i64) -> String {
    (Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339()
}

#[tokio::test]
async fn every_finding_once_and_a_second_run_brings_nothing_new() {
    let api = Scripted::new(
        (0..7).map(|i| asff(i, &recent(60 - i as i64))).collect(),
        vec![],
    );
    let mut cursor = None;
    let pages = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("run");
    assert_eq!(
        pages.iter().map(|p| p.findings.len()).collect::<Vec<_>>(),
        [3, 3, 1]
    );
    assert!(
        pages
            .iter()
            .all(|p| p.findings.iter().all(|f| f.source == SOURCE))
    );

    let again = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("second run");
    let found: usize = again.iter().map(|p| p.findings.len()).sum();
    assert_eq!(found, 0, "the overlap is deduplicated");

    // A re-import with a later UpdatedAt is a new version and is delivered once.
    let high_water = Cursor::parse(cursor.as_deref()).expect("cursor").scopes["default"]
        .overlap
        .high_water
        .expect("high water");
    api.findings.lock().expect("lock")[2] = asff(2, &recent(1));
    let third = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("third run");
    let titles: Vec<_> = third
        .iter()
        .flat_map(|p| &p.findings)
        .map(|f| f.title.clone().unwrap_or_default())
        .collect();
    assert_eq!(titles, ["finding 2"]);
    // The incremental query starts at the high-water mark minus the overlap.
    let calls = api.calls.lock().expect("lock");
    let QueryKind::Updated { since } = &calls.last().expect("calls").0 else {
        panic!("expected an incremental query");
    };
    assert_eq!(*since, high_water - chrono::Duration::minutes(15));
}

#[tokio::test]
async fn a_failed_page_is_not_committed_and_the_next_run_resumes_there() {
    let api = Scripted::new(
        (0..7).map(|i| asff(i, &recent(60 - i as i64))).collect(),
        vec![2],
    );
    let mut cursor = None;
    let err = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect_err("page 2 fails");
    let message = err.to_string();
    assert!(
        message.contains("GetFindings page 2 for account scope `default` in us-east-1"),
        "{message}"
    );
    assert!(message.contains("HTTP 500"), "{message}");
    // The committed cursor is the one after page 1.
    let committed = Cursor::parse(cursor.as_deref()).expect("cursor");
    let query = committed.scopes["default"]
        .query
        .clone()
        .expect("query in progress");
    assert_eq!(query.next_token.as_deref(), Some("3"));

    let pages = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("resume");
    assert_eq!(
        pages.iter().map(|p| p.findings.len()).collect::<Vec<_>>(),
        [3, 1]
    );
    let resumed_with = &api.calls.lock().expect("lock")[2];
    assert_eq!(
        resumed_with.1.as_deref(),
        Some("3"),
        "the retry asks for page 2 again"
    );
}

#[tokio::test]
async fn open_findings_are_reread_when_the_interval_has_passed() {
    let updated = recent(30);
    let api = Scripted::new(vec![asff(0, &updated)], vec![]);
    let mut cursor = None;
    run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("first run");
    // Pretend the last re-read was long ago.
    let mut state = Cursor::parse(cursor.as_deref()).expect("cursor");
    state
        .scopes
        .get_mut("default")
        .expect("scope")
        .last_reconcile = Some(Utc::now() - chrono::Duration::hours(7));
    cursor = Some(state.to_json());
    // The analyst resolved it without moving UpdatedAt.
    let mut resolved = asff(0, &updated);
    resolved["Workflow"]["Status"] = json!("RESOLVED");
    *api.findings.lock().expect("lock") = vec![resolved];

    let pages = run(&mut source(api.clone(), config()), &mut cursor)
        .await
        .expect("second run");
    let statuses: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.findings)
        .map(|f| f.status.clone())
        .collect();
    assert_eq!(
        statuses,
        [Some("Resolved".to_string())],
        "the re-read delivers the new status once"
    );
    let calls = api.calls.lock().expect("lock");
    assert!(matches!(calls[1].0, QueryKind::Open { .. }));
    assert!(matches!(calls[2].0, QueryKind::Updated { .. }));
    let after = Cursor::parse(cursor.as_deref()).expect("cursor");
    assert!(
        after.scopes["default"].last_reconcile.expect("reconciled")
            > Utc::now() - chrono::Duration::minutes(1)
    );
}

#[tokio::test]
async fn scopes_are_read_in_turn_with_their_own_cursor() {
    let a = Scripted::new(vec![asff(1, &recent(5))], vec![]);
    let b = Scripted::new(vec![asff(2, &recent(5)), asff(3, &recent(4))], vec![]);
    let mut c = config();
    c.role_arns = vec![
        "arn:aws:iam::111111111111:role/r".into(),
        "arn:aws:iam::222222222222:role/r".into(),
    ];
    let apis: BTreeMap<String, Arc<dyn FindingsApi>> = BTreeMap::from([
        (c.role_arns[0].clone(), a as Arc<dyn FindingsApi>),
        (c.role_arns[1].clone(), b as Arc<dyn FindingsApi>),
    ]);
    let mut s = SecurityHubSource::with_apis("sechub", c.clone(), apis);
    let mut cursor = None;
    let pages = run(&mut s, &mut cursor).await.expect("run");
    assert_eq!(
        pages.iter().map(|p| p.findings.len()).collect::<Vec<_>>(),
        [1, 2]
    );
    let state = Cursor::parse(cursor.as_deref()).expect("cursor");
    assert_eq!(state.scopes.len(), 2);
    assert!(
        state
            .scopes
            .values()
            .all(|s| s.overlap.high_water.is_some())
    );
}

#[test]
fn invalid_configuration_is_refused_with_the_key() {
    let mut c = SecurityHubConfig::new("us-east-1");
    c.page_size = 500;
    assert!(c.validate().expect_err("too big").contains("page_size"));
    let mut c = SecurityHubConfig::new("us-east-1");
    c.role_arns = vec!["arn:aws:iam::1:user/x".into()];
    assert!(
        c.validate()
            .expect_err("not a role")
            .contains("not an IAM role ARN")
    );
}
