//! Syslog sink: RFC 5424 messages carrying [CEF](super::cef), framed by octet counting
//! (RFC 6587 §3.4.1) over TCP, or over TLS (RFC 5425) with rustls.
//!
//! Syslog over TCP or TLS has no acknowledgement: an event counts as delivered once the
//! connection took all of its bytes. A connection that fails leaves that event and the rest
//! for a retry; a receiver may then see an event twice, with the same `cs1` event id.

use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use cairn_correlate::store::OutboxEvent;

use super::{SendOutcome, Sink, cef};

/// A syslog receiver over TCP.
pub struct SyslogSink {
    name: String,
    address: String,
    hostname: String,
    facility: u8,
    timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// TLS settings of a syslog receiver.
#[derive(Debug, Clone, Default)]
pub struct SyslogTls {
    /// PEM file of the CA certificates to trust (default: the system's).
    pub ca_file: Option<std::path::PathBuf>,
    /// The name the receiver's certificate must carry (default: the host of the address).
    pub server_name: Option<String>,
}

fn tls_connector(
    address: &str,
    tls: &SyslogTls,
) -> Result<(TlsConnector, ServerName<'static>), String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates to trust".into());
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = tls.server_name.clone().unwrap_or_else(|| {
        address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("`{host}` is not a server name: {e}"))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

async fn write_frames<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frames: &[Vec<u8>],
    timeout: Duration,
    address: &str,
) -> Vec<SendOutcome> {
    let mut out = Vec::with_capacity(frames.len());
    for bytes in frames {
        let wrote = tokio::time::timeout(timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        let failed = match wrote {
            Ok(Ok(())) => {
                out.push(SendOutcome::Delivered);
                continue;
            }
            Ok(Err(err)) => format!("writing to {address} failed: {err}"),
            Err(_) => format!("writing to {address} timed out"),
        };
        out.resize(frames.len(), SendOutcome::RetryAfter(None, failed));
        return out;
    }
    let _ = stream.shutdown().await;
    out
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
            tls: None,
        }
    }

    /// The same sink over TLS.
    pub fn with_tls(mut self, tls: &SyslogTls) -> Result<SyslogSink, String> {
        self.tls = Some(tls_connector(&self.address, tls)?);
        Ok(self)
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
        let frames: Vec<Vec<u8>> = events.iter().map(|e| frame(&self.message(e))).collect();
        match &self.tls {
            None => write_frames(&mut stream, &frames, self.timeout, &self.address).await,
            Some((connector, name)) => {
                let tls =
                    tokio::time::timeout(self.timeout, connector.connect(name.clone(), stream))
                        .await;
                match tls {
                    Ok(Ok(mut tls)) => {
                        write_frames(&mut tls, &frames, self.timeout, &self.address).await
                    }
                    Ok(Err(e)) => failed(format!("TLS with {} failed: {e}", self.address)),
                    Err(_) => failed(format!("TLS with {} timed out", self.address)),
                }
            }
        }
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
