//! Hunting over files: every core takes the next file, normalizes its records in batches with
//! the production normalizer, and runs the index over each batch. Results are put back in
//! input order (file, then record, then rule), so the output does not depend on scheduling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, MapArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use chrono::{DateTime, Utc};

use cairn_ingest::normalize::normalize_json;
use cairn_ingest::sources::file::read_path;
use cairn_ingest::{Finding, to_record_batch};
use cairn_rules::sql::window_projection;

use crate::HuntError;
use crate::index::HuntRules;
use crate::matcher::Scratch;
use crate::plain::PlainScratch;

/// How to hunt.
#[derive(Debug, Clone)]
pub struct HuntOptions {
    /// Events per batch.
    pub batch_rows: usize,
    /// Worker threads (at least one).
    pub threads: usize,
    /// Run the row-by-row reference instead of the index (for differential checks).
    pub reference: bool,
    /// Keep every event (without its raw record) in [`HuntReport::window`], for rules over
    /// several events (`cairn hunt --rules`).
    pub keep_window: bool,
}

impl Default for HuntOptions {
    fn default() -> Self {
        HuntOptions {
            batch_rows: 1024,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            reference: false,
            keep_window: false,
        }
    }
}

/// One rule matching one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The rule's position in [`HuntRules::rules`].
    pub rule: u32,
    /// The file's position in the input list.
    pub file: u32,
    /// The event's position in its file (0-based, records and unreadable records counted).
    pub record: u64,
    /// Where the event is (`file#EventRecordID` or `file:line`).
    pub location: String,
    /// Event time.
    pub time: Option<DateTime<Utc>>,
    /// Windows channel, when the event has one.
    pub channel: Option<String>,
    /// Event id (Windows `EventID`).
    pub event_id: Option<String>,
    /// The computer (host name).
    pub computer: Option<String>,
    /// The event exactly as read.
    pub event: String,
}

/// A record that could not be read or normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Where it is.
    pub location: String,
    /// Why.
    pub reason: String,
}

/// Events of one batch kept for rules over several events: the batch without its `raw` column
/// ([`cairn_rules::sql::window_schema`]) and where each of its events is.
#[derive(Debug)]
pub struct WindowPart {
    /// The file's position in the input list.
    pub file: u32,
    /// The position of the batch's first event in its file.
    pub record: u64,
    /// The events.
    pub batch: RecordBatch,
    /// Where each event is (`file#EventRecordID` or `file:line`).
    pub locations: Vec<String>,
}

/// What a hunt found.
#[derive(Debug, Default)]
pub struct HuntReport {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Events evaluated.
    pub events: u64,
    /// Bytes of input.
    pub bytes: u64,
    /// Detections in input order.
    pub detections: Vec<Detection>,
    /// Records that were not evaluated, with the reason.
    pub rejected: Vec<Rejected>,
    /// Wall time of the hunt.
    pub wall: Duration,
    /// Every event, in input order, when [`HuntOptions::keep_window`] asked for them.
    pub window: Vec<WindowPart>,
    /// Detections of Cairn rules over the whole input (filled by the caller that ran them).
    pub correlated: Vec<crate::output::Correlated>,
}

impl HuntReport {
    /// Takes the kept events ([`HuntOptions::keep_window`]) out of the report: their batches
    /// in input order, and where the events of each `finding_uid` were read.
    pub fn take_window(&mut self) -> (Vec<RecordBatch>, HashMap<String, Vec<String>>) {
        let mut locations: HashMap<String, Vec<String>> = HashMap::new();
        let mut batches = Vec::with_capacity(self.window.len());
        for part in std::mem::take(&mut self.window) {
            if let Some(uids) = part
                .batch
                .column_by_name("finding_uid")
                .and_then(|c| c.as_string_opt::<i32>())
            {
                for (uid, location) in uids.iter().zip(part.locations) {
                    if let Some(uid) = uid {
                        locations.entry(uid.to_string()).or_default().push(location);
                    }
                }
            }
            batches.push(part.batch);
        }
        (batches, locations)
    }
}

/// What one file gave.
#[derive(Default)]
struct FileResult {
    events: u64,
    detections: Vec<Detection>,
    rejected: Vec<Rejected>,
    window: Vec<WindowPart>,
    /// Why the file's detections cannot be trusted (a batch failed, or reading panicked).
    failure: Option<String>,
}

