//! Forwarding incidents to SIEMs through the store's transactional outbox.
//!
//! Every new state of an incident is written to the outbox in the transaction that made it,
//! under a stable event id (the SHA-256 of that state). A worker per sink reads what that sink
//! has not had yet ([`forward_once`]), sends it, and records the receiver's answer: delivered
//! (only on the receiver's acknowledgement), retry later (with jittered exponential backoff, or
//! exactly when the receiver's `Retry-After` says), or rejected for good. A sink that is down
//! loses nothing: its events wait in the outbox and drain when it returns; a receiver that gets
//! an event twice sees the same event id.
//!
//! One [`Sink`] per receiver kind, one module each: [`webhook`] (JSON with an HMAC-SHA256
//! signature header), [`hec`] (Splunk HEC with indexer acknowledgement), [`kafka`]
//! (idempotent producer, `acks=all`, keyed by incident), [`securityhub`] (`BatchImportFindings`
//! as ASFF) and
//! [`syslog`] (RFC 5424 with octet-counting framing over TCP, the message in [`cef`]).

pub mod cef;
pub mod hec;
pub mod kafka;
pub mod securityhub;
pub mod syslog;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};

use cairn_correlate::Store;
use cairn_correlate::store::{DeliveryOutcome, OutboxEvent};

/// What a receiver answered for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged.
    Delivered,
    /// Not now: the receiver is down, busy or timed out; `Some` when it said how long to wait.
    RetryAfter(Option<Duration>, String),
    /// Refused for good (a malformed event or a permission problem that waiting will not fix).
    Rejected(String),
}

/// A receiver of forwarded incidents.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The sink's name (its deliveries are recorded under it).
    fn name(&self) -> &str;
    /// Sends `events` in order; one outcome per event, in the same order.
    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome>;
}

/// Which incidents a sink receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Only incidents of at least this OCSF severity id.
    pub min_severity: i32,
    /// Only incidents with one of these finding sources (empty: any).
    pub sources: Vec<String>,
    /// Only incidents with a detection of one of these rules (empty: any).
    pub rules: Vec<String>,
}

impl SinkFilter {
    /// Why `event` is not for this sink, if it is not.
    pub fn excludes(&self, event: &OutboxEvent) -> Option<String> {
        if event.severity_id < self.min_severity {
            return Some(format!(
                "not forwarded: severity {} is below the sink's minimum {}",
                event.severity_id, self.min_severity
            ));
        }
        let list = |key: &str| -> Vec<&str> {
            event.payload[key]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default()
        };
        for (key, wanted) in [("sources", &self.sources), ("rules", &self.rules)] {
            if wanted.is_empty() {
                continue;
            }
            let have = list(key);
            if !have.iter().any(|s| wanted.iter().any(|w| w == s)) {
                return Some(format!(
                    "not forwarded: {key} {have:?} are none of the sink's {wanted:?}"
                ));
            }
        }
        None
    }
}

/// Retry timing: exponential from `base`, at most `max`, with jitter; a receiver's
/// `Retry-After` is honoured as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempts + 1`: half the exponential delay plus a random part
    /// of the other half, so that sinks recovering together are not hit together.
    pub fn delay(&self, attempts: i64, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let exp = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
        let full = self.base.saturating_mul(1 << exp).min(self.max);
        let mut seed = [0u8; 8];
        // Without randomness the delay is the full one: still correct, only less spread.
        let r = getrandom::fill(&mut seed).map_or(u64::MAX, |_| u64::from_le_bytes(seed));
        let half = full / 2;
        half + half.mul_f64(r as f64 / u64::MAX as f64)
    }
}

