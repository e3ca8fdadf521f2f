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

use std::sync::Arc;

use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, BackupCycleEvent, Failed};
use restorable_domain::ladder::{FailureReason, Stage};
use tokio_util::sync::CancellationToken;

use crate::context::Pipeline;
use crate::nats::relay::Relay;
use crate::nats::worker::{run_worker, WorkerSettings};
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
        Arc::new(alerts::AlertsStage::new(pipeline.clone())),
        Arc::new(crate::alert_routes::AlertDelivery::new(pipeline)),
    ]
}

/// The consumer names `restorable worker --stage` accepts (`restore-test` is `restore_test`).
pub const STAGE_NAMES: &[&str] = &[
    "start",
    "capture",
    "secure",
    "verify",
    "restore_test",
    "close",
    "alerts",
    "alert_delivery",
];

/// Runs every stage in this process until `shutdown` is cancelled (see [`run_stages`]).
pub async fn run_all(pipeline: &Pipeline, shutdown: CancellationToken) {
    run_stages(pipeline, STAGE_NAMES, &WorkerSettings::default(), shutdown).await;
}

/// Runs the named stages until `shutdown` is cancelled: over NATS JetStream when the pipeline
/// has it (with the outbox relay alongside), else in-process from the store. First destroys any
/// restore sandbox an earlier, killed run left behind.
pub async fn run_stages(
    pipeline: &Pipeline,
    names: &[&str],
    settings: &WorkerSettings,
    shutdown: CancellationToken,
) {
    if names.contains(&"restore_test") {
        pipeline.sandbox.sweep_leftovers().await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    // The cycle deadline: one watchdog per process; the `watchdog` lease lets only one act.
    let watchdog = crate::watchdog::Watchdog::new(pipeline.clone());
    tasks.spawn(watchdog.run(shutdown.clone()));
    if names.contains(&"alert_delivery") {
        let resumer = crate::alert_routes::AlertDelivery::new(pipeline);
        // Dead letters become operations alerts (raised once per consumer, resolved when
        // replayed): every process delivering alerts looks; the store lets one raise each.
        tasks.spawn(crate::operations_alerts::watch_dead_letters(
            resumer.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(resumer.resume_until(shutdown.clone()));
    }
    let chosen = consumers(pipeline)
        .into_iter()
        .filter(|c| names.contains(&c.name()));
    match &pipeline.nats {
        None => {
            for consumer in chosen {
                tasks.spawn(run_consumer(
                    pipeline.store.clone(),
                    consumer,
                    shutdown.clone(),
                ));
            }
        }
        Some(nats) => {
            let alarm = crate::operations_alerts::RelayAlarm::new(
                crate::alert_routes::AlertDelivery::new(pipeline),
                crate::operations_alerts::RELAY_ALERT_AFTER,
            );
            let relay = Relay::new(pipeline.store.clone(), nats.clone()).with_alarm(alarm);
            tasks.spawn(relay.run(shutdown.clone()));
            for consumer in chosen {
                let (pipeline, nats, settings, shutdown) = (
                    pipeline.clone(),
                    nats.clone(),
                    settings.clone(),
                    shutdown.clone(),
                );
                tasks.spawn(async move {
                    let name = consumer.name();
                    if let Err(error) =
                        run_worker(pipeline, nats, consumer, settings, shutdown.clone()).await
                    {
                        tracing::error!(stage = name, %error, "worker could not start");
                        shutdown.cancel();
                    }
                });
            }
        }
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
