//! One correlation pass: load the window, resolve identities, run every rule, turn rows into
//! detections keyed by `(rule, entity, window bucket)`, merge them into incidents, and write
//! the results in one transaction.
//!
//! A pass is idempotent: over the same findings it produces the same detection ids, finds
//! them stored with the same evidence, and writes nothing new.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use cairn_ingest::Finding;
use cairn_rules::{EntityKind, Rule, RuleSet};

use crate::engine::RuleHit;
use crate::error::{CorrelateError, Result};
use crate::identity;
use crate::incremental::{IncrementalEngine, RuleOutcome};
use crate::merge::merge;
use crate::store::{Detection, IdentityUpdate, Store, detection_id};

/// Settings of the correlator (`[correlate]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelateConfig {
    /// Event-time span kept in the `findings` table, back from the newest finding.
    pub window: Duration,
    /// How far behind the newest finding a record may arrive and still correlate with
    /// everything its rules' windows reach: the table holds `window + lateness` of event time.
    /// A record later than that correlates only with what is still in the table.
    pub lateness: Duration,
    /// How far apart two detections may be and still merge into one incident.
    pub merge_window: Duration,
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        CorrelateConfig {
            window: Duration::from_secs(24 * 3600),
            lateness: Duration::from_secs(3600),
            merge_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Start of the window (event time), if there were findings.
    pub window_start: Option<DateTime<Utc>>,
    /// End of the window: the newest finding's event time.
    pub window_end: Option<DateTime<Utc>>,
    /// Findings in the window.
    pub findings: usize,
    /// Findings moved to the archive because they are older than the window.
    pub archived: usize,
    /// Bytes the window holds between passes: its Arrow segments (without `raw`, see
    /// [`Correlator::pass`]; builders round up, so small windows look larger per finding) and
    /// its partition indexes. Query-time memory is not counted.
    pub window_bytes: usize,
    /// Findings whose resolved identity changed.
    pub identities_changed: usize,
    /// Joins refused because records named two different accounts (SIDs, GUIDs, Entra ids)
    /// as one.
    pub identity_conflicts: usize,
    /// Rules evaluated.
    pub rules: usize,
    /// Detections seen for the first time.
    pub detections_new: usize,
    /// Stored detections whose evidence grew.
    pub detections_updated: usize,
    /// Incidents opened.
    pub incidents_new: usize,
    /// Incidents that took new evidence.
    pub incidents_updated: usize,
    /// Rules that failed at run time, with the reason; the other rules still ran.
    pub rule_errors: Vec<String>,
    /// Rows skipped because they named no entity.
    pub rows_without_entity: usize,
    /// Rules evaluated over the whole window (no `partition_by`, first pass, or their
    /// `identities`/`directory` tables changed).
    pub rules_full: usize,
    /// Rules evaluated only over the parts of the window that new, changed or expired
    /// findings touched.
    pub rules_partial: usize,
    /// Rules not evaluated: nothing in their parts changed.
    pub rules_skipped: usize,
    /// Rows the rule evaluations read, summed over rules.
    pub rows_evaluated: usize,
}

