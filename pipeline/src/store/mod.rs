//! The event store: cqrs-es over SQLite (sqlite-es, the embedded default: one durable file in
//! the data directory) or PostgreSQL (postgres-es, production), with the project's own
//! migrations ([`migrations`]).
//!
//! Both backends add `event_log`, filled by a trigger in the same transaction as each insert,
//! which gives every event a global, gap-free position in commit order (the `events` table only
//! orders per aggregate). The in-process transport and the NATS relay read `event_log`; on
//! PostgreSQL every commit also notifies `restorable_events`, so readers in other processes wake
//! at once.
//!
//! # Layout
//! - `mod.rs`: [`Store`], [`StoreError`], the backend the store runs on, and the one generic
//!   `execute` every aggregate's commands go through (and `load`, `snapshot_now`).
//! - `snapshots.rs`: loads bounded by a constant: the aggregate's snapshot and the events after
//!   it, the cqrs-es event store that commits through them, and when snapshots are written and
//!   how they are versioned (see its header).
//! - `sqlite.rs`, `postgres.rs`: connecting, pool options and what only one backend has (its SQL
//!   dialect, SQLite's payload guard, PostgreSQL's commit listener).
//! - `migrations.rs`: the schema (`pipeline/migrations/{sqlite,postgres}/*.sql`).
//! - `chain.rs`: the tamper-evident history: each event chained into its tenant's hash chain in
//!   the transaction that stores it, and the chain read back for checks and exports.
//! - `log.rs`: the global event log ([`LoggedEvent`], `read_after`, `history`, commit wake-ups).
//! - `checkpoints.rs`: consumers' positions in the log.
//! - `views.rs`: the projector's view rows ([`ViewRow`]).
//! - `accounts.rs`: users, sessions and API tokens of the API.
//! - `leases.rs`: leases with fencing ([`Lease`]).
//! - `deliveries.rs`: alert deliveries in progress ([`PendingDelivery`]).
//! - `dead_letters.rs`: events a consumer gave up on ([`DeadLetter`]).
//! - `operations_alerts.rs`: alerts about the service itself ([`OperationsAlert`]).
//! - `schedule.rs`: the scheduler's index of due instances ([`ScheduleRow`]).
//!
//! Children use this file's types; this file uses theirs only to re-export them and to
//! dispatch to a backend.

/// Runs `$body` with `$pool` bound to whichever pool the store has; the same SQL serves both.
/// (A macro, not a generic function: sqlx's row, argument and executor types differ per
/// backend, and the bounds that would name them all are longer than the bodies.)
macro_rules! on_backend {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &*$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

mod accounts;
mod chain;
mod checkpoints;
mod dead_letters;
mod deliveries;
mod digests;
mod leases;
mod log;
pub mod migrations;
mod operations_alerts;
mod postgres;
mod rechecks;
mod retention;
mod schedule;
mod snapshots;
mod sqlite;
#[cfg(test)]
mod tests;
mod views;

use std::path::Path;
use std::sync::Arc;

pub use crate::redact::redact_url;

use backon::Retryable;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use restorable_domain::alert::InstanceAlerts;
use restorable_domain::audit::AuditTrail;
use restorable_domain::cycle::BackupCycle;
use restorable_domain::instance::Instance;
use restorable_domain::tenant_key::TenantKey;
use restorable_domain::Snapshotted;
use sqlx::{Pool, Postgres, Sqlite};
use tokio::sync::Notify;

pub use accounts::{ApiTokenRecord, SessionRecord, UserRecord};
pub use chain::{ChainRow, UnchainedEvent, UNASSIGNED};
pub use dead_letters::DeadLetter;
pub use deliveries::PendingDelivery;
pub use leases::Lease;
pub use log::LoggedEvent;
pub use operations_alerts::{
    delivery_row, OperationsAlert, DEAD_LETTERS, OPERATIONS_ROWS, RELAY_HELD,
};
pub use rechecks::{RecheckChange, RecheckCoverage};
pub use schedule::{InstanceMark, ScheduleRow};
pub use snapshots::SNAPSHOT_EVERY;
pub use views::{KeyOrder, ViewPage, ViewRow};

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

/// The database the store runs on.
enum Backend {
    Sqlite(Pool<Sqlite>),
    Postgres(Pool<Postgres>),
}

/// The SQL that differs between the backends (everything else is the same text: `$n`
/// parameters, standard SQL).
struct Dialect {
    /// `sqlite` or `postgresql`.
    name: &'static str,
    /// The database's clock in Unix milliseconds.
    now_ms: &'static str,
    /// The larger of two values (`MAX(a, b)` / `GREATEST(a, b)`), as a function name.
    greatest: &'static str,
}

impl Backend {
    fn dialect(&self) -> &'static Dialect {
        match self {
            Backend::Sqlite(_) => &sqlite::DIALECT,
            Backend::Postgres(_) => &postgres::DIALECT,
        }
    }
}

/// A backend's pool as the cqrs-es repository over it.
trait Repository {
    type Events: PersistedEventRepository;
    fn events(&self) -> Self::Events;
}

