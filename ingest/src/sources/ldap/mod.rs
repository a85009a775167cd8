//! The Active Directory source: users and groups over LDAP (`ldap3`), as directory objects
//! for identity resolution.
//!
//! Each run binds (LDAPS or StartTLS; AD refuses simple binds in clear), finds the domain's
//! NetBIOS name in the configuration partition unless configured, and reads every user and
//! group with the paged-results control, so domains larger than the server's size limit come
//! whole. The run is one directory synchronisation: accounts deleted from AD disappear from
//! Cairn's directory when it completes. An entry that cannot be mapped (no objectGUID, a
//! malformed SID) is a dead letter with its DN; a failed bind or search fails the run and
//! changes nothing.

mod config;
pub mod map;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use chrono::Utc;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

pub use config::{LdapConfig, default_privileged_groups};

use crate::dead_letter::DeadLetter;
use crate::directory::{Directory, DirectoryObject, SnapshotPages};
use crate::error::{IngestError, Result};

/// Users and persons, not computers (which are `user` objects too).
const USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";
const GROUP_FILTER: &str = "(objectClass=group)";

/// Reads an AD domain's users and groups.
pub struct LdapDirectory {
    id: String,
    config: LdapConfig,
}

impl LdapDirectory {
    /// A source for `config` (checked; nothing is contacted until the first page).
    pub fn new(id: &str, config: &LdapConfig) -> Result<LdapDirectory> {
        config.validate().map_err(|message| IngestError::Config {
            source_id: id.to_string(),
            message,
        })?;
        Ok(LdapDirectory {
            id: id.to_string(),
            config: config.clone(),
        })
    }

    fn upstream(&self, what: &str, e: impl std::fmt::Display) -> IngestError {
        IngestError::upstream(&self.id, format!("{what} ({}): {e}", self.config.url))
    }

    async fn connect(&self) -> Result<Ldap> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout)
            .set_starttls(self.config.starttls)
            .set_no_tls_verify(!self.config.tls_verify);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| self.upstream("cannot connect", e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.config.timeout);
        let password = self
            .config
            .password()
            .map_err(|message| IngestError::Config {
                source_id: self.id.clone(),
                message,
            })?;
        ldap.simple_bind(&self.config.bind_dn, &password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| self.upstream(&format!("bind as {} refused", self.config.bind_dn), e))?;
        Ok(ldap)
    }

    /// The domain's NetBIOS name: configured, else the `nETBIOSName` of its crossRef.
    async fn netbios(&self, ldap: &mut Ldap) -> Result<String> {
        if let Some(n) = &self.config.netbios_domain {
            return Ok(n.clone());
        }
        let base = format!("CN=Partitions,CN=Configuration,{}", self.config.base_dn);
        let filter = format!(
            "(&(objectClass=crossRef)(nCName={}))",
            ldap3::ldap_escape(&self.config.base_dn)
        );
        let found = ldap
            .search(&base, Scope::OneLevel, &filter, vec!["nETBIOSName"])
            .await
            .and_then(|r| r.success());
        let from_directory = match found {
            Ok((entries, _)) => entries.into_iter().find_map(|e| {
                SearchEntry::construct(e)
                    .attrs
                    .get("nETBIOSName")
                    .and_then(|v| v.first().cloned())
            }),
            Err(e) => {
                tracing::warn!(source = %self.id, error = %e, "Cannot read the NetBIOS domain name; using the first DC= label");
                None
            }
        };
        Ok(from_directory.unwrap_or_else(|| {
            self.config
                .base_dn
                .split(',')
                .find_map(|rdn| {
                    rdn.trim()
                        .split_once('=')
                        .filter(|(t, _)| t.eq_ignore_ascii_case("dc"))
                        .map(|(_, v)| v.to_string())
                })
                .unwrap_or_default()
        }))
    }

    /// Every entry matching `filter`, page by page.
    async fn search_all(
        &self,
        ldap: &mut Ldap,
        filter: &str,
        netbios: &str,
        objects: &mut Vec<DirectoryObject>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<()> {
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.config.page_size as i32)),
        ];
        let mut search = ldap
            .streaming_search_with(
                adapters,
                &self.config.base_dn,
                Scope::Subtree,
                filter,
                map::ATTRIBUTES.to_vec(),
            )
            .await
            .map_err(|e| self.upstream(&format!("search {filter} failed"), e))?;
        while let Some(raw) = search
            .next()
            .await
            .map_err(|e| self.upstream(&format!("search {filter} failed"), e))?
        {
            // `construct` panics on BER it cannot parse; one bad entry must not end the run.
            let entry =
                match std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw))) {
                    Ok(e) => e,
                    Err(_) => {
                        dead_letters.push(DeadLetter::new(
                            &self.id,
                            format!("{} search {filter}", self.config.url),
                            "the server sent an entry that is not valid BER".into(),
                            b"",
                        ));
                        continue;
                    }
                };
            match map::to_object(&self.id, &entry, netbios, &self.config.privileged_groups) {
                Ok(o) => objects.push(o),
                Err(reason) => dead_letters.push(DeadLetter::new(
                    &self.id,
                    entry.dn.clone(),
                    reason,
                    map::entry_json(&entry).as_bytes(),
                )),
            }
        }
        search
            .finish()
            .await
            .success()
            .map_err(|e| self.upstream(&format!("search {filter} failed"), e))?;
        Ok(())
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    fn id(&self) -> &str {
        &self.id
    }

    async fn snapshot(&self) -> Result<SnapshotPages> {
        let started_at = Utc::now();
        let mut ldap = self.connect().await?;
        let netbios = self.netbios(&mut ldap).await?;
        let (mut objects, mut dead_letters) = (Vec::new(), Vec::new());
        for filter in [USER_FILTER, GROUP_FILTER] {
            self.search_all(&mut ldap, filter, &netbios, &mut objects, &mut dead_letters)
                .await?;
        }
        // Unbinding is a courtesy; the snapshot is complete either way.
        let _ = ldap.unbind().await;
        tracing::info!(source = %self.id, objects = objects.len(), dead_letters = dead_letters.len(), netbios = %netbios, "Read the directory");
        Ok(SnapshotPages::new(
            objects,
            dead_letters,
            started_at,
            self.config.page_size as usize,
        ))
    }
}
