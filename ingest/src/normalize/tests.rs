//! Golden tests of the normalizers over real records.
//!
//! - Every fixture in `testdata/normalize/` and every Windows event sample in
//!   `testdata/windows/evtx/*.jsonl` is read, normalized, built into an Arrow batch and rendered
//!   one row per block; the result must equal the checked-in `.golden` file beside it.
//! - Every `.evtx` original in `testdata/windows/evtx/` must give exactly the rows of its
//!   `.jsonl` rendering.
//! - The OTRF data sets (`testdata/windows/otrf/*.jsonl.gz`, ~33 k events of all channels) are
//!   summarised per channel and event id (count, OCSF class, title, how many name a principal,
//!   one full row per mapped Security event id); the summary must equal the `.summary` golden.
//!
//! `CAIRN_UPDATE_GOLDEN=1` rewrites the golden files after a deliberate mapping change (review
//! the diff).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::reader::{maybe_gunzip, read_evtx, read_records};
use crate::schema::{Finding, to_record_batch};

use super::{normalize, normalize_json};

fn testdata(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir)
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Renders one row: every column but `raw` (the input itself) and `ingested_at` as
/// `column: value` lines, the `fields` map one entry per line so golden diffs stay readable.
fn render_row(batch: &RecordBatch, row: usize) -> String {
    let options = FormatOptions::default().with_null("∅");
    let schema = batch.schema();
    let mut out = String::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if field.name() == "raw" || field.name() == "ingested_at" {
            continue;
        }
        if field.name() == "fields" {
            let entries = batch.column(i).as_map().value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            for e in 0..keys.len() {
                out.push_str(&format!("fields.{} {}\n", keys.value(e), values.value(e)));
            }
            continue;
        }
        let formatter = ArrayFormatter::try_new(batch.column(i).as_ref(), &options)
            .expect("every column type has a formatter");
        out.push_str(&format!("{:<20} {}\n", field.name(), formatter.value(row)));
    }
    out
}

/// What one input gave: findings with their locations, and dead letters as text.
#[derive(Default)]
struct Normalized {
    findings: Vec<Finding>,
    locations: Vec<String>,
    errors: Vec<String>,
}

impl Normalized {
    /// Normalizes through the borrowed tree (what files and Kafka use) and checks that the
    /// `serde_json::Value` entry point (what API sources use) gives the same finding.
    fn push(&mut self, r: crate::reader::RawRecord<'_>) {
        match r.value.map_err(|(e, _)| e).and_then(|rec| {
            let borrowed = normalize_json(&rec.json, rec.raw);
            let value: serde_json::Value = serde_json::from_str(rec.raw).expect("valid JSON");
            let from_value = normalize(&value, rec.raw);
            assert_eq!(
                borrowed, from_value,
                "{}: the two entry points differ",
                r.location
            );
            borrowed.map_err(|e| e.to_string())
        }) {
            Ok(f) => {
                self.findings.push(f);
                self.locations.push(r.location);
            }
            Err(e) => self.errors.push(format!("{}: {e}", r.location)),
        }
    }

