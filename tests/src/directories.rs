//! The cloud directory sources end to end: Entra users against the fake Graph, AWS IAM and
//! Identity Center users against moto, and the `identities.toml` override file; then
//! `cairn identity show` across them.

use std::path::Path;

use serde_json::{Value, json};

use cairn_correlate::Store;
use cairn_ingest::DirectoryObject;

use crate::fakes::graph::FakeGraph;
use crate::moto::Moto;
use crate::{ingest_source, repo_root, run, succeeded, with_store};

const TENANT: &str = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c";

fn directory(dir: &Path) -> Vec<DirectoryObject> {
    with_store(dir, async |s| s.directory_objects().await.expect("read"))
}

fn entra_users() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("tests/fixtures/identity/entra_users.json"))
            .expect("fixture");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["value"].as_array().expect("value").clone()
}

#[test]
fn entra_users_aws_principals_and_overrides_resolve_into_people() {
    let fake = FakeGraph::start(vec![], vec![]);
    fake.set_directory(
        entra_users(),
        vec![json!({
            "id": "62e90394-69f5-4237-9190-012177145e10",
            "displayName": "Global Administrator",
            "roleTemplateId": "62e90394-69f5-4237-9190-012177145e10",
            // More members than one page: the second one must still count.
            "members": [
                {"@odata.type": "#microsoft.graph.user", "id": "99999999-aaaa-4bbb-8ccc-000000000009"},
                {"@odata.type": "#microsoft.graph.user", "id": "11111111-aaaa-4bbb-8ccc-000000000004"}
            ]
        })],
    );
    let moto = Moto::start();
    for user in ["alice@contoso.com", "bob-admin", "ci-deploy"] {
        moto.iam("CreateUser", &[("UserName", user)]);
    }
    let store = "d-9067c6f2ab";
    moto.identity_store(
        "CreateUser",
        &json!({
            "IdentityStoreId": store, "UserName": "dana.lee2@contoso.com", "DisplayName": "Dana Lee",
            "Name": {"GivenName": "Dana", "FamilyName": "Lee"},
            "Emails": [{"Value": "dana.lee2@contoso.com", "Type": "work", "Primary": true}]
        }),
    );

    let data = tempfile::tempdir().expect("tempdir");
    // The fixture's override, for moto's account.
    let overrides = data.path().join("identities.toml");
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/identity/identities.toml"))
        .expect("fixture");
    std::fs::write(&overrides, text.replace("111122223333", "123456789012")).expect("write");
    let cfg = data.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.entra]\ntype = \"entra_users\"\npage_size = 2\n\
             [sources.entra.auth]\ntenant_id = \"{TENANT}\"\nendpoint_override = \"{}\"\ntimeout = \"5s\"\n\
             credential = {{ type = \"client_secret\", client_id = \"0b5d6c4e-0000-4000-8000-0000000000c1\", client_secret_env = \"CAIRN_TEST_GRAPH_SECRET\" }}\n\
             [sources.aws]\ntype = \"aws_principals\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nidentity_store_id = \"{store}\"\n\
             [sources.overrides]\ntype = \"identities_file\"\npath = \"{}\"\n",
            fake.url(),
            moto.url(),
            overrides.display()
        ),
    )
    .expect("config");

    let entra = succeeded(&ingest_source(data.path(), &cfg, "entra"));
    assert!(entra.contains("4 directory objects"), "{entra}");
    let aws = succeeded(&ingest_source(data.path(), &cfg, "aws"));
    assert!(aws.contains("4 directory objects"), "{aws}");
    succeeded(&ingest_source(data.path(), &cfg, "overrides"));

    let objects = directory(data.path());
    let bob = objects
        .iter()
        .find(|o| o.source == "entra" && o.display_name.as_deref() == Some("Bob Jones"))
        .expect("bob");
    assert_eq!(bob.privileged, Some(true), "Global Administrator");
    assert_eq!(bob.groups, ["Global Administrator"]);
    let alice = objects
        .iter()
        .find(|o| o.source == "entra" && o.display_name.as_deref() == Some("Alice Smith"))
        .expect("alice");
    // The immutable id decodes to the AD objectGUID of the fixture's AD Alice.
    assert!(
        alice
            .keys
            .contains(&"guid:6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b".to_string()),
        "{:?}",
        alice.keys
    );
    assert!(
        objects
            .iter()
            .any(|o| o.source == "aws" && o.uid == "arn:aws:iam::123456789012:user/bob-admin")
    );

    // Resolution runs in a correlation pass; then one person spans the three sources.
    succeeded(&run(data.path(), &["correlate"]));
    let bob_shown = succeeded(&run(
        data.path(),
        &[
            "identity",
            "show",
            "arn:aws:iam::123456789012:user/bob-admin",
        ],
    ));
    assert!(
        bob_shown.starts_with("Identity bob@contoso.com\n"),
        "{bob_shown}"
    );
    assert!(
        bob_shown.contains("overrides says so: Access review 2026-Q3"),
        "{bob_shown}"
    );
    assert!(
        bob_shown.contains("entra user Bob Jones [privileged]"),
        "{bob_shown}"
    );
    let dana = succeeded(&run(
        data.path(),
        &["identity", "show", "dana.lee2@contoso.com"],
    ));
    assert!(dana.contains("aws user Dana Lee"), "{dana}");
    assert!(dana.contains("entra user Dana Lee"), "{dana}");
    let json: Value = serde_json::from_str(&succeeded(&run(
        data.path(),
        &["identity", "show", "Dana Lee", "--json"],
    )))
    .expect("JSON");
    assert_eq!(
        json.as_array().map(Vec::len),
        Some(2),
        "two people named Dana Lee: {json}"
    );
}

#[test]
fn a_bad_override_file_fails_with_the_entry_and_the_account() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("identities.toml");
    std::fs::write(
        &file,
        "[[person]]\nreason = \"typo\"\naccounts = [\"jane@corp.example\", \"WS01$\"]\n",
    )
    .expect("write");
    let cfg = data.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.overrides]\ntype = \"identities_file\"\npath = \"{}\"\n",
            file.display()
        ),
    )
    .expect("config");
    let out = ingest_source(data.path(), &cfg, "overrides");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[person]] #1") && err.contains("WS01$"),
        "{err}"
    );
}
