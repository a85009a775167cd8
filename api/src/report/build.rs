//! Making a bundle from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use cairn_correlate::Store;
use cairn_correlate::archive::all_findings;
use cairn_correlate::store::{IncidentDetail, IncidentFilter};
use cairn_ingest::Finding;
use cairn_rules::RuleSet;

use super::{FORMAT, Framework, MANIFEST, Manifest, ManifestFile, ReportError, html, keys};

/// What to report on.
#[derive(Debug, Clone)]
pub struct EvidenceRequest {
    /// The framework.
    pub framework: Framework,
    /// Start of the period (event time), if bounded.
    pub from: Option<DateTime<Utc>>,
    /// End of the period (exclusive), if bounded.
    pub to: Option<DateTime<Utc>>,
}

/// A finding as evidence: what an auditor reads of it, and the record itself.
#[derive(Debug, Serialize)]
pub(crate) struct EvidenceFinding {
    pub source: String,
    pub finding_uid: String,
    pub time: String,
    pub title: Option<String>,
    pub severity: String,
    /// `Compliance.Status` of the check (`PASSED`, `FAILED`, `WARNING`, `NOT_AVAILABLE`).
    pub compliance_status: Option<String>,
    /// The finding's controls of this framework.
    pub controls: Vec<String>,
    pub cloud_provider: Option<String>,
    pub account_uid: Option<String>,
    pub region: Option<String>,
    pub resource_uid: Option<String>,
    /// Cairn incidents whose evidence includes it (ids).
    pub incidents: Vec<String>,
    /// The record as the provider sent it.
    pub raw: serde_json::Value,
}

/// One control's evidence over the period.
#[derive(Debug, Serialize)]
pub(crate) struct ControlEvidence {
    pub control: String,
    /// The status of its latest check in the period: `FAILED` if any resource's latest check
    /// failed, else the latest status seen.
    pub status: String,
    /// Checks per status over the period.
    pub checks: BTreeMap<String, usize>,
    /// Every check in time order: when, which finding and resource, and its status.
    pub history: Vec<ControlCheck>,
    /// Detections of rules that monitor it (a rule's `compliance` list), by first sighting.
    pub detections: Vec<ControlDetection>,
    /// Incidents that bear on it (ids).
    pub incidents: Vec<String>,
}

/// A detection of a rule that monitors a control.
#[derive(Debug, Serialize)]
pub(crate) struct ControlDetection {
    pub detection_id: String,
    pub rule_id: String,
    pub title: String,
    pub first_seen: String,
    pub last_seen: String,
    pub incident_id: String,
}

/// One check of a control.
#[derive(Debug, Serialize)]
pub(crate) struct ControlCheck {
    pub time: String,
    pub finding_uid: String,
    pub resource_uid: Option<String>,
    pub status: String,
}

impl ControlEvidence {
    fn new(control: &str) -> ControlEvidence {
        ControlEvidence {
            control: control.to_string(),
            status: String::new(),
            checks: BTreeMap::new(),
            history: Vec::new(),
            detections: Vec::new(),
            incidents: Vec::new(),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, ReportError> {
    serde_json::to_vec_pretty(value).map_err(|err| ReportError::Json {
        what: what.into(),
        err,
    })
}

/// Every incident (merged ones included) with evidence in or after the period's start.
async fn incidents(
    store: &dyn Store,
    from: Option<DateTime<Utc>>,
) -> Result<Vec<IncidentDetail>, ReportError> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .incidents(&IncidentFilter {
                since: from,
                limit: 500,
                before_number: before,
                ..IncidentFilter::default()
            })
            .await?;
        for i in &page.items {
            if let Some(d) = store.incident(&i.id).await? {
                out.push(d);
            }
        }
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    Ok(out)
}

/// Writes the bundle for `request` into `out` (a new or empty folder), signed with `key` and
/// chained to the report whose manifest hash `previous` is; returns its manifest and the
/// SHA-256 of `manifest.json`, which the next report chains to.
pub async fn build(
    store: &dyn Store,
    rules: &RuleSet,
    request: &EvidenceRequest,
    out: &Path,
    key: &SigningKey,
    previous: Option<String>,
) -> Result<(Manifest, String), ReportError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(ReportError::io(out))?;
        if entries.next().is_some() {
            return Err(ReportError::NotEmpty(out.display().to_string()));
        }
    }
    std::fs::create_dir_all(out).map_err(ReportError::io(out))?;
    let framework = request.framework;

