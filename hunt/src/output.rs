//! Writing detections: a table for people, JSON lines and CSV for machines, and a per-rule
//! summary.

use std::collections::BTreeMap;
use std::io::Write;

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

/// The fields a machine format writes per detection, in order.
pub const COLUMNS: [&str; 13] = [
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
];

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
        "time": d.time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "channel": d.channel,
        "event_id": d.event_id,
        "computer": d.computer,
        "location": d.location,
        "rule_file": r.origin,
        "event": event,
        "file": report.files.get(d.file as usize).map(|p| p.display().to_string()),
    })
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
            for d in &report.detections {
                let r = &rules[d.rule as usize];
                serde_json::to_writer(&mut *out, &json_of(d, r, report))?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", COLUMNS.join(","))?;
            for d in &report.detections {
                let r = &rules[d.rule as usize];
                let v = json_of(d, r, report);
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
    let mut counts: Vec<(u32, usize)> = per_rule.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rows: Vec<[String; 4]> = counts
        .iter()
        .map(|(rule, n)| {
            let r = &rules[*rule as usize];
            [
                n.to_string(),
                r.level.clone(),
                r.title.clone(),
                r.origin.clone(),
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
