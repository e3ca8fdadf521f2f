//! The scheduler: on every tick, opens a cycle for each enrolled, not-stopped instance whose
//! interval has passed and that has no cycle in flight. The instance aggregate enforces "one in
//! flight", so two schedulers (or a scheduler and a manual run) cannot open two cycles.

use std::time::Duration;

use chrono::Utc;
use restorable_domain::ids::InstanceId;
use restorable_domain::instance::Instance;
use restorable_domain::ladder::Trigger;
use tokio_util::sync::CancellationToken;

use crate::enrolment::{open_cycle, EnrolmentError};
use crate::pipeline::Pipeline;
use crate::store::StoreError;

/// Opens a cycle for every instance due now; returns the instances it opened one for.
///
/// # Errors
/// A store failure listing or loading instances.
pub async fn tick(pipeline: &Pipeline) -> Result<Vec<InstanceId>, StoreError> {
    let now = Utc::now();
    let mut opened = Vec::new();
    for id in pipeline.store.aggregate_ids("Instance").await? {
        let instance: Instance = pipeline.store.load(&id).await?;
        let Some(enrolled) = &instance.enrolled else {
            continue;
        };
        if !instance.is_due(now) {
            continue;
        }
        match open_cycle(pipeline, enrolled.instance_id, Trigger::Scheduled).await {
            Ok(_) => opened.push(enrolled.instance_id),
            Err(EnrolmentError::Store(StoreError::Rejected(why))) => {
                tracing::debug!(instance = %id, %why, "not opened");
            }
            Err(EnrolmentError::Store(e)) => return Err(e),
            Err(EnrolmentError::Sealing(e)) => tracing::error!(instance = %id, %e, "not opened"),
            Err(EnrolmentError::Endpoint(e)) => tracing::error!(instance = %id, %e, "not opened"),
        }
    }
    Ok(opened)
}

/// Ticks every `every` until `shutdown` is cancelled.
pub async fn run(pipeline: Pipeline, every: Duration, shutdown: CancellationToken) {
    loop {
        match tick(&pipeline).await {
            Ok(opened) if !opened.is_empty() => {
                tracing::info!(cycles = opened.len(), "scheduler opened cycles")
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "scheduler tick failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