    let findings: Vec<Finding> = all_findings(store, request.from, request.to)
        .await?
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| f.compliance_controls.iter().any(|c| framework.covers(c)))
        .collect();
    let uids: BTreeSet<&str> = findings.iter().map(|f| f.finding_uid.as_str()).collect();

    // Incidents whose detections cite one of these findings, or come from a rule that
    // monitors one of the framework's controls.
    let mut incidents_of: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut monitored: BTreeMap<String, Vec<ControlDetection>> = BTreeMap::new();
    let mut bearing = Vec::new();
    let in_period =
        |t: DateTime<Utc>| request.from.is_none_or(|f| t >= f) && request.to.is_none_or(|e| t < e);
    for detail in incidents(store, request.from).await? {
        let mut cited = false;
        for d in &detail.detections {
            let controls = rules
                .get(&d.rule_id)
                .map(|r| r.compliance.as_slice())
                .unwrap_or_default();
            for c in controls.iter().filter(|c| framework.covers(c)) {
                if in_period(d.first_seen) {
                    monitored
                        .entry(c.clone())
                        .or_default()
                        .push(ControlDetection {
                            detection_id: d.id.clone(),
                            rule_id: d.rule_id.clone(),
                            title: d.title.clone(),
                            first_seen: rfc3339(d.first_seen),
                            last_seen: rfc3339(d.last_seen),
                            incident_id: detail.incident.id.clone(),
                        });
                    cited = true;
                }
            }
            for uid in &d.finding_uids {
                if let Some(u) = uids.get(uid.as_str()) {
                    incidents_of
                        .entry(u)
                        .or_default()
                        .insert(detail.incident.id.clone());
                    cited = true;
                }
            }
        }
        if cited {
            bearing.push(detail);
        }
    }

    let mut evidence = Vec::with_capacity(findings.len());
    let mut controls: BTreeMap<String, ControlEvidence> = BTreeMap::new();
    for f in &findings {
        let status = f.fields.get("Compliance.Status").map(str::to_string);
        let incidents: Vec<String> = incidents_of
            .get(f.finding_uid.as_str())
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mine: Vec<String> = f
            .compliance_controls
            .iter()
            .filter(|c| framework.covers(c))
            .cloned()
            .collect();
        for c in &mine {
            let e = controls
                .entry(c.clone())
                .or_insert_with(|| ControlEvidence::new(c));
            let s = status.clone().unwrap_or_else(|| "UNKNOWN".into());
            *e.checks.entry(s.clone()).or_default() += 1;
            e.history.push(ControlCheck {
                time: rfc3339(f.time),
                finding_uid: f.finding_uid.clone(),
                resource_uid: f.resource_uid.clone(),
                status: s,
            });
            e.incidents.extend(incidents.iter().cloned());
        }
        evidence.push(EvidenceFinding {
            source: f.source.clone(),
            finding_uid: f.finding_uid.clone(),
            time: rfc3339(f.time),
            title: f.title.clone(),
            severity: f.severity.clone(),
            compliance_status: status,
            controls: mine,
            cloud_provider: f.cloud_provider.clone(),
            account_uid: f.account_uid.clone(),
            region: f.region.clone(),
            resource_uid: f.resource_uid.clone(),
            incidents,
            raw: serde_json::from_str(&f.raw)
                .unwrap_or_else(|_| serde_json::Value::String(f.raw.clone())),
        });
    }
    for (control, detections) in monitored {
        let e = controls
            .entry(control.clone())
            .or_insert_with(|| ControlEvidence::new(&control));
        e.incidents
            .extend(detections.iter().map(|d| d.incident_id.clone()));
        e.detections = detections;
    }
    for c in controls.values_mut() {
        c.detections.sort_by(|a, b| {
            (&a.first_seen, &a.detection_id).cmp(&(&b.first_seen, &b.detection_id))
        });
        c.detections
            .dedup_by(|a, b| a.detection_id == b.detection_id);
        if !c.detections.is_empty() {
            c.checks.insert("DETECTED".into(), c.detections.len());
        }
        c.history
            .sort_by(|a, b| (&a.time, &a.finding_uid).cmp(&(&b.time, &b.finding_uid)));
        c.incidents.sort();
        c.incidents.dedup();
        // The latest check of each resource decides: one failing resource fails the control.
        let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
        for h in &c.history {
            latest.insert(
                h.resource_uid.as_deref().unwrap_or(&h.finding_uid),
                &h.status,
            );
        }
        // Without configuration checks, a monitored control's status is what its rules saw.
        c.status = if latest.values().any(|s| *s == "FAILED") {
            "FAILED".into()
        } else if let Some(h) = c.history.last() {
            h.status.clone()
        } else if !c.detections.is_empty() {
            "DETECTED".into()
        } else {
            "UNKNOWN".into()
        };
    }

    let mut findings_jsonl = Vec::new();
    for e in &evidence {
        serde_json::to_writer(&mut findings_jsonl, e).map_err(|err| ReportError::Json {
            what: "findings.jsonl".into(),
            err,
        })?;
        findings_jsonl.push(b'\n');
    }
    let controls: Vec<ControlEvidence> = controls.into_values().collect();
    let rules_in_force: Vec<&cairn_rules::Rule> = rules.rules().collect();
    let generated_at = rfc3339(Utc::now());
    let period = (request.from.map(rfc3339), request.to.map(rfc3339));
    let page = html::render(&html::Page {
        framework,
        from: period.0.as_deref(),
        to: period.1.as_deref(),
        generated_at: &generated_at,
        controls: &controls,
        findings: &evidence,
        incidents: &bearing,
        rules: rules_in_force.len(),
    });
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("controls.json", to_json("controls.json", &controls)?),
        ("findings.jsonl", findings_jsonl),
        ("incidents.json", to_json("incidents.json", &bearing)?),
        ("report.html", page.into_bytes()),
        ("rules.json", to_json("rules.json", &rules_in_force)?),
    ];

    let mut listed = Vec::new();
    for (name, bytes) in &files {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(ReportError::io(&path))?;
        listed.push(ManifestFile {
            path: (*name).to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        });
    }
    let mut manifest = Manifest {
        format: FORMAT.into(),
        framework,
        from: period.0,
        to: period.1,
        generated_at,
        cairn_version: env!("CARGO_PKG_VERSION").into(),
        files: listed,
        previous,
        public_key: keys::public_key_hex(&key.verifying_key()),
        signature: String::new(),
    };
    manifest.signature = hex::encode(key.sign(&manifest.signed_bytes()).to_bytes());
    let bytes = to_json(MANIFEST, &manifest)?;
    let path = out.join(MANIFEST);
    std::fs::write(&path, &bytes).map_err(ReportError::io(&path))?;
    Ok((manifest, hex::encode(Sha256::digest(&bytes))))
}
