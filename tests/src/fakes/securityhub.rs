//! A fake Security Hub: `GetFindings` and `GetFindingsV2` pages from a fixed list, with
//! scripted faults (throttling, 500s, slow answers, truncated bodies). moto covers the real
//! `GetFindings` path; it does not implement `GetFindingsV2` and cannot inject faults.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 `ThrottlingException`.
    Throttle,
    /// 500 `InternalException`.
    ServerError,
    /// Answers correctly after this long.
    Delay(Duration),
    /// Answers 200 with the body cut in half.
    Truncate,
}

#[derive(Default)]
struct Inner {
    findings: Vec<Value>,
    faults: VecDeque<Fault>,
    calls: Vec<String>,
    updates: Vec<Value>,
}

/// A running fake; it stops with the test process.
pub struct FakeSecurityHub {
    state: Arc<Mutex<Inner>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

#[derive(serde::Deserialize)]
struct PageRequest {
    #[serde(rename = "MaxResults")]
    max_results: Option<usize>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

async fn page(
    State(state): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    op: &'static str,
    body: String,
) -> Response {
    let (fault, findings) = {
        let mut s = state.lock().expect("lock");
        s.calls.push(op.to_string());
        (s.faults.pop_front(), s.findings.clone())
    };
    if !headers.contains_key("authorization") {
        return (StatusCode::FORBIDDEN, "unsigned request").into_response();
    }
    let request: PageRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let start: usize = request
        .next_token
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (start + request.max_results.unwrap_or(100)).min(findings.len());
    let mut reply = json!({ "Findings": findings[start.min(end)..end] });
    if end < findings.len() {
        reply["NextToken"] = json!(end.to_string());
    }
    let text = reply.to_string();
    let error = |status: StatusCode, kind: &str| {
        (
            status,
            [
                ("x-amzn-errortype", kind.to_string()),
                ("content-type", "application/json".into()),
            ],
            json!({"__type": kind, "message": "injected by the fake"}).to_string(),
        )
            .into_response()
    };
    match fault {
        Some(Fault::Throttle) => error(StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        Some(Fault::ServerError) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalException"),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            ([("content-type", "application/json")], text).into_response()
        }
        Some(Fault::Truncate) => (
            [("content-type", "application/json")],
            crate::fakes::half(&text),
        )
            .into_response(),
        None => ([("content-type", "application/json")], text).into_response(),
    }
}

/// `BatchUpdateFindings`: records the request and reports every finding processed.
async fn batch_update(
    State(state): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !headers.contains_key("authorization") {
        return (StatusCode::FORBIDDEN, "unsigned request").into_response();
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let processed = request["FindingIdentifiers"].clone();
    {
        let mut s = state.lock().expect("lock");
        s.calls.push("BatchUpdateFindings".into());
        s.updates.push(request);
    }
    (
        [("content-type", "application/json")],
        json!({ "ProcessedFindings": processed, "UnprocessedFindings": [] }).to_string(),
    )
        .into_response()
}

impl FakeSecurityHub {
    /// Starts a fake serving `findings` (ASFF for `GetFindings`, OCSF for `GetFindingsV2`).
    pub fn start(findings: Vec<Value>) -> FakeSecurityHub {
        let state = Arc::new(Mutex::new(Inner {
            findings,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/findings", post(|s, h, b| page(s, h, "GetFindings", b)))
            .route(
                "/findingsv2",
                post(|s, h, b| page(s, h, "GetFindingsV2", b)),
            )
            .route("/findings/batchupdate", axum::routing::patch(batch_update))
            .with_state(state.clone());
        let addr = crate::fakes::serve(app);
        FakeSecurityHub { state, addr }
    }

    /// The endpoint URL for the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next requests, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().expect("lock").faults.extend(faults);
    }

    /// Drops faults not yet used (the service recovered).
    pub fn recover(&self) {
        self.state.lock().expect("lock").faults.clear();
    }

    /// Bodies of the `BatchUpdateFindings` requests received so far.
    pub fn updates(&self) -> Vec<Value> {
        self.state.lock().expect("lock").updates.clone()
    }

    /// Operations received so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}
