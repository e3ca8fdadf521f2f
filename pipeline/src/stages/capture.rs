//! The capture stage: `CycleStarted` → `Captured`. Unseals the tenant's current key and the
//! PBX credentials, asks the PBX for an encrypted backup named after the cycle, polls with a
//! deadline until it is listed, takes the manifest counts, and streams the download into the
//! vault under Object Lock (the vault computes SHA-256 on the way; nothing is held in memory).
//!
//! Re-running after a crash is safe: the PBX answers `DUPLICATE` for a name it already has, and
//! a copy already in the vault is taken as it is (write-once: it is never stored twice).

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycleCommand, Captured, CycleStarted};
use restorable_domain::instance::Instance;
use restorable_domain::ladder::{FailureReason, LockMode, Stage};
use restorable_domain::tenant_key::TenantKey;
use tokio::io::{AsyncRead, ReadBuf};

use super::{is_cycle_event, record, StageFailure};
use crate::context::Pipeline;
use crate::pbx_client::{BackupEntry, BackupRequest, PbxClient, PbxError};
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;
use crate::vault::{self, ObjectLock, VaultError};

/// See the module documentation.
pub struct CaptureStage {
    pipeline: Pipeline,
}

impl CaptureStage {
    /// A capture stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Consumer for CaptureStage {
    fn name(&self) -> &'static str {
        "capture"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["CycleStarted"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        is_cycle_event(event, "CycleStarted")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let cycle = super::load_cycle(&self.pipeline, &event).await?;
        let (Some(started), None) = (&cycle.started, &cycle.captured) else {
            return Ok(()); // already captured: a repeated delivery
        };
        if cycle.is_failed() {
            return Ok(());
        }
        let outcome = capture(&self.pipeline, started)
            .await
            .map(BackupCycleCommand::RecordCaptured);
        record(&self.pipeline, &event.aggregate_id, Stage::Capture, outcome).await
    }
}

fn pbx_failure(error: PbxError) -> StageFailure {
    let reason = match &error {
        PbxError::Unauthorized { .. } => FailureReason::PbxAuth,
        PbxError::Unreachable { .. } => FailureReason::PbxUnreachable,
        PbxError::BrokenOff { .. } => FailureReason::DownloadTruncated,
        PbxError::Status { .. } | PbxError::Protocol { .. } => FailureReason::PbxError,
    };
    StageFailure {
        reason,
        retryable: error.retryable(),
        detail: error.to_string(),
    }
}

/// The object key of a cycle's copy in the vault.
pub fn object_key(started: &CycleStarted) -> String {
    format!(
        "{}/{}/{}.zip",
        started.tenant_id, started.instance_id, started.cycle_id
    )
}

async fn capture(pipeline: &Pipeline, started: &CycleStarted) -> Result<Captured, StageFailure> {
    let internal = |e: StoreError| StageFailure::transient(FailureReason::Internal, e.to_string());
    let instance: Instance = pipeline
        .store
        .load(&started.instance_id.to_string())
        .await
        .map_err(internal)?;
    let enrolled = instance
        .enrolled
        .as_ref()
        .ok_or_else(|| StageFailure::permanent(FailureReason::Internal, "instance not enrolled"))?;
    let key: TenantKey = pipeline
        .store
        .load(started.tenant_id.as_str())
        .await
        .map_err(internal)?;
    let (key_version, _) = key.current().ok_or_else(|| {
        StageFailure::permanent(
            FailureReason::KeyUnavailable,
            "the tenant has no key issued",
        )
    })?;
    let password = pipeline
        .tenant_password(&started.tenant_id, key_version)
        .await
        .map_err(|e| StageFailure::permanent(FailureReason::KeyUnavailable, e))?;
    let credentials = pipeline
        .pbx_credentials(&instance)
        .await
        .map_err(|e| StageFailure::permanent(FailureReason::KeyUnavailable, e))?;

    let pbx = PbxClient::connect(
        &enrolled.api_url,
        &credentials.client_id,
        &credentials.client_secret,
    )
    .await
    .map_err(pbx_failure)?;
    drop(credentials);
    let file_name = format!("restorable-{}.zip", started.cycle_id);
    let deadline = tokio::time::Instant::now() + pipeline.settings.capture_deadline;

    let entry = loop {
        if let Some(entry) = listed(&pbx, &file_name).await? {
            break entry;
        }
        match pbx
            .request_backup(&file_name, &password)
            .await
            .map_err(pbx_failure)?
        {
            BackupRequest::Started | BackupRequest::AlreadyExists => {
                break wait_until_listed(&pbx, &file_name, deadline, pipeline).await?;
            }
            BackupRequest::Busy => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(timeout(pipeline, "the PBX stayed busy with another backup"));
                }
                tokio::time::sleep(pipeline.settings.poll_interval).await;
            }
        }
    };
    drop(password);
    let manifest = pbx.manifest_counts().await.map_err(pbx_failure)?;

    let key_in_vault = object_key(started);
    let stored = match pipeline.vault.head(&key_in_vault).await {
        Ok(Some(existing)) => existing,
        Ok(None) => {
            download_into_vault(pipeline, &pbx, &entry, &key_in_vault, &started.tenant_id).await?
        }
        Err(error) => {
            return Err(StageFailure::transient(
                FailureReason::VaultWrite,
                error.to_string(),
            ))
        }
    };
    if pipeline.settings.delete_from_pbx {
        if let Err(error) = pbx.delete_backup(&file_name).await {
            tracing::warn!(%error, file = %file_name, "could not delete the backup from the PBX's disk");
        }
    }
    let lock = stored.lock.as_ref();
    Ok(Captured {
        key_version,
        pbx_file_name: file_name,
        object_key: stored.key.clone(),
        version_id: stored.version_id.clone(),
        size: stored.size,
        sha256: stored.sha256.clone(),
        lock_mode: lock.map_or(LockMode::Governance, |l| domain_lock_mode(&l.mode)),
        retain_until: lock.map_or(stored.stored_at, |l| l.retain_until),
        manifest,
        captured_at: Utc::now(),
    })
}

