//! The Security Hub source's cursor: per account scope, the high-water mark of `UpdatedAt`,
//! the keys of findings already delivered inside the look-back overlap, and the query in
//! progress (so a restart resumes at the page after the last committed one).

use std::collections::BTreeMap;

use crate::incremental::Overlap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The whole cursor, as stored by the runner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Per scope (role ARN or `default`).
    #[serde(default)]
    pub scopes: BTreeMap<String, ScopeCursor>,
}

/// What a query asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueryKind {
    /// Findings updated at or after `since`, oldest first.
    Updated {
        /// Start of the `UpdatedAt` filter.
        since: DateTime<Utc>,
    },
    /// All open findings (workflow NEW or NOTIFIED, record ACTIVE), to pick up status changes.
    Open {
        /// When this re-read started (becomes `last_reconcile` when it ends).
        started: DateTime<Utc>,
    },
}

/// A query in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCursor {
    /// What it asks for.
    #[serde(flatten)]
    pub kind: QueryKind,
    /// Token of the next page; `None` before the first page.
    pub next_token: Option<String>,
    /// Pages committed so far (for error messages).
    pub pages: u64,
}

/// The state of one account scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeCursor {
    /// High-water `UpdatedAt` and the versions delivered inside the overlap.
    #[serde(flatten)]
    pub overlap: Overlap,
    /// The query in progress, if any.
    pub query: Option<QueryCursor>,
    /// When open findings were last re-read.
    pub last_reconcile: Option<DateTime<Utc>>,
}

impl Cursor {
    /// Parses a stored cursor; an unreadable one is an error rather than a silent restart.
    pub fn parse(s: Option<&str>) -> Result<Cursor, String> {
        match s {
            None => Ok(Cursor::default()),
            Some(text) => serde_json::from_str(text).map_err(|e| format!("unreadable cursor: {e}")),
        }
    }

    /// The cursor as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// A short, stable key of one version of a finding: `(product, id, updated)`.
pub fn dedupe_key(product: &str, id: &str, updated: &str) -> String {
    crate::incremental::version_key(&[product, id, updated])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_280_000 + s, 0).expect("time")
    }

    #[test]
    fn cursor_round_trips_and_bad_text_is_an_error() {
        let mut c = Cursor::default();
        c.scopes.insert(
            "default".into(),
            ScopeCursor {
                query: Some(QueryCursor {
                    kind: QueryKind::Updated { since: t(0) },
                    next_token: Some("tok".into()),
                    pages: 2,
                }),
                ..ScopeCursor::default()
            },
        );
        assert_eq!(Cursor::parse(Some(&c.to_json())), Ok(c));
        assert!(Cursor::parse(Some("{not json")).is_err());
    }
}
