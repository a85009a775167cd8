//! Incremental equals full: on random streams, the rows the built-in pack gives tick by tick
//! from [`IncrementalEngine`] (one engine kept across ticks) are, taken together, exactly those
//! it gives when every tick evaluates every rule over the whole window (a fresh engine per
//! tick). The streams deliver records out of order, replace earlier versions of findings
//! (changed severity, status or identity), delete some, expire the old end of the window,
//! change the directory, and have ticks without changes; enough rows die that the window is
//! compacted. A second test runs both ways through the store and the merge
//! ([`Correlator`] against [`run_pass`]) and compares detections and incidents.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use cairn_ingest::directory::provider;
use cairn_ingest::{DirectoryKind, DirectoryObject, Finding, Severity};
use cairn_rules::RuleSet;

use crate::correlator::{CorrelateConfig, Correlator, run_pass};
use crate::generator::{MixedRecords, Rng};
use crate::incremental::{Evaluation, IncrementalEngine, WindowDelta};
use crate::store::sqlite::SqliteStore;
use crate::stream_tests::{commit, outcome, record};

/// Ticks per stream, and the tick at which the directory disables another account.
const TICKS: usize = 24;
const DIRECTORY_CHANGES: usize = 14;

/// A rule row as comparable text: rule, entity, first and last seen, evidence.
type Row = (String, String, i64, i64, Vec<String>);

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default()
}

fn directory(disabled: &[usize]) -> (BTreeMap<String, String>, Vec<DirectoryObject>) {
    let mut keys = BTreeMap::new();
    let mut objects = Vec::new();
    for n in 0..6 {
        let person = format!("user{n}@corp.example");
        let key = format!("upn:{person}");
        keys.insert(key.clone(), person.clone());
        let mut o = DirectoryObject::new(
            "ldap",
            provider::ACTIVE_DIRECTORY,
            format!("guid-{n}"),
            DirectoryKind::User,
        );
        o.keys = vec![key];
        o.enabled = Some(!disabled.contains(&n));
        objects.push(o);
    }
    (keys, objects)
}

/// One tick's changes to the window, applied to `window` (the truth) and returned.
fn changes(
    rng: &mut Rng,
    records: &mut MixedRecords,
    window: &mut BTreeMap<(String, String), Finding>,
    clock: DateTime<Utc>,
) -> WindowDelta {
    let mut delta = WindowDelta::default();
    if rng.below(8) == 0 {
        return delta; // a tick where nothing arrived
    }
    for _ in 0..(20 + rng.below(120)) {
        // Out of order: up to three hours behind the clock.
        let at = clock - Duration::seconds(rng.below(3 * 3600) as i64);
        let mut f = records.record(at);
        f.raw = String::new();
        delta.upserts.push(f);
    }
    let known: Vec<(String, String)> = window.keys().cloned().collect();
    if !known.is_empty() {
        for _ in 0..rng.below(12) {
            let key = &known[rng.below(known.len())];
            let Some(old) = window.get(key) else {
                continue;
            };
            let mut f = old.clone();
            match rng.below(4) {
                0 => f.set_severity(Severity::High),
                1 => f.status = Some("Resolved".into()),
                2 => f.identity_id = Some(format!("user{}@corp.example", rng.below(6))),
                _ => f.time -= Duration::minutes(rng.below(90) as i64),
            }
            delta.upserts.push(f);
        }
        // Deletions; now and then most of the window, so that it gets compacted.
        let deletions = if rng.below(10) == 0 {
            known.len() * 2 / 3
        } else {
            rng.below(5)
        };
        for _ in 0..deletions {
            delta.removed.push(known[rng.below(known.len())].clone());
        }
    }
    for key in &delta.removed {
        window.remove(key);
    }
    for f in &delta.upserts {
        window.insert((f.source.clone(), f.finding_uid.clone()), f.clone());
    }
    delta
}

