//! The tamper-evident history in the store: every event is chained into its tenant's hash chain
//! (`event_chain`, see [`restorable_domain::evidence`]) in the same transaction that stores it,
//! on both backends.
//!
//! # How a commit goes ([`Chained::persist`])
//! cqrs-es hands over the command's events; in one transaction they are inserted into `events`
//! (the trigger gives each its `event_log` position; on PostgreSQL its `BEFORE` trigger takes the
//! writers' advisory lock first, so writers take turns; SQLite has one writer) with one
//! `event_chain` row per event. A primary-key clash on `events` is cqrs-es's optimistic-lock
//! conflict, as before.
//!
//! Each link needs the tenant's head. The process remembers the heads it wrote
//! ([`memory::ChainMemory`]), so a commit usually reads nothing: it computes the links first and
//! stores events and links at once. If another process moved the head on meanwhile, the commit
//! is refused and redone the careful way: events first (which takes the writers' turn), then
//! the head read under it, then the links. A process that does not know the head (its first
//! commit to a tenant) goes the careful way at once. How a stale head is refused:
//! - PostgreSQL: one call of `restorable_append_chained` (migration 11; one statement outside
//!   any explicit transaction, so one round trip per commit) takes the writers' turn and compares the tenant's head before it writes anything
//!   (SQLSTATE `RSTAL`): no log position is drawn, so a refused commit leaves no gap in the log
//!   (a bigserial value drawn by a rolled-back transaction is lost for ever).
//! - SQLite: `UNIQUE (tenant, tenant_index)` refuses the link and the transaction is rolled
//!   back, its log position with it (`AUTOINCREMENT`'s counter is transactional).
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
use restorable_domain::evidence::{self, EventLine, GENESIS};
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;

use super::Backend;

mod backfill;
pub(super) mod memory;
mod reads;

pub(super) use backfill::backfill_once;
pub use reads::{ChainRow, UnchainedEvent};

use memory::{ChainMemory, Head};

/// The chain of events whose aggregate names no tenant.
pub const UNASSIGNED: &str = "_unassigned";

/// A cqrs-es repository that reads through `inner` and commits through the chain.
pub(super) struct Chained<R> {
    inner: R,
    backend: Arc<Backend>,
    memory: Arc<ChainMemory>,
}

impl<R> Chained<R> {
    pub(super) fn new(inner: R, backend: Arc<Backend>, memory: Arc<ChainMemory>) -> Self {
        Self {
            inner,
            backend,
            memory,
        }
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

/// Why a commit did not happen.
enum Refused {
    /// The remembered head is stale: another process chained to the tenant since.
    StaleHead,
    /// Anything else (an optimistic-lock conflict among them), for cqrs-es.
    Failed(PersistenceError),
}

impl From<sqlx::Error> for Refused {
    /// A unique violation on the chain's `(tenant, tenant_index)` is a stale head; on `events`
    /// it is cqrs-es's optimistic-lock conflict.
    fn from(e: sqlx::Error) -> Self {
        let Some(database) = e.as_database_error() else {
            return Refused::Failed(unknown(e));
        };
        if database.code().as_deref() == Some(STALE_HEAD_SQLSTATE) {
            return Refused::StaleHead;
        }
        if !database.is_unique_violation() {
            return Refused::Failed(unknown(e));
        }
        let on_chain_place = database.constraint() == Some(CHAIN_PLACE_CONSTRAINT)
            || database.message().contains("event_chain.tenant");
        if on_chain_place {
            Refused::StaleHead
        } else {
            Refused::Failed(PersistenceError::OptimisticLockError)
        }
    }
}

/// The SQLSTATE of `restorable_append_chained` refusing a stale head (nothing written).
const STALE_HEAD_SQLSTATE: &str = "RSTAL";

/// PostgreSQL's name of `UNIQUE (tenant, tenant_index)` (SQLite names the columns instead).
const CHAIN_PLACE_CONSTRAINT: &str = "event_chain_tenant_tenant_index_key";

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
        persist(&self.backend, &self.memory, events).await
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
/// An event and its link in one call (SQLite runs the statements in turn; `$1`..`$3` name the
/// event in both).
const INSERT_EVENT_AND_LINK_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7); \
     INSERT INTO event_chain (position, tenant, tenant_index, hash) \
     SELECT position, $8, $9, $10 FROM event_log \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";
const INSERT_EVENT_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) \
     VALUES ($1, $2, $3, $4, $5, CAST($6 AS jsonb), CAST($7 AS jsonb))";
