//! The Kafka source: consumes topics of security records (the usual Winlogbeat / Elastic Agent
//! / NXLog → Kafka path for domain controller events, or any JSON Cairn normalizes) as a
//! member of a consumer group.
//!
//! Offsets are committed to Kafka only after the page holding the messages has committed to
//! the store ([`Source::committed`]), so a crash loses nothing: the group resumes at the last
//! stored message and the store's keyed writes absorb the replay. A message that is not
//! JSON, or a record that does not normalize, becomes a dead letter located as
//! `topic/partition/offset`. A message may hold one record, a JSON array, an API envelope or
//! NDJSON lines.
//!
//! `cairn ingest --source <id>` reads until the topics have been quiet for `idle_timeout`
//! (caught up) and exits.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::dead_letter::DeadLetter;
use crate::duration::serde_duration;
use crate::error::{IngestError, Result};
use crate::normalize::normalize_json;
use crate::reader::split_document;
use crate::source::{Page, Source};

/// `[sources.<id>] type = "kafka"`.
///
/// ```toml
/// [sources.dc-events]
/// type = "kafka"
/// brokers = "kafka-1:9093,kafka-2:9093"
/// topics = ["winlogbeat-security"]
/// group_id = "cairn"
/// options = { "security.protocol" = "SSL", "ssl.ca.location" = "/etc/cairn/kafka-ca.pem" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; instances of one group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest` or `latest`.
    #[serde(default = "default_reset")]
    pub auto_offset_reset: String,
    /// Messages per page (one store transaction and one offset commit each).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Longest a page waits to fill before it is stored.
    #[serde(default = "default_max_wait", with = "serde_duration")]
    pub max_wait: Duration,
    /// The run ends when no message arrived for this long after the group assigned
    /// partitions (caught up).
    #[serde(default = "default_idle", with = "serde_duration")]
    pub idle_timeout: Duration,
    /// How long joining the group may take before the run fails.
    #[serde(default = "default_join", with = "serde_duration")]
    pub join_timeout: Duration,
    /// Further librdkafka properties (TLS, SASL, timeouts), passed as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_group() -> String {
    "cairn".into()
}
fn default_reset() -> String {
    "earliest".into()
}
fn default_page_size() -> usize {
    2000
}
fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_idle() -> Duration {
    Duration::from_secs(5)
}
fn default_join() -> Duration {
    Duration::from_secs(60)
}

/// Properties Cairn sets itself: the commit protocol depends on them.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

impl KafkaConfig {
    /// Checks the configuration without connecting; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers must list bootstrap servers (host:port,…)".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics must name at least one topic".into());
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(format!(
                "auto_offset_reset must be earliest or latest, not {:?}",
                self.auto_offset_reset
            ));
        }
        if !(1..=100_000).contains(&self.page_size) {
            return Err(format!(
                "page_size must be 1–100000, not {}",
                self.page_size
            ));
        }
        if let Some(k) = self.options.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(format!(
                "options.{k} is set by Cairn (offsets are committed after the store commits); use the source's own keys"
            ));
        }
        Ok(())
    }
}

/// The next offset to consume per (topic, partition), after a page.
type Positions = BTreeMap<(String, i32), i64>;

