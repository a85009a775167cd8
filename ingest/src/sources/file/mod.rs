//! The file source: reads records from files and folders (JSON, NDJSON, gzip, Windows `.evtx`)
//! and normalizes them, for `cairn ingest PATH...` and for bundled or exported data sets.
//!
//! A reader thread parses and normalizes while the runner stores the previous page. Each
//! page's cursor names the file and the record it ends at. Re-reading a file is harmless:
//! findings are keyed by `(source, finding_uid)`, so the same records overwrite themselves.
//! An unreadable file becomes a dead letter with its reason; the other files are still read.

mod config;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::mpsc;

pub use config::FileSourceConfig;

use crate::dead_letter::DeadLetter;
use crate::error::{IngestError, Result};
use crate::normalize::normalize_json;
use crate::reader::{EVTX_MAGIC, RawRecord, maybe_gunzip, read_evtx, read_records};
use crate::source::{Page, Source};

/// An input to read: a file on disk, or bytes already in memory (bundled data sets).
#[derive(Debug, Clone)]
pub enum Input {
    /// A file.
    Path(PathBuf),
    /// Named bytes.
    Bytes {
        /// Name used in locations.
        name: String,
        /// Content (may be gzip).
        bytes: &'static [u8],
    },
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Bytes { name, .. } => name.clone(),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Input::Path(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Input::Bytes { bytes, .. } => bytes.len() as u64,
        }
    }
}

/// Reads files (or in-memory inputs) as a [`Source`].
pub struct FileSource {
    id: String,
    total_bytes: u64,
    pages: mpsc::Receiver<Result<Page>>,
}

impl FileSource {
    /// A source over the files and folders of `config`; folders are expanded now so that a
    /// missing path fails before anything is read.
    pub fn new(id: &str, config: &FileSourceConfig) -> Result<FileSource> {
        let mut inputs = Vec::new();
        for p in &config.paths {
            // Absolute, canonical names make dead-letter locations (and their de-duplication)
            // independent of how the path was typed.
            let canonical = std::fs::canonicalize(p).map_err(|err| IngestError::Io {
                path: p.clone(),
                err,
            })?;
            expand(&canonical, &mut inputs)?;
        }
        Ok(Self::from_inputs(id, inputs, config.page_size))
    }

    /// A source over explicit inputs.
    pub fn from_inputs(id: &str, inputs: Vec<Input>, page_size: usize) -> FileSource {
        let total_bytes = inputs.iter().map(Input::len).sum();
        // Two pages in flight: the reader stays one page ahead of the store.
        let (tx, rx) = mpsc::channel(2);
        let source_id = id.to_string();
        let page_size = page_size.max(1);
        std::thread::Builder::new()
            .name(format!("cairn-file-{id}"))
            .spawn(move || produce(&source_id, inputs, page_size, tx))
            .map_err(|e| tracing::error!(error = %e, "Cannot start the file reader thread"))
            .ok();
        FileSource {
            id: id.to_string(),
            total_bytes,
            pages: rx,
        }
    }
}

/// The files `paths` name, folders expanded to the data files in them (in name order), as
/// `cairn ingest` reads them; a missing path is an error.
pub fn data_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for p in paths {
        expand(p, &mut inputs)?;
    }
    Ok(inputs
        .into_iter()
        .filter_map(|i| match i {
            Input::Path(p) => Some(p),
            Input::Bytes { .. } => None,
        })
        .collect())
}

/// Hands every record of the file at `path` to `emit`, in order: EVTX when it starts with the
/// EVTX magic, otherwise JSON, NDJSON or API envelopes, gzip or not. Malformed records are
/// emitted as failed [`RawRecord`]s; the error is for a file that cannot be read at all.
pub fn read_path(
    path: &Path,
    mut emit: impl FnMut(RawRecord<'_>),
) -> std::result::Result<(), String> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| format!("cannot read input: {e}"))?;
    let mut head = [0u8; 8];
    let n = file
        .read(&mut head)
        .map_err(|e| format!("cannot read input: {e}"))?;
    let file = File::open(path).map_err(|e| format!("cannot read input: {e}"))?;
    if &head[..n] == EVTX_MAGIC {
        return read_evtx(&name, std::io::BufReader::new(file), &mut emit);
    }
    let reader = maybe_gunzip(file).map_err(|e| format!("cannot read input: {e}"))?;
    read_records(&name, reader, &mut emit).map_err(|e| format!("cannot read input: {e}"))
}

fn expand(path: &Path, out: &mut Vec<Input>) -> Result<()> {
    let io = |err| IngestError::Io {
        path: path.to_path_buf(),
        err,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if e.is_dir() || is_data_file(name) {
                expand(&e, out)?;
            }
        }
    } else {
        out.push(Input::Path(path.to_path_buf()));
    }
    Ok(())
}

/// In folders, only files that look like data are read (READMEs and licences sit beside them);
/// files named explicitly are always read.
fn is_data_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".gz").unwrap_or(&lower);
    lower.ends_with(".evtx")
        || [".json", ".jsonl", ".ndjson", ".asff-json"]
            .iter()
            .any(|ext| base.ends_with(ext))
}

