//! The shared Microsoft client: Graph and Azure Resource Manager through the `azure_core`
//! pipeline, with `azure_identity` credentials.
//!
//! The pipeline gives what Microsoft's own SDKs do: a bearer-token policy per API scope
//! (`https://graph.microsoft.com/.default`, `https://management.azure.com/.default`) whose
//! token is refreshed when the service answers 401 with a challenge, exponential retries that
//! honour `Retry-After` on 429 and 503, and a per-attempt timeout. No maintained crate wraps
//! the Graph security or ARM Security/Sentinel APIs on `azure_core` 1.x, so the sources call
//! them through [`MicrosoftClient::get`] and read the raw JSON themselves (the evidence keeps
//! exactly what Microsoft sent).
//!
//! `endpoint_override` sends every request (API and token endpoint) to another address while
//! the URLs stay `https://…`: the bearer-token policy refuses plain-HTTP URLs, so tests and
//! TLS-terminating proxies are reached by rewriting at the transport.

mod credential;
pub mod odata;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::{Authorizer, BearerTokenAuthorizationPolicy, OnChallenge};
use azure_core::http::{
    AsyncRawResponse, ClientOptions, Context, ExponentialRetryOptions, HttpClient, Method,
    Pipeline, PipelineSendOptions, Request, RetryOptions, Transport, Url,
};
use serde::{Deserialize, Serialize};

pub use credential::CredentialConfig;

use crate::duration::serde_duration;

/// Token scope of Microsoft Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Token scope of Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// How to reach a Microsoft tenant: shared by every Microsoft source's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The Entra ID tenant (directory) id.
    pub tenant_id: String,
    /// How to authenticate.
    pub credential: CredentialConfig,
    /// Send every request here instead (tests, proxies); URLs keep their `https://` form.
    #[serde(default)]
    pub endpoint_override: Option<String>,
    /// Timeout of one attempt.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt (429, 503, timeouts, connection errors).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay; later ones grow exponentially unless the service says `Retry-After`.
    #[serde(default = "default_retry_delay", with = "serde_duration")]
    pub retry_delay: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    5
}
fn default_retry_delay() -> Duration {
    Duration::from_secs(1)
}

/// Why a request failed after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// HTTP status, if the service answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Sends requests to `endpoint_override`'s scheme, host and port, and bounds each attempt.
#[derive(Debug)]
struct RedirectingTransport {
    inner: Arc<dyn HttpClient>,
    redirect: Option<Url>,
    timeout: Duration,
}

#[async_trait]
impl HttpClient for RedirectingTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut request = request.clone();
        if let Some(target) = &self.redirect {
            let url = request.url_mut();
            let _ = url.set_scheme(target.scheme());
            let _ = url.set_host(target.host_str());
            let _ = url.set_port(target.port_or_known_default());
        }
        match tokio::time::timeout(self.timeout, self.inner.execute_request(&request)).await {
            Ok(result) => result,
            // An I/O error: the retry policy tries again.
            Err(_) => Err(azure_core::Error::with_message(
                ErrorKind::Io,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// A credential that can be replaced by a fresh instance: `azure_identity` credentials cache
/// tokens until shortly before they expire, so a token the service already refuses
/// (revoked, or a clock that disagrees) would otherwise be offered again.
#[derive(Debug)]
struct RenewableCredential {
    config: CredentialConfig,
    tenant_id: String,
    options: ClientOptions,
    current: std::sync::RwLock<Arc<dyn TokenCredential>>,
}

impl RenewableCredential {
    fn new(
        config: &ConnectionConfig,
        options: ClientOptions,
    ) -> Result<RenewableCredential, String> {
        let current = config
            .credential
            .build(&config.tenant_id, options.clone())?;
        Ok(RenewableCredential {
            config: config.credential.clone(),
            tenant_id: config.tenant_id.clone(),
            options,
            current: std::sync::RwLock::new(current),
        })
    }

    fn current(&self) -> Arc<dyn TokenCredential> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the credential by a new instance with an empty token cache.
    fn renew(&self) -> azure_core::Result<()> {
        let fresh = self
            .config
            .build(&self.tenant_id, self.options.clone())
            .map_err(|m| azure_core::Error::with_message(ErrorKind::Credential, m))?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

#[async_trait]
impl TokenCredential for RenewableCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.current().get_token(scopes, options).await
    }
}

/// On a 401 challenge (an expired or revoked token), fetch a new token and try once more.
#[derive(Debug)]
struct RefreshOnChallenge {
    scopes: Vec<String>,
    credential: Arc<RenewableCredential>,
}

#[async_trait]
impl OnChallenge for RefreshOnChallenge {
    async fn on_challenge(
        &self,
        _context: &Context,
        request: &mut Request,
        authorizer: &dyn Authorizer,
        _headers: &azure_core::http::headers::Headers,
    ) -> azure_core::Result<()> {
        self.credential.renew()?;
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        authorizer
            .authorize(request, &scopes, Default::default())
            .await
    }
}

/// Client options with the retry policy and transport of `config`.
fn client_options(config: &ConnectionConfig) -> Result<ClientOptions, String> {
    let redirect = config
        .endpoint_override
        .as_deref()
        .map(|u| Url::parse(u).map_err(|e| format!("endpoint_override `{u}` is not a URL: {e}")))
        .transpose()?;
    let transport = RedirectingTransport {
        inner: azure_core::http::new_http_client(None),
        redirect,
        timeout: config.timeout,
    };
    Ok(ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::try_from(config.retry_delay)
                .unwrap_or_default(),
            max_retries: config.max_retries,
            ..ExponentialRetryOptions::default()
        }),
        transport: Some(Transport::new(Arc::new(transport))),
        ..ClientOptions::default()
    })
}

