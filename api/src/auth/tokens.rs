//! API tokens for machines (`Authorization: Bearer`): issued for a user with a lifetime
//! (shown once, stored as a SHA-256 hash), listed and revoked.

use chrono::Utc;
use restorable_pipeline::store::{ApiTokenRecord, Store, StoreError};

use super::principal::{random_token, token_hash, AuthError, DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS};

/// Parses a token lifetime: `90d`, `12h`, `30m` (a number alone is days).
///
/// # Errors
/// [`AuthError::Invalid`] for anything else, zero, or more than [`MAX_TOKEN_DAYS`].
pub fn parse_lifetime(text: &str) -> Result<chrono::Duration, AuthError> {
    let text = text.trim();
    let bad = || {
        AuthError::Invalid(format!(
            "{text:?} is not a lifetime (e.g. 90d, 12h, 30m; at most {MAX_TOKEN_DAYS}d)"
        ))
    };
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 'd'),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    let lifetime = match unit {
        'd' => chrono::Duration::try_days(n),
        'h' => chrono::Duration::try_hours(n),
        'm' => chrono::Duration::try_minutes(n),
        's' => chrono::Duration::try_seconds(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    if n <= 0 || lifetime > chrono::Duration::days(MAX_TOKEN_DAYS) {
        return Err(bad());
    }
    Ok(lifetime)
}

/// Issues an API token for `email` under `name`, valid for `lifetime`; returns the token
/// (shown once, stored hashed).
///
/// # Errors
/// [`AuthError::Invalid`] for an unknown user; store failures.
pub async fn issue_token_for(
    store: &Store,
    email: &str,
    name: &str,
    lifetime: chrono::Duration,
) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    if store.user(&email).await?.is_none() {
        return Err(AuthError::Invalid(format!("no user {email:?}")));
    }
    let token = random_token();
    let expires_at = (Utc::now() + lifetime).timestamp();
    store
        .put_api_token(&token_hash(&token), name, &email, expires_at)
        .await?;
    Ok(token)
}

/// Issues an API token with the default lifetime ([`DEFAULT_TOKEN_DAYS`]).
///
/// # Errors
/// See [`issue_token_for`].
pub async fn issue_token(store: &Store, email: &str, name: &str) -> Result<String, AuthError> {
    issue_token_for(
        store,
        email,
        name,
        chrono::Duration::days(DEFAULT_TOKEN_DAYS),
    )
    .await
}

/// The tokens of one user, or of everyone.
///
/// # Errors
/// Store failures.
pub async fn list_tokens(
    store: &Store,
    email: Option<&str>,
) -> Result<Vec<ApiTokenRecord>, AuthError> {
    let email = email.map(|e| e.trim().to_lowercase());
    Ok(store.api_tokens(email.as_deref()).await?)
}

/// Revokes the token(s) whose id (as `token list` shows it) starts with `id`.
///
/// # Errors
/// [`AuthError::Invalid`] if none matches or the id is malformed; store failures.
pub async fn revoke_token(store: &Store, id: &str) -> Result<Vec<ApiTokenRecord>, AuthError> {
    let revoked = store.revoke_api_tokens(id).await.map_err(|e| match e {
        StoreError::Rejected(reason) => AuthError::Invalid(reason),
        other => AuthError::Store(other),
    })?;
    if revoked.is_empty() {
        return Err(AuthError::Invalid(format!("no token with id {id:?}")));
    }
    Ok(revoked)
}
