//! LDAP entries of Active Directory → [`DirectoryObject`]s.

use ldap3::SearchEntry;

use crate::directory::{DirectoryKind, DirectoryObject, provider};
use crate::normalize::identity::{IdentityKeys, guid_of_bytes, sid_of_bytes};

/// The attributes read for users and groups.
pub const ATTRIBUTES: &[&str] = &[
    "objectSid",
    "objectGUID",
    "objectClass",
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "cn",
    "memberOf",
    "userAccountControl",
    "adminCount",
    "lockoutTime",
    "whenChanged",
];

/// `userAccountControl` bit: the account is disabled.
const UAC_ACCOUNTDISABLE: u32 = 0x2;
/// `userAccountControl` bit: Kerberos pre-authentication is not required (AS-REP roastable).
const UAC_DONT_REQ_PREAUTH: u32 = 0x40_0000;

fn first<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn all<'a>(e: &'a SearchEntry, name: &str) -> &'a [String] {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or_default()
}

fn binary<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a [u8]> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(Vec::as_slice)
}

/// The CN of a distinguished name (`CN=Domain Admins,CN=Users,…` → `Domain Admins`).
pub fn common_name(dn: &str) -> &str {
    let first = dn.split(',').next().unwrap_or(dn);
    first
        .split_once('=')
        .filter(|(t, _)| t.trim().eq_ignore_ascii_case("cn"))
        .map(|(_, v)| v.trim())
        .unwrap_or(first)
}

/// Maps one user or group entry. `netbios` is the domain's NetBIOS name; a member of one of
/// `privileged_groups` (by CN) or an `adminCount=1` holder is privileged.
pub fn to_object(
    source: &str,
    entry: &SearchEntry,
    netbios: &str,
    privileged_groups: &[String],
) -> Result<DirectoryObject, String> {
    let guid = binary(entry, "objectGUID").ok_or("entry has no objectGUID")?;
    let guid =
        guid_of_bytes(guid).ok_or_else(|| format!("objectGUID is {} bytes, not 16", guid.len()))?;
    let sid = match binary(entry, "objectSid") {
        Some(b) => Some(sid_of_bytes(b).ok_or("objectSid is not a valid binary SID")?),
        None => None,
    };
    let is_group = all(entry, "objectClass")
        .iter()
        .any(|c| c.eq_ignore_ascii_case("group"));
    let kind = if is_group {
        DirectoryKind::Group
    } else {
        DirectoryKind::User
    };
    let mut o = DirectoryObject::new(source, provider::ACTIVE_DIRECTORY, guid.clone(), kind);
    o.display_name = first(entry, "displayName")
        .or_else(|| first(entry, "cn"))
        .map(str::to_string);
    o.location = Some(entry.dn.clone());
    let sam = first(entry, "sAMAccountName");
    let mut keys = IdentityKeys::new();
    keys.sid(sid.as_deref()).guid(Some(&guid));
    if !is_group {
        keys.account(Some(netbios), sam)
            .upn(first(entry, "userPrincipalName"))
            .upn(first(entry, "mail"));
    }
    o.keys = keys.into_vec();
    o.groups = all(entry, "memberOf").to_vec();
    let admin_count = first(entry, "adminCount").is_some_and(|v| v.trim() == "1");
    let in_privileged_group = o.groups.iter().any(|g| {
        let cn = common_name(g);
        privileged_groups.iter().any(|p| p.eq_ignore_ascii_case(cn))
    });
    o.privileged = Some(admin_count || in_privileged_group);
    if let Some(uac) = first(entry, "userAccountControl") {
        let bits: u32 = uac
            .trim()
            .parse()
            .map_err(|_| format!("userAccountControl {uac:?} is not a number"))?;
        if !is_group {
            o.enabled = Some(bits & UAC_ACCOUNTDISABLE == 0);
        }
        o.attributes.insert(
            "preauth_not_required".into(),
            (bits & UAC_DONT_REQ_PREAUTH != 0).to_string(),
        );
        o.attributes
            .insert("userAccountControl".into(), uac.to_string());
    }
    for (attr, name) in [
        ("sAMAccountName", "sAMAccountName"),
        ("userPrincipalName", "userPrincipalName"),
        ("mail", "mail"),
        ("adminCount", "adminCount"),
        ("whenChanged", "whenChanged"),
    ] {
        if let Some(v) = first(entry, attr) {
            o.attributes.insert(name.into(), v.to_string());
        }
    }
    if let Some(sid) = sid {
        o.attributes.insert("objectSid".into(), sid);
    }
    // lockoutTime is a FILETIME; anything but 0 means locked (until the lockout expires).
    if let Some(t) = first(entry, "lockoutTime") {
        o.attributes
            .insert("locked_out".into(), (t.trim() != "0").to_string());
    }
    Ok(o)
}

