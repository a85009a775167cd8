//! Merging detections into incidents.
//!
//! A detection joins an open incident when they share an entity (identity, host, IP, cloud
//! resource) and their evidence lies within the merge window of each other; otherwise it
//! opens a new incident. When it shares entities with several open incidents, it links them:
//! they merge into the oldest, and the others are closed, naming the one that absorbed them
//! (their detections, entities and reasons move there). Closed incidents are never reopened:
//! a detection about a closed incident's entities opens a new one. Detections are taken
//! oldest first, so the outcome does not depend on the order rules ran in; a detection
//! already in an incident stays there (re-evaluation only refreshes the incident's
//! aggregates), so running a pass twice changes nothing.
//!
//! Hosts count as merge entities only where they are what the evidence is about: a
//! provider's alert on a device, or a rule about a host. The computer that *logged* a
//! Windows event is where it was observed; every event of a domain controller names it, and
//! merging on it would fuse every AD detection into one incident.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};

use cairn_ingest::schema::CLASS_DETECTION_FINDING;
use cairn_ingest::{Finding, Severity};

use crate::store::{CorrelationChanges, Detection, Entity, Incident, IncidentStatus, MergeReason};

/// The entities a detection is about, from its rule's entity and its evidence.
pub fn detection_entities(d: &Detection, findings: &HashMap<&str, &Finding>) -> BTreeSet<Entity> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &str, value: &str| {
        if !value.is_empty() {
            out.insert(Entity {
                kind: kind.to_string(),
                value: value.to_string(),
            });
        }
    };
    if d.entity_kind != "finding" {
        add(&d.entity_kind, &d.entity_key);
    }
    for uid in &d.finding_uids {
        let Some(f) = findings.get(uid.as_str()) else {
            continue;
        };
        if let Some(v) = &f.identity_id {
            add("identity", v);
        }
        if let Some(v) = &f.src_ip {
            add("ip", v);
        }
        if let Some(v) = &f.resource_uid {
            add("resource", v);
        }
        if let Some(v) = &f.device_hostname
            && (f.class_uid == CLASS_DETECTION_FINDING || d.entity_kind == "host")
        {
            add("host", v);
        }
    }
    out
}

fn overlaps(inc: &Incident, d: &Detection, window: Duration) -> bool {
    d.first_seen <= inc.last_seen + window && d.last_seen + window >= inc.first_seen
}

fn union_into(list: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    let mut set: BTreeSet<String> = list.drain(..).collect();
    set.extend(more);
    list.extend(set);
}

/// Folds a detection into an incident's aggregates.
fn absorb(
    inc: &mut Incident,
    d: &Detection,
    entities: &BTreeSet<Entity>,
    findings: &HashMap<&str, &Finding>,
    now: DateTime<Utc>,
) {
    if d.severity_id > inc.severity_id {
        inc.severity_id = d.severity_id;
        inc.severity = Severity::from_id(d.severity_id).caption().to_string();
        inc.title = d.title.clone();
    }
    inc.first_seen = inc.first_seen.min(d.first_seen);
    inc.last_seen = inc.last_seen.max(d.last_seen);
    let evidence: Vec<&&Finding> = d
        .finding_uids
        .iter()
        .filter_map(|u| findings.get(u.as_str()))
        .collect();
    union_into(
        &mut inc.tactics,
        d.tactics
            .iter()
            .cloned()
            .chain(evidence.iter().flat_map(|f| f.attack_tactics.clone())),
    );
    union_into(
        &mut inc.techniques,
        d.techniques
            .iter()
            .cloned()
            .chain(evidence.iter().flat_map(|f| f.attack_techniques.clone())),
    );
    union_into(&mut inc.sources, evidence.iter().map(|f| f.source.clone()));
    let mut all: BTreeSet<Entity> = inc.entities.drain(..).collect();
    all.extend(entities.iter().cloned());
    inc.entities = all.into_iter().collect();
    inc.updated_at = now;
}

/// Stable id of the incident a detection opens.
fn incident_id_for(d: &Detection) -> String {
    format!("inc-{}", &d.id[..d.id.len().min(16)])
}

