//! Sigma rules compiled to Cairn rules: SQL over `findings` that the engine plans and runs like
//! any other rule.
//!
//! [`rsigma_parser`] reads the YAML (detection, correlation and filter documents); this module
//! turns each detection rule into a predicate through the field [`mapping`] of its log source
//! ([`detection`], [`value`]) and each correlation rule into windowed SQL over its base rules'
//! events ([`correlation`]). A rule that cannot be compiled is reported with its reason
//! ([`SigmaImport::unsupported`]), never dropped silently.
//!
//! A detection rule's detections are one per matching event (`entity: finding`), so they merge
//! into incidents by the event's own identity, host and IP. Base rules of a correlation produce
//! no detections of their own unless the correlation says `generate: true`.

pub mod mapping;

pub mod ir;

mod correlation;
mod detection;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rsigma_parser::{CorrelationRule, SigmaRule};

use cairn_ingest::Severity;

pub use mapping::{MappingError, SigmaMappings};

use crate::rule::{Attack, EntityKind, Rule};

/// Why a Sigma rule was not compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// What the compiler could not do, in words.
    pub reason: String,
}

impl Unsupported {
    pub(crate) fn new(reason: impl Into<String>) -> Unsupported {
        Unsupported {
            reason: reason.into(),
        }
    }
}

/// A Sigma document that did not become a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSigma {
    /// The file.
    pub origin: String,
    /// The Sigma id (or name), when the document has one.
    pub sigma_id: Option<String>,
    /// The rule's title, when it was read.
    pub title: Option<String>,
    /// Why it was not compiled.
    pub reason: String,
}

/// The outcome of compiling a set of Sigma files.
#[derive(Debug, Clone, Default)]
pub struct SigmaImport {
    /// Compiled rules (their SQL not yet planned: the loader plans every rule).
    pub compiled: Vec<Rule>,
    /// Documents that were not compiled, with the reason.
    pub unsupported: Vec<SkippedSigma>,
    /// Problems the parser noted in documents it still read (they compiled).
    pub warnings: Vec<SkippedSigma>,
    /// Detection rules used only as steps of a correlation (`generate: false`).
    pub correlation_only: usize,
    /// The compiled detection rules (not correlations) as condition trees, for back ends
    /// that run them without SQL (`cairn hunt`).
    pub detections: Vec<SigmaDetection>,
}

/// A compiled detection rule as condition trees.
#[derive(Debug, Clone)]
pub struct SigmaDetection {
    /// Its rule's position in [`SigmaImport::compiled`].
    pub rule: usize,
    /// One per place its events are found (a process creation is Sysmon 1 or Security 4688).
    pub branches: Vec<SigmaBranch>,
}

/// A rule's condition over the events of one log source.
#[derive(Debug, Clone)]
pub struct SigmaBranch {
    /// The SQL predicate over `findings` that selects the log source's events (the mapping's
    /// `where`).
    pub source_predicate: String,
    /// The rule's condition there, with that source's field names.
    pub condition: ir::Predicate,
}

/// A Sigma file's text and where it came from.
#[derive(Debug, Clone)]
pub struct SigmaText {
    /// The file (or `builtin:<path>`).
    pub origin: String,
    /// Its YAML.
    pub text: String,
}

/// Whether a YAML text is a Sigma document rather than a Cairn rule file.
pub fn is_sigma(text: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with("detection:") || l.starts_with("correlation:") || l.starts_with("logsource:")
    })
}

/// A detection rule with where its events are.
pub(crate) struct BaseRule {
    /// How correlations refer to it (its `name`, else its `id`).
    pub reference: String,
    pub rule: SigmaRule,
    pub sources: Vec<mapping::SourceMapping>,
    origin: String,
}

