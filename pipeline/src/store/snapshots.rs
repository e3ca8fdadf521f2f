//! Snapshots: an aggregate's load reads one `snapshots` row and the events after it, so its cost
//! is bounded by [`SNAPSHOT_EVERY`], not by the aggregate's history.
//!
//! # Why snapshots, not shorter streams
//! An instance's stream grows by two events per cycle and a tenant's audit trail by one per
//! audited action, for as long as they exist (a year of hourly backups is 17,520 events). Cutting
//! streams short by design (a stream per period, the cycle in flight apart from the history)
//! would change every aggregate's identity and the event log's meaning for readers and auditors.
//! A snapshot changes nothing that is stored: the events stay the only truth, and the
//! `snapshots` table is a cache that may be emptied at any time (the next load replays in full
//! and writes it again).
//!
//! # How a load goes ([`SnapshotStore`])
//! Read the aggregate's row; if its `snapshot_version` is the aggregate's current one and its
//! payload deserializes, start from that state and read only the events with a sequence above
//! its `last_sequence` (`get_last_events`); otherwise (no row, another version, a payload that
//! does not deserialize) replay every event: a bad snapshot is never an error. Events appended
//! after the snapshot by anyone (another process, an older release that knows nothing of
//! snapshots) are always read, because they have higher sequences. On SQLite the guard against
//! payloads that are not JSON ([`super::sqlite::refuse_malformed`]) looks at the same events the
//! load reads, and only those.
//!
//! # When a snapshot is written
//! After a command commits, if [`SNAPSHOT_EVERY`] or more events lie between the snapshot the
//! command started from and the new last sequence (the state is the one the command's events
//! were applied to, so no second read is needed); after a plain load that read that many events
//! (an aggregate only read, or a database from before snapshots); whenever the stored row was
//! unusable; and on demand ([`super::Store::snapshot_now`]). The upsert moves forward only: it
//! replaces a row only if its `last_sequence` is not above the new one (at an equal sequence the
//! state is the same, so rewriting it is harmless, and it lets a row of another version be
//! replaced at once). A snapshot that cannot be written is logged (without its payload) and the
//! command still succeeds.
//!
//! # Versions
//! `snapshot_version` is [`Snapshotted::snapshot_version`]: the aggregate's `SNAPSHOT_VERSION`
//! (a constant next to its `apply()`, bumped when `apply()` changes what state an event leads
//! to) and a fingerprint of its JSON Schema (so a changed field, type or serde attribute
//! invalidates old snapshots by itself, with no one having to remember). A test pins each
//! aggregate's version, so a change of shape is seen in review. cqrs-es 0.5's own snapshot store
//! is not used: it applies each event twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use restorable_domain::Snapshotted;
use sqlx::Row;

use super::{sqlite, Backend, StoreError};

/// How many events a load may read after the snapshot before a new snapshot is written.
pub const SNAPSHOT_EVERY: usize = 100;

/// `A`'s snapshot version, computed once per aggregate type.
pub(super) fn version_of<A: Snapshotted>() -> String {
    static VERSIONS: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let versions = VERSIONS.get_or_init(Mutex::default);
    let cached = versions
        .lock()
        .map(|map| map.get(A::TYPE).cloned())
        .unwrap_or(None);
    cached.unwrap_or_else(|| {
        let version = A::snapshot_version();
        if let Ok(mut map) = versions.lock() {
            map.insert(A::TYPE, version.clone());
        }
        version
    })
}

/// A row of `snapshots`.
pub(super) struct StoredSnapshot {
    pub(super) version: String,
    pub(super) last_sequence: i64,
    pub(super) payload: String,
}

/// The snapshot row of an aggregate, if any.
pub(super) async fn read(
    backend: &Backend,
    aggregate_type: &str,
    id: &str,
) -> Result<Option<StoredSnapshot>, sqlx::Error> {
    const WHERE: &str = "FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2";
    let row = |version, last_sequence, payload| StoredSnapshot {
        version,
        last_sequence,
        payload,
    };
    Ok(match backend {
        Backend::Sqlite(pool) => sqlx::query(&format!(
            "SELECT snapshot_version, last_sequence, payload {WHERE}"
        ))
        .bind(aggregate_type)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| row(r.get(0), r.get(1), r.get(2))),
        Backend::Postgres(pool) => sqlx::query(&format!(
            "SELECT snapshot_version, last_sequence, payload::text {WHERE}"
        ))
        .bind(aggregate_type)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(|r| row(r.get(0), r.get(1), r.get(2))),
    })
}