/// Applies a change to file `i`'s result.
type MergeInto<'a> = dyn Fn(usize, &mut dyn FnMut(&mut FileResult)) + Sync + 'a;

/// A batch of one file's records, on its way from a reader to an evaluator.
struct Job {
    file: u32,
    pending: Pending,
}

/// Runs `rules` over `files`. `progress` is called with the bytes of each file when it is read.
///
/// One worker per core takes the next file, parses and normalizes its records into batches and
/// evaluates them. A worker with no file left takes batches from the others instead, so the
/// batches of one large file are evaluated on all cores; with many files each core keeps its own
/// batches (nothing crosses threads and at most one batch per core is in memory).
pub fn hunt(
    rules: &HuntRules,
    files: &[PathBuf],
    options: &HuntOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<HuntReport, HuntError> {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<FileResult>> = files
        .iter()
        .map(|_| Mutex::new(FileResult::default()))
        .collect();
    let with = |i: usize, f: &mut dyn FnMut(&mut FileResult)| {
        if let Ok(mut r) = results[i].lock() {
            f(&mut r);
        }
    };
    let threads = options.threads.max(1);
    // A rendezvous channel: a batch is handed over only to a worker that is waiting for one
    // (it has no file left to read); otherwise its reader evaluates it.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(0);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, with, rx) = (&next, &with, &rx);
            s.spawn(move || {
                let mut worker = Worker::new(rules, options);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    // A parser that panics on a damaged file costs that file, not the hunt.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        read_file(path, options.batch_rows.max(1), &mut |pending| {
                            let job = Job {
                                file: i as u32,
                                pending,
                            };
                            match tx.try_send(job) {
                                Ok(()) => {}
                                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                                    worker.evaluate(job, with)
                                }
                            }
                        })
                    }));
                    with(i, &mut |r| match &read {
                        Ok(rejected) => r.rejected.extend(rejected.iter().cloned()),
                        Err(_) => {
                            r.failure.get_or_insert(
                                HuntError::WorkerLost(path.display().to_string()).to_string(),
                            );
                        }
                    });
                    if read.is_err() {
                        worker = Worker::new(rules, options);
                    }
                    progress(std::fs::metadata(path).map_or(0, |m| m.len()));
                }
                // No file left: evaluate other readers' batches until every reader is done.
                drop(tx);
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    worker.evaluate(job, with);
                }
            });
        }
        drop(tx);
    });
    let mut report = HuntReport {
        files: files.to_vec(),
        ..HuntReport::default()
    };
    for (slot, path) in results.into_iter().zip(files) {
        report.bytes += std::fs::metadata(path).map_or(0, |m| m.len());
        let mut r = slot.into_inner().unwrap_or_default();
        if let Some(why) = r.failure {
            // The file's detections are not trusted: the whole file is reported.
            report.rejected.push(Rejected {
                location: path.display().to_string(),
                reason: format!("the file was not evaluated: {why}"),
            });
            continue;
        }
        // Batches of one file may be evaluated in any order.
        r.detections.sort_by_key(|d| (d.record, d.rule));
        r.window.sort_by_key(|p| p.record);
        report.events += r.events;
        report.detections.extend(r.detections);
        report.window.extend(r.window);
        report.rejected.extend(r.rejected);
    }
    report.wall = started.elapsed();
    Ok(report)
}

/// Reads, normalizes and sends one file's records in batches; returns the records that could
/// not be read or normalized.
fn read_file(
    path: &std::path::Path,
    batch_rows: usize,
    send: &mut dyn FnMut(Pending),
) -> Vec<Rejected> {
    let mut rejected = Vec::new();
    let mut pending = Pending::default();
    let mut record = 0u64;
    let read = read_path(path, |r| {
        let n = record;
        record += 1;
        match r.value {
            Ok(doc) => match normalize_json(&doc.json, doc.raw) {
                Ok(f) => {
                    pending.findings.push(f);
                    pending.locations.push(r.location);
                    pending.records.push(n);
                }
                Err(e) => rejected.push(Rejected {
                    location: r.location,
                    reason: e.to_string(),
                }),
            },
            Err((reason, _)) => rejected.push(Rejected {
                location: r.location,
                reason,
            }),
        }
        if pending.findings.len() >= batch_rows {
            send(std::mem::take(&mut pending));
        }
    });
    if let Err(reason) = read {
        rejected.push(Rejected {
            location: path.display().to_string(),
            reason,
        });
    }
    if !pending.findings.is_empty() {
        send(pending);
    }
    rejected
}

