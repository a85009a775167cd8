//! Incremental equals full. On random streams, at every tick of one [`IncrementalEngine`]
//! kept across ticks, every row the built-in pack gives is a row a plain [`Engine`] gives over
//! the same window at that tick, and every row the plain engine gives was given by that tick
//! or an earlier one (rule, entity, times, evidence, title and severity). The streams deliver
//! records out of order, some without a resolved identity, replace earlier versions of
//! findings (changed severity, status, time or identity), delete some, expire the old end of
//! the window, change the directory and the identity keys, and have ticks without changes;
//! enough rows die that the window is compacted. A second test runs a [`Correlator`] and
//! [`run_pass`] through the store and the merge, page by page, and compares every detection
//! (all its fields) and incident.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use cairn_ingest::directory::provider;
use cairn_ingest::{DirectoryKind, DirectoryObject, Finding, Severity, to_record_batch};
use cairn_rules::{Rule, RuleSet};

use crate::correlator::{CorrelateConfig, Correlator, run_pass};
use crate::engine::{Engine, RuleHit};
use crate::generator::{MixedRecords, Rng};
use crate::incremental::{Evaluation, IncrementalEngine, WindowDelta};
use crate::store::sqlite::SqliteStore;
use crate::stream_tests::{commit, incident_details, record};

/// Ticks per stream, and the tick at which the directory disables another account.
const TICKS: usize = 20;
const DIRECTORY_CHANGES: usize = 12;
/// The tick at which an account's key is linked to another identity.
const KEYS_CHANGE: usize = 6;

/// A rule row: rule, entity, first and last seen, evidence, title, severity.
type Row = (
    String,
    String,
    i64,
    i64,
    Vec<String>,
    Option<String>,
    Option<i32>,
);

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default()
}

