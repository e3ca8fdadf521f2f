//! The tamper-evident history in the store: every event is chained into its tenant's hash chain
//! (`event_chain`, see [`restorable_domain::evidence`]) in the same transaction that stores it,
//! on both backends.
//!
//! # How a commit goes ([`Chained::persist`])
//! cqrs-es hands over the command's events; in one transaction they are inserted into `events`
//! (the trigger gives each its `event_log` position; on PostgreSQL its `BEFORE` trigger takes the
//! writers' advisory lock first, so writers take turns; SQLite has one writer), then the
//! tenant's head is read, each event's link computed, and one `event_chain` row per event
//! written. A primary-key clash on `events` is cqrs-es's optimistic-lock conflict, as before.
//!
//! # Whose chain
//! An aggregate's tenant is fixed by its first chained event: the `tenant_id` its payload names
//! (every aggregate's first event names one). Later events of the aggregate go to the same
//! chain whatever they name. An event naming none whose aggregate has no chained event goes to
//! the chain [`UNASSIGNED`] (no tenant id can take that name).
//!
//! # Databases from before the chain
//! The first open after migration 10 chains every event already stored, in log order, and
//! records the last position it covered in `chain_genesis` (once: never again, so an event
//! inserted behind the store's back later stays unchained and `audit check` names it). Edits
//! made before that open are not detectable (documented in the README).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use restorable_domain::evidence::{self, ChainedEvent, TenantHead, GENESIS};
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;

use super::{Backend, Store, StoreError};

/// The chain of events whose aggregate names no tenant.
pub const UNASSIGNED: &str = "_unassigned";

/// Events chained per transaction by the first open's backfill.
const BACKFILL_BATCH: i64 = 5_000;

/// A cqrs-es repository that reads through `inner` and commits through the chain.
pub(super) struct Chained<R> {
    inner: R,
    backend: Arc<Backend>,
}

impl<R> Chained<R> {
    pub(super) fn new(inner: R, backend: Arc<Backend>) -> Self {
        Self { inner, backend }
    }
}

fn unknown(e: sqlx::Error) -> PersistenceError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

fn conflict_or(e: sqlx::Error) -> PersistenceError {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        PersistenceError::OptimisticLockError
    } else {
        unknown(e)
    }
}

impl<R: PersistedEventRepository> PersistedEventRepository for Chained<R> {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        persist(&self.backend, events).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

const INSERT_EVENT_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_EVENT_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) \
     VALUES ($1, $2, $3, $4, $5, CAST($6 AS jsonb), CAST($7 AS jsonb))";
/// The aggregate's tenant (of its first chained event, else `$3`) and that tenant's head, in one
/// round trip.
const TENANT_AND_HEAD: &str = "WITH t AS (SELECT COALESCE((SELECT c.tenant FROM event_log l \
     JOIN event_chain c ON c.position = l.position \
     WHERE l.aggregate_type = $1 AND l.aggregate_id = $2 ORDER BY l.sequence LIMIT 1), $3) AS tenant) \
     SELECT t.tenant, \
     (SELECT h.tenant_index FROM event_chain h WHERE h.tenant = t.tenant \
      ORDER BY h.tenant_index DESC LIMIT 1), \
     (SELECT h.hash FROM event_chain h WHERE h.tenant = t.tenant \
      ORDER BY h.tenant_index DESC LIMIT 1) \
     FROM t";
/// An event's link, at the log position the trigger gave it (one round trip).
const INSERT_LINK_AT: &str = "INSERT INTO event_chain (position, tenant, tenant_index, hash) \
     SELECT position, $1, $2, $3 FROM event_log \
     WHERE aggregate_type = $4 AND aggregate_id = $5 AND sequence = $6";
const INSERT_LINK: &str =
    "INSERT INTO event_chain (position, tenant, tenant_index, hash) VALUES ($1, $2, $3, $4)";

