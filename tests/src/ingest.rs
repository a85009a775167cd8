//! `cairn ingest`: bad records go to dead letters with their reason and the run says it was
//! partial; ingesting the same input twice changes nothing.

use std::io::Write;

use cairn_correlate::store::{Incident, IncidentFilter, StoreCounts};
use cairn_correlate::{SqliteStore, Store};

use crate::{repo_root, run, stdout};

#[test]
fn a_malformed_record_is_dead_lettered_and_the_rest_ingested() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repo_root().join("api/demo/data/ad-security-events.jsonl");
    let good: Vec<String> = std::fs::read_to_string(events)
        .expect("demo events")
        .lines()
        .take(3)
        .map(str::to_string)
        .collect();
    let input = dir.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&input).expect("create");
    writeln!(f, "{}", good[0]).expect("write");
    writeln!(f, "{}", good[1]).expect("write");
    writeln!(f, "{{\"Event\": {{\"System\": {{\"EventID\": 4625").expect("write"); // cut off
    writeln!(f, "{}", good[2]).expect("write");
    drop(f);

    let data = dir.path().join("data");
    let out = run(&data, &["ingest", input.to_str().expect("utf-8 path")]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial success exit status:\n{text}"
    );
    assert!(text.contains("Ingested 4 records: 3 findings"), "{text}");
    assert!(text.contains("1 dead letters"), "{text}");

    let listed = stdout(&run(&data, &["dead-letters"]));
    assert!(
        listed.contains(&format!("{}:3", input.display())),
        "{listed}"
    );
    assert!(listed.contains("invalid JSON"), "{listed}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&data.join("cairn.db"))
            .await
            .expect("store");
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.findings, counts.dead_letters), (3, 1));
        let dead = store.dead_letters(10).await.expect("dead letters");
        assert!(
            dead[0].letter.raw.starts_with("{\"Event\""),
            "the bad record is kept verbatim"
        );
    });
}

/// Every incident of the store at `db`, newest first, and the row counts.
fn incidents(db: &std::path::Path) -> (Vec<Incident>, StoreCounts) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(db).await.expect("store");
        let page = store
            .incidents(&IncidentFilter {
                limit: 100,
                ..IncidentFilter::default()
            })
            .await
            .expect("list");
        (page.items, store.counts().await.expect("counts"))
    })
}

/// What an analyst would compare: every incident's identity and contents, and the row counts.
fn snapshot(db: &std::path::Path) -> (Vec<String>, StoreCounts) {
    let (items, counts) = incidents(db);
    let described = items
        .iter()
        .map(|i| {
            format!(
                "#{} {} {} {} {}d {}f {:?} {:?}",
                i.number,
                i.id,
                i.severity,
                i.title,
                i.detection_count,
                i.finding_count,
                i.sources,
                i.entities
            )
        })
        .collect();
    (described, counts)
}

#[test]
fn ingesting_the_same_input_twice_creates_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cairn.db");
    let inputs = repo_root().join("api/demo/data");
    let inputs = inputs.to_str().expect("utf-8 path");
    let first = run(dir.path(), &["ingest", inputs]);
    assert!(first.status.success(), "{}", stdout(&first));
    let after_first = snapshot(&db);
    assert_eq!(after_first.0.len(), 2, "{:#?}", after_first.0);
    assert_eq!((after_first.1.findings, after_first.1.detections), (160, 9));

    let second = run(dir.path(), &["ingest", inputs]);
    let text = stdout(&second);
    assert!(second.status.success(), "{text}");
    assert!(text.contains("(0 new or updated, 160 unchanged)"), "{text}");
    assert!(
        text.contains("0 detections new, 0 updated; 0 incidents new, 0 updated"),
        "{text}"
    );
    assert_eq!(
        snapshot(&db),
        after_first,
        "the second run changed the incidents"
    );

    // A third run, correlating only, also finds nothing new.
    let pass = stdout(&run(dir.path(), &["correlate"]));
    assert!(
        pass.contains("0 detections new, 0 updated; 0 incidents new, 0 updated"),
        "{pass}"
    );
}

/// The shape of the incident queue, independent of how identities happen to be named.
fn structure(db: &std::path::Path) -> Vec<String> {
    let mut shapes: Vec<String> = incidents(db)
        .0
        .iter()
        .map(|i| {
            format!(
                "{} {}d {}f {:?}",
                i.severity, i.detection_count, i.finding_count, i.sources
            )
        })
        .collect();
    shapes.sort();
    shapes
}

#[test]
fn records_arriving_in_several_batches_give_the_same_incidents() {
    let data = repo_root().join("api/demo/data");
    let file = |name: &str| data.join(name).to_str().expect("utf-8 path").to_string();

    let at_once = tempfile::tempdir().expect("tempdir");
    assert!(
        run(
            at_once.path(),
            &["ingest", data.to_str().expect("utf-8 path")]
        )
        .status
        .success()
    );

    let expected = structure(&at_once.path().join("cairn.db"));
    assert_eq!(expected.len(), 2, "{expected:#?}");
    // AD first, correlated on its own, then AWS, then Microsoft (whose alert links the AD
    // account to the AWS session); and the reverse.
    for order in [
        [
            "ad-security-events.jsonl",
            "securityhub-findings.json",
            "defender-alerts.json",
        ],
        [
            "defender-alerts.json",
            "securityhub-findings.json",
            "ad-security-events.jsonl",
        ],
    ] {
        let in_batches = tempfile::tempdir().expect("tempdir");
        for name in order {
            let out = run(in_batches.path(), &["ingest", &file(name)]);
            assert!(out.status.success(), "{}", stdout(&out));
        }
        let db = in_batches.path().join("cairn.db");
        assert_eq!(structure(&db), expected, "order {order:?}");
        let (_, counts) = snapshot(&db);
        assert_eq!(
            counts.detections, 9,
            "order {order:?}: no detection duplicated when identities joined"
        );
    }
}

#[test]
fn a_replay_gives_the_incidents_of_the_live_run() {
    let data = repo_root().join("api/demo/data");
    let live = tempfile::tempdir().expect("tempdir");
    for name in [
        "ad-security-events.jsonl",
        "securityhub-findings.json",
        "defender-alerts.json",
    ] {
        let file = data.join(name);
        let out = run(live.path(), &["ingest", file.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "{}", stdout(&out));
    }
    let into = live.path().join("replayed");
    let into_arg = into.to_str().expect("utf-8 path");
    let out = run(
        live.path(),
        &["replay", "--into", into_arg, "--page-size", "40"],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Replayed 160 findings (0 from the archive) in 4 pages"),
        "{text}"
    );
    let expected = structure(&live.path().join("cairn.db"));
    assert_eq!(structure(&into.join("cairn.db")), expected);
    assert_eq!(snapshot(&into.join("cairn.db")).1.detections, 9);

    // Replaying into a store that already holds findings is refused.
    let again = run(live.path(), &["replay", "--into", into_arg]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("replay into a new one"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
