//! SQLite, the embedded default: one durable file (WAL, full sync), its SQL dialect, and the
//! guard that keeps sqlite-es from panicking on a payload that is not JSON.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlite_es::SqliteEventRepository;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Row, Sqlite};
use tokio::sync::Notify;

use super::{migrations, Backend, Dialect, Repository, Store, StoreError};

pub(super) const DIALECT: Dialect = Dialect {
    name: "sqlite",
    now_ms: "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    greatest: "MAX",
};

impl Repository for Pool<Sqlite> {
    type Events = SqliteEventRepository;
    fn events(&self) -> SqliteEventRepository {
        SqliteEventRepository::new(self.clone())
    }
}

/// Opens (creating if needed) the SQLite file at `path` and applies pending migrations.
pub(super) async fn open(path: &Path) -> Result<Store, StoreError> {
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
        // Statement journals (an upsert in a transaction writes one) in memory, not in a
        // temporary file; and 8 MiB of page cache per connection (the default is 2 MiB), so the
        // projector's upserts do not re-read the same index pages from the file.
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-8192")
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(connect_error)?;
    migrations::sqlite(&pool).await?;
    super::chain::backfill_once(&Backend::Sqlite(pool.clone())).await?;
    Ok(Store {
        backend: Arc::new(Backend::Sqlite(pool)),
        committed: Arc::new(Notify::new()),
        _listener: None,
        chain_memory: Arc::default(),
        snapshot_every: super::SNAPSHOT_EVERY,
    })
}

/// Refuses an aggregate whose stored payloads after sequence `after` (the events a load is
/// about to read: those after its snapshot, or all) are not JSON: sqlite-es 0.5 `unwrap()`s the
/// payload column while loading, which would panic instead of reporting the bad event.
pub(super) async fn refuse_malformed(
    pool: &Pool<Sqlite>,
    aggregate_type: &str,
    id: &str,
    after: usize,
) -> Result<(), StoreError> {
    let bad = sqlx::query(
        "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         AND sequence > $3 AND json_valid(payload) = 0 LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    match bad {
        Some(row) => Err(StoreError::Malformed(format!(
            "{aggregate_type} {id}: the payload of event {} is not JSON",
            row.get::<i64, _>(0)
        ))),
        None => Ok(()),
    }
}
