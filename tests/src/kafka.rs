//! The Kafka source through librdkafka's mock cluster: Winlogbeat-shaped domain controller
//! events are produced to a three-partition topic, `cairn ingest` consumes them as a group
//! member, is killed mid-stream and run again. Nothing is lost, nothing is stored twice, bad
//! messages are dead letters with topic/partition/offset, and the group's committed offsets
//! end at the topic's end.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use cairn_correlate::Store;

use crate::{cairn, repo_root, stored_findings, succeeded, with_store};

const TOPIC: &str = "winlogbeat-security";

/// The evtx-crate JSON of the Windows samples, reshaped as Winlogbeat ships it to Kafka.
fn winlogbeat_events() -> Vec<Value> {
    let dir = repo_root().join("ingest/testdata/windows/evtx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).expect("read").lines() {
            let v: Value = serde_json::from_str(line).expect("sample JSON");
            let sys = &v["Event"]["System"];
            let event_id = sys["EventID"]
                .as_u64()
                .or_else(|| sys["EventID"]["#text"].as_u64())
                .expect("event id");
            out.push(json!({
                "@timestamp": sys["TimeCreated"]["#attributes"]["SystemTime"],
                "host": {"name": sys["Computer"]},
                "winlog": {
                    "channel": sys["Channel"],
                    "computer_name": sys["Computer"],
                    "event_id": event_id,
                    "provider_name": sys["Provider"]["#attributes"]["Name"],
                    "record_id": sys["EventRecordID"],
                    "event_data": v["Event"]["EventData"].clone(),
                }
            }));
        }
    }
    out
}

fn config(dir: &Path, brokers: &str) -> std::path::PathBuf {
    let path = dir.join("cairn.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.dc]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{TOPIC}\"]\n\
             group_id = \"cairn-test\"\npage_size = 25\nmax_wait = \"200ms\"\nidle_timeout = \"3s\"\n\
             # A killed member holds its partitions until its session expires.\n\
             options = {{ \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"500\", \"max.poll.interval.ms\" = \"10000\" }}\n"
        ),
    )
    .expect("config");
    path
}

#[test]
fn a_consumer_killed_mid_stream_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 3, 1).expect("create topic");
    let brokers = cluster.bootstrap_servers();

    // Three copies of every sample event, with distinct record ids, keyed by computer.
    let mut expected_uids = BTreeSet::new();
    let mut messages: Vec<(String, String)> = Vec::new();
    for copy in 0..3u64 {
        for mut e in winlogbeat_events() {
            let record =
                e["winlog"]["record_id"].as_u64().expect("record id") + copy * 1_000_000_000;
            e["winlog"]["record_id"] = json!(record);
            let computer = e["winlog"]["computer_name"]
                .as_str()
                .expect("computer")
                .to_string();
            expected_uids.insert(format!("{}:security:{record}", computer.to_lowercase()));
            messages.push((computer, e.to_string()));
        }
    }
    let bad = [
        "this is not JSON".to_string(),
        json!({"hello": "world"}).to_string(),
        json!({"winlog": {"event_id": 4624, "channel": "Security"}}).to_string(),
    ];
    for (i, b) in bad.iter().enumerate() {
        messages.insert(100 * (i + 1), ("bad".into(), b.clone()));
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    for (key, payload) in &messages {
        producer
            .send(BaseRecord::to(TOPIC).key(key).payload(payload))
            .expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let data = tempfile::tempdir().expect("tempdir");
    let cfg = config(data.path(), &brokers);
    let args = [
        "--config",
        cfg.to_str().expect("utf-8"),
        "--log",
        "info",
        "ingest",
        "--source",
        "dc",
        "--no-correlate",
    ];

    // First run: killed (SIGKILL, no clean-up) after its third stored page.
    let mut first = cairn(data.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn");
    let stderr = first.stderr.take().expect("stderr");
    let mut pages = 0;
    let mut log = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("log line");
        log.push(line.clone());
        if line.contains("Committed a page") {
            pages += 1;
            if pages == 3 {
                first.kill().expect("kill");
                break;
            }
        }
    }
    let _ = first.wait();
    assert_eq!(
        pages,
        3,
        "the first run ended before its third page:\n{}",
        log.join("\n")
    );
    let after_kill = stored_findings(data.path()).len();
    assert!(
        after_kill > 0 && after_kill < expected_uids.len(),
        "{after_kill} of {} stored when killed",
        expected_uids.len()
    );

    // Second run: resumes from the group's committed offsets and catches up. Whether the bad
    // messages fall to the first run or the second depends on how far the first got in their
    // partition, so either a clean or a partial success (3) is right; the store is checked below.
    let second = cairn(data.path(), &args).output().expect("run cairn");
    assert!(
        matches!(second.status.code(), Some(0) | Some(3)),
        "success or partial success (dead letters) expected:\n{}\n{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    let text = succeeded_or_partial(&second);
    assert!(text.contains("dead letters"), "{text}");

    let stored: Vec<String> = stored_findings(data.path())
        .into_iter()
        .map(|f| f.finding_uid)
        .collect();
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "a finding stored twice");
    assert_eq!(unique, expected_uids, "lost or unexpected findings");

    let letters = with_store(data.path(), async |s| {
        s.dead_letters(100).await.expect("letters")
    });
    assert_eq!(letters.len(), 3, "{letters:?}");
    for l in &letters {
        let parts: Vec<&str> = l.letter.location.split('/').collect();
        assert_eq!(parts.len(), 3, "{}", l.letter.location);
        assert_eq!(parts[0], TOPIC);
        assert!(parts[1].parse::<i32>().is_ok() && parts[2].parse::<i64>().is_ok());
    }
    assert!(
        letters
            .iter()
            .any(|l| l.letter.reason.contains("invalid JSON"))
    );
    assert!(
        letters
            .iter()
            .any(|l| l.letter.reason.contains("@timestamp"))
    );

    // The group committed every offset: a third run reads nothing.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "cairn-test")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..3 {
        list.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    let mut total = 0;
    for p in 0..3 {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .expect("watermarks");
        let at = committed
            .find_partition(TOPIC, p)
            .map(|e| e.offset())
            .expect("partition");
        assert_eq!(at, Offset::Offset(high), "partition {p}");
        total += high;
    }
    assert_eq!(total as usize, messages.len());
    let third = cairn(data.path(), &args).output().expect("run cairn");
    let third_text = succeeded(&third);
    assert!(third_text.starts_with("Ingested 0 records"), "{third_text}");
}

fn succeeded_or_partial(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
