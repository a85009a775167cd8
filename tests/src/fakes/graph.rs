//! A fake Microsoft identity platform and Graph security API: the token endpoint, alerts_v2
//! and incidents with OData `$filter` on `lastUpdateDateTime`, `$top`, `@odata.nextLink`
//! paging, single-incident reads, and scripted faults (429 with `Retry-After`, 503, a slow
//! answer, a truncated body, an expired token answered with 401 and a challenge).
//!
//! Requests arrive for `https://login.microsoftonline.com/…` and
//! `https://graph.microsoft.com/…` rewritten by the client's `endpoint_override`.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the fake does with one API request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: <seconds>`.
    TooManyRequests(u64),
    /// 503.
    Unavailable,
    /// Answers correctly after this long.
    Delay(Duration),
    /// 200 with the body cut in half.
    Truncate,
    /// Every token issued so far stops working: 401 with a `WWW-Authenticate` challenge.
    ExpireTokens,
    /// Answers normally (to let earlier pages through).
    Pass,
}

#[derive(Default)]
struct Inner {
    alerts: Vec<Value>,
    incidents: Vec<Value>,
    signins: Vec<Value>,
    users: Vec<Value>,
    directory_roles: Vec<Value>,
    arm_alerts: Vec<Value>,
    compliance: Vec<Value>,
    sentinel_incidents: Vec<Value>,
    sentinel_alerts: Vec<Value>,
    faults: VecDeque<Fault>,
    valid_tokens: BTreeSet<String>,
    tokens_issued: usize,
    requests: Vec<(Instant, String)>,
}

/// A running fake.
pub struct FakeGraph {
    state: Arc<Mutex<Inner>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn token(State(state): Shared) -> Response {
    let mut s = state.lock().expect("lock");
    s.tokens_issued += 1;
    let t = format!("tok-{}", s.tokens_issued);
    s.valid_tokens.insert(t.clone());
    (
        [("content-type", "application/json")],
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t}).to_string(),
    )
        .into_response()
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        let k = k.replace("%24", "$");
        (k == name).then(|| v.replace("%20", " ").replace("%3A", ":").replace('+', " "))
    })
}

fn authorized(s: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.valid_tokens.contains(t))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"The token is expired\"")],
        json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}}).to_string(),
    )
        .into_response()
}

/// Applies the next fault, if any; `Some` is the answer to send instead of the real one.
async fn fault(state: &Arc<Mutex<Inner>>) -> Option<Response> {
    let next = state.lock().expect("lock").faults.pop_front();
    match next {
        None | Some(Fault::Pass) => None,
        Some(Fault::TooManyRequests(secs)) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                json!({"error": {"code": "TooManyRequests", "message": "Throttled"}}).to_string(),
            )
                .into_response(),
        ),
        Some(Fault::Unavailable) => {
            Some((StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response())
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Truncate) => Some((StatusCode::OK, "TRUNCATE").into_response()),
        Some(Fault::ExpireTokens) => {
            state.lock().expect("lock").valid_tokens.clear();
            Some(unauthorized())
        }
    }
}

async fn list(
    state: Arc<Mutex<Inner>>,
    headers: HeaderMap,
    kind: &'static str,
    query: Option<String>,
) -> Response {
    let query = query.unwrap_or_default();
    state
        .lock()
        .expect("lock")
        .requests
        .push((Instant::now(), format!("{kind}?{query}")));
    let injected = fault(&state).await;
    let truncate = matches!(&injected, Some(r) if r.status() == StatusCode::OK);
    if let Some(r) = injected.filter(|_| !truncate) {
        return r;
    }
    let s = state.lock().expect("lock");
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let time_field = if kind == "signIns" {
        "createdDateTime"
    } else {
        "lastUpdateDateTime"
    };
    let since = param(&query, "$filter").and_then(|f| {
        f.strip_prefix(&format!("{time_field} ge "))
            .map(str::to_string)
    });
    let since = since.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    let top: usize = param(&query, "$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(50);
    let skip: usize = param(&query, "$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let all = match kind {
        "alerts_v2" => &s.alerts,
        "signIns" => &s.signins,
        "users" => &s.users,
        "directoryRoles" => &s.directory_roles,
        _ => &s.incidents,
    };
    let mut matching: Vec<&Value> = all
        .iter()
        .filter(|r| {
            let t = r[time_field]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            match (since, t) {
                (Some(s), Some(t)) => t >= s,
                _ => true,
            }
        })
        .collect();
    matching.sort_by_key(|r| r[time_field].as_str().unwrap_or_default().to_string());
    let end = (skip + top).min(matching.len());
    let mut body = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#security/{kind}"),
        "value": matching[skip.min(end)..end],
    });
    if end < matching.len() {
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("%24skiptoken") && !kv.starts_with("$skiptoken"))
            .collect();
        let path = match kind {
            "signIns" => "auditLogs/signIns".to_string(),
            "users" | "directoryRoles" => kind.to_string(),
            _ => format!("security/{kind}"),
        };
        body["@odata.nextLink"] = json!(format!(
            "https://graph.microsoft.com/v1.0/{path}?{}&$skiptoken={end}",
            rest.join("&")
        ));
    }
    let text = body.to_string();
    let text = if truncate {
        crate::fakes::half(&text)
    } else {
        text
    };
    ([("content-type", "application/json")], text).into_response()
}

