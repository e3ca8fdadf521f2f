//! Users: adding one (or resetting their password, role and scope, which ends their sessions
//! and tokens) and removing one. Passwords are stored as bcrypt hashes (cost
//! [`BCRYPT_COST`]).

use restorable_pipeline::store::{Store, UserRecord};
use secrecy::{ExposeSecret, SecretString};

use super::principal::{AuthError, Role, Scope, BCRYPT_COST, MIN_PASSWORD_LEN};

/// What [`add_user`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A new user.
    New,
    /// An existing user's password (and role and scope) was reset: their sessions and tokens
    /// ended (how many of each).
    Reset {
        /// Sessions ended.
        sessions: u64,
        /// Tokens deleted.
        tokens: u64,
    },
}

/// Adds a user, or resets an existing one's password, role and scope, which ends every session
/// and API token they had.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad e-mail address, a short password or an administrator scope
/// the role cannot have; store and hashing failures.
pub async fn add_user(
    store: &Store,
    email: &str,
    password: &SecretString,
    role: Role,
    scope: &Scope,
) -> Result<Added, AuthError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        return Err(AuthError::Invalid(format!(
            "{email:?} is not an e-mail address"
        )));
    }
    if password.expose_secret().chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let password = password.clone();
    let hash =
        tokio::task::spawn_blocking(move || bcrypt::hash(password.expose_secret(), BCRYPT_COST))
            .await
            .map_err(|e| AuthError::Invalid(format!("hashing was interrupted: {e}")))??;
    let existed = store.user(&email).await?.is_some();
    store
        .put_user(&UserRecord {
            email: email.clone(),
            password_hash: hash,
            role: role.as_str().to_owned(),
            tenant_scope: scope.to_string(),
        })
        .await?;
    if !existed {
        return Ok(Added::New);
    }
    let (sessions, tokens) = store.end_credentials(&email).await?;
    Ok(Added::Reset { sessions, tokens })
}

/// Removes a user with their sessions and tokens; returns the removed user.
///
/// # Errors
/// [`AuthError::Invalid`] for an unknown user; store failures.
pub async fn remove_user(store: &Store, email: &str) -> Result<UserRecord, AuthError> {
    let email = email.trim().to_lowercase();
    let user = store
        .user(&email)
        .await?
        .ok_or_else(|| AuthError::Invalid(format!("no user {email:?}")))?;
    store.delete_user(&email).await?;
    Ok(user)
}
