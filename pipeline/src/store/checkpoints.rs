//! Consumers' checkpoints (`consumer_checkpoints`): how far each consumer (a stage, the NATS
//! relay, the projector) has read the log. A checkpoint only moves forward, except when an
//! operator rewinds every one for a replay.

use super::{Lease, Store, StoreError};

impl Store {
    /// A consumer's checkpoint (0 before its first run).
    ///
    /// # Errors
    /// A storage error.
    pub async fn checkpoint(&self, consumer: &str) -> Result<i64, StoreError> {
        let sql = "SELECT position FROM consumer_checkpoints WHERE consumer = $1";
        let position: Option<i64> = on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(consumer)
            .fetch_optional(pool)
            .await?);
        Ok(position.unwrap_or(0))
    }

    /// Moves a consumer's checkpoint forward (never back).
    ///
    /// # Errors
    /// A storage error.
    pub async fn save_checkpoint(&self, consumer: &str, position: i64) -> Result<(), StoreError> {
        let sql = self.forward_checkpoint_sql();
        on_backend!(self, |pool| sqlx::query(&sql)
            .bind(consumer)
            .bind(position)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Moves a checkpoint forward (never back) in one transaction with a check that `lease` is
    /// still held (and its extension): a relay that lost its lease moves nothing.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`], or a storage error.
    pub async fn save_checkpoint_under(
        &self,
        lease: &Lease,
        consumer: &str,
        position: i64,
    ) -> Result<(), StoreError> {
        self.save_view_rows(&[], consumer, position, lease).await
    }

    /// Sets every consumer's checkpoint back to `position`, so the log after it is delivered
    /// again (an operator's replay; the aggregates make the repeated reactions no-ops).
    ///
    /// # Errors
    /// A storage error.
    pub async fn rewind_checkpoints(&self, position: i64) -> Result<(), StoreError> {
        let sql = "UPDATE consumer_checkpoints SET position = $1 WHERE position > $1";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(position)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// `INSERT ... ON CONFLICT` that moves `$1`'s checkpoint to `$2` only forward.
    /// Empties an index kept from the log (`table`, one of ours) and sets its `checkpoint` back
    /// to 0, in one transaction: the start of its rebuild.
    pub(super) async fn clear_index(
        &self,
        table: &'static str,
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let delete = format!("DELETE FROM {table}");
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&delete).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM consumer_checkpoints WHERE consumer = $1")
                .bind(checkpoint)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub(super) fn forward_checkpoint_sql(&self) -> String {
        let greatest = self.backend.dialect().greatest;
        format!(
            "INSERT INTO consumer_checkpoints (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET \
             position = {greatest}(consumer_checkpoints.position, excluded.position)"
        )
    }
}
