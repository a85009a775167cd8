use std::io::Write;

use super::*;

async fn drain(mut source: FileSource) -> Vec<Page> {
    let mut pages = Vec::new();
    while let Some(p) = source.next_page(None).await.expect("page") {
        pages.push(p);
    }
    pages
}

const GOOD: &str = r##"{"Event":{"System":{"EventID":4624,"Channel":"Security","Computer":"WS1.corp.example","EventRecordID":7,"TimeCreated":{"#attributes":{"SystemTime":"2024-01-02T03:04:05Z"}}},"EventData":{"TargetUserName":"bob","TargetDomainName":"CORP"}}}"##;

#[tokio::test]
async fn bad_records_become_dead_letters_and_the_rest_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    writeln!(f, "{GOOD}").expect("write");
    writeln!(f, "{{\"unknown\": true}}").expect("write");
    writeln!(f, "not json at all").expect("write");
    writeln!(
        f,
        "{}",
        GOOD.replace("\"EventRecordID\":7", "\"EventRecordID\":8")
    )
    .expect("write");
    drop(f);

    let pages = drain(
        FileSource::new("file", &FileSourceConfig::new(vec![dir.path().into()])).expect("source"),
    )
    .await;
    let findings: Vec<_> = pages.iter().flat_map(|p| &p.findings).collect();
    let dead: Vec<_> = pages.iter().flat_map(|p| &p.dead_letters).collect();
    assert_eq!(findings.len(), 2);
    assert_eq!(dead.len(), 2);
    let name = path.display().to_string();
    assert_eq!(dead[0].location, format!("{name}:2"));
    assert!(
        dead[0].reason.starts_with("unrecognised record format"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[1].location, format!("{name}:3"));
    assert!(
        dead[1].reason.starts_with("invalid JSON"),
        "{}",
        dead[1].reason
    );
    assert_eq!(dead[1].raw, "not json at all");
    let bytes: u64 = pages.iter().map(|p| p.bytes).sum();
    assert_eq!(bytes, std::fs::metadata(&path).expect("meta").len());
}

#[tokio::test]
async fn pages_are_bounded_and_carry_cursors() {
    let lines: String = (0..25)
        .map(|i| GOOD.replace("\"EventRecordID\":7", &format!("\"EventRecordID\":{i}")) + "\n")
        .collect();
    let bytes: &'static [u8] = Box::leak(lines.into_bytes().into_boxed_slice());
    let source = FileSource::from_inputs(
        "file",
        vec![Input::Bytes {
            name: "mem".into(),
            bytes,
        }],
        10,
    );
    let pages = drain(source).await;
    let sizes: Vec<_> = pages.iter().map(Page::records).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(pages[0].cursor.as_deref(), Some(r#"{"last":"mem:10"}"#));
}

#[test]
fn missing_path_fails_before_reading() {
    let err = FileSource::new(
        "file",
        &FileSourceConfig::new(vec!["/nonexistent/x.json".into()]),
    )
    .err()
    .expect("missing path is an error");
    assert!(err.to_string().contains("/nonexistent/x.json"), "{err}");
}
