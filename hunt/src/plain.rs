//! The reference: every rule tested on every event of its log source, straight from the
//! compiled condition trees, with no index, no automata, no shared leaves and its own
//! reading of the `fields` map. The differential test and the benchmark check that the
//! indexed engine finds exactly what this finds.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, MapArray, RecordBatch};

use cairn_rules::sigma::ir::{Cmp, FieldRef, Leaf, Piece, Position, Predicate};

use crate::HuntError;
use crate::index::HuntRules;
use crate::matcher::{Matches, keyword_texts, selected, source_masks};

/// Regexes of the wildcard patterns and `re` values met so far.
#[derive(Default)]
pub struct PlainScratch {
    wildcards: HashMap<(Vec<Piece>, Position, bool), regex::Regex>,
    regexes: HashMap<String, Option<regex::Regex>>,
}

impl HuntRules {
    /// The rules that match each row of `batch`, one rule and one event at a time.
    pub fn matches_plain(
        &self,
        batch: &RecordBatch,
        scratch: &mut PlainScratch,
    ) -> Result<Matches, HuntError> {
        let masks = source_masks(self, batch)?;
        let keywords = keyword_texts(batch)?;
        let mut out = Vec::new();
        for (row, keywords) in keywords.iter().enumerate() {
            let event = Event {
                batch,
                row,
                keywords,
            };
            for (rule, branches) in self.conditions.iter().enumerate() {
                let hit = branches.iter().any(|(source, p)| {
                    selected(&masks[*source as usize], row) && event.holds(p, scratch)
                });
                if hit {
                    out.push((row as u32, rule as u32));
                }
            }
        }
        Ok(out)
    }
}

struct Event<'a> {
    batch: &'a RecordBatch,
    row: usize,
    keywords: &'a str,
}

impl Event<'_> {
    fn value(&self, f: &FieldRef) -> Option<String> {
        match f {
            FieldRef::Keywords => Some(self.keywords.to_string()),
            FieldRef::Column(name) => {
                let c = self.batch.column_by_name(name)?;
                if c.is_null(self.row) {
                    return None;
                }
                let one = c.slice(self.row, 1);
                let text = arrow::compute::cast(&one, &arrow::datatypes::DataType::Utf8).ok()?;
                Some(text.as_string::<i32>().value(0).to_string())
            }
            FieldRef::Map(key) => {
                let map = self
                    .batch
                    .column_by_name("fields")?
                    .as_any()
                    .downcast_ref::<MapArray>()?;
                if map.is_null(self.row) {
                    return None;
                }
                let entries = map.value(self.row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                let at = (0..keys.len()).find(|i| keys.value(*i) == key)?;
                values.is_valid(at).then(|| values.value(at).to_string())
            }
        }
    }

    fn holds(&self, p: &Predicate, scratch: &mut PlainScratch) -> bool {
        match p {
            Predicate::Leaf(l) => self.leaf(l, scratch),
            Predicate::And(xs) => xs.iter().all(|x| self.holds(x, scratch)),
            Predicate::Or(xs) => xs.iter().any(|x| self.holds(x, scratch)),
            Predicate::Not(x) => !self.holds(x, scratch),
            Predicate::AtLeast(n, xs) => xs.iter().filter(|x| self.holds(x, scratch)).count() >= *n,
        }
    }

    fn leaf(&self, l: &Leaf, scratch: &mut PlainScratch) -> bool {
        match l {
            Leaf::Exists(f) => self.value(f).is_some(),
            Leaf::Empty(f) => self.value(f).is_none_or(|v| v.is_empty()),
            Leaf::Text {
                field,
                position,
                cased,
                pattern,
            } => {
                let Some(v) = self.value(field) else {
                    return false;
                };
                let v = if *cased { v } else { v.to_lowercase() };
                let wild = pattern.iter().any(|p| !matches!(p, Piece::Lit(_)));
                if !wild {
                    let lit: String = pattern
                        .iter()
                        .map(|p| match p {
                            Piece::Lit(s) => s.as_str(),
                            _ => "",
                        })
                        .collect();
                    return match position {
                        Position::Exact => v == lit,
                        Position::Contains => v.contains(&lit),
                        Position::StartsWith => v.starts_with(&lit),
                        Position::EndsWith => v.ends_with(&lit),
                    };
                }
                let key = (pattern.clone(), *position, *cased);
                let re = scratch
                    .wildcards
                    .entry(key)
                    .or_insert_with(|| wildcard_regex(pattern, *position));
                re.is_match(&v)
            }
            Leaf::Number {
                field,
                op,
                value_bits,
            } => self
                .value(field)
                .and_then(|v| Cmp::number(&v))
                .is_some_and(|v| op.holds(v, f64::from_bits(*value_bits))),
            Leaf::FieldEq {
                field,
                other,
                cased,
            } => match (self.value(field), self.value(other)) {
                (Some(a), Some(b)) if *cased => a == b,
                (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
                _ => false,
            },
            Leaf::Cidr { field, network } => self
                .value(field)
                .and_then(|v| cairn_rules::udf::cidr_contains(network, &v))
                .unwrap_or(false),
            Leaf::Regex { field, pattern } => match self.value(field) {
                Some(v) => scratch
                    .regexes
                    .entry(pattern.clone())
                    // The index compiled every pattern at load, so none is invalid here.
                    .or_insert_with(|| regex::Regex::new(pattern).ok())
                    .as_ref()
                    .is_some_and(|r| r.is_match(&v)),
                None => false,
            },
        }
    }
}

/// A wildcard pattern as an anchored regex (`.` and `(?s)`, so `?` is one character of any
/// kind).
fn wildcard_regex(pattern: &[Piece], position: Position) -> regex::Regex {
    let mut re = String::from("(?s)^");
    if matches!(position, Position::Contains | Position::EndsWith) {
        re.push_str(".*");
    }
    for p in pattern {
        match p {
            Piece::Lit(s) => re.push_str(&regex::escape(s)),
            Piece::AnyRun => re.push_str(".*"),
            Piece::AnyChar => re.push('.'),
        }
    }
    if matches!(position, Position::Contains | Position::StartsWith) {
        re.push_str(".*");
    }
    re.push('$');
    // Escaped literals and `.`/`.*` always make a valid regex.
    regex::Regex::new(&re).unwrap_or_else(|_| unreachable!("escaped pattern `{re}` is valid"))
}
