//! `cairn-correlate`: from normalized findings to merged incidents.
//!
//! - [`pipeline`] runs a [`Source`](cairn_ingest::Source) into the [`store`], page by page;
//! - [`correlator`] runs one correlation pass: the window as a DataFusion table
//!   ([`engine`]), [`identity`] resolution, every rule, detections keyed by
//!   `(rule, entity, window bucket)`, and [`merge`] into incidents;
//! - [`store`] persists it all ([`store::sqlite::SqliteStore`] is the embedded default);
//! - [`rule_tests`] runs rules' inline tests on the same engine (`cairn rules test`);
//! - [`offline`] runs the rules over a closed set of events with no store (`cairn hunt --rules`);
//! - [`generator`] makes seeded synthetic findings for benchmarks and property tests.

pub mod archive;
pub mod correlator;
pub mod engine;
pub mod error;
pub mod generator;
pub mod identity;
pub mod incremental;
#[cfg(test)]
mod incremental_tests;
pub mod merge;
pub mod offline;
#[cfg(test)]
mod pack_tests;
pub mod pipeline;
pub mod replay;
pub mod rule_tests;
pub mod store;
#[cfg(test)]
mod stream_tests;

pub use correlator::{CorrelateConfig, Correlator, PassReport, run_pass};
pub use error::{CorrelateError, Result};
pub use pipeline::{IngestReport, run_source};
pub use store::Store;
pub use store::sqlite::SqliteStore;
