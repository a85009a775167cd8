//! Compliance evidence bundles: a CIS AWS bundle of the demo data verifies, and every way of
//! tampering with it (a flipped byte, a deleted, added or reordered file, an edited manifest, a
//! swapped signature, another signer, a broken chain) is detected and names what was altered.

use std::path::{Path, PathBuf};

use cairn_api::report::{
    self, Chain, EvidenceRequest, Framework, MANIFEST, Manifest, Verification,
};
use cairn_correlate::{CorrelateConfig, SqliteStore, run_pass, run_source};
use cairn_ingest::sources::file::{FileSource, FileSourceConfig};
use cairn_rules::RuleSet;

use crate::{repo_root, run, stdout};

pub(crate) async fn demo_store(dir: &Path) -> (SqliteStore, RuleSet) {
    let store = SqliteStore::open(&dir.join("cairn.db"))
        .await
        .expect("store");
    let rules = RuleSet::builtin().await.expect("rules");
    let mut source = FileSource::new(
        "demo",
        &FileSourceConfig::new(vec![repo_root().join("api/demo/data")]),
    )
    .expect("source");
    run_source(&mut source, &store, |_, _| {})
        .await
        .expect("ingest");
    run_pass(&store, &rules, &CorrelateConfig::default())
        .await
        .expect("correlate");
    (store, rules)
}

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy folder");
    for e in std::fs::read_dir(from).expect("bundle") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn altered(v: &Verification) -> Vec<String> {
    v.problems.iter().map(|p| p.what.clone()).collect()
}

fn read_manifest(bundle: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(bundle.join(MANIFEST)).expect("manifest"))
        .expect("a manifest")
}

fn write_manifest(bundle: &Path, m: &Manifest) {
    std::fs::write(
        bundle.join(MANIFEST),
        serde_json::to_vec_pretty(m).expect("json"),
    )
    .expect("write manifest");
}

