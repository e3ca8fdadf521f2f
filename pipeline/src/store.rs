//! The event store on SQLite (sqlite-es), the embedded default: one durable file in the data
//! directory, with the project's own migrations.
//!
//! sqlite-es owns the `events` table's shape; we add `event_log`, filled by a trigger in the
//! same statement as each insert, which gives every event a global, gap-free position (the
//! `events` table only orders per aggregate). The in-process transport reads `event_log`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore};
use restorable_domain::cycle::BackupCycle;
use restorable_domain::instance::Instance;
use restorable_domain::tenant_key::TenantKey;
use sqlite_es::SqliteEventRepository;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Row, Sqlite};
use tokio::sync::Notify;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, migrated or queried.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    /// An aggregate refused a command (the message is the domain's typed error).
    #[error("{0}")]
    Rejected(String),
    /// A concurrent writer committed first; the command may be retried.
    #[error("concurrent update of the same aggregate")]
    Conflict,
    /// An event in the store could not be read back (malformed payload).
    #[error("event store: malformed event: {0}")]
    Malformed(String),
}

impl<E: std::error::Error> From<AggregateError<E>> for StoreError {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(e) => StoreError::Rejected(e.to_string()),
            AggregateError::AggregateConflict => StoreError::Conflict,
            AggregateError::DeserializationError(e) => StoreError::Malformed(e.to_string()),
            AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e) => {
                StoreError::Rejected(format!("event store: {e}"))
            }
        }
    }
}

/// The migrations this release needs, applied in order once each.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE event_log
(
  position       integer PRIMARY KEY AUTOINCREMENT,
  aggregate_type text    NOT NULL,
  aggregate_id   text    NOT NULL,
  sequence       integer NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE TRIGGER events_into_log AFTER INSERT ON events
BEGIN
  INSERT INTO event_log (aggregate_type, aggregate_id, sequence)
  VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
END;
CREATE TABLE consumer_checkpoints
(
  consumer text    PRIMARY KEY,
  position integer NOT NULL
) STRICT;
"#,
)];

/// Events joined with their global position; callers add `WHERE` and `ORDER BY`.
const LOGGED_EVENTS: &str = "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, \
     e.event_type, e.event_version, e.payload \
     FROM event_log l JOIN events e \
     ON e.aggregate_type = l.aggregate_type AND e.aggregate_id = l.aggregate_id \
     AND e.sequence = l.sequence";

/// One event with its global position, as the transport hands it to consumers.
#[derive(Clone, Debug)]
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

/// The event store: command execution for each aggregate, aggregate loading, and the log.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Sqlite>,
    cycles:
        Arc<CqrsFramework<BackupCycle, PersistedEventStore<SqliteEventRepository, BackupCycle>>>,
    instances: Arc<CqrsFramework<Instance, PersistedEventStore<SqliteEventRepository, Instance>>>,
    keys: Arc<CqrsFramework<TenantKey, PersistedEventStore<SqliteEventRepository, TenantKey>>>,
    committed: Arc<Notify>,
}

