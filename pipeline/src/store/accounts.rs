//! The accounts of the API in the event store's database: users, their signed-in sessions and
//! their API tokens with expiry (only hashes of session tokens and API token secrets are
//! stored).

use super::{Store, StoreError};

/// A user of the API.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    /// Login name.
    pub email: String,
    /// bcrypt hash.
    pub password_hash: String,
    /// `administrator`, `owner` or `viewer`.
    pub role: String,
    /// A tenant slug, or `*` for every tenant.
    pub tenant_scope: String,
}

/// A signed-in browser session.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    /// The user.
    pub email: String,
    /// The form token of this session.
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// An API token as stored (its secret is not: only the SHA-256 of it).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiTokenRecord {
    /// The SHA-256 of the secret (hex); its first 12 characters are the token's id.
    pub token_hash: String,
    /// The token's name.
    pub name: String,
    /// The user it acts as.
    pub email: String,
    /// When it was issued (RFC 3339).
    pub created_at: String,
    /// Unix seconds after which it no longer works (0 if unknown: treated as expired).
    pub expires_at: i64,
}

impl ApiTokenRecord {
    /// The short id `token list` shows and `token revoke` takes.
    pub fn id(&self) -> &str {
        self.token_hash.get(..12).unwrap_or(&self.token_hash)
    }
}

/// `expires_at` is NULL in no row written since it was added; 0 reads as expired.
const TOKEN_COLUMNS: &str =
    "token_hash, name, email, created_at, COALESCE(expires_at, 0) AS expires_at";

impl Store {
    /// Adds a user, or replaces the password, role and scope of an existing one.
    ///
    /// # Errors
    /// A storage error.
    pub async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let now = chrono::Utc::now().to_rfc3339();
        let sql = "INSERT INTO users (email, password_hash, role, tenant_scope, created_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO UPDATE SET \
                   password_hash = excluded.password_hash, role = excluded.role, \
                   tenant_scope = excluded.tenant_scope";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(&user.role)
            .bind(&user.tenant_scope)
            .bind(&now)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// A user by e-mail address.
    ///
    /// # Errors
    /// A storage error.
    pub async fn user(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = "SELECT email, password_hash, role, tenant_scope FROM users WHERE email = $1";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(email)
            .fetch_optional(pool)
            .await?))
    }

    /// Records a session under the hash of its token.
    ///
    /// # Errors
    /// A storage error.
    pub async fn put_session(
        &self,
        token_hash: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (token_hash, email, csrf_token, expires_at) \
                   VALUES ($1, $2, $3, $4)";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(token_hash)
            .bind(&session.email)
            .bind(&session.csrf_token)
            .bind(session.expires_at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The session stored under `token_hash`.
    ///
    /// # Errors
    /// A storage error.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = "SELECT email, csrf_token, expires_at FROM sessions WHERE token_hash = $1";
        Ok(on_backend!(self, |pool| sqlx::query_as(sql)
            .bind(token_hash)
            .fetch_optional(pool)
            .await?))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// A storage error.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_backend!(self, |pool| sqlx::query(
            "DELETE FROM sessions WHERE token_hash = $1"
        )
        .bind(token_hash)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Records an API token of `email` under the hash of its secret, valid until `expires_at`
    /// (Unix seconds).
    ///
    /// # Errors
    /// A storage error.
    pub async fn put_api_token(
        &self,
        token_hash: &str,
        name: &str,
        email: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().to_rfc3339();
        let sql = "INSERT INTO api_tokens (token_hash, name, email, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        on_backend!(self, |pool| sqlx::query(sql)
            .bind(token_hash)
            .bind(name)
            .bind(email)
            .bind(&now)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The token stored under `token_hash`.
    ///
    /// # Errors
    /// A storage error.
    pub async fn api_token(&self, token_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(pool)
            .await?))
    }

    /// Every token, or (with `Some`) one user's, ordered by user and issue time.
    ///
    /// # Errors
    /// A storage error.
    pub async fn api_tokens(&self, email: Option<&str>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ($1 IS NULL OR email = $1) \
             ORDER BY email, created_at, token_hash"
        );
        Ok(on_backend!(self, |pool| sqlx::query_as(&sql)
            .bind(email)
            .fetch_all(pool)
            .await?))
    }

    /// Deletes the tokens whose hash starts with `id_prefix` (at least 8 hex characters) and
    /// returns them.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] for a shorter or non-hex prefix; a storage error.
    pub async fn revoke_api_tokens(
        &self,
        id_prefix: &str,
    ) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let prefix = id_prefix.trim().to_ascii_lowercase();
        if prefix.len() < 8 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::Rejected(format!(
                "{id_prefix:?} is not a token id (at least 8 hex characters, as `token list` shows)"
            )));
        }
        let select = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE substr(token_hash, 1, {}) = $1",
            prefix.len()
        );
        let delete = format!(
            "DELETE FROM api_tokens WHERE substr(token_hash, 1, {}) = $1",
            prefix.len()
        );
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let found: Vec<ApiTokenRecord> = sqlx::query_as(&select)
                .bind(&prefix)
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query(&delete).bind(&prefix).execute(&mut *tx).await?;
            tx.commit().await?;
            found
        }))
    }

    /// Ends every session and deletes every API token of `email`; returns how many of each.
    ///
    /// # Errors
    /// A storage error.
    pub async fn end_credentials(&self, email: &str) -> Result<(u64, u64), StoreError> {
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let sessions = sqlx::query("DELETE FROM sessions WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let tokens = sqlx::query("DELETE FROM api_tokens WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            (sessions, tokens)
        }))
    }

    /// Removes a user with their sessions and tokens; `false` if there was none.
    ///
    /// # Errors
    /// A storage error.
    pub async fn delete_user(&self, email: &str) -> Result<bool, StoreError> {
        Ok(on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM sessions WHERE email = $1",
                "DELETE FROM api_tokens WHERE email = $1",
            ] {
                sqlx::query(sql).bind(email).execute(&mut *tx).await?;
            }
            let removed = sqlx::query("DELETE FROM users WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed > 0
        }))
    }
}
