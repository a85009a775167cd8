//! Forwarding: the outbox is written with the incidents it describes; a webhook receiver that
//! is down, then fails, throttles (`Retry-After`) and loses an acknowledgement still gets
//! every event, each signed, redeliveries under the same id; a syslog receiver gets every
//! event as RFC 5424 + CEF with octet counting.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use cairn_api::forward::syslog::SyslogSink;
use cairn_api::forward::webhook::{self, WebhookSink};
use cairn_api::forward::{Backoff, SinkFilter, forward_once};
use cairn_correlate::{CorrelateConfig, SqliteStore, Store, run_pass};
use cairn_rules::RuleSet;

use crate::evidence::demo_store;

const SECRET: &[u8] = b"shared-secret";

/// Every event of the outbox in delivery order: what a fresh sink that takes everything
/// receives (a sink of its own per call, so the store's other sinks are not touched).
async fn all_events(store: &SqliteStore) -> Vec<cairn_correlate::store::OutboxEvent> {
    use cairn_correlate::store::DeliveryOutcome;
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let sink = format!(
        "inventory-{}",
        CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let later = chrono::Utc::now() + chrono::Duration::days(365);
    let mut all = Vec::new();
    loop {
        let batch = store
            .outbox_pending(&sink, later, 1000)
            .await
            .expect("outbox");
        if batch.is_empty() {
            return all;
        }
        let done: Vec<(String, DeliveryOutcome)> = batch
            .iter()
            .map(|e| (e.event_id.clone(), DeliveryOutcome::Delivered))
            .collect();
        store.outbox_record(&sink, &done).await.expect("record");
        all.extend(batch);
    }
}

/// Every event id in the outbox.
async fn all_event_ids(store: &SqliteStore) -> BTreeSet<String> {
    all_events(store)
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

/// One round of forwarding to `sink` now: no filter, the default backoff.
async fn forward_now(
    store: &SqliteStore,
    sink: &dyn cairn_api::forward::Sink,
) -> cairn_api::forward::ForwardReport {
    forward_once(
        store,
        sink,
        &SinkFilter::default(),
        &Backoff::default(),
        chrono::Utc::now(),
        100,
    )
    .await
    .expect("forward")
}

/// A local address nothing listens on: a receiver that is down.
fn closed_port() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    probe.local_addr().expect("addr")
}

/// The event ids (`cs1=`) of the CEF records in `text`.
fn cef_event_ids(text: &str) -> BTreeSet<String> {
    text.split(" cs1=")
        .skip(1)
        .filter_map(|s| s.split(' ').next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_outbox_is_written_with_the_incidents_and_only_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, rules): (SqliteStore, RuleSet) = demo_store(dir.path()).await;
    let open = store.open_incidents().await.expect("incidents");
    let ids = all_event_ids(&store).await;
    assert!(
        ids.len() >= open.len() && !open.is_empty(),
        "{} events, {} incidents",
        ids.len(),
        open.len()
    );
    let events = store
        .outbox_pending("never-used", chrono::Utc::now(), 1000)
        .await
        .expect("outbox");
    for i in &open {
        assert!(
            events.iter().any(|e| e.incident_id == i.id),
            "no event for {}",
            i.id
        );
    }
    // A pass that changes nothing writes nothing.
    run_pass(&store, &rules, &CorrelateConfig::default())
        .await
        .expect("pass");
    assert_eq!(all_event_ids(&store).await, ids);
}

/// What the test receiver saw.
#[derive(Default)]
struct Received {
    requests: usize,
    /// Event ids of requests answered 2xx or not, with valid signatures.
    ids: Vec<String>,
    bad_signatures: usize,
    bad_bodies: usize,
}

async fn receive(
    State(seen): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut seen = seen.lock().expect("lock");
    seen.requests += 1;
    let signed = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == webhook::signature(SECRET, &body));
    if !signed {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let id = headers
        .get(webhook::EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if json["event_id"] != id.as_str() || !json["incident"]["id"].is_string() {
        seen.bad_bodies += 1;
        return StatusCode::BAD_REQUEST.into_response();
    }
    match seen.requests {
        1 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        2 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")]).into_response(),
        3 => {
            // Taken in, but the acknowledgement is lost: Cairn must send it again.
            seen.ids.push(id);
            StatusCode::BAD_GATEWAY.into_response()
        }
        _ => {
            seen.ids.push(id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

#[tokio::test]
async fn a_webhook_that_is_down_then_flaky_gets_every_event_signed_and_redeliveries_keep_their_id()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;

    // A port with nothing listening: the receiver is down.
    let addr = closed_port();
    let sink = WebhookSink::new(
        "siem-webhook",
        &format!("http://{addr}/cairn"),
        SECRET,
        Duration::from_secs(5),
    )
    .expect("sink");
    let filter = SinkFilter::default();
    let backoff = Backoff::default();
    let mut now = chrono::Utc::now();
    let down = forward_once(&store, &sink, &filter, &backoff, now, 100)
        .await
        .expect("forward");
    assert_eq!((down.delivered, down.retried), (0, want.len()));
    assert_eq!(
        down.depth,
        want.len() as i64,
        "nothing is lost while the receiver is down"
    );
    // Nothing is due again before the backoff.
    let early = forward_once(&store, &sink, &filter, &backoff, now, 100)
        .await
        .expect("forward");
    assert_eq!(early.delivered + early.retried, 0);

    let seen = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/cairn", axum::routing::post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the receiver returns");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut rounds = 0;
    let mut waited_as_told = false;
    loop {
        now += chrono::Duration::minutes(10);
        let r = forward_once(&store, &sink, &filter, &backoff, now, 100)
            .await
            .expect("forward");
        rounds += 1;
        if r.depth == 0 || rounds > 30 {
            break;
        }
        if seen.lock().expect("lock").requests == 2 && !waited_as_told {
            // The receiver just answered 429 with Retry-After: 120: nothing is due a minute on.
            let early = now + chrono::Duration::seconds(60);
            let r = forward_once(&store, &sink, &filter, &backoff, early, 100)
                .await
                .expect("forward");
            assert_eq!(
                r.delivered + r.retried + r.rejected,
                0,
                "Retry-After ignored"
            );
            assert_eq!(seen.lock().expect("lock").requests, 2);
            waited_as_told = true;
        }
    }
    assert!(waited_as_told, "the 429 came");
    assert_eq!(
        store.outbox_depth("siem-webhook").await.expect("depth"),
        0,
        "undelivered = 0"
    );
    let seen = seen.lock().expect("lock");
    assert_eq!((seen.bad_signatures, seen.bad_bodies), (0, 0));
    let got: BTreeSet<String> = seen.ids.iter().cloned().collect();
    assert_eq!(got, want, "every event delivered, nothing else");
    assert!(
        seen.ids.len() > got.len(),
        "the lost acknowledgement made a redelivery"
    );
}

#[tokio::test]
async fn a_syslog_receiver_gets_every_event_as_rfc5424_cef_with_octet_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("a connection");
        let mut bytes = Vec::new();
        conn.read_to_end(&mut bytes).expect("read");
        let text = String::from_utf8(bytes).expect("utf-8");
        let mut messages = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let (len, after) = rest.split_once(' ').expect("octet count");
            let len: usize = len.parse().expect("digits");
            messages.push(after[..len].to_string());
            rest = &after[len..];
        }
        messages
    });
    let sink = SyslogSink::new(
        "siem-syslog",
        &addr.to_string(),
        "cairn-test",
        13,
        Duration::from_secs(5),
    );
    let r = forward_now(&store, &sink).await;
    assert_eq!((r.delivered, r.depth), (want.len(), 0));
    let messages = reader.join().expect("reader");
    assert_eq!(messages.len(), want.len());
    let mut got = BTreeSet::new();
    for m in &messages {
        assert!(m.starts_with('<') && m.contains(">1 "), "{m}");
        assert!(
            m.contains(" cairn-test cairn - incident - CEF:0|Cairn|Cairn|"),
            "{m}"
        );
        let ids = cef_event_ids(m);
        assert_eq!(ids.len(), 1, "one cs1 event id: {m}");
        got.extend(ids);
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_sink_filter_rejects_what_it_does_not_want_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let events = store
        .outbox_pending("x", chrono::Utc::now(), 1000)
        .await
        .expect("outbox");
    let critical = events.iter().filter(|e| e.severity_id >= 5).count();
    assert!(
        critical > 0 && critical < events.len(),
        "the demo has critical and other incidents"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("a connection");
        let mut s = String::new();
        conn.read_to_string(&mut s).expect("read");
        s
    });
    let sink = SyslogSink::new(
        "critical-only",
        &addr.to_string(),
        "h",
        13,
        Duration::from_secs(5),
    );
    let filter = SinkFilter {
        min_severity: 5,
        ..SinkFilter::default()
    };
    let r = forward_once(
        &store,
        &sink,
        &filter,
        &Backoff::default(),
        chrono::Utc::now(),
        1000,
    )
    .await
    .expect("forward");
    assert_eq!(r.delivered, critical);
    assert_eq!(r.rejected, events.len() - critical);
    assert_eq!(r.depth, 0);
    let sent = reader.join().expect("reader");
    assert_eq!(sent.matches("CEF:0|").count(), critical);

    // By rule: only incidents with a detection of the rule (one that not every incident has).
    let rules_of = |e: &cairn_correlate::store::OutboxEvent| -> Vec<String> {
        e.payload["rules"]
            .as_array()
            .expect("events name their incident's rules")
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect()
    };
    let all_rules: BTreeSet<String> = events.iter().flat_map(rules_of).collect();
    let (with_rule, rule) = all_rules
        .iter()
        .map(|r| {
            (
                events.iter().filter(|e| rules_of(e).contains(r)).count(),
                r.clone(),
            )
        })
        .min()
        .expect("some rule");
    assert!(with_rule < events.len(), "{rule} is in every incident");
    let by_rule = SinkFilter {
        rules: vec![rule],
        ..SinkFilter::default()
    };
    let excluded = events
        .iter()
        .filter(|e| by_rule.excludes(e).is_some())
        .count();
    assert_eq!(excluded, events.len() - with_rule);
}

