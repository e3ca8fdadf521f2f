//! Which backend sits behind each port. Nothing configured is the embedded default (SQLite,
//! in-process transport, local vault, local key sealing, all under the data directory); each
//! production backend is switched on by its own setting, checked when the pipeline is opened, so
//! a missing or wrong one stops start-up with a message naming it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{Pipeline, Settings, SetupError};
use crate::kms_sealer::{KmsConfig, KmsKeySealer};
use crate::nats::{Nats, NatsConfig};
use crate::s3_vault::{S3Config, S3Vault};
use crate::sandbox::process::{sandbox_root, ProcessSandboxes};
use crate::sandbox::RestoreSandbox;
use crate::sealing::{KeySealer, LocalKeySealer};
use crate::store::Store;
use crate::vault::{LocalVault, Vault};

/// The backends of one process.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// Local state of the embedded adapters (`events.db`, `vault/`, `master.key`).
    pub data_dir: PathBuf,
    /// `postgres://...` or a SQLite file; `None`: `events.db` in the data directory.
    pub database_url: Option<String>,
    /// NATS JetStream; `None`: the in-process transport.
    pub nats: Option<NatsConfig>,
    /// S3 with Object Lock; `None`: the local vault under the data directory.
    pub s3: Option<S3Config>,
    /// AWS KMS; `None`: local sealing with the data directory's master key.
    pub kms: Option<KmsConfig>,
}

/// What each port runs on, for `restorable doctor` and start-up logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendReport {
    /// `event store`, `transport`, `vault`, `key sealing`, `restore sandbox`.
    pub port: &'static str,
    /// What it is and whether it is usable.
    pub detail: String,
    /// Usable.
    pub ok: bool,
}

impl Pipeline {
    /// Opens every backend `backends` names (the embedded default for the rest).
    ///
    /// # Errors
    /// [`SetupError`] naming the backend that cannot be used and why.
    pub async fn open(backends: &Backends, settings: Settings) -> Result<Self, SetupError> {
        let store = match &backends.database_url {
            Some(location) => Store::connect(location).await?,
            None => Store::open(&backends.data_dir).await?,
        };
        let vault: Arc<dyn Vault> = match &backends.s3 {
            Some(config) => {
                let vault = S3Vault::new(config.clone())?;
                vault.check().await?;
                Arc::new(vault)
            }
            None => Arc::new(LocalVault::open(backends.data_dir.join("vault"))?),
        };
        let sealer: Arc<dyn KeySealer> = match &backends.kms {
            Some(config) => {
                let sealer = KmsKeySealer::new(config.clone())?;
                sealer.check().await?;
                Arc::new(sealer)
            }
            None => Arc::new(LocalKeySealer::open_or_create(
                &backends.data_dir.join("master.key"),
            )?),
        };
        let nats = match &backends.nats {
            Some(config) => Some(Nats::connect(config).await?),
            None => None,
        };
        let sandbox: Arc<dyn RestoreSandbox> =
            match ProcessSandboxes::discover(sandbox_root(&backends.data_dir)) {
                Ok(sandboxes) => Arc::new(sandboxes),
                Err(failure) => Arc::new(crate::context::Unavailable(failure.to_string())),
            };
        Ok(Self {
            store,
            vault,
            sealer,
            sandbox,
            settings,
            nats,
        })
    }
}

fn line(port: &'static str, outcome: Result<String, String>) -> BackendReport {
    match outcome {
        Ok(detail) => BackendReport {
            port,
            detail,
            ok: true,
        },
        Err(detail) => BackendReport {
            port,
            detail,
            ok: false,
        },
    }
}

/// Checks each backend on its own (one failing does not hide the others), for
/// `restorable doctor`.
pub async fn diagnose(backends: &Backends) -> Vec<BackendReport> {
    let store = match &backends.database_url {
        Some(location) => Store::connect(location).await,
        None => Store::open(&backends.data_dir).await,
    };
    let mut report = vec![line(
        "event store",
        match store {
            Ok(store) => {
                let outcome = store
                    .read_after(0, 1)
                    .await
                    .map(|_| format!("{} (migrated, readable)", store.backend_name()))
                    .map_err(|e| e.to_string());
                store.close().await;
                outcome
            }
            Err(error) => Err(error.to_string()),
        },
    )];
    report.push(line(
        "transport",
        match &backends.nats {
            None => Ok("in-process (embedded default)".to_owned()),
            Some(config) => match Nats::connect(config).await {
                Ok(nats) => nats.describe().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            },
        },
    ));
    let vault = match &backends.s3 {
        Some(config) => match S3Vault::new(config.clone()) {
            Ok(vault) => vault.check().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        },
        None => LocalVault::open(backends.data_dir.join("vault"))
            .map(|_| {
                format!(
                    "local directory {}",
                    backends.data_dir.join("vault").display()
                )
            })
            .map_err(|e| e.to_string()),
    };
    report.push(line("vault", vault));
    let sealing = match &backends.kms {
        Some(config) => match KmsKeySealer::new(config.clone()) {
            Ok(sealer) => sealer.check().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        },
        None => LocalKeySealer::open_or_create(&backends.data_dir.join("master.key"))
            .map(|_| {
                format!(
                    "local master key {}",
                    backends.data_dir.join("master.key").display()
                )
            })
            .map_err(|e| e.to_string()),
    };
    report.push(line("key sealing", sealing));
    report.push(line(
        "restore sandbox",
        ProcessSandboxes::discover(sandbox_root(&backends.data_dir))
            .map(|s| s.kind().to_owned())
            .map_err(|e| e.to_string()),
    ));
    report
}
