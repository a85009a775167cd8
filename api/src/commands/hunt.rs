//! `cairn hunt`: Sigma rules over log files, no store involved.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use cairn_correlate::CorrelateConfig;
use cairn_hunt::output::{self, Correlated, Format};
use cairn_hunt::{CacheUse, CompiledSet, HuntOptions, HuntRules, bundled, cache, hunt};
use cairn_ingest::Severity;
use cairn_ingest::finding_schema;
use cairn_ingest::sources::file::data_files;
use cairn_rules::RuleSet;
use cairn_rules::load::read_rule_texts;

use super::{PROGRESS_BYTES, sigma_mappings};

/// What `cairn hunt` was asked.
pub struct HuntArgs {
    pub paths: Vec<PathBuf>,
    pub sigma: Vec<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub builtin_rules: bool,
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
    // Cairn rules are loaded first: a rule file with an error stops the hunt before it reads.
    let cairn_rules = if args.rules.is_empty() && !args.builtin_rules {
        None
    } else {
        let runtime = tokio::runtime::Handle::current();
        let set = runtime.block_on(RuleSet::load_with_mappings(
            &args.rules,
            args.builtin_rules,
            &mappings,
        ))?;
        Some((runtime, set))
    };
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
            "not run: {} Sigma correlation rules (they need a window: pass their folder with `--rules`)",
            set.correlations
        )?;
    }
    if let Some((_, cairn)) = &cairn_rules {
        for s in cairn.sigma_unsupported() {
            writeln!(err, "not compiled: {}: {}", s.origin, s.reason)?;
        }
        writeln!(
            err,
            "{} Cairn rules will run over the whole input, each stretch of activity as one window",
            cairn.len()
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
        keep_window: cairn_rules.is_some(),
        ..HuntOptions::default()
    };
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }
    let mut report = hunt(&rules, &files, &options, &|bytes| {
        if let Some(b) = &bar {
            b.inc(bytes);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut failed_rules = Vec::new();
    if let Some((runtime, cairn)) = &cairn_rules {
        failed_rules = correlate(runtime, cairn, &mut report)?;
    }

    write_output(args.out.as_deref(), args.format, &rules, &report)?;
    let mut err = std::io::stderr().lock();
    for r in &report.rejected {
        writeln!(err, "not evaluated: {}: {}", r.location, r.reason)?;
    }
    for (rule, reason) in &failed_rules {
        writeln!(err, "rule failed: {rule}: {reason}")?;
    }
    writeln!(
        err,
        "{} events in {} files ({:.1} MB) in {:.2} s: {} detections by {} Sigma rules{}; {} records not evaluated",
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
        if cairn_rules.is_some() {
            format!(
                ", {} by Cairn rules over the whole input",
                report.correlated.len()
            )
        } else {
            String::new()
        },
        report.rejected.len()
    )?;
    Ok(if report.rejected.is_empty() && failed_rules.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Runs Cairn rules over the events the hunt kept, each stretch of activity as one window
/// ([`cairn_correlate::offline`]); fills `report.correlated` and
/// returns the rules that failed, with why.
fn correlate(
    runtime: &tokio::runtime::Handle,
    cairn: &RuleSet,
    report: &mut cairn_hunt::HuntReport,
) -> anyhow::Result<Vec<(String, String)>> {
    let (batches, locations) = report.take_window();
    let found = runtime.block_on(cairn_correlate::offline::evaluate(
        batches,
        cairn,
        &CorrelateConfig::default(),
    ))?;
    eprintln!(
        "Cairn rules: {} distinct events ({} duplicates dropped) in {} stretches of activity, {} identities",
        found.events, found.duplicates, found.windows, found.identities
    );
    report.correlated = found
        .detections
        .into_iter()
        .map(|d| {
            let rule = cairn.get(&d.rule_id);
            Correlated {
                level: Severity::from_id(d.severity_id).caption().to_lowercase(),
                rule_file: rule.map(|r| r.origin.clone()).unwrap_or_default(),
                entity: format!("{}:{}", d.entity_kind, d.entity_key),
                first_seen: d.first_seen,
                last_seen: d.last_seen,
                evidence: d
                    .finding_uids
                    .iter()
                    .flat_map(|u| locations.get(u).cloned().unwrap_or_else(|| vec![u.clone()]))
                    .collect(),
                rule_id: d.rule_id,
                title: d.title,
                tactics: d.tactics,
                techniques: d.techniques,
            }
        })
        .collect();
    Ok(found.failed)
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
