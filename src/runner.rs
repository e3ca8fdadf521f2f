//! Runs every stage in this process until a given set of cycles has closed (reached its last
//! rung or failed), calling back on each new event so the caller can show progress.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use restorable_domain::ids::CycleId;
use restorable_domain::instance::InstanceEvent;
use restorable_pipeline::context::Pipeline;
use restorable_pipeline::stages;
use restorable_projections::AnyEvent;
use tokio_util::sync::CancellationToken;

use crate::history;

/// Runs the stages from `from_position` on until every cycle in `cycles` is closed, or `limit`
/// passes (an error), or Ctrl-C.
///
/// # Errors
/// The limit passed, Ctrl-C, or a store failure.
pub async fn run_until_closed(
    pipeline: &Pipeline,
    mut cycles: HashSet<CycleId>,
    from_position: i64,
    limit: Duration,
    mut on_event: impl FnMut(&AnyEvent),
) -> Result<()> {
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn({
        let pipeline = pipeline.clone();
        let shutdown = shutdown.clone();
        async move { stages::run_all(&pipeline, shutdown).await }
    });
    let outcome = watch(pipeline, &mut cycles, from_position, limit, &mut on_event).await;
    shutdown.cancel();
    workers.await.context("stage workers stopped abnormally")?;
    outcome
}

async fn watch(
    pipeline: &Pipeline,
    cycles: &mut HashSet<CycleId>,
    mut position: i64,
    limit: Duration,
    on_event: &mut impl FnMut(&AnyEvent),
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let committed = pipeline.store.committed();
    while !cycles.is_empty() {
        let notified = committed.notified();
        let (events, last) = history::read_after(&pipeline.store, position).await?;
        position = last;
        for event in &events {
            on_event(event);
            if let AnyEvent::Instance(_, InstanceEvent::CycleClosed(closed)) = event {
                cycles.remove(&closed.cycle_id);
            }
        }
        if cycles.is_empty() {
            break;
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = tokio::time::sleep_until(deadline) => anyhow::bail!("{} cycle(s) still running after {limit:?}", cycles.len()),
            result = tokio::signal::ctrl_c() => {
                result.context("listening for Ctrl-C")?;
                anyhow::bail!("interrupted; the cycles continue on the next run");
            }
        }
    }
    Ok(())
}
