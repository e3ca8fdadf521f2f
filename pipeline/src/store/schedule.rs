//! The scheduler's index (`instance_schedule`): each instance's next due time (Unix
//! milliseconds) and cycle in flight, kept from the log's Instance events under the `schedule`
//! checkpoint and rebuildable from it (see [`crate::runtime::scheduler`]). A row only ever gives
//! way to one reflecting an event at least as new (`version`), so two processes keeping the
//! index at once cannot put an older state back. The same SQL serves both backends.

use super::{Store, StoreError};

/// One instance's row of the index.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScheduleRow {
    /// The instance (its aggregate id).
    pub instance_id: String,
    /// When it is next due, Unix milliseconds; `None` while it is not (see
    /// `Instance::next_due_at`).
    pub due_at: Option<i64>,
    /// The cycle in flight, if any.
    pub open_cycle: Option<String>,
    /// When a removed instance's copies and credentials go, Unix milliseconds (see
    /// `Instance::purge_due_at`); `None` for a live instance and once purged.
    pub purge_at: Option<i64>,
    /// From when the native backup watch is due, Unix milliseconds (see
    /// `Instance::native_watch_from`); `None` for an instance it leaves alone.
    pub native_watch_from: Option<i64>,
    /// The sequence of the instance's last event the row reflects.
    pub version: i64,
}

/// One Instance event of the log: where it is, whose it is, its sequence.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceMark {
    /// Its position in the log.
    pub position: i64,
    /// The instance.
    pub aggregate_id: String,
    /// Its sequence in the instance's stream.
    pub sequence: i64,
}

impl Store {
    /// Up to `limit` Instance events after `position`, in log order (a walk of the log's primary
    /// key from `position`: Instance events are a steady share of the log, and the tail after
    /// the checkpoint is short).
    ///
    /// # Errors
    /// A storage error.
    pub async fn instance_events_after(
        &self,
        position: i64,
        limit: i64,
    ) -> Result<Vec<InstanceMark>, StoreError> {
        // `aggregate_type || ''`: SQLite would otherwise search the unique index
        // (aggregate_type, aggregate_id, sequence) for every Instance event ever written and
        // sort them (a tick growing with history: 134 ms at 2 million events); this way both
        // databases walk the log's primary key from the checkpoint, which is short.
        let sql = "SELECT position, aggregate_id, sequence FROM event_log \
                   WHERE aggregate_type || '' = 'Instance' AND position > $1 \
                   ORDER BY position LIMIT $2";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(position)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Writes rows of the index (each only over an older one) and moves `checkpoint` forward to
    /// `position`, in one transaction.
    ///
    /// # Errors
    /// A storage error (nothing written).
    pub async fn save_schedule(
        &self,
        rows: &[ScheduleRow],
        checkpoint: &str,
        position: i64,
    ) -> Result<(), StoreError> {
        let upsert = "INSERT INTO instance_schedule \
                      (instance_id, due_at, open_cycle, purge_at, native_watch_from, version) \
                      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance_id) DO UPDATE SET \
                      due_at = excluded.due_at, open_cycle = excluded.open_cycle, \
                      purge_at = excluded.purge_at, \
                      native_watch_from = excluded.native_watch_from, \
                      version = excluded.version \
                      WHERE instance_schedule.version <= excluded.version";
        let save = self.forward_checkpoint_sql();
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            for row in rows {
                sqlx::query(upsert)
                    .bind(&row.instance_id)
                    .bind(row.due_at)
                    .bind(&row.open_cycle)
                    .bind(row.purge_at)
                    .bind(row.native_watch_from)
                    .bind(row.version)
                    .execute(&mut *tx)
                    .await?;
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

    /// Up to `limit` instances due at `now` (Unix milliseconds) by the index, earliest first,
    /// after `(due_at, instance_id)` `after` (for paging through a long list).
    ///
    /// # Errors
    /// A storage error.
    pub async fn due_instances(
        &self,
        now: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = "SELECT due_at, instance_id FROM instance_schedule \
                   WHERE due_at IS NOT NULL AND due_at <= $1 \
                   AND (due_at, instance_id) > ($2, $3) \
                   ORDER BY due_at, instance_id LIMIT $4";
        let (due, id) = after.unwrap_or((i64::MIN, ""));
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(now)
            .bind(due)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The instances with a cycle in flight by the index, with their cycle.
    ///
    /// # Errors
    /// A storage error.
    pub async fn in_flight_instances(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT instance_id, open_cycle FROM instance_schedule \
                   WHERE open_cycle IS NOT NULL ORDER BY instance_id";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// The removed instances whose purge is due at `now` (Unix ms), by instance.
    ///
    /// # Errors
    /// A storage error.
    pub async fn purges_due(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT instance_id FROM instance_schedule \
                   WHERE purge_at IS NOT NULL AND purge_at <= $1 ORDER BY instance_id";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(now)
            .fetch_all(pool)
            .await?))
    }

    /// Up to `limit` instances whose native backup watch is due by the index (its last reading
    /// at or before `before`, Unix ms), by instance id after `after` (for paging).
    ///
    /// # Errors
    /// A storage error.
    pub async fn native_watch_due(
        &self,
        before: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT instance_id FROM instance_schedule \
                   WHERE native_watch_from IS NOT NULL AND native_watch_from <= $1 \
                   AND instance_id > $2 ORDER BY instance_id LIMIT $3";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(before)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Every row of the index, by instance.
    ///
    /// # Errors
    /// A storage error.
    pub async fn schedule_rows(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let sql = "SELECT instance_id, due_at, open_cycle, purge_at, native_watch_from, version \
                   FROM instance_schedule \
                   ORDER BY instance_id";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// How many rows the index has, and how many instances the log has (through the partial
    /// index `event_log_firsts`, one entry per aggregate): the reconcile's check.
    ///
    /// # Errors
    /// A storage error.
    pub async fn schedule_coverage(&self) -> Result<(i64, i64), StoreError> {
        let rows = "SELECT COUNT(*) FROM instance_schedule";
        let instances =
            "SELECT COUNT(*) FROM event_log WHERE aggregate_type = 'Instance' AND sequence = 1";
        Ok(on_backend!(self, |pool| {
            let rows: i64 = sqlx::query_scalar(rows).fetch_one(pool).await?;
            let instances: i64 = sqlx::query_scalar(instances).fetch_one(pool).await?;
            (rows, instances)
        }))
    }

    /// Empties the index and sets `checkpoint` back to 0 (the start of a rebuild).
    ///
    /// # Errors
    /// A storage error.
    pub async fn clear_schedule(&self, checkpoint: &str) -> Result<(), StoreError> {
        self.clear_index("instance_schedule", checkpoint).await
    }
}