/// Events and their links in one call (PostgreSQL, migration 11).
const APPEND_CHAINED_POSTGRES: &str = "SELECT restorable_append_chained(CAST($1 AS jsonb))";
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

/// Stores `events` (one aggregate's, in order) and their links in one transaction: from the
/// remembered head if the process has one, else (or if it turns out stale) reading it.
async fn persist(
    backend: &Backend,
    memory: &ChainMemory,
    events: &[SerializedEvent],
) -> Result<(), PersistenceError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    if let Some((tenant, head)) = memory.recall(first) {
        match commit(backend, events, Some((&tenant, head))).await {
            Ok(after) => {
                memory.remember(first, &tenant, after.head);
                return Ok(());
            }
            Err(Refused::StaleHead) => memory.forget(&tenant),
            Err(Refused::Failed(e)) => {
                memory.forget(&tenant);
                return Err(e);
            }
        }
    }
    match commit(backend, events, None).await {
        Ok(after) => {
            memory.remember(first, &after.tenant, after.head);
            Ok(())
        }
        Err(Refused::Failed(e)) => Err(e),
        Err(Refused::StaleHead) => Err(PersistenceError::UnknownError(
            format!(
                "{} {}: the chain's place was taken although the head was read under the \
                 writers' turn",
                first.aggregate_type, first.aggregate_id
            )
            .into(),
        )),
    }
}

/// What a commit chained to: the tenant and its head after the commit.
struct Committed {
    tenant: String,
    head: Head,
}

impl Committed {
    /// `tenant`'s head after `links` (index and hash each, in order) were stored.
    fn after(tenant: String, links: Vec<(i64, String)>) -> Self {
        let (index, hash) = links.into_iter().last().unwrap_or_default();
        Self {
            tenant,
            head: Head { index, hash },
        }
    }
}

/// One commit: with `known` (the tenant and its remembered head) the links are computed first
/// and written with the events ([`append_known_sqlite`], [`append_known_postgres`]); without,
/// the events go first and the head is read under the writers' turn they take.
async fn commit(
    backend: &Backend,
    events: &[SerializedEvent],
    known: Option<(&str, Head)>,
) -> Result<Committed, Refused> {
    macro_rules! insert_event {
        ($tx:ident, $insert:expr, $event:expr) => {
            sqlx::query($insert)
                .bind(&$event.aggregate_type)
                .bind(&$event.aggregate_id)
                .bind(sequence_of($event))
                .bind(&$event.event_type)
                .bind(&$event.event_version)
                .bind($event.payload.to_string())
                .bind($event.metadata.to_string())
                .execute(&mut *$tx)
                .await?
        };
    }
    macro_rules! insert_link {
        ($tx:ident, $tenant:expr, $index:expr, $hash:expr, $event:expr) => {{
            let linked = sqlx::query(INSERT_LINK_AT)
                .bind($tenant)
                .bind($index)
                .bind($hash)
                .bind(&$event.aggregate_type)
                .bind(&$event.aggregate_id)
                .bind(sequence_of($event))
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            if linked != 1 {
                return Err(unlinked($event));
            }
        }};
    }
    macro_rules! commit_in {
        ($pool:expr, $insert:expr) => {{
            let mut tx = $pool
                .begin()
                .await
                .map_err(unknown)
                .map_err(Refused::Failed)?;
            for event in events {
                insert_event!(tx, $insert, event);
            }
            let first = &events[0];
            let named = evidence::tenant_named_by(&first.payload).unwrap_or(UNASSIGNED);
            let row = sqlx::query(TENANT_AND_HEAD)
                .bind(&first.aggregate_type)
                .bind(&first.aggregate_id)
                .bind(named)
                .fetch_one(&mut *tx)
                .await
                .map_err(unknown)
                .map_err(Refused::Failed)?;
            let tenant: String = row.get(0);
            let head = Head {
                index: row.get::<Option<i64>, _>(1).unwrap_or(0),
                hash: row
                    .get::<Option<String>, _>(2)
                    .unwrap_or_else(|| GENESIS.to_owned()),
            };
            let links = links(&tenant, head, events);
            for (event, (index, hash)) in events.iter().zip(&links) {
                insert_link!(tx, &tenant, *index, hash, event);
            }
            tx.commit()
                .await
                .map_err(unknown)
                .map_err(Refused::Failed)?;
            Ok(Committed::after(tenant, links))
        }};
    }
    match (backend, known) {
        (Backend::Sqlite(pool), Some((tenant, head))) => {
            append_known_sqlite(pool, tenant, head, events).await
        }
        (Backend::Postgres(pool), Some((tenant, head))) => {
            append_known_postgres(pool, tenant, head, events).await
        }
        (Backend::Sqlite(pool), None) => commit_in!(pool, INSERT_EVENT_SQLITE),
        (Backend::Postgres(pool), None) => commit_in!(pool, INSERT_EVENT_POSTGRES),
    }
}

