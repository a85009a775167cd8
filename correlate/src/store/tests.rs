//! Store behaviour every implementation must show; run here against SQLite.

use chrono::{DateTime, Duration, Utc};

use cairn_ingest::schema::CLASS_AUTHENTICATION;
use cairn_ingest::{DeadLetter, Finding, Page};

use super::sqlite::SqliteStore;
use super::*;

fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).expect("time") + Duration::minutes(minutes)
}

fn finding(uid: &str, minute: i64) -> Finding {
    Finding::new(
        "ad.windows",
        uid.into(),
        CLASS_AUTHENTICATION,
        t(minute),
        format!("{{\"uid\":\"{uid}\"}}"),
    )
}

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(&dir.path().join("cairn.db"))
        .await
        .expect("open store");
    (dir, s)
}

#[tokio::test]
async fn pages_are_idempotent_and_newer_versions_replace_older() {
    let (_dir, s) = store().await;
    let page = Page {
        findings: vec![finding("a", 0), finding("b", 1)],
        dead_letters: vec![DeadLetter::new(
            "file",
            "x.json:3".into(),
            "invalid JSON".into(),
            b"{oops",
        )],
        cursor: Some("c1".into()),
        bytes: 10,
        ..Page::default()
    };
    let first = s.commit_page("file", &page).await.expect("commit");
    assert_eq!(
        first,
        PageStats {
            stored: 2,
            unchanged: 0,
            dead_letters: 1,
            ..PageStats::default()
        }
    );
    let again = s.commit_page("file", &page).await.expect("commit again");
    assert_eq!(
        again,
        PageStats {
            stored: 0,
            unchanged: 2,
            dead_letters: 0,
            ..PageStats::default()
        }
    );
    assert_eq!(
        s.cursor("file").await.expect("cursor").as_deref(),
        Some("c1")
    );

    let mut newer = finding("a", 0);
    newer.modified_time = t(5);
    newer.title = Some("updated".into());
    let mut older = finding("b", 1);
    older.modified_time = t(-5);
    older.title = Some("stale".into());
    let stats = s
        .commit_page(
            "file",
            &Page {
                findings: vec![newer, older],
                ..Page::default()
            },
        )
        .await
        .expect("commit versions");
    assert_eq!(
        stats,
        PageStats {
            stored: 1,
            unchanged: 1,
            dead_letters: 0,
            ..PageStats::default()
        }
    );
    let stored = s.findings_since(t(-60)).await.expect("read");
    let titles: Vec<_> = stored.iter().map(|f| f.title.as_deref()).collect();
    assert_eq!(titles, [Some("updated"), None]);

    // Same version, different record (status changed in place): replaced; identical: kept.
    let mut restated = finding("b", 1);
    restated.raw = "{\"uid\":\"b\",\"status\":\"RESOLVED\"}".into();
    restated.status = Some("Resolved".into());
    let stats = s
        .commit_page(
            "file",
            &Page {
                findings: vec![restated.clone(), finding("a", 0)],
                ..Page::default()
            },
        )
        .await
        .expect("commit restated");
    assert_eq!(
        stats,
        PageStats {
            stored: 1,
            unchanged: 1,
            dead_letters: 0,
            ..PageStats::default()
        }
    );
    let again = s
        .commit_page(
            "file",
            &Page {
                findings: vec![restated],
                ..Page::default()
            },
        )
        .await
        .expect("again");
    assert_eq!(again.unchanged, 1);
    assert_eq!(s.counts().await.expect("counts").dead_letters, 1);
    assert_eq!(s.watermark().await.expect("watermark"), Some(t(1)));
    let dead = s.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead[0].letter.location, "x.json:3");
    assert_eq!(dead[0].letter.raw, "{oops");
}

fn incident(id: &str, severity_id: i32, minute: i64) -> Incident {
    Incident {
        id: id.into(),
        number: 0,
        title: format!("incident {id}"),
        status: IncidentStatus::New,
        severity_id,
        severity: cairn_ingest::Severity::from_id(severity_id)
            .caption()
            .into(),
        first_seen: t(minute),
        last_seen: t(minute),
        created_at: t(minute),
        updated_at: t(minute),
        tactics: vec![],
        techniques: vec![],
        sources: vec!["ad.windows".into()],
        entities: vec![Entity {
            kind: "identity".into(),
            value: format!("{id}@corp.example"),
        }],
        detection_count: 0,
        finding_count: 0,
        merged_into: None,
    }
}

