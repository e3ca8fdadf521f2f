//! Browser sessions and telling who a request comes from: signing in (through the throttle
//! and the bound on passwords hashed at once), the `__Secure-` session cookie, signing out,
//! and [`identify`]ing a request by its API token or its session.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use chrono::Utc;
use restorable_pipeline::store::{SessionRecord, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};

use super::principal::{
    random_token, token_hash, AuthError, Credential, Principal, Role, Scope, BCRYPT_COST,
    SESSION_COOKIE, SESSION_HOURS,
};
use crate::error::ApiError;
use crate::state::{AppState, Shared};

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
    state: &AppState,
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
}