/// A commit from a known head on SQLite: in one transaction, each event and its link in one
/// call of two statements ([`INSERT_EVENT_AND_LINK_SQLITE`]); a stale head is refused by
/// `UNIQUE (tenant, tenant_index)` and the transaction rolled back.
async fn append_known_sqlite(
    pool: &sqlx::SqlitePool,
    tenant: &str,
    head: Head,
    events: &[SerializedEvent],
) -> Result<Committed, Refused> {
    let links = links(tenant, head, events);
    let mut tx = pool
        .begin()
        .await
        .map_err(unknown)
        .map_err(Refused::Failed)?;
    for (event, (index, hash)) in events.iter().zip(&links) {
        let written = sqlx::query(INSERT_EVENT_AND_LINK_SQLITE)
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(sequence_of(event))
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(event.payload.to_string())
            .bind(event.metadata.to_string())
            .bind(tenant)
            .bind(*index)
            .bind(hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // The event's row and its link's (the log row its trigger wrote is not counted).
        if written != 2 {
            return Err(unlinked(event));
        }
    }
    tx.commit()
        .await
        .map_err(unknown)
        .map_err(Refused::Failed)?;
    Ok(Committed::after(tenant.to_owned(), links))
}

/// A commit from a known head on PostgreSQL: one statement, `restorable_append_chained`
/// (migration 11), outside any explicit transaction. One statement is atomic on its own (all
/// its events and links or none), so the commit is one round trip where `BEGIN`, the inserts and
/// `COMMIT` would be three or more.
async fn append_known_postgres(
    pool: &sqlx::PgPool,
    tenant: &str,
    head: Head,
    events: &[SerializedEvent],
) -> Result<Committed, Refused> {
    let after = head.index;
    let links = links(tenant, head, events);
    let batch: Vec<Value> = events
        .iter()
        .zip(&links)
        .map(|(event, (index, hash))| {
            json!({
                "aggregate_type": event.aggregate_type,
                "aggregate_id": event.aggregate_id,
                "sequence": sequence_of(event),
                "event_type": event.event_type,
                "event_version": event.event_version,
                "payload": event.payload,
                "metadata": event.metadata,
                "index": index,
                "hash": hash,
            })
        })
        .collect();
    let call = json!({"tenant": tenant, "after": after, "events": batch});
    sqlx::query(APPEND_CHAINED_POSTGRES)
        .bind(call.to_string())
        .execute(pool)
        .await?;
    Ok(Committed::after(tenant.to_owned(), links))
}

/// An event whose link found no log position (the log trigger did not write its row).
fn unlinked(event: &SerializedEvent) -> Refused {
    Refused::Failed(PersistenceError::UnknownError(
        format!(
            "{} {} #{} has no log position to chain",
            event.aggregate_type,
            event.aggregate_id,
            sequence_of(event)
        )
        .into(),
    ))
}

fn sequence_of(event: &SerializedEvent) -> i64 {
    i64::try_from(event.sequence).unwrap_or(i64::MAX)
}

/// The links of `events` chained after `head`: (index, hash) each.
fn links(tenant: &str, head: Head, events: &[SerializedEvent]) -> Vec<(i64, String)> {
    let Head {
        mut index,
        mut hash,
    } = head;
    events
        .iter()
        .map(|event| {
            index += 1;
            hash = evidence::link(&hash, &line(tenant, index, event, sequence_of(event)));
            (index, hash.clone())
        })
        .collect()
}

fn line(tenant: &str, index: i64, event: &SerializedEvent, sequence: i64) -> String {
    EventLine {
        tenant,
        index,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
    }
    .line()
}
