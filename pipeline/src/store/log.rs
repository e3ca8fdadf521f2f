//! The global event log (`event_log`): every event's position in commit order, read by the
//! in-process transport and the NATS relay, and the wake-up readers wait on after a commit (on
//! PostgreSQL also after another process's, through the `restorable_events` channel).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Pool, Postgres};
use tokio::sync::Notify;

use super::{Background, Store, StoreError};

/// Events joined with their global position; callers add `WHERE` and `ORDER BY`.
const LOGGED_EVENTS: &str = "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, \
     e.event_type, e.event_version, CAST(e.payload AS text) AS payload \
     FROM event_log l JOIN events e \
     ON e.aggregate_type = l.aggregate_type AND e.aggregate_id = l.aggregate_id \
     AND e.sequence = l.sequence";

/// The channel PostgreSQL commits notify (see the PostgreSQL migrations' trigger).
const COMMIT_CHANNEL: &str = "restorable_events";

/// One event with its global position, as the transport hands it to consumers.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LoggedEvent {
    /// Global, gap-free order of commit.
    pub position: i64,
    /// `BackupCycle`, `Instance` or `TenantKey`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Per-aggregate sequence.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: String,
    /// e.g. `1.0`.
    pub event_version: String,
    /// The serialized event as stored (cqrs-es form: `{"Captured": {...}}`); decoded by the
    /// consumer, so one malformed event cannot stop the log.
    pub payload: String,
}

impl LoggedEvent {
    /// Decodes the payload as an aggregate's event type.
    ///
    /// # Errors
    /// [`StoreError::Malformed`] naming the position.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, StoreError> {
        serde_json::from_str(&self.payload).map_err(|e| {
            StoreError::Malformed(format!(
                "{} event at position {}: {e}",
                self.event_type, self.position
            ))
        })
    }
}

/// Listens on the commit channel and wakes `committed` at every commit of any process, until
/// the returned guard is dropped.
pub(super) async fn listen(
    pool: &Pool<Postgres>,
    committed: Arc<Notify>,
) -> Result<Background, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(COMMIT_CHANNEL).await?;
    let pool = pool.clone();
    Ok(Background(tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(_) => committed.notify_waiters(),
                Err(_) if pool.is_closed() => return,
                Err(error) => {
                    // recv reconnects on the next call; consumers poll meanwhile.
                    tracing::warn!(%error, "lost the commit notifications; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })))
}

impl Store {
    /// Ids of every aggregate of a type, in order of first event.
    ///
    /// # Errors
    /// A storage error.
    pub async fn aggregate_ids(&self, aggregate_type: &str) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT aggregate_id FROM event_log WHERE aggregate_type = $1 AND sequence = 1 \
                   ORDER BY position";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(aggregate_type)
            .fetch_all(pool)
            .await?))
    }

    /// Up to `limit` events after `position`, in commit order.
    ///
    /// # Errors
    /// A storage error.
    pub async fn read_after(
        &self,
        position: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let sql = format!("{LOGGED_EVENTS} WHERE l.position > $1 ORDER BY l.position LIMIT $2");
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(position)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The last position of the log (0 when it is empty).
    ///
    /// # Errors
    /// A storage error.
    pub async fn log_end(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(position), 0) FROM event_log";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await?))
    }

    /// The event at `position` of the log, if there is one.
    ///
    /// # Errors
    /// A storage error.
    pub async fn event_at(&self, position: i64) -> Result<Option<LoggedEvent>, StoreError> {
        Ok(self
            .read_after(position - 1, 1)
            .await?
            .into_iter()
            .find(|event| event.position == position))
    }

    /// Every event of one aggregate, in order.
    ///
    /// # Errors
    /// As [`Store::read_after`].
    pub async fn history(
        &self,
        aggregate_type: &str,
        id: &str,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let sql = format!(
            "{LOGGED_EVENTS} WHERE l.aggregate_type = $1 AND l.aggregate_id = $2 ORDER BY l.position"
        );
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(aggregate_type)
            .bind(id)
            .fetch_all(pool)
            .await?))
    }

    /// The `EndpointChanged` events of one instance, in order: read through a partial index
    /// that holds only those events (migration 8), so the cost does not grow with the
    /// instance's cycles. (The event type is written out: SQLite uses a partial index only
    /// for a query naming its condition literally.)
    ///
    /// # Errors
    /// As [`Store::read_after`].
    pub async fn endpoint_changes(&self, id: &str) -> Result<Vec<LoggedEvent>, StoreError> {
        let sql = format!(
            "{LOGGED_EVENTS} WHERE e.aggregate_type = 'Instance' AND e.aggregate_id = $1 \
             AND e.event_type = 'EndpointChanged' ORDER BY l.position"
        );
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(id)
            .fetch_all(pool)
            .await?))
    }

    /// Resolves after the next commit made through this store (or, on PostgreSQL, by any
    /// process).
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }
}
