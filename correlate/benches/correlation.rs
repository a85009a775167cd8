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
//! A tick is what the correlator's pass does with its window ([`IncrementalEngine`]): append
//! the new records, expire what left the window, and evaluate each rule over the parts of the
//! window the new and expired records touch (rules without `partition_by` over all of it).
//! The first tick over a window evaluates everything and is reported as the full recompute.
//! These are rule-engine figures, a lower bound of a pass: without reading the window from the
//! store, identity resolution (the `identities` and `directory` tables are empty), merging or
//! the store write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use cairn_correlate::generator::MixedRecords;
use cairn_correlate::incremental::{Evaluation, IncrementalEngine, TickStats, WindowDelta};
use cairn_ingest::Finding;
use cairn_rules::RuleSet;

const CHUNK: usize = 50_000;
const TICK_RECORDS: usize = 10_000;

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_280_000, 0).unwrap_or_default()
}

/// `n` findings spread evenly over `span` from `start`, in chunks.
fn chunks(
    generator: &mut MixedRecords,
    n: usize,
    start: DateTime<Utc>,
    span: Duration,
) -> impl Iterator<Item = Vec<Finding>> + '_ {
    let step = span.as_secs_f64() / n.max(1) as f64;
    (0..n).step_by(CHUNK).map(move |done| {
        (done..(done + CHUNK).min(n))
            .map(|i| {
                let at = start + chrono::Duration::milliseconds((i as f64 * step * 1000.0) as i64);
                let mut f = generator.record(at);
                // As the correlator does: the verbatim record stays in the store.
                f.raw = String::new();
                f
            })
            .collect()
    })
}

fn append(engine: &mut IncrementalEngine, findings: Vec<Finding>) {
    engine
        .apply(WindowDelta {
            upserts: findings,
            removed: Vec::new(),
        })
        .expect("apply");
}

/// What one tick took and found.
struct Tick {
    took: Duration,
    detections: usize,
    stats: TickStats,
    /// Each rule's share, slowest first, with how it was evaluated.
    per_rule: Vec<(String, Evaluation, Duration)>,
}

/// One tick of `engine` (its changes already applied).
async fn tick(rules: &RuleSet, engine: &mut IncrementalEngine) -> Tick {
    let started = Instant::now();
    let (outcomes, stats) = engine
        .tick(rules, &BTreeMap::new(), &[])
        .await
        .expect("tick");
    let took = started.elapsed();
    let mut detections = 0;
    let mut per_rule = Vec::new();
    for o in outcomes {
        per_rule.push((o.rule.id.clone(), o.evaluation, o.took));
        detections += o.result.expect("rule runs").0.len();
    }
    per_rule.sort_by_key(|(_, _, d)| std::cmp::Reverse(*d));
    Tick {
        took,
        detections,
        stats,
        per_rule,
    }
}

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
        let mut engine = IncrementalEngine::new();
        for chunk in chunks(&mut generator, n, epoch(), day) {
            append(&mut engine, chunk);
        }
        let generated = built.elapsed();
        let full = tick(&rules, &mut engine).await;
        let bytes = engine.memory_bytes();
        println!(
            "window {n:>10} findings: {:.0} MB with indexes, {} B per finding (generated in {:.1} s)",
            bytes as f64 / 1e6,
            bytes / n.max(1),
            generated.as_secs_f64()
        );
        println!(
            "window {n:>10} findings: full recompute (every rule over the window) {:.0} ms; {} rows",
            full.took.as_secs_f64() * 1e3,
            full.detections
        );
        // Ticks: 10 000 new records at the window's end, as many old ones expire.
        let mut clock = epoch() + chrono::Duration::from_std(day).unwrap_or_default();
        let tick_span = Duration::from_secs(30);
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let fresh: Vec<Finding> = chunks(&mut generator, TICK_RECORDS, clock, tick_span)
                .flatten()
                .collect();
            clock += chrono::Duration::from_std(tick_span).unwrap_or_default();
            append(&mut engine, fresh);
            engine.expire_before(clock - chrono::Duration::from_std(day).unwrap_or_default());
            let t = tick(&rules, &mut engine).await;
            times.push(t.took.as_secs_f64());
            last = Some(t);
        }
        let Some(last) = last else { continue };
        times.sort_by(f64::total_cmp);
        println!(
            "window {n:>10} findings: tick with {TICK_RECORDS} new records, full pack: median {:.0} ms (min {:.0}, max {:.0}); {} rows; rules {} partial, {} full, {} skipped; {:.1} M rows read",
            times[2] * 1e3,
            times[0] * 1e3,
            times[4] * 1e3,
            last.detections,
            last.stats.rules_partial,
            last.stats.rules_full,
            last.stats.rules_skipped,
            last.stats.rows_evaluated as f64 / 1e6
        );
        let slowest: Vec<String> = last
            .per_rule
            .iter()
            .take(5)
            .map(|(id, e, d)| format!("{id} ({e:?}) {:.0} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("  slowest rules: {}", slowest.join(", "));
    }

    // Latency: records arrive at `rate`; each tick takes everything that arrived while the
    // previous one ran, so a record waits for the next tick to start and then for it to end.
    let rate = env_num("CAIRN_BENCH_RATE", 20_000);
    let size = env_num("CAIRN_BENCH_LATENCY_WINDOW", 200_000);
    let seconds = env_num("CAIRN_BENCH_SECONDS", 20);
    let mut generator = MixedRecords::new(7, size / 50 + 1, size / 200 + 1, size / 100 + 1);
    let mut engine = IncrementalEngine::new();
    for chunk in chunks(&mut generator, size, epoch(), day) {
        append(&mut engine, chunk);
    }
    tick(&rules, &mut engine).await;
    let mut clock = epoch() + chrono::Duration::from_std(day).unwrap_or_default();
    let mut latencies: Vec<f64> = Vec::new();
    let mut previous = Duration::from_millis(100);
    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < Duration::from_secs(seconds as u64) {
        let arrived = (((rate as f64) * previous.as_secs_f64()).ceil() as usize).max(1);
        let fresh: Vec<Finding> = chunks(&mut generator, arrived, clock, previous)
            .flatten()
            .collect();
        clock += chrono::Duration::from_std(previous).unwrap_or_default();
        let t = Instant::now();
        append(&mut engine, fresh);
        // The window keeps a day: what is older leaves as new records come.
        engine.expire_before(clock - chrono::Duration::from_std(day).unwrap_or_default());
        tick(&rules, &mut engine).await;
        let took = t.elapsed();
        // Arrivals were uniform over the previous tick; each waited for the rest of it and
        // then for this tick.
        for i in 0..arrived {
            let waited = previous.as_secs_f64() * (1.0 - (i as f64 + 0.5) / arrived as f64);
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
