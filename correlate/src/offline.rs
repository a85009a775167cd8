//! Rules over a fixed set of events with no store: `cairn hunt --rules`.
//!
//! An investigation's exported logs are a closed span of time. Duplicates (the same record
//! exported twice) are dropped as the store keeps one row per `(source, finding_uid)`, and
//! identities are resolved from what the records name together (there is no directory). The
//! span is then cut wherever event time is quiet for longer than the live window
//! (`window + lateness`, or the longest rule's window): events that far apart never meet in a
//! live pass either. Every rule runs once over each stretch of activity, and its rows become
//! detections keyed and folded as in a live pass (`(rule, entity, window bucket)`).
//!
//! Time limits written in a rule's SQL hold as they do live. Within one stretch of activity
//! longer than the window, a rule bounded only by the live window (an aggregate with no time
//! condition) sees the whole stretch, where live passes would have split it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMillisecondType;
use chrono::DateTime;

use cairn_ingest::Finding;
use cairn_rules::RuleSet;
use cairn_rules::sql::window_schema;

use crate::correlator::{CorrelateConfig, add_hits};
use crate::engine::Engine;
use crate::error::{CorrelateError, Result};
use crate::identity::{self, Catalog};
use crate::store::Detection;

/// What evaluating rules over a closed set of events gave.
#[derive(Debug, Default)]
pub struct OfflineReport {
    /// Detections, by first sighting, then rule and entity.
    pub detections: Vec<Detection>,
    /// Rules whose evaluation failed, with the reason (the other rules still ran).
    pub failed: Vec<(String, String)>,
    /// Distinct events evaluated.
    pub events: usize,
    /// Stretches of activity evaluated apart (separated by quiet gaps longer than the window).
    pub windows: usize,
    /// Events dropped because an earlier one had the same source and `finding_uid`.
    pub duplicates: usize,
    /// Identities resolved from the records.
    pub identities: usize,
    /// Result rows without an entity (skipped, as in a live pass).
    pub rows_without_entity: usize,
}

/// Evaluates every rule of `rules` over `batches` (of [`window_schema`], in input order), each
/// stretch of activity as one window of `config`'s width.
pub async fn evaluate(
    batches: Vec<RecordBatch>,
    rules: &RuleSet,
    config: &CorrelateConfig,
) -> Result<OfflineReport> {
    let mut report = OfflineReport::default();
    let mut batches = distinct(batches, &mut report.duplicates)?;
    report.events = batches.iter().map(RecordBatch::num_rows).sum();

    let mut findings = identity_findings(&batches)?;
    let resolution = identity::resolve(&mut findings, &[], &HashMap::new(), &Catalog::default());
    let mut ids = findings.into_iter().map(|f| f.identity_id);
    for b in &mut batches {
        let column: ArrayRef = Arc::new(StringArray::from_iter(ids.by_ref().take(b.num_rows())));
        *b = with_column(b, "identity_id", column)?;
    }
    report.identities = resolution
        .assignments
        .values()
        .collect::<HashSet<_>>()
        .len();

    let longest_rule = rules.rules().map(|r| r.window).max().unwrap_or_default();
    let span = config.window.max(longest_rule) + config.lateness;
    let stretches = stretches(
        &batches,
        i64::try_from(span.as_millis()).unwrap_or(i64::MAX),
    )?;
    report.windows = stretches.len();
    let mut found: HashMap<String, Detection> = HashMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for (from, to) in stretches {
        let engine = Engine::with_window(between(&batches, from, to)?)?;
        engine.set_identities(&resolution.assignments, &[])?;
        for rule in rules.rules() {
            match engine.evaluate(rule).await {
                Ok((hits, skipped)) => {
                    report.rows_without_entity += skipped;
                    add_hits(&mut found, rule, hits);
                }
                Err(e) => {
                    failed.entry(rule.id.clone()).or_insert(e.to_string());
                }
            }
        }
    }
    report.failed = failed.into_iter().collect();
    report.detections = found.into_values().collect();
    report.detections.sort_by(|a, b| {
        (a.first_seen, &a.rule_id, &a.entity_key, a.bucket).cmp(&(
            b.first_seen,
            &b.rule_id,
            &b.entity_key,
            b.bucket,
        ))
    });
    Ok(report)
}

fn times(b: &RecordBatch) -> Result<&arrow::array::TimestampMillisecondArray> {
    b.column_by_name("time")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or_else(|| CorrelateError::Internal("the events have no `time` column".into()))
}

/// The stretches of activity `[from, to]` (event time, ms): cut where no event happens for
/// more than `gap` ms.
fn stretches(batches: &[RecordBatch], gap: i64) -> Result<Vec<(i64, i64)>> {
    let mut all: Vec<i64> = Vec::new();
    for b in batches {
        all.extend(times(b)?.values().iter().copied());
    }
    all.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for t in all {
        match out.last_mut() {
            Some((_, to)) if t.saturating_sub(*to) <= gap => *to = t,
            _ => out.push((t, t)),
        }
    }
    Ok(out)
}

/// The rows of `batches` with event time in `[from, to]`.
fn between(batches: &[RecordBatch], from: i64, to: i64) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for b in batches {
        let keep: BooleanArray = times(b)?
            .values()
            .iter()
            .map(|t| Some((from..=to).contains(t)))
            .collect();
        match keep.true_count() {
            0 => {}
            n if n == b.num_rows() => out.push(b.clone()),
            _ => {
                out.push(filter_record_batch(b, &keep).map_err(internal("cannot cut the window"))?)
            }
        }
    }
    Ok(out)
}

