//! The verify stage: `Secured` → `Verified`. Opens the stored archive with the tenant key of the
//! version recorded at capture, decrypts, authenticates and inflates every entry to its end
//! (on every core), and checks the 3CX structure (`DbTables/` with the core tables).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycleCommand, Captured, CycleStarted, Verified};
use restorable_domain::ladder::{FailureReason, Rung, Stage};

use super::capture::{retry_transient, unseal_password, vault_failure};
use super::{is_cycle_event, record, StageFailure};
use crate::archive::{self, ArchiveFault};
use crate::pipeline::Pipeline;
use crate::progress::{report_while, Work};
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;
use crate::vault::VaultError;

/// See the module documentation.
pub struct VerifyStage {
    pipeline: Pipeline,
}

impl VerifyStage {
    /// A verify stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Consumer for VerifyStage {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["Secured"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        is_cycle_event(event, "Secured")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let cycle = super::load_cycle(&self.pipeline, &event).await?;
        let (Some(started), Some(captured)) = (&cycle.started, &cycle.captured) else {
            return Ok(());
        };
        if cycle.is_failed() || cycle.rung > Some(Rung::Secured) {
            return Ok(());
        }
        let outcome = verify(&self.pipeline, &event.aggregate_id, started, captured)
            .await
            .map(BackupCycleCommand::RecordVerified);
        record(&self.pipeline, &event.aggregate_id, Stage::Verify, outcome).await
    }
}

/// The ladder's reason code for an archive fault.
pub fn failure_reason(fault: &ArchiveFault) -> FailureReason {
    match fault {
        ArchiveFault::Truncated { .. } => FailureReason::ArchiveTruncated,
        ArchiveFault::WrongKey => FailureReason::WrongKey,
        ArchiveFault::EntryCorrupt { .. } => FailureReason::EntryCorrupt,
        ArchiveFault::NotEncrypted { .. } => FailureReason::NotEncrypted,
        ArchiveFault::WeakEncryption { .. } => FailureReason::WeakEncryption,
        ArchiveFault::UnsupportedMethod { .. } => FailureReason::UnsupportedMethod,
        ArchiveFault::StructureIncomplete { .. } => FailureReason::StructureIncomplete,
        ArchiveFault::Malformed { .. } => FailureReason::ArchiveMalformed,
        ArchiveFault::AmbiguousEnd { .. } => FailureReason::AmbiguousEnd,
        ArchiveFault::DuplicateEntry { .. } => FailureReason::DuplicateEntry,
        ArchiveFault::UnsafeName { .. } => FailureReason::UnsafeEntryName,
        ArchiveFault::Overlap { .. } => FailureReason::EntryOverlap,
        ArchiveFault::StrayData { .. } => FailureReason::StrayData,
        ArchiveFault::HeaderMismatch { .. } => FailureReason::HeaderMismatch,
        ArchiveFault::Budget { .. } => FailureReason::ArchiveBudget,
        ArchiveFault::Io(_) => FailureReason::Internal,
    }
}

async fn verify(
    pipeline: &Pipeline,
    cycle: &str,
    started: &CycleStarted,
    captured: &Captured,
) -> Result<Verified, StageFailure> {
    let password = unseal_password(pipeline, &started.tenant_id, captured.key_version).await?;
    let file = retry_transient("vault download", VaultError::is_transient, || {
        pipeline
            .vault
            .open_seekable(&captured.object_key, &captured.version_id)
    })
    .await
    .map_err(|e| vault_failure("fetching the copy", e, FailureReason::ObjectMissing))?;
    let limits = pipeline.settings.verify_limits_for(&started.tenant_id);
    let read = Arc::new(AtomicU64::new(0));
    let verifier = tokio::task::spawn_blocking({
        let read = Arc::clone(&read);
        move || {
            archive::verify_archive_counted(file, &password, archive::CORE_TABLES, &limits, read)
        }
    });
    let report = report_while(
        &pipeline.settings.progress,
        cycle,
        Work::Verify,
        captured.size,
        &read,
        verifier,
    )
    .await
    .map_err(|e| {
        StageFailure::transient(FailureReason::Internal, format!("verifier stopped: {e}"))
    })?
    .map_err(|fault| StageFailure {
        reason: failure_reason(&fault),
        retryable: matches!(fault, ArchiveFault::Io(_)),
        detail: fault.to_string(),
    })?;
    Ok(Verified {
        entries: report.entries,
        inflated_bytes: report.inflated_bytes,
        tables: report.tables,
        encryption: report.encryption,
        compression: report.compression,
        verified_at: Utc::now(),
    })
}
