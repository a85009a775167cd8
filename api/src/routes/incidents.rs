//! `GET /api/v1/incidents` and `GET /api/v1/incidents/{id}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cairn_correlate::store::{
    Detection, Entity, Incident, IncidentFilter, IncidentStatus, MergeReason,
};
use cairn_ingest::{Finding, Severity};

use crate::AppState;
use crate::error::{ApiError, ApiQuery};

/// Largest page a client may ask for.
pub const MAX_PAGE: usize = 200;
const DEFAULT_PAGE: usize = 50;

/// Query parameters of the incident list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `new`, `active` or `closed`.
    pub status: Option<String>,
    /// Minimum severity: a name (`high`) or an OCSF id (`4`).
    pub severity: Option<String>,
    /// Only incidents with evidence at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Page size (1–200, default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of incidents.
#[derive(Debug, Serialize)]
pub struct IncidentList {
    /// Newest first.
    pub items: Vec<Incident>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn parse_filter(p: ListParams) -> Result<IncidentFilter, ApiError> {
    let status = p
        .status
        .map(|s| {
            IncidentStatus::parse(&s).ok_or_else(|| {
                ApiError::BadRequest(format!("status `{s}` is not one of new, active, closed"))
            })
        })
        .transpose()?;
    let min_severity = p
        .severity
        .map(|s| match s.parse::<i32>() {
            Ok(id) if (0..=6).contains(&id) => Ok(id),
            Ok(_) => Err(ApiError::BadRequest(format!(
                "severity `{s}` is not an OCSF severity id (0-6)"
            ))),
            Err(_) => Severity::parse_label(&s).map(Severity::id).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "severity `{s}` is not one of informational, low, medium, high, critical"
                ))
            }),
        })
        .transpose()?;
    let since = p
        .since
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::BadRequest(format!("since `{s}` is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let before_number = p
        .cursor
        .map(|c| {
            c.strip_prefix("n")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("cursor `{c}` was not issued by this API"))
                })
        })
        .transpose()?;
    Ok(IncidentFilter {
        status,
        min_severity,
        since,
        limit,
        before_number,
    })
}

/// Lists incidents, newest first, with filters and cursor paging.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<IncidentList>, ApiError> {
    let filter = parse_filter(params)?;
    let page = state.store.incidents(&filter).await?;
    Ok(Json(IncidentList {
        items: page.items,
        next_cursor: page.next.map(|n| format!("n{n}")),
    }))
}

/// One entry of an incident's timeline: a finding, across sources, in event-time order.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    /// Event time.
    pub time: DateTime<Utc>,
    /// `aws.securityhub`, `azure.defender`, `ad.windows`, …
    pub source: String,
    /// Producing product.
    pub product: Option<String>,
    /// OCSF class.
    pub class_uid: i32,
    /// Event id or finding type.
    pub event_code: Option<String>,
    /// Severity caption.
    pub severity: String,
    /// Title or event description.
    pub title: Option<String>,
    /// Resolved identity.
    pub identity_id: Option<String>,
    /// Acting principal as seen.
    pub actor_user: Option<String>,
    /// Target account as seen.
    pub user_name: Option<String>,
    /// Host.
    pub device_hostname: Option<String>,
    /// Source IP.
    pub src_ip: Option<String>,
    /// Cloud resource.
    pub resource_uid: Option<String>,
    /// Provider's id.
    pub finding_uid: String,
    /// Ids of the detections that cite it.
    pub detections: Vec<String>,
    /// The original record.
    pub raw: Value,
}

/// A rule that fired in an incident.
#[derive(Debug, Serialize)]
pub struct FiredRule {
    /// Rule id.
    pub rule_id: String,
    /// Rule title (from the loaded rule set, else the detection's).
    pub title: String,
    /// Its detections in this incident.
    pub detections: Vec<String>,
}

/// Everything about one incident.
#[derive(Debug, Serialize)]
pub struct IncidentView {
    /// The incident.
    pub incident: Incident,
    /// Entities it is about.
    pub entities: Vec<Entity>,
    /// Rules that fired.
    pub rules: Vec<FiredRule>,
    /// Detections, oldest first.
    pub detections: Vec<Detection>,
    /// Why each detection is here.
    pub merge_reasons: Vec<MergeReason>,
    /// The evidence across sources, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

fn timeline_entry(f: Finding, cited_by: Vec<String>) -> TimelineEntry {
    let raw = serde_json::from_str(&f.raw).unwrap_or(Value::String(f.raw));
    TimelineEntry {
        time: f.time,
        source: f.source,
        product: f.product,
        class_uid: f.class_uid,
        event_code: f.event_code,
        severity: f.severity,
        title: f.title,
        identity_id: f.identity_id,
        actor_user: f.actor_user,
        user_name: f.user_name,
        device_hostname: f.device_hostname,
        src_ip: f.src_ip,
        resource_uid: f.resource_uid,
        finding_uid: f.finding_uid,
        detections: cited_by,
        raw,
    }
}

/// One incident with its timeline, entities, rules and merge reasons. `id` is the incident
/// id (`inc-…`) or its number.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    let resolved = match id.trim_start_matches('#').parse::<i64>() {
        Ok(n) => state.store.incident_id_by_number(n).await?,
        Err(_) => Some(id.clone()),
    };
    let detail = match resolved {
        Some(i) => state.store.incident(&i).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::NotFound(format!("no incident `{id}`")))?;

    let mut cited: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &detail.detections {
        for u in &d.finding_uids {
            cited.entry(u.clone()).or_default().push(d.id.clone());
        }
    }
    let uids: Vec<String> = cited.keys().cloned().collect();
    let findings = state.store.findings_by_uid(&uids).await?;
    let timeline = findings
        .into_iter()
        .map(|f| {
            let by = cited.get(&f.finding_uid).cloned().unwrap_or_default();
            timeline_entry(f, by)
        })
        .collect();

    let mut rules: BTreeMap<String, FiredRule> = BTreeMap::new();
    for d in &detail.detections {
        rules
            .entry(d.rule_id.clone())
            .or_insert_with(|| FiredRule {
                rule_id: d.rule_id.clone(),
                title: state
                    .rules
                    .get(&d.rule_id)
                    .map(|r| r.title.clone())
                    .unwrap_or_else(|| d.title.clone()),
                detections: Vec::new(),
            })
            .detections
            .push(d.id.clone());
    }
    Ok(Json(IncidentView {
        entities: detail.incident.entities.clone(),
        incident: detail.incident,
        rules: rules.into_values().collect(),
        detections: detail.detections,
        merge_reasons: detail.reasons,
        timeline,
    }))
}
