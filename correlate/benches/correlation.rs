//! Correlation benchmark: for windows of synthetic mixed findings (see
//! `cairn_correlate::generator`), the memory the window's Arrow table takes per finding, the
//! time of one tick (10 000 new records, every rule of the built-in pack over the window), and
//! the ingest → detection latency of a stream at a sustained rate.
//!
//! `cargo bench -p cairn-correlate --bench correlation`; environment:
//! `CAIRN_BENCH_WINDOWS` (window sizes, default `1000000`; add `10000000` where memory allows),
//! `CAIRN_BENCH_RATE` (records/s of the latency run, default 20000),
//! `CAIRN_BENCH_LATENCY_WINDOW` (findings in the window of the latency run, default 200000),
//! `CAIRN_BENCH_SECONDS` (length of the latency run, default 20).
//!
//! A tick here is a full recompute: every rule runs over the whole window (incremental
//! evaluation per touched entity is not built yet), so these figures are the baseline it must
//! beat. They are rule-engine figures, a lower bound of a pass: building the table and running
//! the rules, without reading the window from the store, identity resolution (the `identities`
//! and `directory` tables are empty), merging or the store write.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};

use cairn_correlate::engine::Engine;
use cairn_correlate::generator::MixedRecords;
use cairn_ingest::to_record_batch;
use cairn_rules::RuleSet;

const CHUNK: usize = 50_000;
const TICK_RECORDS: usize = 10_000;

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn env_num(name: &str, default: usize) -> usize {
    env_list(name, &default.to_string())
        .first()
        .copied()
        .unwrap_or(default)
}

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default()
}

/// `n` findings spread evenly over `span` from `start`, as Arrow batches.
fn batches(
    generator: &mut MixedRecords,
    n: usize,
    start: DateTime<Utc>,
    span: Duration,
) -> Vec<RecordBatch> {
    let step = span.as_secs_f64() / n.max(1) as f64;
    let mut out = Vec::new();
    let mut done = 0;
    while done < n {
        let m = CHUNK.min(n - done);
        let findings: Vec<_> = (done..done + m)
            .map(|i| {
                let at = start + chrono::Duration::milliseconds((i as f64 * step * 1000.0) as i64);
                let mut f = generator.record(at);
                // As `run_pass` does: the verbatim record stays in the store, not the window.
                f.raw = String::new();
                f
            })
            .collect();
        out.push(to_record_batch(&findings).expect("batch"));
        done += m;
    }
    out
}

fn bytes(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

/// What one tick took and found.
struct Tick {
    took: Duration,
    detections: usize,
    /// Each rule's share, slowest first.
    per_rule: Vec<(String, Duration)>,
}

/// Every rule over the window.
async fn tick(rules: &RuleSet, window: Vec<RecordBatch>) -> Tick {
    let started = Instant::now();
    let engine = Engine::new(window).expect("engine");
    let mut detections = 0;
    let mut per_rule = Vec::new();
    for rule in rules.rules() {
        let t = Instant::now();
        let (hits, _) = engine.evaluate(rule).await.expect("rule runs");
        per_rule.push((rule.id.clone(), t.elapsed()));
        detections += hits.len();
    }
    per_rule.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    Tick {
        took: started.elapsed(),
        detections,
        per_rule,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rules = RuleSet::builtin().await.expect("the built-in pack loads");
    println!(
        "correlation benchmark: {} rules of the built-in pack, {} cores",
        rules.len(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let day = Duration::from_secs(24 * 3600);
    for n in env_list("CAIRN_BENCH_WINDOWS", "1000000") {
        // About one person per 50 records, one host per 200, one address per 100.
        let mut generator = MixedRecords::new(42, n / 50 + 1, n / 200 + 1, n / 100 + 1);
        let built = Instant::now();
        let window = batches(&mut generator, n, epoch(), day);
        let window_bytes = bytes(&window);
        let fresh = batches(
            &mut generator,
            TICK_RECORDS,
            epoch() + chrono::Duration::from_std(day).unwrap_or_default(),
            Duration::from_secs(60),
        );
        println!(
            "window {n:>10} findings: {:.0} MB of Arrow, {} B per finding (generated in {:.1} s)",
            window_bytes as f64 / 1e6,
            window_bytes / n.max(1),
            built.elapsed().as_secs_f64()
        );
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let mut all = window.clone();
            all.extend(fresh.iter().cloned());
            let t = tick(&rules, all).await;
            times.push(t.took.as_secs_f64());
            last = Some(t);
        }
        let Some(last) = last else { continue };
        let found = last.detections;
        times.sort_by(f64::total_cmp);
        println!(
            "window {n:>10} findings: tick with {TICK_RECORDS} new records, full pack: median {:.0} ms (min {:.0}, max {:.0}); {found} detections",
            times[1] * 1e3,
            times[0] * 1e3,
            times[2] * 1e3
        );
        let slowest: Vec<String> = last
            .per_rule
            .iter()
            .take(5)
            .map(|(id, d)| format!("{id} {:.0} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("  slowest rules: {}", slowest.join(", "));
    }

    // Latency: records arrive at `rate`; each tick takes everything that arrived while the
    // previous one ran, so a record waits for the next tick to start and then for it to end.
    let rate = env_num("CAIRN_BENCH_RATE", 20_000);
    let size = env_num("CAIRN_BENCH_LATENCY_WINDOW", 200_000);
    let seconds = env_num("CAIRN_BENCH_SECONDS", 20);
    let mut generator = MixedRecords::new(7, size / 50 + 1, size / 200 + 1, size / 100 + 1);
    let mut window = batches(&mut generator, size, epoch(), day);
    let mut clock = epoch() + chrono::Duration::from_std(day).unwrap_or_default();
    let mut latencies: Vec<f64> = Vec::new();
    let mut previous = Duration::from_millis(100);
    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < Duration::from_secs(seconds as u64) {
        let arrived = ((rate as f64) * previous.as_secs_f64()).ceil() as usize;
        let fresh = batches(&mut generator, arrived.max(1), clock, previous);
        clock += chrono::Duration::from_std(previous).unwrap_or_default();
        let arrivals: usize = fresh.iter().map(RecordBatch::num_rows).sum();
        window.extend(fresh);
        // Keep the window at its size: the oldest batches leave as new ones come.
        let mut excess = window
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            .saturating_sub(size);
        while excess > 0 && !window.is_empty() {
            let rows = window[0].num_rows();
            if rows <= excess {
                window.remove(0);
                excess -= rows;
            } else {
                window[0] = window[0].slice(excess, rows - excess);
                excess = 0;
            }
        }
        let took = tick(&rules, window.clone()).await.took;
        // Arrivals were uniform over the previous tick; each waited for the rest of it and
        // then for this tick.
        for i in 0..arrivals {
            let waited = previous.as_secs_f64() * (1.0 - (i as f64 + 0.5) / arrivals as f64);
            latencies.push(waited + took.as_secs_f64());
        }
        previous = took;
        ticks += 1;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency at {rate} records/s over a {size}-finding window: {ticks} ticks, {} records, p50 {:.0} ms, p99 {:.0} ms",
        latencies.len(),
        percentile(&latencies, 0.50) * 1e3,
        percentile(&latencies, 0.99) * 1e3
    );
}
