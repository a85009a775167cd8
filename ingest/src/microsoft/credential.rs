//! Credentials from `azure_identity`, chosen in configuration. Secrets come only from the
//! environment or files, never from the configuration text itself.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{Secret, SecretBytes, TokenCredential};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, ClientCertificateCredential, ClientCertificateCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use serde::{Deserialize, Serialize};

/// `credential = { type = "…", … }` of a Microsoft source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// An app registration with a client secret.
    ClientSecret {
        /// Application (client) id.
        client_id: String,
        /// Environment variable holding the secret.
        #[serde(default)]
        client_secret_env: Option<String>,
        /// File holding the secret.
        #[serde(default)]
        client_secret_file: Option<PathBuf>,
    },
    /// An app registration with a certificate (PKCS#12 file).
    ClientCertificate {
        /// Application (client) id.
        client_id: String,
        /// The PKCS#12 (`.pfx`) file.
        certificate_file: PathBuf,
        /// Environment variable holding the certificate's password, if it has one.
        #[serde(default)]
        password_env: Option<String>,
    },
    /// Workload identity federation (AKS, GitHub Actions): `AZURE_FEDERATED_TOKEN_FILE` etc.
    WorkloadIdentity {
        /// Application (client) id, if not in `AZURE_CLIENT_ID`.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The managed identity of the VM, App Service or container Cairn runs in.
    ManagedIdentity {
        /// Client id of a user-assigned identity; the system-assigned one otherwise.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// The account signed in to the Azure CLI (`az login`), for workstations.
    AzureCli,
}

fn read_secret(env: &Option<String>, file: &Option<PathBuf>) -> Result<String, String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map_err(|_| format!("environment variable {var} (the client secret) is not set"));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read the client secret from {}: {e}", path.display()));
    }
    Err("give client_secret_env or client_secret_file".into())
}

impl CredentialConfig {
    /// Builds the credential; `options` carry the transport (so an endpoint override also
    /// reaches the token endpoint).
    pub fn build(
        &self,
        tenant_id: &str,
        options: ClientOptions,
    ) -> Result<Arc<dyn TokenCredential>, String> {
        let fail = |e: azure_core::Error| format!("cannot set up the credential: {e}");
        Ok(match self {
            CredentialConfig::ClientSecret {
                client_id,
                client_secret_env,
                client_secret_file,
            } => {
                let secret = read_secret(client_secret_env, client_secret_file)?;
                ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    Secret::new(secret),
                    Some(ClientSecretCredentialOptions {
                        client_options: options,
                    }),
                )
                .map_err(fail)?
            }
            CredentialConfig::ClientCertificate {
                client_id,
                certificate_file,
                password_env,
            } => {
                let bytes = std::fs::read(certificate_file).map_err(|e| {
                    format!(
                        "cannot read the certificate {}: {e}",
                        certificate_file.display()
                    )
                })?;
                let password = match password_env {
                    Some(var) => {
                        Some(Secret::new(std::env::var(var).map_err(|_| {
                            format!("environment variable {var} is not set")
                        })?))
                    }
                    None => None,
                };
                ClientCertificateCredential::new(
                    tenant_id.to_string(),
                    client_id.clone(),
                    SecretBytes::new(bytes),
                    Some(ClientCertificateCredentialOptions {
                        client_options: options,
                        password,
                    }),
                )
                .map_err(fail)?
            }
            CredentialConfig::WorkloadIdentity { client_id } => {
                let mut o = WorkloadIdentityCredentialOptions::default();
                o.credential_options.client_options = options;
                o.client_id = client_id.clone();
                o.tenant_id = Some(tenant_id.to_string());
                WorkloadIdentityCredential::new(Some(o)).map_err(fail)?
            }
            CredentialConfig::ManagedIdentity { client_id } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: options,
                }))
                .map_err(fail)?
            }
            CredentialConfig::AzureCli => AzureCliCredential::new(None).map_err(fail)?,
        })
    }
}