/// `cairn forward --once` with the sinks of a configuration file: a syslog receiver gets the
/// demo's incidents and the command exits 0; a sink whose secret is not set is refused by name;
/// a receiver that is down leaves the events waiting and exit status 3.
#[test]
fn cairn_forward_delivers_the_outbox_to_the_configured_sinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = crate::repo_root().join("api/demo/data");
    let ingest = crate::run(dir.path(), &["ingest", demo.to_str().expect("utf-8 path")]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("a connection");
        let mut s = String::new();
        conn.read_to_string(&mut s).expect("read");
        s
    });
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[forward.siem]\ntype = \"syslog\"\naddress = \"{addr}\"\nhostname = \"cairn-ci\"\n"
        ),
    )
    .expect("config");
    let config_s = config.to_str().expect("utf-8 path");
    let o = crate::run(dir.path(), &["--config", config_s, "forward", "--once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        crate::stdout(&o).contains("siem: 2 delivered"),
        "{}",
        crate::stdout(&o)
    );
    let received = reader.join().expect("reader");
    assert_eq!(
        received.matches("CEF:0|Cairn|Cairn|").count(),
        2,
        "{received}"
    );

    // Nothing new: a second run sends nothing.
    let again = crate::run(dir.path(), &["--config", config_s, "forward", "--once"]);
    assert!(again.status.success());
    assert!(
        crate::stdout(&again).is_empty(),
        "{}",
        crate::stdout(&again)
    );

    let down = closed_port();
    std::fs::write(
        &config,
        format!(
            "[forward.siem]\ntype = \"syslog\"\naddress = \"{addr}\"\n\n\
             [forward.backup]\ntype = \"syslog\"\naddress = \"{down}\"\n\n\
             [forward.hook]\ntype = \"webhook\"\nurl = \"http://{down}/\"\nsecret_env = \"CAIRN_TEST_UNSET_SECRET\"\n"
        ),
    )
    .expect("config");
    let o = crate::run(dir.path(), &["--config", config_s, "forward", "--once"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CAIRN_TEST_UNSET_SECRET"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = crate::run(
        dir.path(),
        &[
            "--config", config_s, "forward", "--once", "--sink", "backup",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("backup: 2 events wait"));
}

/// The Kafka sink on librdkafka's mock cluster: while the broker is down nothing is lost (every
/// event waits), and when it returns every event arrives once as a record keyed by its
/// incident, with its event id in a header.
#[tokio::test]
async fn a_kafka_topic_gets_every_event_keyed_by_incident_after_the_broker_returns() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::mocking::MockCluster;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;
    let incidents: BTreeSet<String> = store
        .outbox_pending("never-used", chrono::Utc::now(), 1000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| e.incident_id)
        .collect();

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("cairn.incidents", 3, 1)
        .expect("topic");
    let brokers = cluster.bootstrap_servers();
    let sink = cairn_api::forward::kafka::KafkaSink::new(
        "siem-kafka",
        &brokers,
        "cairn.incidents",
        &Default::default(),
        Duration::from_secs(2),
    )
    .expect("sink");
    let (filter, backoff) = (SinkFilter::default(), Backoff::default());
    let mut now = chrono::Utc::now();

    cluster.broker_down(1).expect("broker down");
    let down = forward_once(&store, &sink, &filter, &backoff, now, 100)
        .await
        .expect("forward");
    assert_eq!((down.delivered, down.retried), (0, want.len()));
    assert_eq!(down.depth, want.len() as i64);

    cluster.broker_up(1).expect("broker up");
    now += chrono::Duration::minutes(10);
    let up = forward_once(&store, &sink, &filter, &backoff, now, 100)
        .await
        .expect("forward");
    assert_eq!((up.delivered, up.depth), (want.len(), 0));

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "siem")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["cairn.incidents"]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < want.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "cairn-event-id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default();
            let body: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value");
            assert_eq!(body["incident"]["id"], key.as_str());
            assert_eq!(body["event_id"], id.as_str());
            got.push((key, id));
        }
    }
    let ids: BTreeSet<String> = got.iter().map(|(_, id)| id.clone()).collect();
    let keys: BTreeSet<String> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(ids, want);
    assert_eq!(keys, incidents);
    assert_eq!(got.len(), want.len(), "no duplicates");
}

