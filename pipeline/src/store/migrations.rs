//! The schema: one list of `.sql` files per backend, `pipeline/migrations/sqlite/` and
//! `pipeline/migrations/postgres/` (`NNNN_name.sql`), embedded by `sqlx::migrate!` and applied
//! in order, once each, by sqlx's migrator, which records them in `_sqlx_migrations`. Neither
//! sqlite-es nor postgres-es creates its tables; both expect `events` in the shape of migration
//! 1, to which we add `event_log` (a global, gap-free commit order, filled by a trigger in the
//! same transaction as each event) and `consumer_checkpoints` (durable positions of consumers
//! and of the NATS relay).
//!
//! On PostgreSQL, positions follow commit order only because event writers take turns: sequence
//! values are handed out before commit, so a reader could see position 8 committed while 7 is
//! in flight and skip 7 for ever. Migration 1's `BEFORE` trigger takes a transaction-scoped
//! advisory lock before any row is written, so event-writing transactions commit one at a time
//! (and no transaction holds a row lock while it waits: no deadlock). SQLite has one writer at a
//! time by construction.
//!
//! # The bridge from the first runner
//! Databases created before these files were migrated by a runner of our own, which recorded
//! each version it applied in `schema_migrations (version, applied_at)`, running the same SQL
//! the files hold. Before sqlx's migrator runs, every version recorded there that
//! `_sqlx_migrations` lacks is copied into it (with the file's checksum, its `applied_at`, and
//! an execution time of 0), so sqlx takes it as applied and runs only later versions.
//! `schema_migrations` itself is left as it was.
//!
//! Several processes starting at once on PostgreSQL take turns: each holds the advisory lock
//! the first runner took (so a process of the previous release waits too) for the bridge and
//! the migrator, which takes sqlx's own lock inside it.

use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Database, Pool, Postgres, Sqlite};

use super::StoreError;

