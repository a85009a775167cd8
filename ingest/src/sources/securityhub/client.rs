//! The wire side of the Security Hub source: SDK clients per account scope, a client-side
//! rate limit, and the raw response body of every page.
//!
//! The SDK does signing, credentials (including role assumption), endpoints, retries with
//! jittered backoff on throttling and 5xx, and timeouts. Findings themselves are read from the
//! response body as received (captured by an interceptor), so that the normalizer sees, and
//! the evidence keeps, exactly what Security Hub sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::config::Region;
use aws_sdk_securityhub::error::{DisplayErrorContext, SdkError};
use aws_sdk_securityhub::types::{
    AwsSecurityFindingFilters, CompositeFilter, DateFilter, OcsfDateField, OcsfDateFilter,
    OcsfFindingFilters, OcsfStringField, OcsfStringFilter, SortCriterion, SortOrder, StringFilter,
    StringFilterComparison,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::{DEFAULT_SCOPE, SecurityHubApi, SecurityHubConfig};
use super::cursor::QueryKind;
use crate::reader::Record;

/// One page as received.
#[derive(Debug, Default)]
pub struct ApiPage {
    /// The findings, each with its exact text.
    pub records: Vec<Record>,
    /// Token of the next page.
    pub next_token: Option<String>,
}

/// Why a page could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Seconds the service asked to wait, if it said.
    pub retry_after: Option<u64>,
    /// What went wrong (the SDK's full error chain).
    pub message: String,
}

/// Fetches pages of findings for one scope. The SDK implementation talks to Security Hub;
/// tests substitute scripted ones.
#[async_trait]
pub trait FindingsApi: Send + Sync {
    /// One page of `query` after `next_token`.
    async fn page(
        &self,
        query: &QueryKind,
        next_token: Option<&str>,
        page_size: i32,
    ) -> Result<ApiPage, ApiError>;
}

/// Spaces requests at least `1 / rate` seconds apart.
pub struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per second.
    pub fn new(per_second: f64) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next slot.
    pub async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = Instant::now().max(*next) + self.interval;
    }
}

/// Keeps the body of the last deserialized response (the last attempt, after retries).
#[derive(Debug, Clone, Default)]
struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CairnCaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(bytes) = context.response().body().bytes()
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

impl CaptureBody {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// `GetFindings` and `GetFindingsV2` bodies share this shape.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "Findings", borrow, default)]
    findings: Vec<&'a RawValue>,
    #[serde(rename = "NextToken", default)]
    next_token: Option<String>,
}

fn parse_body(bytes: &[u8]) -> Result<ApiPage, ApiError> {
    let fail = |m: String| ApiError {
        status: None,
        retry_after: None,
        message: m,
    };
    let text =
        std::str::from_utf8(bytes).map_err(|e| fail(format!("response is not UTF-8: {e}")))?;
    let body: Body<'_> =
        serde_json::from_str(text).map_err(|e| fail(format!("unreadable response body: {e}")))?;
    let records = body
        .findings
        .into_iter()
        .map(|raw| {
            serde_json::from_str(raw.get())
                .map(|value| Record {
                    value,
                    raw: raw.get().to_string(),
                })
                .map_err(|e| fail(format!("unreadable finding in response: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiPage {
        records,
        next_token: body.next_token.filter(|t| !t.is_empty()),
    })
}

fn api_error<E: std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ApiError {
    let (status, retry_after) = match e.raw_response() {
        Some(r) => (
            Some(r.status().as_u16()),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse().ok()),
        ),
        None => (None, None),
    };
    ApiError {
        status,
        retry_after,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// Security Hub through the AWS SDK, for one scope.
pub struct SdkFindingsApi {
    client: Client,
    api: SecurityHubApi,
    limiter: RateLimiter,
}

/// The SDK client of `scope` (a role ARN to assume, or `default`), with the configured
/// endpoint, retries and timeouts.
pub async fn sdk_client(config: &SecurityHubConfig, scope: &str) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10).min(config.timeout))
                .operation_attempt_timeout(config.timeout)
                .build(),
        );
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let base = loader.load().await;
    let mut builder = aws_sdk_securityhub::config::Builder::from(&base);
    if scope != DEFAULT_SCOPE {
        let mut role = aws_config::sts::AssumeRoleProvider::builder(scope)
            .session_name("cairn-securityhub")
            .region(Region::new(config.region.clone()))
            .configure(&base);
        if let Some(id) = &config.external_id {
            role = role.external_id(id);
        }
        builder = builder.credentials_provider(role.build().await);
    }
    Client::from_conf(builder.build())
}