    fn rows(&self) -> Vec<String> {
        let batch = to_record_batch(&self.findings).expect("batch");
        (0..batch.num_rows())
            .map(|row| render_row(&batch, row))
            .collect()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (location, row) in self.locations.iter().zip(self.rows()) {
            out.push_str(&format!("## {location}\n{row}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("## dead letter\n{e}\n\n"));
        }
        out
    }
}

fn normalize_json_file(path: &Path) -> Normalized {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("fixture name")
        .to_string();
    let input = maybe_gunzip(std::fs::File::open(path).expect("open fixture")).expect("read");
    let mut out = Normalized::default();
    read_records(&name, input, |r| out.push(r)).expect("read fixture");
    out
}

fn normalize_evtx_file(path: &Path) -> Normalized {
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    let mut out = Normalized::default();
    let file = std::fs::File::open(path).expect("open evtx");
    read_evtx(name, std::io::BufReader::new(file), |r| out.push(r)).expect("evtx header");
    out
}

/// Compares `actual` with the golden file (or rewrites it under `CAIRN_UPDATE_GOLDEN`);
/// returns a description of the first difference.
fn compare_golden(golden: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, actual).expect("write golden");
        return None;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    (expected != actual).then(|| {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map(|i| {
                format!(
                    "line {}:\n  expected: {}\n  actual:   {}",
                    i + 1,
                    expected.lines().nth(i).unwrap_or_default(),
                    actual.lines().nth(i).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "lengths differ".into());
        format!(
            "{} differs; first difference at {first_diff}",
            golden.display()
        )
    })
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn normalizers_match_golden_files() {
    let mut fixtures = files_ending(&testdata("normalize"), ".json");
    fixtures.extend(files_ending(&testdata("normalize"), ".jsonl"));
    fixtures.sort();
    assert!(fixtures.len() >= 6, "fixtures missing: {fixtures:?}");
    assert_no_failures(
        fixtures
            .iter()
            .filter_map(|f| {
                compare_golden(
                    &f.with_extension("golden"),
                    &normalize_json_file(f).render(),
                )
            })
            .collect(),
    );
}

#[test]
fn every_windows_evtx_sample_matches_its_golden_file() {
    let samples = files_ending(&testdata("windows/evtx"), ".jsonl");
    assert_eq!(samples.len(), 16, "samples missing: {samples:?}");
    assert_no_failures(
        samples
            .iter()
            .filter_map(|f| {
                let normalized = normalize_json_file(f);
                if !normalized.errors.is_empty() {
                    return Some(format!("{}: {:?}", f.display(), normalized.errors));
                }
                compare_golden(&f.with_extension("golden"), &normalized.render())
            })
            .collect(),
    );
}

#[test]
fn evtx_originals_give_the_rows_of_their_json_renderings() {
    let originals = files_ending(&testdata("windows/evtx"), ".evtx");
    assert_eq!(originals.len(), 16);
    let mut failures = Vec::new();
    for evtx in &originals {
        let from_evtx = normalize_evtx_file(evtx);
        let from_json = normalize_json_file(&evtx.with_extension("jsonl"));
        assert!(from_evtx.errors.is_empty(), "{:?}", from_evtx.errors);
        assert!(
            !from_evtx.findings.is_empty(),
            "{} has no events",
            evtx.display()
        );
        let (a, b) = (from_evtx.rows(), from_json.rows());
        if a.len() != b.len() {
            failures.push(format!(
                "{}: {} rows from EVTX, {} from JSONL",
                evtx.display(),
                a.len(),
                b.len()
            ));
        } else if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            failures.push(format!(
                "{} row {i} differs:\nEVTX:\n{}\nJSONL:\n{}",
                evtx.display(),
                a[i],
                b[i]
            ));
        }
    }
    assert_no_failures(failures);
}

/// Event ids the issue requires mapped: every one that occurs in a sample gets a full row in
/// the summary.
const MAPPED: &[&str] = &[
    "4624", "4625", "4634", "4648", "4662", "4672", "4688", "4720", "4722", "4724", "4725", "4726",
    "4728", "4732", "4738", "4740", "4756", "4765", "4768", "4769", "4771", "4776", "4794", "5136",
    "5145",
];

fn summarise(normalized: &Normalized) -> String {
    #[derive(Default)]
    struct Group {
        count: usize,
        with_identity: usize,
        class_uid: i32,
        title: String,
        first: Option<usize>,
    }
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for (i, f) in normalized.findings.iter().enumerate() {
        let channel = f.fields.get("Channel").unwrap_or_default().to_string();
        let id = f.event_code.clone().unwrap_or_default();
        let g = groups.entry((channel, id)).or_default();
        g.count += 1;
        g.with_identity += usize::from(!f.identity_keys.is_empty());
        g.class_uid = f.class_uid;
        g.title = f.title.clone().unwrap_or_default();
        g.first.get_or_insert(i);
    }
    let rows = normalized.rows();
    let mut out = format!(
        "events {}\ndead letters {}\n\n",
        normalized.findings.len(),
        normalized.errors.len()
    );
    out.push_str("channel | event id | count | class_uid | with identity | title\n");
    for ((channel, id), g) in &groups {
        out.push_str(&format!(
            "{channel} | {id} | {} | {} | {} | {}\n",
            g.count, g.class_uid, g.with_identity, g.title
        ));
    }
    for ((channel, id), g) in &groups {
        if channel == "Security"
            && MAPPED.contains(&id.as_str())
            && let Some(i) = g.first
        {
            out.push_str(&format!(
                "\n## first {channel} {id} ({})\n{}",
                normalized.locations[i], rows[i]
            ));
        }
    }
    for e in &normalized.errors {
        out.push_str(&format!("\n## dead letter\n{e}\n"));
    }
    out
}

#[test]
fn otrf_data_sets_match_their_golden_summaries() {
    let sets = files_ending(&testdata("windows/otrf"), ".jsonl.gz");
    assert_eq!(sets.len(), 9, "data sets missing: {sets:?}");
    assert_no_failures(
        sets.iter()
            .filter_map(|f| {
                let normalized = normalize_json_file(f);
                if !normalized.errors.is_empty() {
                    return Some(format!("{}: {:?}", f.display(), &normalized.errors[..1]));
                }
                let golden = PathBuf::from(f.to_string_lossy().replace(".jsonl.gz", ".summary"));
                compare_golden(&golden, &summarise(&normalized))
            })
            .collect(),
    );
}

#[test]
fn sentinel_security_event_rows_read_their_event_data_xml() {
    let set = testdata("windows/otrf")
        .join("securityauditing_log4shell_cve2021_44228_java_serialized_object.jsonl.gz");
    let normalized = normalize_json_file(&set);
    let process = normalized
        .findings
        .iter()
        .find(|f| f.event_code.as_deref() == Some("4688"))
        .expect("a 4688 row");
    assert!(
        process.fields.contains_key("NewProcessName"),
        "{:?}",
        process.fields
    );
    assert!(!process.fields.contains_key("EventData"));
}