#[tokio::test]
async fn every_tampering_with_an_evidence_bundle_is_detected_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, rules) = demo_store(dir.path()).await;
    let key = report::load_or_create_key(&dir.path().join("keys/signing.key")).expect("key");
    let chain = Chain::new(dir.path().join("keys/chain"));
    let request = EvidenceRequest {
        framework: Framework::CisAws,
        from: None,
        to: None,
    };
    let first = dir.path().join("first");
    let (m1, sha1) = report::build(
        &store,
        &rules,
        &request,
        &first,
        &key,
        chain.last().expect("chain"),
    )
    .await
    .expect("bundle");
    chain.advance(&sha1).expect("chain");
    assert_eq!(m1.previous, None);

    // What the bundle holds: the CIS checks of the demo's Security Hub findings.
    let controls: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(first.join("controls.json")).expect("controls"))
            .expect("json");
    assert!(controls.len() >= 3, "{controls:#?}");
    assert!(controls.iter().any(|c| c["status"] == "FAILED"));
    assert!(controls.iter().all(|c| {
        c["control"]
            .as_str()
            .is_some_and(|s| s.starts_with("cis-aws-foundations-benchmark/"))
    }));
    let findings = std::fs::read_to_string(first.join("findings.jsonl")).expect("findings");
    assert!(findings.lines().count() >= 3);
    for l in findings.lines() {
        let f: serde_json::Value = serde_json::from_str(l).expect("a finding");
        assert!(f["raw"]["Compliance"].is_object(), "{f}");
    }
    let html = std::fs::read_to_string(first.join("report.html")).expect("html");
    assert!(html.contains("CIS AWS Foundations Benchmark evidence"));
    let rules_json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(first.join("rules.json")).expect("rules"))
            .expect("json");
    assert_eq!(rules_json.len(), rules.len());

    let trusted = key.verifying_key();
    let ok = report::verify(&first, None, Some(&trusted));
    assert!(ok.is_intact(), "{:?}", ok.problems);
    assert_eq!(ok.files_ok, m1.files.len());

    // The second report chains to the first.
    let second = dir.path().join("second");
    let (m2, _) = report::build(
        &store,
        &rules,
        &request,
        &second,
        &key,
        chain.last().expect("chain"),
    )
    .await
    .expect("bundle");
    assert_eq!(m2.previous.as_deref(), Some(sha1.as_str()));
    let chained = report::verify(&second, Some(&first), Some(&trusted));
    assert!(chained.is_intact(), "{:?}", chained.problems);

    let mut n = 0;
    let mut case = |name: &str, tamper: &dyn Fn(&Path), previous: Option<&Path>, want: &[&str]| {
        n += 1;
        let copy = dir.path().join(format!("case{n}"));
        copy_bundle(if previous.is_some() { &second } else { &first }, &copy);
        let prev_copy = previous.map(|p| {
            let c = dir.path().join(format!("case{n}-previous"));
            copy_bundle(p, &c);
            c
        });
        tamper(prev_copy.as_deref().unwrap_or(&copy));
        let v = report::verify(&copy, prev_copy.as_deref(), Some(&trusted));
        let got = altered(&v);
        for w in want {
            assert!(
                got.iter().any(|g| g == w),
                "{name}: {w} not named in {:?}",
                v.problems
            );
        }
        assert!(!v.is_intact(), "{name} went unnoticed");
    };

    case(
        "a flipped byte",
        &|b| {
            let p = b.join("findings.jsonl");
            let mut bytes = std::fs::read(&p).expect("read");
            bytes[10] ^= 0x01;
            std::fs::write(&p, bytes).expect("write");
        },
        None,
        &["findings.jsonl"],
    );
    case(
        "a deleted file",
        &|b| {
            std::fs::remove_file(b.join("controls.json")).expect("remove");
        },
        None,
        &["controls.json"],
    );
    case(
        "an added file",
        &|b| {
            std::fs::write(b.join("exception.txt"), "control 1.3 waived").expect("write");
        },
        None,
        &["exception.txt"],
    );
    case(
        "reordered findings",
        &|b| {
            let p = b.join("findings.jsonl");
            let text = std::fs::read_to_string(&p).expect("read");
            let mut lines: Vec<&str> = text.lines().collect();
            lines.reverse();
            std::fs::write(&p, lines.join("\n") + "\n").expect("write");
        },
        None,
        &["findings.jsonl"],
    );
    case(
        "reordered manifest entries",
        &|b| {
            let mut m = read_manifest(b);
            m.files.reverse();
            write_manifest(b, &m);
        },
        None,
        &[MANIFEST],
    );
    case(
        "a file and its hash replaced together",
        &|b| {
            let p = b.join("report.html");
            std::fs::write(&p, "<p>all controls pass</p>").expect("write");
            let mut m = read_manifest(b);
            for f in &mut m.files {
                if f.path == "report.html" {
                    f.sha256 = {
                        use sha2::Digest;
                        hex::encode(sha2::Sha256::digest(b"<p>all controls pass</p>"))
                    };
                    f.bytes = 24;
                }
            }
            write_manifest(b, &m);
        },
        None,
        &[MANIFEST],
    );
    let other_signature = m2.signature.clone();
    case(
        "a swapped signature",
        &move |b| {
            let mut m = read_manifest(b);
            m.signature = other_signature.clone();
            write_manifest(b, &m);
        },
        None,
        &[MANIFEST],
    );
    case(
        "another signer",
        &|b| {
            let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
            let mut m = read_manifest(b);
            m.public_key = hex::encode(stranger.verifying_key().as_bytes());
            m.signature = {
                use ed25519_dalek::Signer;
                hex::encode(stranger.sign(&m.signed_bytes()).to_bytes())
            };
            write_manifest(b, &m);
        },
        None,
        &[MANIFEST],
    );
    case(
        "a broken chain",
        &|previous| {
            let p = previous.join(MANIFEST);
            let text = std::fs::read_to_string(&p).expect("read");
            std::fs::write(&p, text.replace("cis-aws", "cis-aws ")).expect("write");
        },
        Some(&first),
        &["chain", "previous report: manifest.json"],
    );
    assert_eq!(n, 9);
}