fn internal(what: &str) -> impl Fn(arrow::error::ArrowError) -> CorrelateError + '_ {
    move |e| CorrelateError::Internal(format!("{what}: {e}"))
}

fn string_column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| CorrelateError::Internal(format!("the events have no text column `{name}`")))
}

/// `batches` without the rows whose `(source, finding_uid)` came earlier.
fn distinct(batches: Vec<RecordBatch>, dropped: &mut usize) -> Result<Vec<RecordBatch>> {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if b.schema() != window_schema() {
            return Err(CorrelateError::Internal(
                "the events are not batches of the window schema".into(),
            ));
        }
        let (sources, uids) = (
            string_column(&b, "source")?,
            string_column(&b, "finding_uid")?,
        );
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| Some(seen.insert((sources.value(i).into(), uids.value(i).into()))))
            .collect();
        let kept = keep.true_count();
        *dropped += b.num_rows() - kept;
        if kept == b.num_rows() {
            out.push(b);
        } else if kept > 0 {
            out.push(filter_record_batch(&b, &keep).map_err(internal("cannot drop duplicates"))?);
        }
    }
    Ok(out)
}

/// What identity resolution reads of each event, in batch order.
fn identity_findings(batches: &[RecordBatch]) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for b in batches {
        let (sources, uids) = (
            string_column(b, "source")?,
            string_column(b, "finding_uid")?,
        );
        let times = times(b)?;
        let keys = b
            .column_by_name("identity_keys")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| {
                CorrelateError::Internal("the events have no `identity_keys` column".into())
            })?;
        for i in 0..b.num_rows() {
            let time = DateTime::from_timestamp_millis(times.value(i)).unwrap_or_default();
            let mut f = Finding::new(
                sources.value(i),
                uids.value(i).into(),
                0,
                time,
                String::new(),
            );
            let list = keys.value(i);
            f.identity_keys = list
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect();
            out.push(f);
        }
    }
    Ok(out)
}

fn with_column(b: &RecordBatch, name: &str, column: ArrayRef) -> Result<RecordBatch> {
    let i = b
        .schema()
        .index_of(name)
        .map_err(internal("the events have no identity column"))?;
    let mut columns = b.columns().to_vec();
    columns[i] = column;
    RecordBatch::try_new(b.schema(), columns).map_err(internal("cannot set identities"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ingest::to_record_batch;
    use cairn_rules::sql::window_projection;

    fn window(findings: &[Finding]) -> RecordBatch {
        to_record_batch(findings)
            .and_then(|b| b.project(window_projection()))
            .expect("batch")
    }

    fn failed_logon(n: i64, user: &str) -> Finding {
        let at = DateTime::from_timestamp(1_800_000_000 + n * 60, 0).unwrap_or_default();
        let mut f = Finding::new("ad.windows", format!("dc1:{n}"), 3002, at, String::new());
        f.event_code = Some(if n < 5 { "4625" } else { "4624" }.into());
        f.user_name = Some(user.into());
        f.identity_keys = vec![format!("sam:corp\\{user}")];
        f
    }

    #[tokio::test]
    async fn a_closed_span_gives_the_packs_detections_once_despite_duplicates() {
        let rules = RuleSet::builtin().await.expect("rules");
        // Five failures then a logon for alice, exported twice; bob only fails once.
        let mut events: Vec<Finding> = (0..6).map(|n| failed_logon(n, "alice")).collect();
        let mut bob = failed_logon(0, "bob");
        bob.finding_uid = "dc1:bob".into();
        events.push(bob);
        let batches = vec![window(&events), window(&events[..3])];
        let report = evaluate(batches, &rules, &CorrelateConfig::default())
            .await
            .expect("evaluate");
        assert_eq!(report.duplicates, 3);
        assert_eq!(report.events, 7);
        assert_eq!(report.windows, 1);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let guessed: Vec<&Detection> = report
            .detections
            .iter()
            .filter(|d| d.rule_id == "cairn.ad.bruteforce_then_logon")
            .collect();
        assert_eq!(guessed.len(), 1, "{:#?}", report.detections);
        assert_eq!(guessed[0].finding_uids.len(), 6);
        assert!(
            guessed[0].entity_key.contains("alice"),
            "{}",
            guessed[0].entity_key
        );
    }

    #[tokio::test]
    async fn activity_days_apart_is_evaluated_as_separate_windows() {
        let rules = RuleSet::builtin().await.expect("rules");
        let created = |n: i64, day: i64| {
            let at =
                DateTime::from_timestamp(1_800_000_000 + day * 86_400 + n, 0).unwrap_or_default();
            let mut f = Finding::new(
                "ad.windows",
                format!("dc1:{day}:{n}"),
                3001,
                at,
                String::new(),
            );
            f.event_code = Some("4720".into());
            f.actor_user = Some("bob".into());
            f.user_name = Some(format!("svc{day}{n}"));
            f.identity_keys = vec!["sam:corp\\bob".into()];
            f
        };
        let config = CorrelateConfig::default();
        let together = vec![window(&[created(0, 0), created(1, 0)])];
        let apart = vec![window(&[created(0, 0), created(1, 3)])];
        let of = |r: &OfflineReport| -> Vec<usize> {
            r.detections
                .iter()
                .filter(|d| d.rule_id == "cairn.ad.account_created")
                .map(|d| d.finding_uids.len())
                .collect()
        };
        let one = evaluate(together, &rules, &config).await.expect("evaluate");
        assert_eq!((one.windows, of(&one)), (1, vec![2]));
        let two = evaluate(apart, &rules, &config).await.expect("evaluate");
        assert_eq!((two.windows, of(&two)), (2, vec![1, 1]));
    }
}