/// What the fake Splunk collector saw.
#[derive(Default)]
struct Hec {
    requests: u64,
    /// Event ids per `ackId` handed out.
    batches: std::collections::BTreeMap<u64, Vec<String>>,
    /// `ackId`s reported indexed.
    indexed: BTreeSet<u64>,
    unauthorized: usize,
}

async fn hec_event(
    State(hec): State<Arc<Mutex<Hec>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let n = {
        let mut h = hec.lock().expect("lock");
        h.requests += 1;
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Splunk test-token")
            && headers.contains_key("x-splunk-request-channel");
        if !authorized {
            h.unauthorized += 1;
            return StatusCode::UNAUTHORIZED.into_response();
        }
        h.requests
    };
    match n {
        1 => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"text\":\"Server is busy\",\"code\":9}",
            )
                .into_response();
        }
        2 => return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "30")]).into_response(),
        // Slower than the client's timeout.
        3 => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let ids: Vec<String> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON event per line");
            assert_eq!(v["sourcetype"], "cairn:incident");
            v["event"]["event_id"]
                .as_str()
                .expect("event id")
                .to_string()
        })
        .collect();
    hec.lock().expect("lock").batches.insert(n, ids);
    axum::Json(serde_json::json!({"text": "Success", "code": 0, "ackId": n})).into_response()
}

