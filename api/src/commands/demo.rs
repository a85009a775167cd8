//! `cairn demo`: the bundled attack story, end to end, on a fresh embedded store.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use include_dir::{Dir, include_dir};

use cairn_correlate::{CorrelateConfig, run_pass};
use cairn_ingest::sources::file::{FileSource, Input};
use cairn_rules::RuleSet;

use super::{exit_for, ingest, open_store, print_incidents, print_ingest, print_pass, serve};

/// The demo data set (see `api/demo/README.md` for its origin and every change made to it).
static DEMO_DATA: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/demo/data");

/// The bundled inputs, in name order.
pub fn inputs() -> Vec<Input> {
    let mut files: Vec<_> = DEMO_DATA.files().collect();
    files.sort_by_key(|f| f.path());
    files
        .into_iter()
        .map(|f| Input::Bytes {
            name: format!("demo/{}", f.path().display()),
            bytes: f.contents(),
        })
        .collect()
}

/// Runs the demo in `dir` (emptied first, so every run starts from the same state).
pub async fn run(
    dir: &Path,
    rules: RuleSet,
    correlate: &CorrelateConfig,
    listen: SocketAddr,
    once: bool,
) -> anyhow::Result<ExitCode> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot reset the demo store in {}", dir.display()))?;
    }
    let store = open_store(&dir.join("cairn.db")).await?;
    println!(
        "Cairn demo: one attacker across Active Directory, Microsoft Defender and AWS Security Hub ({} rules)",
        rules.len()
    );
    let mut source = FileSource::from_inputs("demo", inputs(), 2000);
    let report = ingest(&mut source, store.as_ref()).await?;
    print_ingest(&report);
    let pass = run_pass(store.as_ref(), &rules, correlate).await?;
    print_pass(&pass);
    print_incidents(store.as_ref()).await?;
    if once {
        return Ok(exit_for(&report));
    }
    println!("Try:  curl -s http://{listen}/api/v1/incidents");
    serve(store, rules, listen, &super::report::default_key(dir), dir).await?;
    Ok(ExitCode::SUCCESS)
}
