//! The Security Hub source's cursor: per account scope, the high-water mark of `UpdatedAt`,
//! the keys of findings already delivered inside the look-back overlap, and the query in
//! progress (so a restart resumes at the page after the last committed one).

use std::collections::BTreeMap;

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
    /// Highest `UpdatedAt` delivered.
    pub high_water: Option<DateTime<Utc>>,
    /// Dedupe keys of findings delivered with `UpdatedAt` inside the look-back overlap →
    /// their `UpdatedAt` (epoch ms), pruned as the high-water mark moves.
    #[serde(default)]
    pub seen: BTreeMap<String, i64>,
    /// The query in progress, if any.
    pub query: Option<QueryCursor>,
    /// When open findings were last re-read.
    pub last_reconcile: Option<DateTime<Utc>>,
}

impl ScopeCursor {
    /// Records a delivered finding; false if it was delivered before (same key).
    pub fn remember(&mut self, key: String, updated: DateTime<Utc>) -> bool {
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, updated.timestamp_millis());
        self.high_water = Some(self.high_water.map_or(updated, |h| h.max(updated)));
        true
    }

    /// Forgets keys of versions older than `floor`: no query the source will run returns
    /// them (it asks for newer ones and drops older ones a service returns anyway).
    pub fn prune_before(&mut self, floor: Option<DateTime<Utc>>) {
        if let Some(f) = floor {
            let floor = f.timestamp_millis();
            self.seen.retain(|_, t| *t >= floor);
        }
    }
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
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [product, id, updated] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_280_000 + s, 0).expect("time")
    }

    #[test]
    fn seen_keys_dedupe_and_are_pruned_below_the_overlap() {
        let mut c = ScopeCursor::default();
        assert!(c.remember("a".into(), t(0)));
        assert!(!c.remember("a".into(), t(0)));
        assert!(c.remember("b".into(), t(3600)));
        assert_eq!(c.high_water, Some(t(3600)));
        c.prune_before(c.high_water.map(|h| h - chrono::Duration::minutes(15)));
        assert_eq!(c.seen.keys().collect::<Vec<_>>(), ["b"]);
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
