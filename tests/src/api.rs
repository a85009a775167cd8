//! The API router in process (no socket): filters, paging, error shapes.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use cairn_api::{AppState, app};
use cairn_correlate::Store;

async fn demo_state(dir: &std::path::Path) -> AppState {
    let (store, rules) = crate::evidence::demo_store(dir).await;
    AppState {
        store: Arc::new(store) as Arc<dyn Store>,
        rules: Arc::new(rules),
        evidence: Some(Arc::new(
            cairn_api::report::Signer::in_dir(&dir.join("evidence")).expect("signer"),
        )),
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    send(
        state,
        Request::get(uri).body(Body::empty()).expect("request"),
    )
    .await
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 24).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test]
async fn incidents_list_filters_and_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = demo_state(dir.path()).await;

    let (status, all) = get(&state, "/api/v1/incidents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
    assert!(all.get("next_cursor").is_none());

    let (_, first) = get(&state, "/api/v1/incidents?limit=1").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("cursor on a full page");
    let (_, second) = get(
        &state,
        &format!("/api/v1/incidents?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert!(second.get("next_cursor").is_none());

    let (_, high) = get(&state, "/api/v1/incidents?severity=high&status=new").await;
    let high = high["items"].as_array().expect("items");
    assert_eq!(high.len(), 1);
    // The story's DCSync makes its incident critical.
    assert_eq!(high[0]["severity"], "Critical");
    let (_, by_id) = get(&state, "/api/v1/incidents?severity=4").await;
    assert_eq!(by_id["items"].as_array().map(Vec::len), Some(1));
    let (_, later) = get(&state, "/api/v1/incidents?since=2026-11-16T09:00:00Z").await;
    assert_eq!(
        later["items"].as_array().map(Vec::len),
        Some(1),
        "only the story lasts past 09:00"
    );
    let (_, closed) = get(&state, "/api/v1/incidents?status=closed").await;
    assert_eq!(closed["items"].as_array().map(Vec::len), Some(0));

    let number = high[0]["number"].as_i64().expect("number");
    let (status, detail) = get(&state, &format!("/api/v1/incidents/{number}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["incident"]["id"], high[0]["id"]);
}

#[tokio::test]
async fn errors_share_one_json_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = demo_state(dir.path()).await;
    for (uri, status, code, says) in [
        (
            "/api/v1/incidents?status=open",
            StatusCode::BAD_REQUEST,
            "bad_request",
            "status `open`",
        ),
        (
            "/api/v1/incidents?severity=9",
            StatusCode::BAD_REQUEST,
            "bad_request",
            "severity `9`",
        ),
        (
            "/api/v1/incidents?since=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_request",
            "since `yesterday`",
        ),
        (
            "/api/v1/incidents?limit=1000",
            StatusCode::BAD_REQUEST,
            "bad_request",
            "limit",
        ),
        (
            "/api/v1/incidents?cursor=abc",
            StatusCode::BAD_REQUEST,
            "bad_request",
            "cursor `abc`",
        ),
        (
            "/api/v1/incidents/inc-nope",
            StatusCode::NOT_FOUND,
            "not_found",
            "inc-nope",
        ),
        (
            "/api/v1/incidents/999",
            StatusCode::NOT_FOUND,
            "not_found",
            "999",
        ),
        (
            "/api/v2/anything",
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        ),
    ] {
        let (got, body) = get(&state, uri).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert_eq!(body["error"]["status"], status.as_u16(), "{uri}");
        assert_eq!(body["error"]["code"], code, "{uri}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{uri}: {message}");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_in_the_same_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = demo_state(dir.path()).await;
    let request = Request::delete("/api/v1/incidents")
        .body(Body::empty())
        .expect("request");
    let (status, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
