//! Sigma: compile rates over SigmaHQ's Windows Security and cloud rule sets, SigmaHQ's
//! regression cases through the Windows normalizer and the engine, the semantics case files of
//! `rules/sigma/tests/`, and `cairn rules import-sigma`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use cairn_correlate::engine::Engine;
use cairn_correlate::rule_tests::run_rule_tests;
use cairn_ingest::normalize::normalize_text;
use cairn_ingest::to_record_batch;
use cairn_rules::RuleSet;
use cairn_rules::rule_test::RuleTest;
use cairn_rules::sigma::{SigmaImport, SigmaMappings, SigmaText, compile};

use crate::{repo_root, run, stdout, succeeded};

/// SigmaHQ's rules and regression cases copied into the repository.
pub(crate) fn sigma_data() -> PathBuf {
    repo_root().join("tests/data/sigma")
}

/// Compiled and total Sigma detection and correlation rules under `dirs`.
async fn import(dirs: &[PathBuf]) -> SigmaImport {
    RuleSet::import_sigma(dirs, &SigmaMappings::bundled())
        .await
        .expect("the folders are readable")
}

fn rate(i: &SigmaImport) -> (usize, usize) {
    let compiled = i.compiled.len() + i.correlation_only;
    (compiled, compiled + i.unsupported.len())
}

fn assert_rate(i: &SigmaImport, what: &str, min_total: usize) {
    let (compiled, total) = rate(i);
    let reasons: Vec<String> = i
        .unsupported
        .iter()
        .map(|u| format!("{}: {}", u.origin, u.reason))
        .collect();
    println!("{what}: {compiled} of {total} compiled; unsupported: {reasons:#?}");
    assert!(total >= min_total, "{what}: only {total} rules found");
    assert!(
        compiled * 100 >= total * 98,
        "{what}: {compiled} of {total} compiled (< 98 %): {reasons:#?}"
    );
}

#[tokio::test]
async fn at_least_98_percent_of_sigmas_windows_security_rules_compile() {
    let i = import(&[sigma_data().join("rules/windows/builtin/security")]).await;
    assert_rate(&i, "windows/builtin/security", 145);
}

#[tokio::test]
async fn at_least_98_percent_of_sigmas_aws_and_azure_rules_compile() {
    let i = import(&[
        sigma_data().join("rules/cloud/aws"),
        sigma_data().join("rules/cloud/azure"),
    ])
    .await;
    assert_rate(&i, "cloud/aws + cloud/azure", 180);
}

/// `regression_index.json`.
#[derive(Deserialize)]
pub(crate) struct RegressionIndex {
    pub cases: Vec<RegressionCase>,
}

/// One rule's regression case.
#[derive(Deserialize)]
pub(crate) struct RegressionCase {
    pub rule_id: String,
    pub rule_path: String,
    pub tests: Vec<RegressionTest>,
}

/// Events a rule must match at least `match_count` times (null: once).
#[derive(Deserialize)]
pub(crate) struct RegressionTest {
    pub match_count: Option<usize>,
    pub json: String,
}

/// The events of an `evtx`-crate JSON file: objects one after another, not an array.
fn events(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read the events");
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map(|v| v.expect("valid JSON").to_string())
        .collect()
}

