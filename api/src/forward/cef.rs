//! ArcSight Common Event Format (CEF) for incidents, with the format's escaping rules: in the
//! header, `\` and `|` are escaped; in extension values, `\` and `=` are escaped and line
//! breaks are written `\n` and `\r`.

use cairn_correlate::store::OutboxEvent;

/// A header field: `\` → `\\`, `|` → `\|`; a line break, which a header cannot hold, becomes a
/// space.
pub fn header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An extension value: `\` → `\\`, `=` → `\=`, line feed → `\n`, carriage return → `\r`.
pub fn value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// CEF severity (0–10) of an OCSF severity id (0–6).
pub fn severity(ocsf: i32) -> u8 {
    match ocsf {
        1 => 1,
        2 => 3,
        3 => 5,
        4 => 8,
        5 | 6 => 10,
        _ => 0,
    }
}

fn text<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn list(v: &serde_json::Value, key: &str) -> String {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The incident of `event` as one CEF record.
pub fn incident(event: &OutboxEvent) -> String {
    let p = &event.payload;
    let entities: Vec<String> = p["entities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{}:{}", text(e, "kind"), text(e, "value")))
                .collect()
        })
        .unwrap_or_default();
    let ext = [
        ("externalId", text(p, "id").to_string()),
        ("cs1Label", "eventId".to_string()),
        ("cs1", event.event_id.clone()),
        ("cs2Label", "status".to_string()),
        ("cs2", text(p, "status").to_string()),
        ("cs3Label", "tactics".to_string()),
        ("cs3", list(p, "tactics")),
        ("cs4Label", "techniques".to_string()),
        ("cs4", list(p, "techniques")),
        ("cs5Label", "sources".to_string()),
        ("cs5", list(p, "sources")),
        ("cs6Label", "entities".to_string()),
        ("cs6", entities.join(",")),
        ("cn1Label", "incidentNumber".to_string()),
        ("cn1", p["number"].as_i64().unwrap_or_default().to_string()),
        (
            "cnt",
            p["finding_count"].as_i64().unwrap_or_default().to_string(),
        ),
        ("rt", event.created_at.timestamp_millis().to_string()),
    ];
    let ext: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect();
    format!(
        "CEF:0|Cairn|Cairn|{}|incident|{}|{}|{}",
        header(env!("CARGO_PKG_VERSION")),
        header(text(p, "title")),
        severity(event.severity_id),
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping cases of the CEF specification (Micro Focus, "Implementing ArcSight CEF",
    /// revision 25: "Character encoding").
    #[test]
    fn escaping_follows_the_cef_rules() {
        assert_eq!(header("detected a | in packet"), "detected a \\| in packet");
        assert_eq!(
            header("detected a \\ in packet"),
            "detected a \\\\ in packet"
        );
        assert_eq!(header("two\nlines"), "two lines");
        assert_eq!(header("a = b"), "a = b", "= needs no escape in the header");
        assert_eq!(
            value("detected a = in message"),
            "detected a \\= in message"
        );
        assert_eq!(
            value("detected a \\ in packet"),
            "detected a \\\\ in packet"
        );
        assert_eq!(value("line1\nline2\r"), "line1\\nline2\\r");
        assert_eq!(value("a|b"), "a|b", "| needs no escape in extensions");
        assert_eq!(value("\\="), "\\\\\\=");
    }

    #[test]
    fn an_incident_is_one_line_with_its_fields() {
        let event = OutboxEvent {
            seq: 1,
            event_id: "ev1".into(),
            incident_id: "inc-1".into(),
            severity_id: 4,
            payload: serde_json::json!({
                "id": "inc-1", "number": 7, "title": "Guess|ed\npassword", "status": "new",
                "tactics": ["TA0006"], "techniques": ["T1110"], "sources": ["ad.windows"],
                "entities": [{"kind": "identity", "value": "corp\\bob=x"}], "finding_count": 6,
            }),
            created_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            attempts: 0,
        };
        let cef = incident(&event);
        assert!(!cef.contains('\n'));
        assert!(cef.contains("|incident|Guess\\|ed password|8|"), "{cef}");
        assert!(cef.contains("cs6=identity:corp\\\\bob\\=x "), "{cef}");
        assert!(cef.contains("cs1=ev1 "), "{cef}");
        assert!(cef.contains("cn1=7 "), "{cef}");
    }
}
