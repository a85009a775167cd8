//! The signing key and the chain of reports, kept in the data folder.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::ReportError;

/// Reads the Ed25519 signing key at `path` (its 32-byte seed in hex), creating it (readable by
/// its owner only) when there is none.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bad = |reason: String| ReportError::Key {
                path: path.display().to_string(),
                reason,
            };
            let bytes = hex::decode(text.trim()).map_err(|e| bad(e.to_string()))?;
            let seed: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| bad(format!("{} bytes, not 32", b.len())))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| ReportError::Key {
                path: path.display().to_string(),
                reason: format!("no randomness to make one: {e}"),
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
            }
            write_private(path, &hex::encode(seed))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(ReportError::io(path)(e)),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), ReportError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(ReportError::io(path))?;
    f.write_all(text.as_bytes()).map_err(ReportError::io(path))
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(ReportError::io(path))
}

/// A public key as the manifest writes it.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// The last report made from this data folder: the SHA-256 of its manifest, which the next
/// report names as its `previous`.
pub struct Chain {
    path: PathBuf,
}

impl Chain {
    /// The chain kept in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Chain {
        Chain { path: path.into() }
    }

    /// The hash of the last report's manifest, if a report was made.
    pub fn last(&self) -> Result<Option<String>, ReportError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(Some(t.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReportError::io(&self.path)(e)),
        }
    }

    /// Holds the chain's lock file until the returned file is dropped.
    fn lock(&self) -> Result<std::fs::File, ReportError> {
        let path = self.path.with_extension("lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ReportError::io(&path))?;
        file.lock().map_err(ReportError::io(&path))?;
        Ok(file)
    }

    /// Records `manifest_sha256` as the last report.
    pub fn advance(&self, manifest_sha256: &str) -> Result<(), ReportError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, manifest_sha256).map_err(ReportError::io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(ReportError::io(&self.path))
    }
}

/// The server's and the CLI's way to make reports: one key, one chain, one report at a time
/// (two at once would both name the same previous report and fork the chain).
pub struct Signer {
    key: SigningKey,
    chain: Chain,
    turn: tokio::sync::Mutex<()>,
}

impl Signer {
    /// The key in `key` (made on first use) and the chain in `chain`.
    pub fn open(key: &Path, chain: impl Into<PathBuf>) -> Result<Signer, ReportError> {
        Ok(Signer {
            key: load_or_create_key(key)?,
            chain: Chain::new(chain),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// `signing.key` and `chain` in `dir`.
    pub fn in_dir(dir: &Path) -> Result<Signer, ReportError> {
        Signer::open(&dir.join("signing.key"), dir.join("chain"))
    }

    /// The public key reports are signed with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Writes the bundle for `request` into `out`, chained to the last report, hands it to
    /// `finish` (to archive or send it), and only then makes it the last report. Returns its
    /// manifest, the SHA-256 of `manifest.json`, and what `finish` returned.
    ///
    /// One report at a time, across processes too (a lock file beside the chain): the CLI and a
    /// server on one data folder cannot fork the chain.
    pub async fn report<T>(
        &self,
        store: &dyn cairn_correlate::Store,
        rules: &cairn_rules::RuleSet,
        request: &super::EvidenceRequest,
        out: &Path,
        finish: impl FnOnce(&Path) -> Result<T, ReportError>,
    ) -> Result<(super::Manifest, String, T), ReportError> {
        let _turn = self.turn.lock().await;
        let _lock = self.chain.lock()?;
        let (manifest, sha) =
            super::build(store, rules, request, out, &self.key, self.chain.last()?).await?;
        let finished = finish(out)?;
        self.chain.advance(&sha)?;
        Ok((manifest, sha, finished))
    }
}