impl SdkFindingsApi {
    /// Builds the client of `scope` (a role ARN to assume, or `default`).
    pub async fn connect(config: &SecurityHubConfig, scope: &str) -> SdkFindingsApi {
        SdkFindingsApi {
            client: sdk_client(config, scope).await,
            api: config.api,
            limiter: RateLimiter::new(config.requests_per_second),
        }
    }
}

#[async_trait]
impl FindingsApi for SdkFindingsApi {
    async fn page(
        &self,
        query: &QueryKind,
        next_token: Option<&str>,
        page_size: i32,
    ) -> Result<ApiPage, ApiError> {
        self.limiter.acquire().await;
        let capture = CaptureBody::default();
        match self.api {
            SecurityHubApi::GetFindings => {
                let (filters, sort_field) = match query {
                    QueryKind::Updated { since } => (
                        AwsSecurityFindingFilters::builder()
                            .updated_at(DateFilter::builder().start(since.to_rfc3339()).build())
                            .build(),
                        "UpdatedAt",
                    ),
                    QueryKind::Open { .. } => (
                        AwsSecurityFindingFilters::builder()
                            .workflow_status(string_eq("NEW"))
                            .workflow_status(string_eq("NOTIFIED"))
                            .record_state(string_eq("ACTIVE"))
                            .build(),
                        "UpdatedAt",
                    ),
                };
                self.client
                    .get_findings()
                    .filters(filters)
                    .sort_criteria(
                        SortCriterion::builder()
                            .field(sort_field)
                            .sort_order(SortOrder::Ascending)
                            .build(),
                    )
                    .max_results(page_size)
                    .set_next_token(next_token.map(str::to_string))
                    .customize()
                    .interceptor(capture.clone())
                    .send()
                    .await
                    .map_err(api_error)?;
            }
            SecurityHubApi::GetFindingsV2 => {
                let composite = match query {
                    QueryKind::Updated { since } => CompositeFilter::builder()
                        .date_filters(
                            OcsfDateFilter::builder()
                                .field_name(OcsfDateField::FindingInfoModifiedTimeDt)
                                .filter(DateFilter::builder().start(since.to_rfc3339()).build())
                                .build(),
                        )
                        .build(),
                    QueryKind::Open { .. } => CompositeFilter::builder()
                        .string_filters(
                            OcsfStringFilter::builder()
                                .field_name(OcsfStringField::Status)
                                .filter(string_eq("New"))
                                .build(),
                        )
                        .build(),
                };
                self.client
                    .get_findings_v2()
                    .filters(
                        OcsfFindingFilters::builder()
                            .composite_filters(composite)
                            .build(),
                    )
                    .sort_criteria(
                        SortCriterion::builder()
                            .field("finding_info.modified_time_dt")
                            .sort_order(SortOrder::Ascending)
                            .build(),
                    )
                    .max_results(page_size)
                    .set_next_token(next_token.map(str::to_string))
                    .customize()
                    .interceptor(capture.clone())
                    .send()
                    .await
                    .map_err(api_error)?;
            }
        }
        let body = capture.take().ok_or_else(|| ApiError {
            status: None,
            retry_after: None,
            message: "the response body was not captured".into(),
        })?;
        parse_body(&body)
    }
}

fn string_eq(v: &str) -> StringFilter {
    StringFilter::builder()
        .value(v)
        .comparison(StringFilterComparison::Equals)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_each_finding_verbatim() {
        let page =
            parse_body(br#"{"Findings":[{"Id": "a",  "n": 1.0},{"Id":"b"}],"NextToken":"t2"}"#)
                .expect("body");
        assert_eq!(page.records[0].raw, r#"{"Id": "a",  "n": 1.0}"#);
        assert_eq!(page.next_token.as_deref(), Some("t2"));
        let last = parse_body(br#"{"Findings":[],"NextToken":""}"#).expect("body");
        assert!(last.next_token.is_none());
        assert!(
            parse_body(br#"{"Findings":[{"Id": "a""#).is_err(),
            "a truncated body is an error"
        );
    }

    #[tokio::test]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(20.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }
}