/// A batch's event count, detections and kept events.
type Evaluated = (u64, Vec<Detection>, Option<WindowPart>);

struct Worker<'a> {
    rules: &'a HuntRules,
    options: &'a HuntOptions,
    scratch: Scratch,
    plain: PlainScratch,
}

/// Records waiting for their batch.
#[derive(Default)]
struct Pending {
    findings: Vec<Finding>,
    locations: Vec<String>,
    records: Vec<u64>,
}

impl<'a> Worker<'a> {
    fn new(rules: &'a HuntRules, options: &'a HuntOptions) -> Self {
        Worker {
            rules,
            options,
            scratch: Scratch::default(),
            plain: PlainScratch::default(),
        }
    }

    /// Evaluates one batch and adds what it gives to its file's result.
    fn evaluate(&mut self, job: Job, with: &MergeInto<'_>) {
        let Job { file, pending } = job;
        let mut evaluated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batch(file, pending)));
        with(file as usize, &mut |r| match &mut evaluated {
            Ok(Ok((events, detections, part))) => {
                r.events += *events;
                r.detections.append(detections);
                r.window.extend(part.take());
            }
            Ok(Err(e)) => {
                r.failure.get_or_insert(e.to_string());
            }
            Err(_) => {
                r.failure
                    .get_or_insert("evaluating a batch panicked".into());
            }
        });
        if evaluated.is_err() {
            *self = Worker::new(self.rules, self.options);
        }
    }

    /// The batch's event count, detections and, if asked for, its events.
    fn batch(&mut self, file: u32, p: Pending) -> Result<Evaluated, HuntError> {
        let mut out = Vec::new();
        if p.findings.is_empty() {
            return Ok((0, out, None));
        }
        let events = p.findings.len() as u64;
        let batch = to_record_batch(&p.findings).map_err(|e| HuntError::Batch(e.to_string()))?;
        let matches = if self.options.reference {
            self.rules.matches_plain(&batch, &mut self.plain)?
        } else {
            self.rules.matches(&batch, &mut self.scratch)?
        };
        let view = EventView::new(&batch);
        for (row, rule) in matches {
            let row = row as usize;
            out.push(Detection {
                rule,
                file,
                record: p.records[row],
                location: p.locations[row].clone(),
                time: view.time(row),
                channel: view.field(row, "Channel"),
                event_id: view.text("event_code", row),
                computer: view
                    .text("device_hostname", row)
                    .or_else(|| view.field(row, "Computer")),
                event: p.findings[row].raw.clone(),
            });
        }
        let part = if self.options.keep_window {
            Some(WindowPart {
                file,
                record: p.records[0],
                batch: batch
                    .project(window_projection())
                    .map_err(|e| HuntError::Batch(e.to_string()))?,
                locations: p.locations,
            })
        } else {
            None
        };
        Ok((events, out, part))
    }
}

/// What a detection shows of its event.
struct EventView<'a> {
    batch: &'a RecordBatch,
    map: Option<&'a MapArray>,
}

impl<'a> EventView<'a> {
    fn new(batch: &'a RecordBatch) -> Self {
        EventView {
            batch,
            map: batch
                .column_by_name("fields")
                .and_then(|c| c.as_any().downcast_ref::<MapArray>()),
        }
    }

    fn time(&self, row: usize) -> Option<DateTime<Utc>> {
        let c = self
            .batch
            .column_by_name("time")?
            .as_primitive_opt::<TimestampMillisecondType>()?;
        c.is_valid(row)
            .then(|| DateTime::from_timestamp_millis(c.value(row)))
            .flatten()
    }

    fn text(&self, column: &str, row: usize) -> Option<String> {
        let c = self.batch.column_by_name(column)?.as_string_opt::<i32>()?;
        (c.is_valid(row) && !c.value(row).is_empty()).then(|| c.value(row).to_string())
    }

    fn field(&self, row: usize, key: &str) -> Option<String> {
        let map = self.map?;
        let keys = map.keys().as_string::<i32>();
        let values = map.values().as_string::<i32>();
        let offsets = map.value_offsets();
        (offsets[row] as usize..offsets[row + 1] as usize)
            .find(|e| keys.value(*e) == key && values.is_valid(*e))
            .map(|e| values.value(e).to_string())
    }
}
