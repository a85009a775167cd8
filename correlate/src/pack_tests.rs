//! The built-in rule pack on small, explicit scenarios: each rule must fire exactly where it
//! should and stay silent on the near misses around it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use cairn_ingest::directory::provider;
use cairn_ingest::schema::{
    CLASS_ACCOUNT_CHANGE, CLASS_AUTHENTICATION, CLASS_COMPLIANCE_FINDING, CLASS_DETECTION_FINDING,
    CLASS_GROUP_MANAGEMENT,
};
use cairn_ingest::{DirectoryKind, DirectoryObject, Finding, Severity, to_record_batch};
use cairn_rules::RuleSet;

use crate::engine::Engine;

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).expect("time") + Duration::minutes(minutes)
}

struct Make(usize);

impl Make {
    fn finding(&mut self, source: &str, class: i32, minute: i64, identity: &str) -> Finding {
        self.0 += 1;
        let mut f = Finding::new(
            source,
            format!("f{}", self.0),
            class,
            at(minute),
            "{}".into(),
        );
        f.identity_id = Some(identity.into());
        f
    }

    fn windows(&mut self, code: &str, minute: i64, account: &str) -> Finding {
        let class = match code {
            "4720" => CLASS_ACCOUNT_CHANGE,
            "4728" | "4732" | "4756" => CLASS_GROUP_MANAGEMENT,
            _ => CLASS_AUTHENTICATION,
        };
        let mut f = self.finding("ad.windows", class, minute, account);
        f.event_code = Some(code.into());
        f.user_name = Some(account.into());
        f.actor_user = Some(account.into());
        f
    }

    fn alert(
        &mut self,
        source: &str,
        class: i32,
        severity: Severity,
        minute: i64,
        identity: &str,
    ) -> Finding {
        let mut f = self.finding(source, class, minute, identity);
        f.set_severity(severity);
        f.title = Some(format!("alert {}", self.0));
        f
    }
}

/// Detections per rule id over `findings`.
async fn fire(findings: Vec<Finding>) -> BTreeMap<String, usize> {
    fire_with_directory(findings, &[]).await
}

/// Detections per rule id over `findings`, with directory accounts whose identity is the
/// display form of their first key.
async fn fire_with_directory(
    findings: Vec<Finding>,
    directory: &[DirectoryObject],
) -> BTreeMap<String, usize> {
    let rules = RuleSet::builtin().await.expect("built-in pack");
    let engine = Engine::new(vec![to_record_batch(&findings).expect("batch")]).expect("engine");
    let keys: BTreeMap<String, String> = directory
        .iter()
        .flat_map(|o| {
            let id = o.keys[0]
                .split_once(':')
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            o.keys.iter().map(move |k| (k.clone(), id.clone()))
        })
        .collect();
    engine
        .set_identities(&keys, directory)
        .expect("identity tables");
    let mut out = BTreeMap::new();
    for rule in rules.rules() {
        let (hits, _) = engine.evaluate(rule).await.expect("rule runs");
        if !hits.is_empty() {
            out.insert(rule.id.clone(), hits.len());
        }
    }
    out
}

fn only(rule: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(rule.to_string(), n)])
}

#[tokio::test]
async fn bruteforce_then_logon_needs_five_failures_before_the_logon_within_an_hour() {
    let rule = "cairn.ad.bruteforce_then_logon";
    let run = |failures: i64, failure_start: i64, logon: i64| async move {
        let mut m = Make(0);
        let mut fs: Vec<Finding> = (0..failures)
            .map(|i| m.windows("4771", failure_start + i, "bob"))
            .collect();
        fs.push(m.windows("4624", logon, "bob"));
        fs.push(m.windows("4625", failure_start, "carol")); // someone else's failure
        fire(fs).await
    };
    assert_eq!(
        run(5, 0, 10).await,
        only(rule, 1),
        "five failures, then the logon"
    );
    assert_eq!(
        run(4, 0, 10).await,
        BTreeMap::new(),
        "four failures are not enough"
    );
    assert_eq!(
        run(6, 20, 10).await,
        BTreeMap::new(),
        "failures after the logon do not count"
    );
    assert_eq!(
        run(6, 0, 130).await,
        BTreeMap::new(),
        "failures two hours earlier do not count"
    );
}

#[tokio::test]
async fn group_changes_count_only_for_privileged_groups() {
    let rule = "cairn.ad.privileged_group_member_added";
    let run = |code: &'static str, group_sid: &'static str| async move {
        let mut m = Make(0);
        let mut f = m.windows(code, 0, "bob");
        f.group_uid = Some(group_sid.into());
        f.group_name = Some("group".into());
        fire(vec![f]).await
    };
    assert_eq!(
        run("4728", "S-1-5-21-1-2-3-512").await,
        only(rule, 1),
        "Domain Admins"
    );
    assert_eq!(
        run("4756", "S-1-5-21-1-2-3-519").await,
        only(rule, 1),
        "Enterprise Admins"
    );
    assert_eq!(
        run("4732", "S-1-5-32-544").await,
        only(rule, 1),
        "Administrators"
    );
    assert_eq!(
        run("4732", "S-1-5-32-545").await,
        BTreeMap::new(),
        "Users is not privileged"
    );
    assert_eq!(
        run("4728", "S-1-5-21-1-2-3-1512").await,
        BTreeMap::new(),
        "RID 1512 is not 512"
    );
}