/// The members of one directory role, one per page (Graph pages them; `$expand` would not).
async fn role_members(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = state.lock().expect("lock");
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let Some(role) = s
        .directory_roles
        .iter()
        .find(|r| r["id"].as_str() == Some(id.as_str()))
    else {
        return (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound"}}).to_string(),
        )
            .into_response();
    };
    let members = role["members"].as_array().cloned().unwrap_or_default();
    let skip: usize = param(&query.unwrap_or_default(), "$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let mut body = json!({ "value": members.iter().skip(skip).take(1).collect::<Vec<_>>() });
    if skip + 1 < members.len() {
        body["@odata.nextLink"] = json!(format!(
            "https://graph.microsoft.com/v1.0/directoryRoles/{id}/members?$select=id&$skiptoken={}",
            skip + 1
        ));
    }
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn one_incident(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = state.lock().expect("lock");
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    match s
        .incidents
        .iter()
        .find(|i| i["id"].as_str() == Some(id.as_str()))
    {
        Some(i) => ([("content-type", "application/json")], i.to_string()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound"}}).to_string(),
        )
            .into_response(),
    }
}

/// Azure Resource Manager: Defender for Cloud alerts (no time filter), Sentinel incidents
/// (filtered on `properties/lastModifiedTimeUtc`) and their `alerts` list action.
async fn arm(
    State(state): Shared,
    headers: HeaderMap,
    method: axum::http::Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let s = state.lock().expect("lock");
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    if method == axum::http::Method::POST && rest.ends_with("/entities") {
        // The shape of the Sentinel `entities` list action.
        let entities = json!({"entities": [
            {"kind": "Account", "properties": {"accountName": "john", "upnSuffix": "contoso.com", "ntDomain": "CONTOSO",
                "aadUserId": "2046feea-040d-4a46-9e2b-91c2941bfa70", "sid": "S-1-5-21-1-2-3-1201", "friendlyName": "john"}},
            {"kind": "Host", "properties": {"hostName": "WEB01", "dnsDomain": "contoso.com", "friendlyName": "WEB01"}},
            {"kind": "Ip", "properties": {"address": "198.51.100.5", "friendlyName": "198.51.100.5"}}
        ], "metaData": []});
        return ([("content-type", "application/json")], entities.to_string()).into_response();
    }
    if method == axum::http::Method::POST && rest.ends_with("/alerts") {
        return (
            [("content-type", "application/json")],
            json!({"value": s.sentinel_alerts}).to_string(),
        )
            .into_response();
    }
    let compliance = compliance_list(&s.compliance, &format!("/subscriptions/{rest}"));
    let (records, field) = if rest.ends_with("providers/Microsoft.Security/alerts") {
        (&s.arm_alerts, None)
    } else if rest.ends_with("providers/Microsoft.SecurityInsights/incidents") {
        (&s.sentinel_incidents, Some("lastModifiedTimeUtc"))
    } else if let Some(list) = &compliance {
        (list, None)
    } else {
        return (StatusCode::NOT_FOUND, "no such ARM resource").into_response();
    };
    let since = field
        .and_then(|_| param(&query, "$filter"))
        .and_then(|f| {
            f.strip_prefix("properties/lastModifiedTimeUtc ge ")
                .map(str::to_string)
        })
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    let matching: Vec<&Value> = records
        .iter()
        .filter(|r| match (since, field) {
            (Some(since), Some(f)) => r["properties"][f]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| t >= since),
            _ => true,
        })
        .collect();
    let skip: usize = param(&query, "$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (skip + 2).min(matching.len());
    let mut body = json!({ "value": matching[skip.min(end)..end] });
    if end < matching.len() {
        let rest_query: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.contains("skiptoken"))
            .collect();
        body["nextLink"] = json!(format!(
            "https://management.azure.com/subscriptions/{rest}?{}&$skiptoken={end}",
            rest_query.join("&")
        ));
    }
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// The regulatory compliance list at `path`, derived from the assessments' ids: standards,
/// a standard's controls, or a control's assessments. `None` for other paths.
fn compliance_list(assessments: &[Value], path: &str) -> Option<Vec<Value>> {
    let ids = assessments.iter().filter_map(|a| a["id"].as_str());
    let parent_of = |id: &str, level: &str| id.find(level).map(|i| id[..i].to_string());
    let distinct = |level: &str, kind: &str| -> Vec<Value> {
        let mut seen: Vec<String> = Vec::new();
        for id in ids.clone() {
            let Some(prefix) = parent_of(id, level) else {
                continue;
            };
            if prefix.trim_end_matches('/')
                != path.trim_end_matches(&format!("/{}", level.trim_matches('/')))
            {
                continue;
            }
            let name = id[prefix.len() + level.len()..]
                .split('/')
                .next()
                .unwrap_or_default();
            let item = format!("{prefix}{level}{name}");
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
        seen.into_iter()
            .map(|id| {
                let name = id.rsplit('/').next().unwrap_or_default().to_string();
                json!({"id": id, "name": name, "type": kind, "properties": {"state": "Failed"}})
            })
            .collect()
    };
    if path.ends_with("/providers/Microsoft.Security/regulatoryComplianceStandards") {
        Some(distinct(
            "/regulatoryComplianceStandards/",
            "Microsoft.Security/regulatoryComplianceStandards",
        ))
    } else if path.ends_with("/regulatoryComplianceControls") {
        Some(distinct(
            "/regulatoryComplianceControls/",
            "Microsoft.Security/regulatoryComplianceStandards/regulatoryComplianceControls",
        ))
    } else if path.ends_with("/regulatoryComplianceAssessments") {
        Some(
            assessments
                .iter()
                .filter(|a| {
                    a["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&format!("{path}/")))
                })
                .cloned()
                .collect(),
        )
    } else {
        None
    }
}

impl FakeGraph {
    /// Serves these Defender for Cloud regulatory compliance assessments (their standards and
    /// controls are read off their ids).
    pub fn set_compliance(&self, assessments: Vec<Value>) {
        self.state.lock().expect("lock").compliance = assessments;
    }

    /// Starts a fake serving `alerts` and `incidents`.
    pub fn start(alerts: Vec<Value>, incidents: Vec<Value>) -> FakeGraph {
        let state = Arc::new(Mutex::new(Inner {
            alerts,
            incidents,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/v1.0/security/alerts_v2",
                get(|State(s): Shared, h: HeaderMap, RawQuery(q): RawQuery| {
                    list(s, h, "alerts_v2", q)
                }),
            )
            .route(
                "/v1.0/security/incidents",
                get(|State(s): Shared, h: HeaderMap, RawQuery(q): RawQuery| {
                    list(s, h, "incidents", q)
                }),
            )
            .route("/v1.0/security/incidents/{id}", get(one_incident))
            .route("/subscriptions/{*rest}", get(arm).post(arm))
            .route(
                "/v1.0/users",
                get(|State(s): Shared, h: HeaderMap, RawQuery(q): RawQuery| list(s, h, "users", q)),
            )
            .route(
                "/v1.0/directoryRoles",
                get(|State(s): Shared, h: HeaderMap, RawQuery(q): RawQuery| {
                    list(s, h, "directoryRoles", q)
                }),
            )
            .route("/v1.0/directoryRoles/{id}/members", get(role_members))
            .route(
                "/v1.0/auditLogs/signIns",
                get(|State(s): Shared, h: HeaderMap, RawQuery(q): RawQuery| {
                    list(s, h, "signIns", q)
                }),
            )
            .with_state(state.clone());
        let addr = crate::fakes::serve(app);
        FakeGraph { state, addr }
    }

    /// The `endpoint_override` for Cairn.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next list requests.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().expect("lock").faults.extend(faults);
    }

    /// Drops unused faults.
    pub fn recover(&self) {
        self.state.lock().expect("lock").faults.clear();
    }

    /// Sets the Entra users (`$top` per page) and directory roles (with `members`) served.
    pub fn set_directory(&self, users: Vec<Value>, roles: Vec<Value>) {
        let mut s = self.state.lock().expect("lock");
        s.users = users;
        s.directory_roles = roles;
    }

    /// Sets the Defender for Cloud alerts served (two per page).
    pub fn set_arm_alerts(&self, alerts: Vec<Value>) {
        self.state.lock().expect("lock").arm_alerts = alerts;
    }

    /// Sets the Sentinel incidents served (two per page) and the alerts of every incident.
    pub fn set_sentinel(&self, incidents: Vec<Value>, alerts: Vec<Value>) {
        let mut s = self.state.lock().expect("lock");
        s.sentinel_incidents = incidents;
        s.sentinel_alerts = alerts;
    }

    /// Sets the sign-ins served.
    pub fn set_signins(&self, signins: Vec<Value>) {
        self.state.lock().expect("lock").signins = signins;
    }

    /// Adds an alert (a late or updated one).
    pub fn add_alert(&self, alert: Value) {
        self.state.lock().expect("lock").alerts.push(alert);
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().expect("lock").tokens_issued
    }

    /// List requests received, with when.
    pub fn requests(&self) -> Vec<(Instant, String)> {
        self.state.lock().expect("lock").requests.clone()
    }
}