/// Stores `events` (one aggregate's, in order) and their links in one transaction.
async fn persist(backend: &Backend, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let insert = match backend {
        Backend::Sqlite(_) => INSERT_EVENT_SQLITE,
        Backend::Postgres(_) => INSERT_EVENT_POSTGRES,
    };
    macro_rules! chain_in {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await.map_err(unknown)?;
            for event in events {
                let sequence = i64::try_from(event.sequence).unwrap_or(i64::MAX);
                sqlx::query(insert)
                    .bind(&event.aggregate_type)
                    .bind(&event.aggregate_id)
                    .bind(sequence)
                    .bind(&event.event_type)
                    .bind(&event.event_version)
                    .bind(event.payload.to_string())
                    .bind(event.metadata.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_or)?;
            }
            let named = evidence::tenant_named_by(&first.payload).unwrap_or(UNASSIGNED);
            let row = sqlx::query(TENANT_AND_HEAD)
                .bind(&first.aggregate_type)
                .bind(&first.aggregate_id)
                .bind(named)
                .fetch_one(&mut *tx)
                .await
                .map_err(unknown)?;
            let tenant: String = row.get(0);
            let mut index: i64 = row.get::<Option<i64>, _>(1).unwrap_or(0);
            let mut hash: String = row
                .get::<Option<String>, _>(2)
                .unwrap_or_else(|| GENESIS.to_owned());
            for event in events {
                let sequence = i64::try_from(event.sequence).unwrap_or(i64::MAX);
                index += 1;
                hash = evidence::link(&hash, &line(&tenant, index, event, sequence));
                let linked = sqlx::query(INSERT_LINK_AT)
                    .bind(&tenant)
                    .bind(index)
                    .bind(&hash)
                    .bind(&event.aggregate_type)
                    .bind(&event.aggregate_id)
                    .bind(sequence)
                    .execute(&mut *tx)
                    .await
                    .map_err(unknown)?
                    .rows_affected();
                if linked != 1 {
                    return Err(PersistenceError::UnknownError(
                        format!(
                            "{} {} #{sequence} has no log position to chain",
                            event.aggregate_type, event.aggregate_id
                        )
                        .into(),
                    ));
                }
            }
            tx.commit().await.map_err(unknown)
        }};
    }
    match backend {
        Backend::Sqlite(pool) => chain_in!(pool),
        Backend::Postgres(pool) => chain_in!(pool),
    }
}

fn line(tenant: &str, index: i64, event: &SerializedEvent, sequence: i64) -> String {
    ChainedEvent {
        tenant: tenant.to_owned(),
        index,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        payload: event.payload.clone(),
        metadata: event.metadata.clone(),
    }
    .line()
}

/// One place of a tenant's chain as the store holds it: the link row and, if it is still
/// there, the event it covers.
#[derive(Clone, Debug)]
pub struct ChainRow {
    /// The event's global position.
    pub position: i64,
    /// Its place in the tenant's chain.
    pub index: i64,
    /// The link stored for it.
    pub hash: String,
    /// The event as stored now (`None`: its `events` row is gone).
    pub event: Option<ChainedEvent>,
    /// The stored payload or metadata is not JSON (an edit through SQL on SQLite).
    pub malformed: bool,
}

/// An event in the log without a link (inserted behind the store's back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnchainedEvent {
    /// Its global position.
    pub position: i64,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate.
    pub sequence: i64,
}

const CHAIN_ROWS: &str = "SELECT c.position, c.tenant_index, c.hash, l.aggregate_type, \
     l.aggregate_id, l.sequence, e.event_type, e.event_version, CAST(e.payload AS text), \
     CAST(e.metadata AS text) \
     FROM event_chain c LEFT JOIN event_log l ON l.position = c.position \
     LEFT JOIN events e ON e.aggregate_type = l.aggregate_type \
     AND e.aggregate_id = l.aggregate_id AND e.sequence = l.sequence \
     WHERE c.tenant = $1 AND c.tenant_index > $2 ORDER BY c.tenant_index LIMIT $3";

