//! Loading and validating rules: from folders of YAML files and from the built-in pack.
//!
//! Every rule is parsed, checked and its SQL planned against the `findings` schema before
//! Cairn starts; all problems of all files are reported at once, each with its file and line,
//! and a single broken rule fails the load (a silently missing detection is worse than a
//! refused start).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use include_dir::{Dir, include_dir};

use cairn_ingest::Severity;

use crate::rule::{MAX_WINDOW, Rule, RuleFile, parse_window};
use crate::sigma::{SigmaImport, SigmaMappings, SigmaText, SkippedSigma, is_sigma};
use crate::sql::{check_query, partition_expr, planning_session, tables_read};

static BUILTIN_PACK: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/pack");

/// One problem in one rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file (or `builtin:<path>`).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.origin, l, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Every problem found while loading rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleErrors(pub Vec<RuleError>);

impl fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} invalid rule(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A validated set of rules with unique ids, in id order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: BTreeMap<String, Rule>,
    sigma_skipped: Vec<SkippedSigma>,
}

/// A rule's source text and where it came from.
struct RuleText {
    origin: String,
    text: String,
}

impl RuleSet {
    /// The rules, in id order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    /// The rule with `id`.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.get(id)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Sigma documents in the rule folders that were not compiled, with the reason. They do
    /// not fail the load (public Sigma sets always hold a few rules for log sources or
    /// features Cairn lacks), but callers must show them.
    pub fn sigma_unsupported(&self) -> &[SkippedSigma] {
        &self.sigma_skipped
    }

    /// Compiles every Sigma file under `dirs` (recursively) with `mappings` and plans each
    /// compiled rule, for `cairn rules import-sigma`. Files that are not Sigma documents are
    /// reported as unsupported.
    pub async fn import_sigma(
        dirs: &[impl AsRef<Path>],
        mappings: &SigmaMappings,
    ) -> Result<SigmaImport, RuleErrors> {
        let texts = read_rule_dirs(dirs)?;
        let (sigma, other): (Vec<RuleText>, Vec<RuleText>) =
            texts.into_iter().partition(|t| is_sigma(&t.text));
        let ctx = planning_session().map_err(|e| {
            RuleErrors(vec![RuleError {
                origin: "rules".into(),
                line: None,
                message: format!("cannot create the planning session: {e}"),
            }])
        })?;
        let mut import = compile_sigma(&ctx, sigma, mappings).await;
        import
            .unsupported
            .extend(other.into_iter().map(|t| SkippedSigma {
                origin: t.origin,
                sigma_id: None,
                title: None,
                reason: "not a Sigma document (no `detection` or `correlation`)".into(),
            }));
        Ok(import)
    }

    /// The built-in rule pack shipped inside the binary.
    pub async fn builtin() -> Result<RuleSet, RuleErrors> {
        let mut texts = Vec::new();
        collect_builtin(&BUILTIN_PACK, &mut texts);
        Self::from_texts_with(texts, &SigmaMappings::bundled()).await
    }

    /// The built-in pack plus every `*.yml`/`*.yaml` under `dirs` (recursively). A rule in a
    /// folder replaces a built-in rule with the same id, so a site can tune one.
    pub async fn load(
        dirs: &[impl AsRef<Path>],
        with_builtin: bool,
    ) -> Result<RuleSet, RuleErrors> {
        Self::load_with_mappings(dirs, with_builtin, &SigmaMappings::bundled()).await
    }

    /// [`RuleSet::load`] with a site's Sigma field mappings instead of the bundled ones.
    pub async fn load_with_mappings(
        dirs: &[impl AsRef<Path>],
        with_builtin: bool,
        mappings: &SigmaMappings,
    ) -> Result<RuleSet, RuleErrors> {
        let mut texts = Vec::new();
        if with_builtin {
            collect_builtin(&BUILTIN_PACK, &mut texts);
        }
        let mut errors = Vec::new();
        for d in dirs {
            collect_dir(d.as_ref(), &mut texts, &mut errors);
        }
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        Self::from_texts_with(texts, mappings).await
    }

