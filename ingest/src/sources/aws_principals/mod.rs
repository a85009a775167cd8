//! The AWS directory source: IAM users of each account and IAM Identity Center users, as
//! directory objects for identity resolution.
//!
//! People reach AWS in two ways. IAM users are named accounts (their name is often the
//! person's e-mail or UPN). Identity Center (SSO) users sign in through the corporate IdP and
//! act through role sessions named after their user name (`…:assumed-role/AWSReservedSSO_…/
//! alice@corp.example`), which Security Hub and CloudTrail records carry; an Identity Center
//! user provisioned from Entra ID by SCIM also keeps its Entra object id as an external id.
//! Those are the keys that join AWS principals to the person's Entra and AD accounts.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iam::config::Region;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryKind, DirectoryObject, SnapshotPages, provider};
use crate::duration::serde_duration;
use crate::error::{IngestError, Result};
use crate::normalize::identity::IdentityKeys;

/// `[sources.<id>] type = "aws_principals"`.
///
/// ```toml
/// [sources.aws-iam]
/// type = "aws_principals"
/// region = "us-east-1"
/// role_arns = ["arn:aws:iam::111122223333:role/CairnReadOnly"]
/// identity_store_id = "d-1234567890"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsPrincipalsConfig {
    /// Region of the API calls (IAM is global; Identity Center lives in one Region).
    pub region: String,
    /// Roles to assume, one per account; empty reads the account of the default credentials.
    #[serde(default)]
    pub role_arns: Vec<String>,
    /// External id required by the roles' trust policy, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The Identity Center identity store (`d-…`) to read users from, if any; read with the
    /// default credentials (the management or delegated administrator account).
    #[serde(default)]
    pub identity_store_id: Option<String>,
    /// Endpoint override (tests point it at 127.0.0.1).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Per-attempt timeout.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Attempts per call (the SDK's standard retry with back-off).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_attempts() -> u32 {
    5
}

