//! Retention: the stage that removes each stored copy once its Object Lock has run out and no
//! rule keeps it, extends the lock of the copies a rule keeps, and finishes the offboarding of
//! removed instances.
//!
//! # What is kept
//! The rules are in [`plan`]: a copy is removed once its retain-until has passed, unless it is
//! its instance's newest Verified or newest Restore-Tested copy, or the tenant's
//! grandfather-father-son rule ([`RetentionPolicy::gfs_for`]) keeps it; a kept copy's lock is
//! extended (never shortened), so what is kept stays immutable. Each outcome is an event on the
//! copy's cycle: `LockExtended` (why, until when) or `CopyRemoved` (why, which lock had run
//! out), recorded only after the vault did it.
//!
//! # Offboarding
//! `restorable instance remove` (and the API) records `InstanceRemoved` with a purge date
//! ([`RetentionPolicy::remove_after`], default 30 days): the instance stops for good; until the
//! purge date its copies follow the rules above, with no lock extended past it; from then on
//! every copy is removed as soon as its own lock has run out (Object Lock in compliance mode
//! cannot be shortened, not even by us), and when none is left the instance is purged
//! (`InstancePurged`): its credentials are forgotten.
//!
//! # Who does it
//! [`sweep_at`] brings the stored copies' index ([`crate::recheck::index`]) and the
//! scheduler's (purge dates) up to the log, then takes every instance with a copy whose lock
//! has run out or whose purge is due. A removal first *holds* the copy against the re-check
//! sweeps ([`crate::store::Store::hold_copy`]), so no re-check reads a copy as it goes and
//! reports it missing. The vault unavailable is infrastructure: nothing is recorded, the next
//! sweep tries again.

pub mod plan;
pub mod policy;

pub use policy::{Gfs, RetentionPolicy};

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{
    BackupCycle, BackupCycleCommand, CopyRemoved, KeptBecause, LockExtended, RemovedBecause,
};
use restorable_domain::instance::{Instance, InstanceCommand, InstancePurged, InstanceRemoved};
use restorable_domain::ladder::Rung;
use tokio_util::sync::CancellationToken;

use crate::periodic::{Round, Rounds};
use crate::pipeline::Pipeline;
use crate::store::StoreError;
use crate::vault::VaultError;
use plan::{Decision, Rules, Standing, StoredCopy};

/// How long a removal holds a copy against the re-check sweeps.
const HOLD: chrono::Duration = chrono::Duration::minutes(10);
/// Instances read per page of the index.
const PAGE: i64 = 1000;

/// Offboards `instance_id` at `now`: stopped for good, its copies and credentials removed from
/// `now` + [`RetentionPolicy::remove_after`] on. Returns the purge date (the first one, when
/// the instance was already removed).
///
/// # Errors
/// [`StoreError::Rejected`] for an instance that is not enrolled, or a storage error.
pub async fn offboard(
    pipeline: &Pipeline,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    let purge_after = now + pipeline.settings.retention_policy.remove_after;
    let remove = InstanceCommand::Remove(InstanceRemoved {
        removed_at: now,
        purge_after,
    });
    pipeline.store.instance(instance_id, remove).await?;
    let instance: Instance = pipeline.store.load(instance_id).await?;
    Ok(instance.removed.map_or(purge_after, |r| r.purge_after))
}

/// What one sweep did (cycle ids; instance ids for `purged`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Copies removed from the vault.
    pub removed: Vec<String>,
    /// Copies kept, their lock extended.
    pub extended: Vec<(String, KeptBecause)>,
    /// Copies left for the next sweep: the vault unavailable, or a re-check reading them.
    pub deferred: Vec<String>,
    /// Copies the vault would not act on for another reason (logged; tried again next sweep).
    pub refused: Vec<(String, String)>,
    /// Removed instances purged: every copy gone, credentials forgotten.
    pub purged: Vec<String>,
}

