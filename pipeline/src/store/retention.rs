//! Retention's reads of the stored copies' index (`copy_rechecks`, see [`super::rechecks`]):
//! which instances have a copy whose lock has run out, an instance's stored copies, and the hold
//! a removal takes on a copy so that no re-check reads it while it goes. The same SQL serves
//! both backends.

use super::{Store, StoreError};

impl Store {
    /// Up to `limit` instances (ids, in order, after `after`) with a stored copy whose
    /// retain-until is at or before `now` (Unix ms).
    ///
    /// # Errors
    /// A storage error.
    pub async fn instances_with_expired_copies(
        &self,
        now: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT DISTINCT instance_id FROM copy_rechecks \
                   WHERE retain_until IS NOT NULL AND retain_until <= $1 AND instance_id > $2 \
                   ORDER BY instance_id LIMIT $3";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(now)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The copies of `instance_id` still in the vault by the index: cycle and retain-until
    /// (Unix ms), by cycle.
    ///
    /// # Errors
    /// A storage error.
    pub async fn stored_copies(&self, instance_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT cycle_id, retain_until FROM copy_rechecks \
                   WHERE instance_id = $1 AND retain_until IS NOT NULL ORDER BY cycle_id";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(instance_id)
            .fetch_all(pool)
            .await?))
    }

    /// Holds the copy of `cycle_id` until `until` (Unix ms) unless a re-check holds it at `now`
    /// (its `due_at` moved past its slot by a claim that has not run out): the claim a re-check
    /// sweep takes, so no sweep starts reading a copy that is being removed. Returns whether
    /// the hold was taken. A removal that does not happen gives the copy back when the hold
    /// runs out.
    ///
    /// # Errors
    /// A storage error.
    pub async fn hold_copy(
        &self,
        cycle_id: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE copy_rechecks SET due_at = CASE WHEN slot IS NULL THEN NULL ELSE $3 END \
                   WHERE cycle_id = $1 AND retain_until IS NOT NULL \
                   AND (slot IS NULL OR due_at IS NULL OR due_at <= slot OR due_at <= $2)";
        let held = on_backend!(self, |pool| sqlx::query(sql)
            .bind(cycle_id)
            .bind(now)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(held == 1)
    }
}
