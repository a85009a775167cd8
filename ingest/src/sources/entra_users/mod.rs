//! The Entra ID directory source: users through Microsoft Graph (`/v1.0/users`), with the
//! on-premises identifiers that Entra Connect synchronises from AD, and membership of
//! directory roles (`/v1.0/directoryRoles`, members paged per role) as privilege.
//!
//! An Entra user carries its object id, UPN and e-mail, and, when synchronised from AD,
//! `onPremisesSecurityIdentifier` (the AD objectSid), `onPremisesImmutableId` (base64 of the
//! AD objectGUID) and `onPremisesSamAccountName` / `onPremisesDomainName`: exactly the keys
//! that join it to the AD account. Each run is one directory synchronisation.

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dead_letter::DeadLetter;
use crate::directory::{Directory, DirectoryKind, DirectoryObject, SnapshotPages, provider};
use crate::error::{IngestError, Result};
use crate::microsoft::odata::parse_list;
use crate::microsoft::{ConnectionConfig, GRAPH_SCOPE, MicrosoftClient};
use crate::normalize::identity::IdentityKeys;

/// `[sources.<id>] type = "entra_users"`, with `[sources.<id>.auth]` as for Defender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraUsersConfig {
    /// Tenant, credential and transport (needs `User.Read.All` and `RoleManagement.Read.Directory`).
    pub auth: ConnectionConfig,
    /// Microsoft Graph base URL (national clouds differ).
    #[serde(default = "default_graph")]
    pub graph_url: String,
    /// Users per page (`$top`, at most 999).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Read directory role memberships to mark privileged users.
    #[serde(default = "yes")]
    pub roles: bool,
}

fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}
fn default_page_size() -> u32 {
    999
}
fn yes() -> bool {
    true
}

impl EntraUsersConfig {
    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=999).contains(&self.page_size) {
            return Err(format!("page_size must be 1–999, not {}", self.page_size));
        }
        if !self.graph_url.starts_with("https://") {
            return Err(format!(
                "graph_url `{}` must be https (use auth.endpoint_override for tests)",
                self.graph_url
            ));
        }
        Ok(())
    }
}

/// The user properties read (Graph returns only a default set unless asked).
const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,accountEnabled,userType,\
onPremisesSecurityIdentifier,onPremisesImmutableId,onPremisesSamAccountName,\
onPremisesDomainName,onPremisesSyncEnabled";

/// Reads Entra ID users.
pub struct EntraUsersDirectory {
    id: String,
    config: EntraUsersConfig,
    client: MicrosoftClient,
}

fn text<'a>(r: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Maps one Graph `user`; `roles` are the directory roles it holds.
pub fn to_object(
    source: &str,
    r: &Map<String, Value>,
    roles: &[String],
) -> std::result::Result<DirectoryObject, String> {
    let id = text(r, "id").ok_or("user has no `id`")?;
    let mut keys = IdentityKeys::new();
    keys.aad(Some(id))
        .upn(text(r, "userPrincipalName"))
        .upn(text(r, "mail"))
        .sid(text(r, "onPremisesSecurityIdentifier"))
        .immutable_id(text(r, "onPremisesImmutableId"));
    // No `DOMAIN\\sam` key: Entra gives the DNS domain, whose first label is no reliable
    // NetBIOS name across forests; the SID and immutable id already join the AD account.
    let keys = keys.into_vec();
    if !keys.iter().any(|k| k.starts_with("aad:")) {
        return Err(format!("user id {id:?} is not an Entra object id (GUID)"));
    }
    let mut o = DirectoryObject::new(
        source,
        provider::ENTRA_ID,
        id.to_lowercase(),
        DirectoryKind::User,
    );
    o.keys = keys;
    o.display_name = text(r, "displayName").map(str::to_string);
    o.enabled = r.get("accountEnabled").and_then(Value::as_bool);
    o.privileged = Some(!roles.is_empty());
    o.groups = roles.to_vec();
    for attr in [
        "userPrincipalName",
        "mail",
        "userType",
        "onPremisesSamAccountName",
        "onPremisesDomainName",
        "onPremisesSecurityIdentifier",
        "onPremisesImmutableId",
    ] {
        if let Some(v) = text(r, attr) {
            o.attributes.insert(attr.into(), v.to_string());
        }
    }
    if let Some(sync) = r.get("onPremisesSyncEnabled").and_then(Value::as_bool) {
        o.attributes
            .insert("onPremisesSyncEnabled".into(), sync.to_string());
    }
    Ok(o)
}