/// Compiles every Sigma document of `texts`.
pub fn compile(texts: &[SigmaText], mappings: &SigmaMappings) -> SigmaImport {
    let mut out = SigmaImport::default();
    let mut rules: Vec<BaseRule> = Vec::new();
    let mut correlations: Vec<(String, CorrelationRule, bool)> = Vec::new();
    for t in texts {
        let collection = match rsigma_parser::parse_sigma_yaml(&t.text) {
            Ok(c) => c,
            Err(e) => {
                out.unsupported.push(SkippedSigma {
                    origin: t.origin.clone(),
                    sigma_id: None,
                    title: None,
                    reason: format!("cannot parse: {e}"),
                });
                continue;
            }
        };
        // The parser also reports problems of documents it still read (an unknown `level`);
        // those are warnings, the others documents lost.
        let lost = collection.is_empty() || collection.errors.iter().any(|e| e.contains("YAML"));
        for e in &collection.errors {
            let s = SkippedSigma {
                origin: t.origin.clone(),
                sigma_id: None,
                title: None,
                reason: format!("cannot parse: {e}"),
            };
            if lost {
                out.unsupported.push(s);
            } else {
                out.warnings.push(s);
            }
        }
        for f in &collection.filters {
            out.unsupported.push(SkippedSigma {
                origin: t.origin.clone(),
                sigma_id: f.id.clone(),
                title: Some(f.title.clone()),
                reason: "filter documents are not supported".into(),
            });
        }
        let given = correlation_conditions_given(&t.text);
        for c in collection.correlations {
            // Matched by id and title, not position: a document the parser refused must not
            // shift one correlation's answer onto the next.
            let written = given
                .iter()
                .find(|(id, title, _)| {
                    id.is_some() && *id == c.id
                        || id.is_none() && title.as_deref() == Some(c.title.as_str())
                })
                .map(|(_, _, g)| *g)
                .unwrap_or(true);
            correlations.push((t.origin.clone(), c, written));
        }
        for r in collection.rules {
            let sources = mappings.sources(&r.logsource);
            rules.push(BaseRule {
                reference: r.name.clone().or_else(|| r.id.clone()).unwrap_or_default(),
                sources,
                rule: r,
                origin: t.origin.clone(),
            });
        }
    }

    // Base rules of correlations, by every name a correlation may use for them.
    let mut by_ref: HashMap<&str, usize> = HashMap::new();
    for (i, b) in rules.iter().enumerate() {
        for key in [b.rule.id.as_deref(), b.rule.name.as_deref()]
            .into_iter()
            .flatten()
        {
            by_ref.insert(key, i);
        }
    }
    let mut hidden = vec![false; rules.len()];
    for (origin, corr, given) in &correlations {
        let skip = |reason: String| SkippedSigma {
            origin: origin.clone(),
            sigma_id: corr.id.clone().or_else(|| corr.name.clone()),
            title: Some(corr.title.clone()),
            reason,
        };
        let mut bases = Vec::new();
        let mut missing = None;
        for r in &corr.rules {
            match by_ref.get(r.as_str()) {
                Some(i) => bases.push(*i),
                None => missing = Some(r.clone()),
            }
        }
        if let Some(r) = missing {
            out.unsupported.push(skip(format!(
                "refers to `{r}`, which is not a detection rule in the same set (correlations of correlations are not supported)"
            )));
            continue;
        }
        let base_refs: Vec<&BaseRule> = bases.iter().map(|i| &rules[*i]).collect();
        if let Some(b) = base_refs.iter().find(|b| b.sources.is_empty()) {
            out.unsupported.push(skip(format!(
                "its rule `{}` reads {}, which Cairn has no mapping for",
                b.reference,
                describe(&b.rule.logsource)
            )));
            continue;
        }
        // Correlations refer to a rule by the name they use, which the events carry.
        let renamed: Vec<BaseRule> = corr
            .rules
            .iter()
            .zip(&base_refs)
            .map(|(name, b)| BaseRule {
                reference: name.clone(),
                rule: b.rule.clone(),
                sources: b.sources.clone(),
                origin: b.origin.clone(),
            })
            .collect();
        let refs: Vec<&BaseRule> = renamed.iter().collect();
        match correlation::correlation_sql(corr, *given, &refs, mappings) {
            Ok((sql, entity)) => {
                if !corr.generate {
                    for i in &bases {
                        hidden[*i] = true;
                    }
                }
                out.compiled.push(rule_from(
                    Meta {
                        id: corr.id.as_deref().or(corr.name.as_deref()),
                        title: &corr.title,
                        description: corr.description.as_deref(),
                        author: corr.author.as_deref(),
                        references: &corr.references,
                        level: corr.level.map(|l| l.as_str()),
                        tags: &corr.tags,
                        origin,
                    },
                    entity,
                    Duration::from_secs(corr.timespan.seconds.max(60)),
                    sql,
                ))
            }
            Err(u) => out.unsupported.push(skip(u.reason)),
        }
    }

    for (b, hidden) in rules.iter().zip(hidden) {
        if hidden {
            out.correlation_only += 1;
            continue;
        }
        let skip = |reason: String| SkippedSigma {
            origin: b.origin.clone(),
            sigma_id: b.rule.id.clone().or_else(|| b.rule.name.clone()),
            title: Some(b.rule.title.clone()),
            reason,
        };
        match detection_rule(b) {
            Ok((sql, branches)) => {
                out.detections.push(SigmaDetection {
                    rule: out.compiled.len(),
                    branches,
                });
                out.compiled.push(Rule {
                    // One detection per event: each event is its own part of the window.
                    partition_by: Some("finding_uid".to_string()),
                    ..rule_from(
                        Meta {
                            id: b.rule.id.as_deref().or(b.rule.name.as_deref()),
                            title: &b.rule.title,
                            description: b.rule.description.as_deref(),
                            author: b.rule.author.as_deref(),
                            references: &b.rule.references,
                            level: b.rule.level.map(|l| l.as_str()),
                            tags: &b.rule.tags,
                            origin: &b.origin,
                        },
                        EntityKind::Finding,
                        Duration::from_secs(60),
                        sql,
                    )
                })
            }
            Err(u) => out.unsupported.push(skip(u.reason)),
        }
    }
    out
}

