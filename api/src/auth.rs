//! Accounts and access: users with bcrypt (cost 12) passwords, browser sessions in a
//! `__Secure-` cookie (HttpOnly, Secure, SameSite=Lax) with a per-session CSRF token, and API
//! tokens for machines (`Authorization: Bearer`). Only SHA-256 hashes of session and API
//! tokens are stored. A user has a role and a scope: one tenant, or `*` for every tenant.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use restorable_domain::ids::TenantId;
use restorable_pipeline::store::{SessionRecord, Store, StoreError, UserRecord};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::Shared;

/// The session cookie's name (the `__Secure-` prefix makes browsers insist on `Secure`).
pub const SESSION_COOKIE: &str = "__Secure-restorable_session";
/// bcrypt cost of stored passwords.
pub const BCRYPT_COST: u32 = 12;
/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;
/// The shortest password `user add` accepts.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// bcrypt failed.
    #[error("password hashing: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    /// The input is not acceptable (the message says why; never contains the password).
    #[error("{0}")]
    Invalid(String),
}

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Enrols, stops, resumes and backs up instances; downloads copies.
    Administrator,
    /// Owns a tenant's instances: downloads copies and reveals their password.
    Owner,
    /// Reads.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Owner => "owner",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a stored or given name.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for anything else.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        match text {
            "administrator" | "admin" => Ok(Role::Administrator),
            "owner" => Ok(Role::Owner),
            "viewer" => Ok(Role::Viewer),
            other => Err(AuthError::Invalid(format!(
                "unknown role {other:?} (administrator, owner or viewer)"
            ))),
        }
    }
}

/// Whose data a user sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant (the service provider's own staff).
    All,
    /// One tenant.
    Tenant(TenantId),
}

impl Scope {
    /// Parses `*` or a tenant slug.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for a bad slug.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        if text == "*" {
            return Ok(Scope::All);
        }
        TenantId::new(text)
            .map(Scope::Tenant)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Whether `tenant`'s data is visible.
    pub fn allows(&self, tenant: &TenantId) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(own) => own == tenant,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Tenant(t) => f.write_str(t.as_str()),
        }
    }
}

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A browser session, with its CSRF token.
    Session {
        /// The form token forms and cookie-authenticated writes must carry.
        csrf: String,
    },
    /// An API token (not sent automatically by browsers: no CSRF check needed).
    Token,
}

/// A signed-in caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user's e-mail address, or `token:<name> (<e-mail>)`.
    pub actor: String,
    /// The role.
    pub role: Role,
    /// Whose data.
    pub scope: Scope,
    /// How they signed in.
    pub credential: Credential,
}

impl Principal {
    /// Refuses unless the role is one of `roles`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`].
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("your role may not do this"))
        }
    }

    /// For a write made with a session cookie: the form token must match the session's.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] if it is missing or wrong.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Token => Ok(()),
            Credential::Session { csrf } => {
                let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), csrf.as_bytes()));
                if ok {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden("missing or wrong CSRF token"))
                }
            }
        }
    }

    /// The session's CSRF token (empty for API tokens).
    pub fn csrf(&self) -> &str {
        match &self.credential {
            Credential::Session { csrf } => csrf,
            Credential::Token => "",
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random token: 32 bytes, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Adds a user (or resets an existing one's password, role and scope).
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
) -> Result<(), AuthError> {
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
    store
        .put_user(&UserRecord {
            email,
            password_hash: hash,
            role: role.as_str().to_owned(),
            tenant_scope: scope.to_string(),
        })
        .await?;
    Ok(())
}

/// Issues an API token for `email` under `name`; returns the token (shown once, stored hashed).
///
/// # Errors
/// [`AuthError::Invalid`] for an unknown user; store failures.
pub async fn issue_token(store: &Store, email: &str, name: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    if store.user(&email).await?.is_none() {
        return Err(AuthError::Invalid(format!("no user {email:?}")));
    }
    let token = random_token();
    store
        .put_api_token(&token_hash(&token), name, &email)
        .await?;
    Ok(token)
}

/// A new session: the cookie value and its CSRF token.
pub struct NewSession {
    /// The cookie's value.
    pub token: String,
    /// The form token.
    pub csrf: String,
}

/// Checks a password and opens a session; `None` for a wrong address or password (the same
/// work is done either way, so timing does not tell which).
///
/// # Errors
/// Store and hashing failures.
pub async fn log_in(
    store: &Store,
    email: &str,
    password: SecretString,
) -> Result<Option<NewSession>, AuthError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let email = email.trim().to_lowercase();
    let user = store.user(&email).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matches = tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| bcrypt::hash(random_token(), BCRYPT_COST).unwrap_or_default())
                .clone()
        });
        bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    if user.is_none() || !matches {
        return Ok(None);
    }
    let session = NewSession {
        token: random_token(),
        csrf: random_token(),
    };
    store
        .put_session(
            &token_hash(&session.token),
            &SessionRecord {
                email,
                csrf_token: session.csrf.clone(),
                expires_at: Utc::now().timestamp() + SESSION_HOURS * 3600,
            },
        )
        .await?;
    Ok(Some(session))
}

