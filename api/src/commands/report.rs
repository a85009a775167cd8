//! `cairn report`: signed compliance evidence bundles and their verification.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use cairn_api::report::{self, EvidenceRequest, Framework, Signer};
use cairn_correlate::Store;
use cairn_rules::RuleSet;

/// Where the signing key is kept unless `--key` says otherwise.
pub fn default_key(data_dir: &Path) -> PathBuf {
    data_dir.join("evidence/signing.key")
}

fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    report::parse_time(s).map_err(anyhow::Error::msg)
}

/// What `cairn report evidence` was asked.
pub struct EvidenceArgs<'a> {
    pub framework: Framework,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub out: &'a Path,
    pub key: Option<&'a Path>,
}

/// `cairn report evidence`.
pub async fn evidence(
    store: &dyn Store,
    rules: &RuleSet,
    data_dir: &Path,
    args: EvidenceArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let EvidenceArgs {
        framework,
        from,
        to,
        out,
        key,
    } = args;
    let request = EvidenceRequest {
        framework,
        from: from.map(parse_time).transpose()?,
        to: to.map(parse_time).transpose()?,
    };
    if let (Some(f), Some(t)) = (request.from, request.to)
        && f >= t
    {
        bail!("--from {f} is not before --to {t}");
    }
    let key_path = key.map_or_else(|| default_key(data_dir), Path::to_path_buf);
    let signer = Signer::open(&key_path, data_dir.join("evidence/chain"))?;
    let (manifest, sha, ()) = signer
        .report(store, rules, &request, out, |_| Ok(()))
        .await?;
    println!(
        "Wrote {} evidence for {} to {}: {} files, manifest SHA-256 {sha}, signed by {} ({}){}",
        framework.title(),
        match (&manifest.from, &manifest.to) {
            (None, None) => "all time".to_string(),
            (f, t) => format!(
                "{} to {}",
                f.as_deref().unwrap_or("the beginning"),
                t.as_deref().unwrap_or("now")
            ),
        },
        out.display(),
        manifest.files.len() + 1,
        manifest.public_key,
        key_path.display(),
        manifest
            .previous
            .as_deref()
            .map(|p| format!(", following the report with manifest SHA-256 {p}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cairn report verify`: exit status 0 when intact and signed by the trusted key, 1 when
/// anything was altered, 2 when intact but no key was pinned (anyone could have re-signed it).
pub fn verify(
    local_key: &Path,
    bundle: &Path,
    previous: Option<&Path>,
    public_key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let trusted = match public_key {
        Some(hex_key) => Some(
            hex::decode(hex_key.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                .with_context(|| {
                    format!("--public-key `{hex_key}` is not an Ed25519 public key (64 hex digits)")
                })?,
        ),
        None => {
            if local_key.exists() {
                Some(report::load_or_create_key(local_key)?.verifying_key())
            } else {
                None
            }
        }
    };
    let v = report::verify(bundle, previous, trusted.as_ref());
    if v.is_intact() {
        let chained = if previous.is_some() {
            ", and it follows the previous report"
        } else {
            ""
        };
        if trusted.is_some() {
            println!(
                "{}: intact. {} files match their SHA-256 and the signature of the trusted key verifies{chained}.",
                bundle.display(),
                v.files_ok,
            );
            Ok(ExitCode::SUCCESS)
        } else {
            // Without a pinned key, a forger could have re-hashed and re-signed everything.
            println!(
                "{}: consistent, but not authenticated: {} files match their SHA-256 and the signature verifies \
                 under the key the bundle names ({}), which was not pinned; pass --public-key with the signer's key{chained}.",
                bundle.display(),
                v.files_ok,
                v.manifest.as_ref().map_or("?", |m| m.public_key.as_str()),
            );
            Ok(ExitCode::from(2))
        }
    } else {
        eprintln!("{}: altered.", bundle.display());
        for p in &v.problems {
            eprintln!("  {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