/// Maps the vault's lock mode to the domain's.
pub fn domain_lock_mode(mode: &vault::LockMode) -> LockMode {
    match mode {
        vault::LockMode::Compliance => LockMode::Compliance,
        vault::LockMode::Governance => LockMode::Governance,
    }
}

fn timeout(pipeline: &Pipeline, what: &str) -> StageFailure {
    StageFailure::transient(
        FailureReason::CaptureTimeout,
        format!("{what} within {:?}", pipeline.settings.capture_deadline),
    )
}

async fn listed(pbx: &PbxClient, file_name: &str) -> Result<Option<BackupEntry>, StageFailure> {
    let backups = pbx.list_backups().await.map_err(pbx_failure)?;
    Ok(backups.into_iter().find(|b| b.file_name == file_name))
}

async fn wait_until_listed(
    pbx: &PbxClient,
    file_name: &str,
    deadline: tokio::time::Instant,
    pipeline: &Pipeline,
) -> Result<BackupEntry, StageFailure> {
    loop {
        if let Some(entry) = listed(pbx, file_name).await? {
            return Ok(entry);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout(pipeline, "the PBX did not list the backup"));
        }
        tokio::time::sleep(pipeline.settings.poll_interval).await;
    }
}

/// The first whole second at or after `at`: S3 keeps retain-until dates to the second, so a
/// lock asked for with sub-second precision would read back as "shorter than asked".
fn whole_second_after(at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let seconds = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    chrono::DateTime::from_timestamp(seconds, 0).unwrap_or(at)
}

async fn download_into_vault(
    pipeline: &Pipeline,
    pbx: &PbxClient,
    entry: &BackupEntry,
    key: &str,
    tenant: &restorable_domain::ids::TenantId,
) -> Result<vault::StoredObject, StageFailure> {
    let download = pbx
        .download(&entry.download_link)
        .await
        .map_err(|e| match e {
            PbxError::Protocol { detail, .. } | PbxError::BrokenOff { detail, .. } => {
                StageFailure::transient(
                    FailureReason::DownloadTruncated,
                    format!("download of {}: {detail}", entry.file_name),
                )
            }
            other => pbx_failure(other),
        })?;
    let expected = download.content_length;
    let mut body = ExactLength::new(download.body, expected);
    let lock = ObjectLock {
        mode: vault::LockMode::Compliance,
        retain_until: whole_second_after(Utc::now() + pipeline.settings.retention_for(tenant)),
    };
    pipeline
        .vault
        .put(key, &mut body, Some(lock))
        .await
        .map_err(|error| match error {
            VaultError::Source(e) => StageFailure::transient(
                FailureReason::DownloadTruncated,
                format!(
                    "download of {} broke after {} of {expected} bytes: {e}",
                    entry.file_name, body.seen
                ),
            ),
            other => StageFailure::transient(FailureReason::VaultWrite, other.to_string()),
        })
}

/// Passes a body through, failing with `UnexpectedEof` if it ends before `expected` bytes and
/// with `InvalidData` if it runs past them, so a short download never becomes a stored object.
struct ExactLength<R> {
    inner: R,
    expected: u64,
    seen: u64,
}

impl<R> ExactLength<R> {
    fn new(inner: R, expected: u64) -> Self {
        Self {
            inner,
            expected,
            seen: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactLength<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = (buf.filled().len() - before) as u64;
                self.seen += read;
                if read == 0 && self.seen < self.expected {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("body ended at {} of {} bytes", self.seen, self.expected),
                    )));
                }
                if self.seen > self.expected {
                    buf.set_filled(before);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("body longer than its Content-Length of {}", self.expected),
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_short_body_is_an_error_not_a_short_object() {
        let mut reader = ExactLength::new(&b"12345"[..], 10);
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).await.expect_err("short");
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_long_body_is_an_error() {
        let mut reader = ExactLength::new(&b"12345"[..], 3);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).await.is_err());
    }

    #[tokio::test]
    async fn an_exact_body_passes() {
        let mut reader = ExactLength::new(&b"12345"[..], 5);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("exact");
        assert_eq!(out, b"12345");
    }
}
