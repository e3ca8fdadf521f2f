//! Key sealing: the port that keeps tenant backup passwords (and PBX API credentials) at rest
//! only as ciphertext, and its embedded adapter.
//!
//! The port, [`KeySealer`], works like a KMS `Encrypt`/`Decrypt` pair with an *encryption
//! context*: the `context` string (for example the tenant id and key version) is bound to the
//! ciphertext, so a sealed secret copied into another tenant's record does not unseal there.
//! In production the adapter is AWS KMS; [`LocalKeySealer`] is the embedded default: a 32-byte
//! master key in a local file (mode 0600) and AES-256-GCM with a random 96-bit nonce per seal and
//! the context as additional authenticated data.
//!
//! Plaintext only ever lives in [`SecretString`]s and [`Zeroizing`] buffers, so it is wiped when
//! dropped and never shows up in `Debug` output, logs or error messages.
//!
//! [`generate_tenant_password`] makes the tenant backup passwords themselves: Restorable
//! generates them, the customer never chooses one.
//!
//! # Layout
//! - this file: the [`KeySealer`] port, [`SealedSecret`], [`SealError`], tenant passwords.
//! - [`local`]: [`LocalKeySealer`], AES-256-GCM under a master key file (embedded default).
//! - [`kms`]: [`KmsKeySealer`], AWS KMS with an encryption context per secret.

mod kms;
mod local;

pub use kms::{encryption_context, KmsConfig, KmsKeySealer, SEALED_PREFIX};
pub use local::LocalKeySealer;

use std::fmt;
use std::io;
use std::path::PathBuf;

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Length of a generated tenant password: 24 × log2(62) ≈ 142.9 bits of entropy (> 128).
pub const TENANT_PASSWORD_LEN: usize = 24;

/// A sealed secret: base64 (standard alphabet, padded) of `nonce || AES-256-GCM ciphertext+tag`.
///
/// It is safe to store, log and put into events: without the master key (and the right
/// context) it reveals nothing but the secret's length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl SealedSecret {
    /// The stored text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a stored text form; it is checked only when unsealed ([`SealError::Malformed`]).
    pub fn from_string(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Display for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why sealing or unsealing failed. No variant ever carries plaintext.
#[derive(thiserror::Error, Debug)]
pub enum SealError {
    /// The master key file could not be created or is unfit for use (wrong length, readable by
    /// group or others, not a regular file, ...).
    #[error("master key file {}: {detail}", path.display())]
    MasterKey {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        detail: String,
    },
    /// Authentication failed: the ciphertext was altered, was sealed under another context, or
    /// under another master key.
    #[error("sealed secret failed authentication (tampered, wrong context or wrong master key)")]
    Tampered,
    /// The sealed text is not base64 of a nonce and a ciphertext, or the plaintext is not UTF-8.
    #[error("sealed secret is malformed")]
    Malformed,
    /// Reading or writing the key material failed.
    #[error("i/o error in key sealing: {0}")]
    Io(#[from] io::Error),
    /// The key management service refused a call for good (key missing or disabled, access
    /// denied, credentials missing, an answer without a ciphertext), with its error code and
    /// message.
    #[error("{0}")]
    Kms(String),
    /// The key management service could not answer now: throttled (`ThrottlingException`),
    /// broken inside (`KMSInternalException`, a 5xx, `DependencyTimeoutException`), a timeout,
    /// a connection that failed. Trying again later may succeed ([`SealError::is_transient`]).
    #[error("{0}")]
    Unavailable(String),
}

impl SealError {
    /// Whether trying the same call again later may succeed: the key service was busy,
    /// briefly broken or unreachable ([`SealError::Unavailable`]), or reading the key material
    /// met an I/O error of a passing kind ([`crate::vault::io_is_transient`]). A ciphertext
    /// that does not authenticate (wrong key, wrong context), a malformed one, an unusable
    /// master key and a refusal of the service (access denied, key disabled) are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            SealError::Unavailable(_) => true,
            SealError::Io(e) => crate::vault::io_is_transient(e),
            SealError::MasterKey { .. }
            | SealError::Tampered
            | SealError::Malformed
            | SealError::Kms(_) => false,
        }
    }
}

/// The key-sealing port (KMS in production, [`LocalKeySealer`] embedded).
#[async_trait::async_trait]
pub trait KeySealer: Send + Sync {
    /// Seals `secret`. `context` binds the ciphertext (like a KMS encryption context):
    /// unsealing with another context fails ([`SealError::Tampered`]).
    ///
    /// # Errors
    /// [`SealError::Io`] or an adapter-specific failure.
    async fn seal(&self, context: &str, secret: &SecretString) -> Result<SealedSecret, SealError>;

    /// Unseals what [`KeySealer::seal`] made under the same `context`.
    ///
    /// # Errors
    /// [`SealError::Tampered`] if the ciphertext or context does not authenticate,
    /// [`SealError::Malformed`] if the sealed text cannot be parsed.
    async fn unseal(&self, context: &str, sealed: &SealedSecret)
        -> Result<SecretString, SealError>;
}

/// Generates a tenant backup password: 24 characters drawn uniformly from `[A-Za-z0-9]` with the
/// OS random number generator (≈ 142.9 bits).
pub fn generate_tenant_password() -> SecretString {
    let password: String = OsRng
        .sample_iter(&Alphanumeric)
        .take(TENANT_PASSWORD_LEN)
        .map(char::from)
        .collect();
    SecretString::from(password)
}
