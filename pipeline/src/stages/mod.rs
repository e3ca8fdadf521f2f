//! The stage processors. Each is a [`Consumer`](crate::transport::Consumer) of the event log that
//! reacts to one event and answers with a command:
//!
//! ```text
//! Instance CycleOpened ─► start   ─► BackupCycle Start          (CycleStarted)
//! CycleStarted         ─► capture ─► RecordCaptured | Failed     (Captured)
//! Captured             ─► secure  ─► RecordSecured  | Failed     (Secured)
//! Secured              ─► verify  ─► RecordVerified | Failed     (Verified)
//! Verified (when due)  ─► restore_test ─► RecordRestoreTested | Failed (RestoreTested)
//! last rung | Failed   ─► close   ─► Instance CloseCycle         (CycleClosed)
//! ```
//!
//! A stage's own failure (bad credentials, a corrupt copy) becomes a `Failed` event with a stable
//! reason; only infrastructure errors are returned, so the transport delivers the event again.

pub mod capture;
pub mod close;
pub mod restore_test;
pub mod secure;
pub mod start;
pub mod verify;

use std::sync::Arc;

use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, BackupCycleEvent, Failed};
use restorable_domain::ladder::{FailureReason, Stage};
use tokio_util::sync::CancellationToken;

use crate::context::Pipeline;
use crate::store::{LoggedEvent, StoreError};
use crate::transport::{run_consumer, Consumer};

/// A stage that did not reach its rung, and why.
#[derive(Debug)]
pub struct StageFailure {
    /// The stable code.
    pub reason: FailureReason,
    /// A human explanation; never contains a secret.
    pub detail: String,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

impl StageFailure {
    /// A failure that needs a person.
    pub fn permanent(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            retryable: false,
        }
    }

    /// A failure that may pass on a later cycle.
    pub fn transient(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            retryable: true,
        }
    }
}

/// Every consumer of the ladder, in ladder order.
pub fn consumers(pipeline: &Pipeline) -> Vec<Arc<dyn Consumer>> {
    vec![
        Arc::new(start::StartStage::new(pipeline.clone())),
        Arc::new(capture::CaptureStage::new(pipeline.clone())),
        Arc::new(secure::SecureStage::new(pipeline.clone())),
        Arc::new(verify::VerifyStage::new(pipeline.clone())),
        Arc::new(restore_test::RestoreTestStage::new(pipeline.clone())),
        Arc::new(close::CloseStage::new(pipeline.clone())),
    ]
}

/// Runs every stage in this process until `shutdown` is cancelled. First destroys any restore
/// sandbox an earlier, killed run left behind.
pub async fn run_all(pipeline: &Pipeline, shutdown: CancellationToken) {
    pipeline.sandbox.sweep_leftovers().await;
    let mut tasks = tokio::task::JoinSet::new();
    for consumer in consumers(pipeline) {
        tasks.spawn(run_consumer(
            pipeline.store.clone(),
            consumer,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Whether `event` is the `BackupCycle` event of type `event_type`.
pub(crate) fn is_cycle_event(event: &LoggedEvent, event_type: &str) -> bool {
    event.aggregate_type == "BackupCycle" && event.event_type == event_type
}

/// Loads the cycle an event belongs to.
pub(crate) async fn load_cycle(
    pipeline: &Pipeline,
    event: &LoggedEvent,
) -> Result<BackupCycle, StoreError> {
    event.decode::<BackupCycleEvent>()?;
    pipeline.store.load(&event.aggregate_id).await
}

/// Records a stage's outcome on its cycle. A cycle that refuses it (already failed, a duplicate
/// delivery that lost a race) is logged, not retried: the refusal is the aggregate doing its job.
pub(crate) async fn record(
    pipeline: &Pipeline,
    cycle_id: &str,
    stage: Stage,
    outcome: Result<BackupCycleCommand, StageFailure>,
) -> Result<(), StoreError> {
    let command = match outcome {
        Ok(command) => command,
        Err(failure) => {
            tracing::warn!(cycle = cycle_id, %stage, reason = %failure.reason, detail = %failure.detail, "stage failed");
            BackupCycleCommand::RecordFailure(Failed {
                stage,
                reason: failure.reason,
                detail: failure.detail,
                retryable: failure.retryable,
                failed_at: Utc::now(),
            })
        }
    };
    match pipeline.store.cycle(cycle_id, command).await {
        Err(StoreError::Rejected(why)) => {
            tracing::info!(cycle = cycle_id, %stage, %why, "outcome not recorded");
            Ok(())
        }
        other => other,
    }
}
