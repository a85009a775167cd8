//! Kafka sink: each event is a record of the incidents topic, keyed by incident id (so one
//! incident's changes stay in order on one partition), its value the JSON the webhook sends,
//! and a `cairn-event-id` header. The producer is idempotent with `acks=all`; an event counts
//! as delivered when the broker acknowledged it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use cairn_correlate::store::OutboxEvent;

use super::{SendOutcome, Sink, webhook};

/// Header carrying the event id.
pub const EVENT_ID_HEADER: &str = "cairn-event-id";

/// A Kafka topic as a sink.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: FutureProducer,
}

impl KafkaSink {
    /// A sink producing to `topic` on `brokers`; `options` are further librdkafka settings
    /// (`security.protocol`, `sasl.mechanism`, …). Idempotence and `acks=all` cannot be
    /// turned off.
    pub fn new(
        name: &str,
        brokers: &str,
        topic: &str,
        options: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<KafkaSink, String> {
        let mut config = ClientConfig::new();
        for (k, v) in options {
            config.set(k, v);
        }
        let producer = config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create()
            .map_err(|e| format!("cannot create the Kafka producer for {brokers}: {e}"))?;
        Ok(KafkaSink {
            name: name.to_string(),
            topic: topic.to_string(),
            producer,
        })
    }
}

/// Whether waiting cannot make the broker take this record (an authorization error is an
/// operator's to fix, and is retried).
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome> {
        // Enqueue all, then wait for every acknowledgement: the producer batches them.
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let body = webhook::body(e);
            let record = FutureRecord::to(&self.topic)
                .key(&e.incident_id)
                .payload(&body)
                .headers(OwnedHeaders::new().insert(Header {
                    key: EVENT_ID_HEADER,
                    value: Some(e.event_id.as_str()),
                }));
            pending.push(self.producer.send_result(record).map_err(|(err, _)| err));
        }
        let mut out = Vec::with_capacity(events.len());
        for p in pending {
            let outcome = match p {
                Err(err) => SendOutcome::RetryAfter(None, format!("cannot enqueue: {err}")),
                Ok(delivery) => match delivery.await {
                    Err(_) => SendOutcome::RetryAfter(None, "the producer was dropped".into()),
                    Ok(Ok(_)) => SendOutcome::Delivered,
                    Ok(Err((err, _))) if permanent(&err) => {
                        SendOutcome::Rejected(format!("topic {}: {err}", self.topic))
                    }
                    Ok(Err((err, _))) => {
                        SendOutcome::RetryAfter(None, format!("topic {}: {err}", self.topic))
                    }
                },
            };
            out.push(outcome);
        }
        out
    }
}
