//! `.slt` files for windowing and merging: each file under `tests/slt/pipeline/` drives a real
//! store and correlation pass and checks the outcome with SQL.
//!
//! Besides queries, a file's `statement ok` blocks take these commands:
//!
//! | command | what |
//! |---|---|
//! | `rule key=value …` + SQL lines | a rule (`id`, `entity`, `window`, `severity`, `tactics`); the rule set is every rule given so far |
//! | `config window=24h lateness=1h merge_window=24h` | the pass configuration (any subset) |
//! | `ingest` + one finding per line | findings in the rule-test format (`{ uid: a1, source: ad.windows, at: 10m, … }`), committed as one page; `uid` is required, and `identity_id` becomes the finding's UPN key, which the pass resolves back to it |
//! | `pass` | one correlation pass |
//! | `close N` | closes incident number N, as an analyst would |
//!
//! Queries see the store through these tables (times in minutes after the test epoch):
//! `incidents(number, title, status, severity, first_min, last_min, tactics, sources, entities,
//! detections, merged_into)`, `detections(incident, rule, entity, first_min, last_min, findings,
//! severity_id)`, `reasons(incident, seq, reason)`, `findings(uid, minute, identity, archived)`
//! and `last_pass(findings, archived, detections_new, detections_updated, incidents_new,
//! incidents_updated, window_start_min, window_end_min)`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

use cairn_correlate::store::{IncidentFilter, IncidentStatus};
use cairn_correlate::{CorrelateConfig, PassReport, SqliteStore, Store, run_pass};
use cairn_ingest::Page;
use cairn_rules::RuleSet;
use cairn_rules::rule_test::{RuleTest, TestFinding, test_epoch};

use crate::slt::{SqlError, rows, slt_files};

struct CairnPipeline {
    dir: tempfile::TempDir,
    store: SqliteStore,
    rules: RuleSet,
    config: CorrelateConfig,
    last: Option<PassReport>,
}

fn fail(e: impl std::fmt::Display) -> SqlError {
    SqlError(e.to_string())
}

fn minutes(t: DateTime<Utc>) -> i64 {
    (t - test_epoch()).num_minutes()
}

fn table(ctx: &SessionContext, name: &str, columns: Vec<(&str, ArrayRef)>) -> Result<(), SqlError> {
    let batch = RecordBatch::try_from_iter(columns).map_err(fail)?;
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(fail)?;
    ctx.register_table(name, Arc::new(mem)).map_err(fail)?;
    Ok(())
}

