//! The `identities.toml` override file: an operator's statement that accounts which no
//! directory links are one person (a contractor's AWS IAM user named `jdoe-admin`, a break-glass
//! account), with the reason that `cairn identity show` repeats.
//!
//! ```toml
//! [[person]]
//! reason = "HR ticket 4411: Jane Doe's admin accounts"
//! accounts = [
//!     "jane.doe@corp.example",
//!     "CORP\\jdoe-adm",
//!     "arn:aws:iam::111122223333:user/jdoe-admin",
//! ]
//! ```
//!
//! Accounts are written as records write them (UPN or e-mail, `DOMAIN\user`, an IAM user or
//! assumed-role ARN, a SID, an Entra object id) or as identity keys (`sso:…`, `guid:…`). An
//! account that names no person is refused with the entry's number, so a typo never
//! silently links nothing.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryKind, DirectoryObject, SnapshotPages, provider};
use crate::error::{IngestError, Result};
use crate::normalize::identity::normalize_principal;

/// `[sources.<id>] type = "identities_file"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitiesFileConfig {
    /// The TOML file of `[[person]]` entries.
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    person: Vec<Person>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    reason: String,
    accounts: Vec<String>,
}

/// Key prefixes accepted as written.
const KEY_PREFIXES: &[&str] = &["sid:", "upn:", "sam:", "aad:", "guid:", "aws:", "sso:"];

/// The identity key of one account as written in the file, normalized as records' keys are
/// (a key written with its prefix too: `upn:Jane@Corp.com` is `upn:jane@corp.com`).
pub fn account_key(account: &str) -> Option<String> {
    let a = account.trim();
    let Some((kind, value)) = a
        .split_once(':')
        .filter(|(k, _)| KEY_PREFIXES.contains(&format!("{k}:").as_str()))
    else {
        return normalize_principal(a);
    };
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut keys = crate::normalize::identity::IdentityKeys::new();
    match kind {
        "sid" => keys.sid(Some(value)),
        "upn" => keys.upn(Some(value)),
        "sam" => keys.account(None, Some(value)),
        "aad" => keys.aad(Some(value)),
        "guid" => keys.guid(Some(value)),
        "aws" => keys.aws_arn(Some(value)),
        _ => keys.sso_user(Some(value)),
    };
    keys.into_vec().into_iter().next()
}

/// Parses the file's text into override objects of source `source`.
pub fn parse(
    source: &str,
    name: &str,
    text: &str,
) -> std::result::Result<Vec<DirectoryObject>, String> {
    let file: File = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    let mut out = Vec::new();
    for (i, p) in file.person.iter().enumerate() {
        let entry = i + 1;
        if p.reason.trim().is_empty() {
            return Err(format!("{name}: [[person]] #{entry} has an empty reason"));
        }
        if p.accounts.len() < 2 {
            return Err(format!(
                "{name}: [[person]] #{entry} ({}) must list at least two accounts to link",
                p.reason
            ));
        }
        let mut keys = Vec::new();
        for a in &p.accounts {
            let key = account_key(a).ok_or_else(|| {
                format!(
                    "{name}: [[person]] #{entry} ({}): {a:?} names no person (machine, built-in or \
                     unqualified account?); write DOMAIN\\user, a UPN, an ARN, a SID or a key",
                    p.reason
                )
            })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut o = DirectoryObject::new(
            source,
            provider::OVERRIDE,
            format!("person-{entry}"),
            DirectoryKind::Override,
        );
        o.display_name = Some(p.reason.clone());
        o.location = Some(format!("{name} [[person]] #{entry}"));
        o.keys = keys;
        out.push(o);
    }
    Ok(out)
}

/// Reads the override file on every run.
pub struct IdentitiesFile {
    id: String,
    config: IdentitiesFileConfig,
}

impl IdentitiesFile {
    /// A directory reading `config.path`.
    pub fn new(id: &str, config: &IdentitiesFileConfig) -> IdentitiesFile {
        IdentitiesFile {
            id: id.to_string(),
            config: config.clone(),
        }
    }
}

#[async_trait]
impl Directory for IdentitiesFile {
    fn id(&self) -> &str {
        &self.id
    }

    async fn snapshot(&self) -> Result<SnapshotPages> {
        let path = &self.config.path;
        let text = std::fs::read_to_string(path).map_err(|err| IngestError::Io {
            path: path.clone(),
            err,
        })?;
        let objects = parse(&self.id, &path.display().to_string(), &text).map_err(|message| {
            IngestError::Config {
                source_id: self.id.clone(),
                message,
            }
        })?;
        Ok(SnapshotPages::new(objects, Vec::new(), Utc::now(), 1000))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_in_every_form_and_clear_refusals() {
        let ok = parse(
            "overrides",
            "identities.toml",
            r#"
[[person]]
reason = "HR ticket 4411"
accounts = ["Jane.Doe@corp.example", "CORP\\jdoe-adm", "arn:aws:iam::111122223333:user/jdoe-admin", "sso:9067C6F2", "sid:s-1-5-21-1-2-3-1104"]
"#,
        )
        .expect("parses");
        assert_eq!(
            ok[0].keys,
            [
                "upn:jane.doe@corp.example",
                "sam:corp\\jdoe-adm",
                "aws:arn:aws:iam::111122223333:user/jdoe-admin",
                "sso:9067c6f2",
                "sid:S-1-5-21-1-2-3-1104"
            ]
        );
        let bad = parse(
            "overrides",
            "identities.toml",
            "[[person]]\nreason = \"x\"\naccounts = [\"jane@corp.example\", \"jdoe\"]\n",
        )
        .expect_err("bare name");
        assert!(bad.contains("#1") && bad.contains("\"jdoe\""), "{bad}");
        let unknown = parse("o", "identities.toml", "[[persons]]\n").expect_err("typo");
        assert!(unknown.contains("persons"), "{unknown}");
    }
}
