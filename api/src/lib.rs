//! `cairn-api`: the HTTP API over Cairn's store, and the `cairn` binary.
//!
//! [`app`] builds the router from an [`AppState`]; tests drive it without a socket. Every
//! route lives under `/api/v1` except `/healthz`; every error answers with one JSON shape
//! ([`error::ApiError`]). The API's public surface shows no DataFusion types.

pub mod config;
pub mod error;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use cairn_correlate::Store;
use cairn_rules::RuleSet;

use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store incidents are read from.
    pub store: Arc<dyn Store>,
    /// The rules in force (for titles and descriptions).
    pub rules: Arc<RuleSet>,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The API router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/api/v1/incidents", get(routes::incidents::list))
        .route("/api/v1/incidents/{id}", get(routes::incidents::detail))
        .fallback(not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(TraceLayer::new_for_http())
}