/// The entry as JSON, for a dead letter: text attributes as they are, binary ones in hex.
pub fn entry_json(entry: &SearchEntry) -> String {
    let mut map = serde_json::Map::new();
    map.insert("dn".into(), entry.dn.clone().into());
    let mut names: Vec<&String> = entry.attrs.keys().collect();
    names.sort();
    for k in names {
        map.insert(k.clone(), entry.attrs[k].clone().into());
    }
    let mut names: Vec<&String> = entry.bin_attrs.keys().collect();
    names.sort();
    for k in names {
        let hex: Vec<String> = entry.bin_attrs[k].iter().map(hex::encode).collect();
        map.insert(format!("{k};binary"), hex.into());
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(attrs: &[(&str, &[&str])], bin: &[(&str, Vec<u8>)]) -> SearchEntry {
        SearchEntry {
            dn: "CN=Alice Smith,CN=Users,DC=corp,DC=example".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: bin
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.clone()]))
                .collect(),
        }
    }

    const SID: [u8; 28] = [
        1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0x50, 4, 0, 0,
    ];

    #[test]
    fn a_user_with_every_identifier() {
        let e = entry(
            &[
                ("objectClass", &["top", "person", "user"]),
                ("sAMAccountName", &["Alice"]),
                ("userPrincipalName", &["Alice@Corp.Example"]),
                ("displayName", &["Alice Smith"]),
                (
                    "memberOf",
                    &["CN=Domain Admins,CN=Users,DC=corp,DC=example"],
                ),
                ("userAccountControl", &["4260354"]),
            ],
            &[("objectSid", SID.to_vec()), ("objectGUID", vec![7; 16])],
        );
        let o = to_object(
            "ad",
            &e,
            "CORP",
            &super::super::config::default_privileged_groups(),
        )
        .expect("maps");
        assert_eq!(o.uid, "07070707-0707-0707-0707-070707070707");
        assert_eq!(
            o.keys,
            [
                "sid:S-1-5-21-1-2-3-1104",
                "guid:07070707-0707-0707-0707-070707070707",
                "sam:corp\\alice",
                "upn:alice@corp.example"
            ]
        );
        assert_eq!(o.enabled, Some(false), "0x410202 has ACCOUNTDISABLE");
        assert_eq!(o.privileged, Some(true));
        assert_eq!(o.attributes["preauth_not_required"], "true");
    }

    #[test]
    fn an_entry_without_guid_or_with_a_bad_sid_is_refused() {
        let no_guid = entry(&[("sAMAccountName", &["x"])], &[]);
        assert!(to_object("ad", &no_guid, "CORP", &[]).is_err());
        let bad_sid = entry(
            &[],
            &[("objectSid", vec![1, 5]), ("objectGUID", vec![1; 16])],
        );
        let err = to_object("ad", &bad_sid, "CORP", &[]).expect_err("bad sid");
        assert!(err.contains("objectSid"), "{err}");
    }
}
