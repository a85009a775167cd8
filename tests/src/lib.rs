//! End-to-end tests of Cairn: the real `cairn` binary on a temporary store, and the API
//! router in process. Everything runs in this one test binary (modules below) so that a
//! clean build links once.
//!
//! The binary tests need `cairn` built in the same target folder (`cargo build --workspace
//! --bins`, which `scripts/test.sh` does before running the tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

#[cfg(test)]
mod active_directory;
#[cfg(test)]
mod api;
#[cfg(test)]
mod defender;
#[cfg(test)]
mod demo;
#[cfg(test)]
mod directories;
#[cfg(test)]
mod evidence;
pub mod fakes;
#[cfg(test)]
mod forward;
#[cfg(test)]
mod hunt;
#[cfg(test)]
mod identity;
#[cfg(test)]
mod ingest;
#[cfg(test)]
mod kafka;
pub mod moto;
pub mod samba;
#[cfg(test)]
mod securityhub;
#[cfg(test)]
mod sentinel;
#[cfg(test)]
mod sigma;
#[cfg(test)]
mod slt;
#[cfg(test)]
mod slt_pipeline;

/// Newest modification time of the files the binary is built from (sources, rule pack, Sigma
/// mappings, migrations, demo data, manifests).
fn newest_input() -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(m);
            }
        }
    }
    let root = repo_root();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for crate_dir in ["ingest", "rules", "correlate", "hunt", "api"] {
        for sub in ["src", "pack", "sigma", "migrations", "demo/data"] {
            walk(&root.join(crate_dir).join(sub), &mut newest);
        }
        if let Ok(m) =
            std::fs::metadata(root.join(crate_dir).join("Cargo.toml")).and_then(|m| m.modified())
        {
            newest = newest.max(m);
        }
    }
    newest
}

/// The `cairn` binary next to this test binary (`target/<profile>/cairn`), refusing a missing
/// or stale one.
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("cairn{}", std::env::consts::EXE_SUFFIX));
    match std::fs::metadata(&bin).and_then(|m| m.modified()) {
        Ok(built) if built >= newest_input() => bin,
        Ok(_) => panic!(
            "{} is older than its sources; rebuild it with `cargo build --workspace --bins` (scripts/test.sh does)",
            bin.display()
        ),
        Err(_) => panic!(
            "{} is missing; build it with `cargo build --workspace --bins` (scripts/test.sh does)",
            bin.display()
        ),
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// `cairn` with `--data-dir dir` and the given arguments.
pub fn cairn(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cairn_bin());
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CAIRN_CONFIG")
        // Test credentials for the AWS SDK, and no lookups of the developer's own.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The client secret of the fake Microsoft tenant.
        .env("CAIRN_TEST_GRAPH_SECRET", "fake-secret");
    c
}

/// Runs `cairn` to completion.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cairn(dir, args).output().expect("run cairn")
}

/// `cairn --config <config> ingest --source <source> --no-correlate` on the store in `dir`.
pub fn ingest_source(dir: &Path, config: &Path, source: &str) -> Output {
    run(
        dir,
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "ingest",
            "--source",
            source,
            "--no-correlate",
        ],
    )
}

/// Runs `f` on the store in `dir`.
pub fn with_store<T>(dir: &Path, f: impl AsyncFnOnce(cairn_correlate::SqliteStore) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = cairn_correlate::SqliteStore::open(&dir.join("cairn.db"))
            .await
            .expect("store");
        f(store).await
    })
}

/// Every finding in the store in `dir`, archived ones included, oldest first.
pub fn stored_findings(dir: &Path) -> Vec<cairn_ingest::Finding> {
    with_store(dir, async |s| {
        cairn_correlate::archive::all_findings(&s, None, None)
            .await
            .expect("read")
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    })
}

/// Number of findings in the store in `dir`.
pub fn stored_count(dir: &Path) -> i64 {
    use cairn_correlate::Store;
    with_store(dir, async |s| s.counts().await.expect("counts").findings)
}

/// Standard output of a run that must have succeeded (the failure shows both outputs).
pub fn succeeded(o: &Output) -> String {
    let text = stdout(o);
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `cairn` process serving the API, killed on drop.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it printed before it started serving.
    pub banner: String,
}

impl Server {
    /// Starts `cairn <args> --listen 127.0.0.1:0` and waits for its "Serving" line.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        let mut child = cairn(dir, args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cairn");
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let mut banner = String::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => {
                    let _ = child.kill();
                    panic!("cairn exited before serving; it printed:\n{banner}");
                }
            };
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("Serving the API on http://") {
                let addr = rest.split('/').next().unwrap_or_default();
                break addr.parse().expect("listen address");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            banner,
        }
    }

    /// `GET path` → (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET (no client library needed for a JSON API on loopback).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[("Accept", "application/json")], "")
}

/// A minimal HTTP/1.0 request with headers and a body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}
