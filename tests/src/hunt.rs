//! `cairn hunt`: SigmaHQ's regression cases through the indexed engine, the indexed engine
//! against the row-by-row reference over every Windows sample in the repository with the
//! whole bundled SigmaHQ Windows rule set, the Sigma semantics cases, and the command's
//! output formats.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use cairn_hunt::plain::PlainScratch;
use cairn_hunt::{HuntOptions, HuntReport, HuntRules, Scratch, bundled, hunt};
use cairn_ingest::sources::file::data_files;
use cairn_ingest::{finding_schema, to_record_batch};
use cairn_rules::sigma::{SigmaImport, SigmaMappings, SigmaText, compile};

use crate::sigma::{CaseFile, RegressionIndex, sigma_data};
use crate::{repo_root, run, stdout};

/// The Windows samples in the repository: EVTX, nested JSON lines (as `evtx_dump -o jsonl`
/// writes them), OTRF's flat JSON lines, and SigmaHQ's regression events.
fn corpus() -> Vec<PathBuf> {
    data_files(&[
        repo_root().join("ingest/testdata/windows/evtx"),
        repo_root().join("ingest/testdata/windows/otrf"),
        sigma_data().join("regression_data"),
    ])
    .expect("the samples are readable")
}

fn rules_of(texts: &[SigmaText]) -> (SigmaImport, HuntRules) {
    let import = compile(texts, &SigmaMappings::bundled());
    let rules = HuntRules::compile(&import, &finding_schema()).expect("the index builds");
    (import, rules)
}

fn run_hunt(rules: &HuntRules, files: &[PathBuf], reference: bool) -> HuntReport {
    let options = HuntOptions {
        reference,
        ..HuntOptions::default()
    };
    hunt(rules, files, &options, &|_| {}).expect("the hunt runs")
}

/// Every SigmaHQ regression case reaches its match count through the hunt engine, all rules
/// loaded together (so the shared matchers and the index are in play), and no rule matches
/// every event of its file.
#[test]
fn every_sigma_regression_case_reaches_its_match_count_through_hunt() {
    let root = sigma_data();
    let index: RegressionIndex = serde_json::from_str(
        &std::fs::read_to_string(root.join("regression_index.json")).expect("index"),
    )
    .expect("valid index");
    let mut texts: Vec<SigmaText> = Vec::new();
    let mut seen = BTreeSet::new();
    for case in &index.cases {
        if seen.insert(case.rule_path.clone()) {
            texts.push(SigmaText {
                origin: case.rule_path.clone(),
                text: std::fs::read_to_string(root.join(&case.rule_path)).expect("rule"),
            });
        }
    }
    let (import, rules) = rules_of(&texts);
    assert!(import.unsupported.is_empty(), "{:?}", import.unsupported);
    let files: Vec<PathBuf> = index
        .cases
        .iter()
        .flat_map(|c| c.tests.iter().map(|t| root.join(&t.json)))
        .collect();
    let report = run_hunt(&rules, &files, false);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    // Detections per (file, rule id).
    let mut hits: BTreeMap<(u32, &str), usize> = BTreeMap::new();
    for d in &report.detections {
        *hits
            .entry((d.file, rules.rules[d.rule as usize].id.as_str()))
            .or_default() += 1;
    }
    let (mut cases, mut failures, mut matched) = (0, Vec::new(), 0);
    let mut file_no = 0u32;
    for case in &index.cases {
        let id = format!("sigma.{}", case.rule_id);
        for t in &case.tests {
            cases += 1;
            let n = hits.get(&(file_no, id.as_str())).copied().unwrap_or(0);
            matched += n;
            let want = t.match_count.unwrap_or(1);
            if n < want {
                failures.push(format!("{} ({}): {n} matches, want ≥ {want}", t.json, id));
            }
            file_no += 1;
        }
    }
    println!(
        "{cases} regression cases through hunt: {matched} matches of their rules in {} events",
        report.events
    );
    assert!(cases >= 128, "only {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        (matched as u64) < report.events,
        "{matched} of {} events matched",
        report.events
    );
}