/// Merges `detections` (new ones, and stored ones whose evidence changed) into the `open`
/// incidents; returns what to write. `aliases` maps absorbed identity ids to the surviving
/// ones, so an incident keyed on an old id still meets detections of the survivor.
pub fn merge(
    mut detections: Vec<Detection>,
    open: Vec<Incident>,
    aliases: &HashMap<String, String>,
    findings: &HashMap<&str, &Finding>,
    merge_window: Duration,
    now: DateTime<Utc>,
) -> CorrelationChanges {
    detections.sort_by(|a, b| (a.first_seen, &a.id).cmp(&(b.first_seen, &b.id)));
    let mut incidents: Vec<Incident> = open;
    for inc in incidents.iter_mut() {
        let mut canonical: BTreeSet<Entity> = BTreeSet::new();
        for e in inc.entities.drain(..) {
            if let Some(survivor) = aliases.get(&e.value).filter(|_| e.kind == "identity") {
                canonical.insert(Entity {
                    kind: e.kind.clone(),
                    value: survivor.clone(),
                });
            }
            canonical.insert(e);
        }
        inc.entities = canonical.into_iter().collect();
    }
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut reasons = Vec::new();
    let mut merged: Vec<(String, String)> = Vec::new();

    for d in detections.iter_mut() {
        let entities = detection_entities(d, findings);
        if let Some(id) = &d.incident_id {
            // Already merged: refresh the incident (or the one that absorbed it earlier in
            // this pass) if it is still open.
            let id = surviving(&merged, id);
            if let Some(inc) = incidents
                .iter_mut()
                .find(|i| i.id == id && i.status != IncidentStatus::Closed)
            {
                absorb(inc, d, &entities, findings, now);
                touched.insert(inc.id.clone());
            }
            continue;
        }
        // Every open incident that shares an entity within the window, oldest first.
        let mut linked: Vec<(usize, Entity)> = incidents
            .iter()
            .enumerate()
            .filter(|(_, inc)| {
                inc.status != IncidentStatus::Closed
                    && inc.merged_into.is_none()
                    && overlaps(inc, d, merge_window)
            })
            .filter_map(|(i, inc)| {
                let shared = inc.entities.iter().find(|e| entities.contains(e)).cloned();
                shared.map(|s| (i, s))
            })
            .collect();
        linked.sort_by(|(a, _), (b, _)| {
            (incidents[*a].first_seen, &incidents[*a].id)
                .cmp(&(incidents[*b].first_seen, &incidents[*b].id))
        });
        // Only a shared person or cloud resource links two incidents into one; an IP (a NAT,
        // a VPN) or a host alone may be shared by unrelated cases.
        if let Some((first, rest)) = linked.split_first() {
            let mut kept = vec![first.clone()];
            kept.extend(
                rest.iter()
                    .filter(|(_, e)| e.kind == "identity" || e.kind == "resource")
                    .cloned(),
            );
            linked = kept;
        }
        match linked.split_first() {
            Some(((survivor, shared), others)) => {
                let mut reason = format!(
                    "“{}” shares {} {} with the incident “{}”",
                    d.title, shared.kind, shared.value, incidents[*survivor].title
                );
                for (other, via) in others {
                    let (absorbed_id, absorbed_title, absorbed_number) = {
                        let o = &incidents[*other];
                        (o.id.clone(), o.title.clone(), o.number)
                    };
                    let number = if absorbed_number > 0 {
                        format!(" (#{absorbed_number})")
                    } else {
                        String::new()
                    };
                    reason.push_str(&format!(
                        ", and {} {} with the incident “{absorbed_title}”{number}, which is merged into it",
                        via.kind, via.value
                    ));
                    let absorbed = incidents[*other].clone();
                    let survivor_id = incidents[*survivor].id.clone();
                    fold_incident(&mut incidents[*survivor], &absorbed, now);
                    let gone = &mut incidents[*other];
                    gone.status = IncidentStatus::Closed;
                    gone.merged_into = Some(survivor_id.clone());
                    gone.updated_at = now;
                    merged.push((absorbed_id.clone(), survivor_id));
                    touched.insert(absorbed_id);
                }
                let inc = &mut incidents[*survivor];
                reasons.push(MergeReason {
                    incident_id: inc.id.clone(),
                    detection_id: d.id.clone(),
                    reason,
                    at: now,
                });
                d.incident_id = Some(inc.id.clone());
                absorb(inc, d, &entities, findings, now);
                touched.insert(inc.id.clone());
            }
            None => {
                let mut inc = Incident {
                    id: incident_id_for(d),
                    number: 0,
                    title: d.title.clone(),
                    status: IncidentStatus::New,
                    severity_id: d.severity_id,
                    severity: Severity::from_id(d.severity_id).caption().to_string(),
                    first_seen: d.first_seen,
                    last_seen: d.last_seen,
                    created_at: now,
                    updated_at: now,
                    tactics: Vec::new(),
                    techniques: Vec::new(),
                    sources: Vec::new(),
                    entities: Vec::new(),
                    detection_count: 0,
                    finding_count: 0,
                    merged_into: None,
                };
                absorb(&mut inc, d, &entities, findings, now);
                // A closed incident about the same entities is not reopened; the new one
                // names it so the analyst sees the history.
                let mut reason = format!("opened by “{}”", d.title);
                for (old, shared) in incidents
                    .iter()
                    .filter(|o| {
                        o.status == IncidentStatus::Closed
                            && o.merged_into.is_none()
                            && overlaps(o, d, merge_window)
                    })
                    .filter_map(|o| {
                        let shared = o.entities.iter().find(|e| entities.contains(e))?;
                        Some((o, shared))
                    })
                {
                    let number = if old.number > 0 {
                        format!("#{} ", old.number)
                    } else {
                        String::new()
                    };
                    reason.push_str(&format!(
                        "; related to the closed incident {number}“{}” (shares {} {}), which stays closed",
                        old.title, shared.kind, shared.value
                    ));
                }
                reasons.push(MergeReason {
                    incident_id: inc.id.clone(),
                    detection_id: d.id.clone(),
                    reason,
                    at: now,
                });
                d.incident_id = Some(inc.id.clone());
                touched.insert(inc.id.clone());
                incidents.push(inc);
            }
        }
    }
    // Detections and reasons of this pass that sat in an absorbed incident follow it.
    for d in detections.iter_mut() {
        if let Some(id) = &d.incident_id {
            d.incident_id = Some(surviving(&merged, id));
        }
    }
    for r in reasons.iter_mut() {
        r.incident_id = surviving(&merged, &r.incident_id);
    }
    CorrelationChanges {
        incidents: incidents
            .into_iter()
            .filter(|i| touched.contains(&i.id))
            .collect(),
        detections,
        reasons,
        merged,
    }
}

