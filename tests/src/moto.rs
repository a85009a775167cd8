//! moto's Security Hub server as a real peer: started on a free 127.0.0.1 port per test.
//!
//! `scripts/test.sh` installs `moto[server]` (pinned) into `~/.cache/cairn/venv`; set
//! `CAIRN_MOTO_SERVER` to use another `moto_server`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `moto_server`, stopped on drop.
pub struct Moto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = home.join(".cache/cairn/venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl Moto {
    /// Starts moto and waits until it accepts connections.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = moto_binary();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); scripts/test.sh installs moto[server] into ~/.cache/cairn/venv",
                    bin.display()
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, addr }
    }

    /// The endpoint URL for the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `BatchImportFindings` (at most 100 per call, as the API allows); returns the success count.
    pub fn import(&self, findings: &[Value]) -> u64 {
        let mut imported = 0;
        for chunk in findings.chunks(100) {
            let body = serde_json::json!({ "Findings": chunk }).to_string();
            let (status, reply) = crate::http_request(
                self.addr,
                "POST",
                "/findings/import",
                &[
                    ("Content-Type", "application/json"),
                    // moto routes by the signing service named in the credential scope.
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/securityhub/aws4_request, SignedHeaders=host, Signature=0",
                    ),
                ],
                &body,
            );
            assert_eq!(status, 200, "BatchImportFindings: {reply}");
            let reply: Value = serde_json::from_str(&reply).expect("JSON reply");
            assert_eq!(reply["FailedCount"], 0, "{reply}");
            imported += reply["SuccessCount"].as_u64().unwrap_or_default();
        }
        imported
    }
}

impl Moto {
    /// `GetFindings` without filters (moto pages are large enough for tests).
    pub fn findings(&self) -> Vec<Value> {
        let (status, reply) = crate::http_request(
            self.addr,
            "POST",
            "/findings",
            &[
                ("Content-Type", "application/json"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/securityhub/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            "{\"MaxResults\": 100}",
        );
        assert_eq!(status, 200, "GetFindings: {reply}");
        let reply: Value = serde_json::from_str(&reply).expect("JSON reply");
        reply["Findings"].as_array().cloned().unwrap_or_default()
    }

    /// An IAM query-protocol call (`Action=…&Version=2010-05-08&…`); returns the XML reply.
    pub fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", form_encode(v)));
        }
        let (status, reply) = crate::http_request(
            self.addr,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            &body,
        );
        assert_eq!(status, 200, "IAM {action}: {reply}");
        reply
    }

    /// An Identity Center identity store JSON call (`AWSIdentityStore.<target>`).
    pub fn identity_store(&self, target: &str, body: &Value) -> Value {
        let (status, reply) = crate::http_request(
            self.addr,
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", &format!("AWSIdentityStore.{target}")),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/identitystore/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            &body.to_string(),
        );
        assert_eq!(status, 200, "identitystore {target}: {reply}");
        serde_json::from_str(&reply).unwrap_or(Value::Null)
    }
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
