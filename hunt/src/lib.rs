//! `cairn-hunt`: Sigma rules over folders of exported logs (`cairn hunt`).
//!
//! Incident responders run the whole SigmaHQ Windows rule set over EVTX and JSON exports. Testing
//! every rule against every event costs rules × events; Cairn compiles the rules once into an
//! index instead ([`HuntRules`]):
//!
//! - **by log source**: each rule is tied to the `where` of its log source's field mapping (the
//!   same `rules/sigma/mappings.yml` the live correlator uses), evaluated once per batch;
//! - **shared string matchers**: every text test gives its longest literal to one Aho-Corasick
//!   automaton per field, so one pass over a value finds the anchors of all rules at once;
//! - **candidates only**: a rule's condition is only evaluated on events where one of the
//!   anchors it cannot match without was found (rules with none, such as a lone regex, run on
//!   every event of their log source), and identical field tests of different rules are
//!   computed once per event.
//!
//! Events are read and normalized by the production readers and normalizer
//! (`cairn-ingest`), and the conditions come from the same compiler front end as the SQL the
//! correlator runs ([`cairn_rules::sigma::ir`]). [`HuntRules::matches_plain`] is the row-by-row
//! reference the indexed engine is checked against.

pub mod bundled;
pub mod cache;
pub mod index;
mod leaf;
pub mod matcher;
pub mod output;
pub mod plain;
pub mod run;

pub use cache::{CacheUse, CompiledSet};
pub use index::{HuntRule, HuntRules, IndexStats, RuleInfo};
pub use matcher::Scratch;
pub use output::Correlated;
pub use run::{Detection, HuntOptions, HuntReport, Rejected, WindowPart, hunt};

/// What can stop a hunt.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// A log source's `where` in the field mappings is not a SQL predicate over findings.
    #[error("the log source predicate `{sql}` does not compile: {reason}")]
    SourcePredicate {
        /// The predicate.
        sql: String,
        /// Why.
        reason: String,
    },
    /// A log source predicate or a column failed on a batch.
    #[error("evaluating `{sql}` failed: {reason}")]
    Evaluate {
        /// The predicate or column.
        sql: String,
        /// Why.
        reason: String,
    },
    /// A rule's regular expression does not compile (the compiler checks them, so this is a
    /// defect).
    #[error("regular expression `{pattern}` does not compile: {reason}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The string matcher could not be built.
    #[error("cannot build the string matcher: {0}")]
    Automaton(String),
    /// Normalized records did not make an Arrow batch.
    #[error("cannot build a batch of events: {0}")]
    Batch(String),
    /// Reading or evaluating a file panicked (a defect, or a parser meeting a damaged file).
    #[error("reading {0} stopped unexpectedly")]
    WorkerLost(String),
    /// The bundled rule set is damaged.
    #[error("the bundled Sigma rule set cannot be read: {0}")]
    Bundled(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}
