//! Configuration of the file source.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[sources.<id>] type = "file"`: JSON, NDJSON and `.gz` files or folders of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Files or folders (read recursively, in name order).
    pub paths: Vec<PathBuf>,
    /// Records per page (one store transaction each).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_page_size() -> usize {
    2000
}

impl FileSourceConfig {
    /// A configuration reading `paths` with the default page size.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FileSourceConfig {
            paths,
            page_size: default_page_size(),
        }
    }
}