#[tokio::test]
async fn incidents_page_newest_first_with_filters() {
    let (_dir, s) = store().await;
    let changes = CorrelationChanges {
        incidents: vec![
            incident("i1", 2, 0),
            incident("i2", 4, 10),
            incident("i3", 5, 20),
        ],
        ..CorrelationChanges::default()
    };
    s.apply(&changes).await.expect("apply");
    let page = s
        .incidents(&IncidentFilter {
            limit: 2,
            ..IncidentFilter::default()
        })
        .await
        .expect("page 1");
    let numbers: Vec<_> = page.items.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [3, 2]);
    assert_eq!(page.next, Some(2));
    let page2 = s
        .incidents(&IncidentFilter {
            limit: 2,
            before_number: page.next,
            ..IncidentFilter::default()
        })
        .await
        .expect("page 2");
    assert_eq!(
        page2
            .items
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        ["i1"]
    );
    assert_eq!(page2.next, None);
    let high = s
        .incidents(&IncidentFilter {
            limit: 10,
            min_severity: Some(4),
            since: Some(t(15)),
            ..IncidentFilter::default()
        })
        .await
        .expect("filtered");
    assert_eq!(
        high.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["i3"]
    );
    assert_eq!(high.items[0].entities[0].value, "i3@corp.example");
    // Applying the same incident again keeps its number.
    s.apply(&CorrelationChanges {
        incidents: vec![incident("i1", 3, 0)],
        ..CorrelationChanges::default()
    })
    .await
    .expect("re-apply");
    assert_eq!(
        s.incident_id_by_number(1).await.expect("lookup").as_deref(),
        Some("i1")
    );
    let detail = s.incident("i1").await.expect("detail").expect("exists");
    assert_eq!(detail.incident.severity_id, 3);
}

#[tokio::test]
async fn a_merged_incident_is_closed_and_its_detections_move_to_the_survivor() {
    let (_dir, s) = store().await;
    let detection = |id: &str, incident: &str| super::Detection {
        id: id.into(),
        rule_id: format!("rule.{id}"),
        title: format!("detection {id}"),
        entity_kind: "identity".into(),
        entity_key: format!("{id}@corp.example"),
        bucket: 0,
        severity_id: 3,
        first_seen: t(0),
        last_seen: t(0),
        finding_uids: vec![format!("f-{id}")],
        tactics: vec![],
        techniques: vec![],
        incident_id: Some(incident.into()),
    };
    s.apply(&CorrelationChanges {
        incidents: vec![incident("old", 3, 0), incident("young", 4, 5)],
        detections: vec![detection("d1", "old"), detection("d2", "young")],
        ..CorrelationChanges::default()
    })
    .await
    .expect("two incidents");
    let mut survivor = incident("old", 4, 0);
    survivor.entities.push(Entity {
        kind: "identity".into(),
        value: "young@corp.example".into(),
    });
    s.apply(&CorrelationChanges {
        incidents: vec![survivor],
        detections: vec![detection("d3", "old")],
        merged: vec![("young".into(), "old".into())],
        ..CorrelationChanges::default()
    })
    .await
    .expect("merge");
    let young = s.incident("young").await.expect("read").expect("kept");
    assert_eq!(young.incident.status, IncidentStatus::Closed);
    assert_eq!(young.incident.merged_into.as_deref(), Some("old"));
    assert_eq!(young.incident.detection_count, 0);
    let old = s.incident("old").await.expect("read").expect("kept");
    assert_eq!(old.incident.detection_count, 3);
    assert_eq!(old.incident.finding_count, 3);
    let open: Vec<String> = s
        .open_incidents()
        .await
        .expect("open")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(open, ["old"]);
}

