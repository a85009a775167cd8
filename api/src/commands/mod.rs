//! The binary's commands. This is the edge where errors become `anyhow` reports and exit
//! codes.

mod demo;
mod forward;
mod hunt;
mod identity;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use cairn_api::config::Config;
use cairn_api::{AppState, app};
use cairn_correlate::store::IncidentFilter;
use cairn_correlate::{
    CorrelateConfig, IngestReport, PassReport, SqliteStore, Store, run_pass, run_source,
};
use cairn_ingest::Source;
use cairn_ingest::sources::SourceConfig;
use cairn_ingest::sources::file::{FileSource, FileSourceConfig};
use cairn_ingest::sources::securityhub::{self, SecurityHubApi, SecurityHubWriteBack, WriteBack};
use cairn_rules::RuleSet;
use cairn_rules::sigma::SigmaMappings;

use crate::{Cli, Command, HuntFormat, IdentityCommand, ReportCommand, RulesCommand};

/// Exit status of a run that stored what it could but sent records to dead letters.
pub const EXIT_PARTIAL: u8 = 3;

/// Inputs larger than this get a progress bar.
const PROGRESS_BYTES: u64 = 4 * 1024 * 1024;

/// Settings every command derives from the command line and the configuration file.
struct Setup {
    config: Config,
    config_path: PathBuf,
    data_dir: PathBuf,
}

impl Setup {
    fn new(cli: &Cli) -> anyhow::Result<Setup> {
        let (config, config_path) = match &cli.config {
            Some(p) => (Config::load(p)?, p.clone()),
            None => (Config::default(), PathBuf::from("(defaults)")),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("cairn-data"));
        Ok(Setup {
            config,
            config_path,
            data_dir,
        })
    }

    fn store_path(&self, explicit_data_dir: bool) -> PathBuf {
        match (&self.config.store.path, explicit_data_dir) {
            (Some(p), false) => p.clone(),
            _ => self.data_dir.join("cairn.db"),
        }
    }

    /// The evidence signing key: `[evidence] signing_key`, else in the data folder.
    fn evidence_key(&self) -> PathBuf {
        self.config
            .evidence
            .signing_key
            .clone()
            .unwrap_or_else(|| report::default_key(&self.data_dir))
    }

    fn correlate(&self) -> anyhow::Result<CorrelateConfig> {
        Ok(self.config.correlate_config(&self.config_path)?)
    }

    async fn rules(&self, extra: &[PathBuf]) -> anyhow::Result<RuleSet> {
        let mut dirs = self.config.rules.dirs.clone();
        dirs.extend(extra.iter().cloned());
        let mappings = sigma_mappings(self.config.rules.sigma_mappings.as_deref())?;
        let rules =
            RuleSet::load_with_mappings(&dirs, self.config.rules.builtin, &mappings).await?;
        for s in rules.sigma_unsupported() {
            eprintln!(
                "warning: Sigma rule not compiled: {}: {}",
                s.origin, s.reason
            );
        }
        Ok(rules)
    }
}

