use super::*;

fn one(text: &str) -> SigmaImport {
    compile(
        &[SigmaText {
            origin: "t.yml".into(),
            text: text.into(),
        }],
        &SigmaMappings::bundled(),
    )
}

#[test]
fn the_bundled_mappings_parse_and_cover_sysmon_and_security_process_creation() {
    let m = SigmaMappings::bundled();
    let ls = rsigma_parser::LogSource {
        product: Some("windows".into()),
        category: Some("process_creation".into()),
        ..Default::default()
    };
    let sources = m.sources(&ls);
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].field("Image").to_sql(), "fields['Image']");
    assert_eq!(
        sources[1].field("Image").to_sql(),
        "fields['NewProcessName']"
    );
    assert_eq!(sources[1].field("EventID").to_sql(), "event_code");
}

#[test]
fn tags_become_attack_ids() {
    let a = attack_from_tags(&[
        "attack.credential-access".into(),
        "attack.t1003.006".into(),
        "attack.T1558".into(),
        "cve.2021-42287".into(),
    ]);
    assert_eq!(a.tactics, vec!["TA0006"]);
    assert_eq!(a.techniques, vec!["T1003.006", "T1558"]);
}

#[test]
fn unsupported_rules_say_why() {
    let i = one(
        "title: t\nid: x-1\nlogsource: { product: linux, service: auditd }\ndetection:\n  s: { a: b }\n  condition: s\n",
    );
    assert!(i.compiled.is_empty());
    assert_eq!(
        i.unsupported[0].reason,
        "Cairn has no mapping for log source {product: linux, service: auditd}"
    );
    let i = one(
        "title: t\nid: x-2\nlogsource: { product: windows, service: security }\ndetection:\n  s: { CommandLine|re: '(?<=a)b' }\n  condition: s\n",
    );
    assert!(
        i.unsupported[0]
            .reason
            .contains("not supported by Rust's regex engine"),
        "{:?}",
        i.unsupported
    );
    let i = one("title: t\ndetection: [unclosed\n");
    assert!(
        i.unsupported[0].reason.starts_with("cannot parse"),
        "{:?}",
        i.unsupported
    );
}

#[test]
fn a_detection_rule_credits_its_author_and_keeps_its_level() {
    let i = one(
        "title: Whoami\nid: 0A-1\nauthor: Someone\nreferences: [https://example.org/r]\nlevel: high\nlogsource: { product: windows, category: process_creation }\ndetection:\n  s: { Image|endswith: '\\whoami.exe' }\n  condition: s\n",
    );
    let r = &i.compiled[0];
    assert_eq!(r.id, "sigma.0a-1");
    assert_eq!(r.severity, Severity::High);
    assert_eq!(r.entity, EntityKind::Finding);
    assert!(
        r.description
            .contains("Sigma rule 0A-1 by Someone (Detection Rule License 1.1); reference: https://example.org/r"),
        "{}",
        r.description
    );
    assert!(
        r.sql
            .contains("ends_with(lower(fields['Image']), '\\whoami.exe')"),
        "{}",
        r.sql
    );
    assert!(is_sigma("title: x\nlogsource:\n  product: windows\n"));
    assert!(!is_sigma("id: a\nsql: SELECT 1\n"));
}

#[test]
fn conditions_sliding_windows_cannot_honour_are_refused_and_keep_their_base_rules() {
    let base = "title: b\nname: base\nlogsource: { product: windows, service: security }\ndetection:\n  s: { EventID: 4625 }\n  condition: s\n";
    let corr = |body: &str| {
        format!(
            "{base}---\ntitle: c\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [ base ]\n  group-by: [ TargetUserName ]\n  timespan: 1h\n{body}"
        )
    };
    let i = one(&corr("  condition: { lt: 3 }\n"));
    assert!(
        i.unsupported[0].reason.contains("only `gt`/`gte`"),
        "{:?}",
        i.unsupported
    );
    // The correlation failed, so its base rule stands on its own.
    assert_eq!(i.compiled.len(), 1);
    assert_eq!(i.compiled[0].id, "sigma.base");
    assert_eq!(i.correlation_only, 0);

    let i = one(&corr("  condition: { gte: 3 }\n"));
    assert_eq!(i.compiled.len(), 1);
    assert_eq!(i.compiled[0].id, "sigma.c-1");
    assert_eq!(i.correlation_only, 1);

    let ordered = format!(
        "{base}---\ntitle: b2\nname: base2\nlogsource: {{ product: windows, service: security }}\ndetection:\n  s: {{ EventID: 4624 }}\n  condition: s\n---\ntitle: o\nid: o-1\ncorrelation:\n  type: temporal_ordered\n  rules: [ base, base2 ]\n  group-by: [ TargetUserName ]\n  timespan: 1h\n  condition: {{ gte: 1 }}\n"
    );
    let i = one(&ordered);
    assert!(
        i.unsupported
            .iter()
            .any(|u| u.reason.contains("`temporal_ordered` with a condition")),
        "{:?}",
        i.unsupported
    );
}
