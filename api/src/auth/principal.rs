//! Who a caller is and what they may do: [`Role`], [`Scope`], [`Credential`] and the signed-in
//! [`Principal`] (role checks, the CSRF check, in constant time); the account constants and
//! [`AuthError`]; how tokens are made and stored (random, SHA-256 hashed).

use std::fmt;

use base64::Engine;
use rand::RngCore;
use restorable_domain::ids::TenantId;
use restorable_pipeline::store::StoreError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

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
                let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(csrf.as_bytes())));
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

/// A random token: 32 bytes, base64url.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token.
pub(super) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
