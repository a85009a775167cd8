//! Source implementations, one folder each, and the one place they are registered.

pub mod aws_principals;
pub mod defender;
pub mod defender_cloud;
pub mod defender_compliance;
pub mod entra_users;
pub mod file;
pub mod identities_file;
pub mod kafka;
pub mod ldap;
pub mod securityhub;
pub mod sentinel;

use serde::{Deserialize, Serialize};

use crate::directory::DirectorySource;
use crate::error::Result;
use crate::source::Source;

/// Every source type, as configured in `[sources.<id>]` by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// `type = "file"`: JSON, NDJSON and gzip files or folders.
    File(file::FileSourceConfig),
    /// `type = "aws_security_hub"`: Security Hub `GetFindings` or `GetFindingsV2`.
    AwsSecurityHub(securityhub::SecurityHubConfig),
    /// `type = "microsoft_defender"`: Defender XDR alerts and incidents through Graph.
    MicrosoftDefender(defender::DefenderConfig),
    /// `type = "microsoft_defender_for_cloud"`: Defender for Cloud alerts through ARM.
    MicrosoftDefenderForCloud(defender_cloud::DefenderCloudConfig),
    /// `type = "microsoft_defender_compliance"`: Defender for Cloud regulatory compliance
    /// assessments through ARM.
    MicrosoftDefenderCompliance(defender_compliance::DefenderComplianceConfig),
    /// `type = "microsoft_sentinel"`: Sentinel incidents and their alerts through ARM.
    MicrosoftSentinel(sentinel::SentinelConfig),
    /// `type = "ldap"`: users and groups of an Active Directory domain.
    Ldap(ldap::LdapConfig),
    /// `type = "entra_users"`: Entra ID users and directory roles through Graph.
    EntraUsers(entra_users::EntraUsersConfig),
    /// `type = "aws_principals"`: IAM users of each account and IAM Identity Center users.
    AwsPrincipals(aws_principals::AwsPrincipalsConfig),
    /// `type = "identities_file"`: operator overrides linking accounts (`identities.toml`).
    IdentitiesFile(identities_file::IdentitiesFileConfig),
    /// `type = "kafka"`: JSON records from Kafka topics, as a consumer group.
    Kafka(kafka::KafkaConfig),
}

impl SourceConfig {
    /// Builds the source with id `id` (connecting clients where the source has any).
    pub async fn build(&self, id: &str) -> Result<Box<dyn Source>> {
        match self {
            SourceConfig::File(c) => Ok(Box::new(file::FileSource::new(id, c)?)),
            SourceConfig::AwsSecurityHub(c) => Ok(Box::new(
                securityhub::SecurityHubSource::connect(id, c).await?,
            )),
            SourceConfig::MicrosoftDefender(c) => {
                Ok(Box::new(defender::DefenderSource::connect(id, c)?))
            }
            SourceConfig::MicrosoftDefenderForCloud(c) => Ok(Box::new(
                defender_cloud::DefenderCloudSource::connect(id, c)?,
            )),
            SourceConfig::MicrosoftDefenderCompliance(c) => Ok(Box::new(
                defender_compliance::DefenderComplianceSource::connect(id, c)?,
            )),
            SourceConfig::MicrosoftSentinel(c) => {
                Ok(Box::new(sentinel::SentinelSource::connect(id, c)?))
            }
            SourceConfig::Ldap(c) => Ok(Box::new(DirectorySource::new(ldap::LdapDirectory::new(
                id, c,
            )?))),
            SourceConfig::EntraUsers(c) => Ok(Box::new(DirectorySource::new(
                entra_users::EntraUsersDirectory::connect(id, c)?,
            ))),
            SourceConfig::AwsPrincipals(c) => Ok(Box::new(DirectorySource::new(
                aws_principals::AwsPrincipalsDirectory::new(id, c)?,
            ))),
            SourceConfig::IdentitiesFile(c) => Ok(Box::new(DirectorySource::new(
                identities_file::IdentitiesFile::new(id, c),
            ))),
            SourceConfig::Kafka(c) => Ok(Box::new(kafka::KafkaSource::connect(id, c)?)),
        }
    }

    /// Checks the configuration without connecting; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            SourceConfig::File(c) if c.paths.is_empty() => {
                Err("paths must name at least one file or folder".into())
            }
            SourceConfig::File(_) => Ok(()),
            SourceConfig::AwsSecurityHub(c) => c.validate(),
            SourceConfig::MicrosoftDefender(c) => c.validate(),
            SourceConfig::MicrosoftDefenderForCloud(c) => c.validate(),
            SourceConfig::MicrosoftDefenderCompliance(c) => c.validate(),
            SourceConfig::MicrosoftSentinel(c) => c.validate(),
            SourceConfig::Ldap(c) => c.validate(),
            SourceConfig::EntraUsers(c) => c.validate(),
            SourceConfig::AwsPrincipals(c) => c.validate(),
            SourceConfig::IdentitiesFile(_) => Ok(()),
            SourceConfig::Kafka(c) => c.validate(),
        }
    }
}
