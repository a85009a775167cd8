//! `cairn`: the one binary of Cairn. Run `cairn --help`.

mod commands;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Unified multi-cloud security event correlator: AWS Security Hub, Microsoft Defender and
/// Sentinel, Active Directory, in one incident queue.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    after_help = "Exit status: 0 success, 1 error, 3 partial success (some records went to dead letters)."
)]
struct Cli {
    /// Configuration file (TOML); see deploy/cairn.example.toml.
    #[arg(long, global = true, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Folder of the embedded store (overrides `[store] path`); default ./cairn-data.
    #[arg(long, global = true, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `cairn_correlate=debug`.
    #[arg(long, global = true, env = "CAIRN_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read JSON, NDJSON or gzip files (Security Hub findings, Graph alerts, Windows events),
    /// store them, and correlate.
    Ingest {
        /// Files or folders to read. Omit to run `--source` from the configuration.
        paths: Vec<PathBuf>,
        /// A configured source (`[sources.<id>]`) to run instead of paths.
        #[arg(long, conflicts_with = "paths")]
        source: Option<String>,
        /// Store and resolve identities only; do not run the rules afterwards.
        #[arg(long)]
        no_correlate: bool,
    },
    /// Run one correlation pass over the stored window.
    Correlate,
    /// Serve the API.
    Serve {
        /// Address to listen on (default `[api] listen` or 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Ingest the bundled attack story (AWS, Microsoft, AD), correlate it, print the
    /// incidents and serve the API.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Exit after printing the incidents instead of serving.
        #[arg(long)]
        once: bool,
    },
    /// List the newest dead letters: records that could not be read or normalized.
    DeadLetters {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Re-run stored history (the archive and the store) into a new store, page by page with
    /// a correlation pass after each as a live run does, and print its incidents.
    Replay {
        /// Start of event time (RFC 3339, e.g. 2026-11-15T00:00:00Z); default: the oldest.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of event time, exclusive (RFC 3339); default: no end.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Folder of the new store; it must not hold findings yet.
        #[arg(long)]
        into: PathBuf,
        /// Findings per page.
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
    /// Run Sigma rules over log files and folders (`.evtx`, JSON lines as `evtx_dump -o jsonl`
    /// writes them, flat Winlogbeat/NXLog JSON): a detection per rule and matching event,
    /// then a summary per rule. Nothing is stored.
    Hunt {
        /// Files or folders to read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Folders of Sigma rules (default: the bundled SigmaHQ Windows rule set).
        #[arg(long)]
        sigma: Vec<PathBuf>,
        /// Folders of Cairn rules (YAML with SQL, or Sigma, correlation rules included), run
        /// after the Sigma rules over the whole input, each stretch of activity (no gap longer
        /// than the live window) as one window: a detection per rule and entity.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// Also run Cairn's built-in rule pack over the whole input.
        #[arg(long)]
        builtin_rules: bool,
        /// A field-mapping file to use instead of the bundled `rules/sigma/mappings.yml`.
        #[arg(long)]
        mappings: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = HuntFormat::Table)]
        format: HuntFormat,
        /// Write detections to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Test every rule on every event without the index (slow; for checking the index).
        #[arg(long)]
        reference: bool,
        /// Where compiled rule sets are kept between runs (default `$CAIRN_CACHE_DIR`, else
        /// `~/.cache/cairn/hunt`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Compile the rules without reading or writing the cache.
        #[arg(long, conflicts_with = "cache_dir")]
        no_cache: bool,
    },
    /// Inspect the rules in force.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Deliver incidents to the SIEM sinks of the configuration file (`[forward.<name>]`)
    /// from the store's outbox, with retries; until Ctrl-C, or with `--once` until nothing is
    /// due.
    Forward {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Stop when nothing more is due now (exit status 3 if events wait for a retry).
        #[arg(long)]
        once: bool,
    },
    /// Inspect resolved identities (one person across AD, Entra ID and AWS).
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Compliance evidence: signed bundles of the findings and incidents behind a framework's
    /// controls, and their verification.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Write a signed evidence bundle (a new folder): each control's findings, status over the
    /// period and incidents, the findings' records, the incidents, the rules in force, an HTML
    /// report, and `manifest.json` with every file's SHA-256, the previous report's hash and an
    /// Ed25519 signature.
    Evidence {
        /// The framework.
        #[arg(long, value_enum)]
        framework: cairn_api::report::Framework,
        /// Start of the period: a date (2026-11-01) or an RFC 3339 time (default: all).
        #[arg(long)]
        from: Option<String>,
        /// End of the period, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        /// The folder to write (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// The signing key (default `<data dir>/evidence/signing.key`, made on first use).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Check a bundle's hashes, signature and chain; name what was altered (exit status 1).
    Verify {
        /// The bundle folder.
        bundle: PathBuf,
        /// The report before it, to check the chain.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// The signer's public key, hex (default: this data folder's key, if any).
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// `cairn hunt --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HuntFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per detection, the event included.
    Jsonl,
    /// CSV with a header.
    Csv,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Explain how a person's accounts were joined: their keys, the directory accounts that
    /// hold them and why each link was made.
    Show {
        /// A UPN or e-mail, `DOMAIN\user`, a SID, an Entra object id, an AWS ARN, an identity
        /// id, or a display name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// List the rules (built-in pack and configured folders).
    List,
    /// Load and validate rules; every error is listed with its file and line.
    Validate {
        /// Extra rule folders to validate with the built-in pack.
        dirs: Vec<PathBuf>,
    },
    /// Run every rule's inline tests on the production engine; exits 1 if any fails.
    Test {
        /// Extra rule folders (with the built-in pack and the configured ones).
        dirs: Vec<PathBuf>,
    },
    /// Compile folders of Sigma rules and report each: compiled, or unsupported with the
    /// reason. Rule folders may hold Sigma files directly; this shows what they become.
    ImportSigma {
        /// Folders of Sigma rules (searched recursively).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Write every compiled rule as a Cairn rule file into this folder, to keep or tune.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A field-mapping file to use instead of the bundled `rules/sigma/mappings.yml`.
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
}

// Ingest allocates many small strings (every field of every record); mimalloc makes the
// normalize path ~40 % faster than the system allocator (`cargo bench -p cairn-ingest`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of each runtime worker thread.
const WORKER_STACK_BYTES: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // The AWS SDK's deserializers for ASFF's very large types need deep stacks in debug
    // builds; the command runs on a worker thread with room to spare.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async { tokio::spawn(commands::run(cli)).await });
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: the command stopped unexpectedly: {e}");
            ExitCode::FAILURE
        }
    }
}
