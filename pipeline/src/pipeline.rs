//! The pipeline's wiring: the event store and the adapters behind each port, plus the settings
//! every stage reads. One `Pipeline` is shared (cheaply cloned) by all consumers of a process.

use std::sync::Arc;
use std::time::Duration;

use restorable_domain::ids::TenantId;
use restorable_domain::instance::{Instance, SealedCredentials};
use restorable_domain::tenant_key::TenantKey;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::deadlines::Deadlines;
use crate::sandbox::RestoreSandbox;
use crate::sealing::{KeySealer, SealedSecret};
use crate::store::Store;
use crate::vault::Vault;

/// Tunables of the stages.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long capture waits for the PBX to list the backup it asked for.
    pub capture_deadline: Duration,
    /// How often capture asks the PBX whether the backup is there.
    pub poll_interval: Duration,
    /// Object Lock retention of every stored copy, unless its tenant has its own.
    pub retention: chrono::Duration,
    /// Retention of the tenants that keep copies longer or shorter than `retention`.
    pub tenant_retention: std::collections::HashMap<TenantId, chrono::Duration>,
    /// Remove the backup from the PBX's own disk once it is in the vault.
    pub delete_from_pbx: bool,
    /// Hard time limit of one restore test (provision to destroy).
    pub restore_time_limit: Duration,
    /// Where each tenant's alerts are delivered (none by default).
    pub alert_routes: crate::alerting::routes::AlertRoutes,
    /// How long a cycle may stand on each rung before the watchdog fails it
    /// ([`crate::watchdog`]).
    pub deadlines: Deadlines,
    /// Deadlines and size caps of PBX calls and downloads (the PBX is not trusted).
    pub pbx: crate::pbx::PbxLimits,
    /// The verifier's budget per archive, and the weakest AES accepted by default.
    pub verify_limits: crate::archive::VerifyLimits,
    /// The resources of one restore sandbox.
    pub sandbox_limits: crate::sandbox::process::SandboxLimits,
    /// Where the restore sandboxes live and, as root, which user their servers run as.
    pub sandbox_placement: crate::sandbox::process::SandboxPlacement,
    /// Tenants whose policy accepts AES weaker than `verify_limits.minimum_encryption`.
    pub tenant_minimum_encryption: std::collections::HashMap<TenantId, crate::archive::AesStrength>,
    /// Where the stages report the progress of long work (nowhere by default).
    pub progress: crate::progress::ProgressHook,
    /// When the history's checkpoints are written and the history checked.
    pub evidence: crate::evidence::EvidenceSchedule,
    /// Every stored copy is read back and its lock checked again at least once per this window
    /// (default 7 days; `crate::recheck`).
    pub recheck_window: chrono::Duration,
    /// What retention keeps past the lock, and when a removed instance's copies go
    /// ([`crate::retention`]).
    pub retention_policy: crate::retention::policy::RetentionPolicy,
}

impl Settings {
    /// The Object Lock retention of `tenant`'s copies.
    pub fn retention_for(&self, tenant: &TenantId) -> chrono::Duration {
        self.tenant_retention
            .get(tenant)
            .copied()
            .unwrap_or(self.retention)
    }

    /// The verifier's limits for `tenant`'s archives (its policy's minimum encryption).
    pub fn verify_limits_for(&self, tenant: &TenantId) -> crate::archive::VerifyLimits {
        let mut limits = self.verify_limits;
        if let Some(minimum) = self.tenant_minimum_encryption.get(tenant) {
            limits.minimum_encryption = *minimum;
        }
        limits
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            capture_deadline: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(5),
            retention: chrono::Duration::days(30),
            tenant_retention: std::collections::HashMap::new(),
            delete_from_pbx: true,
            restore_time_limit: Duration::from_secs(10 * 60),
            alert_routes: crate::alerting::routes::AlertRoutes::default(),
            deadlines: Deadlines::default(),
            pbx: crate::pbx::PbxLimits::default(),
            verify_limits: crate::archive::VerifyLimits::default(),
            sandbox_limits: crate::sandbox::process::SandboxLimits::default(),
            sandbox_placement: crate::sandbox::process::SandboxPlacement::default(),
            tenant_minimum_encryption: std::collections::HashMap::new(),
            progress: crate::progress::ProgressHook::default(),
            evidence: crate::evidence::EvidenceSchedule::default(),
            recheck_window: chrono::Duration::days(7),
            retention_policy: crate::retention::policy::RetentionPolicy::default(),
        }
    }
}