/// SQLite's migrations (the embedded default).
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// PostgreSQL's migrations (production).
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock event writers take in turn (migration 1's `BEFORE` trigger takes it; the
/// chain's backfill takes it too).
pub(super) const WRITERS_LOCK: i64 = 72_835_610;

/// The advisory lock the first runner held while it migrated.
const MIGRATION_LOCK: i64 = 72_835_611;

/// Applies the pending SQLite migrations.
pub(super) async fn sqlite(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let first_runner = sqlx::query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if first_runner {
        bridge(&mut conn, &SQLITE).await?;
    }
    SQLITE.run(&mut *conn).await.map_err(sqlx::Error::from)?;
    Ok(())
}

/// Applies the pending PostgreSQL migrations; several processes starting at once take turns.
pub(super) async fn postgres(pool: &Pool<Postgres>) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let migrated = async {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let first_runner: bool =
            sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        if first_runner {
            bridge(&mut conn, &POSTGRES).await?;
        }
        POSTGRES.run(&mut *conn).await.map_err(sqlx::Error::from)?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
    .await;
    if migrated.is_err() {
        // The session's locks end with it: never hand a connection that may hold one back.
        conn.close_on_drop();
    }
    migrated
}

/// Records in `_sqlx_migrations`, in one transaction, each of `migrator`'s versions that the
/// first runner recorded in `schema_migrations` and sqlx has not.
async fn bridge<DB>(conn: &mut PoolConnection<DB>, migrator: &Migrator) -> Result<(), StoreError>
where
    DB: Database,
    DB::Connection: Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let mut tx = conn.begin().await?;
    tx.ensure_migrations_table()
        .await
        .map_err(sqlx::Error::from)?;
    for migration in migrator.iter() {
        sqlx::query(
            "INSERT INTO _sqlx_migrations \
             (version, description, installed_on, success, checksum, execution_time) \
             SELECT version, $2, applied_at, TRUE, $3, 0 FROM schema_migrations \
             WHERE version = $1 ON CONFLICT (version) DO NOTHING",
        )
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::Row;

    use super::{POSTGRES, SQLITE};
    use crate::store::{Store, StoreError};
    use restorable_domain::cycle::{examples, BackupCycleCommand};
    use restorable_testkit::{test_server_url, ScratchDatabase};

    /// A database as the first runner left it after applying versions `1..=applied`: its
    /// `schema_migrations` table (created as it created it) and each version's SQL run in its
    /// own transaction with the version's record (the files hold the SQL it ran), plus a user
    /// with an API token; nothing of sqlx's.
    macro_rules! first_runner {
        ($pool:expr, $migrator:expr, $table:expr, $now:expr, $applied:expr) => {{
            let pool = $pool;
            sqlx::query($table).execute(&pool).await.expect("table");
            for migration in $migrator.iter().take($applied) {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::raw_sql(&migration.sql)
                    .execute(&mut *tx)
                    .await
                    .expect("the first runner's SQL");
                sqlx::query(&format!(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, {})",
                    $now
                ))
                .bind(migration.version)
                .execute(&mut *tx)
                .await
                .expect("record");
                tx.commit().await.expect("commit");
            }
            sqlx::raw_sql(
                "INSERT INTO users VALUES ('a@example.com', 'hash', 'owner', 'acme', 'then')",
            )
            .execute(&pool)
            .await
            .expect("a user");
            let token = if $applied >= 5 {
                "INSERT INTO api_tokens VALUES ('h1', 'ci', 'a@example.com', 'then', 123)"
            } else {
                "INSERT INTO api_tokens VALUES ('h1', 'ci', 'a@example.com', 'then')"
            };
            sqlx::raw_sql(token).execute(&pool).await.expect("a token");
            pool.close().await;
        }};
    }

    /// `(version, execution_time)` of every row of `_sqlx_migrations`, and the versions
    /// `schema_migrations` holds.
    macro_rules! recorded {
        ($pool:expr) => {{
            let pool = $pool;
            let sqlx_rows = sqlx::query(
                "SELECT version, execution_time FROM _sqlx_migrations WHERE success \
                 ORDER BY version",
            )
            .fetch_all(&pool)
            .await
            .expect("_sqlx_migrations")
            .iter()
            .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
            .collect::<Vec<_>>();
            let old = sqlx::query_scalar::<_, i64>(
                "SELECT version FROM schema_migrations ORDER BY version",
            )
            .fetch_all(&pool)
            .await
            .expect("schema_migrations");
            pool.close().await;
            (sqlx_rows, old)
        }};
    }

    /// Where the old database lives, and how to open it.
    enum Place {
        Sqlite(tempfile::TempDir),
        Postgres(ScratchDatabase),
    }

    impl Place {
        async fn first_runner(postgres: bool, applied: usize) -> Self {
            if postgres {
                let db = ScratchDatabase::create(&test_server_url())
                    .await
                    .expect("PostgreSQL for tests (RESTORABLE_TEST_DATABASE_URL)");
                let pool = PgPoolOptions::new().connect(db.url()).await.expect("pool");
                first_runner!(
                    pool,
                    POSTGRES,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL)",
                    "now()",
                    applied
                );
                Place::Postgres(db)
            } else {
                let dir = tempfile::tempdir().expect("tempdir");
                first_runner!(
                    Self::sqlite_pool(&dir).await,
                    SQLITE,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at text NOT NULL)",
                    "datetime('now')",
                    applied
                );
                Place::Sqlite(dir)
            }
        }

        async fn sqlite_pool(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join("events.db"))
                .create_if_missing(true);
            SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .expect("pool")
        }

        async fn open(&self) -> Result<Store, StoreError> {
            match self {
                Place::Sqlite(dir) => Store::open(dir.path()).await,
                Place::Postgres(db) => Store::connect(db.url()).await,
            }
        }

        async fn recorded(&self) -> (Vec<(i64, i64)>, Vec<i64>) {
            match self {
                Place::Sqlite(dir) => recorded!(Self::sqlite_pool(dir).await),
                Place::Postgres(db) => {
                    recorded!(PgPoolOptions::new().connect(db.url()).await.expect("pool"))
                }
            }
        }
    }

    /// A database the first runner migrated opens without any migration running twice (a
    /// second run of any would fail: `CREATE TABLE` of an existing table), runs only the
    /// versions it lacked, and keeps its data; on PostgreSQL two processes opening it at once
    /// both succeed.
    #[rstest]
    #[case::sqlite_fully_migrated(false, 6)]
    #[case::sqlite_before_token_expiry(false, 4)]
    #[case::postgres_fully_migrated(true, 6)]
    #[case::postgres_before_token_expiry(true, 4)]
    #[tokio::test]
    async fn a_database_the_first_runner_migrated_opens_and_runs_only_what_it_lacked(
        #[case] postgres: bool,
        #[case] applied: usize,
    ) {
        let place = Place::first_runner(postgres, applied).await;
        let store = if postgres {
            let (a, b) = tokio::join!(place.open(), place.open());
            b.expect("the second process opens it too");
            a.expect("opens")
        } else {
            place.open().await.expect("opens")
        };

        let (sqlx_rows, old) = place.recorded().await;
        let versions: Vec<i64> = sqlx_rows.iter().map(|(version, _)| *version).collect();
        let migrator = if postgres { &POSTGRES } else { &SQLITE };
        let every: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        assert!(every.starts_with(&[1, 2, 3, 4, 5, 6, 7, 8]), "{every:?}");
        assert_eq!(versions, every, "every version recorded once");
        let applied = i64::try_from(applied).expect("small");
        for (version, execution_time) in &sqlx_rows {
            if *version <= applied {
                assert_eq!(*execution_time, 0, "version {version} bridged, not run");
            }
        }
        assert_eq!(old, (1..=applied).collect::<Vec<_>>(), "left as it was");

        let token = store
            .api_token("h1")
            .await
            .expect("read")
            .expect("the token survived");
        if applied >= 5 {
            assert_eq!(token.expires_at, 123, "migration 5 did not run again");
        } else {
            let now = chrono::Utc::now().timestamp();
            assert!(
                (now + 7_776_000 - 60..=now + 7_776_000 + 60).contains(&token.expires_at),
                "migration 5 ran: {}",
                token.expires_at
            );
        }
        assert!(store.user("a@example.com").await.expect("read").is_some());
        let started = examples::started();
        store
            .cycle(
                &started.cycle_id.to_string(),
                BackupCycleCommand::Start(started.clone()),
            )
            .await
            .expect("the store works");
        assert_eq!(store.read_after(0, 10).await.expect("read").len(), 1);
        store.close().await;

        let reopened = place.open().await.expect("reopens");
        assert_eq!(
            place.recorded().await.0,
            sqlx_rows,
            "nothing ran on reopening"
        );
        assert_eq!(reopened.read_after(0, 10).await.expect("read").len(), 1);
        reopened.close().await;
    }
}
