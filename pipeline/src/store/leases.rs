//! Leases with fencing (`leases`): a role that one process at a time may play — the NATS relay,
//! the projector, the watchdog — held for a time measured by the *database's* clock, renewed by
//! its holder, and taken over by another process once it runs out. Every change of holder bumps
//! the lease's `epoch`; a write made under a lease checks, in its own transaction, that the same
//! holder and epoch still hold an unexpired lease and extends it, so a process that lost its
//! lease during an outage (its connection died, another took over) cannot write again until it
//! holds it anew. This replaces session advisory locks, which vanish with their connection
//! without their holder noticing. The same SQL serves both backends; only "now" differs.

use super::{Dialect, Store, StoreError};

/// A held lease: who holds it and under which epoch (the fencing token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The role, e.g. `projector`.
    pub name: String,
    /// This holder's unique id (one per process and role).
    pub holder: String,
    /// Grows at every change of holder; writes carry it.
    pub epoch: i64,
    /// How long each renewal holds it, in milliseconds.
    pub ttl_ms: i64,
}

impl Store {
    /// Takes the lease `name` for `holder` if it is free, run out, or already this holder's;
    /// `None` while another holds it.
    ///
    /// # Errors
    /// A storage error (infrastructure: the caller does not hold the lease).
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let now = self.backend.dialect().now_ms;
        let sql = format!(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET \
               epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch \
                            ELSE leases.epoch + 1 END, \
               holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < {now} \
             RETURNING epoch"
        );
        let epoch: Option<i64> = on_backend!(self, |pool| sqlx::query_scalar(&sql)
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_optional(pool)
            .await?);
        Ok(epoch.map(|epoch| Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            epoch,
            ttl_ms,
        }))
    }

    /// Takes the lease `name` whoever holds it (an operator's rebuild): the holder it had is
    /// fenced out at its next write.
    ///
    /// # Errors
    /// A storage error.
    pub async fn seize_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Lease, StoreError> {
        let now = self.backend.dialect().now_ms;
        let sql = format!(
            "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET epoch = leases.epoch + 1, \
               holder = excluded.holder, expires_at = excluded.expires_at \
             RETURNING epoch"
        );
        let epoch: i64 = on_backend!(self, |pool| sqlx::query_scalar(&sql)
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_one(pool)
            .await?);
        Ok(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            epoch,
            ttl_ms,
        })
    }

    /// Extends a held lease.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if another process holds it now (or it ran out), or a storage
    /// error.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let sql = renew_sql(self.backend.dialect());
        let renewed = on_backend!(self, |pool| sqlx::query(&sql)
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.epoch)
            .bind(lease.ttl_ms)
            .execute(pool)
            .await?
            .rows_affected());
        if renewed == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(lease.name.clone()))
        }
    }

    /// Lets a lease go at once (a clean stop), so another process takes over without waiting.
    /// The row stays (run out), so epochs keep growing and an old lease is never valid again.
    ///
    /// # Errors
    /// A storage error.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let sql = "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND epoch = $3";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.epoch)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}

/// The statement that extends `$1` held by `$2` under epoch `$3` by `$4` ms, only if unexpired.
pub(super) fn renew_sql(dialect: &Dialect) -> String {
    let now = dialect.now_ms;
    format!(
        "UPDATE leases SET expires_at = {now} + $4 \
         WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at >= {now}"
    )
}