/// The PBX API credentials as sealed together (serialized only inside a sealed blob).
#[derive(Deserialize)]
pub struct PbxCredentials {
    /// OAuth client id.
    pub client_id: SecretString,
    /// OAuth client secret.
    pub client_secret: SecretString,
}

/// Everything a stage needs.
#[derive(Clone)]
pub struct Pipeline {
    /// The event store.
    pub store: Store,
    /// Where copies are kept.
    pub vault: Arc<dyn Vault>,
    /// Seals tenant passwords and PBX credentials.
    pub sealer: Arc<dyn KeySealer>,
    /// Where restore tests run.
    pub sandbox: Arc<dyn RestoreSandbox>,
    /// Stage tunables.
    pub settings: Settings,
    /// The NATS JetStream transport; `None`: stages are fed in-process from the store.
    pub nats: Option<crate::transport::nats::Nats>,
}

impl Pipeline {
    /// The sealing context of a tenant's backup password (like a KMS encryption context).
    pub fn password_context(tenant: &TenantId) -> String {
        format!("tenant-password/{tenant}")
    }

    /// The sealing context of an instance's PBX credentials.
    pub fn credentials_context(tenant: &TenantId, instance: &str) -> String {
        format!("pbx-credentials/{tenant}/{instance}")
    }

    /// Unseals the backup password of `tenant` at `version`.
    ///
    /// # Errors
    /// A message naming what is missing or failed (never the secret).
    pub async fn tenant_password(
        &self,
        tenant: &TenantId,
        version: u32,
    ) -> Result<SecretString, String> {
        let key: TenantKey = self
            .store
            .load(tenant.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let sealed = key
            .version(version)
            .ok_or_else(|| format!("tenant {tenant} has no key version {version}"))?;
        self.sealer
            .unseal(
                &Self::password_context(tenant),
                &SealedSecret::from_string(sealed.0.clone()),
            )
            .await
            .map_err(|e| format!("tenant {tenant} key version {version}: {e}"))
    }

    /// Unseals an instance's PBX credentials.
    ///
    /// # Errors
    /// A message naming what failed (never the secret).
    pub async fn pbx_credentials(&self, instance: &Instance) -> Result<PbxCredentials, String> {
        let enrolled = instance
            .enrolled
            .as_ref()
            .ok_or("the instance is not enrolled")?;
        let context =
            Self::credentials_context(&enrolled.tenant_id, &enrolled.instance_id.to_string());
        let plain = self
            .sealer
            .unseal(
                &context,
                &SealedSecret::from_string(enrolled.credentials.0.clone()),
            )
            .await
            .map_err(|e| format!("PBX credentials: {e}"))?;
        serde_json::from_str(plain.expose_secret())
            .map_err(|_| "PBX credentials: unsealed, but not in the expected form".to_owned())
    }

    /// Seals PBX credentials for an instance.
    ///
    /// # Errors
    /// The sealer's error.
    pub async fn seal_credentials(
        &self,
        tenant: &TenantId,
        instance: &str,
        credentials: &PbxCredentials,
    ) -> Result<SealedCredentials, crate::sealing::SealError> {
        let json = zeroize::Zeroizing::new(
            serde_json::json!({
                "client_id": credentials.client_id.expose_secret(),
                "client_secret": credentials.client_secret.expose_secret(),
            })
            .to_string(),
        );
        let sealed = self
            .sealer
            .seal(
                &Self::credentials_context(tenant, instance),
                &SecretString::from(json.as_str()),
            )
            .await?;
        Ok(SealedCredentials(sealed.as_str().to_owned()))
    }
}
