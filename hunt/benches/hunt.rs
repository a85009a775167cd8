//! `cairn hunt` benchmark: the whole bundled SigmaHQ Windows rule set (2,407 files) over a
//! corpus made of the repository's Windows samples (EVTX, nested JSON lines, OTRF's flat JSON
//! lines, SigmaHQ's regression events), replicated to the size asked.
//!
//! `cargo bench -p cairn-hunt --bench hunt`; environment: `CAIRN_BENCH_CORPUS_MB` (corpus size,
//! default 100), `CAIRN_BENCH_THREADS` (default: one per core).
//!
//! Prints: rule load and compile time and the memory it added; events, wall time, CPU time and
//! events per CPU-second of the indexed engine; peak memory of the process; detections (the
//! replicated corpus must give the base corpus's detections once per copy); and the
//! differential check of the indexed engine against the row-by-row reference over the base
//! corpus (identical detections), with the reference's rate for comparison.
//!
//! Copies keep their timestamps: Sigma detection rules do not read event time, so replication
//! changes how much is read, not what matches.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_hunt::{CacheUse, CompiledSet, HuntOptions, HuntReport, HuntRules, bundled, hunt};
use cairn_ingest::finding_schema;
use cairn_ingest::sources::file::data_files;
use cairn_rules::sigma::SigmaMappings;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(key, kB)` lines of `/proc/self/status`.
fn status_kb(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process (`/proc` counts in USER_HZ = 100 ticks/s).
fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// The base corpus written out uncompressed (so its size is the bytes parsed), then copies
/// until `target` bytes.
fn build_corpus(dir: &Path, target: u64) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let sources = data_files(&[
        repo().join("ingest/testdata/windows/evtx"),
        repo().join("ingest/testdata/windows/otrf"),
        repo().join("tests/data/sigma/regression_data"),
    ])
    .expect("the samples are readable");
    let base_dir = dir.join("copy0");
    std::fs::create_dir_all(&base_dir).expect("corpus folder");
    let mut base = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let name = s
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .trim_end_matches(".gz")
            .to_string();
        let to = base_dir.join(format!("{i:03}-{name}"));
        let mut bytes = Vec::new();
        let file = std::fs::File::open(s).expect("open sample");
        if s.extension().is_some_and(|e| e == "gz") {
            flate2::read::MultiGzDecoder::new(file)
                .read_to_end(&mut bytes)
                .expect("gunzip");
        } else {
            std::io::BufReader::new(file)
                .read_to_end(&mut bytes)
                .expect("read");
        }
        std::fs::write(&to, bytes).expect("write sample");
        base.push(to);
    }
    let base_bytes: u64 = base
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let copies = target.div_ceil(base_bytes.max(1)).max(1);
    let mut all = base.clone();
    for c in 1..copies {
        let d = dir.join(format!("copy{c}"));
        std::fs::create_dir_all(&d).expect("copy folder");
        for b in &base {
            let to = d.join(b.file_name().expect("file name"));
            std::fs::hard_link(b, &to)
                .or_else(|_| std::fs::copy(b, &to).map(|_| ()))
                .expect("copy sample");
            all.push(to);
        }
    }
    (base, all)
}

fn keys(r: &HuntReport) -> Vec<(u32, u64, u32)> {
    r.detections
        .iter()
        .map(|d| (d.file, d.record, d.rule))
        .collect()
}

fn main() {
    let target_mb: u64 = std::env::var("CAIRN_BENCH_CORPUS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut options = HuntOptions::default();
    if let Some(t) = std::env::var("CAIRN_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.threads = t;
    }

    let dir = std::env::temp_dir().join(format!("cairn-hunt-bench-{}", std::process::id()));
    let cache = dir.join("cache");
    let mappings = SigmaMappings::bundled();

    // Rule load as `cairn hunt` does it: read the bundled files, parse, compile (and store in
    // the cache), build the index. Then a second start, from the cache.
    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let texts = bundled::sigmahq_windows().expect("bundled rules");
    let (set, used) = CompiledSet::load_or_compile(Some(&cache), &texts, &mappings);
    assert!(matches!(used, CacheUse::Stored(_)), "{used:?}");
    drop(texts);
    let rules = HuntRules::build(&set.rules, &finding_schema()).expect("index");
    let load = started.elapsed();
    let rss_rules = status_kb("VmRSS:").saturating_sub(rss_before);
    let stats = rules.stats();
    println!(
        "rules: {} files, {} run, {} not compiled; read + compile + index {:.3} s, +{:.1} MiB resident",
        set.rules.len() + set.correlations + set.correlation_only + set.not_compiled.len(),
        stats.rules,
        set.not_compiled.len(),
        load.as_secs_f64(),
        rss_rules as f64 / 1024.0
    );
    println!("index: {stats:?}");
    drop(set);
    let (base, corpus) = build_corpus(&dir, target_mb * 1_000_000);

    // The indexed engine over the whole corpus.
    let cpu0 = cpu_seconds();
    let report = hunt(&rules, &corpus, &options, &|_| {}).expect("hunt");
    let cpu = cpu_seconds() - cpu0;
    let copies = corpus.len() / base.len().max(1);
    println!(
        "corpus: {} files ({} copies of {} samples), {:.1} MB, {} events, {} records not evaluated",
        corpus.len(),
        copies,
        base.len(),
        report.bytes as f64 / 1e6,
        report.events,
        report.rejected.len()
    );
    println!(
        "indexed: {:.2} s wall on {} threads, {:.2} CPU-s: {:.0} events per CPU-second, {:.0} events/s; {} detections",
        report.wall.as_secs_f64(),
        options.threads,
        cpu,
        report.events as f64 / cpu.max(1e-9),
        report.events as f64 / report.wall.as_secs_f64().max(1e-9),
        report.detections.len()
    );
    // The peak of a first `cairn hunt`: compiling the rules, then hunting. The second start is
    // timed afterwards so that its index, built beside this one, does not count.
    println!(
        "peak resident memory: {:.1} MiB (resident after the hunt: {:.1} MiB)",
        status_kb("VmHWM:") as f64 / 1024.0,
        status_kb("VmRSS:") as f64 / 1024.0
    );
    let started = Instant::now();
    let texts = bundled::sigmahq_windows().expect("bundled rules");
    let (cached, used) = CompiledSet::load_or_compile(Some(&cache), &texts, &mappings);
    drop(texts);
    let again = HuntRules::build(&cached.rules, &finding_schema()).expect("index");
    println!(
        "second start (compiled rules from the cache: {}): {:.3} s",
        used == CacheUse::Hit,
        started.elapsed().as_secs_f64()
    );
    drop((cached, again));

    // The base corpus: indexed vs the row-by-row reference.
    let indexed = hunt(&rules, &base, &options, &|_| {}).expect("hunt");
    let reference_options = HuntOptions {
        reference: true,
        ..options.clone()
    };
    let cpu0 = cpu_seconds();
    let reference = hunt(&rules, &base, &reference_options, &|_| {}).expect("reference");
    let reference_cpu = cpu_seconds() - cpu0;
    let same = keys(&indexed) == keys(&reference);
    println!(
        "differential (base corpus, {} events): indexed {} detections, reference {} detections: {}; reference {:.0} events per CPU-second",
        indexed.events,
        indexed.detections.len(),
        reference.detections.len(),
        if same { "identical" } else { "DIFFERENT" },
        reference.events as f64 / reference_cpu.max(1e-9)
    );
    let replicated_ok = report.detections.len() == indexed.detections.len() * copies;
    println!(
        "replicated corpus: {} detections = {} copies × {}: {}",
        report.detections.len(),
        copies,
        indexed.detections.len(),
        if replicated_ok { "yes" } else { "NO" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    if !same || !replicated_ok {
        std::process::exit(1);
    }
}
