//! `GET /healthz`: the process is up and its store answers; `GET /metrics`: Prometheus gauges
//! of the store and the forwarding outbox.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// Liveness, with the store's row counts as a cheap proof that it answers.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counts = state.store.counts().await?;
    Ok(Json(json!({ "status": "ok", "store": counts })))
}

/// A Prometheus label value: `\\`, `"` and line feeds escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (version 0.0.4).
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    use std::fmt::Write;
    let counts = state.store.counts().await?;
    let (events, depths) = state.store.outbox_depths().await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, lines: Vec<(String, i64)>| {
        // `write!` to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "cairn_findings",
        "Findings stored, archived ones included.",
        vec![(String::new(), counts.findings)],
    );
    gauge(
        "cairn_dead_letters",
        "Records that could not be read or normalized.",
        vec![(String::new(), counts.dead_letters)],
    );
    gauge(
        "cairn_detections",
        "Detections stored.",
        vec![(String::new(), counts.detections)],
    );
    gauge(
        "cairn_incidents",
        "Incidents stored.",
        vec![(String::new(), counts.incidents)],
    );
    gauge(
        "cairn_outbox_events",
        "Incident changes written to the forwarding outbox.",
        vec![(String::new(), events)],
    );
    gauge(
        "cairn_outbox_depth",
        "Outbox events a sink has not had delivered or rejected yet.",
        depths
            .into_iter()
            .map(|(sink, d)| (format!("{{sink=\"{}\"}}", label(&sink)), d))
            .collect(),
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    ))
}
