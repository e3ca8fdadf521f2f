//! Dead letters (`dead_letters`): events a consumer gave up on because their reaction can never
//! succeed (see [`crate::error`]), one row per consumer and log position, kept with the reason
//! and the number of attempts until an operator replays them (`restorable dead-letters`). The
//! event itself stays in the event store; a row only says who gave up on it and why.

use super::{LoggedEvent, Store, StoreError};
use chrono::Utc;

/// One event a consumer gave up on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    /// The consumer (stage) that gave up, e.g. `capture`.
    pub consumer: String,
    /// The event's position in the log.
    pub position: i64,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: String,
    /// Why it was given up on (never a secret: error texts of the pipeline).
    pub reason: String,
    /// How many times it was tried.
    pub attempts: i64,
    /// When it was given up on (RFC 3339).
    pub created_at: String,
    /// When an operator replayed it successfully, if they did.
    pub replayed_at: Option<String>,
}

const COLUMNS: &str = "consumer, position, aggregate_type, aggregate_id, sequence, event_type, \
                       reason, attempts, created_at, replayed_at";

impl Store {
    /// Records that `consumer` gave up on `event` (a repeat keeps the first record).
    ///
    /// # Errors
    /// A storage error.
    pub async fn add_dead_letter(
        &self,
        consumer: &str,
        event: &LoggedEvent,
        reason: &str,
        attempts: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO dead_letters ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL) \
             ON CONFLICT (consumer, position) DO NOTHING"
        );
        on_backend!(self, |pool| sqlx::query(&sql)
            .bind(consumer)
            .bind(event.position)
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .bind(&event.event_type)
            .bind(reason)
            .bind(attempts)
            .bind(Utc::now().to_rfc3339())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Every dead letter, oldest first; with `pending_only`, those not replayed yet.
    ///
    /// # Errors
    /// A storage error.
    pub async fn dead_letters(&self, pending_only: bool) -> Result<Vec<DeadLetter>, StoreError> {
        // Two statements, not `$1 = 0 OR ...`: a prepared plan then uses the pending index.
        let only = if pending_only {
            "WHERE replayed_at IS NULL"
        } else {
            ""
        };
        let sql = format!("SELECT {COLUMNS} FROM dead_letters {only} ORDER BY position, consumer");
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await?))
    }

    /// How many dead letters wait for a replay (for `/metrics`).
    ///
    /// # Errors
    /// A storage error.
    pub async fn pending_dead_letters(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL";
        let pending: i64 =
            on_backend!(self, |pool| sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(pending)
    }

    /// Marks a dead letter replayed (its reaction ran to the end); `false` if there is none.
    ///
    /// # Errors
    /// A storage error.
    pub async fn mark_dead_letter_replayed(
        &self,
        consumer: &str,
        position: i64,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE dead_letters SET replayed_at = $3 WHERE consumer = $1 AND position = $2";
        let updated = on_backend!(self, |pool| sqlx::query(sql)
            .bind(consumer)
            .bind(position)
            .bind(Utc::now().to_rfc3339())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(updated == 1)
    }
}
