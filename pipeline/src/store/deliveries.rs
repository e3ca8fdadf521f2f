//! Alert deliveries in progress (`alert_deliveries`): a row per alert event and route, written
//! before the route is tried and deleted when it has the alert or is given up on, so a delivery
//! cut off by a stopped process is found and finished by another (see
//! [`crate::alerting`]). Each row is leased: only the process whose lease it holds works on
//! it until the lease runs out. The same SQL serves both backends.

use super::{Store, StoreError};

/// One route's delivery of one alert event.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingDelivery {
    /// The `InstanceAlerts` aggregate (the instance) whose event it is.
    pub instance_id: String,
    /// The event's sequence in that aggregate.
    pub sequence: i64,
    /// `webhook`, `email` or `nats`.
    pub route: String,
}

impl Store {
    /// Records that `delivery` is starting, leased until `lease_until` (Unix milliseconds);
    /// `false` if it was already recorded (a redelivered event: whoever holds it finishes it).
    ///
    /// # Errors
    /// A storage error.
    pub async fn begin_delivery(
        &self,
        delivery: &PendingDelivery,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO alert_deliveries (instance_id, sequence, route, lease_until) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, sequence, route) DO NOTHING";
        let inserted = on_backend!(self, |pool| sqlx::query(sql)
            .bind(&delivery.instance_id)
            .bind(delivery.sequence)
            .bind(&delivery.route)
            .bind(lease_until)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// Takes over every delivery whose lease ran out before `now` (Unix milliseconds), leasing
    /// them until `lease_until`.
    ///
    /// # Errors
    /// A storage error.
    pub async fn take_over_deliveries(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let sql = "UPDATE alert_deliveries SET lease_until = $2 WHERE lease_until < $1 \
                   RETURNING instance_id, sequence, route";
        let mut taken: Vec<PendingDelivery> = on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(now)
            .bind(lease_until)
            .fetch_all(pool)
            .await?);
        taken.sort_by(|a, b| (&a.instance_id, a.sequence).cmp(&(&b.instance_id, b.sequence)));
        Ok(taken)
    }

    /// Forgets a delivery that ended (delivered or given up on).
    ///
    /// # Errors
    /// A storage error.
    pub async fn end_delivery(&self, delivery: &PendingDelivery) -> Result<(), StoreError> {
        let sql = "DELETE FROM alert_deliveries \
                   WHERE instance_id = $1 AND sequence = $2 AND route = $3";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(&delivery.instance_id)
            .bind(delivery.sequence)
            .bind(&delivery.route)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
