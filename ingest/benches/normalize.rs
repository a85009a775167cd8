//! Normalization throughput against a bare JSON parse of the same bytes, for ASFF findings
//! (Security Hub), Graph security alerts (Defender XDR) and Windows events (domain
//! controllers and hosts).
//!
//! `cargo bench -p cairn-ingest --bench normalize` prints, per format, records/s and MB/s for:
//! - `parse`: `serde_json::from_str::<Value>` of each record (the floor any JSON reader pays);
//! - `normalize`: parse, map to a `Finding`, append to the Arrow batch builder, and build
//!   Arrow record batches of 8192 rows (what ingest really does per record). ASFF and Graph
//!   records arrive from their APIs and are read into a `serde_json::Value`; Windows events
//!   arrive in files and Kafka messages and are read into the borrowed `Json` tree, as the
//!   file and Kafka sources do; `asff-file` is ASFF taking that file / Kafka path.
//!
//! The ratio `normalize / parse` is the figure the source issues ask for (≥ 50 %).
//! Inputs: the 83 real ASFF findings of `tests/fixtures/securityhub` and the Graph
//! documentation alert of `tests/fixtures/microsoft` (with a user evidence added to every
//! other copy), each repeated with distinct ids to 50 000 records; for Windows, every event
//! of the OTRF data sets (NXLog-flattened, all channels: Security, Sysmon, PowerShell, …, and
//! Sentinel `SecurityEvent` rows) and of the EVTX samples (evtx-crate JSON), as they are.

use std::hint::black_box;

// The allocator the `cairn` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

use cairn_ingest::FindingBatchBuilder;
use cairn_ingest::json::Json;
use cairn_ingest::normalize::{normalize, normalize_json};
use serde_json::Value;

const RECORDS: usize = 50_000;
const ROUNDS: usize = 5;

/// The real ASFF findings, repeated with distinct ids.
fn asff_records() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/securityhub/asff-samples.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let base = doc["Findings"].as_array().expect("Findings").clone();
    (0..RECORDS)
        .map(|i| {
            let mut f = base[i % base.len()].clone();
            f["Id"] = Value::String(format!("{}-{i}", f["Id"].as_str().unwrap_or_default()));
            serde_json::to_string(&f).expect("serialize")
        })
        .collect()
}

/// The Graph documentation alert, repeated with distinct ids, every other one with a user.
fn graph_records() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/microsoft/graph-alerts_v2.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let base = doc["value"][0].clone();
    (0..RECORDS)
        .map(|i| {
            let mut a = base.clone();
            a["id"] = Value::String(format!("da6375512276775608_{i}"));
            if i % 2 == 0
                && let Some(e) = a["evidence"].as_array_mut()
            {
                e.push(serde_json::json!({"@odata.type": "#microsoft.graph.security.userEvidence",
                    "userAccount": {"accountName": format!("u{i}"), "domainName": "CONTOSO",
                    "userSid": format!("S-1-5-21-1-2-3-{i}"), "userPrincipalName": format!("u{i}@contoso.com")}}));
            }
            serde_json::to_string(&a).expect("serialize")
        })
        .collect()
}

/// Best of `ROUNDS` wall-clock seconds.
fn best(mut run: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Every Windows event of the test corpus, one JSON text each.
fn windows_records() -> Vec<String> {
    use std::io::Read;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/windows");
    let mut out = Vec::new();
    for dir in ["otrf", "evtx"] {
        let mut files: Vec<_> = std::fs::read_dir(format!("{root}/{dir}"))
            .expect("corpus")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".jsonl") || n.ends_with(".jsonl.gz")
            })
            .collect();
        files.sort();
        for f in files {
            let mut text = String::new();
            let file = std::fs::File::open(&f).expect("open");
            if f.to_string_lossy().ends_with(".gz") {
                flate2::read::MultiGzDecoder::new(file)
                    .read_to_string(&mut text)
                    .expect("gunzip");
            } else {
                std::io::BufReader::new(file)
                    .read_to_string(&mut text)
                    .expect("read");
            }
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
    }
    out
}

fn main() {
    // `CAIRN_BENCH_ONLY=windows` runs one format (for profiling).
    let only = std::env::var("CAIRN_BENCH_ONLY").ok();
    let wanted = |f: &str| only.as_deref().is_none_or(|o| o == f);
    if wanted("asff") {
        bench("asff", &asff_records(), Path::Value);
    }
    // ASFF exports read from files or Kafka (EventBridge → Firehose → S3, for one) take the
    // borrowed tree and are converted to a `Value` for their normalizer.
    if wanted("asff-file") {
        bench("asff-file", &asff_records(), Path::Borrowed);
    }
    if wanted("graph") {
        bench("graph", &graph_records(), Path::Value);
    }
    if wanted("windows") {
        bench("windows", &windows_records(), Path::Borrowed);
    }
}

/// How a format's records are read in production.
#[derive(Clone, Copy)]
enum Path {
    /// API sources: `serde_json::Value`, then [`normalize`].
    Value,
    /// File and Kafka sources: the borrowed [`Json`] tree, then [`normalize_json`].
    Borrowed,
}

fn bench(format: &str, records: &[String], path: Path) {
    let bytes: usize = records.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;

    let parse = best(|| {
        for r in records {
            black_box(serde_json::from_str::<Value>(r).expect("parse"));
        }
    });
    let normalize_secs = best(|| {
        let mut builder = FindingBatchBuilder::new();
        for r in records {
            let f = match path {
                Path::Value => {
                    let v: Value = serde_json::from_str(r).expect("parse");
                    normalize(&v, r).expect("normalize")
                }
                Path::Borrowed => {
                    let j = Json::parse(r).expect("parse");
                    normalize_json(&j, r).expect("normalize")
                }
            };
            builder.append(&f);
            if builder.len() == 8192 {
                black_box(builder.finish().expect("batch"));
            }
        }
        black_box(builder.finish().expect("batch"));
    });
    let row = |name: &str, secs: f64| {
        println!(
            "{format:<9} {name:<10} {:>10.0} records/s {:>8.1} MB/s  ({:.3} s for {} records, {:.1} MB)",
            records.len() as f64 / secs,
            mb / secs,
            secs,
            records.len(),
            mb
        );
    };
    row("parse", parse);
    row("normalize", normalize_secs);
    println!(
        "{format:<9} ratio      {:.0} % of the bare parse speed (target ≥ 50 %)",
        100.0 * parse / normalize_secs
    );
}
