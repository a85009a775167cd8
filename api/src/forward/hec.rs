//! Splunk HTTP Event Collector sink, with indexer acknowledgement: a batch counts as delivered
//! only when Splunk says its `ackId` was indexed, not when the collector took the request.
//!
//! Events go to `/services/collector/event` as one request per batch (`Authorization: Splunk
//! <token>`, `X-Splunk-Request-Channel: <uuid>`), each `{"time", "host", "source": "cairn",
//! "sourcetype": "cairn:incident", "event": {"event_id", "created_at", "incident"}}`; the
//! answer's `ackId` is then polled at `/services/collector/ack` until it is `true` or the
//! acknowledgement timeout passes (then the batch is sent again, under the same event ids).
//! 429 and 503 (with `Retry-After`), timeouts, 5xx, redirects and 401/403/404 (what an
//! operator must fix) are retried; other 4xx are rejections.

use std::time::Duration;

use cairn_correlate::store::OutboxEvent;

use super::{SendOutcome, Sink, webhook};

/// A Splunk HEC endpoint.
pub struct HecSink {
    name: String,
    base: String,
    token: String,
    index: Option<String>,
    channel: String,
    ack: bool,
    ack_timeout: Duration,
    client: reqwest::Client,
}

/// HEC settings beyond the endpoint and token.
#[derive(Debug, Clone)]
pub struct HecOptions {
    /// Splunk index (default: the token's).
    pub index: Option<String>,
    /// Wait for indexer acknowledgement (the token must have it enabled).
    pub ack: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long to wait for an acknowledgement before sending again.
    pub ack_timeout: Duration,
}

fn new_channel() -> String {
    let mut b = [0u8; 16];
    // Without randomness a fixed channel still works; channels only separate acknowledgements.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl HecSink {
    /// A sink for the collector at `url` (`https://splunk.example:8088`).
    pub fn new(name: &str, url: &str, token: &str, options: HecOptions) -> Result<HecSink, String> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for {url}: {e}"))?;
        Ok(HecSink {
            name: name.to_string(),
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            index: options.index,
            channel: new_channel(),
            ack: options.ack,
            ack_timeout: options.ack_timeout,
            client,
        })
    }

    fn body(&self, events: &[OutboxEvent]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            let event: serde_json::Value =
                serde_json::from_slice(&webhook::body(e)).unwrap_or_default();
            let mut line = serde_json::json!({
                "time": e.created_at.timestamp_millis() as f64 / 1000.0,
                "host": "cairn",
                "source": "cairn",
                "sourcetype": "cairn:incident",
                "event": event,
            });
            if let Some(i) = &self.index {
                line["index"] = serde_json::Value::String(i.clone());
            }
            out.extend(serde_json::to_vec(&line).unwrap_or_default());
            out.push(b'\n');
        }
        out
    }

    /// Waits for `ack_id` to be indexed; false when the acknowledgement timeout passes.
    async fn acknowledged(&self, ack_id: u64) -> Result<bool, String> {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let r = self
                .client
                .post(format!(
                    "{}/services/collector/ack?channel={}",
                    self.base, self.channel
                ))
                .header("authorization", format!("Splunk {}", self.token))
                .header("x-splunk-request-channel", &self.channel)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "acks": [ack_id] }).to_string())
                .send()
                .await
                .map_err(|e| format!("asking for acknowledgement {ack_id}: {e}"))?;
            if r.status().is_success() {
                let text = r.text().await.map_err(|e| e.to_string())?;
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["acks"][ack_id.to_string()].as_bool() == Some(true) {
                    return Ok(true);
                }
            }
            if started.elapsed() + wait > self.ack_timeout {
                return Ok(false);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait::async_trait]
impl Sink for HecSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome> {
        let all = |o: SendOutcome| vec![o; events.len()];
        let url = format!("{}/services/collector/event", self.base);
        let answer = self
            .client
            .post(&url)
            .header("authorization", format!("Splunk {}", self.token))
            .header("x-splunk-request-channel", &self.channel)
            .body(self.body(events))
            .send()
            .await;
        let r = match answer {
            Err(e) => return all(SendOutcome::RetryAfter(None, format!("{url}: {e}"))),
            Ok(r) => r,
        };
        let status = r.status();
        let wait = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(webhook::retry_after);
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            let why = format!(
                "{url} answered {status}: {}",
                text.chars().take(200).collect::<String>()
            );
            return all(if webhook::retryable(status) {
                SendOutcome::RetryAfter(wait, why)
            } else {
                SendOutcome::Rejected(why)
            });
        }
        if !self.ack {
            return all(SendOutcome::Delivered);
        }
        let ack_id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["ackId"].as_u64());
        let Some(ack_id) = ack_id else {
            return all(SendOutcome::RetryAfter(
                None,
                format!(
                    "{url} gave no ackId (is indexer acknowledgement on for the token?): {text}"
                ),
            ));
        };
        match self.acknowledged(ack_id).await {
            Ok(true) => all(SendOutcome::Delivered),
            Ok(false) => all(SendOutcome::RetryAfter(
                None,
                format!(
                    "acknowledgement {ack_id} did not come within {:?}",
                    self.ack_timeout
                ),
            )),
            Err(e) => all(SendOutcome::RetryAfter(None, e)),
        }
    }
}
