//! Dead letters: records that could not be read or normalized, kept with their reason.
//!
//! Nothing is dropped silently: a bad record becomes a [`DeadLetter`] that the runner stores in
//! the same transaction as the good records of its page, so an operator can see what failed,
//! where, and why, and re-drive it after a fix.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest part of a bad record kept verbatim; longer ones are cut (and say so).
pub const MAX_RAW_BYTES: usize = 256 * 1024;

/// A record that could not become a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The source id that read it (`file`, `securityhub-prod`, …).
    pub source: String,
    /// Where it was: `path:line`, `path[index]`, a Kafka `topic/partition@offset`, a page URL.
    pub location: String,
    /// Why it was rejected.
    pub reason: String,
    /// The record as received (possibly cut to [`MAX_RAW_BYTES`]).
    pub raw: String,
    /// When Cairn rejected it.
    pub at: DateTime<Utc>,
}

impl DeadLetter {
    /// A dead letter for `raw` at `location`, stamped now.
    pub fn new(source: &str, location: String, reason: String, raw: &[u8]) -> DeadLetter {
        let mut cut = raw.len().min(MAX_RAW_BYTES);
        while cut < raw.len() && cut > 0 && !is_char_boundary(raw, cut) {
            cut -= 1;
        }
        let mut text = String::from_utf8_lossy(&raw[..cut]).into_owned();
        if cut < raw.len() {
            text.push_str(&format!("… [{} more bytes cut]", raw.len() - cut));
        }
        DeadLetter {
            source: source.to_string(),
            location,
            reason,
            raw: text,
            at: Utc::now(),
        }
    }
}

fn is_char_boundary(bytes: &[u8], i: usize) -> bool {
    // A UTF-8 continuation byte is 0b10xx_xxxx.
    bytes.get(i).is_none_or(|b| (b & 0xC0) != 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_cut_on_a_char_boundary() {
        // 3-byte characters: the limit falls inside one, so the cut must move back.
        let raw = "€".repeat(MAX_RAW_BYTES);
        assert_ne!(MAX_RAW_BYTES % 3, 0);
        let d = DeadLetter::new("file", "x:1".into(), "bad".into(), raw.as_bytes());
        let kept = d.raw.split('…').next().expect("kept part");
        assert_eq!(kept.len(), MAX_RAW_BYTES - MAX_RAW_BYTES % 3);
        assert!(kept.chars().all(|c| c == '€'));
        assert!(d.raw.ends_with("more bytes cut]"));
    }
}
