//! The restore-test stage: `Verified` → `RestoreTested`, on the instance's cadence (every Nth
//! verified cycle, or when the last Restore-Tested copy is too old — decided at the `Verified`
//! event's time, so this stage and the close stage always agree). Restores the stored copy into
//! a clean, network-isolated sandbox, checks 3CX accepts it and the data matches the manifest
//! taken from the live PBX at capture, records the measured recovery time, destroys the sandbox.
//!
//! # Which copy
//! The instance's `RestorePolicy::selection`: `newest` (the default) tests the copy the cycle
//! just made. `random_within_days N` draws one at random among the instance's Verified copies
//! made within the last N days that are still stored, not failed and not yet restore-tested —
//! the new one included ([`pick_older`]). When it draws an older copy, that copy is restored and
//! its outcome recorded on *its* cycle (`RestoreTested`, or `Failed` at the restore-test stage,
//! which raises Backup Failed for it); the new copy stays at Verified — no rung is claimed for a
//! copy that was not restored — and this stage closes the cycle, naming the older copy in
//! `CycleClosed::restore_tested_copy` when its test passed, so the instance counts it as its
//! restore test.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, RestoreTested};
use restorable_domain::instance::{Instance, RestoreSelection};
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::capture::{retry_transient, unseal_password, vault_failure};
use super::close::planned;
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
        if let Some(older) = pick_older(&self.pipeline, &cycle, verified.verified_at).await? {
            return restore_test_older(&self.pipeline, &cycle, &older).await;
        }
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

/// The older copy an instance's `random_within_days` selection draws instead of `cycle`'s own
/// (Verified at `verified_at`), or `None` for the cycle's own copy: every candidate — the
/// instance's stored copies made within the window whose cycle is at Verified, not failed, not
/// removed and still locked for [`LOCK_MARGIN`], by cycle id, and the cycle's own last — is
/// equally likely ([`draw`]). Always `None` under `newest`.
///
/// # Errors
/// A store failure.
pub async fn pick_older(
    pipeline: &Pipeline,
    cycle: &BackupCycle,
    verified_at: chrono::DateTime<Utc>,
) -> Result<Option<BackupCycle>, StoreError> {
    let Some(started) = &cycle.started else {
        return Ok(None);
    };
    let store = &pipeline.store;
    let instance_id = started.instance_id.to_string();
    let instance: Instance = store.load(&instance_id).await?;
    let selection = instance
        .enrolled
        .map(|e| e.restore_policy.selection)
        .unwrap_or_default();
    let RestoreSelection::RandomWithinDays { days } = selection else {
        return Ok(None);
    };
    let since = verified_at - chrono::Duration::days(i64::from(days));
    crate::recheck::index::refresh(store, pipeline.settings.recheck_window, Utc::now()).await?;
    let own = started.cycle_id.to_string();
    let mut candidates = Vec::new();
    for (cycle_id, _) in store.stored_copies(&instance_id).await? {
        if cycle_id == own {
            continue;
        }
        let older: BackupCycle = store.load(&cycle_id).await?;
        let Some(captured) = &older.captured else {
            continue;
        };
        let locked_until = older.retain_until.unwrap_or(captured.retain_until);
        let made_in_window = captured.captured_at >= since;
        // Retention may remove a copy whose lock has run out: never one being restored.
        let stays_locked = locked_until > Utc::now() + LOCK_MARGIN;
        if made_in_window
            && stays_locked
            && !older.is_failed()
            && older.removed.is_none()
            && older.rung == Some(Rung::Verified)
        {
            candidates.push(older);
        }
    }
    let drawn = draw(&own, candidates.len() + 1);
    Ok((drawn < candidates.len()).then(|| candidates.swap_remove(drawn)))
}

/// How long an older copy's Object Lock must still hold for the draw to take it: longer than a
/// restore test, so retention does not remove the copy while it is restored.
const LOCK_MARGIN: chrono::Duration = chrono::Duration::hours(6);

/// Which of `choices` (at least 1) the cycle `cycle_id` draws: a hash of its id, so the draw is
/// uniform over cycles (their ids are random) and the same each time one cycle asks — a
/// redelivered `Verified` draws again what the first delivery drew, while the candidates
/// stand. [`pick_older`] orders the candidates by cycle id, the cycle's own copy last.
pub fn draw(cycle_id: &str, choices: usize) -> usize {
    let digest = Sha256::digest(cycle_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let choices = u64::try_from(choices.max(1)).unwrap_or(u64::MAX);
    usize::try_from(u64::from_be_bytes(first) % choices).unwrap_or(0)
}

/// Restore-tests `older` in place of `cycle`'s own copy, records the outcome on `older`'s
/// cycle, then closes `cycle` at Verified — naming `older` as its restore test if that passed.
async fn restore_test_older(
    pipeline: &Pipeline,
    cycle: &BackupCycle,
    older: &BackupCycle,
) -> Result<(), StoreError> {
    let Some(older_started) = &older.started else {
        return Ok(());
    };
    let older_id = older_started.cycle_id;
    tracing::info!(cycle = ?cycle.started.as_ref().map(|s| s.cycle_id), older = %older_id, "restore test of an older copy (random selection)");
    let outcome = run(pipeline, older)
        .await
        .map(BackupCycleCommand::RecordRestoreTested);
    record(pipeline, &older_id.to_string(), Stage::RestoreTest, outcome).await?;
    let tested: BackupCycle = pipeline.store.load(&older_id.to_string()).await?;
    let passed = !tested.is_failed() && tested.rung == Some(Rung::RestoreTested);
    super::close::close_cycle_naming(pipeline, cycle, passed.then_some(older_id)).await
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
