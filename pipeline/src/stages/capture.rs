//! The capture stage: `CycleStarted` → `Captured`. Unseals the tenant's current key and the
//! PBX credentials, asks the PBX for an encrypted backup named after the cycle, polls with a
//! deadline until it is listed, takes the manifest counts, and streams the download into the
//! vault under Object Lock (the vault computes SHA-256 on the way; nothing is held in memory).
//!
//! The PBX is not trusted ([`crate::pbx`]): its URL must be `https` (or loopback, or
//! explicitly allowed plain `http`), the download must stay on its enrolled origin, a backup the
//! PBX reports as not encrypted (`GetBackupExtras`) is refused before it is fetched, and a
//! backup larger than the tenant's maximum is refused by its listed size and `Content-Length`
//! before anything is stored, and again while it streams. The download has an overall deadline
//! that the body's reader enforces, so a trickle fails the cycle (`pbx_deadline`). A refusal
//! mid-stream fails the upload from its source, which discards the partial object (a local
//! temporary file, or an aborted multipart upload): nothing refused is ever stored, so nothing
//! refused is locked.
//!
//! Beside the copy, the capture reads the PBX's own backup schedule and its newest native
//! backup into `Captured::native_backups` (the native backup watch; the alerts stage judges
//! it). A PBX that will not tell leaves it `None`: that never fails the copy.
//!
//! Re-running after a crash is safe: the PBX answers `DUPLICATE` for a name it already has, and
//! a copy already in the vault is taken as it is (write-once: it is never stored twice).
//!
//! Key service (KMS) and vault (S3) calls that fail *transiently* (throttling, 5xx, timeouts,
//! no connection: [`SealError::is_transient`], [`VaultError::is_transient`]) are tried again a
//! few times within the stage ([`crate::retry::within_stage`]); if they keep failing the cycle
//! fails with the retryable `key_service_unavailable` / `vault_unavailable`, and the scheduler
//! tries the instance again soon. The upload is the exception: it consumes the download, so it
//! is tried again only while none of the download has gone into it. The helpers here
//! ([`retry_transient`], [`unseal_password`], [`vault_failure`]) are shared by the later stages.
//!
//! One operation, capture, from the PBX call to the stored copy: hence the file's length.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use backon::{BackoffBuilder, Retryable};
use chrono::Utc;
use restorable_domain::cycle::{BackupCycleCommand, Captured, CycleStarted};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::Instance;
use restorable_domain::ladder::{FailureReason, LockMode, Stage};
use restorable_domain::native_backups::NativeBackups;
use restorable_domain::tenant_key::TenantKey;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, ReadBuf};

use super::{is_cycle_event, record, StageFailure};
use crate::pbx::{BackupEntry, BackupRequest, PbxClient, PbxError};
use crate::pipeline::{PbxCredentials, Pipeline};
use crate::progress::{ProgressHook, Work};
use crate::retry::within_stage;
use crate::sealing::{SealError, SealedSecret};
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;
use crate::vault::{self, ObjectLock, VaultError};
use std::time::Duration;

/// How the backups Restorable asks a PBX for are named (the rest are the PBX's own).
pub const OWN_BACKUP_PREFIX: &str = "restorable-";

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

/// Runs `call`, trying it again with the [`within_stage`] back-off while it fails with an error
/// that `transient` says may pass; returns its last error otherwise.
pub(crate) async fn retry_transient<T, E, F, Fut>(
    what: &str,
    transient: fn(&E) -> bool,
    call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    call.retry(within_stage())
        .when(transient)
        .notify(|error: &E, pause| {
            tracing::warn!(%what, %error, ?pause, "unavailable for now; trying again");
        })
        .await
}

