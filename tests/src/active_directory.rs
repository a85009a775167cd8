//! The LDAP directory source against a real Active Directory (Samba's AD DC), and identity
//! resolution of Windows events against the accounts it reads.

use std::path::{Path, PathBuf};

use cairn_correlate::Store;
use cairn_ingest::{DirectoryKind, DirectoryObject};

use crate::samba::{ADMIN_PASSWORD, BASE_DN, SambaDc};
use crate::{cairn, run, stdout, succeeded, with_store};

fn config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let path = dir.join("cairn.toml");
    let text = format!(
        "[sources.corp-ad]\ntype = \"ldap\"\nurl = \"{url}\"\ntls_verify = false\n\
         bind_dn = \"CN=Administrator,CN=Users,{BASE_DN}\"\npassword_env = \"CAIRN_TEST_AD_PASSWORD\"\n\
         base_dn = \"{BASE_DN}\"\npage_size = 10\n{extra}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn ingest_ad(dir: &Path, cfg: &Path, password: &str) -> std::process::Output {
    cairn(
        dir,
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "ingest",
            "--source",
            "corp-ad",
        ],
    )
    .env("CAIRN_TEST_AD_PASSWORD", password)
    .output()
    .expect("run cairn")
}

fn directory(dir: &Path) -> Vec<DirectoryObject> {
    with_store(dir, async |s| s.directory_objects().await.expect("read"))
}

fn user<'a>(objects: &'a [DirectoryObject], sam: &str) -> &'a DirectoryObject {
    objects
        .iter()
        .find(|o| o.attributes.get("sAMAccountName").map(String::as_str) == Some(sam))
        .unwrap_or_else(|| panic!("no directory object for {sam}"))
}

