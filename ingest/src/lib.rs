//! `cairn-ingest`: everything between a security feed and a normalized finding.
//!
//! - [`schema`]: the one OCSF-aligned Arrow schema every record is normalized into, the
//!   [`Finding`] row and its batch builder;
//! - [`normalize`]: one normalizer per input format (ASFF, Graph security alerts, Windows
//!   events), chosen per record by content;
//! - [`source`]: the [`Source`] trait that every feed implements; [`sources`] holds the
//!   implementations, one folder each, registered in [`sources::SourceConfig`];
//! - [`reader`]: JSON / NDJSON / gzip reading with positions for error reports, into the
//!   borrowed [`json::Json`] tree;
//! - [`directory`]: accounts and groups of AD, Entra ID and AWS, for identity resolution;
//! - [`dead_letter`]: records that could not be used, kept with their reason.

pub mod dead_letter;
pub mod directory;
pub mod duration;
pub mod error;
pub mod fields;
pub mod incremental;
pub mod json;
pub mod microsoft;
pub mod normalize;
pub mod reader;
pub mod schema;
pub mod source;
pub mod sources;

pub use dead_letter::DeadLetter;
pub use directory::{DirectoryKind, DirectoryObject, DirectorySync};
pub use error::{IngestError, Result};
pub use fields::Fields;
pub use schema::{Finding, FindingBatchBuilder, Severity, finding_schema, to_record_batch};
pub use source::{Page, Source};
