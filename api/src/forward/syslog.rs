//! Syslog sink: RFC 5424 messages carrying [CEF](super::cef), framed by octet counting
//! (RFC 6587 §3.4.1) over TCP.
//!
//! Plain syslog over TCP has no acknowledgement: an event counts as delivered once the
//! connection took all of its bytes. A connection that fails leaves that event and the rest
//! for a retry; a receiver may then see an event twice, with the same `cs1` event id.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use cairn_correlate::store::OutboxEvent;

use super::{SendOutcome, Sink, cef};

/// A syslog receiver over TCP.
pub struct SyslogSink {
    name: String,
    address: String,
    hostname: String,
    facility: u8,
    timeout: Duration,
}

impl SyslogSink {
    /// A sink writing to `address` (`host:port`) as `hostname`, with syslog `facility`
    /// (0–23; 13 is "log audit").
    pub fn new(
        name: &str,
        address: &str,
        hostname: &str,
        facility: u8,
        timeout: Duration,
    ) -> SyslogSink {
        SyslogSink {
            name: name.to_string(),
            address: address.to_string(),
            hostname: hostname.to_string(),
            facility: facility.min(23),
            timeout,
        }
    }

    /// The RFC 5424 message of `event`.
    pub fn message(&self, event: &OutboxEvent) -> String {
        let severity = match event.severity_id {
            5 | 6 => 2,
            4 => 3,
            3 => 4,
            2 => 5,
            _ => 6,
        };
        let pri = u16::from(self.facility) * 8 + severity;
        format!(
            "<{pri}>1 {} {} cairn - incident - {}",
            event
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            nil_or(&self.hostname),
            cef::incident(event)
        )
    }
}

/// RFC 5424 header fields are printable ASCII without spaces, or `-`.
fn nil_or(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// `message` framed by octet counting.
pub fn frame(message: &str) -> Vec<u8> {
    format!("{} {message}", message.len()).into_bytes()
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, events: &[OutboxEvent]) -> Vec<SendOutcome> {
        let failed = |why: String| vec![SendOutcome::RetryAfter(None, why); events.len()];
        let mut stream =
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.address))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return failed(format!("cannot connect to {}: {e}", self.address)),
                Err(_) => return failed(format!("connecting to {} timed out", self.address)),
            };
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let bytes = frame(&self.message(e));
            let wrote = tokio::time::timeout(self.timeout, async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            })
            .await;
            match wrote {
                Ok(Ok(())) => out.push(SendOutcome::Delivered),
                Ok(Err(err)) => {
                    let why = format!("writing to {} failed: {err}", self.address);
                    out.resize(events.len(), SendOutcome::RetryAfter(None, why));
                    return out;
                }
                Err(_) => {
                    let why = format!("writing to {} timed out", self.address);
                    out.resize(events.len(), SendOutcome::RetryAfter(None, why));
                    return out;
                }
            }
        }
        let _ = stream.shutdown().await;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_with_octet_counting() {
        let sink = SyslogSink::new("s", "127.0.0.1:1", "cairn host", 13, Duration::from_secs(1));
        let event = OutboxEvent {
            seq: 1,
            event_id: "ev1".into(),
            incident_id: "inc-1".into(),
            severity_id: 4,
            payload: serde_json::json!({"id": "inc-1", "title": "t"}),
            created_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            attempts: 0,
        };
        let m = sink.message(&event);
        // Facility 13 × 8 + error (3).
        assert!(
            m.starts_with(
                "<107>1 2027-01-15T08:00:00.000Z cairnhost cairn - incident - CEF:0|Cairn|"
            ),
            "{m}"
        );
        let f = String::from_utf8(frame(&m)).expect("utf-8");
        let (len, rest) = f.split_once(' ').expect("a length");
        assert_eq!(len.parse::<usize>().expect("digits"), rest.len());
    }
}
