//! Accounts and access: users with bcrypt (cost 12) passwords, browser sessions in a
//! `__Secure-` cookie (HttpOnly, Secure, SameSite=Lax) with a per-session CSRF token, and API
//! tokens for machines (`Authorization: Bearer`). Only SHA-256 hashes of session and API
//! tokens are stored. A user has a role and a scope: one tenant, or `*` for every tenant.
//!
//! API tokens expire ([`DEFAULT_TOKEN_DAYS`] unless issued with another lifetime) and can be
//! listed and revoked; resetting a user's password (adding them again) and removing a user end
//! their sessions and tokens. Sign-ins go through the [`crate::throttle`] and a bound on the
//! passwords hashed at once.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use restorable_domain::ids::TenantId;
use restorable_pipeline::store::{ApiTokenRecord, SessionRecord, Store, StoreError, UserRecord};
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
/// An API token's lifetime unless issued with another.
pub const DEFAULT_TOKEN_DAYS: i64 = 90;
/// The longest lifetime a token may be issued with.
pub const MAX_TOKEN_DAYS: i64 = 3650;

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

/// A new session: the cookie value and its CSRF token.
pub struct NewSession {
    /// The cookie's value.
    pub token: String,
    /// The form token.
    pub csrf: String,
}

/// How a sign-in went.
pub enum LogIn {
    /// Signed in.
    Session(NewSession),
    /// Wrong address or password.
    Wrong,
    /// Too many wrong passwords for this account or from this address, or too many sign-ins
    /// hashing at once: try again after this long (no password was checked).
    Throttled(std::time::Duration),
}

/// Checks a password and opens a session, through the sign-in throttle and the bound on
/// passwords hashed at once (see [`crate::throttle`]).
///
/// # Errors
/// Store and hashing failures.
pub async fn log_in_from(
    state: &crate::AppState,
    email: &str,
    password: SecretString,
    address: Option<std::net::IpAddr>,
) -> Result<LogIn, AuthError> {
    if let Some(wait) = state.throttle.check(email, address) {
        tracing::warn!(?address, "sign-in refused: throttled");
        return Ok(LogIn::Throttled(wait));
    }
    let permit = match tokio::time::timeout(
        state.options.hash_queue_wait,
        state.hashing.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            tracing::warn!(
                ?address,
                "sign-in refused: too many passwords being checked"
            );
            return Ok(LogIn::Throttled(std::time::Duration::from_secs(1)));
        }
    };
    let outcome = log_in(&state.pipeline.store, email, password).await;
    drop(permit);
    match outcome? {
        Some(session) => {
            state.throttle.succeeded(email);
            Ok(LogIn::Session(session))
        }
        None => {
            state.throttle.failed(email, address);
            tracing::info!(?address, "sign-in failed: wrong e-mail address or password");
            Ok(LogIn::Wrong)
        }
    }
}

/// Checks a password and opens a session; `None` for a wrong address or password (the same
/// work is done either way, so timing does not tell which). Not throttled: the web server calls
/// [`log_in_from`].
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
    identify_headers(&parts.headers, store).await
}

/// [`identify`] from the request's headers alone (a live stream asks again while it runs).
/// An expired token or session is refused (and deleted).
///
/// # Errors
/// A store failure.
pub async fn identify_headers(
    headers: &HeaderMap,
    store: &Store,
) -> Result<Option<Principal>, ApiError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let now = Utc::now().timestamp();
    if let Some(token) = bearer {
        let hash = token_hash(token.trim());
        let Some(record) = store.api_token(&hash).await? else {
            return Ok(None);
        };
        if record.expires_at <= now {
            store.revoke_api_tokens(&hash).await?;
            return Ok(None);
        }
        let actor = format!("token:{} ({})", record.name, record.email);
        return user_principal(store, &record.email, actor, Credential::Token).await;
    }
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let Some(session) = store.session(&token_hash(&token)).await? else {
        return Ok(None);
    };
    if session.expires_at < now {
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
