//! The error type of `cairn-correlate`.

/// What can go wrong while correlating or storing, grouped by meaning.
#[derive(Debug, thiserror::Error)]
pub enum CorrelateError {
    /// Configuration that cannot work (bad window, unreadable store path).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store failed; `context` says which operation.
    #[error("store error while {context}: {source}")]
    Storage {
        /// The operation (`committing a page of source file`).
        context: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The findings archive could not be written or read; the message names the file.
    #[error("findings archive: {0}")]
    Archive(String),
    /// Schema migration failed.
    #[error("store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A source failed as a whole (its bad records are dead letters, not errors).
    #[error(transparent)]
    Source(cairn_ingest::IngestError),
    /// A rule failed at run time (its SQL was valid at load).
    #[error("rule {rule_id} failed: {message}")]
    Rule {
        /// The rule id.
        rule_id: String,
        /// What DataFusion reported.
        message: String,
    },
    /// A stored value could not be decoded (corrupt or from an incompatible version).
    #[error("corrupt stored {what}: {message}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        message: String,
    },
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CorrelateError {
    /// Wraps a database error with the operation it interrupted.
    pub fn storage(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> CorrelateError {
        let context = context.into();
        move |source| CorrelateError::Storage { context, source }
    }
}

/// `Result` with [`CorrelateError`].
pub type Result<T, E = CorrelateError> = std::result::Result<T, E>;
