//! Compliance evidence reports: a signed bundle of the findings and incidents that bear on a
//! framework's controls over a period (`cairn report evidence`), and its verification
//! (`cairn report verify`).
//!
//! A bundle is a folder: `controls.json` (each control's findings, status over the period and
//! incidents), `findings.jsonl` (the findings with their verbatim records), `incidents.json`,
//! `rules.json` (the rule definitions in force), `report.html` for people, and `manifest.json`
//! with the SHA-256 of every file, the SHA-256 of the previous report's manifest (a chain), and
//! an Ed25519 signature over the manifest. Changing, adding, removing or reordering anything
//! breaks a hash or the signature, and [`verify()`] names what.

mod build;
mod html;
mod keys;
mod verify;

pub use build::{EvidenceRequest, build};
pub use keys::{Chain, Signer, load_or_create_key, public_key_hex};
pub use verify::{Problem, Verification, verify};

use serde::{Deserialize, Serialize};

/// What can go wrong making or reading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] cairn_correlate::CorrelateError),
    /// A file could not be written or read.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        err: std::io::Error,
    },
    /// The output folder already holds files.
    #[error("{0} is not empty: a bundle is written into a new folder")]
    NotEmpty(String),
    /// The signing key file is not a key.
    #[error("{path} is not an Ed25519 signing key (64 hex digits): {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value could not be serialized.
    #[error("cannot write {what}: {err}")]
    Json {
        /// What.
        what: String,
        /// Why.
        err: serde_json::Error,
    },
}

impl ReportError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |err| ReportError::Io {
            path: path.display().to_string(),
            err,
        }
    }
}

/// A compliance framework whose controls findings can bear on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Framework {
    /// CIS AWS Foundations Benchmark.
    #[value(name = "cis-aws")]
    CisAws,
    /// NIST SP 800-53.
    #[value(name = "nist-800-53")]
    #[serde(rename = "nist-800-53")]
    Nist80053,
    /// PCI DSS.
    #[value(name = "pci-dss")]
    PciDss,
    /// HIPAA.
    #[value(name = "hipaa")]
    Hipaa,
    /// FedRAMP.
    #[value(name = "fedramp")]
    Fedramp,
}

impl Framework {
    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            Framework::CisAws => "CIS AWS Foundations Benchmark",
            Framework::Nist80053 => "NIST SP 800-53",
            Framework::PciDss => "PCI DSS",
            Framework::Hipaa => "HIPAA",
            Framework::Fedramp => "FedRAMP",
        }
    }

    /// Whether a finding's control or requirement belongs to this framework: Security Hub's
    /// `Compliance.RelatedRequirements` (`CIS AWS Foundations Benchmark v1.2.0/1.22`,
    /// `NIST.800-53.r5 AC-2`, `PCI DSS v3.2.1/7.2.1`), its standards control paths
    /// (`cis-aws-foundations-benchmark/v/1.2.0/3`, `pci-dss/v/3.2.1/PCI.IAM.1`), and Defender for
    /// Cloud's regulatory standards (`HIPAA HITRUST`, `FedRAMP H`).
    pub fn covers(self, control: &str) -> bool {
        let c = control.trim().to_ascii_lowercase();
        match self {
            Framework::CisAws => {
                c.starts_with("cis aws foundations") || c.starts_with("cis-aws-foundations")
            }
            Framework::Nist80053 => {
                c.starts_with("nist.800-53")
                    || c.starts_with("nist 800-53")
                    || c.starts_with("nist-800-53")
                    || c.starts_with("nist sp 800-53")
                    || c.starts_with("nist-sp-800-53")
            }
            Framework::PciDss => c.starts_with("pci dss") || c.starts_with("pci-dss"),
            Framework::Hipaa => c.contains("hipaa"),
            Framework::Fedramp => c.contains("fedramp"),
        }
    }

    /// The command-line name (`cis-aws`).
    pub fn id(self) -> &'static str {
        match self {
            Framework::CisAws => "cis-aws",
            Framework::Nist80053 => "nist-800-53",
            Framework::PciDss => "pci-dss",
            Framework::Hipaa => "hipaa",
            Framework::Fedramp => "fedramp",
        }
    }
}

/// Name of the manifest in a bundle.
pub const MANIFEST: &str = "manifest.json";

/// Version of the bundle format.
pub const FORMAT: &str = "cairn-evidence/1";

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its name in the bundle folder.
    pub path: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// `manifest.json`: what a bundle holds, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The framework (`cis-aws`).
    pub framework: Framework,
    /// Start of the period (RFC 3339), if bounded.
    pub from: Option<String>,
    /// End of the period (exclusive), if bounded.
    pub to: Option<String>,
    /// When the bundle was made.
    pub generated_at: String,
    /// The Cairn version that made it.
    pub cairn_version: String,
    /// Every other file of the bundle, by name.
    pub files: Vec<ManifestFile>,
    /// SHA-256 of the previous report's `manifest.json`, hex; `None` for the first report.
    pub previous: Option<String>,
    /// The Ed25519 public key that signed it, hex.
    pub public_key: String,
    /// The Ed25519 signature of [`Manifest::signed_bytes`], hex.
    pub signature: String,
}

impl Manifest {
    /// The bytes the signature covers: the manifest as JSON with an empty signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest {
            signature: String::new(),
            ..self.clone()
        };
        // A struct of strings and lists always serializes.
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}

/// A date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!(
                "`{s}` is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T00:00:00Z)"
            )
        })
}

/// The bundle in `dir` as a tar archive whose entries sit under `name/`, in manifest order
/// with the manifest last.
pub fn archive(dir: &std::path::Path, name: &str) -> Result<Vec<u8>, ReportError> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join(MANIFEST)).map_err(ReportError::io(&dir.join(MANIFEST)))?,
    )
    .map_err(|err| ReportError::Json {
        what: MANIFEST.into(),
        err,
    })?;
    let mut tar = tar::Builder::new(Vec::new());
    let names = manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(std::iter::once(MANIFEST));
    for file in names {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(ReportError::io(&path))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        header.set_cksum();
        tar.append_data(&mut header, format!("{name}/{file}"), bytes.as_slice())
            .map_err(ReportError::io(&path))?;
    }
    tar.into_inner().map_err(ReportError::io(dir))
}
