//! Compiled Sigma rules as an index: log sources, shared leaves, and string matchers shared by
//! every rule that reads the same field.
//!
//! A rule becomes one [`Unit`] per log source it reads (its condition there, with that source's
//! field names). Identical field tests of different rules become one leaf. Each text leaf gives
//! its longest literal piece to the Aho-Corasick automaton of its field: one pass over a value
//! finds every anchor of every rule at once. A unit is only evaluated on an event of its log
//! source where one of its *required anchors* was found (its condition cannot hold otherwise);
//! units with no such anchors (a lone regex, `not filter`, a numeric test) are evaluated on every
//! event of their log source.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::PhysicalExpr;

use cairn_rules::Rule;
use cairn_rules::sigma::SigmaImport;
use cairn_rules::sigma::ir::{Cmp, FieldRef, Leaf, Piece, Position, Predicate};

use crate::HuntError;
use crate::leaf::{Glob, TextTest};

/// What a detection names about its rule.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuleInfo {
    /// Cairn rule id (`sigma.<sigma id>`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Sigma level as a Cairn severity label.
    pub level: String,
    /// ATT&CK tactic ids.
    pub tactics: Vec<String>,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// The file it came from.
    pub origin: String,
}

impl RuleInfo {
    fn of(rule: &Rule) -> RuleInfo {
        RuleInfo {
            id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.severity.caption().to_ascii_lowercase(),
            tactics: rule.attack.tactics.clone(),
            techniques: rule.attack.techniques.clone(),
            origin: rule.origin.clone(),
        }
    }
}

/// A log source's `where`, evaluated once per batch.
pub(crate) struct SourceExpr {
    pub sql: String,
    pub expr: Arc<dyn PhysicalExpr>,
}

/// A condition tree over shared leaves.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Leaf(u32),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    AtLeast(usize, Vec<Node>),
}

/// One rule over one log source.
pub(crate) struct Unit {
    pub rule: u32,
    pub source: u32,
    pub tree: Node,
}

/// A field test ready to run: fields are numbered, patterns compiled once.
pub(crate) enum LeafProgram {
    Exists(u32),
    Empty(u32),
    Text {
        field: u32,
        cased: bool,
        test: TextTest,
    },
    Number {
        field: u32,
        op: Cmp,
        value: f64,
    },
    FieldEq {
        field: u32,
        other: u32,
        cased: bool,
    },
    Cidr {
        field: u32,
        network: String,
    },
    Regex {
        field: u32,
        regex: regex::Regex,
    },
}

/// The anchors of one field (in lower case, or as written for case-sensitive tests) and the
/// units each one can start.
pub(crate) struct FieldMatcher {
    pub field: u32,
    pub cased: bool,
    pub automaton: AhoCorasick,
    pub units: Vec<Vec<u32>>,
    /// The log sources of those units: an event in none of them skips this automaton.
    pub sources: Vec<u32>,
    /// Number of this matcher's first anchor among all matchers' anchors.
    pub anchor_base: u32,
}

/// Sigma rules compiled for hunting.
pub struct HuntRules {
    /// One per rule that runs, in load order; detections refer to them by position.
    pub rules: Vec<RuleInfo>,
    pub(crate) sources: Vec<SourceExpr>,
    pub(crate) fields: Vec<FieldRef>,
    pub(crate) leaves: Vec<LeafProgram>,
    pub(crate) units: Vec<Unit>,
    /// Per source: units evaluated on every one of its events.
    pub(crate) always: Vec<Vec<u32>>,
    pub(crate) matchers: Vec<FieldMatcher>,
    /// The conditions as compiled (per rule: source and tree), for the row-by-row reference.
    pub(crate) conditions: Vec<Vec<(u32, Predicate)>>,
    /// Per field: whether its values are folded to lower case per batch.
    pub(crate) lowered: Vec<bool>,
    /// Anchors of all matchers.
    pub(crate) anchor_count: usize,
}

/// Sizes of the index, for reports and benchmarks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct IndexStats {
    /// Rules that run.
    pub rules: usize,
    /// Rule × log source pairs.
    pub units: usize,
    /// Distinct log sources.
    pub sources: usize,
    /// Distinct fields read.
    pub fields: usize,
    /// Distinct field tests.
    pub leaves: usize,
    /// Anchors in all automata.
    pub anchors: usize,
    /// Units evaluated on every event of their source (no anchor is required).
    pub unanchored_units: usize,
}

