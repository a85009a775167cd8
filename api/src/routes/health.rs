//! `GET /healthz`: the process is up and its store answers.

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
