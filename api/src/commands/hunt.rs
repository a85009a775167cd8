//! `cairn hunt`: Sigma rules over log files, no store involved.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use cairn_hunt::output::{self, Format};
use cairn_hunt::{CacheUse, CompiledSet, HuntOptions, HuntRules, bundled, cache, hunt};
use cairn_ingest::finding_schema;
use cairn_ingest::sources::file::data_files;
use cairn_rules::load::read_rule_texts;

use super::{PROGRESS_BYTES, sigma_mappings};

/// What `cairn hunt` was asked.
pub struct HuntArgs {
    pub paths: Vec<PathBuf>,
    pub sigma: Vec<PathBuf>,
    pub mappings: Option<PathBuf>,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub threads: Option<usize>,
    pub reference: bool,
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
}

pub async fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || blocking(args))
        .await
        .context("the hunt stopped unexpectedly")?
}

fn blocking(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let loading = Instant::now();
    let texts = if args.sigma.is_empty() {
        bundled::sigmahq_windows()?
    } else {
        read_rule_texts(&args.sigma)?
    };
    let mappings = sigma_mappings(args.mappings.as_deref())?;
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(cache::default_dir)
    };
    let (mut set, cache_use) =
        CompiledSet::load_or_compile(cache_dir.as_deref(), &texts, &mappings);
    // The rule texts and the condition trees are not needed once the index is built; they
    // would otherwise stay resident for the whole hunt.
    drop(texts);
    let rules = HuntRules::build(&std::mem::take(&mut set.rules), &finding_schema())?;
    let stats = rules.stats();
    let mut err = std::io::stderr().lock();
    // Nothing is skipped silently: every rule that does not run says why.
    for u in &set.not_compiled {
        writeln!(err, "not compiled: {}: {}", u.origin, u.reason)?;
    }
    if set.correlations > 0 {
        writeln!(
            err,
            "not run: {} correlation rules (they need the correlator's window: `cairn ingest`)",
            set.correlations
        )?;
    }
    if let CacheUse::StoreFailed(why) = &cache_use {
        writeln!(err, "warning: the compiled rules were not cached: {why}")?;
    }
    writeln!(
        err,
        "{} rules loaded in {:.2} s{} ({} not compiled): {} log sources, {} fields, {} field tests, {} anchors",
        stats.rules,
        loading.elapsed().as_secs_f64(),
        if cache_use == CacheUse::Hit {
            " from the cache"
        } else {
            ""
        },
        set.not_compiled.len(),
        stats.sources,
        stats.fields,
        stats.leaves,
        stats.anchors
    )?;
    drop(err);

    let files = data_files(&args.paths)?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let bar = (total >= PROGRESS_BYTES).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut options = HuntOptions {
        reference: args.reference,
        ..HuntOptions::default()
    };
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }
    let report = hunt(&rules, &files, &options, &|bytes| {
        if let Some(b) = &bar {
            b.inc(bytes);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    write_output(args.out.as_deref(), args.format, &rules, &report)?;
    let mut err = std::io::stderr().lock();
    for r in &report.rejected {
        writeln!(err, "not evaluated: {}: {}", r.location, r.reason)?;
    }
    writeln!(
        err,
        "{} events in {} files ({:.1} MB) in {:.2} s: {} detections by {} rules; {} records not evaluated",
        report.events,
        report.files.len(),
        report.bytes as f64 / 1e6,
        report.wall.as_secs_f64(),
        report.detections.len(),
        report
            .detections
            .iter()
            .map(|d| d.rule)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        report.rejected.len()
    )?;
    Ok(if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn write_output(
    out: Option<&Path>,
    format: Format,
    rules: &HuntRules,
    report: &cairn_hunt::HuntReport,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    output::write(&mut sink, format, &rules.rules, report)?;
    if format == Format::Table {
        writeln!(sink)?;
        output::write_summary(&mut sink, &rules.rules, report)?;
    } else if out.is_some() {
        // Machine output went to a file: the summary goes to the terminal.
        output::write_summary(&mut std::io::stderr().lock(), &rules.rules, report)?;
    }
    sink.flush()?;
    Ok(())
}
