//! Running rules' inline tests ([`cairn_rules::rule_test`]) on the production engine.

use serde::Serialize;

use cairn_ingest::to_record_batch;
use cairn_rules::Rule;
use cairn_rules::rule_test::RuleTest;

use crate::engine::Engine;

/// The outcome of one inline test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// The rule.
    pub rule_id: String,
    /// Its file.
    pub origin: String,
    /// The test's name.
    pub name: String,
    /// `None` when it passed, else what differed.
    pub failure: Option<String>,
}

/// Runs every test of `rule`.
pub async fn run_rule_tests(rule: &Rule) -> Vec<TestOutcome> {
    let mut out = Vec::new();
    for t in &rule.tests {
        out.push(TestOutcome {
            rule_id: rule.id.clone(),
            origin: rule.origin.clone(),
            name: t.name.clone(),
            failure: run_one(rule, t).await.err(),
        });
    }
    out
}

async fn run_one(rule: &Rule, t: &RuleTest) -> Result<(), String> {
    let findings = t.to_findings()?;
    let batch = to_record_batch(&findings).map_err(|e| format!("cannot build the input: {e}"))?;
    let engine = Engine::new(vec![batch]).map_err(|e| e.to_string())?;
    let (directory, keys) = t.to_directory();
    engine
        .set_identities(&keys, &directory)
        .map_err(|e| e.to_string())?;
    let (hits, _) = engine.evaluate(rule).await.map_err(|e| e.to_string())?;
    let mut got: Vec<(String, usize)> = hits
        .iter()
        .map(|h| (h.entity_key.clone(), h.finding_uids.len()))
        .collect();
    got.sort();
    let mut unmatched = got.clone();
    for e in &t.expect {
        let found = unmatched.iter().position(|(entity, n)| {
            entity == &e.entity_key && e.findings.is_none_or(|want| want == *n)
        });
        match found {
            Some(i) => {
                unmatched.remove(i);
            }
            None => {
                return Err(format!(
                    "expected a detection of {}{}, got {}",
                    e.entity_key,
                    e.findings
                        .map(|n| format!(" citing {n} findings"))
                        .unwrap_or_default(),
                    describe(&got)
                ));
            }
        }
    }
    if !unmatched.is_empty() {
        return Err(format!(
            "unexpected detection(s): {} (all: {})",
            describe(&unmatched),
            describe(&got)
        ));
    }
    Ok(())
}

fn describe(hits: &[(String, usize)]) -> String {
    if hits.is_empty() {
        return "none".into();
    }
    hits.iter()
        .map(|(e, n)| format!("{e} ({n} findings)"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_rules::RuleSet;

    #[tokio::test]
    async fn every_builtin_rule_has_passing_positive_and_negative_tests() {
        let rules = RuleSet::builtin().await.expect("pack");
        let mut failures = Vec::new();
        for rule in rules.rules() {
            let positive = rule.tests.iter().any(|t| !t.expect.is_empty());
            let negative = rule.tests.iter().any(|t| t.expect.is_empty());
            if !positive || !negative {
                failures.push(format!(
                    "{}: needs a test that fires and one that stays silent",
                    rule.id
                ));
            }
            for o in run_rule_tests(rule).await {
                if let Some(f) = o.failure {
                    failures.push(format!("{} / {}: {f}", o.rule_id, o.name));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