fn positions_json(p: &Positions) -> String {
    let list: Vec<serde_json::Value> = p
        .iter()
        .map(|((t, part), next)| serde_json::json!({"topic": t, "partition": part, "next": next}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn parse_positions(cursor: &str) -> std::result::Result<Positions, String> {
    #[derive(Deserialize)]
    struct Position {
        topic: String,
        partition: i32,
        next: i64,
    }
    let list: Vec<Position> =
        serde_json::from_str(cursor).map_err(|e| format!("bad Kafka cursor {cursor:?}: {e}"))?;
    Ok(list
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next))
        .collect())
}

/// Consumes Kafka topics.
pub struct KafkaSource {
    id: String,
    config: KafkaConfig,
    consumer: StreamConsumer,
    assigned_at: Option<tokio::time::Instant>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes (the group join happens on the first poll).
    pub fn connect(id: &str, config: &KafkaConfig) -> Result<KafkaSource> {
        let invalid = |message: String| IngestError::Config {
            source_id: id.to_string(),
            message,
        };
        config.validate().map_err(invalid)?;
        let mut client = ClientConfig::new();
        for (k, v) in &config.options {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &config.auto_offset_reset);
        let consumer: StreamConsumer = client
            .create()
            .map_err(|e| invalid(format!("cannot create the Kafka consumer: {e}")))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| invalid(format!("cannot subscribe to {topics:?}: {e}")))?;
        Ok(KafkaSource {
            id: id.to_string(),
            config: config.clone(),
            consumer,
            assigned_at: None,
        })
    }

    fn upstream(&self, e: impl std::fmt::Display) -> IngestError {
        IngestError::upstream(&self.id, format!("Kafka {}: {e}", self.config.brokers))
    }

    /// With no message yet in this page: whether the topics have been quiet for the idle
    /// timeout since partitions were assigned (caught up); an error when joining the group
    /// takes longer than the join timeout.
    fn quiet_for_long(&mut self, started: tokio::time::Instant) -> Result<bool> {
        let assigned = self
            .consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        let now = tokio::time::Instant::now();
        if assigned {
            let since = *self.assigned_at.get_or_insert(now);
            return Ok(now.duration_since(since.max(started)) >= self.config.idle_timeout);
        }
        if now.duration_since(started) >= self.config.join_timeout {
            return Err(self.upstream(format!(
                "no partitions of {:?} assigned to group {} within {:?}",
                self.config.topics, self.config.group_id, self.config.join_timeout
            )));
        }
        Ok(false)
    }

    /// Normalizes one message's payload into `page`.
    fn push(&self, page: &mut Page, location: String, payload: Option<&[u8]>) {
        let Some(bytes) = payload else {
            page.dead_letters.push(DeadLetter::new(
                &self.id,
                location,
                "message has no payload (a tombstone?)".into(),
                b"",
            ));
            return;
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                page.dead_letters.push(DeadLetter::new(
                    &self.id,
                    location,
                    format!("payload is not UTF-8: {e}"),
                    bytes,
                ));
                return;
            }
        };
        // One document, or NDJSON when several lines each hold one.
        let documents: Vec<&str> = if text.trim_start().starts_with('{')
            && text.trim().lines().count() > 1
            && text
                .trim()
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('{'))
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
        {
            text.lines().filter(|l| !l.trim().is_empty()).collect()
        } else {
            vec![text]
        };
        let many = documents.len() > 1;
        for (line, doc) in documents.into_iter().enumerate() {
            let at = if many {
                format!("{location} line {}", line + 1)
            } else {
                location.clone()
            };
            match split_document(doc) {
                Ok((envelope, records)) => {
                    for (i, r) in records.into_iter().enumerate() {
                        let here = if envelope {
                            format!("{at}[{i}]")
                        } else {
                            at.clone()
                        };
                        match normalize_json(&r.json, r.raw) {
                            Ok(mut f) => {
                                f.ingested_at = Utc::now();
                                page.findings.push(f);
                            }
                            Err(e) => page.dead_letters.push(DeadLetter::new(
                                &self.id,
                                here,
                                e.to_string(),
                                r.raw.as_bytes(),
                            )),
                        }
                    }
                }
                Err(e) => page.dead_letters.push(DeadLetter::new(
                    &self.id,
                    at,
                    format!("invalid JSON: {e}"),
                    doc.as_bytes(),
                )),
            }
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn next_page(&mut self, _cursor: Option<&str>) -> Result<Option<Page>> {
        let mut page = Page::default();
        let mut positions = Positions::new();
        let mut messages = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        let started = tokio::time::Instant::now();
        while messages < self.config.page_size {
            // The first message may take the idle timeout, counted from when the group has
            // assigned partitions (joining takes seconds); later ones the page's deadline.
            let wait = match deadline {
                None => Duration::from_millis(250),
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            };
            let received = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) if deadline.is_some() => break,
                Err(_) => {
                    if self.quiet_for_long(started)? {
                        break;
                    }
                    continue;
                }
                Ok(r) => r,
            };
            let msg = match received {
                Ok(m) => m,
                // Partition EOF and transient broker errors are reported, not fatal: the
                // client reconnects by itself.
                Err(e) => {
                    // Only a received message starts a page's deadline: an error before one
                    // (an unknown topic, a broker down) must not end the run as caught up.
                    tracing::warn!(source = %self.id, error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if deadline.is_none() && self.quiet_for_long(started)? {
                        break;
                    }
                    continue;
                }
            };
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.config.max_wait);
            let location = format!("{}/{}/{}", msg.topic(), msg.partition(), msg.offset());
            page.bytes += msg.payload().map_or(0, |p| p.len() as u64);
            self.push(&mut page, location, msg.payload());
            positions.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
            messages += 1;
        }
        if messages == 0 {
            return Ok(None);
        }
        page.cursor = Some(positions_json(&positions));
        Ok(Some(page))
    }

    async fn committed(&mut self, cursor: Option<&str>) -> Result<()> {
        let Some(cursor) = cursor else {
            return Ok(());
        };
        let positions = parse_positions(cursor).map_err(IngestError::Internal)?;
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &positions {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| self.upstream(e))?;
        }
        // A partition revoked by a rebalance since the page was read refuses the commit;
        // its new owner re-reads from the last commit and the store absorbs the replay.
        match self.consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(source = %self.id, error = %e, "Kafka offset commit refused; the messages will be re-read");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reserved_options_are_refused() {
        let mut p = Positions::new();
        p.insert(("dc".into(), 2), 41);
        p.insert(("dc".into(), 0), 7);
        assert_eq!(parse_positions(&positions_json(&p)).expect("parses"), p);
        let mut c = KafkaConfig {
            brokers: "k:9092".into(),
            topics: vec!["dc".into()],
            group_id: default_group(),
            auto_offset_reset: default_reset(),
            page_size: 10,
            max_wait: default_max_wait(),
            idle_timeout: default_idle(),
            join_timeout: default_join(),
            options: BTreeMap::new(),
        };
        assert!(c.validate().is_ok());
        c.options.insert("enable.auto.commit".into(), "true".into());
        assert!(
            c.validate()
                .expect_err("reserved")
                .contains("enable.auto.commit")
        );
    }
}
