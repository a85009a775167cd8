//! Running a source into the store: page by page, each page's findings, dead letters and
//! cursor committed in one transaction, so a crash resumes at the last committed page.

use serde::Serialize;

use cairn_ingest::{Page, Source};

use crate::error::{CorrelateError, Result};
use crate::store::{PageStats, Store};

/// What ingesting a source did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Records read (findings plus dead letters).
    pub records: u64,
    /// Records that normalized.
    pub findings: u64,
    /// Directory objects read (directory sources).
    pub directory_objects: u64,
    /// What the store did with them.
    pub stored: PageStats,
    /// Pages committed.
    pub pages: u64,
}

/// Drains `source` into `store`; `on_page` sees every page after it is committed (for
/// progress bars).
pub async fn run_source(
    source: &mut dyn Source,
    store: &dyn Store,
    mut on_page: impl FnMut(&Page, &IngestReport),
) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let id = source.id().to_string();
    let mut cursor = store.cursor(&id).await?;
    while let Some(page) = source
        .next_page(cursor.as_deref())
        .await
        .map_err(CorrelateError::Source)?
    {
        let stats = store.commit_page(&id, &page).await?;
        source
            .committed(page.cursor.as_deref())
            .await
            .map_err(CorrelateError::Source)?;
        tracing::info!(source = %id, records = page.records(), stored = stats.stored, "Committed a page");
        report.records += page.records() as u64;
        report.findings += page.findings.len() as u64;
        report.directory_objects += page.directory.len() as u64;
        report.stored += stats;
        report.pages += 1;
        if page.cursor.is_some() {
            cursor = page.cursor.clone();
        }
        on_page(&page, &report);
    }
    Ok(report)
}
