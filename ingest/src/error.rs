//! The error type of `cairn-ingest`.

use std::path::PathBuf;

/// What can go wrong while ingesting, grouped by meaning. Bad *records* are not errors: they
/// become dead letters. These are failures of a whole source or input.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The source's configuration is unusable.
    #[error("invalid configuration of source `{source_id}`: {message}")]
    Config {
        /// The source id.
        source_id: String,
        /// What is wrong.
        message: String,
    },
    /// An input could not be opened or read.
    #[error("cannot read {path}: {err}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        err: std::io::Error,
    },
    /// The upstream service failed or refused.
    #[error("{source_id}: upstream error{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Upstream {
        /// The source id.
        source_id: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// Seconds the upstream asked us to wait, if it said.
        retry_after: Option<u64>,
        /// What happened.
        message: String,
    },
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// An upstream failure without an HTTP status (a directory, a broker, an SDK call).
    pub fn upstream(source_id: &str, message: String) -> IngestError {
        IngestError::Upstream {
            source_id: source_id.to_string(),
            status: None,
            retry_after: None,
            message,
        }
    }
}

/// `Result` with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