impl Store {
    /// Opens (creating if needed) `events.db` in `data_dir` and applies pending migrations.
    ///
    /// # Errors
    /// [`StoreError::Database`] if the file cannot be opened or migrated.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let url = format!("sqlite://{}", data_dir.join("events.db").display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        Ok(Self::with_pool(pool))
    }

    fn with_pool(pool: Pool<Sqlite>) -> Self {
        fn framework<A: Aggregate<Services = ()>>(
            pool: &Pool<Sqlite>,
        ) -> Arc<CqrsFramework<A, PersistedEventStore<SqliteEventRepository, A>>> {
            let store =
                PersistedEventStore::new_event_store(SqliteEventRepository::new(pool.clone()));
            Arc::new(CqrsFramework::new(store, vec![], ()))
        }
        Self {
            cycles: framework(&pool),
            instances: framework(&pool),
            keys: framework(&pool),
            pool,
            committed: Arc::new(Notify::new()),
        }
    }

    /// The connection pool (for read models and tests).
    pub fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    /// Executes a command on a backup cycle.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] with the domain's reason, or a storage error.
    pub async fn cycle(
        &self,
        id: &str,
        command: <BackupCycle as Aggregate>::Command,
    ) -> Result<(), StoreError> {
        self.guard::<BackupCycle>(id).await?;
        retry_on_conflict(|| self.cycles.execute(id, command.clone())).await?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Executes a command on an instance.
    ///
    /// # Errors
    /// As [`Store::cycle`].
    pub async fn instance(
        &self,
        id: &str,
        command: <Instance as Aggregate>::Command,
    ) -> Result<(), StoreError> {
        self.guard::<Instance>(id).await?;
        retry_on_conflict(|| self.instances.execute(id, command.clone())).await?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Executes a command on a tenant key.
    ///
    /// # Errors
    /// As [`Store::cycle`].
    pub async fn tenant_key(
        &self,
        id: &str,
        command: <TenantKey as Aggregate>::Command,
    ) -> Result<(), StoreError> {
        self.guard::<TenantKey>(id).await?;
        retry_on_conflict(|| self.keys.execute(id, command.clone())).await?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Loads an aggregate's current state (default state if it has no events).
    ///
    /// # Errors
    /// A storage error, or [`StoreError::Malformed`] if an event does not deserialize.
    pub async fn load<A: Aggregate + Clone>(&self, id: &str) -> Result<A, StoreError> {
        self.guard::<A>(id).await?;
        let store = PersistedEventStore::<_, A>::new_event_store(SqliteEventRepository::new(
            self.pool.clone(),
        ));
        let mut context = store.load_aggregate(id).await?;
        Ok(context.aggregate().clone())
    }

    /// Refuses an aggregate whose stored payloads are not JSON: sqlite-es 0.5 `unwrap()`s the
    /// payload column while loading, which would panic instead of reporting the bad event.
    async fn guard<A: Aggregate>(&self, id: &str) -> Result<(), StoreError> {
        let bad = sqlx::query(
            "SELECT sequence FROM events WHERE aggregate_type = ? AND aggregate_id = ? \
             AND json_valid(payload) = 0 LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match bad {
            Some(row) => Err(StoreError::Malformed(format!(
                "{} {id}: the payload of event {} is not JSON",
                A::TYPE,
                row.get::<i64, _>(0)
            ))),
            None => Ok(()),
        }
    }

    /// Ids of every aggregate of a type, in order of first event.
    ///
    /// # Errors
    /// A storage error.
    pub async fn aggregate_ids(&self, aggregate_type: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT aggregate_id FROM event_log WHERE aggregate_type = ? AND sequence = 1 ORDER BY position",
        )
        .bind(aggregate_type)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
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
        let rows = sqlx::query(&format!(
            "{LOGGED_EVENTS} WHERE l.position > ? ORDER BY l.position LIMIT ?"
        ))
        .bind(position)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_event).collect()
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
        let rows = sqlx::query(&format!(
            "{LOGGED_EVENTS} WHERE l.aggregate_type = ? AND l.aggregate_id = ? ORDER BY l.position"
        ))
        .bind(aggregate_type)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_event).collect()
    }

    /// A consumer's checkpoint (0 before its first run).
    ///
    /// # Errors
    /// A storage error.
    pub async fn checkpoint(&self, consumer: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT position FROM consumer_checkpoints WHERE consumer = ?")
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Moves a consumer's checkpoint forward (never back).
    ///
    /// # Errors
    /// A storage error.
    pub async fn save_checkpoint(&self, consumer: &str, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consumer_checkpoints (consumer, position) VALUES (?, ?) \
             ON CONFLICT (consumer) DO UPDATE SET position = MAX(position, excluded.position)",
        )
        .bind(consumer)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Resolves after the next commit made through this store (or at once if one raced).
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// Closes the pool (flushes the WAL on the last connection).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn logged_event(row: &sqlx::sqlite::SqliteRow) -> Result<LoggedEvent, StoreError> {
    Ok(LoggedEvent {
        position: row.get(0),
        aggregate_type: row.get(1),
        aggregate_id: row.get(2),
        sequence: row.get(3),
        event_type: row.get(4),
        event_version: row.get(5),
        payload: row.get(6),
    })
}

async fn retry_on_conflict<F, Fut, E>(mut attempt: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AggregateError<E>>>,
    E: std::error::Error,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(AggregateError::AggregateConflict) if tries < 5 => tries += 1,
            other => return other.map_err(StoreError::from),
        }
    }
}

async fn migrate(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at text NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = ?")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !applied {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, datetime('now'))",
            )
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::{examples, BackupCycleCommand};

    #[tokio::test]
    async fn events_get_global_positions_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let started = examples::started();
        let id = started.cycle_id.to_string();
        store
            .cycle(&id, BackupCycleCommand::Start(started.clone()))
            .await
            .expect("start");
        store
            .cycle(&id, BackupCycleCommand::Start(started))
            .await
            .expect("repeat is a no-op");
        store
            .cycle(
                &id,
                BackupCycleCommand::RecordCaptured(examples::captured()),
            )
            .await
            .expect("capture");
        store.close().await;

        let reopened = Store::open(dir.path())
            .await
            .expect("reopen (migrations idempotent)");
        let events = reopened.read_after(0, 100).await.expect("read");
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["CycleStarted", "Captured"]);
        assert_eq!(events[0].position + 1, events[1].position);
        let cycle: BackupCycle = reopened.load(&id).await.expect("load");
        assert_eq!(cycle.rung, Some(restorable_domain::ladder::Rung::Captured));
    }

    #[tokio::test]
    async fn an_out_of_order_command_is_rejected_with_the_domain_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let error = store
            .cycle("c1", BackupCycleCommand::RecordSecured(examples::secured()))
            .await
            .expect_err("out of order");
        assert!(
            matches!(error, StoreError::Rejected(ref m) if m.contains("needs the cycle at Captured")),
            "{error}"
        );
        assert!(store.read_after(0, 10).await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn checkpoints_only_move_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        assert_eq!(store.checkpoint("capture").await.expect("read"), 0);
        store.save_checkpoint("capture", 7).await.expect("save");
        store.save_checkpoint("capture", 3).await.expect("save");
        assert_eq!(store.checkpoint("capture").await.expect("read"), 7);
    }

    #[tokio::test]
    async fn a_malformed_payload_is_a_clear_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        sqlx::query(
            "INSERT INTO events VALUES ('BackupCycle', 'x', 1, 'Captured', '1.0', 'not json', '{}')",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        let events = store.read_after(0, 10).await.expect("the log still reads");
        let error = events[0]
            .decode::<restorable_domain::cycle::BackupCycleEvent>()
            .expect_err("malformed");
        assert!(
            error.to_string().contains("Captured event at position 1"),
            "{error}"
        );
        let load = store
            .load::<BackupCycle>("x")
            .await
            .expect_err("no panic, an error");
        assert!(load.to_string().contains("event 1 is not JSON"), "{load}");
        let command = store
            .cycle("x", BackupCycleCommand::Start(examples::started()))
            .await
            .expect_err("refused");
        assert!(matches!(command, StoreError::Malformed(_)));
    }
}
