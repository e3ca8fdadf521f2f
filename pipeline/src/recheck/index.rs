//! Keeps the stored copies' index ([`crate::store::RecheckChange`], table `copy_rechecks`), read
//! by the re-checks and by retention, from the log: [`refresh`] reads the BackupCycle events
//! after the `rechecks` checkpoint that matter to it (`Captured`, `Secured`, `Rechecked`,
//! `RecheckFailed`, `Failed`, `LockExtended`, `CopyRemoved`) in batches and stores each batch's
//! changes with the checkpoint in one transaction. Every sweep refreshes first, so the index
//! is never behind the log when a sweep reads it and needs no other process running; a
//! database migrated to it fills it on the first sweep. [`rebuild`] empties and refills it;
//! [`reconcile`] rebuilds it when it lacks copies the log has (the sweep's runner checks at
//! start and every hour).

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};

use super::next_slot;
use crate::store::{LoggedEvent, RecheckChange, Store, StoreError};

/// The index's checkpoint in the log.
pub const CHECKPOINT: &str = "rechecks";
/// Events read per batch.
const BATCH: i64 = 1000;

/// Brings the index up to the log at `now` with re-check window `window`; returns the
/// checkpoint reached.
///
/// # Errors
/// A store failure (what was stored stays stored), or an event that does not decode
/// ([`StoreError::Malformed`]).
pub async fn refresh(
    store: &Store,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut position = store.checkpoint(CHECKPOINT).await?;
    // Writers take turns (SQLite has one; PostgreSQL's take the writers' lock), so every
    // position up to the end read here is committed and visible.
    let end = store.log_end().await?;
    while position < end {
        let batch = store.recheck_events(position, end, BATCH).await?;
        let reached = if (batch.len() as i64) < BATCH {
            end
        } else {
            batch.last().map_or(end, |e| e.position)
        };
        let mut changes = Vec::with_capacity(batch.len());
        for event in &batch {
            if let Some(change) = change_for(store, event, window, now).await? {
                changes.push(change);
            }
        }
        store.save_rechecks(&changes, CHECKPOINT, reached).await?;
        position = reached;
    }
    Ok(position)
}

/// Empties the index and fills it again from the whole log.
///
/// # Errors
/// As [`refresh`].
pub async fn rebuild(
    store: &Store,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    store.clear_rechecks(CHECKPOINT).await?;
    refresh(store, window, now).await
}

/// Rebuilds the index if it lacks a row for some copy the log says was stored (rows lost
/// other than through the log, e.g. a table emptied by hand: without this, those copies would
/// never be re-checked and the coverage would not count them); returns whether it did.
///
/// # Errors
/// As [`refresh`].
pub async fn reconcile(
    store: &Store,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let position = refresh(store, window, now).await?;
    let (rows, stored) = store.recheck_index_coverage(position).await?;
    if rows >= stored {
        return Ok(false);
    }
    tracing::warn!(
        rows,
        stored,
        "the re-check index lacks stored copies; rebuilding it"
    );
    rebuild(store, window, now).await?;
    Ok(true)
}

/// The change one event makes to the index.
async fn change_for(
    store: &Store,
    event: &LoggedEvent,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<RecheckChange>, StoreError> {
    let cycle_id = event.aggregate_id.clone();
    let position = event.position;
    let slot_after = |proof: DateTime<Utc>| first_slot(&cycle_id, proof, window, now);
    let owner = || async {
        let cycle: BackupCycle = store.load(&cycle_id).await?;
        Ok::<_, StoreError>(cycle.started)
    };
    Ok(Some(match event.decode::<BackupCycleEvent>()? {
        BackupCycleEvent::Captured(captured) => {
            let Some(started) = owner().await? else {
                return Ok(None);
            };
            RecheckChange::Stored {
                cycle_id: cycle_id.clone(),
                tenant_id: started.tenant_id.to_string(),
                instance_id: started.instance_id.to_string(),
                captured_at: captured.captured_at.timestamp_millis(),
                retain_until: captured.retain_until.timestamp_millis(),
                position,
            }
        }
        BackupCycleEvent::Secured(secured) => {
            let Some(started) = owner().await? else {
                return Ok(None);
            };
            RecheckChange::Watch {
                slot: slot_after(secured.secured_at),
                cycle_id: cycle_id.clone(),
                tenant_id: started.tenant_id.to_string(),
                instance_id: started.instance_id.to_string(),
                proven_at: secured.secured_at.timestamp_millis(),
                retain_until: secured.retain_until.timestamp_millis(),
                position,
            }
        }
        BackupCycleEvent::Rechecked(rechecked) => RecheckChange::Proven {
            slot: slot_after(rechecked.rechecked_at.max(rechecked.slot)),
            cycle_id: cycle_id.clone(),
            proven_at: rechecked.rechecked_at.timestamp_millis(),
            retain_until: rechecked.retain_until.timestamp_millis(),
            position,
        },
        BackupCycleEvent::RecheckFailed(failed) => RecheckChange::Failing {
            slot: slot_after(failed.failed_at.max(failed.slot)),
            cycle_id: cycle_id.clone(),
            reason: failed.reason.to_string(),
            position,
        },
        BackupCycleEvent::Failed(_) => RecheckChange::Unwatch {
            cycle_id: cycle_id.clone(),
            position,
        },
        BackupCycleEvent::LockExtended(extended) => RecheckChange::Extended {
            cycle_id: cycle_id.clone(),
            retain_until: extended.retain_until.timestamp_millis(),
            position,
        },
        BackupCycleEvent::CopyRemoved(_) => RecheckChange::Removed {
            cycle_id: cycle_id.clone(),
            position,
        },
        _ => return Ok(None),
    }))
}

/// The slot a copy last proven at `proof` is due next (Unix ms): its first slot after the proof
/// — so proofs are at most one window apart — unless the proof is already more than a window
/// old when the index learns of it (a database from before re-checks, or sweeps stopped for
/// long): then its first slot after `now`, so a backlog is spread over the coming window
/// instead of read all at once.
fn first_slot(
    cycle: &str,
    proof: DateTime<Utc>,
    window: chrono::Duration,
    now: DateTime<Utc>,
) -> i64 {
    let from = if proof + window < now { now } else { proof };
    next_slot(cycle, from, window).timestamp_millis()
}
