//! `cairn forward`: deliver the outbox to the configured sinks.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use cairn_api::forward::{Backoff, Sink, SinkConfig, SinkFilter, forward_once};
use cairn_correlate::Store;

use super::EXIT_PARTIAL;

/// Events per round and sink.
const BATCH: usize = 100;

/// Forwards until stopped (Ctrl-C), or with `once` until nothing more is due now; exit status
/// 3 when events are left waiting (a sink is down or asked to wait).
pub async fn run(
    store: &dyn Store,
    configs: &std::collections::BTreeMap<String, SinkConfig>,
    only: Option<&str>,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let mut sinks: Vec<(Box<dyn Sink>, SinkFilter)> = Vec::new();
    for (name, c) in configs {
        if only.is_none_or(|o| o == name) {
            sinks.push(c.build(name).await.map_err(anyhow::Error::msg)?);
        }
    }
    if sinks.is_empty() {
        match only {
            Some(o) => bail!("no sink `{o}`: add [forward.{o}] to the configuration file"),
            None => bail!("no sinks: add a [forward.<name>] section to the configuration file"),
        }
    }
    let backoff = Backoff::default();
    loop {
        let mut progress = false;
        for (sink, filter) in &sinks {
            let r = forward_once(
                store,
                sink.as_ref(),
                filter,
                &backoff,
                chrono::Utc::now(),
                BATCH,
            )
            .await?;
            if r.delivered + r.retried + r.rejected > 0 {
                println!(
                    "{}: {} delivered, {} to retry, {} rejected or filtered; {} waiting",
                    sink.name(),
                    r.delivered,
                    r.retried,
                    r.rejected,
                    r.depth
                );
            }
            progress |= r.delivered + r.rejected > 0;
        }
        if progress {
            continue;
        }
        if once {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let mut waiting = 0;
    for (sink, _) in &sinks {
        let depth = store.outbox_depth(sink.name()).await?;
        if depth > 0 {
            eprintln!("{}: {depth} events wait for a later attempt", sink.name());
        }
        waiting += depth;
    }
    Ok(if waiting == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}