impl Store {
    /// Up to `limit` places of `tenant`'s chain after index `after`, in chain order.
    ///
    /// # Errors
    /// A storage error.
    pub async fn chain_rows(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChainRow>, StoreError> {
        let rows = on_backend!(self, |pool| sqlx::query(CHAIN_ROWS)
            .bind(tenant)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| {
                let event_type: Option<String> = r.get(6);
                let aggregate_type: Option<String> = r.get(3);
                let payload: Option<String> = r.get(8);
                let metadata: Option<String> = r.get(9);
                let raw = (
                    aggregate_type,
                    r.get::<Option<String>, _>(4),
                    r.get::<Option<i64>, _>(5),
                    event_type,
                    r.get::<Option<String>, _>(7),
                    payload,
                    metadata,
                );
                (
                    r.get::<i64, _>(0),
                    r.get::<i64, _>(1),
                    r.get::<String, _>(2),
                    raw,
                )
            })
            .collect::<Vec<_>>());
        Ok(rows
            .into_iter()
            .map(|(position, index, hash, raw)| {
                let mut malformed = false;
                let event = match raw {
                    (
                        Some(aggregate_type),
                        Some(aggregate_id),
                        Some(sequence),
                        Some(event_type),
                        Some(event_version),
                        Some(payload),
                        Some(metadata),
                    ) => {
                        let parsed = serde_json::from_str::<Value>(&payload)
                            .and_then(|p| Ok((p, serde_json::from_str::<Value>(&metadata)?)));
                        match parsed {
                            Ok((payload, metadata)) => Some(ChainedEvent {
                                tenant: tenant.to_owned(),
                                index,
                                aggregate_type,
                                aggregate_id,
                                sequence,
                                event_type,
                                event_version,
                                payload,
                                metadata,
                            }),
                            Err(_) => {
                                malformed = true;
                                None
                            }
                        }
                    }
                    _ => None,
                };
                ChainRow {
                    position,
                    index,
                    hash,
                    event,
                    malformed,
                }
            })
            .collect())
    }

    /// Every tenant's head (its last link), sorted by tenant: the leaves of a checkpoint.
    ///
    /// # Errors
    /// A storage error.
    pub async fn chain_heads(&self) -> Result<Vec<TenantHead>, StoreError> {
        const HEADS: &str = "SELECT c.tenant, c.tenant_index, c.hash FROM event_chain c \
             JOIN (SELECT tenant, MAX(tenant_index) AS last FROM event_chain GROUP BY tenant) m \
             ON m.tenant = c.tenant AND m.last = c.tenant_index ORDER BY c.tenant";
        Ok(on_backend!(self, |pool| sqlx::query(HEADS)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| TenantHead {
                tenant: r.get(0),
                index: r.get(1),
                head: r.get(2),
            })
            .collect()))
    }

    /// Up to `limit` events of the log after the first open's backfill that have no link (each
    /// one inserted behind the store's back), in log order.
    ///
    /// # Errors
    /// A storage error.
    pub async fn unchained_events(&self, limit: i64) -> Result<Vec<UnchainedEvent>, StoreError> {
        const UNCHAINED: &str = "SELECT l.position, l.aggregate_type, l.aggregate_id, l.sequence \
             FROM event_log l LEFT JOIN event_chain c ON c.position = l.position \
             WHERE c.position IS NULL \
             AND l.position > (SELECT COALESCE(MAX(chained_to), 0) FROM chain_genesis) \
             ORDER BY l.position LIMIT $1";
        Ok(on_backend!(self, |pool| sqlx::query(UNCHAINED)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| UnchainedEvent {
                position: r.get(0),
                aggregate_type: r.get(1),
                aggregate_id: r.get(2),
                sequence: r.get(3),
            })
            .collect()))
    }
}

impl Store {
    /// The chain place of the event at log `position`: (tenant, index, link).
    ///
    /// # Errors
    /// A storage error.
    pub async fn chain_place(
        &self,
        position: i64,
    ) -> Result<Option<(String, i64, String)>, StoreError> {
        Ok(on_backend!(self, |pool| sqlx::query(
            "SELECT tenant, tenant_index, hash FROM event_chain WHERE position = $1"
        )
        .bind(position)
        .fetch_optional(pool)
        .await?
        .map(|r| (r.get(0), r.get(1), r.get(2)))))
    }