/// A detection rule as the index takes it: what its detections name, and its condition per
/// log source (the source's `where` SQL and the condition there).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HuntRule {
    /// What detections name.
    pub info: RuleInfo,
    /// `(log source predicate, condition)` per place its events are found.
    pub branches: Vec<(String, Predicate)>,
}

impl HuntRule {
    /// The detection rules of `import`, in order. Correlation rules are not among them: they
    /// need the live correlator's window.
    pub fn from_import(import: &SigmaImport) -> Vec<HuntRule> {
        import
            .detections
            .iter()
            .filter_map(|d| {
                let rule = import.compiled.get(d.rule)?;
                Some(HuntRule {
                    info: RuleInfo::of(rule),
                    branches: d
                        .branches
                        .iter()
                        .map(|b| (b.source_predicate.clone(), b.condition.clone()))
                        .collect(),
                })
            })
            .collect()
    }
}

impl HuntRules {
    /// Compiles the detection rules of `import` against batches of `schema` (the findings
    /// schema).
    pub fn compile(import: &SigmaImport, schema: &SchemaRef) -> Result<HuntRules, HuntError> {
        Self::build(&HuntRule::from_import(import), schema)
    }

    /// Builds the index of `rules` against batches of `schema`.
    pub fn build(rules: &[HuntRule], schema: &SchemaRef) -> Result<HuntRules, HuntError> {
        let mut b = Builder::default();
        let mut infos = Vec::with_capacity(rules.len());
        let mut conditions = Vec::with_capacity(rules.len());
        for rule in rules {
            let rule_no = infos.len() as u32;
            infos.push(rule.info.clone());
            let mut per_rule = Vec::new();
            for (predicate, condition) in &rule.branches {
                let source = b.source(predicate, schema)?;
                let tree = b.node(condition)?;
                per_rule.push((source, condition.clone()));
                b.units.push(Unit {
                    rule: rule_no,
                    source,
                    tree,
                });
            }
            conditions.push(per_rule);
        }
        b.finish(infos, conditions)
    }

    /// Per field: whether a case-insensitive test or automaton reads it (its values are then
    /// folded once per batch).
    fn lowered_fields(&self) -> Vec<bool> {
        let mut out = vec![false; self.fields.len()];
        for l in &self.leaves {
            match l {
                LeafProgram::Text {
                    field,
                    cased: false,
                    ..
                } => out[*field as usize] = true,
                LeafProgram::FieldEq {
                    field,
                    other,
                    cased: false,
                } => {
                    out[*field as usize] = true;
                    out[*other as usize] = true;
                }
                _ => {}
            }
        }
        for m in &self.matchers {
            if !m.cased {
                out[m.field as usize] = true;
            }
        }
        out
    }

    /// Sizes of the index.
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            rules: self.rules.len(),
            units: self.units.len(),
            sources: self.sources.len(),
            fields: self.fields.len(),
            leaves: self.leaves.len(),
            anchors: self.matchers.iter().map(|m| m.units.len()).sum(),
            unanchored_units: self.always.iter().map(Vec::len).sum(),
        }
    }
}

#[derive(Default)]
struct Builder {
    /// One planning session for every log source predicate (a session holds every function).
    session: Option<datafusion::prelude::SessionContext>,
    sources: Vec<SourceExpr>,
    source_ids: HashMap<String, u32>,
    fields: Vec<FieldRef>,
    field_ids: HashMap<FieldRef, u32>,
    leaves: Vec<LeafProgram>,
    leaf_ids: HashMap<Leaf, u32>,
    /// Per leaf: its anchor (field, cased, literal), when it has one.
    anchors: Vec<Option<(u32, bool, String)>>,
    regexes: HashMap<String, regex::Regex>,
    units: Vec<Unit>,
}