/// The commands: `cairn report evidence` writes a bundle signed with the data folder's key and
/// `cairn report verify` passes it (exit 0) and fails a tampered copy (exit 1), naming the file.
#[test]
fn cairn_report_evidence_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo: PathBuf = repo_root().join("api/demo/data");
    let ingest = run(dir.path(), &["ingest", demo.to_str().expect("utf-8 path")]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let out = dir.path().join("bundle");
    let out_s = out.to_str().expect("utf-8 path");
    let made = run(
        dir.path(),
        &[
            "report",
            "evidence",
            "--framework",
            "cis-aws",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--out",
            out_s,
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(
        stdout(&made).contains("manifest SHA-256"),
        "{}",
        stdout(&made)
    );
    let v = run(dir.path(), &["report", "verify", out_s]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(
        stdout(&v).contains("signature of the trusted key verifies"),
        "{}",
        stdout(&v)
    );
    // An auditor's machine holds no key: consistent but not authenticated (exit 2) until the
    // signer's public key is given.
    let auditor = tempfile::tempdir().expect("tempdir");
    let v = run(auditor.path(), &["report", "verify", out_s]);
    assert_eq!(v.status.code(), Some(2), "{}", stdout(&v));
    assert!(stdout(&v).contains("not authenticated"), "{}", stdout(&v));
    let key = read_manifest(&out).public_key;
    let v = run(
        auditor.path(),
        &["report", "verify", out_s, "--public-key", &key],
    );
    assert!(v.status.success(), "{}", stdout(&v));
    let other = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .as_bytes(),
    );
    let v = run(
        auditor.path(),
        &["report", "verify", out_s, "--public-key", &other],
    );
    assert_eq!(v.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("not by the trusted key"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );

    std::fs::write(out.join("rules.json"), "[]").expect("tamper");
    let v = run(dir.path(), &["report", "verify", out_s]);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stderr).contains("rules.json: content altered"));

    // A bundle is never written over another.
    let again = run(
        dir.path(),
        &[
            "report",
            "evidence",
            "--framework",
            "cis-aws",
            "--out",
            out_s,
        ],
    );
    assert!(!again.status.success());
}

/// `GET /api/v1/reports/evidence` answers a tar archive of a bundle that verifies under the
/// server's key; the next report chains to it; bad parameters are 400s in the API's error shape.
#[tokio::test]
async fn the_api_serves_signed_chained_bundles_as_archives() {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, rules) = demo_store(dir.path()).await;
    let signer = Arc::new(report::Signer::in_dir(&dir.path().join("evidence")).expect("signer"));
    let state = cairn_api::AppState {
        store: Arc::new(store),
        rules: Arc::new(rules),
        evidence: Some(signer.clone()),
    };
    let get = |uri: &str| {
        let state = state.clone();
        let uri = uri.to_string();
        async move {
            let r = cairn_api::app(state)
                .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = r.status();
            let headers = r.headers().clone();
            let body = to_bytes(r.into_body(), 1 << 26).await.expect("body");
            (status, headers, body)
        }
    };

    let mut bundles = Vec::new();
    for n in 0..2 {
        let (status, headers, body) =
            get("/api/v1/reports/evidence?framework=cis-aws&from=2000-01-01").await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/x-tar");
        let sha = headers["x-cairn-manifest-sha256"]
            .to_str()
            .expect("header")
            .to_string();
        let into = dir.path().join(format!("unpacked{n}"));
        std::fs::create_dir_all(&into).expect("folder");
        tar::Archive::new(body.as_ref())
            .unpack(&into)
            .expect("a tar archive");
        let bundle = std::fs::read_dir(&into)
            .expect("unpacked")
            .next()
            .expect("one folder")
            .expect("entry")
            .path();
        bundles.push((bundle, sha));
    }
    let (first, first_sha) = &bundles[0];
    let (second, _) = &bundles[1];
    let key = signer.verifying_key();
    let v = report::verify(first, None, Some(&key));
    assert!(v.is_intact(), "{:?}", v.problems);
    assert_eq!(v.files_ok, 5);
    assert_eq!(
        read_manifest(second).previous.as_deref(),
        Some(first_sha.as_str())
    );
    let v = report::verify(second, Some(first), Some(&key));
    assert!(v.is_intact(), "{:?}", v.problems);

    for bad in [
        "/api/v1/reports/evidence?framework=sox",
        "/api/v1/reports/evidence?framework=cis-aws&from=yesterday",
        "/api/v1/reports/evidence?framework=cis-aws&from=2026-02-01&to=2026-01-01",
        "/api/v1/reports/evidence",
    ] {
        let (status, _, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(json["error"]["status"], 400, "{bad}: {json}");
    }
}

/// Controls that rules monitor: a NIST SP 800-53 bundle of the demo holds the detections of the
/// pack's rules tagged with its controls (account management, unsuccessful logons), and the
/// incidents that hold them.
#[tokio::test]
async fn detections_of_rules_tagged_with_a_control_are_its_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, rules) = demo_store(dir.path()).await;
    let signer = report::Signer::in_dir(&dir.path().join("evidence")).expect("signer");
    let out = dir.path().join("nist");
    let request = EvidenceRequest {
        framework: Framework::Nist80053,
        from: None,
        to: None,
    };
    signer
        .report(&store, &rules, &request, &out, |_| Ok(()))
        .await
        .expect("bundle");
    let controls: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("controls.json")).expect("controls"))
            .expect("json");
    let control = |id: &str| {
        controls
            .iter()
            .find(|c| c["control"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {controls:#?}"))
    };
    let ac2 = control("NIST.800-53.r5 AC-2(4)");
    assert_eq!(ac2["status"], "DETECTED");
    let rule_ids: Vec<&str> = ac2["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter_map(|d| d["rule_id"].as_str())
        .collect();
    assert!(
        rule_ids.contains(&"cairn.ad.account_created"),
        "{rule_ids:?}"
    );
    let ac7 = control("NIST.800-53.r5 AC-7");
    assert_eq!(
        ac7["detections"][0]["rule_id"],
        "cairn.ad.bruteforce_then_logon"
    );
    let incidents: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("incidents.json")).expect("incidents"))
            .expect("json");
    let ids: Vec<&str> = incidents
        .iter()
        .filter_map(|i| i["incident"]["id"].as_str())
        .collect();
    for c in [ac2, ac7] {
        for i in c["incidents"].as_array().expect("incidents") {
            assert!(
                ids.contains(&i.as_str().expect("id")),
                "{i} not in incidents.json"
            );
        }
    }
    // Nothing of another framework's controls.
    assert!(controls.iter().all(|c| {
        c["control"]
            .as_str()
            .is_some_and(|s| s.starts_with("NIST.800-53"))
    }));
    let v = report::verify(&out, None, Some(&signer.verifying_key()));
    assert!(v.is_intact(), "{:?}", v.problems);
}

/// `[evidence] signing_key` in the configuration file: the key is made there on first use and
/// signs the bundle, and `verify` with the same configuration trusts it.
#[test]
fn the_signing_key_can_be_named_in_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("keys/cairn-evidence.key");
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!("[evidence]\nsigning_key = \"{}\"\n", key.display()),
    )
    .expect("config");
    let config_s = config.to_str().expect("utf-8 path");
    let out = dir.path().join("bundle");
    let out_s = out.to_str().expect("utf-8 path");
    let made = run(
        dir.path(),
        &[
            "--config",
            config_s,
            "report",
            "evidence",
            "--framework",
            "pci-dss",
            "--out",
            out_s,
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(key.exists(), "the key is made where the configuration says");
    assert!(!dir.path().join("evidence/signing.key").exists());
    let v = run(
        dir.path(),
        &["--config", config_s, "report", "verify", out_s],
    );
    assert!(v.status.success(), "{}", stdout(&v));
    let plain = run(dir.path(), &["report", "verify", out_s]);
    assert_eq!(
        plain.status.code(),
        Some(2),
        "without the configuration no key is pinned"
    );
}
