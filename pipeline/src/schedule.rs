//! The scheduler's index (`instance_schedule`, [`crate::store::ScheduleRow`]): each instance's
//! next due time (`Instance::next_due_at`) and cycle in flight, kept from the log. [`refresh`]
//! reads only the Instance events after the `schedule` checkpoint, in batches, and for each
//! instance a batch touches stores the row of its loaded aggregate, rows and checkpoint in one
//! transaction; a row never gives way to an older one (each carries the sequence of the last
//! event it reflects, the highest of the batch: the aggregate loaded after reading it is at
//! least that new). A database migrated to the index starts at checkpoint 0 and fills it on the
//! first refresh; [`rebuild`] empties and refills it (`projections rebuild`); [`reconcile`]
//! rebuilds it when it has fewer rows than the log has instances.
//!
//! An instance with a cycle in flight has no due time until that cycle closes (the close is an
//! Instance event, which refreshes its row). Used by the scheduler ([`crate::runtime::scheduler`])
//! and the watchdog (instances in flight).

use std::collections::HashMap;

use restorable_domain::instance::Instance;

use crate::store::{ScheduleRow, Store, StoreError};

/// The index's checkpoint in the log.
pub const CHECKPOINT: &str = "schedule";
/// Instance events read per batch by [`refresh`].
const BATCH: i64 = 1000;

/// The index's row for an instance in state `instance` as of its event `version`.
pub fn row(instance_id: &str, instance: &Instance, version: i64) -> ScheduleRow {
    ScheduleRow {
        instance_id: instance_id.to_owned(),
        due_at: instance.next_due_at().map(|t| t.timestamp_millis()),
        open_cycle: instance.open_cycle.map(|c| c.to_string()),
        purge_at: instance.purge_due_at().map(|t| t.timestamp_millis()),
        native_watch_from: instance.native_watch_from().map(|t| t.timestamp_millis()),
        version,
    }
}

/// Brings the index up to the log: reads the Instance events after the `schedule` checkpoint in
/// batches and stores the row of every instance they touch (from its aggregate, loaded once per
/// batch). Returns the checkpoint reached.
///
/// # Errors
/// A store failure; what was stored stays stored.
pub async fn refresh(store: &Store) -> Result<i64, StoreError> {
    let mut position = store.checkpoint(CHECKPOINT).await?;
    loop {
        let batch = store.instance_events_after(position, BATCH).await?;
        let Some(last) = batch.last().map(|m| m.position) else {
            return Ok(position);
        };
        let mut touched: HashMap<String, i64> = HashMap::new();
        for mark in batch {
            let version = touched.entry(mark.aggregate_id).or_insert(mark.sequence);
            *version = (*version).max(mark.sequence);
        }
        let mut rows = Vec::with_capacity(touched.len());
        for (id, version) in touched {
            let instance: Instance = store.load(&id).await?;
            rows.push(row(&id, &instance, version));
        }
        store.save_schedule(&rows, CHECKPOINT, last).await?;
        position = last;
    }
}

/// Empties the index and fills it again from the whole log (`projections rebuild` does it).
/// Returns the checkpoint reached.
///
/// # Errors
/// A store failure.
pub async fn rebuild(store: &Store) -> Result<i64, StoreError> {
    store.clear_schedule(CHECKPOINT).await?;
    refresh(store).await
}

/// Rebuilds the index if it lacks a row for some instance of the log (rows lost other than
/// through the log); returns whether it did.
///
/// # Errors
/// A store failure.
pub async fn reconcile(store: &Store) -> Result<bool, StoreError> {
    let (rows, instances) = store.schedule_coverage().await?;
    if rows >= instances {
        return Ok(false);
    }
    tracing::warn!(
        rows,
        instances,
        "the schedule index lacks instances; rebuilding it"
    );
    rebuild(store).await?;
    Ok(true)
}