pub(crate) fn to_detection(rule: &Rule, hit: RuleHit) -> Detection {
    // A finding is its own entity and never recurs under another uid; a time bucket would only
    // split it when the provider updates its activity time.
    let bucket = if rule.entity == EntityKind::Finding {
        0
    } else {
        let window_ms = i64::try_from(rule.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        hit.first_seen.timestamp_millis().div_euclid(window_ms)
    };
    let title = hit.title.unwrap_or_else(|| match rule.entity {
        EntityKind::Finding => rule.title.clone(),
        _ => format!("{}: {}", rule.title, hit.entity_key),
    });
    Detection {
        id: detection_id(&rule.id, &hit.entity_key, bucket),
        rule_id: rule.id.clone(),
        title,
        entity_kind: rule.entity.as_str().to_string(),
        entity_key: hit.entity_key,
        bucket,
        severity_id: hit.severity_id.unwrap_or(rule.severity.id()),
        first_seen: hit.first_seen,
        last_seen: hit.last_seen,
        finding_uids: hit.finding_uids,
        tactics: rule.attack.tactics.clone(),
        techniques: rule.attack.techniques.clone(),
        incident_id: None,
    }
}

/// Adds `rule`'s rows to `found` as detections, folding rows with the same key.
pub(crate) fn add_hits(found: &mut HashMap<String, Detection>, rule: &Rule, hits: Vec<RuleHit>) {
    for hit in hits {
        let d = to_detection(rule, hit);
        match found.get_mut(&d.id) {
            Some(existing) => {
                fold(existing, &d);
            }
            None => {
                found.insert(d.id.clone(), d);
            }
        }
    }
}

/// Combines two sightings of the same detection key; true if `into` changed.
pub(crate) fn fold(into: &mut Detection, other: &Detection) -> bool {
    let before = (
        into.first_seen,
        into.last_seen,
        into.finding_uids.len(),
        into.severity_id,
    );
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last_seen = into.last_seen.max(other.last_seen);
    into.severity_id = into.severity_id.max(other.severity_id);
    let mut uids: BTreeSet<String> = into.finding_uids.drain(..).collect();
    uids.extend(other.finding_uids.iter().cloned());
    into.finding_uids = uids.into_iter().collect();
    before
        != (
            into.first_seen,
            into.last_seen,
            into.finding_uids.len(),
            into.severity_id,
        )
}

/// Resolves the identities of `findings` (in place) together with every directory account,
/// and records new assignments, aliases, links and changed findings.
async fn resolve_identities(
    store: &dyn Store,
    findings: &mut [Finding],
    report: &mut PassReport,
) -> Result<IdentityTables> {
    let before: Vec<Option<String>> = findings.iter().map(|f| f.identity_id.clone()).collect();
    let directory = store.directory_objects().await?;
    let mut keys: Vec<String> = findings
        .iter()
        .flat_map(|f| f.identity_keys.iter().cloned())
        .chain(directory.iter().flat_map(|o| o.keys.iter().cloned()))
        .collect();
    keys.sort();
    keys.dedup();
    let known = store.identity_assignments(&keys).await?;
    let catalog = store.identity_catalog().await?;
    let resolution = identity::resolve(findings, &directory, &known, &catalog);
    report.identities_changed = resolution.findings_changed;
    report.identity_conflicts = resolution.conflicts.len();
    for c in resolution.conflicts.iter().take(5) {
        tracing::warn!(a = %c.a, b = %c.b, reason = %c.reason, "Refused to join two different accounts into one identity");
    }
    if !resolution.assignments.is_empty()
        || !resolution.aliases.is_empty()
        || !resolution.links.is_empty()
    {
        store
            .record_identities(
                &resolution.assignments,
                &resolution.aliases,
                &resolution.links,
            )
            .await?;
    }
    if report.identities_changed > 0 {
        let updates: Vec<IdentityUpdate> = findings
            .iter()
            .zip(before)
            .filter(|(f, b)| &f.identity_id != b)
            .map(|(f, _)| IdentityUpdate {
                source: f.source.clone(),
                finding_uid: f.finding_uid.clone(),
                identity_id: f.identity_id.clone(),
            })
            .collect();
        store.set_identities(&updates).await?;
    }
    let mut key_ids: BTreeMap<String, String> =
        known.into_iter().map(|(k, a)| (k, a.identity_id)).collect();
    for (alias, survivor) in &resolution.aliases {
        for id in key_ids.values_mut() {
            if id == alias {
                *id = survivor.clone();
            }
        }
    }
    key_ids.extend(resolution.assignments);
    Ok(IdentityTables {
        keys: key_ids,
        directory,
    })
}

/// What rules see of identities: every key of this pass with its identity, and the directory.
pub struct IdentityTables {
    /// Key → identity id.
    pub keys: BTreeMap<String, String>,
    /// Directory accounts.
    pub directory: Vec<cairn_ingest::DirectoryObject>,
}

/// Runs one pass over the store's current window, evaluating every rule over all of it.
pub async fn run_pass(
    store: &dyn Store,
    rules: &RuleSet,
    config: &CorrelateConfig,
) -> Result<PassReport> {
    Correlator::new().pass(store, rules, config).await
}

/// Correlation passes that keep the window in memory between them, so that each pass
/// evaluates rules only over the parts of the window that changed ([`crate::incremental`]).
/// The detections are those of [`run_pass`] over the same store.
#[derive(Default)]
pub struct Correlator {
    engine: IncrementalEngine,
}

impl Correlator {
    /// A correlator whose first pass evaluates every rule over the whole window.
    pub fn new() -> Correlator {
        Correlator::default()
    }

    /// Runs one pass over the store's current window.
    pub async fn pass(
        &mut self,
        store: &dyn Store,
        rules: &RuleSet,
        config: &CorrelateConfig,
    ) -> Result<PassReport> {
        let result = pass(&mut self.engine, store, rules, config).await;
        if result.is_err() {
            // What was evaluated may not have been written: start over with everything.
            self.engine = IncrementalEngine::new();
        }
        result
    }
}

async fn pass(
    engine: &mut IncrementalEngine,
    store: &dyn Store,
    rules: &RuleSet,
    config: &CorrelateConfig,
) -> Result<PassReport> {
    let mut report = PassReport {
        rules: rules.len(),
        ..PassReport::default()
    };
    let Some(newest) = store.watermark().await? else {
        // No events yet, but directory accounts still resolve into identities.
        resolve_identities(store, &mut [], &mut report).await?;
        return Ok(report);
    };
    // Normalizers refuse far-future times; the clamp keeps one that slipped through from
    // dragging the window past all real data.
    let watermark = newest.min(Utc::now() + chrono::Duration::hours(1));
    let longest_rule = rules.rules().map(|r| r.window).max().unwrap_or_default();
    let span = chrono::Duration::from_std(config.window.max(longest_rule) + config.lateness)
        .map_err(|e| CorrelateError::Config(format!("window too large: {e}")))?;
    let since = watermark
        .checked_sub_signed(span)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    report.window_start = Some(since);
    report.window_end = Some(watermark);
    // What no pass loads any more leaves the hot table. A pass without rules (identities
    // only) does not know how far the rules reach, so it leaves the table as it is.
    if !rules.is_empty() {
        report.archived = store.archive_before(since).await?;
    }

    let mut findings: Vec<Finding> = store.findings_since(since).await?;
    report.findings = findings.len();
    // The window's table has no `raw` column (`window_schema`): the verbatim record is
    // evidence, read from the store when an analyst opens it. Dropping it here spares copying
    // every record into the batch only for the engine to project it away.
    for f in &mut findings {
        f.raw = String::new();
    }
    let identities = resolve_identities(store, &mut findings, &mut report).await?;

    engine.apply(engine.diff(&findings))?;
    let (outcomes, stats) = engine
        .tick(rules, &identities.keys, &identities.directory)
        .await?;
    report.window_bytes = engine.memory_bytes();
    report.rules_full = stats.rules_full;
    report.rules_partial = stats.rules_partial;
    report.rules_skipped = stats.rules_skipped;
    report.rows_evaluated = stats.rows_evaluated;
    let mut found: HashMap<String, Detection> = HashMap::new();
    for RuleOutcome { rule, result, .. } in outcomes {
        match result {
            Ok((hits, skipped)) => {
                report.rows_without_entity += skipped;
                add_hits(&mut found, rule, hits);
            }
            Err(e) => {
                tracing::warn!(rule = %rule.id, origin = %rule.origin, error = %e, "Rule failed; other rules still run");
                report
                    .rule_errors
                    .push(format!("{} ({}): {e}", rule.id, rule.origin));
            }
        }
    }

    let ids: Vec<String> = found.keys().cloned().collect();
    let stored: HashMap<String, Detection> = store
        .detections_by_id(&ids)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut found: Vec<Detection> = found.into_values().collect();
    found.sort_by(|a, b| (a.first_seen, &a.id).cmp(&(b.first_seen, &b.id)));
    // Detections to write, by id; `BTreeMap` keeps the write order stable.
    let mut changed: std::collections::BTreeMap<String, Detection> =
        std::collections::BTreeMap::new();
    for d in found {
        // Late records or a sliding window can move a detection's first sighting into another
        // bucket; a stored detection of the same rule and entity that overlaps it in time is
        // the same detection, so it is extended rather than duplicated.
        let stored_match = match stored.get(&d.id) {
            Some(old) => Some(old.clone()),
            None => {
                let window = chrono::Duration::from_std(
                    rules.get(&d.rule_id).map(|r| r.window).unwrap_or_default(),
                )
                .unwrap_or_default();
                store
                    .detections_for_entity(&d.rule_id, &d.entity_key)
                    .await?
                    .into_iter()
                    .find(|old| {
                        old.first_seen - window <= d.last_seen
                            && d.first_seen <= old.last_seen + window
                    })
            }
        };
        match stored_match {
            None => {
                report.detections_new += 1;
                changed.insert(d.id.clone(), d);
            }
            Some(old) => {
                let was_changed = changed.contains_key(&old.id);
                let mut merged = changed.remove(&old.id).unwrap_or(old);
                if fold(&mut merged, &d) || was_changed {
                    if !was_changed {
                        report.detections_updated += 1;
                    }
                    merged.title = d.title;
                    changed.insert(merged.id.clone(), merged);
                }
            }
        }
    }
    let changed: Vec<Detection> = changed.into_values().collect();
    if changed.is_empty() {
        return Ok(report);
    }

    let index: HashMap<&str, &Finding> = findings
        .iter()
        .map(|f| (f.finding_uid.as_str(), f))
        .collect();
    let mut open = store.open_incidents().await?;
    let aliases = store.identity_aliases().await?;
    let open_ids: BTreeSet<String> = open.iter().map(|i| i.id.clone()).collect();
    let merge_window = chrono::Duration::from_std(config.merge_window)
        .map_err(|e| CorrelateError::Config(format!("merge window too large: {e}")))?;
    // Closed incidents of the window are not joined, only named by new ones about them.
    open.extend(
        store
            .closed_incidents_since(since.checked_sub_signed(merge_window).unwrap_or(since))
            .await?,
    );
    let changes = merge(changed, open, &aliases, &index, merge_window, Utc::now());
    for inc in &changes.incidents {
        if open_ids.contains(&inc.id) {
            report.incidents_updated += 1;
        } else {
            report.incidents_new += 1;
        }
    }
    store.apply(&changes).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use cairn_ingest::schema::CLASS_AUTHENTICATION;
    use cairn_ingest::{Page, normalize::identity::IdentityKeys};

    fn event(uid: &str, code: &str, second: i64) -> Finding {
        let t = DateTime::from_timestamp(1_763_280_000 + second, 0).expect("time");
        let mut f = Finding::new(
            "ad.windows",
            uid.into(),
            CLASS_AUTHENTICATION,
            t,
            "{}".into(),
        );
        f.event_code = Some(code.into());
        f.user_name = Some("alice".into());
        f.user_domain = Some("CORP".into());
        let mut k = IdentityKeys::new();
        k.account(Some("CORP"), Some("alice"));
        f.identity_keys = k.into_vec();
        f
    }

    #[tokio::test]
    async fn bruteforce_then_logon_opens_one_incident_and_a_second_pass_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("c.db"))
            .await
            .expect("store");
        let mut findings: Vec<Finding> = (0..6)
            .map(|i| event(&format!("f{i}"), "4771", i * 10))
            .collect();
        findings.push(event("ok", "4624", 120));
        store
            .commit_page(
                "t",
                &Page {
                    findings,
                    ..Page::default()
                },
            )
            .await
            .expect("commit");
        let rules = RuleSet::builtin().await.expect("rules");
        let config = CorrelateConfig::default();

        let first = run_pass(&store, &rules, &config).await.expect("pass");
        assert!(first.rule_errors.is_empty(), "{:?}", first.rule_errors);
        assert_eq!(
            (first.detections_new, first.incidents_new),
            (1, 1),
            "{first:?}"
        );
        assert_eq!(first.identities_changed, 7);
        let second = run_pass(&store, &rules, &config).await.expect("pass again");
        assert_eq!(
            (
                second.detections_new,
                second.detections_updated,
                second.incidents_new,
                second.incidents_updated,
                second.identities_changed
            ),
            (0, 0, 0, 0, 0)
        );
        let incidents = store
            .incidents(&crate::store::IncidentFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(incidents.items.len(), 1);
        let inc = &incidents.items[0];
        assert_eq!((inc.detection_count, inc.finding_count), (1, 7));
        assert!(inc.title.contains("corp\\alice"), "{}", inc.title);

        // Late evidence inside the same bucket updates the detection instead of adding one.
        let late = vec![event("f6", "4771", 125), event("ok2", "4624", 130)];
        store
            .commit_page(
                "t",
                &Page {
                    findings: late,
                    ..Page::default()
                },
            )
            .await
            .expect("commit late");
        let third = run_pass(&store, &rules, &config).await.expect("pass 3");
        assert_eq!(
            (
                third.detections_new,
                third.detections_updated,
                third.incidents_new,
                third.incidents_updated
            ),
            (0, 1, 0, 1)
        );
        let detail = store
            .incident(&inc.id)
            .await
            .expect("detail")
            .expect("exists");
        assert_eq!(detail.incident.finding_count, 9);
    }
}