fn strings(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn ints(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}

impl CairnPipeline {
    async fn new() -> Result<CairnPipeline, SqlError> {
        let dir = tempfile::tempdir().map_err(fail)?;
        std::fs::create_dir(dir.path().join("rules")).map_err(fail)?;
        let store = SqliteStore::open(&dir.path().join("cairn.db"))
            .await
            .map_err(fail)?;
        Ok(CairnPipeline {
            dir,
            store,
            rules: RuleSet::default(),
            config: CorrelateConfig::default(),
            last: None,
        })
    }

    /// `rule id=… entity=… window=… severity=… tactics=A,B` and the SQL on the next lines.
    async fn rule(&mut self, header: &str, sql: &str) -> Result<(), SqlError> {
        let mut id = None;
        let (mut entity, mut window, mut severity, mut tactics) =
            ("identity", "1h", "medium", String::new());
        for kv in header.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| fail(format!("`{kv}` is not key=value")))?;
            match k {
                "id" => id = Some(v),
                "entity" => entity = v,
                "window" => window = v,
                "severity" => severity = v,
                "tactics" => tactics = v.split(',').collect::<Vec<_>>().join(", "),
                other => return Err(fail(format!("unknown rule key `{other}`"))),
            }
        }
        let id = id.ok_or_else(|| fail("a rule needs id=…"))?;
        let body: String = sql.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = format!(
            "id: {id}\ntitle: {id}\nseverity: {severity}\nattack: {{ tactics: [{tactics}] }}\nentity: {entity}\nwindow: {window}\nsql: |\n{body}"
        );
        let rules_dir = self.dir.path().join("rules");
        std::fs::write(rules_dir.join(format!("{id}.yml")), yaml).map_err(fail)?;
        self.rules = RuleSet::load(&[rules_dir], false).await.map_err(fail)?;
        Ok(())
    }

    fn configure(&mut self, args: &str) -> Result<(), SqlError> {
        for kv in args.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| fail(format!("`{kv}` is not key=value")))?;
            let d = cairn_ingest::duration::parse_duration(v)
                .ok_or_else(|| fail(format!("`{v}` is not a duration")))?;
            match k {
                "window" => self.config.window = d,
                "lateness" => self.config.lateness = d,
                "merge_window" => self.config.merge_window = d,
                other => return Err(fail(format!("unknown config key `{other}`"))),
            }
        }
        Ok(())
    }

    async fn ingest(&mut self, lines: &str) -> Result<(), SqlError> {
        let mut findings = Vec::new();
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            let f: TestFinding =
                yaml_serde::from_str(line).map_err(|e| fail(format!("finding `{line}`: {e}")))?;
            if f.uid.is_none() {
                return Err(fail(format!("finding `{line}` needs a uid")));
            }
            findings.push(f);
        }
        let test = RuleTest {
            name: "slt".into(),
            findings,
            directory: Vec::new(),
            expect: Vec::new(),
        };
        let mut findings = test.to_findings().map_err(fail)?;
        // The pass resolves identities from keys: a test's identity becomes its UPN key.
        for f in &mut findings {
            if let Some(id) = &f.identity_id {
                f.identity_keys = vec![format!("upn:{id}")];
            }
        }
        let page = Page {
            findings,
            ..Page::default()
        };
        self.store.commit_page("slt", &page).await.map_err(fail)?;
        Ok(())
    }

    async fn close(&mut self, number: &str) -> Result<(), SqlError> {
        let n: i64 = number.trim().parse().map_err(fail)?;
        let id = self
            .store
            .incident_id_by_number(n)
            .await
            .map_err(fail)?
            .ok_or_else(|| fail(format!("no incident {n}")))?;
        let done = self
            .store
            .set_incident_status(&id, IncidentStatus::Closed)
            .await
            .map_err(fail)?;
        if done {
            Ok(())
        } else {
            Err(fail(format!("incident {n} was merged into another")))
        }
    }

    /// A session whose tables show the store as it is now.
    async fn snapshot(&self) -> Result<SessionContext, SqlError> {
        let ctx = SessionContext::new();
        let mut all = Vec::new();
        let mut before_number = None;
        loop {
            let page = self
                .store
                .incidents(&IncidentFilter {
                    limit: 500,
                    before_number,
                    ..Default::default()
                })
                .await
                .map_err(fail)?;
            all.extend(page.items);
            match page.next {
                Some(n) => before_number = Some(n),
                None => break,
            }
        }
        all.sort_by_key(|i| i.number);
        let number_of = |id: &str| all.iter().find(|i| i.id == id).map(|i| i.number);

        let (mut d_inc, mut d_rule, mut d_entity, mut d_first, mut d_last, mut d_uids, mut d_sev) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut r_inc, mut r_seq, mut r_text) = (vec![], vec![], vec![]);
        for inc in &all {
            let detail = self
                .store
                .incident(&inc.id)
                .await
                .map_err(fail)?
                .ok_or_else(|| fail("an incident vanished"))?;
            for d in &detail.detections {
                let mut uids = d.finding_uids.clone();
                uids.sort();
                d_inc.push(inc.number);
                d_rule.push(d.rule_id.clone());
                d_entity.push(format!("{}:{}", d.entity_kind, d.entity_key));
                d_first.push(minutes(d.first_seen));
                d_last.push(minutes(d.last_seen));
                d_uids.push(uids.join(","));
                d_sev.push(i64::from(d.severity_id));
            }
            for (i, r) in detail.reasons.iter().enumerate() {
                r_inc.push(inc.number);
                r_seq.push(i as i64 + 1);
                r_text.push(r.reason.clone());
            }
        }
        let joined = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.join(",")
        };
        table(
            &ctx,
            "incidents",
            vec![
                ("number", ints(all.iter().map(|i| i.number).collect())),
                (
                    "title",
                    strings(all.iter().map(|i| i.title.clone()).collect()),
                ),
                (
                    "status",
                    strings(all.iter().map(|i| i.status.as_str().to_string()).collect()),
                ),
                (
                    "severity",
                    strings(all.iter().map(|i| i.severity.clone()).collect()),
                ),
                (
                    "first_min",
                    ints(all.iter().map(|i| minutes(i.first_seen)).collect()),
                ),
                (
                    "last_min",
                    ints(all.iter().map(|i| minutes(i.last_seen)).collect()),
                ),
                (
                    "tactics",
                    strings(all.iter().map(|i| joined(&i.tactics)).collect()),
                ),
                (
                    "sources",
                    strings(all.iter().map(|i| joined(&i.sources)).collect()),
                ),
                (
                    "entities",
                    strings(
                        all.iter()
                            .map(|i| {
                                let e: Vec<String> = i
                                    .entities
                                    .iter()
                                    .map(|e| format!("{}:{}", e.kind, e.value))
                                    .collect();
                                joined(&e)
                            })
                            .collect(),
                    ),
                ),
                (
                    "detections",
                    ints(all.iter().map(|i| i.detection_count).collect()),
                ),
                (
                    "merged_into",
                    Arc::new(Int64Array::from(
                        all.iter()
                            .map(|i| i.merged_into.as_deref().and_then(number_of))
                            .collect::<Vec<_>>(),
                    )),
                ),
            ],
        )?;
        table(
            &ctx,
            "detections",
            vec![
                ("incident", ints(d_inc)),
                ("rule", strings(d_rule)),
                ("entity", strings(d_entity)),
                ("first_min", ints(d_first)),
                ("last_min", ints(d_last)),
                ("findings", strings(d_uids)),
                ("severity_id", ints(d_sev)),
            ],
        )?;
        table(
            &ctx,
            "reasons",
            vec![
                ("incident", ints(r_inc)),
                ("seq", ints(r_seq)),
                ("reason", strings(r_text)),
            ],
        )?;
        let findings = cairn_correlate::archive::all_findings(&self.store, None, None)
            .await
            .map_err(fail)?;
        table(
            &ctx,
            "findings",
            vec![
                (
                    "uid",
                    strings(
                        findings
                            .iter()
                            .map(|(f, _)| f.finding_uid.clone())
                            .collect(),
                    ),
                ),
                (
                    "minute",
                    ints(findings.iter().map(|(f, _)| minutes(f.time)).collect()),
                ),
                (
                    "identity",
                    Arc::new(StringArray::from(
                        findings
                            .iter()
                            .map(|(f, _)| f.identity_id.clone())
                            .collect::<Vec<_>>(),
                    )),
                ),
                (
                    "archived",
                    Arc::new(BooleanArray::from(
                        findings.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
                    )),
                ),
            ],
        )?;
        let p = self.last.clone().unwrap_or_default();
        let at = |t: Option<DateTime<Utc>>| t.map(minutes).unwrap_or(0);
        table(
            &ctx,
            "last_pass",
            vec![
                ("findings", ints(vec![p.findings as i64])),
                ("archived", ints(vec![p.archived as i64])),
                ("detections_new", ints(vec![p.detections_new as i64])),
                (
                    "detections_updated",
                    ints(vec![p.detections_updated as i64]),
                ),
                ("incidents_new", ints(vec![p.incidents_new as i64])),
                ("incidents_updated", ints(vec![p.incidents_updated as i64])),
                ("window_start_min", ints(vec![at(p.window_start)])),
                ("window_end_min", ints(vec![at(p.window_end)])),
            ],
        )?;
        Ok(ctx)
    }
}

