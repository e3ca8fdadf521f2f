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
//! Failed               ─► alerts  ─► "Backup Failed" on restorable.alerts.<tenant>
//! AlertRaised|Resolved ─► alert_delivery ─► tenant's webhook, e-mail, NATS (background tasks)
//! ```
//!
//! A stage's own failure (bad credentials, a corrupt copy) becomes a `Failed` event with a stable
//! reason; only infrastructure errors are returned, so the transport delivers the event again.

pub mod alerts;
pub mod capture;
pub mod close;
pub mod restore_test;
pub mod secure;
pub mod start;
pub mod verify;

use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, BackupCycleEvent, Failed};
use restorable_domain::ladder::{FailureReason, Stage};

use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, StoreError};

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
/// Any other error is infrastructure ([`crate::error`]) and is returned, so the event is
/// delivered again and the outcome recorded once the store answers.
pub async fn record(
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
        Err(error) if error.is_refusal() => {
            let why = error.to_string();
            tracing::info!(cycle = cycle_id, %stage, %why, "outcome not recorded");
            Ok(())
        }
        other => other,
    }
}