async fn open_store(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open(path)
        .await
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let setup = Setup::new(&cli)?;
    let store_path = setup.store_path(cli.data_dir.is_some());
    match cli.command {
        Command::Ingest {
            paths,
            source,
            no_correlate,
        } => {
            let mut source: Box<dyn Source> = match (source, paths.is_empty()) {
                (Some(id), _) => {
                    let Some(c) = setup.config.sources.get(&id) else {
                        bail!("no source `{id}` in {}", setup.config_path.display());
                    };
                    c.build(&id).await?
                }
                (None, false) => Box::new(FileSource::new("file", &FileSourceConfig::new(paths))?),
                (None, true) => bail!("give files or folders to read, or --source ID"),
            };
            let rules = setup.rules(&[]).await?;
            let store = open_store(&store_path).await?;
            let report = ingest(source.as_mut(), store.as_ref()).await?;
            print_ingest(&report);
            if no_correlate {
                // Findings get their identity at ingest even when rules wait for later.
                run_pass(store.as_ref(), &RuleSet::default(), &setup.correlate()?).await?;
            } else {
                let pass = run_pass(store.as_ref(), &rules, &setup.correlate()?).await?;
                print_pass(&pass);
                write_back(&setup, store.as_ref()).await?;
            }
            Ok(exit_for(&report))
        }
        Command::Correlate => {
            let rules = setup.rules(&[]).await?;
            let store = open_store(&store_path).await?;
            let pass = run_pass(store.as_ref(), &rules, &setup.correlate()?).await?;
            print_pass(&pass);
            write_back(&setup, store.as_ref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let rules = setup.rules(&[]).await?;
            let store = open_store(&store_path).await?;
            let addr = listen
                .or(setup.config.api.listen)
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
            serve(store, rules, addr, &setup.evidence_key(), &setup.data_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { listen, once } => {
            let rules = setup.rules(&[]).await?;
            demo::run(
                &setup.data_dir.join("demo"),
                rules,
                &setup.correlate()?,
                listen,
                once,
            )
            .await
        }
        Command::Replay {
            from,
            to,
            into,
            page_size,
        } => {
            let rules = setup.rules(&[]).await?;
            let live = open_store(&store_path).await?;
            let target = open_store(&into.join("cairn.db")).await?;
            let report = cairn_correlate::replay::replay(
                live.as_ref(),
                target.as_ref(),
                &rules,
                &setup.correlate()?,
                from,
                to,
                page_size,
            )
            .await?;
            println!(
                "Replayed {} findings ({} from the archive) in {} pages into {}: {} detections, {} incidents",
                report.findings,
                report.from_archive,
                report.pages,
                into.display(),
                report.detections,
                report.incidents
            );
            print_incidents(target.as_ref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters { limit } => {
            let store = open_store(&store_path).await?;
            for d in store.dead_letters(limit).await? {
                println!(
                    "{}  {}  {}\n    {}",
                    d.letter.at.format("%Y-%m-%d %H:%M:%S"),
                    d.letter.source,
                    d.letter.location,
                    d.letter.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Identity {
            command: IdentityCommand::Show { name, json },
        } => {
            let store = open_store(&store_path).await?;
            identity::show(store.as_ref(), &name, json).await
        }
        Command::Forward { sink, once } => {
            let store = open_store(&store_path).await?;
            forward::run(store.as_ref(), &setup.config.forward, sink.as_deref(), once).await
        }
        Command::Report {
            command:
                ReportCommand::Evidence {
                    framework,
                    from,
                    to,
                    out,
                    key,
                },
        } => {
            let store = open_store(&store_path).await?;
            let rules = setup.rules(&[]).await?;
            report::evidence(
                store.as_ref(),
                &rules,
                &setup.data_dir,
                report::EvidenceArgs {
                    framework,
                    from: from.as_deref(),
                    to: to.as_deref(),
                    out: &out,
                    key: Some(&key.unwrap_or_else(|| setup.evidence_key())),
                },
            )
            .await
        }
        Command::Report {
            command:
                ReportCommand::Verify {
                    bundle,
                    previous,
                    public_key,
                },
        } => report::verify(
            &setup.evidence_key(),
            &bundle,
            previous.as_deref(),
            public_key.as_deref(),
        ),
        Command::Hunt {
            paths,
            sigma,
            rules,
            builtin_rules,
            mappings,
            format,
            out,
            threads,
            reference,
            cache_dir,
            no_cache,
        } => {
            hunt::run(hunt::HuntArgs {
                paths,
                sigma,
                rules,
                builtin_rules,
                mappings,
                format: match format {
                    HuntFormat::Table => cairn_hunt::output::Format::Table,
                    HuntFormat::Jsonl => cairn_hunt::output::Format::Jsonl,
                    HuntFormat::Csv => cairn_hunt::output::Format::Csv,
                },
                out,
                threads,
                reference,
                cache_dir,
                no_cache,
            })
            .await
        }
        Command::Rules { command } => match command {
            RulesCommand::List => {
                let rules = setup.rules(&[]).await?;
                for r in rules.rules() {
                    println!(
                        "{:<48} {:<13} {:<9} {:>4}  {}",
                        r.id,
                        r.severity.caption(),
                        r.entity.as_str(),
                        humantime(r.window),
                        r.title
                    );
                }
                println!("{} rules", rules.len());
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::Validate { dirs } => {
                let rules = setup.rules(&dirs).await?;
                println!("{} rules valid", rules.len());
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::Test { dirs } => {
                let rules = setup.rules(&dirs).await?;
                let (mut passed, mut failed, mut untested) = (0, 0, Vec::new());
                for rule in rules.rules() {
                    if rule.tests.is_empty() {
                        untested.push(rule.id.clone());
                        continue;
                    }
                    for o in cairn_correlate::rule_tests::run_rule_tests(rule).await {
                        match o.failure {
                            None => passed += 1,
                            Some(f) => {
                                failed += 1;
                                println!(
                                    "FAIL {} / {} ({})\n     {f}",
                                    o.rule_id, o.name, o.origin
                                );
                            }
                        }
                    }
                }
                if !untested.is_empty() {
                    println!("rules without tests: {}", untested.join(", "));
                }
                println!(
                    "{} rules, {} tests: {passed} passed, {failed} failed",
                    rules.len(),
                    passed + failed
                );
                Ok(if failed > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            RulesCommand::ImportSigma {
                dirs,
                out,
                mappings,
            } => import_sigma(&dirs, out.as_deref(), mappings.as_deref()).await,
        },
    }
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Drains a source into the store with a progress bar on large inputs.
async fn ingest(source: &mut dyn Source, store: &dyn Store) -> anyhow::Result<IngestReport> {
    let bar = match source.total_bytes() {
        Some(total) if total >= PROGRESS_BYTES => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Some(bar)
        }
        _ => None,
    };
    let report = run_source(source, store, |page, so_far| {
        if let Some(b) = &bar {
            b.inc(page.bytes);
            b.set_message(format!("{} records", so_far.records));
        }
    })
    .await
    .with_context(|| format!("ingesting source `{}`", source.id()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(report)
}

fn exit_for(report: &IngestReport) -> ExitCode {
    if report.records > report.findings + report.directory_objects {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_ingest(r: &IngestReport) {
    let bad = r.records.saturating_sub(r.findings + r.directory_objects);
    let directory = if r.directory_objects > 0 || r.stored.directory_removed > 0 {
        format!(
            "{} directory objects ({} no longer in the directory removed), ",
            r.directory_objects, r.stored.directory_removed
        )
    } else {
        String::new()
    };
    println!(
        "Ingested {} records: {} findings ({} new or updated, {} unchanged), {directory}{} dead letters ({} new)",
        r.records, r.findings, r.stored.stored, r.stored.unchanged, bad, r.stored.dead_letters
    );
    if bad > 0 {
        println!("Each bad record is kept with its location and reason: run `cairn dead-letters`.");
    }
}

fn print_pass(p: &PassReport) {
    let span = match (p.window_start, p.window_end) {
        (Some(a), Some(b)) => format!(
            " in window {} → {}",
            a.format("%Y-%m-%d %H:%M"),
            b.format("%Y-%m-%d %H:%M UTC")
        ),
        _ => String::new(),
    };
    let memory = match p.window_bytes.checked_div(p.findings) {
        Some(per_finding) => format!(
            " ({:.1} MB, {per_finding} B per finding)",
            p.window_bytes as f64 / 1e6
        ),
        None => String::new(),
    };
    println!(
        "Correlated {} findings{memory}{span} with {} rules: {} detections new, {} updated; {} incidents new, {} updated",
        p.findings,
        p.rules,
        p.detections_new,
        p.detections_updated,
        p.incidents_new,
        p.incidents_updated
    );
    if p.archived > 0 {
        println!(
            "  {} findings older than the window moved to the archive",
            p.archived
        );
    }
    for e in &p.rule_errors {
        println!("  rule failed: {e}");
    }
}

/// Tells Security Hub which incident its findings joined, for every configured Security Hub
/// source with `write_back = true`. At least once: what Security Hub reports processed is
/// recorded; the rest is tried again after the next pass.
async fn write_back(setup: &Setup, store: &dyn Store) -> anyhow::Result<()> {
    for (id, source) in &setup.config.sources {
        let SourceConfig::AwsSecurityHub(config) = source else {
            continue;
        };
        if !config.write_back || config.api != SecurityHubApi::GetFindings {
            continue;
        }
        let pending = store
            .pending_writebacks(securityhub::SOURCE, 10_000)
            .await?;
        let items: Vec<(WriteBack, (String, String))> = pending
            .iter()
            .filter_map(|p| {
                let f = &p.finding;
                Some((
                    WriteBack {
                        account_id: f.account_uid.clone()?,
                        product_arn: f.fields.get("ProductArn")?.to_string(),
                        id: f.finding_uid.clone(),
                        note: format!(
                            "Cairn incident #{} ({}): {}",
                            p.incident_number, p.incident_id, p.incident_title
                        ),
                    },
                    (f.finding_uid.clone(), p.incident_id.clone()),
                ))
            })
            .collect();
        if items.is_empty() {
            continue;
        }
        let writer = SecurityHubWriteBack::connect(id, config).await?;
        let batch: Vec<WriteBack> = items.iter().map(|(w, _)| w.clone()).collect();
        let report = writer.send(&batch).await?;
        let processed: std::collections::BTreeSet<&String> =
            report.processed.iter().map(|(_, id)| id).collect();
        let done: Vec<(String, String)> = items
            .iter()
            .filter(|(w, _)| processed.contains(&w.id))
            .map(|(_, key)| key.clone())
            .collect();
        store.record_writebacks(&done).await?;
        println!(
            "Security Hub write-back ({id}): {} findings marked NOTIFIED with their incident, {} refused",
            done.len(),
            report.unprocessed.len()
        );
        for ((_, finding), reason) in &report.unprocessed {
            tracing::warn!(source = %id, finding = %finding, reason = %reason, "Security Hub refused a write-back");
        }
    }
    Ok(())
}

/// Prints the open incidents as a table.
async fn print_incidents(store: &dyn Store) -> anyhow::Result<()> {
    let page = store
        .incidents(&IncidentFilter {
            limit: 50,
            ..IncidentFilter::default()
        })
        .await?;
    println!("Incidents:");
    for i in &page.items {
        println!(
            "  #{:<3} {:<8} {:<70} {} detections, {} findings, sources: {}",
            i.number,
            i.severity,
            i.title,
            i.detection_count,
            i.finding_count,
            i.sources.join(", ")
        );
    }
    if page.items.is_empty() {
        println!("  (none)");
    }
    Ok(())
}

/// Serves the API until Ctrl-C.
async fn serve(
    store: Arc<dyn Store>,
    rules: RuleSet,
    addr: std::net::SocketAddr,
    evidence_key: &Path,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let evidence = cairn_api::report::Signer::open(evidence_key, data_dir.join("evidence/chain"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("Serving the API on http://{local}/api/v1/incidents (Ctrl-C to stop)");
    let state = AppState {
        store,
        rules: Arc::new(rules),
        evidence: Some(Arc::new(evidence)),
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The Sigma field mappings of `path`, or the bundled ones.
fn sigma_mappings(path: Option<&Path>) -> anyhow::Result<SigmaMappings> {
    Ok(match path {
        None => SigmaMappings::bundled(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the Sigma mapping file {}", p.display()))?;
            SigmaMappings::parse(&p.display().to_string(), &text)?
        }
    })
}

/// `cairn rules import-sigma`: one line per rule, then the totals.
async fn import_sigma(
    dirs: &[PathBuf],
    out: Option<&Path>,
    mappings: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let import = RuleSet::import_sigma(dirs, &sigma_mappings(mappings)?).await?;
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    for r in &import.compiled {
        println!("compiled     {:<48} {}  ({})", r.id, r.title, r.origin);
        if let Some(out) = out {
            let path = out.join(format!("{}.yml", r.id));
            let yaml = r
                .to_yaml()
                .with_context(|| format!("cannot write rule {} as YAML", r.id))?;
            std::fs::write(&path, yaml)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    for w in &import.warnings {
        println!("warning      ({}): {}", w.origin, w.reason);
    }
    for s in &import.unsupported {
        let what = s
            .title
            .as_deref()
            .or(s.sigma_id.as_deref())
            .unwrap_or("(unnamed)");
        println!("unsupported  {what}  ({}): {}", s.origin, s.reason);
    }
    let compiled = import.compiled.len() + import.correlation_only;
    let total = compiled + import.unsupported.len();
    let share = if total == 0 {
        100.0
    } else {
        compiled as f64 * 100.0 / total as f64
    };
    println!(
        "{} compiled, {} unsupported ({share:.2} % compiled); {} rules used only as correlation steps",
        compiled,
        import.unsupported.len(),
        import.correlation_only
    );
    Ok(ExitCode::SUCCESS)
}
