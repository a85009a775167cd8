//! `cairn-api`: the HTTP API over Cairn's store, and the `cairn` binary.
//!
//! [`app`] builds the router from an [`AppState`]; tests drive it without a socket. Every
//! route lives under `/api/v1` except `/healthz`; every error answers with one JSON shape
//! ([`error::ApiError`]). The API's public surface shows no DataFusion types.

pub mod config;
pub mod error;
pub mod forward;
pub mod report;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
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
    /// The key and chain evidence reports are signed with; `None`: no evidence reports.
    pub evidence: Option<Arc<report::Signer>>,
}

/// Longest time a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn middleware_error(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Internal(err.to_string())
    }
}

/// The API router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/metrics", get(routes::health::metrics))
        .route("/api/v1/incidents", get(routes::incidents::list))
        .route("/api/v1/incidents/{id}", get(routes::incidents::detail))
        .route("/api/v1/reports/evidence", get(routes::reports::evidence))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(HandleErrorLayer::new(middleware_error))
                .timeout(REQUEST_TIMEOUT)
                .layer(RequestBodyLimitLayer::new(1024 * 1024)),
        )
}
