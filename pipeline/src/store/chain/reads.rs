//! Reading the chain back: a tenant's places with the events they cover, every tenant's head,
//! the events without a link, and the index of the checkpoints written to the vault.

use chrono::{DateTime, Utc};
use restorable_domain::evidence::{ChainedEvent, TenantHead};
use serde_json::Value;
use sqlx::Row;

use crate::store::{Store, StoreError};

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

impl Store {
    /// When the history was last checked against the checkpoints (by any process).
    ///
    /// # Errors
    /// A storage error.
    pub async fn last_history_check(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at_ms: Option<i64> = on_backend!(self, |pool| sqlx::query_scalar(
            "SELECT checked_at_ms FROM history_checks WHERE id = 1"
        )
        .fetch_optional(pool)
        .await?);
        Ok(at_ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Records that the history was checked at `at`.
    ///
    /// # Errors
    /// A storage error.
    pub async fn record_history_check(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_backend!(self, |pool| sqlx::query(
            "INSERT INTO history_checks (id, checked_at_ms) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET checked_at_ms = excluded.checked_at_ms"
        )
        .bind(at.timestamp_millis())
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