fn rows(outcomes: Vec<crate::incremental::RuleOutcome<'_>>, into: &mut BTreeSet<Row>) {
    for o in outcomes {
        let (hits, _) = o.result.expect("rule runs");
        for h in hits {
            into.insert((
                o.rule.id.clone(),
                h.entity_key,
                h.first_seen.timestamp_millis(),
                h.last_seen.timestamp_millis(),
                h.finding_uids,
            ));
        }
    }
}

#[tokio::test]
async fn incremental_ticks_give_the_rows_of_full_recomputes() {
    let rules = RuleSet::builtin().await.expect("rules");
    let partitioned = rules.rules().filter(|r| r.partition_by.is_some()).count();
    let mut fired = BTreeSet::new();
    let (mut partial_rows, mut full_rows) = (0usize, 0usize);
    let mut one_record_rules = 0;
    let mut compactions = 0;
    for seed in 1..=3u64 {
        let mut rng = Rng(seed);
        let mut records = MixedRecords::new(seed, 24, 10, 18);
        let mut window: BTreeMap<(String, String), Finding> = BTreeMap::new();
        let mut incremental = IncrementalEngine::new();
        let (mut inc_rows, mut full) = (BTreeSet::new(), BTreeSet::new());
        let mut clock = epoch();
        let mut disabled = vec![1];
        for tick in 0..TICKS {
            // Three hours a tick on average: the streams outlast the 49-hour window.
            clock += Duration::minutes(120 + rng.below(120) as i64);
            let delta = changes(&mut rng, &mut records, &mut window, clock);
            let changed = delta.upserts.len() + delta.removed.len();
            // The window keeps 49 hours: expiring is a removal, as the store's archive is.
            let cutoff = clock - Duration::hours(49);
            let expired: Vec<(String, String)> = window
                .iter()
                .filter(|(_, f)| f.time < cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                window.remove(k);
            }
            let quiet = delta.is_empty() && expired.is_empty();
            if tick % 2 == 0 {
                incremental.apply(delta).expect("apply");
                incremental
                    .apply(WindowDelta {
                        upserts: Vec::new(),
                        removed: expired,
                    })
                    .expect("apply");
            } else {
                incremental.apply(delta).expect("apply");
                incremental.expire_before(cutoff);
            }
            if tick == DIRECTORY_CHANGES {
                disabled.push(3);
            }
            let (keys, dir) = directory(&disabled);
            let (outcomes, stats) = incremental.tick(&rules, &keys, &dir).await.expect("tick");
            assert_eq!(stats.window_rows, window.len(), "seed {seed} tick {tick}");
            if quiet && tick > 0 && tick != DIRECTORY_CHANGES {
                assert_eq!(
                    stats.rules_skipped, partitioned,
                    "seed {seed} tick {tick}: a tick without changes evaluated partitioned rules"
                );
            }
            // A rule about one record at a time reads only what changed.
            for o in outcomes
                .iter()
                .filter(|o| o.evaluation == Evaluation::Partial)
            {
                if o.rule.partition_by.as_deref() == Some("finding_uid") {
                    assert!(
                        o.rows <= changed,
                        "seed {seed} tick {tick}: {} rows",
                        o.rows
                    );
                    one_record_rules += 1;
                }
            }
            partial_rows += stats.rows_evaluated;
            compactions += usize::from(stats.compacted);
            assert!(outcomes.iter().all(|o| o.evaluation != Evaluation::Full
                || o.rule.partition_by.is_none()
                || tick == 0
                || tick == DIRECTORY_CHANGES));
            rows(outcomes, &mut inc_rows);

            let mut fresh = IncrementalEngine::new();
            fresh
                .apply(WindowDelta {
                    upserts: window.values().cloned().collect(),
                    removed: Vec::new(),
                })
                .expect("apply");
            let (outcomes, stats) = fresh.tick(&rules, &keys, &dir).await.expect("tick");
            full_rows += stats.rows_evaluated;
            rows(outcomes, &mut full);
        }
        assert!(!full.is_empty(), "seed {seed}: nothing fired");
        assert_eq!(
            inc_rows.len(),
            full.len(),
            "seed {seed}: {} rows only incremental, {} only full",
            inc_rows.difference(&full).count(),
            full.difference(&inc_rows).count()
        );
        assert_eq!(inc_rows, full, "seed {seed}");
        fired.extend(full.iter().map(|r| r.0.clone()));
    }
    // The streams must exercise the pack, or the comparison proves little.
    for rule in [
        "cairn.risk.identity_risk_score",
        "cairn.cross_cloud.identity_in_aws_and_microsoft",
        "cairn.cross_cloud.ip_in_aws_and_microsoft",
        "cairn.identity.disabled_ad_account_active_in_cloud",
        "cairn.alerts.high_severity_provider_alert",
    ] {
        assert!(fired.contains(rule), "{rule} never fired: {fired:?}");
    }
    // With a few dozen people, hosts and addresses almost every tick touches most parts, so
    // the saving here is modest; `cargo bench --bench correlation` shows it at scale.
    assert!(
        partial_rows < full_rows && one_record_rules > 0 && compactions > 0,
        "incremental ticks read {partial_rows} rows, full recomputes {full_rows}; \
         {one_record_rules} partial one-record evaluations; {compactions} compactions"
    );
}