/// `[forward.<name>]` in the configuration file: one sink.
///
/// ```toml
/// [forward.siem]
/// type = "webhook"
/// url = "https://siem.example/cairn"
/// secret_env = "CAIRN_WEBHOOK_SECRET"   # the secret itself never sits in the file
/// min_severity = "high"
///
/// [forward.qradar]
/// type = "syslog"
/// address = "qradar.example:6514"
/// tls = true
/// sources = ["aws.securityhub", "ad.windows"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// [`webhook::WebhookSink`].
    Webhook {
        /// Where to POST.
        url: String,
        /// The environment variable holding the HMAC secret.
        secret_env: String,
        /// Per-request timeout in seconds (default 10).
        #[serde(default)]
        timeout_secs: Option<u64>,
        /// Minimum incident severity (`medium`, `high`, …; default all).
        #[serde(default)]
        min_severity: Option<String>,
        /// Only incidents with one of these finding sources (default all).
        #[serde(default)]
        sources: Vec<String>,
        /// Only incidents with a detection of one of these rules (default all).
        #[serde(default)]
        rules: Vec<String>,
    },
    /// [`hec::HecSink`].
    SplunkHec {
        /// The collector (`https://splunk.example:8088`).
        url: String,
        /// The environment variable holding the HEC token.
        token_env: String,
        /// Splunk index (default: the token's).
        #[serde(default)]
        index: Option<String>,
        /// Wait for indexer acknowledgement (default true).
        #[serde(default)]
        ack: Option<bool>,
        /// Per-request timeout in seconds (default 10).
        #[serde(default)]
        timeout_secs: Option<u64>,
        /// How long to wait for an acknowledgement, in seconds (default 60).
        #[serde(default)]
        ack_timeout_secs: Option<u64>,
        /// Minimum incident severity (default all).
        #[serde(default)]
        min_severity: Option<String>,
        /// Only incidents with one of these finding sources (default all).
        #[serde(default)]
        sources: Vec<String>,
        /// Only incidents with a detection of one of these rules (default all).
        #[serde(default)]
        rules: Vec<String>,
    },
    /// [`kafka::KafkaSink`].
    Kafka {
        /// `bootstrap.servers`.
        brokers: String,
        /// The incidents topic.
        topic: String,
        /// Further librdkafka settings (`security.protocol`, `sasl.mechanism`, …).
        #[serde(default)]
        options: std::collections::BTreeMap<String, String>,
        /// How long to wait for the broker's acknowledgement, in seconds (default 30).
        #[serde(default)]
        timeout_secs: Option<u64>,
        /// Minimum incident severity (default all).
        #[serde(default)]
        min_severity: Option<String>,
        /// Only incidents with one of these finding sources (default all).
        #[serde(default)]
        sources: Vec<String>,
        /// Only incidents with a detection of one of these rules (default all).
        #[serde(default)]
        rules: Vec<String>,
    },
    /// [`securityhub::SecurityHubSink`].
    SecurityHub {
        /// The Region of the Security Hub to import into.
        region: String,
        /// The account whose Security Hub receives the findings (12 digits).
        account_id: String,
        /// Endpoint override (VPC endpoints; tests).
        #[serde(default)]
        endpoint_url: Option<String>,
        /// Minimum incident severity (default all).
        #[serde(default)]
        min_severity: Option<String>,
        /// Only incidents with one of these finding sources (default all).
        #[serde(default)]
        sources: Vec<String>,
        /// Only incidents with a detection of one of these rules (default all).
        #[serde(default)]
        rules: Vec<String>,
    },
    /// [`syslog::SyslogSink`].
    Syslog {
        /// `host:port` of the receiver (TCP).
        address: String,
        /// HOSTNAME of the messages (default `cairn`).
        #[serde(default)]
        hostname: Option<String>,
        /// Syslog facility 0–23 (default 13, log audit).
        #[serde(default)]
        facility: Option<u8>,
        /// Use TLS (RFC 5425).
        #[serde(default)]
        tls: bool,
        /// With `tls`: PEM file of the CA certificates to trust (default: the system's).
        #[serde(default)]
        ca_file: Option<std::path::PathBuf>,
        /// With `tls`: the name the receiver's certificate must carry (default: the host).
        #[serde(default)]
        server_name: Option<String>,
        /// Minimum incident severity (default all).
        #[serde(default)]
        min_severity: Option<String>,
        /// Only incidents with one of these finding sources (default all).
        #[serde(default)]
        sources: Vec<String>,
        /// Only incidents with a detection of one of these rules (default all).
        #[serde(default)]
        rules: Vec<String>,
    },
}

