//! Replay: re-run a span of history, from the archive and the store, into a fresh store.
//!
//! The findings of `[from, to)` are read from the archive and from the live store (the newest
//! version of each), the live store's current directory accounts are copied over, and the
//! findings are committed again in the order of their last arrival (`ingested_at`), page by
//! page, with a correlation pass after each, as a live run does. The result is a store whose
//! incidents can be compared with the live run's, or examined after a rule change without
//! touching the live store. The span is held in memory.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use cairn_ingest::{DirectoryObject, DirectorySync, Page};
use cairn_rules::RuleSet;

use crate::archive::all_findings;
use crate::correlator::{CorrelateConfig, Correlator};
use crate::error::{CorrelateError, Result};
use crate::store::Store;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Findings replayed.
    pub findings: usize,
    /// Of those, read from the archive.
    pub from_archive: usize,
    /// Directory accounts copied.
    pub directory_objects: usize,
    /// Pages committed, each followed by a pass.
    pub pages: usize,
    /// Detections the passes found for the first time.
    pub detections: usize,
    /// Incidents the passes opened.
    pub incidents: usize,
}

/// Replays `[from, to)` (either bound open) of `live` into `into`, which must hold no
/// findings yet, in pages of `page_size` findings.
pub async fn replay(
    live: &dyn Store,
    into: &dyn Store,
    rules: &RuleSet,
    config: &CorrelateConfig,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    page_size: usize,
) -> Result<ReplayReport> {
    if into.watermark().await?.is_some() {
        return Err(CorrelateError::Config(
            "the replay store already holds findings; replay into a new one".into(),
        ));
    }
    let mut report = ReplayReport::default();

    let mut findings = all_findings(live, from, to).await?;
    // The order they first arrived in, as the live run saw them.
    findings.sort_by(|(a, _), (b, _)| {
        (a.ingested_at, a.time, &a.source, &a.finding_uid).cmp(&(
            b.ingested_at,
            b.time,
            &b.source,
            &b.finding_uid,
        ))
    });
    report.findings = findings.len();
    report.from_archive = findings.iter().filter(|(_, a)| *a).count();

    // Directory accounts, per source, as one complete synchronisation each.
    let mut by_source: BTreeMap<String, Vec<DirectoryObject>> = BTreeMap::new();
    for o in live.directory_objects().await? {
        by_source.entry(o.source.clone()).or_default().push(o);
    }
    let started_at = Utc::now();
    for (source, objects) in by_source {
        report.directory_objects += objects.len();
        into.commit_page(
            &source,
            &Page {
                directory: objects,
                directory_sync: Some(DirectorySync {
                    started_at,
                    complete: true,
                }),
                ..Page::default()
            },
        )
        .await?;
    }

    // Findings are filed under the source id `replay`: cursors and dead letters of the live
    // sources are not replayed.
    let mut correlator = Correlator::new();
    for chunk in findings.chunks(page_size.max(1)) {
        into.commit_page(
            "replay",
            &Page {
                findings: chunk.iter().map(|(f, _)| f.clone()).collect(),
                ..Page::default()
            },
        )
        .await?;
        let pass = correlator.pass(into, rules, config).await?;
        report.pages += 1;
        report.detections += pass.detections_new;
        report.incidents += pass.incidents_new;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlator::run_pass;
    use crate::store::sqlite::SqliteStore;
    use crate::stream_tests::{Rng, commit, outcome, record};
    use cairn_ingest::Finding;

    #[tokio::test]
    async fn a_replay_from_the_archive_gives_the_live_runs_detections() {
        let rules = RuleSet::builtin().await.expect("rules");
        let config = CorrelateConfig::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let live = SqliteStore::open(&dir.path().join("live/cairn.db"))
            .await
            .expect("live store");

        // Four days of records arriving in time order, 15 per page with a pass after each:
        // the first days leave the window (48 h + 1 h) and move to the archive.
        let mut rng = Rng(7);
        let mut all: Vec<Finding> = (0..120).map(|n| record(&mut rng, n, 96)).collect();
        all.sort_by_key(|f| f.time);
        let mut archived = 0;
        for (page, chunk) in all.chunks(15).enumerate() {
            let arrived =
                DateTime::from_timestamp(1_800_000_000 + page as i64 * 60, 0).unwrap_or_default();
            let findings = chunk
                .iter()
                .cloned()
                .map(|mut f| {
                    f.ingested_at = arrived;
                    f
                })
                .collect();
            commit(&live, findings).await;
            archived += run_pass(&live, &rules, &config)
                .await
                .expect("pass")
                .archived;
        }
        assert!(
            archived > 0,
            "nothing left the window: the replay would not read the archive"
        );
        let expected = outcome(&live).await;
        assert!(!expected.is_empty());

        let into = SqliteStore::open(&dir.path().join("replay/cairn.db"))
            .await
            .expect("replay store");
        let report = replay(&live, &into, &rules, &config, None, None, 15)
            .await
            .expect("replay");
        assert_eq!(report.findings, 120);
        assert_eq!(report.from_archive, archived);
        assert_eq!(report.pages, 8);
        assert_eq!(outcome(&into).await, expected);

        // A store that already holds findings is refused.
        let again = replay(&live, &into, &rules, &config, None, None, 15).await;
        assert!(matches!(again, Err(CorrelateError::Config(_))), "{again:?}");
    }
}