#[tokio::test]
async fn correlator_passes_leave_the_detections_and_incidents_of_full_passes() {
    let rules = RuleSet::builtin().await.expect("rules");
    let config = CorrelateConfig {
        lateness: std::time::Duration::from_secs(3600),
        ..CorrelateConfig::default()
    };
    let mut partial = 0;
    for seed in 1..=3u64 {
        let mut rng = Rng(seed);
        // Records over 80 hours, more than the window (48 h + lateness), in roughly time order
        // with shuffling inside each page, so some arrive late and some leave the window.
        let mut all: Vec<Finding> = (0..120).map(|n| record(&mut rng, n, 80)).collect();
        all.sort_by_key(|f| f.time);
        let dir = tempfile::tempdir().expect("tempdir");
        let full_store = SqliteStore::open(&dir.path().join("full.db"))
            .await
            .expect("store");
        let inc_store = SqliteStore::open(&dir.path().join("inc.db"))
            .await
            .expect("store");
        let mut correlator = Correlator::new();
        let mut start = 0;
        while start < all.len() {
            let end = (start + 5 + rng.below(20)).min(all.len());
            let mut page = all[start..end].to_vec();
            for i in (1..page.len()).rev() {
                page.swap(i, rng.below(i + 1));
            }
            // A newer version of an earlier finding: now resolved.
            if start > 0 && rng.below(3) == 0 {
                let mut f = all[rng.below(start)].clone();
                f.status = Some("Resolved".into());
                page.push(f);
            }
            start = end;
            commit(&full_store, page.clone()).await;
            commit(&inc_store, page).await;
            let full = run_pass(&full_store, &rules, &config).await.expect("pass");
            let inc = correlator
                .pass(&inc_store, &rules, &config)
                .await
                .expect("pass");
            assert!(full.rule_errors.is_empty() && inc.rule_errors.is_empty());
            partial += inc.rules_partial + inc.rules_skipped;
            assert_eq!(
                (full.detections_new, full.incidents_new),
                (inc.detections_new, inc.incidents_new),
                "seed {seed}: pass reports differ"
            );
            assert_eq!(
                outcome(&full_store).await,
                outcome(&inc_store).await,
                "seed {seed}: detections differ after a page"
            );
        }
        assert!(
            !outcome(&full_store).await.is_empty(),
            "seed {seed}: nothing fired"
        );
    }
    assert!(partial > 0, "the correlator never evaluated incrementally");
}