    #[cfg(test)]
    async fn from_texts(texts: Vec<RuleText>) -> Result<RuleSet, RuleErrors> {
        Self::from_texts_with(texts, &SigmaMappings::bundled()).await
    }

    async fn from_texts_with(
        texts: Vec<RuleText>,
        mappings: &SigmaMappings,
    ) -> Result<RuleSet, RuleErrors> {
        let mut errors = Vec::new();
        let ctx = match planning_session() {
            Ok(c) => c,
            Err(e) => {
                return Err(RuleErrors(vec![RuleError {
                    origin: "rules".into(),
                    line: None,
                    message: format!("cannot create the planning session: {e}"),
                }]));
            }
        };
        let (sigma, texts): (Vec<RuleText>, Vec<RuleText>) =
            texts.into_iter().partition(|t| is_sigma(&t.text));
        let sigma = compile_sigma(&ctx, sigma, mappings).await;
        let mut sigma_skipped = sigma.unsupported;
        let mut rules: BTreeMap<String, Rule> = BTreeMap::new();
        for rule in sigma.compiled {
            if let Some(previous) = rules.get(&rule.id) {
                sigma_skipped.push(SkippedSigma {
                    origin: rule.origin.clone(),
                    sigma_id: Some(rule.id.clone()),
                    title: Some(rule.title.clone()),
                    reason: format!(
                        "duplicate rule id `{}` (also in {})",
                        rule.id, previous.origin
                    ),
                });
                continue;
            }
            rules.insert(rule.id.clone(), rule);
        }
        for t in texts {
            match parse_rule(&t) {
                Err(e) => errors.push(e),
                Ok(Parsed::Disabled(id)) => {
                    // A site file with `enabled: false` switches off the rule with its id.
                    rules.remove(&id);
                }
                Ok(Parsed::Rule(mut rule)) => {
                    match check_query(&ctx, &rule.sql).await {
                        Ok(plan) => rule.reads = tables_read(&plan),
                        Err(message) => {
                            errors.push(RuleError {
                                origin: rule.origin.clone(),
                                line: Some(rule.sql_line),
                                message: format!("invalid SQL: {message}"),
                            });
                            continue;
                        }
                    }
                    if let Some(previous) = rules.get(&rule.id) {
                        let both_user = !previous.origin.starts_with("builtin:")
                            && !rule.origin.starts_with("builtin:");
                        if both_user {
                            errors.push(RuleError {
                                origin: rule.origin.clone(),
                                line: Some(1),
                                message: format!(
                                    "duplicate rule id `{}` (also in {})",
                                    rule.id, previous.origin
                                ),
                            });
                            continue;
                        }
                    }
                    rules.insert(rule.id.clone(), *rule);
                }
            }
        }
        if errors.is_empty() {
            Ok(RuleSet {
                rules,
                sigma_skipped,
            })
        } else {
            Err(RuleErrors(errors))
        }
    }
}

/// The text of every rule file (`.yml`, `.yaml`) under `dirs`, in path order, for
/// [`crate::sigma::compile`]; unreadable folders and files are errors.
pub fn read_rule_texts(dirs: &[impl AsRef<Path>]) -> Result<Vec<SigmaText>, RuleErrors> {
    Ok(read_rule_dirs(dirs)?
        .into_iter()
        .map(|t| SigmaText {
            origin: t.origin,
            text: t.text,
        })
        .collect())
}

