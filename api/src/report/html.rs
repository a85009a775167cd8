//! `report.html`: the bundle for people, one self-contained page (no scripts, no fonts, no
//! network).

use std::fmt::Write;

use cairn_correlate::store::IncidentDetail;

use super::Framework;
use super::build::{ControlEvidence, EvidenceFinding};

/// What the page shows.
pub(crate) struct Page<'a> {
    pub framework: Framework,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub generated_at: &'a str,
    pub controls: &'a [ControlEvidence],
    pub findings: &'a [EvidenceFinding],
    pub incidents: &'a [IncidentDetail],
    pub rules: usize,
}

/// Text made safe for HTML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn render(p: &Page<'_>) -> String {
    let mut h = String::new();
    let title = format!("{} evidence", p.framework.title());
    // `write!` to a String cannot fail.
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f3f3f3}}\
.FAILED{{color:#b00020;font-weight:600}}.PASSED{{color:#1b5e20}}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(&title)
    );
    let failed = p.controls.iter().filter(|c| c.status == "FAILED").count();
    let _ = writeln!(
        h,
        "<p>Period: {} to {}. Generated {} by Cairn {}. {} controls with evidence ({} failing), \
{} findings, {} incidents, {} rules in force. The manifest (<code>manifest.json</code>) holds the \
SHA-256 of every file of this bundle and its Ed25519 signature: check it with \
<code>cairn report verify</code>.</p>",
        escape(p.from.unwrap_or("the beginning")),
        escape(p.to.unwrap_or("now")),
        escape(p.generated_at),
        env!("CARGO_PKG_VERSION"),
        p.controls.len(),
        failed,
        p.findings.len(),
        p.incidents.len(),
        p.rules
    );
    h.push_str("<h2>Controls</h2>\n<table><tr><th>control</th><th>status</th><th>checks</th><th>last check</th><th>incidents</th></tr>\n");
    for c in p.controls {
        let checks: Vec<String> = c.checks.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.control),
            escape(&c.status),
            escape(&c.status),
            escape(&checks.join(", ")),
            escape(c.history.last().map_or("", |h| h.time.as_str())),
            escape(&c.incidents.join(", "))
        );
    }
    h.push_str("</table>\n<h2>Incidents</h2>\n<table><tr><th>#</th><th>title</th><th>severity</th><th>status</th><th>first seen</th><th>last seen</th><th>sources</th></tr>\n");
    for d in p.incidents {
        let i = &d.incident;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.number,
            escape(&i.title),
            escape(&i.severity),
            i.status,
            i.first_seen.to_rfc3339(),
            i.last_seen.to_rfc3339(),
            escape(&i.sources.join(", "))
        );
    }
    h.push_str("</table>\n<h2>Findings</h2>\n<table><tr><th>time</th><th>status</th><th>title</th><th>resource</th><th>account</th><th>controls</th></tr>\n");
    for f in p.findings {
        let status = f.compliance_status.as_deref().unwrap_or("");
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.time),
            escape(status),
            escape(status),
            escape(f.title.as_deref().unwrap_or("")),
            escape(f.resource_uid.as_deref().unwrap_or("")),
            escape(f.account_uid.as_deref().unwrap_or("")),
            escape(&f.controls.join(", "))
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_in_findings_is_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