impl Builder {
    fn source(&mut self, sql: &str, schema: &SchemaRef) -> Result<u32, HuntError> {
        if let Some(id) = self.source_ids.get(sql) {
            return Ok(*id);
        }
        let session = self
            .session
            .get_or_insert_with(cairn_rules::sql::new_session);
        let expr = cairn_rules::sql::row_predicate(session, sql, schema).map_err(|reason| {
            HuntError::SourcePredicate {
                sql: sql.to_string(),
                reason,
            }
        })?;
        let id = self.sources.len() as u32;
        self.sources.push(SourceExpr {
            sql: sql.to_string(),
            expr,
        });
        self.source_ids.insert(sql.to_string(), id);
        Ok(id)
    }

    fn field(&mut self, f: &FieldRef) -> u32 {
        if let Some(id) = self.field_ids.get(f) {
            return *id;
        }
        let id = self.fields.len() as u32;
        self.fields.push(f.clone());
        self.field_ids.insert(f.clone(), id);
        id
    }

    fn node(&mut self, p: &Predicate) -> Result<Node, HuntError> {
        let mut all = |xs: &[Predicate]| xs.iter().map(|x| self.node(x)).collect::<Result<_, _>>();
        Ok(match p {
            Predicate::Leaf(l) => Node::Leaf(self.leaf(l)?),
            Predicate::And(xs) => Node::And(all(xs)?),
            Predicate::Or(xs) => Node::Or(all(xs)?),
            Predicate::AtLeast(n, xs) => Node::AtLeast(*n, all(xs)?),
            Predicate::Not(x) => Node::Not(Box::new(self.node(x)?)),
        })
    }