fn read_rule_dirs(dirs: &[impl AsRef<Path>]) -> Result<Vec<RuleText>, RuleErrors> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for d in dirs {
        collect_dir(d.as_ref(), &mut texts, &mut errors);
    }
    if errors.is_empty() {
        Ok(texts)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Compiles Sigma texts and plans every compiled rule; a rule whose SQL does not plan is
/// reported as unsupported (a mapping or compiler defect, named as such).
async fn compile_sigma(
    ctx: &datafusion::prelude::SessionContext,
    texts: Vec<RuleText>,
    mappings: &SigmaMappings,
) -> SigmaImport {
    let texts: Vec<SigmaText> = texts
        .into_iter()
        .map(|t| SigmaText {
            origin: t.origin,
            text: t.text,
        })
        .collect();
    let mut import = crate::sigma::compile(&texts, mappings);
    let mut planned = Vec::with_capacity(import.compiled.len());
    // Where each rule went (`None`: dropped), to keep `detections` pointing at their rules.
    let mut moved = Vec::with_capacity(import.compiled.len());
    for rule in std::mem::take(&mut import.compiled) {
        match check_query(ctx, &rule.sql).await {
            Ok(plan) => {
                moved.push(Some(planned.len()));
                planned.push(Rule {
                    reads: tables_read(&plan),
                    ..rule
                })
            }
            Err(message) => {
                moved.push(None);
                import.unsupported.push(SkippedSigma {
                    origin: rule.origin.clone(),
                    sigma_id: Some(rule.id.clone()),
                    title: Some(rule.title.clone()),
                    reason: format!("the compiled SQL does not plan (a Cairn defect): {message}"),
                })
            }
        }
    }
    import.compiled = planned;
    import
        .detections
        .retain_mut(|d| match moved.get(d.rule).copied().flatten() {
            Some(to) => {
                d.rule = to;
                true
            }
            None => false,
        });
    import
}

fn collect_builtin(dir: &Dir<'static>, out: &mut Vec<RuleText>) {
    for f in dir.files() {
        let path = f.path();
        if is_rule_file(path)
            && let Some(text) = f.contents_utf8()
        {
            out.push(RuleText {
                origin: format!("builtin:{}", path.display()),
                text: text.to_string(),
            });
        }
    }
    for d in dir.dirs() {
        collect_builtin(d, out);
    }
}

fn is_rule_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yml" || e == "yaml")
}

fn collect_dir(dir: &Path, out: &mut Vec<RuleText>, errors: &mut Vec<RuleError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(RuleError {
                origin: dir.display().to_string(),
                line: None,
                message: format!("cannot read rule folder: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_dir(&p, out, errors);
        } else if is_rule_file(&p) {
            match std::fs::read_to_string(&p) {
                Ok(text) => out.push(RuleText {
                    origin: p.display().to_string(),
                    text,
                }),
                Err(e) => errors.push(RuleError {
                    origin: p.display().to_string(),
                    line: None,
                    message: format!("cannot read rule file: {e}"),
                }),
            }
        }
    }
}

fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let prefix = format!("{key}:");
    text.lines()
        .position(|l| l.starts_with(&prefix))
        .map(|i| i + 1)
}

/// A parsed rule file.
enum Parsed {
    /// A rule to load (its SQL not yet planned).
    Rule(Box<Rule>),
    /// `enabled: false`: the rule with this id is switched off.
    Disabled(String),
}

