//! Source implementations, one folder each, and the one place they are registered.

pub mod file;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::source::Source;

/// Every source type, as configured in `[sources.<id>]` by its `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// `type = "file"`: JSON, NDJSON and gzip files or folders.
    File(file::FileSourceConfig),
}

impl SourceConfig {
    /// Builds the source with id `id`.
    pub fn build(&self, id: &str) -> Result<Box<dyn Source>> {
        match self {
            SourceConfig::File(c) => Ok(Box::new(file::FileSource::new(id, c)?)),
        }
    }
}
