//! `cairn-rules`: detection rules as data.
//!
//! A rule is a YAML file with a SQL `SELECT` over the `findings` table (see [`rule`] for the
//! format and the columns a query must return). [`RuleSet`] loads the built-in pack (shipped
//! in the binary from `rules/pack/`) and folders of site rules, and validates every rule at
//! load: unknown keys, bad severities or windows, and SQL that does not plan against the
//! Finding schema or does not return the detection columns all fail with file and line.
//! [`sql::new_session`] is the DataFusion session in which rules are planned and run; besides
//! `findings` it has the `identities` and `directory` tables (one person across AD, Entra ID
//! and AWS; see [`sql::identities_schema`]) and the functions of [`udf`], such as
//! `normalize_principal`. [`sigma`] compiles Sigma rules (detection and correlation) into
//! rules of the same kind, through field mappings kept as data.

pub mod load;
pub mod rule;
pub mod rule_test;
pub mod sigma;
pub mod sql;
pub mod udf;

pub use load::{RuleError, RuleErrors, RuleSet};
pub use rule::{Attack, EntityKind, Rule};