/// Counts the bytes read from an input (compressed bytes for gzip) for progress reporting.
struct Counting<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A page being filled by the reader thread.
struct PageFill {
    source: String,
    page: Page,
    size: usize,
    tx: mpsc::Sender<Result<Page>>,
    closed: bool,
    consumed: Arc<AtomicU64>,
    reported: u64,
}

impl PageFill {
    fn push(&mut self, record: RawRecord<'_>) {
        let RawRecord { location, value } = record;
        match value {
            Ok(record) => match normalize_json(&record.json, record.raw) {
                Ok(mut f) => {
                    f.ingested_at = Utc::now();
                    self.page.findings.push(f);
                }
                Err(e) => self.page.dead_letters.push(DeadLetter::new(
                    &self.source,
                    location.clone(),
                    e.to_string(),
                    record.raw.as_bytes(),
                )),
            },
            Err((reason, bytes)) => self.page.dead_letters.push(DeadLetter::new(
                &self.source,
                location.clone(),
                reason,
                &bytes,
            )),
        }
        if self.page.records() >= self.size {
            self.page.cursor = Some(cursor(&location));
            self.flush();
        }
    }

    fn flush(&mut self) {
        let consumed = self.consumed.load(Ordering::Relaxed);
        self.page.bytes = consumed.saturating_sub(self.reported);
        self.reported = consumed;
        let page = std::mem::take(&mut self.page);
        if !self.closed && self.tx.blocking_send(Ok(page)).is_err() {
            // The consumer went away (ingest cancelled): stop reading.
            self.closed = true;
        }
    }
}

fn cursor(location: &str) -> String {
    serde_json::json!({ "last": location }).to_string()
}

fn produce(source: &str, inputs: Vec<Input>, size: usize, tx: mpsc::Sender<Result<Page>>) {
    let mut fill = PageFill {
        source: source.to_string(),
        page: Page::default(),
        size,
        tx,
        closed: false,
        consumed: Arc::new(AtomicU64::new(0)),
        reported: 0,
    };
    for input in inputs {
        if fill.closed {
            return;
        }
        let name = input.name();
        let consumed = fill.consumed.clone();
        match read_if_evtx(&input, &name, &mut fill) {
            Ok(true) => {
                fill.consumed.fetch_add(input.len(), Ordering::Relaxed);
                fill.page.cursor = Some(cursor(&name));
                continue;
            }
            Ok(false) => {}
            Err(reason) => {
                fill.page
                    .dead_letters
                    .push(DeadLetter::new(source, name.clone(), reason, b""));
                fill.page.cursor = Some(cursor(&name));
                continue;
            }
        }
        let opened = match &input {
            Input::Path(p) => {
                File::open(p).and_then(|f| maybe_gunzip(Counting { inner: f, consumed }))
            }
            Input::Bytes { bytes, .. } => maybe_gunzip(Counting {
                inner: std::io::Cursor::new(*bytes),
                consumed,
            }),
        };
        let result = opened.and_then(|reader| read_records(&name, reader, |r| fill.push(r)));
        if let Err(e) = result {
            fill.page.dead_letters.push(DeadLetter::new(
                source,
                name.clone(),
                format!("cannot read input: {e}"),
                b"",
            ));
        }
        fill.page.cursor = Some(cursor(&name));
    }
    if fill.page.records() > 0 || fill.page.cursor.is_some() {
        fill.flush();
    }
}

/// Reads `input` as an EVTX file if it starts with the EVTX magic bytes (whatever its name);
/// returns whether it was one.
fn read_if_evtx(
    input: &Input,
    name: &str,
    fill: &mut PageFill,
) -> std::result::Result<bool, String> {
    match input {
        Input::Path(p) => {
            let mut file = File::open(p).map_err(|e| format!("cannot read input: {e}"))?;
            let mut head = [0u8; 8];
            let n = file
                .read(&mut head)
                .map_err(|e| format!("cannot read input: {e}"))?;
            if &head[..n] != EVTX_MAGIC {
                return Ok(false);
            }
            let file = File::open(p).map_err(|e| format!("cannot read input: {e}"))?;
            read_evtx(name, std::io::BufReader::new(file), |r| fill.push(r))?;
            Ok(true)
        }
        Input::Bytes { bytes, .. } => {
            if !bytes.starts_with(EVTX_MAGIC) {
                return Ok(false);
            }
            read_evtx(name, std::io::Cursor::new(*bytes), |r| fill.push(r))?;
            Ok(true)
        }
    }
}

#[async_trait]
impl Source for FileSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn total_bytes(&self) -> Option<u64> {
        Some(self.total_bytes)
    }

    async fn next_page(&mut self, _cursor: Option<&str>) -> Result<Option<Page>> {
        // Files are read whole on every run; the cursor records progress for status pages.
        self.pages.recv().await.transpose()
    }
}