async fn hec_ack(State(hec): State<Arc<Mutex<Hec>>>, body: Bytes) -> axum::response::Response {
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let mut h = hec.lock().expect("lock");
    let mut acks = serde_json::Map::new();
    for id in v["acks"].as_array().expect("acks") {
        let id = id.as_u64().expect("ack id");
        // The 4th request's acknowledgement never comes.
        let done = id != 4 && h.batches.contains_key(&id);
        if done {
            h.indexed.insert(id);
        }
        acks.insert(id.to_string(), serde_json::Value::Bool(done));
    }
    axum::Json(serde_json::json!({ "acks": acks })).into_response()
}

/// Splunk HEC with indexer acknowledgement against a collector that answers 503, then 429
/// with `Retry-After`, then too late, then takes a batch whose acknowledgement never comes:
/// every event ends up indexed (acknowledged), the outbox empties, and the batches sent again
/// carry the same event ids.
#[tokio::test]
async fn splunk_hec_delivery_counts_only_acknowledged_batches() {
    use cairn_api::forward::hec::{HecOptions, HecSink};

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;
    let hec = Arc::new(Mutex::new(Hec::default()));
    let app = axum::Router::new()
        .route("/services/collector/event", axum::routing::post(hec_event))
        .route("/services/collector/ack", axum::routing::post(hec_ack))
        .with_state(hec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sink = HecSink::new(
        "splunk",
        &format!("http://{addr}"),
        "test-token",
        HecOptions {
            index: Some("security".into()),
            ack: true,
            timeout: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(1),
        },
    )
    .expect("sink");
    let (filter, backoff) = (SinkFilter::default(), Backoff::default());
    let mut now = chrono::Utc::now();
    let mut rounds = 0;
    let mut waited_as_told = false;
    loop {
        let r = forward_once(&store, &sink, &filter, &backoff, now, 100)
            .await
            .expect("forward");
        rounds += 1;
        if r.depth == 0 || rounds > 20 {
            break;
        }
        if hec.lock().expect("lock").requests == 2 && !waited_as_told {
            // 429 with Retry-After: 30: nothing is due 20 s on.
            let early = now + chrono::Duration::seconds(20);
            let r = forward_once(&store, &sink, &filter, &backoff, early, 100)
                .await
                .expect("forward");
            assert_eq!(
                r.delivered + r.retried + r.rejected,
                0,
                "Retry-After ignored"
            );
            waited_as_told = true;
        }
        now += chrono::Duration::minutes(10);
    }
    assert!(waited_as_told, "the 429 came");
    assert_eq!(
        store.outbox_depth("splunk").await.expect("depth"),
        0,
        "undelivered = 0"
    );
    let h = hec.lock().expect("lock");
    assert_eq!(h.unauthorized, 0);
    assert_eq!(
        h.requests, 5,
        "503, 429, too late, unacknowledged, acknowledged"
    );
    let indexed: BTreeSet<String> = h
        .indexed
        .iter()
        .flat_map(|id| h.batches[id].iter().cloned())
        .collect();
    assert_eq!(indexed, want, "every event indexed and acknowledged");
    // The unacknowledged batch came again under the same ids.
    assert_eq!(h.batches[&4].iter().cloned().collect::<BTreeSet<_>>(), want);
}

/// `cairn forward` into moto's Security Hub: every incident becomes one ASFF finding of the
/// account's own product (`BatchImportFindings`), carrying its event id; forwarding again sends
/// nothing.
#[test]
fn incidents_are_imported_into_security_hub_as_asff_findings() {
    let moto = crate::moto::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = crate::repo_root().join("api/demo/data");
    let ingest = crate::run(dir.path(), &["ingest", demo.to_str().expect("utf-8 path")]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let want: BTreeSet<String> = crate::with_store(dir.path(), async |s| all_event_ids(&s).await);
    let before = moto.findings().len();

    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[forward.aws]\ntype = \"security_hub\"\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\nendpoint_url = \"{}\"\n",
            moto.url()
        ),
    )
    .expect("config");
    let config_s = config.to_str().expect("utf-8 path");
    let o = crate::run(dir.path(), &["--config", config_s, "forward", "--once"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        crate::stdout(&o).contains(&format!("aws: {} delivered", want.len())),
        "{}",
        crate::stdout(&o)
    );

    let findings = moto.findings();
    let cairn: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["Id"].as_str().is_some_and(|i| i.starts_with("cairn/")))
        .collect();
    assert_eq!(findings.len() - before, want.len());
    let got: BTreeSet<String> = cairn
        .iter()
        .filter_map(|f| {
            f["ProductFields"]["cairn/event_id"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(got, want);
    for f in &cairn {
        assert_eq!(
            f["ProductArn"],
            "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
        );
        assert!(
            f["Title"]
                .as_str()
                .is_some_and(|t| t.starts_with("[Cairn #")),
            "{f}"
        );
        assert!(f["Types"].as_array().is_some_and(|t| !t.is_empty()), "{f}");
        assert!(
            f["Resources"].as_array().is_some_and(|r| !r.is_empty()),
            "{f}"
        );
    }
    let again = crate::run(dir.path(), &["--config", config_s, "forward", "--once"]);
    assert!(again.status.success());
    assert!(
        crate::stdout(&again).is_empty(),
        "{}",
        crate::stdout(&again)
    );
}

/// Syslog over TLS (RFC 5425) to a rustls listener with a certificate made for the test: every
/// event arrives when the sink trusts the listener's CA; a sink that trusts only the system's
/// CAs refuses the handshake and the events wait.
#[tokio::test]
async fn syslog_over_tls_delivers_to_a_trusted_receiver_only() {
    use cairn_api::forward::syslog::SyslogTls;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;
    // A CA, and a server certificate for localhost that it signs (webpki refuses a CA
    // certificate as the server's own).
    let p = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: Vec<std::ffi::OsString>| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let os = |v: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<std::ffi::OsString> {
        v.iter().map(|a| a.as_ref().to_os_string()).collect()
    };
    openssl(os(&[
        &"req",
        &"-x509",
        &ec[0],
        &ec[1],
        &ec[2],
        &ec[3],
        &ec[4],
        &"-days",
        &"1",
        &"-subj",
        &"/CN=Cairn test CA",
        &"-addext",
        &"basicConstraints=critical,CA:TRUE",
        &"-addext",
        &"keyUsage=critical,keyCertSign",
        &"-keyout",
        &p("ca.key"),
        &"-out",
        &ca,
    ]));
    openssl(os(&[
        &"req",
        &ec[0],
        &ec[1],
        &ec[2],
        &ec[3],
        &ec[4],
        &"-subj",
        &"/CN=localhost",
        &"-keyout",
        &key,
        &"-out",
        &p("leaf.csr"),
    ]));
    openssl(os(&[
        &"x509",
        &"-req",
        &"-in",
        &p("leaf.csr"),
        &"-CA",
        &ca,
        &"-CAkey",
        &p("ca.key"),
        &"-CAcreateserial",
        &"-days",
        &"1",
        &"-extfile",
        &p("leaf.ext"),
        &"-out",
        &cert,
    ]));

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .map(|c| c.expect("cert"))
        .collect();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from_pem_file(&key).expect("key"))
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(String::new()));
    let sink_received = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let received = sink_received.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to read.
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut s = String::new();
                    let _ = tls.read_to_string(&mut s).await;
                    received.lock().expect("lock").push_str(&s);
                }
            });
        }
    });

    let untrusting = SyslogSink::new(
        "untrusting",
        &addr.to_string(),
        "h",
        13,
        Duration::from_secs(5),
    )
    .with_tls(&SyslogTls {
        ca_file: None,
        server_name: Some("localhost".into()),
    })
    .expect("system roots");
    let r = forward_now(&store, &untrusting).await;
    assert_eq!(
        (r.delivered, r.retried, r.depth),
        (0, want.len(), want.len() as i64)
    );

    let trusting = SyslogSink::new(
        "siem-tls",
        &addr.to_string(),
        "h",
        13,
        Duration::from_secs(5),
    )
    .with_tls(&SyslogTls {
        ca_file: Some(ca.clone()),
        server_name: Some("localhost".into()),
    })
    .expect("test CA");
    let r = forward_now(&store, &trusting).await;
    assert_eq!((r.delivered, r.depth), (want.len(), 0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = received.lock().expect("lock").clone();
        let ids = cef_event_ids(&text);
        if ids == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "received over TLS: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` of `cairn forward` while a webhook request is in flight: the event the receiver
/// took without answering is sent again by the next run, under the same id, and every event
/// is delivered (lost = 0).
#[tokio::test]
async fn a_forwarder_killed_mid_send_loses_nothing_and_resends_under_the_same_id() {
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone)]
    struct Receiver {
        ids: Arc<Mutex<Vec<String>>>,
        slow: Arc<AtomicBool>,
        first: Arc<tokio::sync::Notify>,
    }
    async fn take(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        if headers
            .get(webhook::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            != Some(webhook::signature(SECRET, &body).as_str())
        {
            return StatusCode::UNAUTHORIZED;
        }
        let id = headers
            .get(webhook::EVENT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        r.ids.lock().expect("lock").push(id);
        if r.slow.load(Ordering::SeqCst) {
            r.first.notify_one();
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        StatusCode::NO_CONTENT
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let demo = crate::repo_root().join("api/demo/data");
    let ingest = crate::run(dir.path(), &["ingest", demo.to_str().expect("utf-8 path")]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let store = SqliteStore::open(&dir.path().join("cairn.db"))
        .await
        .expect("store");
    let want = all_event_ids(&store).await;
    drop(store);

    let receiver = Receiver {
        ids: Arc::default(),
        slow: Arc::new(AtomicBool::new(true)),
        first: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[forward.hook]\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret_env = \"CAIRN_TEST_WEBHOOK_SECRET\"\ntimeout_secs = 300\n"
        ),
    )
    .expect("config");
    let config_s = config.to_str().expect("utf-8 path");
    let forward = || {
        let mut c = crate::cairn(dir.path(), &["--config", config_s, "forward", "--once"]);
        c.env(
            "CAIRN_TEST_WEBHOOK_SECRET",
            std::str::from_utf8(SECRET).expect("utf-8"),
        );
        c
    };
    let mut child = forward()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn forward");
    tokio::time::timeout(Duration::from_secs(60), receiver.first.notified())
        .await
        .expect("the first event reached the receiver");
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert_eq!(
        receiver.ids.lock().expect("lock").len(),
        1,
        "killed mid-send"
    );

    receiver.slow.store(false, Ordering::SeqCst);
    let mut second = forward();
    let o = tokio::task::spawn_blocking(move || second.output())
        .await
        .expect("join")
        .expect("cairn forward");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let ids = receiver.ids.lock().expect("lock").clone();
    let got: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(got, want, "lost = 0");
    assert_eq!(
        ids.len(),
        want.len() + 1,
        "the in-flight event came twice: {ids:?}"
    );
    assert_eq!(ids[0], ids[1], "under the same id");
}

/// `GET /metrics` reports the outbox: its events, and the depth of each sink that is behind.
#[tokio::test]
async fn the_outbox_depth_is_a_prometheus_metric() {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, rules) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await.len();
    let down = closed_port();
    let sink = SyslogSink::new(
        "qradar \"eu\"",
        &down.to_string(),
        "h",
        13,
        Duration::from_secs(2),
    );
    forward_now(&store, &sink).await;
    let state = cairn_api::AppState {
        store: Arc::new(store),
        rules: Arc::new(rules),
        evidence: None,
    };
    let r = cairn_api::app(state)
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8(
        to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(
        text.contains(&format!("\ncairn_outbox_events {want}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cairn_outbox_depth{{sink=\"qradar \\\"eu\\\"\"}} {want}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE cairn_incidents gauge\ncairn_incidents 2\n"),
        "{text}"
    );
}

/// A sink that records what it is sent, and fails the first attempt of one incident's first
/// event.
struct Recording {
    sent: Mutex<Vec<cairn_correlate::store::OutboxEvent>>,
    fail_incident: String,
    failed_once: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl cairn_api::forward::Sink for Recording {
    fn name(&self) -> &str {
        "recording"
    }

    async fn send(
        &self,
        events: &[cairn_correlate::store::OutboxEvent],
    ) -> Vec<cairn_api::forward::SendOutcome> {
        use cairn_api::forward::SendOutcome;
        let mut out = Vec::new();
        for e in events {
            if e.incident_id == self.fail_incident
                && !self
                    .failed_once
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                out.push(SendOutcome::RetryAfter(None, "first attempt fails".into()));
            } else {
                self.sent.lock().expect("lock").push(e.clone());
                out.push(SendOutcome::Delivered);
            }
        }
        out
    }
}

/// An incident worked new → active → closed → active is four events, the reopening included
/// (it returns to an earlier state), and a sink receives them in that order even when the
/// first one has to be retried: an incident's later state waits for its earlier ones. Writing
/// the same state again adds nothing.
#[tokio::test]
async fn an_incidents_states_reach_a_sink_in_order_and_a_reopening_is_news() {
    use cairn_correlate::store::IncidentStatus;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let incident = store.open_incidents().await.expect("incidents")[0]
        .id
        .clone();
    for status in [
        IncidentStatus::Active,
        IncidentStatus::Active,
        IncidentStatus::Closed,
        IncidentStatus::Active,
    ] {
        assert!(
            store
                .set_incident_status(&incident, status)
                .await
                .expect("status")
        );
    }
    let of_incident: Vec<_> = all_events(&store)
        .await
        .into_iter()
        .filter(|e| e.incident_id == incident)
        .collect();
    let statuses: Vec<&str> = of_incident
        .iter()
        .filter_map(|e| e.payload["status"].as_str())
        .collect();
    assert_eq!(statuses, ["new", "active", "closed", "active"]);
    let ids: BTreeSet<&str> = of_incident.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "the reopening is a new event");

    let sink = Recording {
        sent: Mutex::default(),
        fail_incident: incident.clone(),
        failed_once: Default::default(),
    };
    let mut now = chrono::Utc::now();
    for _ in 0..20 {
        let r = forward_once(
            &store,
            &sink,
            &SinkFilter::default(),
            &Backoff::default(),
            now,
            100,
        )
        .await
        .expect("forward");
        if r.depth == 0 {
            break;
        }
        now += chrono::Duration::minutes(10);
    }
    let sent = sink.sent.lock().expect("lock");
    let got: Vec<&str> = sent
        .iter()
        .filter(|e| e.incident_id == incident)
        .filter_map(|e| e.payload["status"].as_str())
        .collect();
    assert_eq!(got, ["new", "active", "closed", "active"], "in order");
}

/// Debian's rsyslog as a real receiver (imtcp, octet-counted framing): it parses every
/// message as RFC 5424 (host name, app name, message id) and receives every event's CEF.
#[tokio::test]
async fn rsyslog_parses_every_forwarded_message() {
    let rsyslogd = std::env::var_os("CAIRN_RSYSLOGD")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/sbin/rsyslogd".into());
    assert!(
        rsyslogd.exists(),
        "{} is missing; scripts/test.sh installs Debian's rsyslog",
        rsyslogd.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = demo_store(dir.path()).await;
    let want = all_event_ids(&store).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let work = dir.path().join("rsyslog");
    std::fs::create_dir_all(&work).expect("work dir");
    let received = work.join("received.log");
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{w}\")\n\
             module(load=\"imtcp\")\n\
             template(name=\"fields\" type=\"string\" string=\"%hostname%|%app-name%|%msgid%|%msg%\\n\")\n\
             ruleset(name=\"cairn\") {{ action(type=\"omfile\" file=\"{r}\" template=\"fields\") }}\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"cairn\")\n",
            w = work.display(),
            r = received.display()
        ),
    )
    .expect("rsyslog.conf");
    let mut daemon = std::process::Command::new(&rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rsyslogd");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslogd did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sink = SyslogSink::new(
        "rsyslog",
        &addr.to_string(),
        "cairn-ci",
        13,
        Duration::from_secs(5),
    );
    let r = forward_now(&store, &sink).await;
    assert_eq!((r.delivered, r.depth), (want.len(), 0));

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= want.len() || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
    let mut got = BTreeSet::new();
    for l in &lines {
        let parts: Vec<&str> = l.splitn(4, '|').collect();
        assert_eq!(parts[..3], ["cairn-ci", "cairn", "incident"], "{l}");
        assert!(
            parts[3].trim_start().starts_with("CEF:0|Cairn|Cairn|"),
            "{l}"
        );
        let ids = cef_event_ids(parts[3]);
        assert_eq!(ids.len(), 1, "one cs1 event id: {l}");
        got.extend(ids);
    }
    assert_eq!(got, want);
}
