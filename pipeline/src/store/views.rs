//! The projector's view rows (`read_model`): the read side's rows as JSON documents, rebuildable
//! from the log, written with the projector's checkpoint in one transaction under its lease.

use std::collections::HashSet;

use super::leases::renew_sql;
use super::{Lease, Store, StoreError};

/// Rows per upsert statement (five parameters each: far under either backend's limit).
const UPSERT_ROWS: usize = 200;

/// One row of a view, as a JSON document.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ViewRow {
    /// `fleet`, `backups`, `alerts` or `audit`.
    pub view: String,
    /// The row's key within the view (an instance, cycle or alert id, or a log position).
    pub key: String,
    /// Whose data it is (tenant isolation is enforced on this column).
    pub tenant_id: String,
    /// The instance of a `backups` row (read by instance); `None` for the other views.
    pub instance_id: Option<String>,
    /// The row, as JSON.
    pub doc: String,
}

/// Which way a page of a view runs through its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    /// Smallest key first.
    Ascending,
    /// Largest key first (audit keys are zero-padded log positions: newest first).
    Descending,
}

/// Which rows of a view one page holds: those of `view` (of `tenant`, if given) after the key
/// `after` (from the first, if none) in `order`, at most `limit`. A reader pages through a view
/// by passing the last key of one page as `after` of the next: each page is a short indexed
/// read and no transaction stays open between pages (a slow client holds no snapshot). No row
/// comes twice; a row first written meanwhile comes if its key is still ahead of the reader's,
/// and a row's content is as of the page that read it.
#[derive(Clone, Copy, Debug)]
pub struct ViewPage<'a> {
    /// The view.
    pub view: &'a str,
    /// Only this tenant's rows.
    pub tenant: Option<&'a str>,
    /// The direction.
    pub order: KeyOrder,
    /// The last key of the previous page.
    pub after: Option<&'a str>,
    /// Rows at most.
    pub limit: i64,
}

/// A `SELECT` of [`ViewRow`]'s columns from `read_model`, then `$rest`.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT view, key, tenant_id, instance_id, doc FROM read_model ",
            $rest
        )
    };
}