#[async_trait]
impl AsyncDB for CairnPipeline {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let text = sql.trim();
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        let (verb, args) = first.split_once(' ').unwrap_or((first, ""));
        match verb {
            "rule" => self.rule(args, rest).await?,
            "config" => self.configure(args)?,
            "ingest" => self.ingest(rest).await?,
            "pass" => {
                let report = run_pass(&self.store, &self.rules, &self.config)
                    .await
                    .map_err(fail)?;
                if !report.rule_errors.is_empty() {
                    return Err(fail(report.rule_errors.join("; ")));
                }
                self.last = Some(report);
            }
            "close" => self.close(args).await?,
            _ => {
                let ctx = self.snapshot().await?;
                let batches = ctx
                    .sql(text)
                    .await
                    .map_err(fail)?
                    .collect()
                    .await
                    .map_err(fail)?;
                return rows(&batches);
            }
        }
        Ok(DBOutput::StatementComplete(0))
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test]
async fn pipeline_slt_files_pass() {
    let files = slt_files("tests/slt/pipeline");
    assert!(files.len() >= 2, "too few .slt files in tests/slt/pipeline");
    let mut failures = Vec::new();
    for f in &files {
        let mut runner = Runner::new(CairnPipeline::new);
        if let Err(e) = runner.run_file_async(f).await {
            failures.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