/// Ends the session whose cookie value is `token`.
///
/// # Errors
/// A store failure.
pub async fn log_out(store: &Store, token: &str) -> Result<(), StoreError> {
    store.delete_session(&token_hash(token)).await
}

/// The `Set-Cookie` value of a session (or, with `None`, of its removal).
pub fn session_cookie(token: Option<&str>) -> String {
    match token {
        Some(token) => format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
            SESSION_HOURS * 3600
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"),
    }
}

/// The session cookie's value in a request.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn user_principal(
    store: &Store,
    email: &str,
    actor: String,
    credential: Credential,
) -> Result<Option<Principal>, ApiError> {
    let Some(user) = store.user(email).await? else {
        return Ok(None);
    };
    let role = Role::parse(&user.role).map_err(ApiError::internal)?;
    let scope = Scope::parse(&user.tenant_scope).map_err(ApiError::internal)?;
    Ok(Some(Principal {
        actor,
        role,
        scope,
        credential,
    }))
}

/// Who is calling, if anyone: an API token first, then the session cookie.
///
/// # Errors
/// A store failure.
pub async fn identify(parts: &Parts, store: &Store) -> Result<Option<Principal>, ApiError> {
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let Some((name, email)) = store.api_token(&token_hash(token.trim())).await? else {
            return Ok(None);
        };
        let actor = format!("token:{name} ({email})");
        return user_principal(store, &email, actor, Credential::Token).await;
    }
    let Some(token) = session_token(&parts.headers) else {
        return Ok(None);
    };
    let Some(session) = store.session(&token_hash(&token)).await? else {
        return Ok(None);
    };
    if session.expires_at < Utc::now().timestamp() {
        store.delete_session(&token_hash(&token)).await?;
        return Ok(None);
    }
    let credential = Credential::Session {
        csrf: session.csrf_token,
    };
    user_principal(store, &session.email, session.email.clone(), credential).await
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        identify(parts, &state.pipeline.store)
            .await?
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_http_only_and_lax() {
        let cookie = session_cookie(Some("abc"));
        assert!(cookie.starts_with("__Secure-restorable_session=abc;"));
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
    }

    #[test]
    fn scopes_allow_their_tenant_only() {
        let acme = TenantId::new("acme").expect("slug");
        let other = TenantId::new("other").expect("slug");
        let scope = Scope::parse("acme").expect("scope");
        assert!(scope.allows(&acme));
        assert!(!scope.allows(&other));
        assert!(Scope::All.allows(&other));
        assert!(Scope::parse("Not A Slug").is_err());
    }

    #[test]
    fn csrf_is_checked_for_sessions_not_tokens() {
        let mut principal = Principal {
            actor: "a@b.c".into(),
            role: Role::Viewer,
            scope: Scope::All,
            credential: Credential::Session { csrf: "t0k".into() },
        };
        assert!(principal.check_csrf(Some("t0k")).is_ok());
        assert!(principal.check_csrf(Some("t0x")).is_err());
        assert!(principal.check_csrf(None).is_err());
        principal.credential = Credential::Token;
        assert!(principal.check_csrf(None).is_ok());
    }
}