/// A vault error that survived the stage's tries: `vault_unavailable` (retryable) when it is
/// transient, else `permanent` (with its own reason; a missing copy is `object_missing`).
pub(crate) fn vault_failure(
    what: &str,
    error: VaultError,
    permanent: FailureReason,
) -> StageFailure {
    if error.is_transient() {
        StageFailure::transient(
            FailureReason::VaultUnavailable,
            format!("{what}: {error} (still unavailable after the stage's tries)"),
        )
    } else if matches!(error, VaultError::NotFound { .. }) {
        StageFailure::permanent(FailureReason::ObjectMissing, format!("{what}: {error}"))
    } else {
        StageFailure::permanent(permanent, format!("{what}: {error}"))
    }
}

/// A sealing error that survived the stage's tries: `key_service_unavailable` (retryable) when
/// the key service was unavailable, else the permanent `key_unavailable`.
fn seal_failure(what: &str, error: &SealError) -> StageFailure {
    if error.is_transient() {
        StageFailure::transient(
            FailureReason::KeyServiceUnavailable,
            format!("{what}: {error} (still unavailable after the stage's tries)"),
        )
    } else {
        StageFailure::permanent(FailureReason::KeyUnavailable, format!("{what}: {error}"))
    }
}

/// Unseals `sealed` under `context`, trying a key service that is briefly unavailable again.
async fn unseal(
    pipeline: &Pipeline,
    what: &str,
    context: &str,
    sealed: &SealedSecret,
) -> Result<SecretString, StageFailure> {
    retry_transient(what, SealError::is_transient, || {
        pipeline.sealer.unseal(context, sealed)
    })
    .await
    .map_err(|error| seal_failure(what, &error))
}

/// Unseals the backup password of `tenant` at `version` (as [`Pipeline::tenant_password`], with
/// the key service's errors kept apart: see the module documentation).
pub(crate) async fn unseal_password(
    pipeline: &Pipeline,
    tenant: &TenantId,
    version: u32,
) -> Result<SecretString, StageFailure> {
    let key: TenantKey = pipeline
        .store
        .load(tenant.as_str())
        .await
        .map_err(|e| StageFailure::transient(FailureReason::Internal, e.to_string()))?;
    let sealed = key.version(version).ok_or_else(|| {
        StageFailure::permanent(
            FailureReason::KeyUnavailable,
            format!("tenant {tenant} has no key version {version}"),
        )
    })?;
    let what = format!("tenant {tenant} key version {version}");
    let sealed = SealedSecret::from_string(sealed.0.clone());
    unseal(
        pipeline,
        &what,
        &Pipeline::password_context(tenant),
        &sealed,
    )
    .await
}

/// Unseals an instance's PBX credentials (as [`Pipeline::pbx_credentials`], with the key
/// service's errors kept apart).
async fn unseal_credentials(
    pipeline: &Pipeline,
    instance: &Instance,
) -> Result<PbxCredentials, StageFailure> {
    let enrolled = instance.enrolled.as_ref().ok_or_else(|| {
        StageFailure::permanent(FailureReason::Internal, "the instance is not enrolled")
    })?;
    let context =
        Pipeline::credentials_context(&enrolled.tenant_id, &enrolled.instance_id.to_string());
    let sealed = SealedSecret::from_string(enrolled.credentials.0.clone());
    let plain = unseal(pipeline, "PBX credentials", &context, &sealed).await?;
    serde_json::from_str(plain.expose_secret()).map_err(|_| {
        StageFailure::permanent(
            FailureReason::KeyUnavailable,
            "PBX credentials: unsealed, but not in the expected form",
        )
    })
}

