//! The pipeline's wiring: the event store and the adapters behind each port, plus the settings
//! every stage reads. One `Pipeline` is shared (cheaply cloned) by all consumers of a process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use restorable_domain::ids::TenantId;
use restorable_domain::instance::{Instance, SealedCredentials};
use restorable_domain::tenant_key::TenantKey;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::sandbox::{RestoreFailure, RestoreSandbox, Sandbox};
use crate::sealing::{KeySealer, SealedSecret};
use crate::store::{Store, StoreError};
use crate::vault::Vault;

/// Why the pipeline could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The event store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault directory.
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    /// The master key file.
    #[error("key sealing: {0}")]
    Sealing(#[from] crate::sealing::SealError),
    /// NATS JetStream.
    #[error("transport: {0}")]
    Nats(#[from] crate::nats::NatsError),
}

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
    pub alert_routes: crate::alert_routes::AlertRoutes,
    /// How long a cycle may stand on each rung before the watchdog fails it
    /// ([`crate::watchdog`]).
    pub deadlines: Deadlines,
    /// Deadlines and size caps of PBX calls and downloads (the PBX is not trusted).
    pub pbx: crate::pbx_client::PbxLimits,
    /// The verifier's budget per archive, and the weakest AES accepted by default.
    pub verify_limits: crate::archive::VerifyLimits,
    /// The resources of one restore sandbox.
    pub sandbox_limits: crate::sandbox::process::SandboxLimits,
    /// Where the restore sandboxes live and, as root, which user their servers run as.
    pub sandbox_placement: crate::sandbox::process::SandboxPlacement,
    /// Tenants whose policy accepts AES weaker than `verify_limits.minimum_encryption`.
    pub tenant_minimum_encryption: std::collections::HashMap<TenantId, crate::archive::AesStrength>,
}

/// A time limit that grows with the size of the backup: `base + per_gib × GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The limit of an empty backup.
    pub base: Duration,
    /// Added for every GiB (pro rata) of the backup.
    pub per_gib: Duration,
}

impl Deadline {
    /// A limit of `base` plus `per_gib` for every GiB.
    pub const fn new(base: Duration, per_gib: Duration) -> Self {
        Self { base, per_gib }
    }

    /// The limit for a backup of `bytes`.
    pub fn for_size(&self, bytes: u64) -> Duration {
        const GIB: f64 = (1u64 << 30) as f64;
        #[allow(clippy::cast_precision_loss)] // sizes far below 2^52 bytes
        let gib = bytes as f64 / GIB;
        let scaled =
            Duration::try_from_secs_f64(self.per_gib.as_secs_f64() * gib).unwrap_or(Duration::MAX);
        self.base.saturating_add(scaled)
    }
}

/// The time limit of each rung of the ladder, and of a finished cycle not yet closed. A cycle
/// that stands still longer is failed `stage_timeout` (retryable) by the watchdog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Started → Captured, scaled by the instance's last known backup size.
    pub capture: Deadline,
    /// Captured → Secured.
    pub secure: Deadline,
    /// Secured → Verified.
    pub verify: Deadline,
    /// Verified → Restore-Tested (only when a restore test is due).
    pub restore_test: Deadline,
    /// A cycle that ended (failed, or at its last rung) whose instance still holds it open.
    pub close: Duration,
    /// How often the watchdog looks.
    pub check_every: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        let minutes = |m: u64| Duration::from_secs(m * MINUTE);
        Self {
            capture: Deadline::new(minutes(30), minutes(10)),
            secure: Deadline::new(minutes(10), minutes(5)),
            verify: Deadline::new(minutes(10), minutes(5)),
            restore_test: Deadline::new(minutes(30), minutes(10)),
            close: minutes(5),
            check_every: Duration::from_secs(MINUTE),
        }
    }
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
            alert_routes: crate::alert_routes::AlertRoutes::default(),
            deadlines: Deadlines::default(),
            pbx: crate::pbx_client::PbxLimits::default(),
            verify_limits: crate::archive::VerifyLimits::default(),
            sandbox_limits: crate::sandbox::process::SandboxLimits::default(),
            sandbox_placement: crate::sandbox::process::SandboxPlacement::default(),
            tenant_minimum_encryption: std::collections::HashMap::new(),
        }
    }
}

/// The sandbox of a machine that cannot run restore tests (no PostgreSQL, no `nobody` user):
/// every restore test fails `sandbox_provision` with the reason, so the ladder says so.
pub(crate) struct Unavailable(pub(crate) String);

#[async_trait::async_trait]
impl RestoreSandbox for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }

    async fn sweep_leftovers(&self) -> usize {
        0
    }

    async fn provision(&self) -> Result<Box<dyn Sandbox>, RestoreFailure> {
        Err(RestoreFailure::Provision(self.0.clone()))
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
    pub nats: Option<crate::nats::Nats>,
}

impl Pipeline {
    /// The embedded default: everything under `data_dir` (`events.db`, `vault/`, `master.key`);
    /// restore sandboxes under [`sandbox_root`] of it.
    ///
    /// # Errors
    /// When a part cannot be opened; the error names it.
    pub async fn embedded(data_dir: &Path, settings: Settings) -> Result<Self, SetupError> {
        let backends = crate::config::Backends {
            data_dir: data_dir.to_owned(),
            ..Default::default()
        };
        Self::open(&backends, settings).await
    }

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