impl SinkConfig {
    /// The sink `name` and its filter; errors say what is wrong with which setting.
    pub async fn build(&self, name: &str) -> Result<(Box<dyn Sink>, SinkFilter), String> {
        let filter = |min: &Option<String>,
                      sources: &[String],
                      rules: &[String]|
         -> Result<SinkFilter, String> {
            let min_severity = match min {
                None => 0,
                Some(s) => cairn_ingest::Severity::parse_label(s)
                    .ok_or_else(|| format!("forward.{name}.min_severity `{s}` is not a severity"))?
                    .id(),
            };
            Ok(SinkFilter {
                min_severity,
                sources: sources.to_vec(),
                rules: rules.to_vec(),
            })
        };
        match self {
            SinkConfig::Webhook {
                url,
                secret_env,
                timeout_secs,
                min_severity,
                sources,
                rules,
            } => {
                let secret = std::env::var(secret_env).map_err(|_| {
                    format!("forward.{name}: the environment variable {secret_env} (the webhook secret) is not set")
                })?;
                if secret.is_empty() {
                    return Err(format!("forward.{name}: {secret_env} is empty"));
                }
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(10).max(1));
                let sink = webhook::WebhookSink::new(name, url, secret.as_bytes(), timeout)?;
                Ok((Box::new(sink), filter(min_severity, sources, rules)?))
            }
            SinkConfig::SplunkHec {
                url,
                token_env,
                index,
                ack,
                timeout_secs,
                ack_timeout_secs,
                min_severity,
                sources,
                rules,
            } => {
                let token = std::env::var(token_env)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        format!("forward.{name}: the environment variable {token_env} (the HEC token) is not set")
                    })?;
                let options = hec::HecOptions {
                    index: index.clone(),
                    ack: ack.unwrap_or(true),
                    timeout: Duration::from_secs(timeout_secs.unwrap_or(10).max(1)),
                    ack_timeout: Duration::from_secs(ack_timeout_secs.unwrap_or(60).max(1)),
                };
                let sink = hec::HecSink::new(name, url, &token, options)?;
                Ok((Box::new(sink), filter(min_severity, sources, rules)?))
            }
            SinkConfig::Kafka {
                brokers,
                topic,
                options,
                timeout_secs,
                min_severity,
                sources,
                rules,
            } => {
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(30).max(1));
                let sink = kafka::KafkaSink::new(name, brokers, topic, options, timeout)?;
                Ok((Box::new(sink), filter(min_severity, sources, rules)?))
            }
            SinkConfig::SecurityHub {
                region,
                account_id,
                endpoint_url,
                min_severity,
                sources,
                rules,
            } => {
                let mut config = cairn_ingest::sources::securityhub::SecurityHubConfig::new(region);
                config.endpoint_url = endpoint_url.clone();
                let sink = securityhub::SecurityHubSink::connect(name, &config, account_id).await?;
                Ok((Box::new(sink), filter(min_severity, sources, rules)?))
            }
            SinkConfig::Syslog {
                address,
                hostname,
                facility,
                tls,
                ca_file,
                server_name,
                min_severity,
                sources,
                rules,
            } => {
                if facility.is_some_and(|f| f > 23) {
                    return Err(format!("forward.{name}.facility must be 0–23"));
                }
                let sink = syslog::SyslogSink::new(
                    name,
                    address,
                    hostname.as_deref().unwrap_or("cairn"),
                    facility.unwrap_or(13),
                    Duration::from_secs(10),
                );
                let sink = if *tls {
                    sink.with_tls(&syslog::SyslogTls {
                        ca_file: ca_file.clone(),
                        server_name: server_name.clone(),
                    })
                    .map_err(|e| format!("forward.{name}: {e}"))?
                } else {
                    sink
                };
                Ok((Box::new(sink), filter(min_severity, sources, rules)?))
            }
        }
    }
}

/// What one round of forwarding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardReport {
    /// Events acknowledged.
    pub delivered: usize,
    /// Events to try again later.
    pub retried: usize,
    /// Events refused or filtered out.
    pub rejected: usize,
    /// Events the sink still has to receive after this round.
    pub depth: i64,
}

/// Sends `sink` up to `batch` of the events due at `now`, and records the outcomes.
pub async fn forward_once(
    store: &dyn Store,
    sink: &dyn Sink,
    filter: &SinkFilter,
    backoff: &Backoff,
    now: DateTime<Utc>,
    batch: usize,
) -> cairn_correlate::Result<ForwardReport> {
    let events = store.outbox_pending(sink.name(), now, batch).await?;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut send = Vec::new();
    for e in events {
        match filter.excludes(&e) {
            Some(why) => outcomes.push((e.event_id.clone(), DeliveryOutcome::Rejected(why))),
            None => send.push(e),
        }
    }
    let mut report = ForwardReport {
        rejected: outcomes.len(),
        ..ForwardReport::default()
    };
    if !send.is_empty() {
        let answers = sink.send(&send).await;
        for (i, e) in send.iter().enumerate() {
            let answer = answers.get(i).cloned().unwrap_or_else(|| {
                SendOutcome::RetryAfter(None, "the sink gave no answer for it".into())
            });
            let outcome = match answer {
                SendOutcome::Delivered => {
                    report.delivered += 1;
                    DeliveryOutcome::Delivered
                }
                SendOutcome::RetryAfter(after, why) => {
                    report.retried += 1;
                    let wait = backoff.delay(e.attempts, after);
                    let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    DeliveryOutcome::RetryAt(at, why)
                }
                SendOutcome::Rejected(why) => {
                    report.rejected += 1;
                    DeliveryOutcome::Rejected(why)
                }
            };
            outcomes.push((e.event_id.clone(), outcome));
        }
    }
    store.outbox_record(sink.name(), &outcomes).await?;
    report.depth = store.outbox_depth(sink.name()).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_limit_with_jitter_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for attempts in 0..12 {
            let full = Duration::from_secs(1 << attempts).min(Duration::from_secs(60));
            let d = b.delay(attempts, None);
            assert!(
                d >= full / 2 && d <= full,
                "{attempts}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert_eq!(
            b.delay(9, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