/// The incident that finally holds what was merged into `id` (following merges of merges).
fn surviving(merged: &[(String, String)], id: &str) -> String {
    let mut at = id.to_string();
    // Each merge points to an older incident, so the chain ends; the bound guards the loop.
    for _ in 0..=merged.len() {
        match merged.iter().find(|(from, _)| *from == at) {
            Some((_, to)) => at = to.clone(),
            None => break,
        }
    }
    at
}

/// Folds an absorbed incident's aggregates into the survivor's.
fn fold_incident(into: &mut Incident, other: &Incident, now: DateTime<Utc>) {
    if other.severity_id > into.severity_id {
        into.severity_id = other.severity_id;
        into.severity = other.severity.clone();
        into.title = other.title.clone();
    }
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last_seen = into.last_seen.max(other.last_seen);
    union_into(&mut into.tactics, other.tactics.iter().cloned());
    union_into(&mut into.techniques, other.techniques.iter().cloned());
    union_into(&mut into.sources, other.sources.iter().cloned());
    let mut all: BTreeSet<Entity> = into.entities.drain(..).collect();
    all.extend(other.entities.iter().cloned());
    into.entities = all.into_iter().collect();
    into.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ingest::schema::CLASS_AUTHENTICATION;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).expect("time")
    }

    fn finding(uid: &str, identity: Option<&str>, host: &str, class: i32, source: &str) -> Finding {
        let mut f = Finding::new(source, uid.into(), class, t(0), "{}".into());
        f.identity_id = identity.map(str::to_string);
        f.device_hostname = Some(host.into());
        f
    }

    fn detection(id: &str, kind: &str, key: &str, at: i64, uids: &[&str]) -> Detection {
        Detection {
            id: format!("{id:0<16}"),
            rule_id: format!("rule.{id}"),
            title: format!("detection {id}"),
            entity_kind: kind.into(),
            entity_key: key.into(),
            bucket: 0,
            severity_id: 3,
            first_seen: t(at),
            last_seen: t(at),
            finding_uids: uids.iter().map(|u| u.to_string()).collect(),
            tactics: vec![],
            techniques: vec![],
            incident_id: None,
        }
    }

    #[test]
    fn shared_identity_merges_and_the_logging_dc_does_not() {
        let fs = [
            finding(
                "f1",
                Some("alice@corp.example"),
                "dc1",
                CLASS_AUTHENTICATION,
                "ad.windows",
            ),
            finding(
                "f2",
                Some("bob@corp.example"),
                "dc1",
                CLASS_AUTHENTICATION,
                "ad.windows",
            ),
            finding(
                "f3",
                Some("alice@corp.example"),
                "ws7",
                CLASS_DETECTION_FINDING,
                "azure.defender",
            ),
        ];
        let index: HashMap<&str, &Finding> =
            fs.iter().map(|f| (f.finding_uid.as_str(), f)).collect();
        let ds = vec![
            detection("a", "identity", "alice@corp.example", 0, &["f1"]),
            detection("b", "identity", "bob@corp.example", 1, &["f2"]),
            detection("c", "finding", "f3", 2, &["f3"]),
        ];
        let changes = merge(
            ds,
            vec![],
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(10),
        );
        assert_eq!(changes.incidents.len(), 2, "{:#?}", changes.incidents);
        let by_det: HashMap<_, _> = changes
            .detections
            .iter()
            .map(|d| (d.rule_id.as_str(), d.incident_id.clone()))
            .collect();
        assert_eq!(by_det["rule.a"], by_det["rule.c"]);
        assert_ne!(by_det["rule.a"], by_det["rule.b"]);
        let alice = changes
            .incidents
            .iter()
            .find(|i| Some(&i.id) == by_det["rule.a"].as_ref())
            .expect("incident");
        assert_eq!(alice.sources, ["ad.windows", "azure.defender"]);
        assert!(
            alice
                .entities
                .iter()
                .any(|e| e.kind == "host" && e.value == "ws7")
        );
        assert!(!alice.entities.iter().any(|e| e.value == "dc1"));
        assert!(
            changes
                .reasons
                .iter()
                .any(|r| r.reason.contains("shares identity alice@corp.example"))
        );
    }

    #[test]
    fn detections_outside_the_window_open_their_own_incident() {
        let fs = [finding(
            "f1",
            Some("alice@corp.example"),
            "h",
            CLASS_AUTHENTICATION,
            "ad.windows",
        )];
        let index: HashMap<&str, &Finding> =
            fs.iter().map(|f| (f.finding_uid.as_str(), f)).collect();
        let ds = vec![
            detection("a", "identity", "alice@corp.example", 0, &["f1"]),
            detection("b", "identity", "alice@corp.example", 30, &["f1"]),
        ];
        let changes = merge(
            ds,
            vec![],
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(40),
        );
        assert_eq!(changes.incidents.len(), 2);
    }

    #[test]
    fn closed_incidents_take_no_new_detections() {
        let fs = [finding(
            "f1",
            Some("alice@corp.example"),
            "h",
            CLASS_AUTHENTICATION,
            "ad.windows",
        )];
        let index: HashMap<&str, &Finding> =
            fs.iter().map(|f| (f.finding_uid.as_str(), f)).collect();
        let first = merge(
            vec![detection("a", "identity", "alice@corp.example", 0, &["f1"])],
            vec![],
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(1),
        );
        let mut closed = first.incidents[0].clone();
        closed.status = IncidentStatus::Closed;
        let second = merge(
            vec![detection("b", "identity", "alice@corp.example", 1, &["f1"])],
            vec![closed.clone()],
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(2),
        );
        assert_eq!(second.incidents.len(), 1);
        assert_ne!(second.incidents[0].id, closed.id);
        assert!(
            second.reasons[0]
                .reason
                .contains("related to the closed incident “detection a” (shares identity alice@corp.example), which stays closed"),
            "{}",
            second.reasons[0].reason
        );
    }

    #[test]
    fn a_detection_linking_two_open_incidents_merges_them_into_the_older() {
        let mut by_identity = Finding::new(
            "ad.windows",
            "f1".into(),
            CLASS_AUTHENTICATION,
            t(0),
            "{}".into(),
        );
        by_identity.identity_id = Some("alice@corp.example".into());
        let mut by_ip = Finding::new(
            "aws.securityhub",
            "f2".into(),
            CLASS_DETECTION_FINDING,
            t(1),
            "{}".into(),
        );
        by_ip.resource_uid = Some("arn:aws:ec2:us-east-1:1:instance/i-1".into());
        let mut both = Finding::new(
            "azure.defender",
            "f3".into(),
            CLASS_DETECTION_FINDING,
            t(2),
            "{}".into(),
        );
        both.identity_id = Some("alice@corp.example".into());
        both.resource_uid = Some("arn:aws:ec2:us-east-1:1:instance/i-1".into());
        let fs = [by_identity, by_ip, both];
        let index: HashMap<&str, &Finding> =
            fs.iter().map(|f| (f.finding_uid.as_str(), f)).collect();

        // Two passes open two incidents; a third detection names both of their entities.
        let first = merge(
            vec![
                detection("a", "finding", "f1", 0, &["f1"]),
                detection("b", "finding", "f2", 1, &["f2"]),
            ],
            vec![],
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(1),
        );
        assert_eq!(first.incidents.len(), 2);
        let mut open = first.incidents.clone();
        for (n, inc) in open.iter_mut().enumerate() {
            inc.number = n as i64 + 1;
        }
        let older = open
            .iter()
            .find(|i| i.entities.iter().any(|e| e.value == "alice@corp.example"))
            .expect("a")
            .id
            .clone();
        let younger = open
            .iter()
            .find(|i| {
                i.entities
                    .iter()
                    .any(|e| e.value == "arn:aws:ec2:us-east-1:1:instance/i-1")
            })
            .expect("b")
            .id
            .clone();

        let link = merge(
            vec![detection("c", "finding", "f3", 2, &["f3"])],
            open,
            &HashMap::new(),
            &index,
            Duration::hours(24),
            t(3),
        );
        assert_eq!(link.merged, [(younger.clone(), older.clone())]);
        assert_eq!(
            link.detections[0].incident_id.as_deref(),
            Some(older.as_str())
        );
        let gone = link
            .incidents
            .iter()
            .find(|i| i.id == younger)
            .expect("absorbed");
        assert_eq!(gone.status, IncidentStatus::Closed);
        assert_eq!(gone.merged_into.as_deref(), Some(older.as_str()));
        let kept = link
            .incidents
            .iter()
            .find(|i| i.id == older)
            .expect("survivor");
        assert_eq!(
            kept.sources,
            ["ad.windows", "aws.securityhub", "azure.defender"]
        );
        assert!(
            kept.entities
                .iter()
                .any(|e| e.value == "arn:aws:ec2:us-east-1:1:instance/i-1")
        );
        let reason = &link.reasons[0].reason;
        assert!(
            reason.contains("shares identity alice@corp.example")
                && reason.contains("resource arn:aws:ec2:us-east-1:1:instance/i-1")
                && reason.contains("which is merged into it"),
            "{reason}"
        );
    }
}
