//! Operations alerts (`operations_alerts`): the raised and resolved alerts about the service
//! itself ([`crate::operations_alerts`]). Raising and resolving are each one conditional
//! statement, so when several processes see the same condition at once exactly one of them wins
//! and delivers it: a key has at most one open row. The same SQL serves both backends.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Store, StoreError};

/// One operations alert, open or resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct OperationsAlert {
    /// The condition, e.g. `dead_letters:close` or `relay_held`.
    #[sqlx(rename = "alert_key")]
    pub key: String,
    /// The how-manieth raise of this condition (1, 2, ...).
    pub number: i64,
    /// What was seen when it was raised (error texts, never a payload or a secret).
    pub detail: String,
    /// When it was raised (RFC 3339, UTC).
    pub raised_at: String,
    /// When it was resolved (RFC 3339, UTC); `None` while open.
    pub resolved_at: Option<String>,
}

/// The condition of a held NATS relay.
pub const RELAY_HELD: &str = "relay_held";
/// The prefix of the condition of a consumer's pending dead letters (`dead_letters:<consumer>`).
pub const DEAD_LETTERS: &str = "dead_letters:";

impl OperationsAlert {
    /// Its id: `<key>-<number>` (the same in the raise and the resolution).
    pub fn alert_id(&self) -> String {
        format!("{}-{}", self.key, self.number)
    }

    /// The title people see: `Dead Letters`, `Relay Held`.
    pub fn title(&self) -> &'static str {
        if self.key == RELAY_HELD {
            "Relay Held"
        } else if self.key.starts_with(DEAD_LETTERS) {
            "Dead Letters"
        } else if self.key == "history_tampered" {
            "History Tampered"
        } else {
            "Operations Alert"
        }
    }
}

/// A timestamp as the table keeps it.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const COLUMNS: &str = "alert_key, number, detail, raised_at, resolved_at";

/// Records one route's delivery (as [`Store::begin_delivery`]).
const BEGIN_DELIVERY: &str =
    "INSERT INTO alert_deliveries (instance_id, sequence, route, lease_until) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, sequence, route) DO NOTHING";

/// The prefix of the `alert_deliveries` rows of operations alerts: `operations/<key>`, which no
/// instance id (a UUID) can be.
pub const OPERATIONS_ROWS: &str = "operations/";

/// The `alert_deliveries` row (instance id, sequence) of an alert's raise — sequence
/// `2 × number` — or, once it has `resolved_at`, of its resolution (`2 × number + 1`).
pub fn delivery_row(alert: &OperationsAlert) -> (String, i64) {
    let sequence = alert
        .number
        .saturating_mul(2)
        .saturating_add(i64::from(alert.resolved_at.is_some()));
    (format!("{OPERATIONS_ROWS}{}", alert.key), sequence)
}

impl Store {
    /// Raises the alert `key` at `at` unless one of that key is open, and records its delivery
    /// to each of `routes` leased until `lease_until` (Unix milliseconds), in one transaction;
    /// the alert if this call raised it, `None` if it was open already (raised by this or
    /// another process).
    ///
    /// # Errors
    /// A storage error (then nothing was raised).
    pub async fn raise_operations_alert(
        &self,
        key: &str,
        detail: &str,
        at: DateTime<Utc>,
        routes: &[&str],
        lease_until: i64,
    ) -> Result<Option<OperationsAlert>, StoreError> {
        // One statement: the next number, only while no row of the key is open. Two processes
        // racing insert the same number; the primary key lets one through.
        let sql = format!(
            "INSERT INTO operations_alerts ({COLUMNS}) \
             SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, NULL FROM operations_alerts \
             WHERE alert_key = $1 \
             HAVING COALESCE(SUM(CASE WHEN resolved_at IS NULL THEN 1 ELSE 0 END), 0) = 0 \
             ON CONFLICT (alert_key, number) DO NOTHING \
             RETURNING {COLUMNS}"
        );
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let raised: Option<OperationsAlert> = sqlx::query_as(&sql)
                .bind(key)
                .bind(detail)
                .bind(stamp(at))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(alert) = &raised {
                let (instance, sequence) = delivery_row(alert);
                for route in routes {
                    sqlx::query(BEGIN_DELIVERY)
                        .bind(&instance)
                        .bind(sequence)
                        .bind(*route)
                        .bind(lease_until)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            raised
        }))
    }

    /// Resolves the open alert `key` at `at` and records the resolution's delivery to each of
    /// `routes` leased until `lease_until`, in one transaction; the alert if this call
    /// resolved it, `None` if none was open.
    ///
    /// # Errors
    /// A storage error (then nothing was resolved).
    pub async fn resolve_operations_alert(
        &self,
        key: &str,
        at: DateTime<Utc>,
        routes: &[&str],
        lease_until: i64,
    ) -> Result<Option<OperationsAlert>, StoreError> {
        let sql = format!(
            "UPDATE operations_alerts SET resolved_at = $2 \
             WHERE alert_key = $1 AND resolved_at IS NULL RETURNING {COLUMNS}"
        );
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let resolved: Option<OperationsAlert> = sqlx::query_as(&sql)
                .bind(key)
                .bind(stamp(at))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(alert) = &resolved {
                let (instance, sequence) = delivery_row(alert);
                for route in routes {
                    sqlx::query(BEGIN_DELIVERY)
                        .bind(&instance)
                        .bind(sequence)
                        .bind(*route)
                        .bind(lease_until)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            resolved
        }))
    }

    /// Every operations alert, oldest first; with `open_only`, those not resolved.
    ///
    /// # Errors
    /// A storage error.
    pub async fn operations_alerts(
        &self,
        open_only: bool,
    ) -> Result<Vec<OperationsAlert>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM operations_alerts \
             WHERE ($1 = 0 OR resolved_at IS NULL) ORDER BY raised_at, alert_key, number"
        );
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(i64::from(open_only))
            .fetch_all(pool)
            .await?))
    }

    /// The alert `key` number `number`, if there is one.
    ///
    /// # Errors
    /// A storage error.
    pub async fn operations_alert(
        &self,
        key: &str,
        number: i64,
    ) -> Result<Option<OperationsAlert>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM operations_alerts WHERE alert_key = $1 AND number = $2");
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(key)
            .bind(number)
            .fetch_optional(pool)
            .await?))
    }
}