/// One detection per matching event: the SQL, and the condition per source it is made of.
fn detection_rule(b: &BaseRule) -> Result<(String, Vec<SigmaBranch>), Unsupported> {
    if b.sources.is_empty() {
        return Err(Unsupported::new(format!(
            "Cairn has no mapping for {}",
            describe(&b.rule.logsource)
        )));
    }
    if b.rule.detection.timeframe.is_some() {
        return Err(Unsupported::new(
            "`timeframe` aggregations (Sigma v1) are not supported; use a correlation rule",
        ));
    }
    let mut parts = Vec::new();
    let mut branches = Vec::new();
    for s in &b.sources {
        let condition = detection::condition(&b.rule.detection, s)?;
        parts.push(format!("(({}) AND {})", s.predicate, condition.to_sql()));
        branches.push(SigmaBranch {
            source_predicate: s.predicate.clone(),
            condition,
        });
    }
    let sql = format!(
        "SELECT finding_uid AS entity_key, time AS first_seen, time AS last_seen,\n  \
         make_array(finding_uid) AS finding_uids\nFROM findings\nWHERE {}",
        parts.join("\n   OR ")
    );
    Ok((sql, branches))
}

fn describe(ls: &rsigma_parser::LogSource) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("product", &ls.product),
        ("service", &ls.service),
        ("category", &ls.category),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}: {v}"));
        }
    }
    if parts.is_empty() {
        "an empty log source".into()
    } else {
        format!("log source {{{}}}", parts.join(", "))
    }
}

/// For each correlation document of a file: its id, its title, and whether it wrote a
/// `condition` (Sigma's `temporal` without one means "all rules"; the parser fills in a
/// default we must not take).
fn correlation_conditions_given(text: &str) -> Vec<(Option<String>, Option<String>, bool)> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        let Ok(v) = yaml_serde::Value::deserialize(doc) else {
            break;
        };
        if let Some(c) = v.get("correlation") {
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            out.push((text("id"), text("title"), c.get("condition").is_some()));
        }
    }
    out
}

struct Meta<'a> {
    id: Option<&'a str>,
    title: &'a str,
    description: Option<&'a str>,
    author: Option<&'a str>,
    references: &'a [String],
    level: Option<&'a str>,
    tags: &'a [String],
    origin: &'a str,
}

fn rule_from(m: Meta<'_>, entity: EntityKind, window: Duration, sql: String) -> Rule {
    let id = match m.id {
        Some(id) => format!("sigma.{}", sanitize(id)),
        None => format!("sigma.{}", sanitize(m.title)),
    };
    // The Detection Rule License asks for the author and the reference wherever a rule or its
    // matches are shown.
    let mut description = m.description.unwrap_or("").trim().to_string();
    let mut credit = format!("Sigma rule {}", m.id.unwrap_or(m.title));
    if let Some(a) = m.author {
        credit.push_str(&format!(" by {a}"));
    }
    credit.push_str(" (Detection Rule License 1.1)");
    if let Some(r) = m.references.first() {
        credit.push_str(&format!("; reference: {r}"));
    }
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&credit);
    Rule {
        id,
        title: m.title.to_string(),
        description,
        severity: m
            .level
            .and_then(Severity::parse_label)
            .unwrap_or(Severity::Medium),
        attack: attack_from_tags(m.tags),
        compliance: Vec::new(),
        entity,
        window,
        partition_by: None,
        reads: Vec::new(),
        sql,
        origin: m.origin.to_string(),
        sql_line: 1,
        tests: Vec::new(),
    }
}

/// Lower-case letters, digits, `.`, `_` and `-`, as Cairn rule ids are.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// ATT&CK tactic names as Sigma tags spell them, with their ids.
const TACTICS: [(&str, &str); 14] = [
    ("reconnaissance", "TA0043"),
    ("resource-development", "TA0042"),
    ("initial-access", "TA0001"),
    ("execution", "TA0002"),
    ("persistence", "TA0003"),
    ("privilege-escalation", "TA0004"),
    ("defense-evasion", "TA0005"),
    ("credential-access", "TA0006"),
    ("discovery", "TA0007"),
    ("lateral-movement", "TA0008"),
    ("collection", "TA0009"),
    ("command-and-control", "TA0011"),
    ("exfiltration", "TA0010"),
    ("impact", "TA0040"),
];

/// `attack.t1003.006` → technique `T1003.006`; `attack.credential-access` → tactic `TA0006`.
fn attack_from_tags(tags: &[String]) -> Attack {
    let mut tactics = BTreeMap::new();
    let mut techniques = BTreeMap::new();
    for t in tags {
        let Some(rest) = t
            .to_ascii_lowercase()
            .strip_prefix("attack.")
            .map(str::to_string)
        else {
            continue;
        };
        let is_technique = rest.starts_with('t')
            && rest.len() >= 5
            && rest[1..5].chars().all(|c| c.is_ascii_digit());
        if is_technique {
            techniques.insert(rest.to_ascii_uppercase(), ());
        } else if let Some((_, id)) = TACTICS.iter().find(|(n, _)| *n == rest.replace('_', "-")) {
            tactics.insert(id.to_string(), ());
        }
    }
    Attack {
        tactics: tactics.into_keys().collect(),
        techniques: techniques.into_keys().collect(),
    }
}

#[cfg(test)]
mod tests;