#[test]
fn ldap_reads_a_real_domain_paged_and_joins_its_events() {
    let dc = SambaDc::start();
    dc.tool(&[
        "user",
        "create",
        "alice",
        "Al1ce-Passw0rd!",
        "--given-name=Alice",
        "--surname=Smith",
        "--mail-address=alice.smith@cairn.test",
    ]);
    dc.tool(&[
        "user",
        "create",
        "bob",
        "B0b-Passw0rd!x",
        "--given-name=Bob",
        "--surname=Jones",
    ]);
    dc.tool(&["group", "addmembers", "Domain Admins", "bob"]);
    dc.tool(&[
        "user",
        "create",
        "carol",
        "C4rol-Passw0rd!",
        "--given-name=Carol",
    ]);
    dc.tool(&["user", "disable", "carol"]);
    // Two people who share a display name: never one identity.
    dc.tool(&[
        "user",
        "create",
        "dana.lee",
        "D4na-Passw0rd!",
        "--given-name=Dana",
        "--surname=Lee",
    ]);
    dc.tool(&[
        "user",
        "create",
        "dana.li",
        "D4na-Passw0rd!2",
        "--given-name=Dana",
        "--surname=Lee",
        "--use-username-as-cn",
    ]);
    dc.tool(&["group", "add", "AWS-Admins"]);
    dc.tool(&["group", "addmembers", "AWS-Admins", "alice"]);
    // Enough accounts for several LDAP pages of 10.
    for i in 0..22 {
        dc.tool(&["user", "create", &format!("svc{i:02}"), "Svc-Passw0rd!x9"]);
    }

    let data = tempfile::tempdir().expect("tempdir");
    let cfg = config(data.path(), "ldaps://127.0.0.1", "");
    let first = ingest_ad(data.path(), &cfg, ADMIN_PASSWORD);
    let text = succeeded(&first);
    let objects = directory(data.path());
    let mut users: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind == DirectoryKind::User)
        .filter_map(|o| o.attributes.get("sAMAccountName").map(String::as_str))
        .collect();
    users.sort_unstable();
    // Every account the DC lists (its built-in ones too), across pages of 10.
    let listed = dc.tool(&["user", "list"]);
    let mut expected: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    expected.sort_unstable();
    assert_eq!(users, expected, "{text}");
    assert!(users.len() > 5 + 22, "{users:?}");
    assert!(
        objects
            .iter()
            .any(|o| o.kind == DirectoryKind::Group
                && o.display_name.as_deref() == Some("AWS-Admins"))
    );
    assert!(
        text.contains(&format!("{} directory objects", objects.len())),
        "{text}"
    );

    // What the DC itself says about alice, in the forms Cairn keys on.
    let alice = user(&objects, "alice");
    let sid = dc.user_attribute("alice", "objectSid");
    let guid = dc.user_attribute("alice", "objectGUID");
    assert_eq!(
        alice.keys,
        [
            format!("sid:{sid}"),
            format!("guid:{guid}"),
            "sam:cairn\\alice".to_string(),
            "upn:alice@cairn.test".to_string(),
            "upn:alice.smith@cairn.test".to_string(),
        ]
    );
    assert_eq!(alice.enabled, Some(true));
    assert_eq!(alice.privileged, Some(false));
    assert!(alice.groups.iter().any(|g| g.starts_with("CN=AWS-Admins,")));
    assert_eq!(
        user(&objects, "bob").privileged,
        Some(true),
        "Domain Admins member"
    );
    assert_eq!(user(&objects, "carol").enabled, Some(false));
    assert_eq!(user(&objects, "Administrator").privileged, Some(true));

    // A Kerberos ticket request that names alice by her UPN, as DCs write it.
    let event = data.path().join("4769.json");
    std::fs::write(
        &event,
        serde_json::json!({
            "EventID": 4769, "Channel": "Security", "Computer": "dc1.cairn.test",
            "EventRecordID": "77", "@timestamp": "2026-11-20T10:00:00Z",
            "TargetUserName": "ALICE@CAIRN.TEST", "TargetDomainName": "CAIRN.TEST",
            "ServiceName": "MSSQLSvc", "TicketEncryptionType": "0x17", "Status": "0x0",
            "IpAddress": "::ffff:10.0.0.5"
        })
        .to_string(),
    )
    .expect("write event");
    succeeded(&run(
        data.path(),
        &["ingest", event.to_str().expect("utf-8")],
    ));

    let shown = succeeded(&run(data.path(), &["identity", "show", "CAIRN\\alice"]));
    assert!(shown.starts_with("Identity alice@cairn.test\n"), "{shown}");
    assert!(
        shown.contains("one user in directory corp-ad: Alice Smith"),
        "{shown}"
    );
    assert!(shown.contains("findings resolved to it: 1"), "{shown}");
    let by_sid = succeeded(&run(data.path(), &["identity", "show", &sid]));
    assert_eq!(by_sid, shown, "a SID finds the same identity");

    let lookalikes = succeeded(&run(data.path(), &["identity", "show", "Dana Lee"]));
    assert!(
        lookalikes.contains("matches 2 different identities"),
        "{lookalikes}"
    );

    // An account deleted in AD leaves Cairn's directory at the next complete sync.
    dc.tool(&["user", "delete", "dana.li"]);
    let again = succeeded(&ingest_ad(data.path(), &cfg, ADMIN_PASSWORD));
    assert!(
        again.contains("(1 no longer in the directory removed)"),
        "{again}"
    );
    assert_eq!(directory(data.path()).len(), objects.len() - 1);

    // StartTLS on the plain port reads the same domain.
    let starttls = config(data.path(), "ldap://127.0.0.1", "starttls = true");
    let over_starttls = succeeded(&ingest_ad(data.path(), &starttls, ADMIN_PASSWORD));
    assert!(
        over_starttls.contains(&format!(
            "{} directory objects (0 no longer",
            objects.len() - 1
        )),
        "{over_starttls}"
    );

    // A wrong password fails the run, says why, and changes nothing.
    let refused = ingest_ad(data.path(), &cfg, "wrong-password");
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("bind as CN=Administrator"), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(directory(data.path()).len(), objects.len() - 1);
}
