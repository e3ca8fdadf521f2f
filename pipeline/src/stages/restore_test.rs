//! The restore-test stage: `Verified` → `RestoreTested`, on the instance's cadence (every Nth
//! verified cycle, or when the last Restore-Tested copy is too old — decided at the `Verified`
//! event's time, so this stage and the close stage always agree). Restores the stored copy into
//! a clean, network-isolated sandbox, checks 3CX accepts it and the data matches the manifest
//! taken from the live PBX at capture, records the measured recovery time, destroys the sandbox.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, RestoreTested};
use restorable_domain::instance::Instance;
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use tokio::sync::Semaphore;

use super::capture::{retry_transient, unseal_password, vault_failure};
use super::{is_cycle_event, record, StageFailure};
use crate::pipeline::Pipeline;
use crate::sandbox::restore_test;
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;
use crate::vault::VaultError;

/// See the module documentation.
pub struct RestoreTestStage {
    pipeline: Pipeline,
    /// Restore tests are heavy: one at a time per process.
    one_at_a_time: Arc<Semaphore>,
}

impl RestoreTestStage {
    /// A restore-test stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            one_at_a_time: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Whether the cycle, now Verified, is to be restore-tested under its instance's cadence.
///
/// # Errors
/// A store failure.
pub async fn planned(
    pipeline: &Pipeline,
    cycle: &BackupCycle,
    verified_at: chrono::DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(started) = &cycle.started else {
        return Ok(false);
    };
    let instance: Instance = pipeline
        .store
        .load(&started.instance_id.to_string())
        .await?;
    Ok(instance.open_cycle == Some(started.cycle_id) && instance.restore_test_due(verified_at))
}

#[async_trait]
impl Consumer for RestoreTestStage {
    fn name(&self) -> &'static str {
        "restore_test"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["Verified"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        is_cycle_event(event, "Verified")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let cycle: BackupCycle = super::load_cycle(&self.pipeline, &event).await?;
        let restorable_domain::cycle::BackupCycleEvent::Verified(verified) = event.decode()? else {
            return Ok(());
        };
        if cycle.is_failed() || cycle.rung != Some(Rung::Verified) {
            return Ok(());
        }
        if !planned(&self.pipeline, &cycle, verified.verified_at).await? {
            return Ok(());
        }
        let _permit = self
            .one_at_a_time
            .acquire()
            .await
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let outcome = run(&self.pipeline, &cycle)
            .await
            .map(BackupCycleCommand::RecordRestoreTested);
        record(
            &self.pipeline,
            &event.aggregate_id,
            Stage::RestoreTest,
            outcome,
        )
        .await
    }
}

/// Restore-tests a Verified cycle now, whatever the cadence (`restorable restore-test`), and
/// records the outcome.
///
/// # Errors
/// A store failure, or a cycle that is not at Verified (message says where it is).
pub async fn restore_test_now(pipeline: &Pipeline, cycle_id: &str) -> Result<(), StoreError> {
    let cycle: BackupCycle = pipeline.store.load(cycle_id).await?;
    if cycle.is_failed() || cycle.rung != Some(Rung::Verified) {
        return Err(StoreError::Rejected(format!(
            "cycle {cycle_id} is at {} — only a Verified copy can be restore-tested",
            cycle
                .rung
                .map_or("nothing".to_owned(), |r| r.label().to_owned())
                + if cycle.is_failed() { " (failed)" } else { "" }
        )));
    }
    pipeline.sandbox.sweep_leftovers().await;
    let outcome = run(pipeline, &cycle)
        .await
        .map(BackupCycleCommand::RecordRestoreTested);
    record(pipeline, cycle_id, Stage::RestoreTest, outcome).await
}

async fn run(pipeline: &Pipeline, cycle: &BackupCycle) -> Result<RestoreTested, StageFailure> {
    let (Some(started), Some(captured)) = (&cycle.started, &cycle.captured) else {
        return Err(StageFailure::permanent(
            FailureReason::Internal,
            "the cycle has no captured copy",
        ));
    };
    let password = unseal_password(pipeline, &started.tenant_id, captured.key_version).await?;
    let archive = retry_transient("vault download", VaultError::is_transient, || {
        pipeline
            .vault
            .open_seekable(&captured.object_key, &captured.version_id)
    })
    .await
    .map_err(|e| vault_failure("fetching the copy", e, FailureReason::ObjectMissing))?;
    let cycle_id = started.cycle_id.to_string();
    let progress = &pipeline.settings.progress;
    progress.begin(&cycle_id, crate::progress::Work::RestoreTest, None);
    let report = restore_test(
        pipeline.sandbox.as_ref(),
        archive,
        &password,
        &captured.manifest,
        pipeline.settings.restore_time_limit,
    )
    .await;
    progress.end(&cycle_id);
    let report = report.map_err(|failure| StageFailure {
        reason: failure.reason(),
        retryable: matches!(
            failure.reason(),
            FailureReason::SandboxProvision | FailureReason::RestoreTimeout
        ),
        detail: failure.to_string(),
    })?;
    Ok(RestoreTested {
        sandbox: report.sandbox,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        counts: report.counts,
        restore_tested_at: Utc::now(),
    })
}
