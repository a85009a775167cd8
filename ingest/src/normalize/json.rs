//! Small, total helpers for reading untrusted JSON: every accessor returns `Option`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::NormalizeError;

/// The JSON type name of `v`, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Follows a path of object keys.
pub(crate) fn path<'a>(obj: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    let mut cur = obj.get(*first)?;
    for k in rest {
        cur = cur.as_object()?.get(*k)?;
    }
    Some(cur)
}

/// A non-empty string at `keys`; numbers and booleans are rendered as text.
pub(crate) fn text(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    path(obj, keys).and_then(scalar_text)
}

/// A scalar as text; `None` for null, empty strings, arrays and objects.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Windows and many exporters write `-` for "no value"; treat it as absent.
pub(crate) fn meaningful(s: Option<String>) -> Option<String> {
    s.filter(|v| {
        let t = v.trim();
        !t.is_empty() && t != "-"
    })
}

/// Strings of an array at `keys` (non-strings skipped).
pub(crate) fn strings(obj: &Map<String, Value>, keys: &[&str]) -> Vec<String> {
    path(obj, keys)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(scalar_text).collect())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp, or a zone-less `YYYY-MM-DD HH:MM:SS[.f]` taken as UTC.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Earliest event time Cairn accepts (1990-01-01); earlier ones are clock or parsing errors.
const EARLIEST_MS: i64 = 631_152_000_000;
/// How far in the future an event time may lie (clock skew between hosts).
const MAX_SKEW_HOURS: i64 = 24;

/// Parses a timestamp and refuses implausible ones: a record dated before 1990 or more than a
/// day ahead would move or escape the correlation window.
pub(crate) fn checked_time(
    format: &'static str,
    field: &'static str,
    raw: &str,
) -> Result<DateTime<Utc>, NormalizeError> {
    let t = parse_time(raw).ok_or_else(|| NormalizeError::InvalidField {
        format,
        field,
        value: truncate(raw),
        reason: "not an RFC 3339 timestamp".into(),
    })?;
    let latest = Utc::now() + chrono::Duration::hours(MAX_SKEW_HOURS);
    if t.timestamp_millis() < EARLIEST_MS || t > latest {
        return Err(NormalizeError::InvalidField {
            format,
            field,
            value: truncate(raw),
            reason: format!(
                "implausible event time (before 1990 or more than {MAX_SKEW_HOURS} h ahead)"
            ),
        });
    }
    Ok(t)
}

/// The first of `keys` that holds a timestamp; an unparseable or implausible one is an error
/// because it would silently misplace the record in time.
pub(crate) fn first_time(
    obj: &Map<String, Value>,
    format: &'static str,
    candidates: &[(&'static str, &[&str])],
) -> Result<Option<DateTime<Utc>>, NormalizeError> {
    for (name, keys) in candidates {
        if let Some(raw) = text(obj, keys) {
            return checked_time(format, name, &raw).map(Some);
        }
    }
    Ok(None)
}

/// At most 80 characters of `s`, for error messages.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(80).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_long_fractions_and_without_zone() {
        let t = parse_time("2021-04-27T12:19:27.7211305Z").expect("graph time");
        assert_eq!(t.timestamp_millis(), 1_619_525_967_721);
        let t = parse_time("2020-09-14 08:06:02").expect("nxlog time");
        assert_eq!(t.to_rfc3339(), "2020-09-14T08:06:02+00:00");
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn implausible_times_are_refused() {
        assert!(checked_time("t", "time", "1970-01-01T00:00:00Z").is_err());
        assert!(checked_time("t", "time", "9999-01-01T00:00:00Z").is_err());
        assert!(checked_time("t", "time", "2024-05-01T00:00:00Z").is_ok());
    }

    #[test]
    fn dash_means_absent() {
        assert_eq!(meaningful(Some("-".into())), None);
        assert_eq!(meaningful(Some(" x ".into())), Some(" x ".into()));
    }
}