    fn leaf(&mut self, l: &Leaf) -> Result<u32, HuntError> {
        if let Some(id) = self.leaf_ids.get(l) {
            return Ok(*id);
        }
        let field = self.field(l.field());
        let mut anchor = None;
        let program = match l {
            Leaf::Exists(_) => LeafProgram::Exists(field),
            Leaf::Empty(_) => LeafProgram::Empty(field),
            Leaf::Text {
                position,
                cased,
                pattern,
                ..
            } => {
                // The longest literal piece: an event whose value lacks it cannot match.
                let longest = pattern
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Lit(s) => Some(s),
                        _ => None,
                    })
                    .max_by_key(|s| s.len());
                if let Some(lit) = longest.filter(|s| !s.is_empty()) {
                    anchor = Some((field, *cased, lit.clone()));
                }
                LeafProgram::Text {
                    field,
                    cased: *cased,
                    test: text_test(*position, pattern),
                }
            }
            Leaf::Number { op, value_bits, .. } => LeafProgram::Number {
                field,
                op: *op,
                value: f64::from_bits(*value_bits),
            },
            Leaf::FieldEq { other, cased, .. } => LeafProgram::FieldEq {
                field,
                other: self.field(other),
                cased: *cased,
            },
            Leaf::Cidr { network, .. } => LeafProgram::Cidr {
                field,
                network: network.clone(),
            },
            Leaf::Regex { pattern, .. } => {
                let regex = match self.regexes.get(pattern) {
                    Some(r) => r.clone(),
                    None => {
                        let r = regex::Regex::new(pattern).map_err(|e| HuntError::Regex {
                            pattern: pattern.clone(),
                            reason: e.to_string(),
                        })?;
                        self.regexes.insert(pattern.clone(), r.clone());
                        r
                    }
                };
                LeafProgram::Regex { field, regex }
            }
        };
        let id = self.leaves.len() as u32;
        self.leaves.push(program);
        self.anchors.push(anchor);
        self.leaf_ids.insert(l.clone(), id);
        Ok(id)
    }

    /// Leaves of which at least one holds whenever `n` holds; `None` when no such set is
    /// known (the unit must then be evaluated on every event of its source).
    fn required(&self, n: &Node) -> Option<Vec<u32>> {
        match n {
            Node::Leaf(l) => self.anchors[*l as usize].as_ref().map(|_| vec![*l]),
            // Any one child's set will do: take the one least likely to be found (fewest and
            // longest anchors).
            Node::And(xs) => xs
                .iter()
                .filter_map(|x| self.required(x))
                .min_by(|a, b| self.cost(a).total_cmp(&self.cost(b))),
            Node::Or(xs) => {
                let mut all = Vec::new();
                for x in xs {
                    all.extend(self.required(x)?);
                }
                Some(all)
            }
            // At least n ≥ 1 of them: their union is needed (n = 0 always holds).
            Node::AtLeast(n, xs) if *n >= 1 => {
                let mut all = Vec::new();
                for x in xs {
                    all.extend(self.required(x)?);
                }
                Some(all)
            }
            Node::AtLeast(..) | Node::Not(_) => None,
        }
    }

    /// How often a set of anchors is expected to be found: short anchors are found more often.
    fn cost(&self, leaves: &[u32]) -> f64 {
        leaves
            .iter()
            .filter_map(|l| self.anchors[*l as usize].as_ref())
            .map(|(_, _, lit)| 1.0 / lit.len().max(1) as f64)
            .sum()
    }

    fn finish(
        self,
        rules: Vec<RuleInfo>,
        conditions: Vec<Vec<(u32, Predicate)>>,
    ) -> Result<HuntRules, HuntError> {
        let mut always = vec![Vec::new(); self.sources.len()];
        // (field, cased) → (literal → anchor number, units per anchor)
        type Anchors = (HashMap<String, usize>, Vec<Vec<u32>>);
        let mut by_field: HashMap<(u32, bool), Anchors> = HashMap::new();
        for (u, unit) in self.units.iter().enumerate() {
            let Some(mut leaves) = self.required(&unit.tree) else {
                always[unit.source as usize].push(u as u32);
                continue;
            };
            leaves.sort_unstable();
            leaves.dedup();
            for l in leaves {
                let Some((field, cased, lit)) = &self.anchors[l as usize] else {
                    continue;
                };
                let (ids, units) = by_field.entry((*field, *cased)).or_default();
                let next = units.len();
                let a = *ids.entry(lit.clone()).or_insert(next);
                if a == units.len() {
                    units.push(Vec::new());
                }
                if units[a].last() != Some(&(u as u32)) {
                    units[a].push(u as u32);
                }
            }
        }
        let mut keys: Vec<(u32, bool)> = by_field.keys().copied().collect();
        keys.sort_unstable();
        let mut matchers = Vec::new();
        let mut anchor_count = 0u32;
        for key in keys {
            let Some((ids, units)) = by_field.remove(&key) else {
                continue;
            };
            let mut patterns = vec![String::new(); units.len()];
            for (lit, a) in ids {
                patterns[a] = lit;
            }
            let automaton = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .map_err(|e| HuntError::Automaton(e.to_string()))?;
            let mut sources: Vec<u32> = units
                .iter()
                .flatten()
                .map(|u| self.units[*u as usize].source)
                .collect();
            sources.sort_unstable();
            sources.dedup();
            matchers.push(FieldMatcher {
                field: key.0,
                cased: key.1,
                automaton,
                anchor_base: anchor_count,
                units,
                sources,
            });
            anchor_count += patterns.len() as u32;
        }
        let mut index = HuntRules {
            rules,
            sources: self.sources,
            fields: self.fields,
            leaves: self.leaves,
            units: self.units,
            always,
            matchers,
            conditions,
            lowered: Vec::new(),
            anchor_count: anchor_count as usize,
        };
        index.lowered = index.lowered_fields();
        Ok(index)
    }
}

/// A text comparison as literal tests where it can be, a glob where it has wildcards.
fn text_test(position: Position, pattern: &[Piece]) -> TextTest {
    if let [Piece::Lit(s)] = pattern {
        return match position {
            Position::Exact => TextTest::Equals(s.clone()),
            Position::Contains => TextTest::Contains(s.clone()),
            Position::StartsWith => TextTest::StartsWith(s.clone()),
            Position::EndsWith => TextTest::EndsWith(s.clone()),
        };
    }
    if pattern.is_empty() {
        return match position {
            Position::Exact => TextTest::Equals(String::new()),
            _ => TextTest::Contains(String::new()),
        };
    }
    let mut pieces = Vec::new();
    if matches!(position, Position::Contains | Position::EndsWith) {
        pieces.push(Piece::AnyRun);
    }
    pieces.extend(pattern.iter().cloned());
    if matches!(position, Position::Contains | Position::StartsWith) {
        pieces.push(Piece::AnyRun);
    }
    TextTest::Glob(Glob::new(&pieces))
}