impl EntraUsersDirectory {
    /// A source with a Graph client for `config.auth`.
    pub fn connect(id: &str, config: &EntraUsersConfig) -> Result<EntraUsersDirectory> {
        let invalid = |message| IngestError::Config {
            source_id: id.to_string(),
            message,
        };
        config.validate().map_err(invalid)?;
        let client = MicrosoftClient::new(&config.auth, GRAPH_SCOPE).map_err(invalid)?;
        Ok(EntraUsersDirectory {
            id: id.to_string(),
            config: config.clone(),
            client,
        })
    }

    /// Every record of a Graph list, following `@odata.nextLink`.
    async fn list_all(&self, first_url: String, what: &str) -> Result<Vec<crate::reader::Record>> {
        let mut url = Some(first_url);
        let mut out = Vec::new();
        let mut page_no = 0;
        while let Some(u) = url.take() {
            page_no += 1;
            let upstream = |status, message: String| IngestError::Upstream {
                source_id: self.id.clone(),
                status,
                retry_after: None,
                message: format!(
                    "Graph {what} page {page_no} for tenant {} failed: {message}",
                    self.config.auth.tenant_id
                ),
            };
            let body = self
                .client
                .get(&u)
                .await
                .map_err(|e| upstream(e.status, e.message))?;
            let (records, next) =
                parse_list(&body, "@odata.nextLink").map_err(|m| upstream(None, m))?;
            out.extend(records);
            url = next;
        }
        Ok(out)
    }
}

#[async_trait]
impl Directory for EntraUsersDirectory {
    fn id(&self) -> &str {
        &self.id
    }

    async fn snapshot(&self) -> Result<SnapshotPages> {
        let started_at = Utc::now();
        let base = self.config.graph_url.trim_end_matches('/');
        let mut roles_of: std::collections::HashMap<String, Vec<String>> = Default::default();
        if self.config.roles {
            let roles = self
                .list_all(
                    format!("{base}/v1.0/directoryRoles?$select=id,displayName"),
                    "directoryRoles",
                )
                .await?;
            for role in &roles {
                let (Some(role_id), Some(name)) = (
                    role.value.get("id").and_then(Value::as_str),
                    role.value.get("displayName").and_then(Value::as_str),
                ) else {
                    continue;
                };
                // Members are paged on their own: `$expand` caps them without a next link.
                let members = self
                    .list_all(
                        format!("{base}/v1.0/directoryRoles/{role_id}/members?$select=id"),
                        "directoryRole members",
                    )
                    .await?;
                for m in &members {
                    if let Some(id) = m.value.get("id").and_then(Value::as_str) {
                        roles_of
                            .entry(id.to_lowercase())
                            .or_default()
                            .push(name.to_string());
                    }
                }
            }
        }
        let users = self
            .list_all(
                format!(
                    "{base}/v1.0/users?$select={USER_SELECT}&$top={}",
                    self.config.page_size
                ),
                "users",
            )
            .await?;
        let (mut objects, mut dead_letters) = (Vec::new(), Vec::new());
        for (i, u) in users.iter().enumerate() {
            let mapped = match u.value.as_object() {
                Some(r) => {
                    let id = text(r, "id").unwrap_or_default().to_lowercase();
                    to_object(
                        &self.id,
                        r,
                        roles_of.get(&id).map(Vec::as_slice).unwrap_or_default(),
                    )
                }
                None => Err("user is not a JSON object".into()),
            };
            match mapped {
                Ok(o) => objects.push(o),
                Err(reason) => dead_letters.push(DeadLetter::new(
                    &self.id,
                    format!("users[{i}]"),
                    reason,
                    u.raw.as_bytes(),
                )),
            }
        }
        Ok(SnapshotPages::new(objects, dead_letters, started_at, 1000))
    }
}
