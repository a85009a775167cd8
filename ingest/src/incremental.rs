//! What every incremental source remembers between runs: the high-water mark of the
//! provider's update time, and the versions already delivered inside the look-back overlap.
//!
//! Sources re-read a window that overlaps the previous run (providers make records visible
//! late); the overlap's versions are recognised here and skipped, so the overlap costs
//! requests, not duplicates.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// High-water mark and the delivered versions of the overlap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    /// Highest update time delivered.
    pub high_water: Option<DateTime<Utc>>,
    /// Dedupe keys of versions delivered inside the overlap → their update time (epoch ms).
    #[serde(default)]
    pub seen: BTreeMap<String, i64>,
}

impl Overlap {
    /// Records a delivered version; false if it was delivered before.
    pub fn remember(&mut self, key: String, updated: DateTime<Utc>) -> bool {
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, updated.timestamp_millis());
        self.high_water = Some(self.high_water.map_or(updated, |h| h.max(updated)));
        true
    }

    /// Forgets versions older than `floor`: no query the source will run returns them (it
    /// asks for newer ones and drops older ones a service returns anyway).
    pub fn prune_before(&mut self, floor: Option<DateTime<Utc>>) {
        if let Some(f) = floor {
            let floor = f.timestamp_millis();
            self.seen.retain(|_, t| *t >= floor);
        }
    }

    /// Where the next query starts: the high-water mark minus the overlap, or `initial` back
    /// from `now` on the first run.
    pub fn next_since(
        &self,
        now: DateTime<Utc>,
        lookback: chrono::Duration,
        initial: chrono::Duration,
    ) -> DateTime<Utc> {
        self.high_water.map_or(now - initial, |h| h - lookback)
    }
}

/// A short, stable key of one version of a record.
pub fn version_key(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
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
    fn versions_dedupe_and_are_pruned_below_the_floor() {
        let mut o = Overlap::default();
        assert!(o.remember("a".into(), t(0)));
        assert!(!o.remember("a".into(), t(0)));
        assert!(o.remember("b".into(), t(3600)));
        assert_eq!(o.high_water, Some(t(3600)));
        o.prune_before(o.high_water.map(|h| h - chrono::Duration::minutes(15)));
        assert_eq!(o.seen.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            o.next_since(
                t(9999),
                chrono::Duration::minutes(15),
                chrono::Duration::days(7)
            ),
            t(3600 - 900)
        );
    }
}
