//! The `Source` extension point: anything that yields pages of findings with a cursor.
//!
//! A source fetches one page at a time and returns its findings, its dead letters and the
//! cursor that follows the page. The runner, not the source, stores the page and commits the
//! cursor in the same store transaction, so a crash between pages neither loses nor
//! duplicates records: the next run resumes from the last committed cursor, and findings are
//! keyed by `(source, finding_uid)` so a replayed page overwrites rather than duplicates.

use async_trait::async_trait;

use crate::dead_letter::DeadLetter;
use crate::directory::{DirectoryObject, DirectorySync};
use crate::error::Result;
use crate::schema::Finding;

/// One page of a source.
#[derive(Debug, Default)]
pub struct Page {
    /// Records that normalized.
    pub findings: Vec<Finding>,
    /// Records that did not, with their reasons.
    pub dead_letters: Vec<DeadLetter>,
    /// The cursor after this page (opaque to the runner), if the source keeps one.
    pub cursor: Option<String>,
    /// Input bytes consumed by this page, for progress reporting.
    pub bytes: u64,
    /// Directory objects (accounts and groups) of a directory source.
    pub directory: Vec<DirectoryObject>,
    /// Set by directory sources: which synchronisation the page belongs to.
    pub directory_sync: Option<DirectorySync>,
}

impl Page {
    /// Records read in this page: findings, directory objects and dead letters.
    pub fn records(&self) -> usize {
        self.findings.len() + self.directory.len() + self.dead_letters.len()
    }
}

/// A feed of security records.
#[async_trait]
pub trait Source: Send {
    /// The configured id of this source (the `<id>` of `[sources.<id>]`); cursors and dead
    /// letters are filed under it.
    fn id(&self) -> &str;

    /// Total input bytes if known in advance (files), for a progress bar.
    fn total_bytes(&self) -> Option<u64> {
        None
    }

    /// Fetches the page after `cursor` (the last committed one, `None` at the start), or
    /// `None` when the source has nothing more for now.
    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Option<Page>>;

    /// Told after the runner has committed the page that ended at `cursor` to the store, so a
    /// source whose upstream keeps its own position (a Kafka consumer group) acknowledges
    /// only what is stored. A crash before this call re-delivers the page; the store's
    /// idempotent writes make that harmless.
    async fn committed(&mut self, _cursor: Option<&str>) -> Result<()> {
        Ok(())
    }
}