#[tokio::test]
async fn account_creation_is_one_detection_per_creator() {
    let mut m = Make(0);
    let fs = vec![
        m.windows("4720", 0, "bob"),
        m.windows("4720", 5, "bob"),
        m.windows("4720", 6, "carol"),
        m.windows("4726", 7, "bob"),
    ];
    assert_eq!(fire(fs).await, only("cairn.ad.account_created", 2));
}

#[tokio::test]
async fn only_open_high_provider_detections_stand_alone() {
    let rule = "cairn.alerts.high_severity_provider_alert";
    let mut m = Make(0);
    let high = m.alert(
        "azure.defender",
        CLASS_DETECTION_FINDING,
        Severity::High,
        0,
        "a@x.example",
    );
    let critical = m.alert(
        "aws.securityhub",
        CLASS_DETECTION_FINDING,
        Severity::Critical,
        0,
        "b@x.example",
    );
    let medium = m.alert(
        "azure.defender",
        CLASS_DETECTION_FINDING,
        Severity::Medium,
        0,
        "c@x.example",
    );
    let mut resolved = m.alert(
        "azure.defender",
        CLASS_DETECTION_FINDING,
        Severity::High,
        0,
        "d@x.example",
    );
    resolved.status = Some("Resolved".into());
    let control = m.alert(
        "aws.securityhub",
        CLASS_COMPLIANCE_FINDING,
        Severity::High,
        0,
        "e@x.example",
    );
    assert_eq!(
        fire(vec![high, critical, medium, resolved, control]).await,
        only(rule, 2)
    );
}

#[tokio::test]
async fn cross_cloud_identity_needs_both_clouds_within_a_day() {
    let rule = "cairn.cross_cloud.identity_in_aws_and_microsoft";
    let run = |aws_class: i32, gap_minutes: i64, same_person: bool| async move {
        let mut m = Make(0);
        let aws = m.alert(
            "aws.securityhub",
            aws_class,
            Severity::Low,
            0,
            "ann@x.example",
        );
        let who = if same_person {
            "ann@x.example"
        } else {
            "ben@x.example"
        };
        let ms = m.alert(
            "azure.defender",
            CLASS_DETECTION_FINDING,
            Severity::Low,
            gap_minutes,
            who,
        );
        fire(vec![aws, ms]).await
    };
    assert_eq!(run(CLASS_DETECTION_FINDING, 600, true).await, only(rule, 1));
    assert_eq!(
        run(CLASS_DETECTION_FINDING, 25 * 60, true).await,
        BTreeMap::new(),
        "25 h apart"
    );
    assert_eq!(
        run(CLASS_DETECTION_FINDING, 60, false).await,
        BTreeMap::new(),
        "two people"
    );
    assert_eq!(
        run(CLASS_COMPLIANCE_FINDING, 60, true).await,
        BTreeMap::new(),
        "a control finding is no detection"
    );
}

fn directory_user(provider: &str, upn: &str, enabled: bool) -> DirectoryObject {
    let mut o = DirectoryObject::new("dir", provider, upn, DirectoryKind::User);
    o.keys = vec![format!("upn:{upn}")];
    o.enabled = Some(enabled);
    o
}

#[tokio::test]
async fn a_disabled_ad_account_active_in_a_cloud_is_detected() {
    let rule = "cairn.identity.disabled_ad_account_active_in_cloud";
    let run = |directory: Vec<DirectoryObject>, source: &'static str| async move {
        let mut m = Make(0);
        let f = m.alert(
            source,
            CLASS_AUTHENTICATION,
            Severity::Informational,
            0,
            "ann@x.example",
        );
        fire_with_directory(vec![f], &directory).await
    };
    let disabled = || {
        vec![directory_user(
            provider::ACTIVE_DIRECTORY,
            "ann@x.example",
            false,
        )]
    };
    assert_eq!(run(disabled(), "azure.entra").await, only(rule, 1));
    assert_eq!(run(disabled(), "aws.securityhub").await, only(rule, 1));
    assert_eq!(
        run(disabled(), "ad.windows").await,
        BTreeMap::new(),
        "activity on premises is not cloud activity"
    );
    assert_eq!(
        run(
            vec![directory_user(
                provider::ACTIVE_DIRECTORY,
                "ann@x.example",
                true
            )],
            "azure.entra"
        )
        .await,
        BTreeMap::new(),
        "enabled in AD"
    );
    assert_eq!(
        run(
            vec![directory_user(provider::ENTRA_ID, "ann@x.example", false)],
            "aws.securityhub"
        )
        .await,
        BTreeMap::new(),
        "disabled in Entra only is not this rule"
    );
}

#[tokio::test]
async fn normalize_principal_is_available_to_rules() {
    let engine = Engine::new(vec![to_record_batch(&[]).expect("batch")]).expect("engine");
    let rows = engine
        .query(
            "SELECT normalize_principal(p) AS k FROM (VALUES ('CORP\\Alice'), \
             ('arn:aws:sts::1:assumed-role/R/Alice@Corp.com'), ('WS01$'), (NULL)) AS t(p)",
        )
        .await
        .expect("query");
    assert_eq!(
        rows,
        [
            Some("sam:corp\\alice".to_string()),
            Some("upn:alice@corp.com".to_string()),
            None,
            None
        ]
    );
}