/// An authenticated client for one API (Graph or ARM).
#[derive(Debug, Clone)]
pub struct MicrosoftClient {
    pipeline: Arc<Pipeline>,
}

impl MicrosoftClient {
    /// A client whose requests carry tokens for `scope`.
    pub fn new(config: &ConnectionConfig, scope: &str) -> Result<MicrosoftClient, String> {
        let options = client_options(config)?;
        let credential = Arc::new(RenewableCredential::new(config, options.clone())?);
        let auth = BearerTokenAuthorizationPolicy::new(credential.clone(), [scope])
            .with_on_challenge(Arc::new(RefreshOnChallenge {
                scopes: vec![scope.to_string()],
                credential,
            }));
        let per_try: Vec<Arc<dyn Policy>> = vec![Arc::new(auth)];
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            options,
            Vec::new(),
            per_try,
            None,
        );
        Ok(MicrosoftClient {
            pipeline: Arc::new(pipeline),
        })
    }

    /// `GET url`; the body of a 2xx answer, else the error after retries.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, RequestError> {
        self.send(url, Method::Get, None).await
    }

    /// `POST url` with a JSON body (ARM list actions such as a Sentinel incident's alerts).
    pub async fn post(&self, url: &str, body: &str) -> Result<Vec<u8>, RequestError> {
        self.send(url, Method::Post, Some(body)).await
    }

    async fn send(
        &self,
        url: &str,
        method: Method,
        body: Option<&str>,
    ) -> Result<Vec<u8>, RequestError> {
        let url = Url::parse(url).map_err(|e| RequestError {
            status: None,
            message: format!("bad URL `{url}`: {e}"),
        })?;
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(b) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(b.to_string());
        }
        let ctx = Context::new();
        let response = self
            .pipeline
            .send(&ctx, &mut request, Some(PipelineSendOptions::default()))
            .await
            .map_err(|e| RequestError {
                status: match e.kind() {
                    ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
                    _ => None,
                },
                message: e.to_string(),
            })?;
        Ok(response.into_body().as_ref().to_vec())
    }
}

/// Normalizes one record into `page` (a finding, or a dead letter with its reason);
/// `source` overrides the finding's `source` column when given.
pub(crate) fn push_record(
    source_id: &str,
    page: &mut crate::source::Page,
    record: &crate::reader::Record,
    location: String,
    source: Option<&str>,
) {
    match crate::normalize::normalize(&record.value, &record.raw) {
        Ok(mut f) => {
            if let Some(s) = source {
                f.source = s.to_string();
            }
            f.ingested_at = chrono::Utc::now();
            page.findings.push(f);
        }
        Err(e) => page.dead_letters.push(crate::DeadLetter::new(
            source_id,
            location,
            e.to_string(),
            record.raw.as_bytes(),
        )),
    }
}

/// Records without an id or update time cannot be deduplicated: they become dead letters.
pub(crate) fn unkeyed_to_dead_letters(
    source_id: &str,
    page: &mut crate::source::Page,
    unkeyed: Vec<crate::reader::Record>,
    location: &str,
) {
    for (i, record) in unkeyed.into_iter().enumerate() {
        page.dead_letters.push(crate::DeadLetter::new(
            source_id,
            format!("{location}[unkeyed {i}]"),
            "record has no id or update time to deduplicate on".into(),
            record.raw.as_bytes(),
        ));
    }
}