/// Parses and checks everything but the SQL.
fn parse_rule(t: &RuleText) -> Result<Parsed, RuleError> {
    let err = |line: Option<usize>, message: String| RuleError {
        origin: t.origin.clone(),
        line,
        message,
    };
    let file: RuleFile = yaml_serde::from_str(&t.text)
        .map_err(|e| err(e.location().map(|l| l.line()), e.to_string()))?;
    if file.enabled == Some(false) {
        return Ok(Parsed::Disabled(file.id));
    }
    let valid_id = !file.id.is_empty()
        && file
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid_id {
        return Err(err(
            line_of_key(&t.text, "id"),
            format!(
                "rule id `{}` must be lower-case letters, digits, `.`, `_` or `-`",
                file.id
            ),
        ));
    }
    let severity = Severity::parse_label(&file.severity).ok_or_else(|| {
        err(
            line_of_key(&t.text, "severity"),
            format!(
                "unknown severity `{}` (informational, low, medium, high, critical)",
                file.severity
            ),
        )
    })?;
    let window = parse_window(&file.window)
        .filter(|w| *w <= MAX_WINDOW)
        .ok_or_else(|| {
            err(
                line_of_key(&t.text, "window"),
                format!(
                    "window `{}` must look like 30m, 1h or 2d and be at most 48h",
                    file.window
                ),
            )
        })?;
    if let Some(expr) = &file.partition_by {
        partition_expr(expr).map_err(|e| {
            err(
                line_of_key(&t.text, "partition_by"),
                format!("partition_by `{expr}` is not a SQL expression over one findings row: {e}"),
            )
        })?;
    }
    for id in &file.attack.tactics {
        if !(id.starts_with("TA") && id.len() == 6 && id[2..].chars().all(|c| c.is_ascii_digit())) {
            return Err(err(
                line_of_key(&t.text, "attack"),
                format!("`{id}` is not an ATT&CK tactic id"),
            ));
        }
    }
    Ok(Parsed::Rule(Box::new(Rule {
        id: file.id,
        title: file.title,
        description: file.description.trim().to_string(),
        severity,
        attack: file.attack,
        compliance: file
            .compliance
            .into_iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        entity: file.entity,
        window,
        partition_by: file.partition_by,
        reads: Vec::new(),
        sql: file.sql,
        origin: t.origin.clone(),
        sql_line: line_of_key(&t.text, "sql").unwrap_or(1),
        tests: check_tests(file.tests, &t.text)
            .map_err(|m| err(line_of_key(&t.text, "tests"), m))?,
    })))
}