/// The indexed engine (log-source index, shared automata, candidates only, shared leaves)
/// finds exactly what testing every rule on every event finds: the whole bundled SigmaHQ
/// Windows rule set over every Windows sample in the repository.
#[test]
fn the_index_finds_exactly_what_every_rule_on_every_event_finds() {
    let texts = bundled::sigmahq_windows().expect("the bundled rules read");
    assert_eq!(
        texts.len(),
        2407,
        "the bundled set is SigmaHQ's rules/windows"
    );
    let (import, rules) = rules_of(&texts);
    let compiled = import.compiled.len() + import.correlation_only;
    let total = compiled + import.unsupported.len();
    println!(
        "bundled SigmaHQ Windows rules: {compiled} of {total} compiled, index {:?}",
        rules.stats()
    );
    assert!(
        compiled * 100 >= total * 98,
        "{compiled} of {total} compiled"
    );
    let files = corpus();
    let indexed = run_hunt(&rules, &files, false);
    let reference = run_hunt(&rules, &files, true);
    let key = |r: &HuntReport| -> Vec<(u32, u64, u32)> {
        r.detections
            .iter()
            .map(|d| (d.file, d.record, d.rule))
            .collect()
    };
    println!(
        "{} events in {} files: {} detections by the index, {} by the reference",
        indexed.events,
        files.len(),
        indexed.detections.len(),
        reference.detections.len()
    );
    assert!(indexed.events > 20_000, "only {} events", indexed.events);
    assert_eq!(indexed.rejected, reference.rejected);
    // Enough detections that the comparison says something, and far fewer than pairs.
    assert!(
        indexed.detections.len() > 200,
        "{}",
        indexed.detections.len()
    );
    let (a, b) = (key(&indexed), key(&reference));
    let only_index: Vec<_> = a.iter().filter(|x| !b.contains(x)).take(10).collect();
    let only_reference: Vec<_> = b.iter().filter(|x| !a.contains(x)).take(10).collect();
    assert!(
        a == b,
        "index and reference differ: only index {only_index:?}, only reference {only_reference:?}"
    );
}

/// One large file's batches are evaluated on all cores, in any order, and give what one batch
/// on one core gives, in the same order.
#[test]
fn the_batches_of_one_file_are_evaluated_in_parallel_with_the_same_result() {
    let texts =
        cairn_rules::load::read_rule_texts(&[sigma_data().join("rules/windows")]).expect("rules");
    let (_, rules) = rules_of(&texts);
    let file = vec![
        repo_root().join("ingest/testdata/windows/otrf/empire_wmic_add_user_backdoor.jsonl.gz"),
    ];
    let run = |threads, batch_rows| {
        let options = HuntOptions {
            threads,
            batch_rows,
            ..HuntOptions::default()
        };
        hunt(&rules, &file, &options, &|_| {}).expect("the hunt runs")
    };
    let whole = run(1, 1_000_000);
    let split = run(2, 64);
    let key = |r: &HuntReport| -> Vec<(u64, u32)> {
        r.detections.iter().map(|d| (d.record, d.rule)).collect()
    };
    println!(
        "{} events: {} detections in one batch, {} in batches of 64 on 2 cores",
        whole.events,
        whole.detections.len(),
        split.detections.len()
    );
    assert!(whole.events > 10_000, "{}", whole.events);
    assert!(!whole.detections.is_empty());
    assert_eq!(whole.events, split.events);
    assert_eq!(key(&whole), key(&split));
}