/// SigmaHQ's regression cases: each rule must match at least `match_count` of its recorded
/// events (at least one when the count is null), read by the production normalizer and run
/// by the production engine. The files also hold non-matching context events.
#[tokio::test]
async fn every_sigma_regression_case_reaches_its_match_count() {
    let root = sigma_data();
    let index: RegressionIndex = serde_json::from_str(
        &std::fs::read_to_string(root.join("regression_index.json")).expect("index"),
    )
    .expect("valid index");
    let mappings = SigmaMappings::bundled();
    let mut failures = Vec::new();
    let (mut cases, mut matched_total, mut events_total) = (0, 0, 0);
    for case in &index.cases {
        let text = std::fs::read_to_string(root.join(&case.rule_path)).expect("rule");
        let import = compile(
            &[SigmaText {
                origin: case.rule_path.clone(),
                text,
            }],
            &mappings,
        );
        let Some(rule) = import.compiled.first() else {
            failures.push(format!(
                "{}: not compiled: {:?}",
                case.rule_path, import.unsupported
            ));
            continue;
        };
        for t in &case.tests {
            cases += 1;
            let findings: Vec<_> = events(&root.join(&t.json))
                .iter()
                .map(|e| normalize_text(e).expect("the Windows normalizer reads the event"))
                .collect();
            events_total += findings.len();
            let engine =
                Engine::new(vec![to_record_batch(&findings).expect("batch")]).expect("engine");
            let (hits, _) = engine.evaluate(rule).await.expect("the rule runs");
            matched_total += hits.len();
            let want = t.match_count.unwrap_or(1);
            if hits.len() < want {
                failures.push(format!(
                    "{} ({}): {} of {} events matched, want ≥ {want}",
                    case.rule_path,
                    case.rule_id,
                    hits.len(),
                    findings.len()
                ));
            }
        }
    }
    println!("{cases} regression cases: {matched_total} matches in {events_total} events");
    assert!(cases >= 128, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The files hold context events too: a rule that matched everything would pass the
    // minimums, so the matches must be fewer than the events.
    assert!(
        matched_total < events_total,
        "{matched_total} of {events_total} events matched"
    );
}

/// A file of `rules/sigma/tests/`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseFile {
    pub cases: Vec<SemanticsCase>,
}

/// A Sigma rule with its tests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SemanticsCase {
    pub name: String,
    pub sigma: String,
    #[serde(default)]
    pub rule: Option<String>,
    pub tests: Vec<RuleTest>,
}

/// `rules/sigma/tests/*.yml`: modifiers, conditions and correlation types, each with matching
/// and non-matching events.
#[tokio::test]
async fn the_sigma_semantics_cases_pass() {
    let mappings = SigmaMappings::bundled();
    let dir = repo_root().join("rules/sigma/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("case folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let (mut ran, mut failures) = (0, Vec::new());
    for f in &files {
        let file: CaseFile =
            yaml_serde::from_str(&std::fs::read_to_string(f).expect("read")).expect("case file");
        for case in file.cases {
            let import = compile(
                &[SigmaText {
                    origin: case.name.clone(),
                    text: case.sigma.clone(),
                }],
                &mappings,
            );
            assert!(
                import.unsupported.is_empty(),
                "{}: {:?}",
                case.name,
                import.unsupported
            );
            let mut rule = match &case.rule {
                Some(id) => import.compiled.iter().find(|r| &r.id == id).cloned(),
                None if import.compiled.len() == 1 => import.compiled.first().cloned(),
                None => None,
            }
            .unwrap_or_else(|| panic!("{}: which rule? {:?}", case.name, import.compiled));
            rule.tests = case.tests;
            for o in run_rule_tests(&rule).await {
                ran += 1;
                if let Some(why) = o.failure {
                    failures.push(format!("{} / {}: {why}\n{}", case.name, o.name, rule.sql));
                }
            }
        }
    }
    println!("{ran} Sigma semantics tests");
    assert!(ran >= 12, "only {ran} tests ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `cairn rules import-sigma` reports every rule and writes Cairn rule files that load.
#[test]
fn import_sigma_reports_each_rule_and_writes_loadable_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("imported");
    let src = sigma_data().join("rules/cloud/azure/signin_logs");
    let o = run(
        dir.path(),
        &[
            "rules",
            "import-sigma",
            src.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    let text = succeeded(&o);
    let compiled = text.lines().filter(|l| l.starts_with("compiled ")).count();
    let files = std::fs::read_dir(&out).expect("out folder").count();
    assert!(compiled >= 17, "{text}");
    assert_eq!(files, compiled, "one file per compiled rule\n{text}");
    assert!(
        text.contains(&format!("{compiled} compiled, ")),
        "summary line missing:\n{text}"
    );
    let v = run(
        dir.path(),
        &["rules", "validate", out.to_str().expect("utf-8")],
    );
    assert!(stdout(&v).contains("rules valid"), "{}", stdout(&v));
}