/// Writes a snapshot unless a later one is stored; whether the row was written.
pub(super) async fn write(
    backend: &Backend,
    aggregate_type: &str,
    id: &str,
    version: &str,
    last_sequence: usize,
    payload: &str,
) -> Result<bool, sqlx::Error> {
    let last_sequence = i64::try_from(last_sequence).unwrap_or(i64::MAX);
    let sql = |payload: &str| {
        format!(
            "INSERT INTO snapshots \
             (aggregate_type, aggregate_id, snapshot_version, last_sequence, payload, taken_at) \
             VALUES ($1, $2, $3, $4, {payload}, {now}) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
             snapshot_version = excluded.snapshot_version, \
             last_sequence = excluded.last_sequence, \
             payload = excluded.payload, taken_at = excluded.taken_at \
             WHERE snapshots.last_sequence <= excluded.last_sequence",
            now = backend.dialect().now_ms,
        )
    };
    let written = match backend {
        Backend::Sqlite(pool) => {
            sqlx::query(&sql("$5"))
                .bind(aggregate_type)
                .bind(id)
                .bind(version)
                .bind(last_sequence)
                .bind(payload)
                .execute(pool)
                .await?
        }
        .rows_affected(),
        Backend::Postgres(pool) => {
            sqlx::query(&sql("CAST($5 AS jsonb)"))
                .bind(aggregate_type)
                .bind(id)
                .bind(version)
                .bind(last_sequence)
                .bind(payload)
                .execute(pool)
                .await?
        }
        .rows_affected(),
    };
    Ok(written > 0)
}

/// An aggregate as [`SnapshotStore`] loaded it.
pub(super) struct Loaded<A: Aggregate> {
    /// The state, its id and the sequence of its last event (what cqrs-es commits against).
    pub(super) context: EventStoreAggregateContext<A>,
    /// The sequence of the snapshot the load started from (0: a full replay).
    pub(super) snapshot_at: usize,
    /// A stored snapshot was there but unusable (another version, a bad payload).
    pub(super) stale: bool,
}

impl<A: Aggregate> Loaded<A> {
    /// Whether a snapshot should be written at `sequence` (the last event of the state).
    fn due(&self, sequence: usize, every: usize) -> bool {
        sequence > 0 && (self.stale || sequence.saturating_sub(self.snapshot_at) >= every)
    }
}

impl<A: Aggregate> AggregateContext<A> for Loaded<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.context.aggregate
    }
}

/// cqrs-es's event store for `A`, loading through the aggregate's snapshot and writing one
/// after a commit when due; commits go through cqrs-es's own (event-sourced) store, so the
/// optimistic-lock conflict and its retry are unchanged.
pub(super) struct SnapshotStore<A: Aggregate, R: PersistedEventRepository> {
    reader: R,
    writer: PersistedEventStore<R, A>,
    backend: Arc<Backend>,
    every: usize,
}

