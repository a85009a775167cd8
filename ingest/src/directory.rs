//! Directory objects: the accounts that AD, Entra ID and AWS know, with every identifier each
//! one carries, so that the correlator can tell that three principals are one person.
//!
//! Directory sources (LDAP, Entra users through Graph, AWS IAM and IAM Identity Center, the
//! `identities.toml` override file) are ordinary [`Source`](crate::Source)s whose pages carry
//! [`DirectoryObject`]s instead of (or beside) findings. Each object lists its identity keys
//! (see [`crate::normalize::identity`]); keys of one object are one account by the
//! directory's own word, and the resolver records that as the reason it links them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of directory object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    /// A person's (or service's) user account.
    User,
    /// A group; its members name it in their `groups`.
    Group,
    /// An operator's statement from `identities.toml` that keys belong to one person.
    Override,
}

impl DirectoryKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::User => "user",
            DirectoryKind::Group => "group",
            DirectoryKind::Override => "override",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(DirectoryKind::User),
            "group" => Some(DirectoryKind::Group),
            "override" => Some(DirectoryKind::Override),
            _ => None,
        }
    }
}

/// Which kind of directory holds an object, for rules (`directory.provider`).
pub mod provider {
    /// Active Directory (LDAP).
    pub const ACTIVE_DIRECTORY: &str = "active_directory";
    /// Microsoft Entra ID.
    pub const ENTRA_ID: &str = "entra_id";
    /// AWS IAM (users of an account).
    pub const AWS_IAM: &str = "aws_iam";
    /// AWS IAM Identity Center.
    pub const AWS_IDENTITY_CENTER: &str = "aws_identity_center";
    /// The operator's `identities.toml`.
    pub const OVERRIDE: &str = "override";
}

/// One account or group as its directory describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryObject {
    /// The id of the source it came from (`[sources.<id>]`).
    pub source: String,
    /// Which kind of directory it is in (one of [`provider`]).
    pub provider: String,
    /// The directory's own stable id: `objectGUID` for AD, the object id for Entra, the ARN
    /// or Identity Center user id for AWS.
    pub uid: String,
    /// User, group or override.
    pub kind: DirectoryKind,
    /// What people call it (`cn`, `displayName`, the IAM user name).
    pub display_name: Option<String>,
    /// Where it lives: the AD distinguished name, the Entra tenant, the AWS account.
    pub location: Option<String>,
    /// Its identity keys (`sid:`, `guid:`, `upn:`, `sam:`, `aad:`, `aws:`, `sso:`).
    pub keys: Vec<String>,
    /// Whether the account can sign in (`None` when the directory does not say).
    pub enabled: Option<bool>,
    /// Whether it is privileged (AD `adminCount`, membership of a privileged group).
    pub privileged: Option<bool>,
    /// The groups it is a member of, by name or distinguished name.
    pub groups: Vec<String>,
    /// Other attributes worth showing an analyst (`userAccountControl`, `mail`, …).
    pub attributes: BTreeMap<String, String>,
}

impl DirectoryObject {
    /// A new object of directory `provider` with no keys or attributes yet.
    pub fn new(source: &str, provider: &str, uid: impl Into<String>, kind: DirectoryKind) -> Self {
        DirectoryObject {
            source: source.to_string(),
            provider: provider.to_string(),
            uid: uid.into(),
            kind,
            display_name: None,
            location: None,
            keys: Vec::new(),
            enabled: None,
            privileged: None,
            groups: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// Why its keys are one account, in words an analyst reads in `cairn identity show`.
    pub fn reason(&self) -> String {
        let name = self
            .display_name
            .as_deref()
            .or(self.location.as_deref())
            .unwrap_or(&self.uid);
        match self.kind {
            DirectoryKind::Override => format!("{} says so: {name}", self.source),
            kind => format!("one {} in directory {}: {name}", kind.as_str(), self.source),
        }
    }
}

/// Marks the pages of one directory synchronisation, so that objects the directory no longer
/// has can be removed once the whole snapshot is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectorySync {
    /// When this synchronisation started; every object it writes carries this time.
    pub started_at: DateTime<Utc>,
    /// Set on the last page: objects of the source not written since `started_at` are gone.
    pub complete: bool,
}

/// Hands out a directory snapshot, read whole, as pages of one synchronisation: every page
/// carries the same `started_at`, and the last one (possibly empty) is marked complete.
#[derive(Debug)]
pub struct SnapshotPages {
    objects: std::collections::VecDeque<DirectoryObject>,
    dead_letters: Vec<crate::DeadLetter>,
    started_at: DateTime<Utc>,
    page_size: usize,
    finished: bool,
}

impl SnapshotPages {
    /// Pages of `page_size` objects; dead letters go with the first page.
    pub fn new(
        objects: Vec<DirectoryObject>,
        dead_letters: Vec<crate::DeadLetter>,
        started_at: DateTime<Utc>,
        page_size: usize,
    ) -> Self {
        SnapshotPages {
            objects: objects.into(),
            dead_letters,
            started_at,
            page_size: page_size.max(1),
            finished: false,
        }
    }

    /// The next page, or `None` after the complete one.
    pub fn next_page(&mut self) -> Option<crate::Page> {
        if self.finished {
            return None;
        }
        let n = self.page_size.min(self.objects.len());
        let directory: Vec<DirectoryObject> = self.objects.drain(..n).collect();
        let complete = self.objects.is_empty();
        self.finished = complete;
        Some(crate::Page {
            directory,
            dead_letters: std::mem::take(&mut self.dead_letters),
            directory_sync: Some(DirectorySync {
                started_at: self.started_at,
                complete,
            }),
            ..crate::Page::default()
        })
    }
}

/// A directory read whole on every run: LDAP, Entra users, AWS principals, the override file.
/// Wrapped in [`DirectorySource`], each run is one synchronisation.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The configured source id.
    fn id(&self) -> &str;
    /// Reads every object, as the pages of one synchronisation.
    async fn snapshot(&self) -> crate::Result<SnapshotPages>;
}

/// Runs a [`Directory`] as a [`Source`](crate::Source): the first page reads the snapshot,
/// the following ones hand it out.
pub struct DirectorySource<D> {
    directory: D,
    pages: Option<SnapshotPages>,
}

impl<D: Directory> DirectorySource<D> {
    /// A source over `directory`.
    pub fn new(directory: D) -> Self {
        DirectorySource {
            directory,
            pages: None,
        }
    }
}

#[async_trait]
impl<D: Directory> crate::Source for DirectorySource<D> {
    fn id(&self) -> &str {
        self.directory.id()
    }

    async fn next_page(&mut self, _cursor: Option<&str>) -> crate::Result<Option<crate::Page>> {
        if self.pages.is_none() {
            self.pages = Some(self.directory.snapshot().await?);
        }
        Ok(self.pages.as_mut().and_then(SnapshotPages::next_page))
    }
}
