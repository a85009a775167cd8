//! The configuration file (`cairn.toml`): one TOML file, unknown keys rejected.
//!
//! ```toml
//! [store]
//! path = "cairn-data/cairn.db"
//!
//! [correlate]
//! window = "24h"
//! lateness = "1h"
//! merge_window = "24h"
//!
//! [rules]
//! builtin = true
//! dirs = ["rules"]
//! # sigma_mappings = "sigma-mappings.yml"
//!
//! [api]
//! listen = "127.0.0.1:8080"
//!
//! [sources.exports]
//! type = "file"
//! paths = ["/var/lib/cairn/inbox"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use cairn_correlate::CorrelateConfig;
use cairn_ingest::sources::SourceConfig;
use cairn_rules::rule::parse_window;

/// A configuration problem, with the file it is in.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        err: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite file of the embedded store.
    pub path: Option<PathBuf>,
}

/// `[correlate]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CorrelateSection {
    /// Event-time span of the correlation window (`24h`).
    pub window: Option<String>,
    /// How late a record may arrive and still correlate fully (`1h`).
    pub lateness: Option<String>,
    /// How far apart detections may be and still merge (`24h`).
    pub merge_window: Option<String>,
}

/// `[rules]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Load the built-in pack (default true).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Folders of site rules (Cairn rule files and Sigma files).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// A Sigma field-mapping file replacing the bundled `rules/sigma/mappings.yml`.
    #[serde(default)]
    pub sigma_mappings: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for RulesSection {
    fn default() -> Self {
        RulesSection {
            builtin: true,
            dirs: Vec::new(),
            sigma_mappings: None,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
}

/// `[evidence]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSection {
    /// The Ed25519 signing key of evidence reports (64 hex digits; made on first use; default
    /// `<data dir>/evidence/signing.key`).
    pub signing_key: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[correlate]`.
    #[serde(default)]
    pub correlate: CorrelateSection,
    /// `[rules]`.
    #[serde(default)]
    pub rules: RulesSection,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiSection,
    /// `[sources.<id>]`.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[evidence]`.
    #[serde(default)]
    pub evidence: EvidenceSection,
    /// `[forward.<name>]`: SIEM sinks.
    #[serde(default)]
    pub forward: BTreeMap<String, crate::forward::SinkConfig>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks configuration text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.correlate_config(path)?;
        Ok(config)
    }

    /// The correlator settings, defaults filled in.
    pub fn correlate_config(&self, path: &Path) -> Result<CorrelateConfig, ConfigError> {
        let mut c = CorrelateConfig::default();
        let parse =
            |name: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(s) => parse_window(s).ok_or_else(|| ConfigError::Invalid {
                        path: path.to_path_buf(),
                        message: format!("correlate.{name} `{s}` must look like 30m, 24h or 2d"),
                    }),
                }
            };
        c.window = parse("window", &self.correlate.window, c.window)?;
        c.lateness = parse("lateness", &self.correlate.lateness, c.lateness)?;
        c.merge_window = parse("merge_window", &self.correlate.merge_window, c.merge_window)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cairn.example.toml");
        let config = Config::load(&path).expect("example config is valid");
        assert!(config.sources.contains_key("exports"));
        assert!(config.forward.contains_key("qradar"));
    }

    #[test]
    fn unknown_keys_and_bad_windows_are_refused() {
        let err = Config::parse(Path::new("c.toml"), "[store]\npth = \"x\"\n").expect_err("typo");
        assert!(err.to_string().contains("unknown field `pth`"), "{err}");
        let err = Config::parse(Path::new("c.toml"), "[correlate]\nwindow = \"soon\"\n")
            .expect_err("bad window");
        assert!(err.to_string().contains("correlate.window `soon`"), "{err}");
    }
}
