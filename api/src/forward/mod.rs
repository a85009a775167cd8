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
//! signature header) and [`syslog`] (RFC 5424 with octet-counting framing over TCP, the message
//! in [`cef`]).

pub mod cef;
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
        if !self.sources.is_empty() {
            let sources: Vec<&str> = event.payload["sources"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
                .unwrap_or_default();
            if !sources.iter().any(|s| self.sources.iter().any(|w| w == s)) {
                return Some(format!(
                    "not forwarded: sources {sources:?} are none of the sink's {:?}",
                    self.sources
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