#[tokio::test]
async fn severity_is_raised_for_cross_cloud_and_multi_stage_incidents() {
    let (_dir, s) = store().await;
    let detection = |id: &str, incident: &str, severity_id: i32| super::Detection {
        id: id.into(),
        rule_id: format!("rule.{id}"),
        title: format!("detection {id}"),
        entity_kind: "identity".into(),
        entity_key: "x@corp.example".into(),
        bucket: 0,
        severity_id,
        first_seen: t(0),
        last_seen: t(0),
        finding_uids: vec![format!("f-{id}")],
        tactics: vec![],
        techniques: vec![],
        incident_id: Some(incident.into()),
    };
    let mut on_premises = incident("onprem", 3, 0);
    on_premises.tactics = vec!["TA0006".into(), "TA0008".into()];
    let mut cross_cloud = incident("cross", 3, 0);
    cross_cloud.sources = vec!["ad.windows".into(), "aws.securityhub".into()];
    let mut staged = incident("staged", 3, 0);
    staged.tactics = vec!["TA0001".into(), "TA0006".into(), "TA0008".into()];
    let mut critical = incident("critical", 5, 0);
    critical.sources = vec!["azure.defender".into(), "aws.securityhub".into()];
    s.apply(&CorrelationChanges {
        incidents: vec![on_premises, cross_cloud, staged, critical],
        detections: vec![
            detection("d1", "onprem", 3),
            detection("d2", "cross", 3),
            detection("d3", "staged", 3),
            detection("d4", "critical", 5),
        ],
        ..CorrelationChanges::default()
    })
    .await
    .expect("apply");
    for (id, expected) in [("onprem", 3), ("cross", 4), ("staged", 4), ("critical", 5)] {
        let detail = s.incident(id).await.expect("read").expect("exists");
        assert_eq!(detail.incident.severity_id, expected, "{id}");
    }
}

/// Every outbox event in delivery order, drained through a sink of its own.
async fn outbox(s: &SqliteStore, sink: &str) -> Vec<OutboxEvent> {
    let later = Utc::now() + Duration::days(365);
    let mut all = Vec::new();
    loop {
        let batch = s.outbox_pending(sink, later, 100).await.expect("outbox");
        if batch.is_empty() {
            return all;
        }
        let done: Vec<(String, DeliveryOutcome)> = batch
            .iter()
            .map(|e| (e.event_id.clone(), DeliveryOutcome::Delivered))
            .collect();
        s.outbox_record(sink, &done).await.expect("record");
        all.extend(batch);
    }
}

#[tokio::test]
async fn incident_changes_reach_the_outbox_with_them_including_merges_and_identity_moves() {
    let (_dir, s) = store().await;
    s.apply(&CorrelationChanges {
        incidents: vec![incident("a", 3, 0), incident("b", 4, 5)],
        ..CorrelationChanges::default()
    })
    .await
    .expect("two incidents");
    let first = outbox(&s, "one").await;
    assert_eq!(first.len(), 2);
    // The same state again is no event.
    s.apply(&CorrelationChanges {
        incidents: vec![incident("a", 3, 0)],
        ..CorrelationChanges::default()
    })
    .await
    .expect("unchanged");
    assert!(outbox(&s, "one").await.is_empty());

    // Absorbing `b` into `a` closes `b`: both change.
    let mut survivor = incident("a", 4, 0);
    survivor.entities.push(Entity {
        kind: "identity".into(),
        value: "b@corp.example".into(),
    });
    s.apply(&CorrelationChanges {
        incidents: vec![survivor],
        merged: vec![("b".into(), "a".into())],
        ..CorrelationChanges::default()
    })
    .await
    .expect("merge");
    let merged = outbox(&s, "one").await;
    let b = merged
        .iter()
        .find(|e| e.incident_id == "b")
        .expect("an event for the absorbed incident");
    assert_eq!(b.payload["status"], "closed");
    assert_eq!(b.payload["merged_into"], "a");
    assert!(merged.iter().any(|e| e.incident_id == "a"));

    // Joining identity a@ into c@ renames the person in incident `a`.
    let aliases = std::collections::BTreeMap::from([(
        "a@corp.example".to_string(),
        "c@corp.example".to_string(),
    )]);
    s.record_identities(&Default::default(), &aliases, &[])
        .await
        .expect("identities");
    let moved = outbox(&s, "one").await;
    assert_eq!(moved.len(), 1, "{moved:#?}");
    let entities: Vec<&str> = moved[0].payload["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert!(entities.contains(&"c@corp.example"), "{entities:?}");
    assert!(!entities.contains(&"a@corp.example"), "{entities:?}");

    // A sink that never ran gets every event, each once.
    assert_eq!(outbox(&s, "late").await.len(), 2 + merged.len() + 1);
}
