//! Checking a bundle: every file's hash, no file added or missing, the signature, the signer,
//! and the chain to the previous report.

use std::collections::BTreeSet;
use std::path::Path;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{FORMAT, MANIFEST, Manifest};

/// Something about a bundle that is not as it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What was altered: a file of the bundle, `manifest.json`, or `chain`.
    pub what: String,
    /// How.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// What verifying a bundle found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The manifest, if it could be read.
    pub manifest: Option<Manifest>,
    /// Everything altered; empty when the bundle is as it was signed.
    pub problems: Vec<Problem>,
    /// Files whose hashes matched.
    pub files_ok: usize,
}

impl Verification {
    /// True when nothing was altered.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(what: &str, detail: impl Into<String>) -> Problem {
    Problem {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Verifies the bundle in `bundle`. With `trusted`, the signer must be that key; with
/// `previous` (the bundle before it in the chain), its manifest must be the one this bundle
/// names, and it must verify too.
pub fn verify(
    bundle: &Path,
    previous: Option<&Path>,
    trusted: Option<&VerifyingKey>,
) -> Verification {
    let mut v = Verification {
        manifest: None,
        problems: Vec::new(),
        files_ok: 0,
    };
    let manifest_bytes = match std::fs::read(bundle.join(MANIFEST)) {
        Ok(b) => b,
        Err(e) => {
            v.problems
                .push(problem(MANIFEST, format!("cannot be read: {e}")));
            return v;
        }
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            v.problems.push(problem(
                MANIFEST,
                format!("is not a Cairn evidence manifest: {e}"),
            ));
            return v;
        }
    };
    if manifest.format != FORMAT {
        v.problems.push(problem(
            MANIFEST,
            format!("format `{}`, expected `{FORMAT}`", manifest.format),
        ));
    }

    // The signature, then the signer.
    let key = hex::decode(&manifest.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let signature = hex::decode(&manifest.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    match (key, signature) {
        (None, _) => v
            .problems
            .push(problem(MANIFEST, "its public key is not an Ed25519 key")),
        (_, None) => v.problems.push(problem(
            MANIFEST,
            "its signature is not an Ed25519 signature",
        )),
        (Some(key), Some(sig)) => {
            if key.verify(&manifest.signed_bytes(), &sig).is_err() {
                v.problems.push(problem(
                    MANIFEST,
                    "the signature does not verify: the manifest or its signature was altered",
                ));
            }
            if let Some(t) = trusted
                && t != &key
            {
                v.problems.push(problem(
                    MANIFEST,
                    format!(
                        "signed by key {}, not by the trusted key {}",
                        manifest.public_key,
                        hex::encode(t.as_bytes())
                    ),
                ));
            }
        }
    }

    // Every listed file as hashed; nothing missing, nothing added.
    let mut listed = BTreeSet::new();
    for f in &manifest.files {
        let name = f.path.as_str();
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name == MANIFEST {
            v.problems
                .push(problem(name, "is not a file name a bundle may list"));
            continue;
        }
        if !listed.insert(name) {
            v.problems.push(problem(name, "is listed twice"));
            continue;
        }
        match std::fs::read(bundle.join(name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                v.problems.push(problem(name, "is missing (deleted)"));
            }
            Err(e) => v
                .problems
                .push(problem(name, format!("cannot be read: {e}"))),
            Ok(bytes) => {
                let sha = hex::encode(Sha256::digest(&bytes));
                if sha != f.sha256 {
                    v.problems.push(problem(
                        name,
                        format!(
                            "content altered (SHA-256 {sha}, {} bytes; signed {}, {} bytes)",
                            bytes.len(),
                            f.sha256,
                            f.bytes
                        ),
                    ));
                } else {
                    v.files_ok += 1;
                }
            }
        }
    }
    match std::fs::read_dir(bundle) {
        Ok(entries) => {
            let mut extra: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != MANIFEST && !listed.contains(n.as_str()))
                .collect();
            extra.sort();
            for n in extra {
                v.problems
                    .push(problem(&n, "is not in the manifest (added)"));
            }
        }
        Err(e) => v.problems.push(problem(
            &bundle.display().to_string(),
            format!("cannot be listed: {e}"),
        )),
    }

    // The chain.
    if let Some(prev) = previous {
        match std::fs::read(prev.join(MANIFEST)) {
            Err(e) => v.problems.push(problem(
                "chain",
                format!("the previous report's manifest cannot be read: {e}"),
            )),
            Ok(bytes) => {
                let sha = hex::encode(Sha256::digest(&bytes));
                match &manifest.previous {
                    Some(p) if *p == sha => {}
                    Some(p) => v.problems.push(problem(
                        "chain",
                        format!(
                            "this report follows the report with manifest SHA-256 {p}, but {} has {sha}",
                            prev.display()
                        ),
                    )),
                    None => v.problems.push(problem(
                        "chain",
                        "this report names no previous report",
                    )),
                }
                if let Ok(earlier) = serde_json::from_slice::<Manifest>(&bytes)
                    && earlier.public_key != manifest.public_key
                {
                    v.problems.push(problem(
                        "chain",
                        format!(
                            "the previous report was signed by key {}, this one by {}",
                            earlier.public_key, manifest.public_key
                        ),
                    ));
                }
                let earlier = verify(prev, None, trusted);
                v.problems
                    .extend(earlier.problems.into_iter().map(|p| Problem {
                        what: format!("previous report: {}", p.what),
                        detail: p.detail,
                    }));
            }
        }
    }
    v.manifest = Some(manifest);
    v
}
