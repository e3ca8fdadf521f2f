//! Runs every stage in this process until a given set of cycles has closed (reached its last
//! rung or failed), calling back on each new event so a caller can show progress. Used by
//! `restorable demo`, `restorable backup-now` and the integration tests.

use std::collections::HashSet;
use std::time::Duration;

use restorable_domain::ids::CycleId;
use restorable_domain::instance::InstanceEvent;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, StoreError};

/// Why the cycles did not all close.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The time limit passed.
    #[error("{open} cycle(s) still running after {limit:?}")]
    TimedOut {
        /// How many were still open.
        open: usize,
        /// The limit.
        limit: Duration,
    },
    /// Ctrl-C.
    #[error("interrupted; the open cycles continue on the next run")]
    Interrupted,
}

/// The position of the newest event (0 for an empty store): drive from here to see only news.
///
/// # Errors
/// A store failure.
pub async fn head_position(pipeline: &Pipeline) -> Result<i64, StoreError> {
    let mut position = 0;
    loop {
        let batch = pipeline.store.read_after(position, 10_000).await?;
        match batch.last() {
            Some(last) => position = last.position,
            None => return Ok(position),
        }
    }
}

/// Runs the stages until every cycle in `cycles` is closed, `limit` passes, or Ctrl-C; events
/// after `from_position` are passed to `on_event` as they are committed.
///
/// # Errors
/// See [`DriveError`].
pub async fn run_until_closed(
    pipeline: &Pipeline,
    cycles: HashSet<CycleId>,
    from_position: i64,
    limit: Duration,
    on_event: impl FnMut(&LoggedEvent),
) -> Result<(), DriveError> {
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn({
        let pipeline = pipeline.clone();
        let shutdown = shutdown.clone();
        async move {
            let settings = crate::transport::nats::worker::WorkerSettings::default();
            crate::runtime::run_stages(&pipeline, crate::runtime::LADDER_NAMES, &settings, shutdown)
                .await
        }
    });
    let outcome = watch(pipeline, cycles, from_position, limit, on_event).await;
    shutdown.cancel();
    if let Err(error) = workers.await {
        tracing::error!(%error, "stage workers stopped abnormally");
    }
    outcome
}

async fn watch(
    pipeline: &Pipeline,
    mut cycles: HashSet<CycleId>,
    mut position: i64,
    limit: Duration,
    mut on_event: impl FnMut(&LoggedEvent),
) -> Result<(), DriveError> {
    let deadline = tokio::time::Instant::now() + limit;
    let committed = pipeline.store.committed();
    while !cycles.is_empty() {
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        loop {
            let batch = pipeline.store.read_after(position, 1000).await?;
            let Some(last) = batch.last() else { break };
            position = last.position;
            for event in &batch {
                on_event(event);
                if event.aggregate_type == "Instance" && event.event_type == "CycleClosed" {
                    if let Ok(InstanceEvent::CycleClosed(closed)) = event.decode() {
                        cycles.remove(&closed.cycle_id);
                    }
                }
            }
        }
        if cycles.is_empty() {
            break;
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(DriveError::TimedOut { open: cycles.len(), limit });
            }
            _ = tokio::signal::ctrl_c() => return Err(DriveError::Interrupted),
        }
    }
    Ok(())
}