    /// The checkpoints indexed: (sequence, digest of the header), ascending.
    ///
    /// # Errors
    /// A storage error.
    pub async fn checkpoint_index(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on_backend!(self, |pool| sqlx::query(
            "SELECT sequence, digest FROM audit_checkpoints ORDER BY sequence"
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()))
    }

    /// Indexes a checkpoint written to the vault (nothing if its sequence is indexed).
    ///
    /// # Errors
    /// A storage error.
    pub async fn index_checkpoint(
        &self,
        sequence: i64,
        at_ms: i64,
        object_key: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, |pool| sqlx::query(
            "INSERT INTO audit_checkpoints (sequence, at_ms, object_key, digest) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sequence) DO NOTHING"
        )
        .bind(sequence)
        .bind(at_ms)
        .bind(object_key)
        .bind(digest)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

/// Chains every event stored before the chain existed, once (see the module's header).
pub(super) async fn backfill_once(backend: &Backend) -> Result<(), StoreError> {
    macro_rules! backfill_in {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            // Taking the writers' turn first (PostgreSQL; SQLite's write lock comes with the
            // first write) so no commit lands between the read of the log and the links.
            if let Backend::Postgres(_) = backend {
                sqlx::query("SELECT pg_advisory_xact_lock(72835610)")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO chain_genesis (chained_to) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM chain_genesis)")
                .execute(&mut *tx)
                .await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT chained_to FROM chain_genesis WHERE chained_to > 0 OR done = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                tx.rollback().await?;
                return Ok(());
            }
            let mut tenants: HashMap<(String, String), String> = HashMap::new();
            let mut heads: HashMap<String, (i64, String)> = HashMap::new();
            let mut after = 0i64;
            loop {
                let rows = sqlx::query(
                    "SELECT l.position, e.aggregate_type, e.aggregate_id, e.sequence, \
                     e.event_type, e.event_version, CAST(e.payload AS text), \
                     CAST(e.metadata AS text) FROM event_log l JOIN events e \
                     ON e.aggregate_type = l.aggregate_type AND e.aggregate_id = l.aggregate_id \
                     AND e.sequence = l.sequence WHERE l.position > $1 ORDER BY l.position LIMIT $2",
                )
                .bind(after)
                .bind(BACKFILL_BATCH)
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    break;
                }
                for r in rows {
                    let position: i64 = r.get(0);
                    after = position;
                    let payload: Value =
                        serde_json::from_str(&r.get::<String, _>(6)).unwrap_or(Value::Null);
                    let metadata: Value =
                        serde_json::from_str(&r.get::<String, _>(7)).unwrap_or(Value::Null);
                    let key = (r.get::<String, _>(1), r.get::<String, _>(2));
                    let tenant = tenants
                        .entry(key.clone())
                        .or_insert_with(|| {
                            evidence::tenant_named_by(&payload)
                                .unwrap_or(UNASSIGNED)
                                .to_owned()
                        })
                        .clone();
                    let (index, hash) = heads
                        .entry(tenant.clone())
                        .or_insert_with(|| (0, GENESIS.to_owned()));
                    *index += 1;
                    let event = ChainedEvent {
                        tenant: tenant.clone(),
                        index: *index,
                        aggregate_type: key.0,
                        aggregate_id: key.1,
                        sequence: r.get(3),
                        event_type: r.get(4),
                        event_version: r.get(5),
                        payload,
                        metadata,
                    };
                    *hash = evidence::link(hash, &event.line());
                    sqlx::query(INSERT_LINK)
                        .bind(position)
                        .bind(&tenant)
                        .bind(*index)
                        .bind(hash.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query("UPDATE chain_genesis SET chained_to = $1, done = 1")
                .bind(after)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }};
    }
    match backend {
        Backend::Sqlite(pool) => backfill_in!(pool),
        Backend::Postgres(pool) => backfill_in!(pool),
    }
}