impl Store {
    /// Writes view rows and moves `checkpoint` forward to `position` (never back), in one
    /// transaction that first checks `lease` is still held (and extends it): a projector that
    /// lost its lease writes nothing.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] (nothing written), or a storage error.
    pub async fn save_view_rows(
        &self,
        rows: &[ViewRow],
        checkpoint: &str,
        position: i64,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        // Multi-row upserts (one statement per UPSERT_ROWS rows, not one per row: each
        // statement is a round trip to SQLite's worker thread or PostgreSQL). One statement
        // may not name a key twice (PostgreSQL refuses to update a row twice), so only the
        // last row of each key is kept — what upserting them one by one would leave.
        let mut seen = HashSet::new();
        let mut latest: Vec<&ViewRow> = rows
            .iter()
            .rev()
            .filter(|row| seen.insert((row.view.as_str(), row.key.as_str())))
            .collect();
        latest.reverse();
        let save = self.forward_checkpoint_sql();
        let renew = renew_sql(self.backend.dialect());
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let held = sqlx::query(&renew)
                .bind(&lease.name)
                .bind(&lease.holder)
                .bind(lease.epoch)
                .bind(lease.ttl_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if held != 1 {
                tx.rollback().await?;
                return Err(StoreError::LeaseLost(lease.name.clone()));
            }
            for chunk in latest.chunks(UPSERT_ROWS) {
                let mut upsert = sqlx::QueryBuilder::new(
                    "INSERT INTO read_model (view, key, tenant_id, instance_id, doc) ",
                );
                upsert.push_values(chunk, |mut values, row| {
                    values
                        .push_bind(&row.view)
                        .push_bind(&row.key)
                        .push_bind(&row.tenant_id)
                        .push_bind(&row.instance_id)
                        .push_bind(&row.doc);
                });
                upsert.push(
                    " ON CONFLICT (view, key) DO UPDATE SET tenant_id = excluded.tenant_id, \
                     instance_id = excluded.instance_id, doc = excluded.doc",
                );
                upsert.build().execute(&mut *tx).await?;
            }
            sqlx::query(&save)
                .bind(checkpoint)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Rows of `view`, of one tenant or (with `None`) of all, ordered by key.
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_rows(
        &self,
        view: &str,
        tenant: Option<&str>,
    ) -> Result<Vec<ViewRow>, StoreError> {
        // Two statements, not `$2 IS NULL OR ...`: a prepared (generic) plan on PostgreSQL
        // would otherwise read the whole view and filter by tenant.
        let sql = match tenant {
            Some(_) => {
                select!("WHERE view = $1 AND tenant_id = $2 ORDER BY key")
            }
            None => select!("WHERE view = $1 ORDER BY key"),
        };
        Ok(on_backend!(self, |pool| {
            let query = sqlx::query_as(sql).bind(view);
            match tenant {
                Some(tenant) => query.bind(tenant),
                None => query,
            }
            .fetch_all(pool)
            .await?
        }))
    }

    /// One page of `view`'s rows (see [`ViewPage`]): at most `limit` rows after the key
    /// `after`, in key order. Reads an index in key order (`read_model` primary key, or
    /// `read_model_by_tenant_key` with a tenant) and stops at the limit, so a page costs its rows
    /// whatever the view's size.
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_page(&self, page: &ViewPage<'_>) -> Result<Vec<ViewRow>, StoreError> {
        // Only the statement's shape varies (from fixed pieces); every value is bound. One
        // statement per shape, not `$n IS NULL OR ...` (see `view_rows`).
        let (compare, direction) = match page.order {
            KeyOrder::Ascending => (">", "ASC"),
            KeyOrder::Descending => ("<", "DESC"),
        };
        let mut sql = String::from(select!("WHERE view = $1"));
        let mut next = 2;
        if page.tenant.is_some() {
            sql.push_str(&format!(" AND tenant_id = ${next}"));
            next += 1;
        }
        if page.after.is_some() {
            sql.push_str(&format!(" AND key {compare} ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY key {direction} LIMIT ${next}"));
        Ok(on_backend!(self, |pool| {
            let mut query = sqlx::query_as(&sql).bind(page.view);
            if let Some(tenant) = page.tenant {
                query = query.bind(tenant);
            }
            if let Some(after) = page.after {
                query = query.bind(after);
            }
            query.bind(page.limit).fetch_all(pool).await?
        }))
    }

    /// Rows of `views` (all tenants) with `checkpoint`'s position, read in one snapshot (the
    /// projector writes rows and checkpoint together; read apart, the rows could be newer than
    /// the position and the events between folded twice).
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_snapshot(
        &self,
        views: &[&str],
        checkpoint: &str,
    ) -> Result<(i64, Vec<ViewRow>), StoreError> {
        let position_sql = "SELECT position FROM consumer_checkpoints WHERE consumer = $1";
        let rows_sql = select!("WHERE view = $1 ORDER BY key");
        let postgres = self.backend_name() == "postgresql";
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            if postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let position: Option<i64> = sqlx::query_scalar(position_sql)
                .bind(checkpoint)
                .fetch_optional(&mut *tx)
                .await?;
            let mut rows = Vec::new();
            for view in views {
                let some: Vec<ViewRow> = sqlx::query_as(rows_sql)
                    .bind(*view)
                    .fetch_all(&mut *tx)
                    .await?;
                rows.extend(some);
            }
            tx.commit().await?;
            (position.unwrap_or(0), rows)
        }))
    }

    /// One row of `view`, if it exists.
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_row(&self, view: &str, key: &str) -> Result<Option<ViewRow>, StoreError> {
        let sql = select!("WHERE view = $1 AND key = $2");
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(view)
            .bind(key)
            .fetch_optional(pool)
            .await?))
    }

    /// The rows of `view` with these keys (those that exist, in no particular order): the
    /// projector's load of the rows a batch touches that it does not hold. Reads the primary key.
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_rows_keyed(
        &self,
        view: &str,
        keys: &[String],
    ) -> Result<Vec<ViewRow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "{} WHERE view = $1 AND key IN ({})",
            select!(""),
            placeholders.join(", ")
        );
        Ok(on_backend!(self, |pool| {
            let mut query = sqlx::query_as(&sql).bind(view);
            for key in keys {
                query = query.bind(key);
            }
            query.fetch_all(pool).await?
        }))
    }

    /// The `backups` rows of one instance (every cycle it ran, in no particular order), read
    /// through `read_model_by_instance` (migration 9), not the whole view.
    ///
    /// # Errors
    /// A storage error.
    pub async fn backup_rows_of(&self, instance_id: &str) -> Result<Vec<ViewRow>, StoreError> {
        let sql = select!("WHERE instance_id = $1 AND view = 'backups'");
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(instance_id)
            .fetch_all(pool)
            .await?))
    }

    /// How many rows `view` has.
    ///
    /// # Errors
    /// A storage error.
    pub async fn view_count(&self, view: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM read_model WHERE view = $1";
        Ok(on_backend!(self, |pool| sqlx::query_scalar(sql)
            .bind(view)
            .fetch_one(pool)
            .await?))
    }

    /// Empties every view and sets `checkpoint` back to 0 (the start of a rebuild).
    ///
    /// # Errors
    /// A storage error.
    pub async fn clear_views(&self, checkpoint: &str) -> Result<(), StoreError> {
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM read_model")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM consumer_checkpoints WHERE consumer = $1")
                .bind(checkpoint)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