fn pbx_failure(error: PbxError) -> StageFailure {
    let reason = match &error {
        PbxError::Unauthorized { .. } => FailureReason::PbxAuth,
        PbxError::Unreachable { .. } => FailureReason::PbxUnreachable,
        PbxError::BrokenOff { .. } => FailureReason::DownloadTruncated,
        PbxError::Status { .. } | PbxError::Protocol { .. } => FailureReason::PbxError,
        PbxError::Endpoint(_) => FailureReason::InsecureTransport,
        PbxError::OffOrigin { .. } => FailureReason::DownloadOffOrigin,
        PbxError::AnswerTooLarge { .. } => FailureReason::PbxAnswerTooLarge,
        PbxError::BackupTooLarge { .. } => FailureReason::BackupTooLarge,
        PbxError::Deadline { .. } => FailureReason::PbxDeadline,
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

/// Keys a cycle's copy may take: [`object_key`], then one more per upload that a killed
/// worker left unfinished (objects are write-once, so an unfinished one is never reused).
const COPY_KEYS: usize = 8;

/// The `attempt`-th key of a cycle's copy (0: [`object_key`]).
fn copy_key(started: &CycleStarted, attempt: usize) -> String {
    match attempt {
        0 => object_key(started),
        n => format!(
            "{}/{}/{}.{n}.zip",
            started.tenant_id, started.instance_id, started.cycle_id
        ),
    }
}

/// The cycle's finished copy in the vault (a redelivered capture finds the one an earlier
/// attempt stored), or a new one stored now. An object that an interrupted upload left
/// unfinished — no recorded SHA-256, or without its lock — is passed over for the next key.
async fn find_or_store(
    pipeline: &Pipeline,
    pbx: &PbxClient,
    entry: &BackupEntry,
    started: &CycleStarted,
    max_bytes: u64,
) -> Result<vault::StoredObject, StageFailure> {
    for attempt in 0..COPY_KEYS {
        let key = copy_key(started, attempt);
        let existing = retry_transient("vault head", VaultError::is_transient, || {
            pipeline.vault.head(&key)
        })
        .await;
        match existing {
            Ok(Some(found)) if found.lock.is_some() => return Ok(found),
            Ok(Some(_)) => {
                tracing::warn!(%key, "a copy without its lock was left by an interrupted capture; storing anew");
            }
            Err(VaultError::Unfinished { detail, .. }) => {
                tracing::warn!(%key, %detail, "a copy left unfinished by an interrupted capture; storing anew");
            }
            Ok(None) => {
                return download_into_vault(pipeline, pbx, entry, &key, started, max_bytes).await
            }
            Err(error) => {
                return Err(vault_failure(
                    "looking for the copy in the vault",
                    error,
                    FailureReason::VaultWrite,
                ))
            }
        }
    }
    Err(StageFailure::permanent(
        FailureReason::VaultWrite,
        format!("{COPY_KEYS} interrupted uploads of this cycle's copy; giving up"),
    ))
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
    // Before anything is unsealed: a URL refused now (enrolled before the rule) gets nothing.
    crate::pbx::check_endpoint(&enrolled.api_url, enrolled.allow_insecure_http)
        .map_err(|e| pbx_failure(PbxError::Endpoint(e)))?;
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
    let password = unseal_password(pipeline, &started.tenant_id, key_version).await?;
    let credentials = unseal_credentials(pipeline, &instance).await?;

    let pbx = PbxClient::connect(
        &enrolled.api_url,
        enrolled.allow_insecure_http,
        &pipeline.settings.pbx,
        &credentials.client_id,
        &credentials.client_secret,
    )
    .await
    .map_err(pbx_failure)?;
    drop(credentials);
    let file_name = format!("{OWN_BACKUP_PREFIX}{}.zip", started.cycle_id);
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
    let max_bytes = pipeline.settings.pbx.max_backup_for(&started.tenant_id);
    if let Some(size) = entry.size.filter(|size| *size > max_bytes) {
        return Err(pbx_failure(PbxError::BackupTooLarge {
            size,
            limit: max_bytes,
        }));
    }
    let extras = pbx.backup_extras(&file_name).await.map_err(pbx_failure)?;
    if !extras.is_encrypted {
        return Err(StageFailure::permanent(
            FailureReason::NotEncryptedByPbx,
            format!("the PBX reports {file_name} as not encrypted; not fetched"),
        ));
    }
    let manifest = pbx.manifest_counts().await.map_err(pbx_failure)?;
    let native_backups = read_native_backups(&pbx, started).await;

    let stored = find_or_store(pipeline, &pbx, &entry, started, max_bytes).await?;
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
        pbx_version: extras.version,
        native_backups,
        captured_at: Utc::now(),
    })
}