/// One sweep at `now`.
///
/// # Errors
/// A store failure (what was recorded stays recorded; the rest is done by the next sweep).
pub async fn sweep_at(pipeline: &Pipeline, now: DateTime<Utc>) -> Result<Sweep, StoreError> {
    let store = &pipeline.store;
    crate::recheck::index::refresh(store, pipeline.settings.recheck_window, now).await?;
    crate::schedule::refresh(store).await?;
    let now_ms = now.timestamp_millis();
    let mut instances: BTreeSet<String> = store.purges_due(now_ms).await?.into_iter().collect();
    let mut after = String::new();
    loop {
        let page = store
            .instances_with_expired_copies(now_ms, &after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.clone();
        instances.extend(page);
    }
    let started = tokio::time::Instant::now();
    let clock = || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let mut sweep = Sweep::default();
    for instance_id in instances {
        sweep_instance(pipeline, &instance_id, now, &clock, &mut sweep).await?;
    }
    Ok(sweep)
}

/// One instance's copies at `now`.
async fn sweep_instance(
    pipeline: &Pipeline,
    instance_id: &str,
    now: DateTime<Utc>,
    clock: &impl Fn() -> DateTime<Utc>,
    sweep: &mut Sweep,
) -> Result<(), StoreError> {
    let store = &pipeline.store;
    let instance: Instance = store.load(instance_id).await?;
    let Some(enrolled) = &instance.enrolled else {
        return Ok(());
    };
    let standing = match &instance.removed {
        Some(removed) if removed.purge_after <= now => Standing::PurgeDue,
        Some(removed) => Standing::Removed {
            purge_after: removed.purge_after,
        },
        None => Standing::Live,
    };
    let mut copies = Vec::new();
    let mut objects = Vec::new();
    for (cycle_id, _) in store.stored_copies(instance_id).await? {
        let cycle: BackupCycle = store.load(&cycle_id).await?;
        let (Some(captured), None) = (&cycle.captured, &cycle.removed) else {
            continue;
        };
        let good = |rung: Rung| !cycle.is_failed() && cycle.rung >= Some(rung);
        copies.push(StoredCopy {
            cycle_id,
            made_at: captured.captured_at,
            retain_until: cycle.retain_until.unwrap_or(captured.retain_until),
            verified: good(Rung::Verified),
            restore_tested: good(Rung::RestoreTested),
        });
        objects.push((captured.object_key.clone(), captured.version_id.clone()));
    }
    let rules = Rules {
        keep_for: pipeline.settings.retention_for(&enrolled.tenant_id),
        gfs: pipeline
            .settings
            .retention_policy
            .gfs_for(&enrolled.tenant_id),
        standing,
    };
    let decisions = plan::decide(&copies, &rules, now);
    let mut left = 0usize;
    for ((copy, (key, version)), decision) in copies.iter().zip(&objects).zip(decisions) {
        let object = Object { key, version };
        let done = match decision {
            Decision::Locked => false,
            Decision::Extend { until, because } => {
                extend(pipeline, copy, &object, until, because, clock, sweep).await?;
                false
            }
            Decision::Remove(because) => {
                remove(pipeline, copy, &object, because, now, clock, sweep).await?
            }
        };
        left += usize::from(!done);
    }
    if standing == Standing::PurgeDue && left == 0 && instance.purged_at.is_none() {
        let purge = InstanceCommand::Purge(InstancePurged { purged_at: clock() });
        match store.instance(instance_id, purge).await {
            Ok(()) => {
                tracing::info!(instance = instance_id, "removed instance purged");
                sweep.purged.push(instance_id.to_owned());
            }
            Err(error) if error.is_refusal() => {
                tracing::warn!(instance = instance_id, why = %error, "purge not recorded");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Where a copy is in the vault.
struct Object<'a> {
    key: &'a str,
    version: &'a str,
}

/// Extends the copy's lock in the vault, then records it.
async fn extend(
    pipeline: &Pipeline,
    copy: &StoredCopy,
    object: &Object<'_>,
    until: DateTime<Utc>,
    because: KeptBecause,
    clock: &impl Fn() -> DateTime<Utc>,
    sweep: &mut Sweep,
) -> Result<(), StoreError> {
    let cycle_id = &copy.cycle_id;
    let extended = pipeline
        .vault
        .extend_lock(object.key, object.version, until)
        .await;
    let retain_until = match extended {
        Ok(stored) => match stored.lock {
            Some(lock) if lock.retain_until >= until => lock.retain_until,
            found => {
                let detail = format!("asked to lock until {until}, the vault shows {found:?}");
                tracing::error!(cycle = %cycle_id, %detail, "lock not extended");
                sweep.refused.push((cycle_id.clone(), detail));
                return Ok(());
            }
        },
        Err(error) => {
            vault_refused(cycle_id, "extending the lock", &error, sweep);
            return Ok(());
        }
    };
    let command = BackupCycleCommand::RecordLockExtended(LockExtended {
        retain_until,
        because,
        extended_at: clock(),
    });
    record(pipeline, cycle_id, command).await?;
    sweep.extended.push((cycle_id.clone(), because));
    Ok(())
}

/// Removes the copy from the vault, then records it; returns whether it is gone.
async fn remove(
    pipeline: &Pipeline,
    copy: &StoredCopy,
    object: &Object<'_>,
    because: RemovedBecause,
    now: DateTime<Utc>,
    clock: &impl Fn() -> DateTime<Utc>,
    sweep: &mut Sweep,
) -> Result<bool, StoreError> {
    let cycle_id = &copy.cycle_id;
    let held = pipeline
        .store
        .hold_copy(
            cycle_id,
            now.timestamp_millis(),
            (clock() + HOLD).timestamp_millis(),
        )
        .await?;
    if !held {
        tracing::info!(cycle = %cycle_id, "removal deferred: a re-check is reading the copy");
        sweep.deferred.push(cycle_id.clone());
        return Ok(false);
    }
    match pipeline.vault.delete(object.key, object.version).await {
        Ok(()) => {}
        Err(VaultError::NotFound { .. }) => {
            // Removed by an earlier sweep that stopped before recording it.
            tracing::warn!(cycle = %cycle_id, "the copy to remove was already gone from the vault");
        }
        Err(error) => {
            vault_refused(cycle_id, "removing the copy", &error, sweep);
            return Ok(false);
        }
    }
    let command = BackupCycleCommand::RecordCopyRemoved(CopyRemoved {
        because,
        retain_until: copy.retain_until,
        removed_at: clock(),
    });
    record(pipeline, cycle_id, command).await?;
    sweep.removed.push(cycle_id.clone());
    Ok(true)
}

/// Sorts a vault error: unavailable (deferred) or refused (logged).
fn vault_refused(cycle_id: &str, doing: &str, error: &VaultError, sweep: &mut Sweep) {
    if error.is_transient() {
        tracing::warn!(cycle = cycle_id, %error, "{doing} deferred: the vault is unavailable");
        sweep.deferred.push(cycle_id.to_owned());
    } else {
        tracing::error!(cycle = cycle_id, %error, "{doing} refused by the vault");
        sweep.refused.push((cycle_id.to_owned(), error.to_string()));
    }
}

/// Records a retention outcome on its cycle (a refusal is logged: the cycle knows better).
async fn record(
    pipeline: &Pipeline,
    cycle_id: &str,
    command: BackupCycleCommand,
) -> Result<(), StoreError> {
    match pipeline.store.cycle(cycle_id, command).await {
        Err(error) if error.is_refusal() => {
            tracing::warn!(cycle = cycle_id, why = %error, "retention outcome not recorded");
            Ok(())
        }
        other => other,
    }
}

/// How often a process running the `retention` stage sweeps.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps every `every` until `shutdown` is cancelled.
pub async fn run(pipeline: Pipeline, every: Duration, shutdown: CancellationToken) {
    crate::periodic::repeat(every, Rounds::Cancellable, shutdown, &mut Sweeps(pipeline)).await;
}

/// Retention's sweeps, one a round.
struct Sweeps(Pipeline);

impl Round for Sweeps {
    async fn once(&mut self) {
        match sweep_at(&self.0, Utc::now()).await {
            Ok(sweep) => tracing::info!(
                removed = sweep.removed.len(),
                extended = sweep.extended.len(),
                deferred = sweep.deferred.len(),
                refused = sweep.refused.len(),
                purged = sweep.purged.len(),
                "retention sweep"
            ),
            Err(error) => tracing::error!(%error, "retention sweep failed"),
        }
    }
}