/// Aborts a background task (PostgreSQL's commit listener) when the last clone of the store is
/// dropped.
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The event store: command execution for each aggregate, aggregate loading, and the log.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    committed: Arc<Notify>,
    _listener: Option<Arc<Background>>,
    /// The chains' heads this process wrote (`store/chain/memory.rs`).
    chain_memory: Arc<chain::memory::ChainMemory>,
    /// Events a load may read after the snapshot before another is written
    /// ([`SNAPSHOT_EVERY`]).
    snapshot_every: usize,
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
        sqlite::open(&data_dir.join("events.db")).await
    }

    /// Opens the store `location` names: a `postgres://` or `postgresql://` URL, or the path of a
    /// SQLite file (optionally as `sqlite://PATH`).
    ///
    /// # Errors
    /// As [`Store::open`]; the message shows the location without its password.
    pub async fn connect(location: &str) -> Result<Self, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return postgres::open(location).await;
        }
        let path = location.strip_prefix("sqlite://").unwrap_or(location);
        sqlite::open(Path::new(path)).await
    }

    /// The same store, writing a snapshot every `every` events instead of [`SNAPSHOT_EVERY`]
    /// (for tests and benchmarks; at least 1).
    pub fn with_snapshot_every(mut self, every: usize) -> Self {
        self.snapshot_every = every.max(1);
        self
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.dialect().name
    }

    /// Runs a statement given in standard SQL with `$n` parameters (for tests and operators'
    /// tools: the same text must suit both backends).
    ///
    /// # Errors
    /// A storage error.
    pub async fn execute_sql(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(on_backend!(self, |pool| sqlx::query(sql)
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
        self.execute::<BackupCycle>(id, command).await
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
        self.execute::<Instance>(id, command).await
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
        self.execute::<TenantKey>(id, command).await
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
        self.execute::<InstanceAlerts>(id, command).await
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
        self.execute::<AuditTrail>(id, command).await
    }

    /// Executes `command` on the aggregate `A` with `id` (retrying a lost race a few times),
    /// then wakes the log's readers.
    async fn execute<A>(&self, id: &str, command: A::Command) -> Result<(), StoreError>
    where
        A: Snapshotted<Services = ()>,
        A::Command: Clone,
    {
        on_backend!(self, |pool| execute_on::<A, _>(
            self.snapshot_store(pool),
            id,
            command
        )
        .await)?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Loads an aggregate's current state (default state if it has no events): its snapshot
    /// and the events after it (`store/snapshots.rs`), writing a new snapshot if this load read
    /// [`SNAPSHOT_EVERY`] events or more.
    ///
    /// # Errors
    /// A storage error, or [`StoreError::Malformed`] if an event does not deserialize.
    pub async fn load<A: Snapshotted>(&self, id: &str) -> Result<A, StoreError> {
        Ok(on_backend!(self, |pool| self
            .snapshot_store::<A, _>(pool)
            .load_and_snapshot(id, false)
            .await)?
        .0)
    }

    /// Writes the snapshot of an aggregate now, whatever its distance from the last one;
    /// the sequence of the last event it covers (0 if the aggregate has no events: nothing is
    /// written). A write that fails is logged, not returned (a snapshot is a cache).
    ///
    /// # Errors
    /// As [`Store::load`].
    pub async fn snapshot_now<A: Snapshotted>(&self, id: &str) -> Result<usize, StoreError> {
        Ok(on_backend!(self, |pool| self
            .snapshot_store::<A, _>(pool)
            .load_and_snapshot(id, true)
            .await)?
        .1)
    }

    /// The event store of `A` over `pool`'s events, through snapshots.
    fn snapshot_store<A, P>(
        &self,
        pool: &P,
    ) -> snapshots::SnapshotStore<A, chain::Chained<P::Events>>
    where
        A: Snapshotted,
        P: Repository,
    {
        snapshots::SnapshotStore::new(
            chain::Chained::new(
                pool.events(),
                self.backend.clone(),
                self.chain_memory.clone(),
            ),
            chain::Chained::new(
                pool.events(),
                self.backend.clone(),
                self.chain_memory.clone(),
            ),
            self.backend.clone(),
            self.snapshot_every,
        )
    }

    /// Whether the database answers (a cheap round trip): tells an outage from a reaction that
    /// fails while the store is fine.
    pub async fn is_reachable(&self) -> bool {
        on_backend!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .is_ok())
    }

    /// Closes the pool (flushes the WAL on the last connection).
    pub async fn close(&self) {
        on_backend!(self, |pool| pool.close().await)
    }
}

/// The one command path of every aggregate on every backend: cqrs-es over `events` (through
/// snapshots), a concurrent writer's conflict retried at once, up to five times
/// ([`crate::retry::on_conflict`]); each try loads the aggregate afresh.
async fn execute_on<A, R>(
    events: snapshots::SnapshotStore<A, R>,
    id: &str,
    command: A::Command,
) -> Result<(), StoreError>
where
    A: Snapshotted<Services = ()>,
    A::Command: Clone,
    R: PersistedEventRepository,
{
    let framework = CqrsFramework::new(events, vec![], ());
    (|| framework.execute(id, command.clone()))
        .retry(crate::retry::on_conflict())
        .when(|error| matches!(error, AggregateError::AggregateConflict))
        .await
        .map_err(StoreError::from)
}