/// The PBX's own backup schedule (the native backup watch): what the PBX will not say is
/// `None` and fails nothing — the copy is what this cycle is about, and an unreadable schedule
/// must not turn it red.
async fn read_native_backups(pbx: &PbxClient, started: &CycleStarted) -> Option<NativeBackups> {
    match pbx.native_backups(OWN_BACKUP_PREFIX, Utc::now()).await {
        Ok(native) => Some(native),
        Err(error) => {
            tracing::warn!(%error, tenant = %started.tenant_id, instance = %started.instance_id, "the PBX did not tell its own backup schedule");
            None
        }
    }
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
pub(crate) fn whole_second_after(at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let seconds = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    chrono::DateTime::from_timestamp(seconds, 0).unwrap_or(at)
}

async fn download_into_vault(
    pipeline: &Pipeline,
    pbx: &PbxClient,
    entry: &BackupEntry,
    key: &str,
    started: &CycleStarted,
    max_bytes: u64,
) -> Result<vault::StoredObject, StageFailure> {
    let (tenant, cycle) = (&started.tenant_id, &started.cycle_id.to_string());
    let download = pbx
        .download(&entry.download_link, max_bytes)
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
    let progress = pipeline.settings.progress.clone();
    progress.begin(cycle, Work::Download, Some(expected));
    let _ended = EndOnDrop(&progress, cycle);
    let mut body = ExactLength::new(download.body, expected)
        .at_most(max_bytes)
        .within(download.deadline)
        .reporting({
            let (progress, cycle) = (progress.clone(), cycle.to_owned());
            move |seen| progress.position(&cycle, seen)
        });
    let lock = ObjectLock {
        mode: vault::LockMode::Compliance,
        retain_until: whole_second_after(Utc::now() + pipeline.settings.retention_for(tenant)),
    };
    // The upload consumes the download: it is tried again only while none of it went in.
    let mut pauses = within_stage().build();
    loop {
        let error = match pipeline.vault.put(key, &mut body, Some(lock.clone())).await {
            Ok(stored) => return Ok(stored),
            Err(error) => error,
        };
        if let Some(refusal) = body.refusal.take() {
            return Err(refusal.failure(&entry.file_name));
        }
        if let VaultError::Source(e) = error {
            return Err(StageFailure::transient(
                FailureReason::DownloadTruncated,
                format!(
                    "download of {} broke after {} of {expected} bytes: {e}",
                    entry.file_name, body.seen
                ),
            ));
        }
        if !error.is_transient() {
            return Err(vault_failure(
                "storing the copy",
                error,
                FailureReason::VaultWrite,
            ));
        }
        let pause = if body.seen == 0 { pauses.next() } else { None };
        let Some(pause) = pause else {
            return Err(StageFailure::transient(
                FailureReason::VaultUnavailable,
                format!(
                    "storing the copy: {error} ({} of {expected} bytes of the download had \
                     gone in; the vault stayed unavailable)",
                    body.seen
                ),
            ));
        };
        tracing::warn!(%key, %error, ?pause, "vault unavailable before the upload began; trying again");
        tokio::time::sleep(pause).await;
    }
}

/// Ends the progress of `.1` when dropped (the download ended, whichever way).
struct EndOnDrop<'a>(&'a ProgressHook, &'a str);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// Why [`ExactLength`] refused a body mid-stream (not a broken connection: the PBX's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// More than the tenant's maximum backup size.
    TooLarge { limit: u64 },
    /// The download's overall deadline passed.
    Deadline { after: Duration, seen: u64 },
}

