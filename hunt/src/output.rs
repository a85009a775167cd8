//! Writing detections: a table for people, JSON lines and CSV for machines, and a per-rule
//! summary.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};

use crate::index::RuleInfo;
use crate::run::{Detection, HuntReport};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, one detection per line.
    Table,
    /// One JSON object per detection, the event included.
    Jsonl,
    /// RFC 4180 CSV with a header, the event as a JSON string.
    Csv,
}

/// A detection of a Cairn rule (`--rules`) over the whole input, for output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlated {
    /// The rule's id.
    pub rule_id: String,
    /// The detection's title (the rule's, or its row's own).
    pub title: String,
    /// Severity, as Sigma levels are written (`informational` … `critical`).
    pub level: String,
    /// ATT&CK tactics of the rule.
    pub tactics: Vec<String>,
    /// ATT&CK techniques of the rule.
    pub techniques: Vec<String>,
    /// The rule file.
    pub rule_file: String,
    /// The entity (`identity:alice@corp.example`).
    pub entity: String,
    /// Earliest evidence.
    pub first_seen: DateTime<Utc>,
    /// Latest evidence.
    pub last_seen: DateTime<Utc>,
    /// Where each piece of evidence is (`file#EventRecordID` or `file:line`).
    pub evidence: Vec<String>,
}

/// The fields a machine format writes per detection, in order. `kind` is `sigma` for a Sigma
/// rule matching one event, `rule` for a Cairn rule over several (`entity`, `last_seen` and
/// `evidence` are theirs; `time` is their first sighting).
pub const COLUMNS: [&str; 17] = [
    "rule_id",
    "title",
    "level",
    "tactics",
    "techniques",
    "time",
    "channel",
    "event_id",
    "computer",
    "location",
    "rule_file",
    "event",
    "file",
    "kind",
    "entity",
    "last_seen",
    "evidence",
];

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json_of(d: &Detection, r: &RuleInfo, report: &HuntReport) -> serde_json::Value {
    // The event as its JSON when it is JSON (every reader yields JSON), else as text.
    let event = serde_json::from_str::<serde_json::Value>(&d.event)
        .unwrap_or_else(|_| serde_json::Value::String(d.event.clone()));
    serde_json::json!({
        "rule_id": r.id,
        "title": r.title,
        "level": r.level,
        "tactics": r.tactics,
        "techniques": r.techniques,
        "time": d.time.map(millis),
        "channel": d.channel,
        "event_id": d.event_id,
        "computer": d.computer,
        "location": d.location,
        "rule_file": r.origin,
        "event": event,
        "file": report.files.get(d.file as usize).map(|p| p.display().to_string()),
        "kind": "sigma",
        "entity": null,
        "last_seen": null,
        "evidence": null,
    })
}

fn json_of_correlated(c: &Correlated) -> serde_json::Value {
    serde_json::json!({
        "rule_id": c.rule_id,
        "title": c.title,
        "level": c.level,
        "tactics": c.tactics,
        "techniques": c.techniques,
        "time": millis(c.first_seen),
        "channel": null,
        "event_id": null,
        "computer": null,
        "location": null,
        "rule_file": c.rule_file,
        "event": null,
        "file": null,
        "kind": "rule",
        "entity": c.entity,
        "last_seen": millis(c.last_seen),
        "evidence": c.evidence,
    })
}

/// Every detection of `report` as its JSON object: Sigma matches in input order, then Cairn
/// rules' detections by first sighting.
fn objects<'a>(
    rules: &'a [RuleInfo],
    report: &'a HuntReport,
) -> impl Iterator<Item = serde_json::Value> + 'a {
    report
        .detections
        .iter()
        .map(|d| json_of(d, &rules[d.rule as usize], report))
        .chain(report.correlated.iter().map(json_of_correlated))
}

/// Writes the detections of `report` in `format`.
pub fn write(
    out: &mut impl Write,
    format: Format,
    rules: &[RuleInfo],
    report: &HuntReport,
) -> std::io::Result<()> {
    match format {
        Format::Jsonl => {
            for v in objects(rules, report) {
                serde_json::to_writer(&mut *out, &v)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", COLUMNS.join(","))?;
            for v in objects(rules, report) {
                let cells: Vec<String> = COLUMNS
                    .iter()
                    .map(|c| match &v[c] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => csv_cell(s),
                        serde_json::Value::Array(a) => csv_cell(
                            &a.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                        other => csv_cell(&other.to_string()),
                    })
                    .collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
        Format::Table => {
            let rows: Vec<[String; 5]> = report
                .detections
                .iter()
                .map(|d| {
                    let r = &rules[d.rule as usize];
                    [
                        d.time
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        r.level.clone(),
                        format!(
                            "{} {}",
                            d.channel.as_deref().unwrap_or("-"),
                            d.event_id.as_deref().unwrap_or("-")
                        ),
                        d.computer.clone().unwrap_or_default(),
                        r.title.clone(),
                    ]
                })
                .collect();
            table(
                out,
                &["time", "level", "channel event", "computer", "rule"],
                &rows,
            )?;
            if !report.correlated.is_empty() {
                let rows: Vec<[String; 6]> = report
                    .correlated
                    .iter()
                    .map(|c| {
                        let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
                        [
                            at(c.first_seen),
                            at(c.last_seen),
                            c.level.clone(),
                            c.entity.clone(),
                            c.evidence.len().to_string(),
                            c.title.clone(),
                        ]
                    })
                    .collect();
                writeln!(out)?;
                table(
                    out,
                    &[
                        "first seen",
                        "last seen",
                        "level",
                        "entity",
                        "events",
                        "rule",
                    ],
                    &rows,
                )?;
            }
        }
    }
    Ok(())
}

/// The per-rule summary: detections per rule, most first.
pub fn write_summary(
    out: &mut impl Write,
    rules: &[RuleInfo],
    report: &HuntReport,
) -> std::io::Result<()> {
    let mut per_rule: BTreeMap<u32, usize> = BTreeMap::new();
    for d in &report.detections {
        *per_rule.entry(d.rule).or_default() += 1;
    }
    // (detections, position, level, title, file): Sigma rules by their position, then
    // Cairn rules after them by id.
    let mut counts: Vec<(usize, usize, &str, &str, &str)> = per_rule
        .into_iter()
        .map(|(rule, n)| {
            let r = &rules[rule as usize];
            (n, rule as usize, &*r.level, &*r.title, &*r.origin)
        })
        .collect();
    let mut per_cairn_rule: BTreeMap<&str, (usize, &Correlated)> = BTreeMap::new();
    for c in &report.correlated {
        per_cairn_rule.entry(&c.rule_id).or_insert((0, c)).0 += 1;
    }
    for (i, (n, c)) in per_cairn_rule.into_values().enumerate() {
        counts.push((n, rules.len() + i, &c.level, &c.rule_id, &c.rule_file));
    }
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let rows: Vec<[String; 4]> = counts
        .iter()
        .map(|(n, _, level, title, file)| {
            [
                n.to_string(),
                level.to_string(),
                title.to_string(),
                file.to_string(),
            ]
        })
        .collect();
    table(out, &["detections", "level", "rule", "file"], &rows)
}

fn table<const N: usize>(
    out: &mut impl Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A CSV cell, quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_when_they_must_be() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    }
}
