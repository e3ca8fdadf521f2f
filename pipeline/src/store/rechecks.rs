//! The stored copies' index (`copy_rechecks`): one row per copy stored in the vault (from
//! Captured on), with its Object Lock retain-until (retention, [`crate::retention`]) and, once
//! it reached Secured, when it was last proven intact, the slot it is due for next and whether
//! its last re-check failed (the rotating re-checks); kept from the log under the `rechecks`
//! checkpoint (see [`crate::recheck`]). A row
//! only gives way to one reflecting a later log position, so two processes keeping the index at
//! once cannot put an older state back. A sweep *claims* due rows by moving their `due_at`
//! forward (a claim that runs out gives the copy back), so sweeps in several workers share the
//! copies instead of reading each twice. The same SQL serves both backends.

use super::{Store, StoreError};
use crate::store::LoggedEvent;

/// The BackupCycle events the index is kept from.
const INDEXED: &str = "('Captured', 'Secured', 'Rechecked', 'RecheckFailed', 'Failed', \
                       'LockExtended', 'CopyRemoved')";

/// One change to the index, from one event at `position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecheckChange {
    /// A copy was stored: retention keeps track of it (re-checks wait for Secured).
    Stored {
        /// The cycle.
        cycle_id: String,
        /// Its tenant.
        tenant_id: String,
        /// Its instance.
        instance_id: String,
        /// When it was captured (Unix ms).
        captured_at: i64,
        /// Its lock's retain-until (Unix ms).
        retain_until: i64,
        /// The event's log position.
        position: i64,
    },
    /// A copy reached Secured: watch it from now on.
    Watch {
        /// The cycle.
        cycle_id: String,
        /// Its tenant.
        tenant_id: String,
        /// Its instance.
        instance_id: String,
        /// When it was Secured (Unix ms).
        proven_at: i64,
        /// Its first re-check slot (Unix ms).
        slot: i64,
        /// The retain-until Secured found (Unix ms).
        retain_until: i64,
        /// The event's log position.
        position: i64,
    },
    /// A re-check found the copy intact.
    Proven {
        /// The cycle.
        cycle_id: String,
        /// When (Unix ms).
        proven_at: i64,
        /// Its next slot (Unix ms).
        slot: i64,
        /// The retain-until the re-check found (Unix ms).
        retain_until: i64,
        /// The event's log position.
        position: i64,
    },
    /// A re-check found the copy changed, gone or unlocked.
    Failing {
        /// The cycle.
        cycle_id: String,
        /// The reason code.
        reason: String,
        /// Its next slot (Unix ms).
        slot: i64,
        /// The event's log position.
        position: i64,
    },
    /// The cycle failed: nothing is vouched for, nothing to re-check (the copy stays until
    /// retention removes it).
    Unwatch {
        /// The cycle.
        cycle_id: String,
        /// The event's log position.
        position: i64,
    },
    /// Retention extended the copy's lock.
    Extended {
        /// The cycle.
        cycle_id: String,
        /// The new retain-until (Unix ms).
        retain_until: i64,
        /// The event's log position.
        position: i64,
    },
    /// Retention removed the copy: nothing left to re-check or to remove.
    Removed {
        /// The cycle.
        cycle_id: String,
        /// The event's log position.
        position: i64,
    },
}

/// How well the stored copies are covered by re-checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecheckCoverage {
    /// Copies watched (reached Secured, cycle not failed).
    pub copies: u64,
    /// Of those, proven intact within the window (by Secured or a re-check).
    pub proven: u64,
    /// Of those, whose last re-check failed.
    pub failing: u64,
    /// The oldest proof of any watched copy (Unix ms).
    pub oldest_proof: Option<i64>,
}

impl RecheckCoverage {
    /// The share of watched copies proven within the window (1 when there are none).
    pub fn share(&self) -> f64 {
        if self.copies == 0 {
            1.0
        } else {
            self.proven as f64 / self.copies as f64
        }
    }
}