/// The two back ends of the Sigma compiler agree: every Windows rule in `tests/data/sigma`
/// (Security, and the rules of the regression cases) run as SQL by the correlator's engine and
/// by the hunt engine over the EVTX samples and the regression events match the same events.
#[tokio::test]
async fn the_hunt_engine_matches_what_the_sql_engine_matches() {
    let texts =
        cairn_rules::load::read_rule_texts(&[sigma_data().join("rules/windows")]).expect("rules");
    let (import, rules) = rules_of(&texts);
    let files = data_files(&[
        repo_root().join("ingest/testdata/windows/evtx"),
        sigma_data().join("regression_data"),
    ])
    .expect("samples");
    // The events as the hunt reads them: record number → finding, per file.
    let mut findings = Vec::new();
    let mut uid_of: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let mut record = 0u64;
        cairn_ingest::sources::file::read_path(f, |r| {
            if let Ok(doc) = r.value
                && let Ok(finding) = cairn_ingest::normalize::normalize_json(&doc.json, doc.raw)
            {
                uid_of.insert((i as u32, record), finding.finding_uid.clone());
                findings.push(finding);
            }
            record += 1;
        })
        .expect("readable");
    }
    let engine =
        cairn_correlate::engine::Engine::new(vec![to_record_batch(&findings).expect("batch")])
            .expect("engine");
    let mut by_sql: BTreeSet<(String, String)> = BTreeSet::new();
    for d in &import.detections {
        let rule = &import.compiled[d.rule];
        let (hits, _) = engine.evaluate(rule).await.expect("the rule runs");
        for h in hits {
            by_sql.insert((rule.id.clone(), h.entity_key));
        }
    }
    let report = run_hunt(&rules, &files, false);
    let by_hunt: BTreeSet<(String, String)> = report
        .detections
        .iter()
        .map(|d| {
            (
                rules.rules[d.rule as usize].id.clone(),
                uid_of[&(d.file, d.record)].clone(),
            )
        })
        .collect();
    println!(
        "{} rules over {} events: {} (rule, event) matches by SQL, {} by hunt",
        rules.rules.len(),
        findings.len(),
        by_sql.len(),
        by_hunt.len()
    );
    assert!(rules.rules.len() >= 250, "{}", rules.rules.len());
    assert!(by_sql.len() >= 100, "{}", by_sql.len());
    let only_sql: Vec<_> = by_sql.difference(&by_hunt).take(10).collect();
    let only_hunt: Vec<_> = by_hunt.difference(&by_sql).take(10).collect();
    assert!(
        only_sql.is_empty() && only_hunt.is_empty(),
        "only SQL: {only_sql:?}\nonly hunt: {only_hunt:?}"
    );
}

