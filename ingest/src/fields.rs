//! [`Fields`]: the source-specific `name → value` strings of a finding (OCSF `unmapped`).
//!
//! A Windows event carries 20–40 `EventData` values, and a map of owned strings costs two
//! allocations and a tree node per value, on the path every record takes. `Fields` keeps all
//! names and values in one text buffer with a sorted index, so filling it costs a few
//! appends; it reads like a sorted map (iteration is by name, as the Arrow `fields` column and
//! the golden files expect).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most names a finding keeps in [`Fields`] (Windows events have under 100).
pub const MAX_FIELDS: usize = 2048;
/// The name under which [`Fields`] counts the names it did not keep.
pub const DROPPED_FIELDS: &str = "cairn.fields_dropped";

/// Source-specific fields of a finding: a map from name to value, ordered by name.
#[derive(Clone, Default)]
pub struct Fields {
    /// Names and values, back to back; replaced values stay behind as unused bytes.
    text: String,
    /// One entry per name, sorted by name.
    entries: Vec<Entry>,
}

/// Byte ranges of `text`, and the name's first bytes for cheap comparisons.
#[derive(Clone, Copy)]
struct Entry {
    /// The name's first 8 bytes, big-endian, zero-padded: ordered as the names are, so the
    /// sorted search compares integers and reads the text only on a tie.
    prefix: u64,
    name: (usize, usize),
    value: (usize, usize),
}

fn prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

impl Fields {
    /// An empty map.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// An empty map with room for `entries` names and `bytes` bytes of text.
    pub fn with_capacity(entries: usize, bytes: usize) -> Fields {
        Fields {
            text: String::with_capacity(bytes),
            entries: Vec::with_capacity(entries),
        }
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, (start, end): (usize, usize)) -> &str {
        &self.text[start..end]
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        let p = prefix(name);
        self.entries
            .binary_search_by(|e| e.prefix.cmp(&p).then_with(|| self.slice(e.name).cmp(name)))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name)
            .ok()
            .map(|i| self.slice(self.entries[i].value))
    }

    /// Whether `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    fn push_text(&mut self, s: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    /// Sets `name` to `value`, replacing an earlier value. Past [`MAX_FIELDS`] names, new
    /// names are not kept; [`DROPPED_FIELDS`] counts them (the record itself stays in `raw`).
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        match self.find(name) {
            Ok(i) => {
                let value = self.push_text(value);
                self.entries[i].value = value;
            }
            // Keeping the index sorted costs a shift per insert: bounded, a hostile record of
            // a million keys cannot make that quadratic.
            Err(_) if self.entries.len() >= MAX_FIELDS && name != DROPPED_FIELDS => {
                let dropped = self
                    .get(DROPPED_FIELDS)
                    .and_then(|d| d.parse::<u64>().ok())
                    .unwrap_or(0);
                self.insert(DROPPED_FIELDS, (dropped + 1).to_string());
            }
            Err(i) => {
                let p = prefix(name);
                let name = self.push_text(name);
                let value = self.push_text(value);
                self.entries.insert(
                    i,
                    Entry {
                        prefix: p,
                        name,
                        value,
                    },
                );
            }
        }
    }

    /// Removes `name` (its text stays behind as unused bytes).
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.entries.remove(i);
        }
    }

    /// Rewrites every value for which `rewrite` returns a replacement.
    pub fn rewrite_values(&mut self, mut rewrite: impl FnMut(&str) -> Option<String>) {
        for i in 0..self.entries.len() {
            if let Some(new) = rewrite(self.slice(self.entries[i].value)) {
                let value = self.push_text(&new);
                self.entries[i].value = value;
            }
        }
    }

    /// `(name, value)` pairs, ordered by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .map(|e| (self.slice(e.name), self.slice(e.value)))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Fields {
        let mut f = Fields::new();
        for (k, v) in iter {
            f.insert(k, v);
        }
        f
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn ExactSizeIterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of field names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::new();
                while let Some((k, v)) =
                    map.next_entry::<std::borrow::Cow<str>, std::borrow::Cow<str>>()?
                {
                    fields.insert(k, v);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_sorted_map() {
        let mut f = Fields::new();
        f.insert("b", "2");
        f.insert("a", "1");
        f.insert("c", "3");
        f.insert("b", "two");
        // Names sharing their first 8 bytes, and one that is a prefix of another.
        f.insert("SubjectUserSid", "S-1");
        f.insert("SubjectUserName", "ann");
        f.insert("SubjectU", "short");
        let names: Vec<_> = f.iter().map(|(k, _)| k).take(3).collect();
        assert_eq!(names, ["SubjectU", "SubjectUserName", "SubjectUserSid"]);
        assert_eq!(f.get("SubjectUserName"), Some("ann"));
        assert_eq!(f.get("SubjectUser"), None);
        f = [("b", "2"), ("a", "1"), ("c", "3"), ("b", "two")]
            .into_iter()
            .collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("b"), Some("two"));
        assert_eq!(f.get("z"), None);
        assert!(f.contains_key("a"));
        let pairs: Vec<_> = f.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("b", "two"), ("c", "3")]);
        f.rewrite_values(|v| (v == "1").then(|| "one".to_string()));
        assert_eq!(f.get("a"), Some("one"));
        let json = serde_json::to_string(&f).expect("serialize");
        assert_eq!(json, r#"{"a":"one","b":"two","c":"3"}"#);
        let back: Fields = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, f);
        let other: Fields = [("c", "3"), ("a", "one"), ("b", "two")]
            .into_iter()
            .collect();
        assert_eq!(other, f);
        f.remove("a");
        assert_eq!(f.get("a"), None);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_record_with_too_many_names_keeps_the_first_and_counts_the_rest() {
        let f: Fields = (0..MAX_FIELDS + 10)
            .map(|i| (format!("k{i:06}"), "v"))
            .collect();
        assert_eq!(f.len(), MAX_FIELDS + 1);
        assert_eq!(f.get(DROPPED_FIELDS), Some("10"));
        assert_eq!(f.get("k000000"), Some("v"));
    }
}