impl Store {
    /// Up to `limit` BackupCycle events the index is kept from, after `position` and up to
    /// `end`, in log order (a walk of the log's primary key from `position`).
    ///
    /// # Errors
    /// A storage error.
    pub async fn recheck_events(
        &self,
        position: i64,
        end: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        // `|| ''`: walk the log from the checkpoint rather than an index of every cycle event.
        let sql = format!(
            "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
             e.event_version, CAST(e.payload AS text) AS payload \
             FROM event_log l JOIN events e ON e.aggregate_type = l.aggregate_type \
             AND e.aggregate_id = l.aggregate_id AND e.sequence = l.sequence \
             WHERE l.position > $1 AND l.position <= $2 \
             AND l.aggregate_type || '' = 'BackupCycle' AND e.event_type IN {INDEXED} \
             ORDER BY l.position LIMIT $3"
        );
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(position)
            .bind(end)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Applies `changes` (each only over a row reflecting an earlier position) and moves
    /// `checkpoint` forward to `position`, in one transaction.
    ///
    /// # Errors
    /// A storage error (nothing written).
    pub async fn save_rechecks(
        &self,
        changes: &[RecheckChange],
        checkpoint: &str,
        position: i64,
    ) -> Result<(), StoreError> {
        let stored = "INSERT INTO copy_rechecks (cycle_id, tenant_id, instance_id, proven_at, \
                      slot, due_at, failing, retain_until, position) \
                      VALUES ($1, $2, $3, $4, NULL, NULL, NULL, $5, $6) \
                      ON CONFLICT (cycle_id) DO NOTHING";
        let watch = "INSERT INTO copy_rechecks (cycle_id, tenant_id, instance_id, proven_at, \
                     slot, due_at, failing, retain_until, position) \
                     VALUES ($1, $2, $3, $4, $5, $5, NULL, $6, $7) \
                     ON CONFLICT (cycle_id) DO UPDATE SET proven_at = excluded.proven_at, \
                     slot = excluded.slot, due_at = excluded.due_at, failing = NULL, \
                     retain_until = excluded.retain_until, position = excluded.position \
                     WHERE copy_rechecks.position < excluded.position";
        let proven = "UPDATE copy_rechecks SET proven_at = $2, slot = $3, due_at = $3, \
                      failing = NULL, retain_until = $4, position = $5 \
                      WHERE cycle_id = $1 AND position < $5 AND retain_until IS NOT NULL";
        let extended = "UPDATE copy_rechecks SET retain_until = $2, position = $3 \
                        WHERE cycle_id = $1 AND position < $3 AND retain_until IS NOT NULL";
        let removed = "UPDATE copy_rechecks SET slot = NULL, due_at = NULL, \
                       retain_until = NULL, position = $2 WHERE cycle_id = $1 AND position < $2";
        let failing = "UPDATE copy_rechecks SET failing = $2, slot = $3, due_at = $3, \
                       position = $4 WHERE cycle_id = $1 AND position < $4";
        let unwatch = "UPDATE copy_rechecks SET slot = NULL, due_at = NULL, position = $2 \
                       WHERE cycle_id = $1 AND position < $2";
        let save = self.forward_checkpoint_sql();
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            for change in changes {
                let query = match change {
                    RecheckChange::Stored {
                        cycle_id,
                        tenant_id,
                        instance_id,
                        captured_at,
                        retain_until,
                        position,
                    } => sqlx::query(stored)
                        .bind(cycle_id)
                        .bind(tenant_id)
                        .bind(instance_id)
                        .bind(captured_at)
                        .bind(retain_until)
                        .bind(position),
                    RecheckChange::Watch {
                        cycle_id,
                        tenant_id,
                        instance_id,
                        proven_at,
                        slot,
                        retain_until,
                        position,
                    } => sqlx::query(watch)
                        .bind(cycle_id)
                        .bind(tenant_id)
                        .bind(instance_id)
                        .bind(proven_at)
                        .bind(slot)
                        .bind(retain_until)
                        .bind(position),
                    RecheckChange::Proven {
                        cycle_id,
                        proven_at,
                        slot,
                        retain_until,
                        position,
                    } => sqlx::query(proven)
                        .bind(cycle_id)
                        .bind(proven_at)
                        .bind(slot)
                        .bind(retain_until)
                        .bind(position),
                    RecheckChange::Extended {
                        cycle_id,
                        retain_until,
                        position,
                    } => sqlx::query(extended)
                        .bind(cycle_id)
                        .bind(retain_until)
                        .bind(position),
                    RecheckChange::Removed { cycle_id, position } => {
                        sqlx::query(removed).bind(cycle_id).bind(position)
                    }
                    RecheckChange::Failing {
                        cycle_id,
                        reason,
                        slot,
                        position,
                    } => sqlx::query(failing)
                        .bind(cycle_id)
                        .bind(reason)
                        .bind(slot)
                        .bind(position),
                    RecheckChange::Unwatch { cycle_id, position } => {
                        sqlx::query(unwatch).bind(cycle_id).bind(position)
                    }
                };
                query.execute(&mut *tx).await?;
            }
            sqlx::query(&save)
                .bind(checkpoint)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` copies due at `now` (Unix ms), earliest first, by moving their
    /// `due_at` to `until`: another sweep does not take them before then. Returns each claimed
    /// copy's cycle and slot.
    ///
    /// # Errors
    /// A storage error (nothing claimed).
    pub async fn claim_rechecks(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        // The outer `due_at <= $1` is checked again on the row a concurrent claim left
        // (PostgreSQL re-reads a row it waited for), so no copy is claimed twice.
        let sql = "UPDATE copy_rechecks SET due_at = $2 \
                   WHERE due_at <= $1 AND cycle_id IN (SELECT cycle_id FROM copy_rechecks \
                   WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at, cycle_id LIMIT $3) \
                   RETURNING cycle_id, slot";
        let claimed: Vec<(String, Option<i64>)> = on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(now)
            .bind(until)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        Ok(claimed
            .into_iter()
            .filter_map(|(cycle, slot)| Some((cycle, slot?)))
            .collect())
    }

    /// The coverage of the watched copies of `tenants` (every tenant: `None`): how many are
    /// watched, how many were proven since `since` (Unix ms), how many are failing, the oldest
    /// proof.
    ///
    /// # Errors
    /// A storage error.
    pub async fn recheck_coverage(
        &self,
        tenants: Option<&[String]>,
        since: i64,
    ) -> Result<RecheckCoverage, StoreError> {
        let filter = match tenants {
            None => String::new(),
            Some([]) => return Ok(RecheckCoverage::default()),
            Some(tenants) => {
                let marks: Vec<String> =
                    (0..tenants.len()).map(|i| format!("${}", i + 2)).collect();
                format!(" AND tenant_id IN ({})", marks.join(", "))
            }
        };
        let sql = format!(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN proven_at >= $1 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN failing IS NULL THEN 0 ELSE 1 END), 0), \
             MIN(proven_at) FROM copy_rechecks WHERE slot IS NOT NULL{filter}"
        );
        let (copies, proven, failing, oldest): (i64, i64, i64, Option<i64>) =
            on_backend!(self, |pool| {
                let mut query = sqlx::query_as(&sql).bind(since);
                for tenant in tenants.unwrap_or_default() {
                    query = query.bind(tenant);
                }
                query.fetch_one(pool).await?
            });
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(RecheckCoverage {
            copies: count(copies),
            proven: count(proven),
            failing: count(failing),
            oldest_proof: oldest,
        })
    }

    /// How many rows the index has, and how many copies were stored (Captured) in the log up to
    /// `position` (each has a row once the index is past it).
    ///
    /// # Errors
    /// A storage error.
    pub async fn recheck_index_coverage(&self, position: i64) -> Result<(i64, i64), StoreError> {
        let rows = "SELECT COUNT(*) FROM copy_rechecks";
        let secured = "SELECT COUNT(*) FROM event_log l JOIN events e \
                       ON e.aggregate_type = l.aggregate_type AND e.aggregate_id = l.aggregate_id \
                       AND e.sequence = l.sequence \
                       WHERE l.position <= $1 AND l.aggregate_type || '' = 'BackupCycle' \
                       AND e.event_type = 'Captured'";
        Ok(on_backend!(self, |pool| {
            let rows: i64 = sqlx::query_scalar(rows).fetch_one(pool).await?;
            let secured: i64 = sqlx::query_scalar(secured)
                .bind(position)
                .fetch_one(pool)
                .await?;
            (rows, secured)
        }))
    }

    /// Empties the index and resets `checkpoint` (a rebuild refills it from the whole log).
    ///
    /// # Errors
    /// A storage error.
    pub async fn clear_rechecks(&self, checkpoint: &str) -> Result<(), StoreError> {
        self.clear_index("copy_rechecks", checkpoint).await
    }
}