impl AwsPrincipalsConfig {
    /// Checks the configuration without connecting; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.region.trim().is_empty() {
            return Err("region must be set (e.g. us-east-1)".into());
        }
        if let Some(r) = self.role_arns.iter().find(|r| !r.starts_with("arn:aws")) {
            return Err(format!("role_arns entry {r:?} is not a role ARN"));
        }
        if let Some(id) = &self.identity_store_id
            && !id.starts_with("d-")
        {
            return Err(format!(
                "identity_store_id {id:?} must look like d-1234567890"
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// An IAM user as `ListUsers` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamUser {
    /// `Arn`.
    pub arn: String,
    /// `UserName`.
    pub user_name: String,
    /// `UserId` (`AIDA…`).
    pub user_id: String,
}

/// An Identity Center user as `identitystore:ListUsers` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdentityCenterUser {
    /// `IdentityStoreId`.
    pub identity_store_id: String,
    /// `UserId`.
    pub user_id: String,
    /// `UserName` (what role sessions are named after).
    pub user_name: Option<String>,
    /// `DisplayName`.
    pub display_name: Option<String>,
    /// `Emails[].Value`.
    pub emails: Vec<String>,
    /// `ExternalIds[]` as (issuer, id): the IdP's id of the user when provisioned by SCIM.
    pub external_ids: Vec<(String, String)>,
}

/// Maps an IAM user.
pub fn iam_user(source: &str, u: &IamUser) -> DirectoryObject {
    let mut o = DirectoryObject::new(
        source,
        provider::AWS_IAM,
        u.arn.clone(),
        DirectoryKind::User,
    );
    let mut keys = IdentityKeys::new();
    keys.aws_arn(Some(&u.arn)).upn(Some(&u.user_name));
    o.keys = keys.into_vec();
    o.display_name = Some(u.user_name.clone());
    o.location = u.arn.split(':').nth(4).map(|a| format!("AWS account {a}"));
    o.attributes.insert("userName".into(), u.user_name.clone());
    o.attributes.insert("userId".into(), u.user_id.clone());
    o
}

/// Maps an Identity Center user. An external id shaped like an Entra object id (a GUID) is
/// taken as one: that is what Entra's SCIM provisioning writes.
pub fn identity_center_user(source: &str, u: &IdentityCenterUser) -> DirectoryObject {
    let mut o = DirectoryObject::new(
        source,
        provider::AWS_IDENTITY_CENTER,
        format!("{}/{}", u.identity_store_id, u.user_id),
        DirectoryKind::User,
    );
    let mut keys = IdentityKeys::new();
    keys.sso_user(Some(&u.user_id)).upn(u.user_name.as_deref());
    for e in &u.emails {
        keys.upn(Some(e));
    }
    for (_, id) in &u.external_ids {
        keys.aad(Some(id));
    }
    o.keys = keys.into_vec();
    o.display_name = u.display_name.clone().or_else(|| u.user_name.clone());
    o.location = Some(format!("IAM Identity Center {}", u.identity_store_id));
    if let Some(n) = &u.user_name {
        o.attributes.insert("userName".into(), n.clone());
    }
    for (issuer, id) in &u.external_ids {
        o.attributes
            .insert(format!("externalId {issuer}"), id.clone());
    }
    o
}

/// Reads IAM users and Identity Center users.
pub struct AwsPrincipalsDirectory {
    id: String,
    config: AwsPrincipalsConfig,
}

impl AwsPrincipalsDirectory {
    /// A source for `config` (checked; nothing is contacted until the first page).
    pub fn new(id: &str, config: &AwsPrincipalsConfig) -> Result<AwsPrincipalsDirectory> {
        config.validate().map_err(|message| IngestError::Config {
            source_id: id.to_string(),
            message,
        })?;
        Ok(AwsPrincipalsDirectory {
            id: id.to_string(),
            config: config.clone(),
        })
    }

    fn upstream(&self, what: &str, e: impl std::fmt::Display) -> IngestError {
        IngestError::upstream(&self.id, format!("{what}: {e}"))
    }

    async fn base_config(&self) -> aws_config::SdkConfig {
        let c = &self.config;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(c.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(c.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10).min(c.timeout))
                    .operation_attempt_timeout(c.timeout)
                    .build(),
            );
        if let Some(url) = &c.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    async fn iam_users(
        &self,
        base: &aws_config::SdkConfig,
        role: Option<&str>,
    ) -> Result<Vec<IamUser>> {
        let mut builder = aws_sdk_iam::config::Builder::from(base);
        if let Some(role) = role {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("cairn-directory")
                .region(Region::new(self.config.region.clone()))
                .configure(base);
            if let Some(id) = &self.config.external_id {
                provider = provider.external_id(id);
            }
            builder = builder.credentials_provider(provider.build().await);
        }
        let client = aws_sdk_iam::Client::from_conf(builder.build());
        let scope = role.unwrap_or("the default credentials");
        let mut pages = client.list_users().into_paginator().send();
        let mut users = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.upstream(
                    &format!("IAM ListUsers with {scope}"),
                    aws_sdk_iam::error::DisplayErrorContext(e),
                )
            })?;
            for u in page.users() {
                users.push(IamUser {
                    arn: u.arn().to_string(),
                    user_name: u.user_name().to_string(),
                    user_id: u.user_id().to_string(),
                });
            }
        }
        Ok(users)
    }

    async fn identity_center_users(
        &self,
        base: &aws_config::SdkConfig,
        store: &str,
    ) -> Result<Vec<IdentityCenterUser>> {
        let client = aws_sdk_identitystore::Client::new(base);
        let mut pages = client
            .list_users()
            .identity_store_id(store)
            .into_paginator()
            .send();
        let mut users = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.upstream(
                    &format!("Identity Center ListUsers of {store}"),
                    aws_sdk_identitystore::error::DisplayErrorContext(e),
                )
            })?;
            for u in page.users() {
                users.push(IdentityCenterUser {
                    identity_store_id: store.to_string(),
                    user_id: u.user_id().to_string(),
                    user_name: u.user_name().map(str::to_string),
                    display_name: u.display_name().map(str::to_string),
                    emails: u
                        .emails()
                        .iter()
                        .filter_map(|e| e.value().map(str::to_string))
                        .collect(),
                    external_ids: u
                        .external_ids()
                        .iter()
                        .map(|x| (x.issuer().to_string(), x.id().to_string()))
                        .collect(),
                });
            }
        }
        Ok(users)
    }
}

#[async_trait]
impl Directory for AwsPrincipalsDirectory {
    fn id(&self) -> &str {
        &self.id
    }

    async fn snapshot(&self) -> Result<SnapshotPages> {
        let started_at = Utc::now();
        let base = self.base_config().await;
        let mut objects = Vec::new();
        if self.config.role_arns.is_empty() {
            for u in self.iam_users(&base, None).await? {
                objects.push(iam_user(&self.id, &u));
            }
        }
        for role in &self.config.role_arns {
            for u in self.iam_users(&base, Some(role)).await? {
                objects.push(iam_user(&self.id, &u));
            }
        }
        if let Some(store) = &self.config.identity_store_id {
            for u in self.identity_center_users(&base, store).await? {
                objects.push(identity_center_user(&self.id, &u));
            }
        }
        Ok(SnapshotPages::new(objects, Vec::new(), started_at, 1000))
    }
}
