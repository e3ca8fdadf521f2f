//! The secure stage: `Captured` → `Secured`. Reads the exact stored version back, byte for byte,
//! hashing as it reads (large buffers, each byte hashed once), compares with the SHA-256 taken
//! at capture, and checks the version is under a compliance-mode Object Lock at least until the
//! retain-until asked for at capture. A vault that is briefly unavailable is tried again a few
//! times (the read back starts over from the first byte); if it stays away the cycle fails with
//! the retryable `vault_unavailable`.

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycleCommand, Captured, Secured};
use restorable_domain::ladder::{FailureReason, LockMode, Stage};
use sha2::{Digest, Sha256};

use crate::progress::Work;
use tokio::io::AsyncReadExt;

use super::capture::{domain_lock_mode, retry_transient, vault_failure};
use super::{is_cycle_event, record, StageFailure};
use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;
use crate::vault::VaultError;

/// Read-back buffer: large reads keep hashing near the machine's limit.
const READ_BUFFER: usize = 4 << 20;

/// See the module documentation.
pub struct SecureStage {
    pipeline: Pipeline,
}

impl SecureStage {
    /// A secure stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Consumer for SecureStage {
    fn name(&self) -> &'static str {
        "secure"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["Captured"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        is_cycle_event(event, "Captured")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let cycle = super::load_cycle(&self.pipeline, &event).await?;
        let Some(captured) = &cycle.captured else {
            return Ok(());
        };
        if cycle.is_failed() || cycle.rung > Some(restorable_domain::ladder::Rung::Captured) {
            return Ok(());
        }
        let outcome = prove_copy(&self.pipeline, &event.aggregate_id, captured)
            .await
            .map(BackupCycleCommand::RecordSecured);
        record(&self.pipeline, &event.aggregate_id, Stage::Secure, outcome).await
    }
}

/// Reads a stored copy back and returns its SHA-256 (lowercase hex) and length.
///
/// # Errors
/// The vault's error.
pub async fn read_back(
    pipeline: &Pipeline,
    key: &str,
    version_id: &str,
) -> Result<(String, u64), VaultError> {
    read_back_reporting(pipeline, key, version_id, |_| {}).await
}

/// [`read_back`], telling `read` the bytes read so far after each buffer.
async fn read_back_reporting(
    pipeline: &Pipeline,
    key: &str,
    version_id: &str,
    read: impl Fn(u64),
) -> Result<(String, u64), VaultError> {
    let mut reader = pipeline.vault.open(key, version_id).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer).await.map_err(VaultError::Io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buffer[..n]);
        read(total);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Proves the stored copy `captured` names: reads that exact version back (reporting progress
/// under `cycle`), compares size and SHA-256 with the capture's, and checks it is under a
/// compliance-mode Object Lock at least until the retain-until asked for at capture. The
/// Secured rung, and every rotating re-check ([`crate::recheck`]), is this.
///
/// # Errors
/// The [`StageFailure`] that says what is wrong (a vault still unavailable after the tries is
/// the retryable `vault_unavailable`).
pub async fn prove_copy(
    pipeline: &Pipeline,
    cycle: &str,
    captured: &Captured,
) -> Result<Secured, StageFailure> {
    let progress = &pipeline.settings.progress;
    progress.begin(cycle, Work::ReadBack, Some(captured.size));
    let read_back = retry_transient("vault read back", VaultError::is_transient, || {
        read_back_reporting(pipeline, &captured.object_key, &captured.version_id, |n| {
            progress.position(cycle, n);
        })
    })
    .await;
    progress.end(cycle);
    let (sha256, size) = read_back
        .map_err(|e| vault_failure("reading the copy back", e, FailureReason::Internal))?;
    if sha256 != captured.sha256 || size != captured.size {
        return Err(StageFailure::permanent(
            FailureReason::ChecksumMismatch,
            format!(
                "read back {size} bytes with SHA-256 {sha256}; captured {} bytes with {}",
                captured.size, captured.sha256
            ),
        ));
    }
    let head = retry_transient("vault head", VaultError::is_transient, || {
        pipeline.vault.head(&captured.object_key)
    })
    .await
    .map_err(|e| vault_failure("reading the copy's lock", e, FailureReason::Internal))?
    .filter(|h| h.version_id == captured.version_id)
    .ok_or_else(|| {
        StageFailure::permanent(FailureReason::ObjectMissing, "the captured version is gone")
    })?;
    let Some(lock) = head.lock else {
        return Err(StageFailure::permanent(
            FailureReason::NotLocked,
            "the stored copy has no Object Lock",
        ));
    };
    let mode = domain_lock_mode(&lock.mode);
    if mode != LockMode::Compliance {
        return Err(StageFailure::permanent(
            FailureReason::NotLocked,
            format!("the stored copy is locked in {mode:?} mode, not compliance"),
        ));
    }
    if lock.retain_until < captured.retain_until {
        return Err(StageFailure::permanent(
            FailureReason::NotLocked,
            format!(
                "the stored copy is locked until {}, short of {}",
                lock.retain_until, captured.retain_until
            ),
        ));
    }
    Ok(Secured {
        sha256,
        lock_mode: mode,
        retain_until: lock.retain_until,
        secured_at: Utc::now(),
    })
}
