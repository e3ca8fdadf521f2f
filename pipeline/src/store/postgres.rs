//! PostgreSQL, for production: a pool with an acquire timeout, its SQL dialect, and the
//! listener on the commit channel that wakes this process's readers when any process commits.

use std::sync::Arc;
use std::time::Duration;

use postgres_es::PostgresEventRepository;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};
use tokio::sync::Notify;

use super::{log, migrations, redact_url, Backend, Dialect, Repository, Store, StoreError};

pub(super) const DIALECT: Dialect = Dialect {
    name: "postgresql",
    now_ms: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS bigint)",
    greatest: "GREATEST",
};

impl Repository for Pool<Postgres> {
    type Events = PostgresEventRepository;
    fn events(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.clone())
    }
}

/// Connects to the server at `url`, applies pending migrations and starts listening for
/// commits.
pub(super) async fn open(url: &str) -> Result<Store, StoreError> {
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
    super::chain::backfill_once(&Backend::Postgres(pool.clone())).await?;
    let committed = Arc::new(Notify::new());
    let listener = log::listen(&pool, committed.clone())
        .await
        .map_err(connect_error)?;
    Ok(Store {
        backend: Arc::new(Backend::Postgres(pool)),
        committed,
        _listener: Some(Arc::new(listener)),
        chain_memory: Arc::default(),
        snapshot_every: super::SNAPSHOT_EVERY,
    })
}
