//! Field mappings: where a Sigma log source's events are in `findings`, and what Sigma's field
//! names are called there. They are data (`rules/sigma/mappings.yml`, bundled), so a site can
//! add a log source without touching the compiler.

use std::collections::BTreeMap;

use rsigma_parser::LogSource;
use serde::Deserialize;

use super::ir::FieldRef;
use crate::rule::EntityKind;

static BUNDLED: &str = include_str!("../../sigma/mappings.yml");

/// The mapping file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    products: BTreeMap<String, FieldNames>,
    sources: Vec<SourceEntry>,
    #[serde(default)]
    entities: BTreeMap<EntityKind, Vec<String>>,
}

/// Sigma field names mapped to `findings` columns or to other keys of the `fields` map.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldNames {
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
}

/// One place a log source's events are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    logsource: LogSourceMatch,
    #[serde(rename = "where")]
    predicate: String,
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
}

/// A log source pattern; a key left out matches anything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSourceMatch {
    product: Option<String>,
    service: Option<String>,
    category: Option<String>,
}

impl LogSourceMatch {
    fn matches(&self, ls: &LogSource) -> bool {
        fn eq(want: &Option<String>, got: &Option<String>) -> bool {
            match (want, got) {
                (None, _) => true,
                (Some(w), Some(g)) => w.eq_ignore_ascii_case(g),
                (Some(_), None) => false,
            }
        }
        // A rule's service or category that the entry does not name makes it more specific
        // than the entry can honour (e.g. `category: process_creation` against a plain
        // `service: security` entry), so every key the rule sets must be matched.
        let covered = |want: &Option<String>, got: &Option<String>| got.is_none() || want.is_some();
        eq(&self.product, &ls.product)
            && eq(&self.service, &ls.service)
            && eq(&self.category, &ls.category)
            && covered(&self.service, &ls.service)
            && covered(&self.category, &ls.category)
    }
}

/// Where one log source's events are, and how to read a Sigma field there.
#[derive(Debug, Clone)]
pub struct SourceMapping {
    /// SQL predicate over `findings` selecting the events.
    pub predicate: String,
    columns: BTreeMap<String, String>,
    rename: BTreeMap<String, String>,
}

impl SourceMapping {
    /// Where Sigma field `name` is read: a column, or the `fields` map entry.
    pub fn field(&self, name: &str) -> FieldRef {
        if let Some(c) = self.columns.get(name) {
            return FieldRef::Column(c.clone());
        }
        let key = self.rename.get(name).map(String::as_str).unwrap_or(name);
        FieldRef::Map(key.to_string())
    }
}

/// Errors in a mapping file.
#[derive(Debug, thiserror::Error)]
#[error("invalid Sigma mapping file {origin}: {message}")]
pub struct MappingError {
    /// The file.
    pub origin: String,
    /// What is wrong, with the line when the YAML parser knows it.
    pub message: String,
}

/// The log sources Cairn knows, with their field names.
#[derive(Debug, Clone)]
pub struct SigmaMappings {
    file: MappingFile,
    text: String,
}

impl SigmaMappings {
    /// The mappings shipped with Cairn (`rules/sigma/mappings.yml`).
    pub fn bundled() -> SigmaMappings {
        // The bundled file is checked by a unit test; failing here would be a build defect.
        Self::parse("builtin:sigma/mappings.yml", BUNDLED)
            .unwrap_or_else(|e| panic!("the bundled Sigma mappings are invalid: {e}"))
    }

    /// Reads a mapping file of the bundled file's format.
    pub fn parse(origin: &str, text: &str) -> Result<SigmaMappings, MappingError> {
        let file: MappingFile = yaml_serde::from_str(text).map_err(|e| MappingError {
            origin: origin.to_string(),
            message: match e.location() {
                Some(l) => format!("line {}: {e}", l.line()),
                None => e.to_string(),
            },
        })?;
        Ok(SigmaMappings {
            file,
            text: text.to_string(),
        })
    }

    /// The mapping file's text (what compiled rules depend on, for caches).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every place the events of `ls` are found; empty when Cairn has no such source.
    pub fn sources(&self, ls: &LogSource) -> Vec<SourceMapping> {
        let product = ls
            .product
            .as_deref()
            .and_then(|p| self.file.products.get(&p.to_ascii_lowercase()));
        self.file
            .sources
            .iter()
            .filter(|e| e.logsource.matches(ls))
            .map(|e| {
                let mut columns = product.map(|p| p.columns.clone()).unwrap_or_default();
                let mut rename = product.map(|p| p.rename.clone()).unwrap_or_default();
                columns.extend(e.columns.clone());
                rename.extend(e.rename.clone());
                SourceMapping {
                    predicate: e.predicate.clone(),
                    columns,
                    rename,
                }
            })
            .collect()
    }

    /// What a Sigma field names, for a correlation's `group-by`.
    pub fn entity_of(&self, field: &str) -> Option<EntityKind> {
        self.file
            .entities
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(field)))
            .map(|(k, _)| *k)
    }
}
