//! Webhook sink: each event is POSTed as JSON with its id and an HMAC-SHA256 signature of the
//! body, so the receiver can check who sent it and drop a redelivery.
//!
//! Headers: `X-Cairn-Event-Id` (stable per incident state) and `X-Cairn-Signature:
//! sha256=<hex HMAC-SHA256 of the body with the shared secret>`. A 2xx answer is the
//! acknowledgement; redirects (not followed), 401, 403, 404, 408, 410, 429 and 5xx answers
//! and network errors are retried (`Retry-After` in seconds or as an HTTP date is honoured),
//! and stop the batch; other 4xx answers reject that one event.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use cairn_correlate::store::OutboxEvent;

use super::{SendOutcome, Sink};

/// Header carrying the event id.
pub const EVENT_ID_HEADER: &str = "x-cairn-event-id";
/// Header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-cairn-signature";

/// A webhook receiver.
pub struct WebhookSink {
    name: String,
    url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl WebhookSink {
    /// A sink POSTing to `url`, signing with `secret`, waiting at most `timeout` per request.
    pub fn new(
        name: &str,
        url: &str,
        secret: &[u8],
        timeout: Duration,
    ) -> Result<WebhookSink, String> {
        // A redirect would turn the POST into a body-less GET whose 200 proves nothing.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for {url}: {e}"))?;
        Ok(WebhookSink {
            name: name.to_string(),
            url: url.to_string(),
            secret: secret.to_vec(),
            client,
        })
    }
}

/// `sha256=<hex>` of `body` under `secret`, as the signature header carries it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of an event: its id, when it was committed, and the incident.
pub fn body(event: &OutboxEvent) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event_id": event.event_id,
        "created_at": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "incident": event.payload,
    }))
    .unwrap_or_default()
}

/// Whether an answer means "not now" rather than "never this event": throttling, timeouts,
/// server errors, and what an operator must fix once for every event (a redirect, a wrong URL,
/// a rotated secret), which must not reject the whole backlog.
pub fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_redirection()
        || status.is_server_error()
        || matches!(status.as_u16(), 401 | 403 | 404 | 408 | 410 | 429)
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

#[async_trait::async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let body = body(e);
            let answer = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(EVENT_ID_HEADER, &e.event_id)
                .header(SIGNATURE_HEADER, signature(&self.secret, &body))
                .body(body)
                .send()
                .await;
            let outcome = match answer {
                Err(err) => SendOutcome::RetryAfter(None, format!("{}: {err}", self.url)),
                Ok(r) => {
                    let status = r.status();
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after);
                    if status.is_success() {
                        SendOutcome::Delivered
                    } else if retryable(status) {
                        SendOutcome::RetryAfter(wait, format!("{} answered {status}", self.url))
                    } else {
                        let text = r.text().await.unwrap_or_default();
                        let text: String = text.chars().take(200).collect();
                        SendOutcome::Rejected(format!("{} answered {status}: {text}", self.url))
                    }
                }
            };
            // A receiver that is down fails every event the same way: keep the rest for later.
            let stop = matches!(outcome, SendOutcome::RetryAfter(..));
            out.push(outcome.clone());
            if stop {
                while out.len() < events.len() {
                    out.push(outcome.clone());
                }
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA-256).
    #[test]
    fn the_signature_is_hmac_sha256() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
