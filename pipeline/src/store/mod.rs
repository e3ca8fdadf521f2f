//! The event store: cqrs-es over SQLite (sqlite-es, the embedded default: one durable file in
//! the data directory) or PostgreSQL (postgres-es, production), with the project's own
//! migrations ([`migrations`]).
//!
//! Both backends add `event_log`, filled by a trigger in the same transaction as each insert,
//! which gives every event a global, gap-free position in commit order (the `events` table only
//! orders per aggregate). The in-process transport and the NATS relay read `event_log`; on
//! PostgreSQL every commit also notifies `restorable_events`, so readers in other processes wake
//! at once.

pub mod migrations;
pub mod scratch;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use restorable_domain::alert::InstanceAlerts;
use restorable_domain::audit::AuditTrail;
use restorable_domain::cycle::BackupCycle;
use restorable_domain::instance::Instance;
use restorable_domain::tenant_key::TenantKey;
use sqlite_es::SqliteEventRepository;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Postgres, Row, Sqlite};
use tokio::sync::Notify;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened (the location is shown without a password).
    #[error("event store at {location}: {source}")]
    Connect {
        /// The database URL or path, password removed.
        location: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be migrated or queried.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    /// An aggregate refused a command (the message is the domain's typed error). The only
    /// refusal of the taxonomy ([`crate::error`]): everything else is infrastructure.
    #[error("{0}")]
    Rejected(String),
    /// The database failed while executing a command (connection lost, pool exhausted, an
    /// unexpected error): infrastructure, the command was not recorded.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// This process no longer holds the lease it wrote under (another took over after an
    /// outage); it must stop writing until it holds it again.
    #[error("lease {0} is held by another process")]
    LeaseLost(String),
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
                StoreError::Unavailable(e.to_string())
            }
        }
    }
}

/// Events joined with their global position; callers add `WHERE` and `ORDER BY`.
const LOGGED_EVENTS: &str = "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, \
     e.event_type, e.event_version, CAST(e.payload AS text) \
     FROM event_log l JOIN events e \
     ON e.aggregate_type = l.aggregate_type AND e.aggregate_id = l.aggregate_id \
     AND e.sequence = l.sequence";

/// The channel PostgreSQL commits notify.
const COMMIT_CHANNEL: &str = "restorable_events";

/// One event with its global position, as the transport hands it to consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Command execution for each aggregate over one event repository.
struct Aggregates<R: PersistedEventRepository> {
    cycles: CqrsFramework<BackupCycle, PersistedEventStore<R, BackupCycle>>,
    instances: CqrsFramework<Instance, PersistedEventStore<R, Instance>>,
    keys: CqrsFramework<TenantKey, PersistedEventStore<R, TenantKey>>,
    alerts: CqrsFramework<InstanceAlerts, PersistedEventStore<R, InstanceAlerts>>,
    audit: CqrsFramework<AuditTrail, PersistedEventStore<R, AuditTrail>>,
}

impl<R: PersistedEventRepository> Aggregates<R> {
    fn new(repository: impl Fn() -> R) -> Self {
        fn framework<A: Aggregate<Services = ()>, R: PersistedEventRepository>(
            repository: R,
        ) -> CqrsFramework<A, PersistedEventStore<R, A>> {
            CqrsFramework::new(PersistedEventStore::new_event_store(repository), vec![], ())
        }
        Self {
            cycles: framework(repository()),
            instances: framework(repository()),
            keys: framework(repository()),
            alerts: framework(repository()),
            audit: framework(repository()),
        }
    }
}

enum Backend {
    Sqlite {
        pool: Pool<Sqlite>,
        aggregates: Aggregates<SqliteEventRepository>,
    },
    Postgres {
        pool: Pool<Postgres>,
        aggregates: Aggregates<PostgresEventRepository>,
    },
}

/// Runs `$body` with `$pool` (and `$aggregates`) bound to whichever backend the store has; the
/// same SQL serves both (`$n` parameters, standard SQL).
macro_rules! on_backend {
    ($store:expr, |$pool:ident, $aggregates:ident| $body:expr) => {
        match &*$store.backend {
            Backend::Sqlite {
                pool: $pool,
                aggregates: $aggregates,
            } => $body,
            Backend::Postgres {
                pool: $pool,
                aggregates: $aggregates,
            } => $body,
        }
    };
}

