//! Configuration of the Active Directory (LDAP) directory source.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;

/// `[sources.<id>] type = "ldap"`: users and groups of an Active Directory domain.
///
/// ```toml
/// [sources.corp-ad]
/// type = "ldap"
/// url = "ldaps://dc1.corp.example.com"
/// bind_dn = "CN=svc-cairn,OU=Service Accounts,DC=corp,DC=example,DC=com"
/// password_env = "CAIRN_AD_PASSWORD"
/// base_dn = "DC=corp,DC=example,DC=com"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:636]`, or `ldap://host[:389]` with `starttls`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Allow a simple bind over plain `ldap://` without StartTLS, which sends the password in
    /// clear text (lab domains only).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Verify the server's certificate (turn off only for a lab DC with a self-signed one).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// DN or `DOMAIN\user` / UPN to bind as; a read-only account is enough.
    pub bind_dn: String,
    /// Environment variable holding the bind password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the bind password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Search base, usually the domain's DN.
    pub base_dn: String,
    /// The domain's NetBIOS name (`CORP`); read from the directory's partitions when unset.
    #[serde(default)]
    pub netbios_domain: Option<String>,
    /// LDAP paged-results page size (AD's MaxPageSize is 1000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Connect and operation timeout.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Groups whose members count as privileged besides `adminCount=1` holders, by CN.
    #[serde(default = "default_privileged_groups")]
    pub privileged_groups: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_page_size() -> u32 {
    500
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The built-in groups that Microsoft's guidance treats as Tier 0.
pub fn default_privileged_groups() -> Vec<String> {
    [
        "Domain Admins",
        "Enterprise Admins",
        "Schema Admins",
        "Administrators",
        "Account Operators",
        "Backup Operators",
        "Server Operators",
        "Print Operators",
        "DnsAdmins",
        "Group Policy Creator Owners",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl LdapConfig {
    /// Checks the configuration without connecting; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "ldap" | "ldaps") || !self.url.contains("://") {
            return Err(format!(
                "url must start with ldaps:// or ldap://, not {:?}",
                self.url
            ));
        }
        if self.starttls && scheme == "ldaps" {
            return Err("starttls applies to ldap:// URLs; ldaps:// is TLS already".into());
        }
        if scheme == "ldap" && !self.starttls && !self.allow_plaintext {
            return Err(
                "ldap:// without starttls would send the bind password in clear text; use \
                 ldaps://, set starttls = true, or (lab only) allow_plaintext = true"
                    .into(),
            );
        }
        if self.base_dn.trim().is_empty() {
            return Err("base_dn must name the search base (e.g. DC=corp,DC=example)".into());
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err(format!("page_size must be 1–10000, not {}", self.page_size));
        }
        if self.password_env.is_none() && self.password_file.is_none() {
            return Err("give password_env or password_file for the bind account".into());
        }
        Ok(())
    }

    /// The bind password, from the environment or a file.
    pub fn password(&self) -> Result<String, String> {
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map_err(|_| format!("environment variable {var} (the bind password) is not set"));
        }
        if let Some(path) = &self.password_file {
            return std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| {
                    format!("cannot read the bind password from {}: {e}", path.display())
                });
        }
        Err("give password_env or password_file for the bind account".into())
    }
}
