//! The first open after migration 10: every event stored before the chain existed is chained,
//! once (see the chain's module header).

use restorable_domain::evidence::{self, ChainedEvent, GENESIS};
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;

use super::{INSERT_LINK, UNASSIGNED};
use crate::store::migrations::WRITERS_LOCK;
use crate::store::{Backend, StoreError};

/// Events chained per transaction by the backfill.
const BACKFILL_BATCH: i64 = 5_000;

/// Chains every event stored before the chain existed, once (see the module's header).
pub(crate) async fn backfill_once(backend: &Backend) -> Result<(), StoreError> {
    macro_rules! backfill_in {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            // Taking the writers' turn first (PostgreSQL; SQLite's write lock comes with the
            // first write) so no commit lands between the read of the log and the links.
            if let Backend::Postgres(_) = backend {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITERS_LOCK)
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