/// The detection semantics cases of `rules/sigma/tests/detection.yml` (run on the SQL engine
/// by the Sigma tests) give the same events through the hunt engine and its reference.
#[test]
fn the_sigma_detection_semantics_cases_pass_through_hunt() {
    let path = repo_root().join("rules/sigma/tests/detection.yml");
    let file: CaseFile =
        yaml_serde::from_str(&std::fs::read_to_string(path).expect("read")).expect("case file");
    let (mut ran, mut failures) = (0, Vec::new());
    for case in &file.cases {
        let (import, rules) = rules_of(&[SigmaText {
            origin: case.name.clone(),
            text: case.sigma.clone(),
        }]);
        assert!(
            case.rule.is_none() && rules.rules.len() == 1,
            "{}",
            case.name
        );
        assert!(import.unsupported.is_empty(), "{}", case.name);
        for t in &case.tests {
            ran += 1;
            let findings = t.to_findings().expect("test findings");
            let batch = to_record_batch(&findings).expect("batch");
            let want: BTreeSet<String> = t.expect.iter().map(|e| e.entity_key.clone()).collect();
            let indexed = rules
                .matches(&batch, &mut Scratch::default())
                .expect("indexed");
            let reference = rules
                .matches_plain(&batch, &mut PlainScratch::default())
                .expect("reference");
            for (engine, matches) in [("index", indexed), ("reference", reference)] {
                let got: BTreeSet<String> = matches
                    .iter()
                    .map(|(row, _)| findings[*row as usize].finding_uid.clone())
                    .collect();
                if got != want {
                    failures.push(format!(
                        "{} / {} ({engine}): got {got:?}, want {want:?}",
                        case.name, t.name
                    ));
                }
            }
        }
    }
    println!("{ran} Sigma semantics tests through hunt");
    assert!(ran >= 8, "only {ran} tests ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `cairn hunt` with the bundled rules: JSON lines with every promised field, CSV with the
/// same detections (its rules from the compiled-rule cache), the per-rule summary, and rules
/// that were not compiled named with reasons.
#[test]
fn cairn_hunt_writes_jsonl_csv_and_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let evtx = repo_root().join("ingest/testdata/windows/evtx");
    let evtx = evtx.to_str().expect("utf-8 path");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().expect("utf-8 path");
    let o = run(
        dir.path(),
        &["hunt", evtx, "--format", "jsonl", "--cache-dir", cache],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 10, "{} detections\n{err}", lines.len());
    for l in &lines {
        for k in cairn_hunt::output::COLUMNS {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
        assert!(
            l["rule_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("sigma."))
        );
        assert!(l["event"]["Event"]["System"].is_object(), "{l}");
        assert_eq!(l["channel"], "Security", "{l}");
    }
    // Rules that did not compile are listed with their reasons; the summary line counts.
    assert!(
        err.contains("not compiled: builtin:rules/windows/"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} detections", lines.len())),
        "{err}"
    );

    assert!(!err.contains("from the cache"), "{err}");
    let cached = std::fs::read_dir(cache).expect("cache folder").count();
    assert_eq!(cached, 1, "one compiled set is cached");

    let c = run(
        dir.path(),
        &["hunt", evtx, "--format", "csv", "--cache-dir", cache],
    );
    assert!(c.status.success());
    let c_err = String::from_utf8_lossy(&c.stderr);
    assert!(c_err.contains("from the cache"), "{c_err}");
    let csv = stdout(&c);
    assert!(csv.starts_with("rule_id,title,level,"), "{csv}");
    let rule_ids: BTreeSet<&str> = lines.iter().filter_map(|l| l["rule_id"].as_str()).collect();
    for id in &rule_ids {
        assert!(csv.contains(id), "{id} missing from CSV");
    }

    assert!(
        c_err.contains(&format!("{} detections", lines.len())),
        "{c_err}"
    );

    let t = run(dir.path(), &["hunt", evtx, "--no-cache"]);
    let table = stdout(&t);
    assert!(table.starts_with("time "), "{table}");
    assert!(
        table.contains("detections  level"),
        "summary missing:\n{table}"
    );
}

/// `--rules` runs Cairn rules over the kept events with the live correlator's engine: over a
/// stretch of activity shorter than the window, what it finds is what ingesting the same
/// files and running a live correlation pass finds (the same rules, entities and evidence),
/// although the `.evtx` and `.jsonl` exports of each sample repeat every event.
#[tokio::test]
async fn cairn_rules_over_hunted_events_find_what_a_live_pass_finds() {
    use cairn_correlate::{CorrelateConfig, SqliteStore, Store, run_pass, run_source};
    use cairn_ingest::sources::file::{FileSource, FileSourceConfig};
    use cairn_rules::RuleSet;

    let dir = repo_root().join("ingest/testdata/windows/evtx");
    let files: Vec<PathBuf> = data_files(&[dir])
        .expect("samples")
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.contains("T1136-Create_account")
                || name.contains("ID4728-4756")
                || name.contains("ID4732-User_added")
        })
        .collect();
    assert_eq!(files.len(), 8, "{files:?}");
    let rules = RuleSet::builtin().await.expect("rules");
    let config = CorrelateConfig::default();

    let sigma = rules_of(&[]).1;
    let options = HuntOptions {
        keep_window: true,
        ..HuntOptions::default()
    };
    let mut report = hunt(&sigma, &files, &options, &|_| {}).expect("the hunt runs");
    let (batches, locations) = report.take_window();
    let offline = cairn_correlate::offline::evaluate(batches, &rules, &config)
        .await
        .expect("the rules run");
    assert!(offline.failed.is_empty(), "{:?}", offline.failed);
    assert_eq!(offline.windows, 1);
    assert!(offline.duplicates > 0, "each event is in two exports");
    for d in &offline.detections {
        for uid in &d.finding_uids {
            assert_eq!(locations.get(uid).map(Vec::len), Some(2), "{uid}");
        }
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&tmp.path().join("cairn.db"))
        .await
        .expect("store");
    let mut source =
        FileSource::new("windows", &FileSourceConfig::new(files.clone())).expect("source");
    run_source(&mut source, &store, |_, _| {})
        .await
        .expect("ingest");
    run_pass(&store, &rules, &config).await.expect("correlate");
    let mut live = Vec::new();
    for incident in store.open_incidents().await.expect("incidents") {
        let detail = store.incident(&incident.id).await.expect("incident");
        live.extend(detail.expect("stored").detections);
    }

    let key =
        |ds: &[cairn_correlate::store::Detection]| -> BTreeSet<(String, String, Vec<String>)> {
            ds.iter()
                .map(|d| {
                    let mut uids = d.finding_uids.clone();
                    uids.sort();
                    (d.rule_id.clone(), d.entity_key.clone(), uids)
                })
                .collect()
        };
    let (found, want) = (key(&offline.detections), key(&live));
    assert!(want.len() >= 4, "{want:#?}");
    assert_eq!(found, want);
}

/// `cairn hunt --builtin-rules --rules DIR` in JSON lines: the Cairn rules' detections follow
/// the Sigma matches with their entity and the location of every piece of evidence, a site's
/// own rule in the folder runs beside the pack, and a rule with an error stops the hunt before
/// it reads, naming the file.
#[test]
fn cairn_hunt_runs_cairn_rules_from_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules folder");
    std::fs::write(
        rules.join("busy_host.yml"),
        r#"id: site.busy_host
title: Host with many security events
description: A host that logged 40 or more security events.
severity: low
entity: host
window: 24h
sql: |
  SELECT lower(device_hostname) AS entity_key, min(time) AS first_seen, max(time) AS last_seen,
         array_agg(finding_uid) AS finding_uids
  FROM findings
  WHERE device_hostname IS NOT NULL
  GROUP BY lower(device_hostname)
  HAVING count(*) >= 40
"#,
    )
    .expect("rule");
    let otrf = repo_root().join(
        "ingest/testdata/windows/otrf/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.jsonl.gz",
    );
    let otrf = otrf.to_str().expect("utf-8 path");
    let rules_arg = rules.to_str().expect("utf-8 path");
    let args = [
        "hunt",
        otrf,
        "--builtin-rules",
        "--rules",
        rules_arg,
        "--format",
        "jsonl",
        "--no-cache",
    ];
    let o = run(dir.path(), &args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    for l in &lines {
        for k in cairn_hunt::output::COLUMNS {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    let cairn: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "rule").collect();
    let ids: BTreeSet<&str> = cairn.iter().filter_map(|l| l["rule_id"].as_str()).collect();
    assert!(ids.contains("cairn.ad.dcsync_by_non_dc"), "{ids:?}\n{err}");
    assert!(ids.contains("site.busy_host"), "{ids:?}\n{err}");
    let sigma_before_rules = lines
        .iter()
        .position(|l| l["kind"] == "rule")
        .is_some_and(|first| lines[first..].iter().all(|l| l["kind"] == "rule") && first > 0);
    assert!(sigma_before_rules, "Sigma matches come first");
    for l in &cairn {
        let evidence = l["evidence"].as_array().expect("evidence");
        assert!(!evidence.is_empty(), "{l}");
        for e in evidence {
            let e = e.as_str().expect("a location");
            assert!(e.starts_with(otrf) && e.contains(".jsonl.gz:"), "{e}");
        }
        assert!(l["entity"].as_str().is_some_and(|s| s.contains(':')), "{l}");
    }
    assert!(err.contains("by Cairn rules over the whole input"), "{err}");

    std::fs::write(rules.join("broken.yml"), "id: site.broken\ntitle: x\n").expect("rule");
    let o = run(dir.path(), &args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(err.contains("broken.yml"), "{err}");
    assert!(o.stdout.is_empty(), "nothing is hunted with a broken rule");
}
