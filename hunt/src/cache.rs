//! Compiled rule sets kept between runs, so the next hunt with the same rules starts without
//! parsing and compiling them again.
//!
//! An entry is keyed by the SHA-256 of Cairn's version, the field mappings and every rule file
//! (name and text): any change compiles afresh. Entries are JSON, written to a temporary file
//! and renamed, so a crash leaves no half entry; an unreadable entry is compiled over.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cairn_rules::sigma::{SigmaMappings, SigmaText, compile};

use crate::index::HuntRule;

/// A rule file that did not become a rule, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotCompiled {
    /// The file.
    pub origin: String,
    /// Why.
    pub reason: String,
}

/// A compiled rule set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompiledSet {
    /// The Cairn version that compiled it.
    pub version: String,
    /// The detection rules, in file order.
    pub rules: Vec<HuntRule>,
    /// Documents that were not compiled.
    pub not_compiled: Vec<NotCompiled>,
    /// Compiled correlation rules (hunt does not run them: they need the correlator's window).
    pub correlations: usize,
    /// Detection rules that only feed a correlation (`generate: false`).
    pub correlation_only: usize,
}

/// How the cache was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// The set came from the cache.
    Hit,
    /// The set was compiled and stored.
    Stored(PathBuf),
    /// The set was compiled; no cache was asked for.
    Off,
    /// The set was compiled; storing it failed (the hunt goes on).
    StoreFailed(String),
}

impl CompiledSet {
    /// Compiles `texts` through `mappings`.
    pub fn compile(texts: &[SigmaText], mappings: &SigmaMappings) -> CompiledSet {
        let import = compile(texts, mappings);
        let rules = HuntRule::from_import(&import);
        CompiledSet {
            version: env!("CARGO_PKG_VERSION").to_string(),
            correlations: import.compiled.len() - rules.len(),
            correlation_only: import.correlation_only,
            rules,
            not_compiled: import
                .unsupported
                .into_iter()
                .map(|u| NotCompiled {
                    origin: u.origin,
                    reason: u.reason,
                })
                .collect(),
        }
    }

    /// The cache key of `texts` compiled through `mappings`.
    pub fn key(texts: &[SigmaText], mappings: &SigmaMappings) -> String {
        let mut h = Sha256::new();
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(env!("CARGO_PKG_VERSION"));
        part(mappings.text());
        for t in texts {
            part(&t.origin);
            part(&t.text);
        }
        hex::encode(h.finalize())
    }

    /// The compiled set from `dir`'s cache when it holds one for these rules, else compiled
    /// now and stored there. `None`: no cache.
    pub fn load_or_compile(
        dir: Option<&Path>,
        texts: &[SigmaText],
        mappings: &SigmaMappings,
    ) -> (CompiledSet, CacheUse) {
        let Some(dir) = dir else {
            return (Self::compile(texts, mappings), CacheUse::Off);
        };
        let path = dir.join(format!("sigma-{}.json", Self::key(texts, mappings)));
        if let Some(set) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CompiledSet>(&b).ok())
            .filter(|s| s.version == env!("CARGO_PKG_VERSION"))
        {
            return (set, CacheUse::Hit);
        }
        let set = Self::compile(texts, mappings);
        let used = match store(dir, &path, &set) {
            Ok(()) => CacheUse::Stored(path),
            Err(e) => CacheUse::StoreFailed(format!("{}: {e}", path.display())),
        };
        (set, used)
    }
}

fn store(dir: &Path, path: &Path, set: &CompiledSet) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(set).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Where compiled rule sets are kept by default: `$CAIRN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cairn/hunt`, else `~/.cache/cairn/hunt`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CAIRN_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("cairn/hunt")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/cairn/hunt")))
}