mod dead_letters;
mod deliveries;
mod leases;
mod operations_alerts;
mod tables;
pub use dead_letters::DeadLetter;
pub use deliveries::PendingDelivery;
pub use leases::Lease;
pub use operations_alerts::{
    delivery_row, OperationsAlert, DEAD_LETTERS, OPERATIONS_ROWS, RELAY_HELD,
};
pub use tables::{ApiTokenRecord, SessionRecord, UserRecord, ViewRow};

/// Reads rows of [`LOGGED_EVENTS`] into events (one body for both row types).
macro_rules! logged_events {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|row| LoggedEvent {
                position: row.get(0),
                aggregate_type: row.get(1),
                aggregate_id: row.get(2),
                sequence: row.get(3),
                event_type: row.get(4),
                event_version: row.get(5),
                payload: row.get(6),
            })
            .collect()
    };
}

/// Stops the PostgreSQL commit listener when the last clone of the store is dropped.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The event store: command execution for each aggregate, aggregate loading, and the log.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    committed: Arc<Notify>,
    _listener: Option<Arc<ListenerTask>>,
}

impl Store {
    /// Opens (creating if needed) `events.db` in `data_dir` and applies pending migrations.
    ///
    /// # Errors
    /// [`StoreError::Connect`] if the file cannot be opened, [`StoreError::Database`] if it
    /// cannot be migrated.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Connect {
            location: data_dir.display().to_string(),
            source: sqlx::Error::Io(e),
        })?;
        Self::open_sqlite(&data_dir.join("events.db")).await
    }

    /// Opens the store `location` names: a `postgres://` or `postgresql://` URL, or the path of a
    /// SQLite file (optionally as `sqlite://PATH`).
    ///
    /// # Errors
    /// As [`Store::open`]; the message shows the location without its password.
    pub async fn connect(location: &str) -> Result<Self, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Self::open_postgres(location).await;
        }
        let path = location.strip_prefix("sqlite://").unwrap_or(location);
        Self::open_sqlite(Path::new(path)).await
    }

    async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let connect_error = |source| StoreError::Connect {
            location: path.display().to_string(),
            source,
        };
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(connect_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        migrations::sqlite(&pool).await?;
        let aggregates = Aggregates::new(|| SqliteEventRepository::new(pool.clone()));
        Ok(Self {
            backend: Arc::new(Backend::Sqlite { pool, aggregates }),
            committed: Arc::new(Notify::new()),
            _listener: None,
        })
    }

    async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let connect_error = |source| StoreError::Connect {
            location: redact_url(url),
            source,
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(connect_error)?;
        migrations::postgres(&pool).await?;
        let committed = Arc::new(Notify::new());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(connect_error)?;
        listener
            .listen(COMMIT_CHANNEL)
            .await
            .map_err(connect_error)?;
        let task = tokio::spawn({
            let (committed, pool) = (committed.clone(), pool.clone());
            async move {
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
            }
        });
        let aggregates = Aggregates::new(|| PostgresEventRepository::new(pool.clone()));
        Ok(Self {
            backend: Arc::new(Backend::Postgres { pool, aggregates }),
            committed,
            _listener: Some(Arc::new(ListenerTask(task))),
        })
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgresql",
        }
    }

    /// Runs a statement given in standard SQL with `$n` parameters (for tests and operators'
    /// tools: the same text must suit both backends).
    ///
    /// # Errors
    /// A storage error.
    pub async fn execute_sql(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(on_backend!(self, |pool, _a| sqlx::query(sql)
            .execute(pool)
            .await?
            .rows_affected()))
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
        on_backend!(self, |_p, aggregates| retry_on_conflict(|| aggregates
            .cycles
            .execute(id, command.clone()))
        .await)?;
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
        on_backend!(self, |_p, aggregates| retry_on_conflict(|| aggregates
            .instances
            .execute(id, command.clone()))
        .await)?;
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
        on_backend!(self, |_p, aggregates| retry_on_conflict(|| aggregates
            .keys
            .execute(id, command.clone()))
        .await)?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Executes a command on an instance's alerts (the id is the instance id).
    ///
    /// # Errors
    /// As [`Store::cycle`].
    pub async fn alerts(
        &self,
        id: &str,
        command: <InstanceAlerts as Aggregate>::Command,
    ) -> Result<(), StoreError> {
        self.guard::<InstanceAlerts>(id).await?;
        on_backend!(self, |_p, aggregates| retry_on_conflict(|| aggregates
            .alerts
            .execute(id, command.clone()))
        .await)?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Records an action in a tenant's audit trail (the id is the tenant id).
    ///
    /// # Errors
    /// As [`Store::cycle`].
    pub async fn audit(
        &self,
        id: &str,
        command: <AuditTrail as Aggregate>::Command,
    ) -> Result<(), StoreError> {
        self.guard::<AuditTrail>(id).await?;
        on_backend!(self, |_p, aggregates| retry_on_conflict(|| aggregates
            .audit
            .execute(id, command.clone()))
        .await)?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Loads an aggregate's current state (default state if it has no events).
    ///
    /// # Errors
    /// A storage error, or [`StoreError::Malformed`] if an event does not deserialize.
    pub async fn load<A: Aggregate + Clone>(&self, id: &str) -> Result<A, StoreError> {
        self.guard::<A>(id).await?;
        let aggregate = match &*self.backend {
            Backend::Sqlite { pool, .. } => PersistedEventStore::<_, A>::new_event_store(
                SqliteEventRepository::new(pool.clone()),
            )
            .load_aggregate(id)
            .await?
            .aggregate()
            .clone(),
            Backend::Postgres { pool, .. } => PersistedEventStore::<_, A>::new_event_store(
                PostgresEventRepository::new(pool.clone()),
            )
            .load_aggregate(id)
            .await?
            .aggregate()
            .clone(),
        };
        Ok(aggregate)
    }

    /// Refuses an aggregate whose stored payloads are not JSON: sqlite-es 0.5 `unwrap()`s the
    /// payload column while loading, which would panic instead of reporting the bad event.
    /// (PostgreSQL's `jsonb` column cannot hold anything else.)
    async fn guard<A: Aggregate>(&self, id: &str) -> Result<(), StoreError> {
        let Backend::Sqlite { pool, .. } = &*self.backend else {
            return Ok(());
        };
        let bad = sqlx::query(
            "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND json_valid(payload) = 0 LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(pool)
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
        let sql = "SELECT aggregate_id FROM event_log WHERE aggregate_type = $1 AND sequence = 1 \
                   ORDER BY position";
        Ok(on_backend!(self, |pool, _a| sqlx::query(sql)
            .bind(aggregate_type)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()))
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
        Ok(on_backend!(self, |pool, _a| logged_events!(
            sqlx::query(&sql)
                .bind(position)
                .bind(limit)
                .fetch_all(pool)
                .await?
        )))
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
        Ok(on_backend!(self, |pool, _a| logged_events!(
            sqlx::query(&sql)
                .bind(aggregate_type)
                .bind(id)
                .fetch_all(pool)
                .await?
        )))
    }

    /// A consumer's checkpoint (0 before its first run).
    ///
    /// # Errors
    /// A storage error.
    pub async fn checkpoint(&self, consumer: &str) -> Result<i64, StoreError> {
        let sql = "SELECT position FROM consumer_checkpoints WHERE consumer = $1";
        Ok(on_backend!(self, |pool, _a| sqlx::query(sql)
            .bind(consumer)
            .fetch_optional(pool)
            .await?
            .map_or(0, |r| r.get::<i64, _>(0))))
    }

    /// Moves a consumer's checkpoint forward (never back).
    ///
    /// # Errors
    /// A storage error.
    pub async fn save_checkpoint(&self, consumer: &str, position: i64) -> Result<(), StoreError> {
        let sql = self.forward_checkpoint_sql();
        on_backend!(self, |pool, _a| sqlx::query(&sql)
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

    /// `INSERT ... ON CONFLICT` that moves `$1`'s checkpoint to `$2` only forward.
    fn forward_checkpoint_sql(&self) -> String {
        let forward = match &*self.backend {
            Backend::Sqlite { .. } => "MAX(consumer_checkpoints.position, excluded.position)",
            Backend::Postgres { .. } => {
                "GREATEST(consumer_checkpoints.position, excluded.position)"
            }
        };
        format!(
            "INSERT INTO consumer_checkpoints (consumer, position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET position = {forward}"
        )
    }

    /// Whether the database answers (a cheap round trip): tells an outage from a reaction that
    /// fails while the store is fine.
    pub async fn is_reachable(&self) -> bool {
        on_backend!(self, |pool, _a| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .is_ok())
    }

    /// Sets every consumer's checkpoint back to `position`, so the log after it is delivered
    /// again (an operator's replay; the aggregates make the repeated reactions no-ops).
    ///
    /// # Errors
    /// A storage error.
    pub async fn rewind_checkpoints(&self, position: i64) -> Result<(), StoreError> {
        let sql = "UPDATE consumer_checkpoints SET position = $1 WHERE position > $1";
        on_backend!(self, |pool, _a| sqlx::query(sql)
            .bind(position)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Resolves after the next commit made through this store (or, on PostgreSQL, by any
    /// process).
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// Closes the pool (flushes the WAL on the last connection).
    pub async fn close(&self) {
        on_backend!(self, |pool, _a| pool.close().await)
    }
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

#[cfg(test)]
mod tests {
    use super::scratch::{test_server_url, ScratchDatabase};
    use super::*;
    use restorable_domain::cycle::{examples, BackupCycleCommand};

    /// Where a test's store lives; `reopen` gives a second, independent handle on it.
    enum Place {
        Sqlite(tempfile::TempDir),
        Postgres(ScratchDatabase),
    }

    impl Place {
        async fn new(postgres: bool) -> Self {
            if postgres {
                Place::Postgres(
                    ScratchDatabase::create(&test_server_url())
                        .await
                        .expect("PostgreSQL for tests (RESTORABLE_TEST_DATABASE_URL)"),
                )
            } else {
                Place::Sqlite(tempfile::tempdir().expect("tempdir"))
            }
        }

        async fn open(&self) -> Store {
            match self {
                Place::Sqlite(dir) => Store::open(dir.path()).await.expect("open"),
                Place::Postgres(db) => Store::connect(db.url()).await.expect("connect"),
            }
        }
    }

    /// Runs a test body once on SQLite and once on PostgreSQL.
    macro_rules! on_both {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(#[tokio::test] async fn $name() { super::$name(false).await })*
            }
            mod postgres {
                $(#[tokio::test] async fn $name() { super::$name(true).await })*
            }
        };
    }

    on_both!(
        events_get_global_positions_and_survive_reopen,
        an_out_of_order_command_is_rejected_with_the_domain_reason,
        checkpoints_only_move_forward_unless_rewound,
        concurrent_writers_get_gap_free_positions_in_commit_order,
        pending_deliveries_are_leased_taken_over_and_ended,
        a_lease_has_one_holder_and_passes_on_when_it_runs_out,
        a_writer_that_lost_its_lease_writes_nothing_and_checkpoints_never_move_back,
        dead_letters_are_listed_until_replayed,
    );

    async fn a_lease_has_one_holder_and_passes_on_when_it_runs_out(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
        let first = store
            .acquire_lease("relay", "a", 60_000)
            .await
            .expect("acquire")
            .expect("free: granted");
        assert!(
            store
                .acquire_lease("relay", "b", 60_000)
                .await
                .expect("acquire")
                .is_none(),
            "held by a"
        );
        let again = store
            .acquire_lease("relay", "a", 60_000)
            .await
            .expect("acquire")
            .expect("its own holder");
        assert_eq!(again.epoch, first.epoch, "the same holder keeps its epoch");
        store.renew_lease(&first).await.expect("renewed");

        let short = store
            .acquire_lease("projector", "a", 1)
            .await
            .expect("acquire")
            .expect("granted");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let taken = store
            .acquire_lease("projector", "b", 60_000)
            .await
            .expect("acquire")
            .expect("ran out: taken over");
        assert_eq!(taken.epoch, short.epoch + 1, "a new holder, a new epoch");
        assert!(matches!(
            store.renew_lease(&short).await,
            Err(StoreError::LeaseLost(_))
        ));
        store.release_lease(&taken).await.expect("release");
        assert!(store
            .acquire_lease("projector", "c", 60_000)
            .await
            .expect("acquire")
            .is_some());
    }

    async fn a_writer_that_lost_its_lease_writes_nothing_and_checkpoints_never_move_back(
        postgres: bool,
    ) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
        let row = |doc: &str| ViewRow {
            view: "fleet".into(),
            key: "i1".into(),
            tenant_id: "acme".into(),
            doc: doc.into(),
        };
        let old = store
            .acquire_lease("projector", "old", 500)
            .await
            .expect("acquire")
            .expect("granted");
        store
            .save_view_rows(&[row("{\"v\":1}")], "projections", 10, &old)
            .await
            .expect("written while held");
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let new = store
            .acquire_lease("projector", "new", 60_000)
            .await
            .expect("acquire")
            .expect("taken over");
        store
            .save_view_rows(&[row("{\"v\":3}")], "projections", 30, &new)
            .await
            .expect("the new holder writes");
        let stale = store
            .save_view_rows(&[row("{\"v\":2}")], "projections", 20, &old)
            .await
            .expect_err("fenced out");
        assert!(matches!(stale, StoreError::LeaseLost(_)), "{stale}");
        let rows = store.view_rows("fleet", None).await.expect("rows");
        assert_eq!(rows, [row("{\"v\":3}")], "the stale write left nothing");
        assert_eq!(store.checkpoint("projections").await.expect("read"), 30);
        store
            .save_view_rows(&[], "projections", 25, &new)
            .await
            .expect("written");
        assert_eq!(
            store.checkpoint("projections").await.expect("read"),
            30,
            "a checkpoint never moves back"
        );
    }

    async fn dead_letters_are_listed_until_replayed(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
        let started = examples::started();
        let id = started.cycle_id.to_string();
        store
            .cycle(&id, BackupCycleCommand::Start(started))
            .await
            .expect("start");
        let event = store
            .event_at(1)
            .await
            .expect("read")
            .expect("the first event");
        assert_eq!(event.event_type, "CycleStarted");
        assert!(store.event_at(2).await.expect("read").is_none());
        store
            .add_dead_letter("capture", &event, "it panicked", 5)
            .await
            .expect("add");
        store
            .add_dead_letter("capture", &event, "again", 6)
            .await
            .expect("a repeat is kept once");
        let pending = store.dead_letters(true).await.expect("list");
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (
                pending[0].consumer.as_str(),
                pending[0].position,
                pending[0].attempts
            ),
            ("capture", 1, 5)
        );
        assert_eq!(pending[0].reason, "it panicked");
        assert!(store
            .mark_dead_letter_replayed("capture", 1)
            .await
            .expect("mark"));
        assert!(store.dead_letters(true).await.expect("list").is_empty());
        let all = store.dead_letters(false).await.expect("list");
        assert!(all[0].replayed_at.is_some());
        assert!(store.is_reachable().await);
    }

    async fn pending_deliveries_are_leased_taken_over_and_ended(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
        let pending = |route: &str| PendingDelivery {
            instance_id: "instance-a".into(),
            sequence: 1,
            route: route.into(),
        };
        assert!(store
            .begin_delivery(&pending("webhook"), 1_000)
            .await
            .expect("begin"));
        assert!(store
            .begin_delivery(&pending("email"), 5_000)
            .await
            .expect("begin"));
        assert!(
            !store
                .begin_delivery(&pending("webhook"), 9_000)
                .await
                .expect("again"),
            "a delivery under way is not begun twice"
        );
        assert!(
            store
                .take_over_deliveries(1_000, 2_000)
                .await
                .expect("take")
                .is_empty(),
            "no lease has run out yet"
        );
        assert_eq!(
            store
                .take_over_deliveries(1_001, 2_000)
                .await
                .expect("take"),
            vec![pending("webhook")],
            "the first lease ran out"
        );
        assert!(
            store
                .take_over_deliveries(1_500, 3_000)
                .await
                .expect("take")
                .is_empty(),
            "taken over: leased again"
        );
        store.end_delivery(&pending("webhook")).await.expect("end");
        assert_eq!(
            store
                .take_over_deliveries(10_000, 20_000)
                .await
                .expect("take"),
            vec![pending("email")],
            "an ended delivery is gone"
        );
        store.close().await;
    }

    async fn events_get_global_positions_and_survive_reopen(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
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

        let reopened = place.open().await; // migrations are idempotent
        let events = reopened.read_after(0, 100).await.expect("read");
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["CycleStarted", "Captured"]);
        assert_eq!(events[0].position + 1, events[1].position);
        assert_eq!(
            events[1]
                .decode::<restorable_domain::cycle::BackupCycleEvent>()
                .expect("decode"),
            restorable_domain::cycle::BackupCycleEvent::Captured(examples::captured())
        );
        let cycle: BackupCycle = reopened.load(&id).await.expect("load");
        assert_eq!(cycle.rung, Some(restorable_domain::ladder::Rung::Captured));
        assert_eq!(
            reopened.history("BackupCycle", &id).await.expect("history"),
            events
        );
        assert_eq!(
            reopened.aggregate_ids("BackupCycle").await.expect("ids"),
            [id]
        );
    }

    async fn an_out_of_order_command_is_rejected_with_the_domain_reason(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
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

    async fn checkpoints_only_move_forward_unless_rewound(postgres: bool) {
        let place = Place::new(postgres).await;
        let store = place.open().await;
        assert_eq!(store.checkpoint("capture").await.expect("read"), 0);
        store.save_checkpoint("capture", 7).await.expect("save");
        store.save_checkpoint("capture", 3).await.expect("save");
        assert_eq!(store.checkpoint("capture").await.expect("read"), 7);
        store.rewind_checkpoints(2).await.expect("rewind");
        assert_eq!(store.checkpoint("capture").await.expect("read"), 2);
    }

    /// Many cycles written at once from two handles (two "processes"): every position from 1 to
    /// N is there once, and a reader that followed the log while they were written saw them all
    /// in order (a commit never lands behind a position already read).
    async fn concurrent_writers_get_gap_free_positions_in_commit_order(postgres: bool) {
        let place = Place::new(postgres).await;
        let (a, b) = (place.open().await, place.open().await);
        let reader = place.open().await;
        let follower = tokio::spawn(async move {
            let (mut position, mut seen) = (0, Vec::new());
            while seen.len() < 40 {
                for event in reader.read_after(position, 100).await.expect("read") {
                    assert_eq!(event.position, position + 1, "a gap or a late commit");
                    position = event.position;
                    seen.push(event.position);
                }
                tokio::task::yield_now().await;
            }
            seen
        });
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..20 {
            for store in [a.clone(), b.clone()] {
                writers.spawn(async move {
                    let mut started = examples::started();
                    started.cycle_id = restorable_domain::ids::CycleId::random();
                    let id = format!("{}-{n}", started.cycle_id);
                    store
                        .cycle(&id, BackupCycleCommand::Start(started))
                        .await
                        .expect("start");
                });
            }
        }
        while let Some(done) = writers.join_next().await {
            done.expect("writer");
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(30), follower)
            .await
            .expect("the follower saw every event")
            .expect("follower");
        assert_eq!(seen, (1..=40).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn a_malformed_payload_is_a_clear_error_not_a_panic() {
        let place = Place::new(false).await;
        let store = place.open().await;
        store
            .execute_sql(
                "INSERT INTO events VALUES ('BackupCycle', 'x', 1, 'Captured', '1.0', 'not json', '{}')",
            )
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

    #[tokio::test]
    async fn postgresql_refuses_a_payload_that_is_not_json() {
        let place = Place::new(true).await;
        let store = place.open().await;
        let error = store
            .execute_sql(
                "INSERT INTO events VALUES ('BackupCycle', 'x', 1, 'Captured', '1.0', 'not json', '{}')",
            )
            .await
            .expect_err("jsonb refuses it");
        assert!(error.to_string().contains("json"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error_without_the_password() {
        let error = Store::connect("postgres://restorable:s3cret-pw@127.0.0.1:1/events")
            .await
            .err()
            .expect("nothing listens on port 1");
        let text = error.to_string();
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(
            !text.contains("s3cret-pw") && !format!("{error:?}").contains("s3cret-pw"),
            "{text}"
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("/var/lib/events.db"), "/var/lib/events.db");
    }
}
