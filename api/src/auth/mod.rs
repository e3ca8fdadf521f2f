//! Accounts and access: users with bcrypt (cost 12) passwords, browser sessions in a
//! `__Secure-` cookie (HttpOnly, Secure, SameSite=Lax) with a per-session CSRF token, and API
//! tokens for machines (`Authorization: Bearer`). Only SHA-256 hashes of session and API
//! tokens are stored. A user has a role and a scope: one tenant, or `*` for every tenant.
//!
//! API tokens expire ([`DEFAULT_TOKEN_DAYS`] unless issued with another lifetime) and can be
//! listed and revoked; resetting a user's password (adding them again) and removing a user end
//! their sessions and tokens. Sign-ins go through the [`crate::throttle`] and a bound on the
//! passwords hashed at once.
//!
//! One file per job: `principal.rs` (roles, scopes, the signed-in [`Principal`]),
//! `accounts.rs` (users and their bcrypt passwords), `tokens.rs` (API tokens) and
//! `sessions.rs` (signing in and out, cookies, and telling who a request comes from).

mod accounts;
mod principal;
mod sessions;
mod tokens;

pub use accounts::{add_user, remove_user, Added};
pub use principal::{
    AuthError, Credential, Principal, Role, Scope, BCRYPT_COST, DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS,
    MIN_PASSWORD_LEN, SESSION_COOKIE, SESSION_HOURS,
};
pub use sessions::{
    identify, identify_headers, log_in, log_in_from, log_out, session_cookie, session_token, LogIn,
    NewSession,
};
pub use tokens::{issue_token, issue_token_for, list_tokens, parse_lifetime, revoke_token};
