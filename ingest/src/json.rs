//! [`Json`]: a JSON tree that borrows its strings from the record's text.
//!
//! `serde_json::Value` allocates a `String` for every key and string value and hashes every key
//! into its map; for a Windows event of 40 short fields that is most of the cost of reading it.
//! Ingest reads files and Kafka messages into this tree instead (strings are slices of the
//! input unless they hold escapes), recognises the format on it, and only builds a `Value`
//! for formats whose normalizer needs one.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A parsed JSON value whose strings borrow from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string (borrowed unless it contained escapes).
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object.
    Object(Object<'a>),
}

/// A JSON object: members in input order. [`get`](Object::get) returns a repeated key's last
/// value, as `serde_json` keeps it; [`iter`](Object::iter) yields every occurrence, so readers
/// that copy members must let a later occurrence replace (or remove) an earlier one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    /// One bit per `(length, first byte)` class of the keys, so most absent keys are
    /// refused without a scan (format recognition asks for many keys a record lacks).
    key_classes: u64,
}

fn key_class(key: &str) -> u64 {
    let first = key.as_bytes().first().copied().unwrap_or(0) as usize;
    1u64 << ((key.len().wrapping_mul(31) ^ first) % 64)
}

impl<'a> Json<'a> {
    /// Parses `text`; strings without escapes borrow from it.
    pub fn parse(text: &'a str) -> serde_json::Result<Json<'a>> {
        serde_json::from_str(text)
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The JSON type name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// A scalar as text: strings that are not blank, numbers and booleans; `None` otherwise.
    pub fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Json::String(s) if !s.trim().is_empty() => Some(Cow::Borrowed(s)),
            Json::Number(n) => Some(Cow::Owned(n.to_string())),
            Json::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    /// An owned `serde_json::Value` of the same content.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(a) => Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(o.to_map()),
        }
    }

    /// A tree borrowing from an already parsed `Value`.
    pub fn from_value(v: &'a Value) -> Json<'a> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            Value::Object(o) => Json::Object(Object::from_map(o)),
        }
    }
}

impl<'a> Object<'a> {
    fn push(&mut self, key: Cow<'a, str>, value: Json<'a>) {
        self.key_classes |= key_class(&key);
        self.members.push((key, value));
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        if self.key_classes & key_class(key) == 0 {
            return None;
        }
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present (even with a null value).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Follows a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Json<'a>> {
        let (first, rest) = keys.split_first()?;
        let mut cur = self.get(first)?;
        for k in rest {
            cur = cur.as_object()?.get(k)?;
        }
        Some(cur)
    }

    /// A non-blank scalar at `keys`, as text.
    pub fn text(&self, keys: &[&str]) -> Option<Cow<'_, str>> {
        self.path(keys).and_then(Json::scalar_text)
    }

    /// Members in input order (a repeated key appears each time).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the object has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// An owned `serde_json` map of the same content.
    pub fn to_map(&self) -> Map<String, Value> {
        self.members
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }

    /// An object borrowing from an already parsed map.
    pub fn from_map(map: &'a Map<String, Value>) -> Object<'a> {
        let mut o = Object::default();
        for (k, v) in map {
            o.push(Cow::Borrowed(k), Json::from_value(v));
        }
        o
    }
}

/// A key or string that borrows from the input when it can.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut o = Object {
            // serde_json gives no size hint; grow from empty so `[{},{},…]` stays small.
            members: Vec::with_capacity(map.size_hint().unwrap_or(0)),
            key_classes: 0,
        };
        while let Some(CowStr(k)) = map.next_key()? {
            let v: Json<'de> = map.next_value()?;
            o.push(k, v);
        }
        Ok(Json::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_matches_serde_json() {
        let text = r#"{"a": "plain", "b": "esc\"aped", "n": 4624, "f": 1.5, "t": true,
            "z": null, "l": [1, "x"], "o": {"k": "v"}, "a": "last"}"#;
        let j = Json::parse(text).expect("parse");
        let o = j.as_object().expect("object");
        assert!(matches!(
            o.get("a"),
            Some(Json::String(Cow::Borrowed("last")))
        ));
        assert!(matches!(o.get("b"), Some(Json::String(Cow::Owned(_)))));
        assert_eq!(o.text(&["n"]).as_deref(), Some("4624"));
        assert_eq!(o.text(&["o", "k"]).as_deref(), Some("v"));
        assert_eq!(o.text(&["z"]), None);
        assert!(o.contains_key("z") && !o.contains_key("missing"));
        let v: Value = serde_json::from_str(text).expect("serde_json");
        assert_eq!(j.to_value(), v);
        assert_eq!(Json::from_value(&v).to_value(), v);
    }
}