/// Checks that every test's findings build (times, severities); names must be unique.
fn check_tests(
    tests: Vec<crate::rule_test::RuleTest>,
    _text: &str,
) -> Result<Vec<crate::rule_test::RuleTest>, String> {
    let mut names = std::collections::BTreeSet::new();
    for t in &tests {
        if !names.insert(t.name.as_str()) {
            return Err(format!("two tests are named `{}`", t.name));
        }
        t.to_findings()
            .map_err(|e| format!("test `{}`: {e}", t.name))?;
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(origin: &str, text: &str) -> RuleText {
        RuleText {
            origin: origin.into(),
            text: text.into(),
        }
    }

    const GOOD: &str = "id: t.good\ntitle: Good\nseverity: low\nentity: identity\nwindow: 1h\nsql: |\n  SELECT identity_id AS entity_key, min(time) AS first_seen, max(time) AS last_seen, array_agg(finding_uid) AS finding_uids FROM findings GROUP BY identity_id\n";

    #[tokio::test]
    async fn builtin_pack_loads() {
        let set = RuleSet::builtin().await.expect("built-in pack is valid");
        assert!(set.len() >= 4, "only {} rules", set.len());
    }

    #[tokio::test]
    async fn every_error_is_reported_with_file_and_line() {
        let texts = vec![
            text("a.yml", GOOD),
            text(
                "b.yml",
                &GOOD
                    .replace("id: t.good", "id: t.b")
                    .replace("min(time)", "min(nosuchcolumn)"),
            ),
            text(
                "c.yml",
                &GOOD
                    .replace("id: t.good", "id: t.c")
                    .replace("severity: low", "severity: urgent"),
            ),
            text(
                "d.yml",
                &GOOD
                    .replace("id: t.good", "id: t.d")
                    .replace("AS finding_uids", "AS uids"),
            ),
            text("e.yml", &format!("{GOOD}colour: blue\n")),
            text(
                "f.yml",
                &GOOD
                    .replace("id: t.good", "id: t.f")
                    .replace("SELECT", "DELETE FROM findings; SELECT"),
            ),
            text(
                "g.yml",
                &GOOD
                    .replace("window: 1h", "window: 3d")
                    .replace("id: t.good", "id: t.g"),
            ),
            text(
                "h.yml",
                &GOOD
                    .replace("id: t.good", "id: t.h")
                    .replace("FROM findings", "FROM findings WHERE raw LIKE '%x%'"),
            ),
            text(
                "i.yml",
                &GOOD.replace("id: t.good", "id: t.i").replace(
                    "window: 1h\n",
                    "window: 1h\npartition_by: count(identity_id)\n",
                ),
            ),
            text(
                "j.yml",
                &GOOD.replace("id: t.good", "id: t.j").replace(
                    "window: 1h\n",
                    "window: 1h\npartition_by: lower(nosuchcolumn)\n",
                ),
            ),
        ];
        let errors = RuleSet::from_texts(texts)
            .await
            .expect_err("bad rules fail")
            .0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 9, "{shown:#?}");
        assert!(
            shown[0].starts_with("b.yml:6: invalid SQL:") && shown[0].contains("nosuchcolumn"),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("c.yml:3: unknown severity `urgent`"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2]
                .starts_with("d.yml:6: invalid SQL: the query must return a column `finding_uids`"),
            "{}",
            shown[2]
        );
        assert!(
            shown[3].starts_with("e.yml:") && shown[3].contains("unknown field `colour`"),
            "{}",
            shown[3]
        );
        assert!(
            shown[4].starts_with("f.yml:6: invalid SQL:"),
            "{}",
            shown[4]
        );
        assert!(shown[5].starts_with("g.yml:5: window `3d`"), "{}", shown[5]);
        assert!(
            shown[6].starts_with("h.yml:6: invalid SQL:") && shown[6].contains("raw"),
            "{}",
            shown[6]
        );
        for (i, file) in [(7, "i.yml"), (8, "j.yml")] {
            assert!(
                shown[i].starts_with(&format!("{file}:6: partition_by `"))
                    && shown[i].contains("is not a SQL expression over one findings row"),
                "{}",
                shown[i]
            );
        }
        assert!(shown[8].contains("nosuchcolumn"), "{}", shown[8]);
    }

    #[tokio::test]
    async fn a_rule_knows_its_partition_and_the_tables_it_reads() {
        let set = RuleSet::builtin().await.expect("pack");
        let disabled = set
            .get("cairn.identity.disabled_ad_account_active_in_cloud")
            .expect("rule");
        assert_eq!(disabled.partition_by.as_deref(), Some("identity_id"));
        assert_eq!(disabled.reads, vec!["directory".to_string()]);
        let elevation = set
            .get("cairn.cross_cloud.ad_elevation_then_aws_privilege_change")
            .expect("rule");
        assert_eq!(elevation.partition_by, None);
        assert_eq!(elevation.reads, vec!["identities".to_string()]);
        let roast = set.get("cairn.ad.kerberoast_then_logon").expect("rule");
        assert_eq!(roast.partition_by, None);
        let bruteforce = set.get("cairn.ad.bruteforce_then_logon").expect("rule");
        assert!(bruteforce.reads.is_empty());
    }

    #[tokio::test]
    async fn a_folder_rule_replaces_the_builtin_one_with_its_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let builtin = RuleSet::builtin().await.expect("builtin");
        let some_id = builtin.rules().next().expect("a rule").id.clone();
        std::fs::write(
            dir.path().join("mine.yml"),
            GOOD.replace("t.good", &some_id),
        )
        .expect("write");
        let set = RuleSet::load(&[dir.path()], true).await.expect("load");
        assert_eq!(set.len(), builtin.len());
        assert_eq!(set.get(&some_id).map(|r| r.title.as_str()), Some("Good"));

        std::fs::write(
            dir.path().join("mine.yml"),
            GOOD.replace("t.good", &some_id)
                .replace("severity: low", "severity: low\nenabled: false"),
        )
        .expect("write");
        let set = RuleSet::load(&[dir.path()], true).await.expect("load");
        assert_eq!(set.len(), builtin.len() - 1);
        assert!(
            set.get(&some_id).is_none(),
            "enabled: false switches the built-in rule off"
        );
    }
}
