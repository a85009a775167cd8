//! AWS Security Hub sink: each incident is imported (`BatchImportFindings`) as an ASFF finding
//! of the account's own product, so AWS-side teams see Cairn's correlations in their console.
//! The finding id is the incident's, so a later state of the incident updates the same finding.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use cairn_correlate::store::OutboxEvent;
use cairn_ingest::sources::securityhub::{ImportFinding, SecurityHubConfig, SecurityHubImport};

use super::{SendOutcome, Sink};

/// Security Hub of one account as a sink.
pub struct SecurityHubSink {
    name: String,
    import: SecurityHubImport,
}

impl SecurityHubSink {
    /// A sink importing into `account_id` with `config`'s region, endpoint and credentials.
    pub async fn connect(
        name: &str,
        config: &SecurityHubConfig,
        account_id: &str,
    ) -> Result<SecurityHubSink, String> {
        Ok(SecurityHubSink {
            name: name.to_string(),
            import: SecurityHubImport::connect(config, account_id)
                .await
                .map_err(|e| format!("forward.{name}: {e}"))?,
        })
    }
}

/// ATT&CK enterprise tactic names, for ASFF `Types` (`TTPs/Credential Access`).
const TACTICS: [(&str, &str); 14] = [
    ("TA0043", "Reconnaissance"),
    ("TA0042", "Resource Development"),
    ("TA0001", "Initial Access"),
    ("TA0002", "Execution"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0009", "Collection"),
    ("TA0011", "Command and Control"),
    ("TA0010", "Exfiltration"),
    ("TA0040", "Impact"),
];

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn time(v: &serde_json::Value, key: &str) -> Option<DateTime<Utc>> {
    v[key]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The incident of `event` as an ASFF finding.
pub fn finding(event: &OutboxEvent) -> ImportFinding {
    let p = &event.payload;
    let id = p["id"].as_str().unwrap_or(&event.incident_id).to_string();
    let mut types: Vec<String> = strings(p, "tactics")
        .iter()
        .filter_map(|t| TACTICS.iter().find(|(i, _)| i == t))
        .map(|(_, name)| format!("TTPs/{name}"))
        .collect();
    if types.is_empty() {
        types.push("Unusual Behaviors".into());
    }
    let entities: Vec<(String, String)> = p["entities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let kind = e["kind"].as_str().unwrap_or("entity");
                    let value = e["value"].as_str().unwrap_or_default();
                    // Cloud resources keep their own id; other entities are named by kind.
                    if kind == "resource" {
                        ("Other".to_string(), value.to_string())
                    } else {
                        ("Other".to_string(), format!("{kind}:{value}"))
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let resources = if entities.is_empty() {
        vec![("Other".to_string(), format!("cairn-incident:{id}"))]
    } else {
        entities
    };
    let severity = match event.severity_id {
        2 => "LOW",
        3 => "MEDIUM",
        4 => "HIGH",
        5 | 6 => "CRITICAL",
        _ => "INFORMATIONAL",
    };
    let created = time(p, "created_at").unwrap_or(event.created_at);
    let mut fields = BTreeMap::new();
    fields.insert("cairn/event_id".to_string(), event.event_id.clone());
    fields.insert("cairn/incident_id".to_string(), id.clone());
    fields.insert(
        "cairn/status".to_string(),
        p["status"].as_str().unwrap_or_default().to_string(),
    );
    fields.insert("cairn/sources".to_string(), strings(p, "sources").join(","));
    fields.insert(
        "cairn/techniques".to_string(),
        strings(p, "techniques").join(","),
    );
    ImportFinding {
        id: format!("cairn/{id}"),
        generator_id: "cairn".into(),
        title: format!(
            "[Cairn #{}] {}",
            p["number"].as_i64().unwrap_or_default(),
            p["title"].as_str().unwrap_or_default()
        ),
        description: format!(
            "Cairn incident {id}: {} detections over {} findings from {}, {} to {}.",
            p["detection_count"].as_i64().unwrap_or_default(),
            p["finding_count"].as_i64().unwrap_or_default(),
            strings(p, "sources").join(", "),
            p["first_seen"].as_str().unwrap_or_default(),
            p["last_seen"].as_str().unwrap_or_default()
        ),
        severity: severity.into(),
        types,
        created_at: created,
        updated_at: event.created_at.max(created),
        resources,
        product_fields: fields,
        source_url: None,
    }
}

#[async_trait::async_trait]
impl Sink for SecurityHubSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome> {
        let findings: Vec<ImportFinding> = events.iter().map(finding).collect();
        match self.import.send(&findings).await {
            Err(e) => vec![SendOutcome::RetryAfter(None, e.to_string()); events.len()],
            Ok(report) => {
                let failed: BTreeMap<&str, &str> = report
                    .failed
                    .iter()
                    .map(|(id, why)| (id.as_str(), why.as_str()))
                    .collect();
                findings
                    .iter()
                    .map(|f| match failed.get(f.id.as_str()) {
                        Some(why) if why.contains("Throttl") || why.contains("Internal") => {
                            SendOutcome::RetryAfter(None, why.to_string())
                        }
                        Some(why) => SendOutcome::Rejected(why.to_string()),
                        None if report.imported.contains(&f.id) => SendOutcome::Delivered,
                        None => {
                            SendOutcome::RetryAfter(None, "not in Security Hub's answer".into())
                        }
                    })
                    .collect()
            }
        }
    }
}
