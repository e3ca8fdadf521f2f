//! Daily digests claimed and sent (`alert_digests`): a row per tenant and day, so each tenant
//! gets one digest a day however many processes run the digest sweep ([`crate::digest`]). A
//! claim is leased like an alert delivery: the process that holds it sends; a process stopped
//! while sending leaves it to another when the lease runs out. The same SQL serves both
//! backends.

use super::{Store, StoreError};

impl Store {
    /// Claims `tenant`'s digest of `day` (`YYYY-MM-DD`) until `lease_until` (Unix
    /// milliseconds): `true` if this caller may send it now — the day's row did not exist, or
    /// was never marked sent and its lease ran out before `now`.
    ///
    /// # Errors
    /// A storage error (nothing was claimed).
    pub async fn claim_digest(
        &self,
        tenant: &str,
        day: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO alert_digests (tenant_id, day, lease_until) VALUES ($1, $2, $4) \
                   ON CONFLICT (tenant_id, day) DO UPDATE SET lease_until = excluded.lease_until \
                   WHERE alert_digests.sent_at IS NULL AND alert_digests.lease_until < $3";
        let claimed = on_backend!(self, |pool| sqlx::query(sql)
            .bind(tenant)
            .bind(day)
            .bind(now)
            .bind(lease_until)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(claimed == 1)
    }

    /// Marks `tenant`'s digest of `day` sent at `at` (Unix milliseconds): never claimed again.
    ///
    /// # Errors
    /// A storage error.
    pub async fn digest_sent(&self, tenant: &str, day: &str, at: i64) -> Result<(), StoreError> {
        let sql = "UPDATE alert_digests SET sent_at = $3 WHERE tenant_id = $1 AND day = $2";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(tenant)
            .bind(day)
            .bind(at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Gives back the claim on `tenant`'s digest of `day` (its send failed): the next sweep may
    /// claim it again.
    ///
    /// # Errors
    /// A storage error (the claim then ends with its lease).
    pub async fn release_digest(&self, tenant: &str, day: &str) -> Result<(), StoreError> {
        let sql = "UPDATE alert_digests SET lease_until = 0 \
                   WHERE tenant_id = $1 AND day = $2 AND sent_at IS NULL";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(tenant)
            .bind(day)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// When `tenant`'s digest of `day` was sent (Unix milliseconds), if it was.
    ///
    /// # Errors
    /// A storage error.
    pub async fn digest_sent_at(&self, tenant: &str, day: &str) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT sent_at FROM alert_digests WHERE tenant_id = $1 AND day = $2";
        let sent: Option<Option<i64>> = on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(tenant)
            .bind(day)
            .fetch_optional(pool)
            .await?);
        Ok(sent.flatten())
    }
}