impl Refusal {
    fn failure(self, file_name: &str) -> StageFailure {
        match self {
            Refusal::TooLarge { limit } => StageFailure::permanent(
                FailureReason::BackupTooLarge,
                format!("download of {file_name} ran past the tenant's maximum of {limit} bytes; nothing stored"),
            ),
            Refusal::Deadline { after, seen } => StageFailure::transient(
                FailureReason::PbxDeadline,
                format!("download of {file_name} did not complete within {after:?} ({seen} bytes had come); nothing stored"),
            ),
        }
    }
}

/// Passes a body through, failing with `UnexpectedEof` if it ends before `expected` bytes and
/// with `InvalidData` if it runs past them, so a short download never becomes a stored object;
/// optionally also at a maximum size and an overall deadline ([`Refusal`], kept in `refusal`).
struct ExactLength<R> {
    inner: R,
    expected: u64,
    seen: u64,
    limit: u64,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    after: Duration,
    refusal: Option<Refusal>,
    /// Told the bytes seen so far (a progress bar).
    report: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl<R> ExactLength<R> {
    fn new(inner: R, expected: u64) -> Self {
        Self {
            inner,
            expected,
            seen: 0,
            limit: u64::MAX,
            deadline: None,
            after: Duration::MAX,
            refusal: None,
            report: None,
        }
    }

    /// Tells `report` the bytes seen so far after each read.
    fn reporting(mut self, report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.report = Some(Box::new(report));
        self
    }

    /// Refuses the body once more than `limit` bytes came.
    fn at_most(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Refuses the body when it has not ended within `after` from now.
    fn within(mut self, after: Duration) -> Self {
        self.after = after;
        self.deadline = tokio::time::Instant::now()
            .checked_add(after)
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        self
    }

    fn refuse(&mut self, refusal: Refusal) -> Poll<std::io::Result<()>> {
        self.refusal = Some(refusal);
        let detail = match refusal {
            Refusal::TooLarge { limit } => format!("body larger than the maximum of {limit} bytes"),
            Refusal::Deadline { after, .. } => format!("body not complete within {after:?}"),
        };
        Poll::Ready(Err(std::io::Error::other(detail)))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactLength<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(refusal) = self.refusal {
            return self.refuse(refusal);
        }
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                let (after, seen) = (self.after, self.seen);
                return self.refuse(Refusal::Deadline { after, seen });
            }
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = (buf.filled().len() - before) as u64;
                self.seen += read;
                if let Some(report) = &self.report {
                    report(self.seen);
                }
                if self.seen > self.limit {
                    buf.set_filled(before);
                    let limit = self.limit;
                    return self.refuse(Refusal::TooLarge { limit });
                }
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
    async fn a_body_past_the_maximum_is_refused_as_too_large() {
        let mut reader = ExactLength::new(&b"123456789"[..], 9).at_most(4);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).await.is_err());
        assert_eq!(reader.refusal, Some(Refusal::TooLarge { limit: 4 }));
        assert_eq!(
            reader.refusal.map(|r| r.failure("x.zip").reason),
            Some(FailureReason::BackupTooLarge)
        );
    }

    #[tokio::test]
    async fn a_trickle_is_refused_at_the_deadline() {
        let (mut writer, trickle) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while writer.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut reader = ExactLength::new(trickle, 1 << 20).within(Duration::from_millis(200));
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        assert!(reader.read_to_end(&mut out).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!out.is_empty(), "some bytes came before the deadline");
        let failure = reader.refusal.map(|r| r.failure("x.zip"));
        assert_eq!(
            failure.map(|f| (f.reason, f.retryable)),
            Some((FailureReason::PbxDeadline, true))
        );
    }

    #[tokio::test]
    async fn an_exact_body_passes() {
        let mut reader = ExactLength::new(&b"12345"[..], 5);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("exact");
        assert_eq!(out, b"12345");
    }
}
