//! Identity resolution over a fixture company: AD, Entra ID and AWS records of the same people
//! are joined, look-alikes (same display name, different SID or UPN) are not, and every join
//! has its reason. The mapping functions are the directory sources' own.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use cairn_correlate::identity::resolve;
use cairn_ingest::DirectoryObject;
use cairn_ingest::normalize::normalize;
use cairn_ingest::sources::aws_principals::{
    IamUser, IdentityCenterUser, iam_user, identity_center_user,
};
use cairn_ingest::sources::{entra_users, identities_file, ldap};

use crate::repo_root;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/identity").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

#[derive(Deserialize)]
struct AdEntry {
    dn: String,
    attrs: HashMap<String, Vec<String>>,
    binary: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Aws {
    iam_users: Vec<IamUser>,
    identity_center_users: Vec<IdentityCenterUser>,
}

fn directory() -> Vec<DirectoryObject> {
    let mut out = Vec::new();
    let ad: Vec<AdEntry> = serde_json::from_str(&read("ad_entries.json")).expect("ad");
    for e in ad {
        let entry = ldap3::SearchEntry {
            dn: e.dn,
            attrs: e.attrs,
            bin_attrs: e
                .binary
                .into_iter()
                .map(|(k, v)| (k, vec![hex::decode(v).expect("hex")]))
                .collect(),
        };
        out.push(
            ldap::map::to_object("ad", &entry, "CONTOSO", &ldap::default_privileged_groups())
                .expect("AD entry maps"),
        );
    }
    let entra: Value = serde_json::from_str(&read("entra_users.json")).expect("entra");
    for u in entra["value"].as_array().expect("value") {
        out.push(
            entra_users::to_object("entra", u.as_object().expect("object"), &[])
                .expect("Entra user maps"),
        );
    }
    let aws: Aws = serde_json::from_str(&read("aws_principals.json")).expect("aws");
    out.extend(aws.iam_users.iter().map(|u| iam_user("aws", u)));
    out.extend(
        aws.identity_center_users
            .iter()
            .map(|u| identity_center_user("aws", u)),
    );
    out.extend(
        identities_file::parse("overrides", "identities.toml", &read("identities.toml"))
            .expect("overrides parse"),
    );
    out
}

/// Renders the resolution: each identity with its accounts and events, and each link.
fn render(
    directory: &[DirectoryObject],
    resolution: &cairn_correlate::identity::Resolution,
    events: &[cairn_ingest::Finding],
) -> String {
    let id_of = |o: &DirectoryObject| {
        o.keys
            .iter()
            .find_map(|k| resolution.assignments.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let mut people: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in directory {
        people.entry(id_of(o)).or_default().push(format!(
            "{} {} {:?}",
            o.source,
            o.kind.as_str(),
            o.display_name.as_deref().unwrap_or(&o.uid)
        ));
    }
    for f in events {
        people
            .entry(f.identity_id.clone().unwrap_or_default())
            .or_default()
            .push(format!("event {} {}", f.source, f.finding_uid));
    }
    let mut out = String::new();
    for (id, members) in &people {
        out.push_str(&format!("identity {id}\n"));
        for m in members {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out.push_str("\nlinks\n");
    for l in &resolution.links {
        out.push_str(&format!("  {} ↔ {}: {}\n", l.a, l.b, l.reason));
    }
    out
}

#[test]
fn ad_entra_and_aws_accounts_of_one_person_are_one_identity_and_lookalikes_are_not() {
    let directory = directory();
    let mut events: Vec<cairn_ingest::Finding> = read("events.jsonl")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("event");
            normalize(&v, l).expect("event normalizes")
        })
        .collect();
    let resolution = resolve(
        &mut events,
        &directory,
        &HashMap::new(),
        &cairn_correlate::identity::Catalog::default(),
    );

    let id = |source: &str, name: &str| -> String {
        let o = directory
            .iter()
            .find(|o| {
                o.source == source
                    && (o.attributes.get("sAMAccountName").map(String::as_str) == Some(name)
                        || o.attributes.get("userPrincipalName").map(String::as_str) == Some(name)
                        || o.attributes.get("userName").map(String::as_str) == Some(name))
            })
            .unwrap_or_else(|| panic!("{source} {name}"));
        o.keys
            .iter()
            .find_map(|k| resolution.assignments.get(k))
            .cloned()
            .expect("assigned")
    };
    // Alice: AD, Entra (SID, immutable id, UPN), an IAM user named by her UPN and an
    // Identity Center user provisioned from her Entra object.
    let alice = id("ad", "alice");
    assert_eq!(alice, "alice@contoso.com");
    for (source, name) in [
        ("entra", "alice@contoso.com"),
        ("aws", "alice@contoso.com"),
        ("aws", "asmith-sso"),
    ] {
        assert_eq!(id(source, name), alice, "{source} {name}");
    }
    // The other Alice Smith is someone else.
    assert_ne!(id("ad", "asmith"), alice);
    // Dana synchronised from AD joins by SID although her UPNs differ; the cloud-only Dana
    // Lee with the same display name does not, and keeps her own AWS account.
    let dana = id("ad", "dana.lee");
    assert_eq!(id("entra", "dlee@contoso.onmicrosoft.com"), dana);
    let other_dana = id("entra", "dana.lee2@contoso.com");
    assert_ne!(other_dana, dana);
    assert_eq!(id("aws", "dana.lee2@contoso.com"), other_dana);
    // bob-admin is Bob only by the override; ci-deploy is nobody's.
    assert_eq!(id("aws", "bob-admin"), id("ad", "bob"));
    assert_ne!(id("aws", "ci-deploy"), id("ad", "bob"));
    // Events resolve to the same people.
    let ids: Vec<Option<&str>> = events.iter().map(|f| f.identity_id.as_deref()).collect();
    assert_eq!(
        ids,
        [
            Some(dana.as_str()),
            Some(alice.as_str()),
            Some(other_dana.as_str())
        ]
    );
    // Every join has a reason, and the override's is the operator's own words.
    assert!(
        resolution
            .links
            .iter()
            .any(|l| l.reason.contains("Access review 2026-Q3"))
    );

    let actual = render(&directory, &resolution, &events);
    let golden = fixture("expected.txt");
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "resolution differs from {}",
        golden.display()
    );
}
