//! What every command shares, and nothing else: opening the pipeline on the configured
//! backends, stopping on a signal, the web UI in this process, and the small input rules
//! (instances by name, secret files, who the operator is, the audit of account changes).
//!
//! A leaf: it imports `cli` and `settings` only, never a command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use restorable_api::auth::Scope;
use restorable_api::AppState;
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_pipeline::alerting::RetryPolicy;
use restorable_pipeline::digest::DigestPlan;
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::store::Store;
use secrecy::SecretString;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::settings;
use crate::settings::Config;

/// Opens the pipeline on the configured backends (the embedded default when none are set).
///
/// # Errors
/// A message naming the setting or backend that is wrong or unreachable.
pub async fn open(data: &Config, settings: Settings) -> Result<Pipeline> {
    let (backends, settings) = settings::resolve(data, settings)?;
    Pipeline::open(&backends, settings)
        .await
        .context("opening the pipeline (run `restorable doctor` to check each backend)")
}

/// Opens the pipeline like [`open`], but waits (retrying with back-off, logging what it waits
/// for) while PostgreSQL, NATS, S3 or KMS is not reachable yet; for the long-running `serve`
/// and `worker`. `None`: `shutdown` was cancelled (SIGTERM, Ctrl-C) while waiting.
///
/// # Errors
/// A message naming the setting or backend that can never be used as configured.
pub async fn open_waiting(
    data: &Config,
    settings: Settings,
    shutdown: &CancellationToken,
) -> Result<Option<Pipeline>> {
    let (backends, settings) = settings::resolve(data, settings)?;
    let pipeline = Pipeline::open_waiting(&backends, settings, shutdown)
        .await
        .context("opening the pipeline (run `restorable doctor` to check each backend)")?;
    if pipeline.is_none() {
        tracing::info!("stopped while waiting for the backends");
    }
    Ok(pipeline)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = terminate => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping"),
        }
        shutdown.cancel();
    });
}

/// How often the web UI's projector looks for stale instances and reminders due.
const STALE_SWEEP: Duration = Duration::from_secs(60);

/// Starts the web UI and API in this process: loads the stored views, follows the log with the
/// projector (which also sweeps for stale instances and reminders), sends the daily digests
/// ([`restorable_pipeline::digest`]) and serves HTTP on `listen`; returns the
/// bound address. Both stop when `shutdown` is cancelled (joined through `tasks`).
///
/// # Errors
/// The stored views cannot be loaded or the address cannot be bound.
pub async fn start_web(
    pipeline: &Pipeline,
    data: &Config,
    listen: SocketAddr,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let read = ReadSide::load(&pipeline.store).await?;
    read.catch_up(&pipeline.store, None).await?;
    tasks.spawn(read.clone().run_reminding(
        pipeline.store.clone(),
        STALE_SWEEP,
        pipeline.settings.alert_routes.reminders(),
        shutdown.clone(),
    ));
    tasks.spawn(restorable_pipeline::digest::run(
        read.clone(),
        pipeline.store.clone(),
        DigestPlan::of(&pipeline.settings.alert_routes),
        RetryPolicy::default(),
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    let options = restorable_api::ServerOptions::from_env();
    let mut state = AppState::with_options(pipeline.clone(), read, options);
    match signer(data).await {
        Ok(signer) => state = state.with_signer(signer),
        Err(error) => tracing::error!(
            error = format!("{error:#}"),
            "restore certificates cannot be signed: the signing key is unusable"
        ),
    }
    let state = Arc::new(state);
    tasks.spawn(async move {
        if let Err(error) = restorable_api::serve(listener, state, shutdown).await {
            tracing::error!(%error, "the web server stopped");
        }
    });
    Ok(address)
}

/// An instance given as a UUID or as `TENANT/NAME`.
///
/// # Errors
/// Neither form.
pub fn instance_id(given: &str) -> Result<InstanceId> {
    if let Some((tenant, name)) = given.split_once('/') {
        return Ok(InstanceId::for_name(&TenantId::new(tenant)?, name));
    }
    given
        .parse()
        .with_context(|| format!("{given:?} is neither an instance id nor TENANT/NAME"))
}

/// The secret in the file at `path` (the `what` file), without its trailing newline.
///
/// # Errors
/// The file cannot be read, or holds nothing.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> Result<SecretString> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} file {}", path.display()))?,
    );
    let trimmed = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !trimmed.is_empty(),
        "the {what} file {} is empty",
        path.display()
    );
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Who runs the command, as the audit trail shows it: `<login> (cli)`.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    format!("{user} (cli)")
}

/// Records an account change `action` on `on` in the trail of `scope`'s tenant, or of every
/// tenant with enrolled instances for `*`; the actor reads `<login> (cli), on <on>`.
///
/// # Errors
/// A store failure.
pub async fn audit_account(
    store: &Store,
    scope: &str,
    action: AuditAction,
    on: &str,
) -> Result<()> {
    let tenants: Vec<TenantId> = match Scope::parse(scope) {
        Ok(Scope::Tenant(tenant)) => vec![tenant],
        Ok(Scope::All) | Err(_) => {
            let mut tenants: Vec<TenantId> = store
                .view_rows("fleet", None)
                .await?
                .iter()
                .filter_map(|row| TenantId::new(&row.tenant_id).ok())
                .collect();
            tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            tenants.dedup();
            tenants
        }
    };
    for tenant in tenants {
        let record = ActionRecorded {
            tenant_id: tenant.clone(),
            actor: format!("{}, on {on}", operator()),
            action,
            instance_id: None,
            cycle_id: None,
            key_version: None,
            at: Utc::now(),
        };
        store
            .audit(tenant.as_str(), record)
            .await
            .with_context(|| format!("recording {} in the audit trail", action.as_str()))?;
    }
    Ok(())
}

/// The signer of checkpoints and restore certificates: the KMS key `--signing-key-id` names,
/// else the data directory's Ed25519 key (created on first use).
///
/// # Errors
/// An unusable key (a KMS key that is not a P-256 signing key or cannot be reached; a key file
/// unreadable, not a key, or readable by others).
pub async fn signer(data: &Config) -> Result<Arc<dyn restorable_pipeline::evidence::Signer>> {
    if let Some(kms) = settings::signing_kms(data)? {
        let key = kms.key_id.clone();
        let signer = restorable_pipeline::evidence::KmsSigner::connect(kms)
            .await
            .with_context(|| format!("the signing key {key} in KMS"))?;
        return Ok(Arc::new(signer));
    }
    let path = data
        .data_dir
        .join(restorable_pipeline::evidence::SIGNING_KEY_FILE);
    let signer = restorable_pipeline::evidence::LocalSigner::open_or_create(&path)
        .with_context(|| format!("the signing key {}", path.display()))?;
    Ok(Arc::new(signer))
}

/// Starts the evidence's schedule (an hourly checkpoint, a daily check) for `serve` and the
/// scheduling worker; with an unusable signing key it logs why and runs without (the rest of
/// the service is not held hostage by it; `restorable doctor` and `audit checkpoint` name it).
pub async fn spawn_evidence(
    pipeline: &Pipeline,
    data: &Config,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match signer(data).await {
        Ok(signer) => Some(tokio::spawn(restorable_pipeline::evidence::watch(
            pipeline.clone(),
            signer,
            shutdown.clone(),
        ))),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "no checkpoints: the signing key is unusable"
            );
            None
        }
    }
}