impl<A, R> SnapshotStore<A, R>
where
    A: Snapshotted,
    R: PersistedEventRepository,
{
    /// A store reading through `reader` and committing through `writer` (two handles on the same
    /// events), with snapshots in `backend`, taken every `every` events.
    pub(super) fn new(reader: R, writer: R, backend: Arc<Backend>, every: usize) -> Self {
        Self {
            reader,
            writer: PersistedEventStore::new_event_store(writer),
            backend,
            every: every.max(1),
        }
    }

    /// The aggregate's current state: its usable snapshot, if any, and the events after it.
    pub(super) async fn load(&self, id: &str) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let stored = read(&self.backend, A::TYPE, id)
            .await
            .map_err(|e| AggregateError::DatabaseConnectionError(Box::new(e)))?;
        let (aggregate, snapshot_at, stale) = match stored {
            None => (A::default(), 0, false),
            Some(stored) => match usable::<A>(&stored) {
                Some((aggregate, at)) => (aggregate, at, false),
                None => (A::default(), 0, true),
            },
        };
        refuse_malformed::<A>(&self.backend, id, snapshot_at).await?;
        let events = if snapshot_at == 0 {
            self.reader.get_events::<A>(id).await?
        } else {
            self.reader.get_last_events::<A>(id, snapshot_at).await?
        };
        let mut context = EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate,
            current_sequence: snapshot_at,
            current_snapshot: None,
        };
        for event in events {
            let envelope = EventEnvelope::<A>::try_from(event)?;
            context.current_sequence = envelope.sequence;
            context.aggregate.apply(envelope.payload);
        }
        Ok(Loaded {
            context,
            snapshot_at,
            stale,
        })
    }

    /// Loads the aggregate and, if due (or `force`d), stores its snapshot; the state and the
    /// sequence of its last event.
    pub(super) async fn load_and_snapshot(
        &self,
        id: &str,
        force: bool,
    ) -> Result<(A, usize), AggregateError<A::Error>> {
        let loaded = self.load(id).await?;
        let sequence = loaded.context.current_sequence;
        if sequence > 0 && (force || loaded.due(sequence, self.every)) {
            let payload = serde_json::to_string(&loaded.context.aggregate);
            self.save(id, sequence, payload).await;
        }
        Ok((loaded.context.aggregate, sequence))
    }

    /// Stores a snapshot at `sequence`; a failure is logged, never returned (it is a cache).
    async fn save(&self, id: &str, sequence: usize, payload: Result<String, serde_json::Error>) {
        let version = version_of::<A>();
        let outcome = match payload {
            Ok(payload) => write(&self.backend, A::TYPE, id, &version, sequence, &payload)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = outcome {
            tracing::warn!(
                aggregate_type = A::TYPE,
                aggregate_id = id,
                sequence,
                %error,
                "snapshot not written (loads replay more events until the next one)"
            );
        }
    }
}

/// The state in a stored snapshot and the sequence it was taken at, if it is `A`'s current
/// version and deserializes.
fn usable<A: Snapshotted>(stored: &StoredSnapshot) -> Option<(A, usize)> {
    if stored.version != version_of::<A>() {
        return None;
    }
    let at = usize::try_from(stored.last_sequence).ok()?;
    serde_json::from_str(&stored.payload).ok().map(|a| (a, at))
}

/// [`sqlite::refuse_malformed`] for the events after `after` (PostgreSQL's `jsonb` column
/// cannot hold anything but JSON).
async fn refuse_malformed<A: Aggregate>(
    backend: &Backend,
    id: &str,
    after: usize,
) -> Result<(), AggregateError<A::Error>> {
    let Backend::Sqlite(pool) = backend else {
        return Ok(());
    };
    match sqlite::refuse_malformed(pool, A::TYPE, id, after).await {
        Ok(()) => Ok(()),
        Err(StoreError::Malformed(message)) => {
            Err(AggregateError::DeserializationError(message.into()))
        }
        Err(other) => Err(AggregateError::DatabaseConnectionError(Box::new(other))),
    }
}

impl<A, R> EventStore<A> for SnapshotStore<A, R>
where
    A: Snapshotted,
    R: PersistedEventRepository,
{
    type AC = Loaded<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.writer.load_events(aggregate_id).await
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, AggregateError<A::Error>> {
        self.load(aggregate_id).await
    }

    /// Commits through cqrs-es; then, if due, stores the state the events were applied to
    /// (`EventSink::write` applies each event as the command emits it).
    async fn commit(
        &self,
        events: Vec<A::Event>,
        loaded: Loaded<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let sequence = loaded.context.current_sequence + events.len();
        let snapshot = (!events.is_empty() && loaded.due(sequence, self.every))
            .then(|| serde_json::to_string(&loaded.context.aggregate));
        let id = loaded.context.aggregate_id.clone();
        let committed = self.writer.commit(events, loaded.context, metadata).await?;
        if let Some(payload) = snapshot {
            self.save(&id, sequence, payload).await;
        }
        Ok(committed)
    }
}

#[cfg(test)]
mod tests;