/// The directory (six AD accounts, `disabled` ones disabled) and the identity keys; after
/// `relinked`, account 5's key names another identity.
fn directory(
    disabled: &[usize],
    relinked: bool,
) -> (BTreeMap<String, String>, Vec<DirectoryObject>) {
    let mut keys = BTreeMap::new();
    let mut objects = Vec::new();
    for n in 0..6 {
        let person = format!("user{n}@corp.example");
        let key = format!("upn:{person}");
        let id = if relinked && n == 5 {
            format!("{person}#2")
        } else {
            person.clone()
        };
        keys.insert(key.clone(), id);
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
    purge: bool,
) -> WindowDelta {
    let mut delta = WindowDelta::default();
    if rng.below(8) == 0 && !purge {
        return delta; // a tick where nothing arrived
    }
    for _ in 0..(20 + rng.below(120)) {
        // Out of order: up to three hours behind the clock.
        let at = clock - Duration::seconds(rng.below(3 * 3600) as i64);
        let mut f = records.record(at);
        f.raw = String::new();
        // Some records name an account but resolve to no identity, so rules fall back to
        // the account name (and partitions to NULL or to the name).
        if rng.below(5) == 0 {
            f.user_name = f
                .actor_user
                .as_deref()
                .and_then(|u| u.split('@').next())
                .map(str::to_string);
            f.identity_id = None;
        }
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
            match rng.below(5) {
                0 => f.set_severity(Severity::High),
                1 => f.status = Some("Resolved".into()),
                2 => f.identity_id = Some(format!("user{}@corp.example", rng.below(6))),
                3 => f.identity_id = None,
                _ => f.time -= Duration::minutes(rng.below(90) as i64),
            }
            delta.upserts.push(f);
        }
        // Deletions; now and then most of the window, so that it gets compacted.
        if purge || rng.below(10) == 0 {
            for key in &known {
                if rng.below(4) > 0 {
                    delta.removed.push(key.clone());
                }
            }
        } else {
            for _ in 0..rng.below(5) {
                delta.removed.push(known[rng.below(known.len())].clone());
            }
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

fn rows_of(rule: &Rule, hits: Vec<RuleHit>, into: &mut BTreeSet<Row>) {
    for h in hits {
        into.insert((
            rule.id.clone(),
            h.entity_key,
            h.first_seen.timestamp_millis(),
            h.last_seen.timestamp_millis(),
            h.finding_uids,
            h.title,
            h.severity_id,
        ));
    }
}

/// Every rule over `window` on a plain engine: the reference.
async fn recompute(
    rules: &RuleSet,
    window: &BTreeMap<(String, String), Finding>,
    keys: &BTreeMap<String, String>,
    directory: &[DirectoryObject],
) -> BTreeSet<Row> {
    let findings: Vec<Finding> = window.values().cloned().collect();
    let engine = Engine::new(vec![to_record_batch(&findings).expect("batch")]).expect("engine");
    engine.set_identities(keys, directory).expect("tables");
    let mut out = BTreeSet::new();
    for rule in rules.rules() {
        let (hits, _) = engine.evaluate(rule).await.expect("rule runs");
        rows_of(rule, hits, &mut out);
    }
    out
}

#[tokio::test]
async fn incremental_ticks_give_the_rows_of_full_recomputes() {
    let rules = RuleSet::builtin().await.expect("rules");
    let partitioned = rules.rules().filter(|r| r.partition_by.is_some()).count();
    let mut fired = BTreeSet::new();
    let (mut partial_evaluations, mut one_record_rules, mut compactions) = (0, 0, 0);
    for seed in 1..=2u64 {
        let mut rng = Rng(seed);
        let mut records = MixedRecords::new(seed, 24, 10, 18);
        let mut window: BTreeMap<(String, String), Finding> = BTreeMap::new();
        // Never swapping touched parts for the whole window, so that the parts are tested.
        let mut incremental = IncrementalEngine::new().with_partial_limit(f64::INFINITY);
        let mut produced: BTreeSet<Row> = BTreeSet::new();
        let mut clock = epoch();
        let mut disabled = vec![1];
        for tick in 0..TICKS {
            // Three hours a tick on average: the streams outlast the 49-hour window.
            clock += Duration::minutes(120 + rng.below(120) as i64);
            let delta = changes(&mut rng, &mut records, &mut window, clock, tick % 9 == 8);
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
            let tables_change = tick == DIRECTORY_CHANGES || tick == KEYS_CHANGE;
            if tick == DIRECTORY_CHANGES {
                disabled.push(3);
            }
            let (keys, dir) = directory(&disabled, tick >= KEYS_CHANGE);
            let (outcomes, stats) = incremental.tick(&rules, &keys, &dir).await.expect("tick");
            assert_eq!(stats.window_rows, window.len(), "seed {seed} tick {tick}");
            if quiet && tick > 0 && !tables_change {
                assert_eq!(
                    stats.rules_skipped, partitioned,
                    "seed {seed} tick {tick}: a tick without changes evaluated partitioned rules"
                );
            }
            compactions += usize::from(stats.compacted);
            let mut now = BTreeSet::new();
            for o in outcomes {
                match o.evaluation {
                    Evaluation::Full => assert!(
                        o.rule.partition_by.is_none() || tick == 0 || tables_change,
                        "seed {seed} tick {tick}: {} over the whole window",
                        o.rule.id
                    ),
                    Evaluation::Partial => {
                        partial_evaluations += 1;
                        // A rule about one record at a time reads only what changed.
                        if o.rule.partition_by.as_deref() == Some("finding_uid") {
                            assert!(
                                o.rows <= changed,
                                "seed {seed} tick {tick}: {} rows",
                                o.rows
                            );
                            one_record_rules += 1;
                        }
                    }
                    Evaluation::Skipped => {}
                }
                let (hits, _) = o.result.expect("rule runs");
                rows_of(o.rule, hits, &mut now);
            }
            let reference = recompute(&rules, &window, &keys, &dir).await;
            // Sound: every row of the tick is a row of the full recompute at this tick.
            let wrong: Vec<&Row> = now.difference(&reference).collect();
            assert!(
                wrong.is_empty(),
                "seed {seed} tick {tick}: rows a recompute does not give: {wrong:#?}"
            );
            // Complete: every row of the recompute was given by this tick or an earlier one.
            produced.extend(now);
            let missing: Vec<&Row> = reference.difference(&produced).collect();
            assert!(
                missing.is_empty(),
                "seed {seed} tick {tick}: rows never given: {missing:#?}"
            );
            fired.extend(reference.iter().map(|r| r.0.clone()));
        }
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
    assert!(
        partial_evaluations > 0 && one_record_rules > 0 && compactions > 0,
        "{partial_evaluations} partial evaluations, {one_record_rules} of one-record rules; {compactions} compactions"
    );
}

/// Every detection of `store` with all it says (but its incident, whose id is random), and
/// every incident's title, severity, status and detections.
async fn stored(store: &SqliteStore) -> (Vec<String>, Vec<String>) {
    let mut detections = Vec::new();
    let mut incidents = Vec::new();
    for detail in incident_details(store).await {
        let inc = &detail.incident;
        let mut ids: Vec<String> = detail.detections.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        incidents.push(format!(
            "{} | {} | {} | {:?} | {} | {}",
            inc.title,
            inc.severity_id,
            inc.status.as_str(),
            inc.tactics,
            inc.finding_count,
            ids.join(",")
        ));
        for mut d in detail.detections {
            d.incident_id = None;
            d.finding_uids.sort();
            detections.push(format!("{d:?}"));
        }
    }
    detections.sort();
    incidents.sort();
    (detections, incidents)
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
            let (full_detections, full_incidents) = stored(&full_store).await;
            let (inc_detections, inc_incidents) = stored(&inc_store).await;
            assert_eq!(
                full_detections, inc_detections,
                "seed {seed}: detections differ"
            );
            assert_eq!(
                full_incidents, inc_incidents,
                "seed {seed}: incidents differ"
            );
        }
        assert!(
            !stored(&full_store).await.0.is_empty(),
            "seed {seed}: nothing fired"
        );
    }
    assert!(partial > 0, "the correlator never evaluated incrementally");
}
