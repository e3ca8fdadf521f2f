//! The close stage: when a cycle reaches its last rung or fails, the instance's cycle in flight
//! is closed (with how far it got, and whether it failed retryably, so the scheduler tries the
//! instance again soon, with back-off), so the scheduler may open the next one. A Verified cycle
//! whose restore test is planned closes after the test, not at Verified (by this stage on the
//! `RestoreTested` or `Failed` event; by the restore-test stage itself when its random selection
//! tested an older copy instead, [`close_cycle_naming`]).

use async_trait::async_trait;
use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::CycleId;
use restorable_domain::instance::{CycleClosed, Instance, InstanceCommand};
use restorable_domain::ladder::Rung;

use super::is_cycle_event;
use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, StoreError};
use crate::transport::Consumer;

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

/// See the module documentation.
pub struct CloseStage {
    pipeline: Pipeline,
}

impl CloseStage {
    /// A close stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

#[async_trait]
impl Consumer for CloseStage {
    fn name(&self) -> &'static str {
        "close"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["Verified", "RestoreTested", "Failed"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        ["Verified", "RestoreTested", "Failed"]
            .iter()
            .any(|t| is_cycle_event(event, t))
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let cycle: BackupCycle = super::load_cycle(&self.pipeline, &event).await?;
        if let BackupCycleEvent::Verified(verified) = event.decode()? {
            if planned(&self.pipeline, &cycle, verified.verified_at).await? {
                return Ok(()); // the restore test closes it
            }
        }
        close_cycle(&self.pipeline, &cycle).await
    }
}

/// Closes `cycle` on its instance, with how far it got (nothing if it was never started, or if
/// the instance no longer holds it open). Shared with the watchdog ([`crate::watchdog`]).
///
/// # Errors
/// A storage error.
pub async fn close_cycle(pipeline: &Pipeline, cycle: &BackupCycle) -> Result<(), StoreError> {
    close_cycle_naming(pipeline, cycle, None).await
}

/// [`close_cycle`], naming the older copy whose passed restore test this cycle ran instead of
/// its own (the restore-test stage's random selection), if any.
///
/// # Errors
/// A storage error.
pub async fn close_cycle_naming(
    pipeline: &Pipeline,
    cycle: &BackupCycle,
    restore_tested_copy: Option<CycleId>,
) -> Result<(), StoreError> {
    let Some(started) = &cycle.started else {
        return Ok(());
    };
    let close = InstanceCommand::CloseCycle(CycleClosed {
        cycle_id: started.cycle_id,
        reached: cycle.rung.unwrap_or(Rung::Started),
        failed: cycle.is_failed(),
        retryable: cycle.failed.as_ref().is_some_and(|f| f.retryable),
        restore_tested_copy,
        closed_at: Utc::now(),
    });
    pipeline
        .store
        .instance(&started.instance_id.to_string(), close)
        .await
}
