//! `GET /api/v1/reports/evidence`: a signed compliance evidence bundle as one tar archive.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use clap::ValueEnum;
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ApiQuery};
use crate::report::{self, EvidenceRequest, Framework};

/// Query parameters of an evidence report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceParams {
    /// `cis-aws`, `nist-800-53`, `pci-dss`, `hipaa` or `fedramp`.
    pub framework: String,
    /// Start of the period: a date or an RFC 3339 time (default: all).
    pub from: Option<String>,
    /// End of the period, exclusive (default: now).
    pub to: Option<String>,
}

/// Makes a bundle (signed with the server's key, chained to its last report) and answers it as
/// `application/x-tar`; the `X-Cairn-Manifest-Sha256` header is the hash the next report chains to.
pub async fn evidence(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<EvidenceParams>,
) -> Result<Response, ApiError> {
    let Some(signer) = state.evidence.clone() else {
        return Err(ApiError::NotFound(
            "evidence reports are not enabled on this server".into(),
        ));
    };
    let framework = Framework::from_str(&p.framework, true).map_err(|_| {
        let known: Vec<String> = Framework::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        ApiError::BadRequest(format!(
            "unknown framework `{}`; one of: {}",
            p.framework,
            known.join(", ")
        ))
    })?;
    let time = |s: &Option<String>, name: &str| {
        s.as_deref()
            .map(report::parse_time)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
    };
    let request = EvidenceRequest {
        framework,
        from: time(&p.from, "from")?,
        to: time(&p.to, "to")?,
    };
    if let (Some(f), Some(t)) = (request.from, request.to)
        && f >= t
    {
        return Err(ApiError::BadRequest(format!(
            "from {f} is not before to {t}"
        )));
    }
    let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| internal(&e))?;
    let name = format!(
        "cairn-evidence-{}-{}",
        framework.id(),
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let out = dir.path().join(&name);
    // The chain advances only once the archive is made: a report that fails on the way is
    // not the previous one of the next.
    let (_, sha, bytes) = signer
        .report(state.store.as_ref(), &state.rules, &request, &out, |dir| {
            report::archive(dir, &name)
        })
        .await
        .map_err(|e| internal(&e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
            (
                header::HeaderName::from_static("x-cairn-manifest-sha256"),
                sha,
            ),
        ],
        bytes,
    )
        .into_response())
}
