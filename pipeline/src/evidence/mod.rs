//! Evidence for auditors: the signed checkpoints of the tenants' hash chains
//! ([`restorable_domain::evidence`], chained by the store in `store/chain.rs`), exports an
//! auditor verifies offline, and the live check of the store and the vault.
//!
//! # Layout
//! - this file: the [`Signer`] port, [`EvidenceError`], signature verification.
//! - `signing.rs`: [`LocalSigner`], the embedded default's Ed25519 key in the data directory.
//! - `kms.rs`: [`KmsSigner`], production's KMS key (ECDSA P-256), which never leaves KMS.
//! - `checkpoint.rs`: [`SignedCheckpoint`]s: written to the vault (write-once, under Object
//!   Lock), indexed in `audit_checkpoints`, read back.
//! - `certificate.rs`: restore certificates: facts from a Restore-Tested cycle's events, signed;
//!   checked offline, and their standing for the public page.
//! - `export.rs`: `audit export`: a tenant's events, links, checkpoints with their Merkle
//!   proofs, the public keys and a README, nothing of other tenants.
//! - `verify.rs`: `audit verify`: an export checked offline; what it proved or the first break.
//! - `check.rs`: `audit check`: the same against the live store and the vault.
//! - `watch.rs`: the checkpoints (hourly) and the check (daily) in `serve` and the scheduling
//!   worker, on the [`EvidenceSchedule`].
//!
//! # What it proves, against whom
//! Against anyone who can write to the database but not to the vault's locked objects nor
//! read the signing key: an event edited, removed, inserted or reordered after it was covered
//! by a checkpoint is named; before its first checkpoint (at most one interval, hourly by
//! default) a rewrite that also recomputes the links is not detectable.

mod certificate;
mod check;
mod checkpoint;
mod export;
mod kms;
mod signing;
mod verify;
mod watch;

pub use certificate::{
    certificate_facts, certificate_fault, certificate_standing, issue_certificate, Certificate,
    CertificateFacts, Standing, CERTIFICATE_FORMAT,
};
pub use check::{check_live, LiveReport};
pub use checkpoint::{
    checkpoint_object, latest_checkpoints, write_checkpoint, CheckpointHeader, SignedCheckpoint,
    CHECKPOINT_PREFIX, KEY_PREFIX,
};
pub use export::{export_tenant, ExportRange, ExportSummary};
pub use kms::KmsSigner;
pub use signing::LocalSigner;
pub use verify::{verify_export, Break, ExportManifest, ExportedCheckpoint, Proven, EXPORT_FORMAT};
pub use watch::{round, watch, HISTORY_TAMPERED};

use crate::store::StoreError;
use crate::vault::VaultError;

/// How long a checkpoint (and a public key) stays under Object Lock: seven years.
pub const CHECKPOINT_RETENTION: chrono::Duration = chrono::Duration::days(2557);

/// When the evidence is written and checked (`[audit]` in the configuration file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidenceSchedule {
    /// How often a checkpoint is written, also when nothing happened (default: hourly).
    pub checkpoint_every: chrono::Duration,
    /// How often the whole history is checked against the checkpoints (default: daily; it
    /// reads every event).
    pub check_every: chrono::Duration,
    /// How long a checkpoint (and a public key) stays under Object Lock
    /// ([`CHECKPOINT_RETENTION`]).
    pub retention: chrono::Duration,
}

impl Default for EvidenceSchedule {
    fn default() -> Self {
        Self {
            checkpoint_every: chrono::Duration::hours(1),
            check_every: chrono::Duration::hours(24),
            retention: CHECKPOINT_RETENTION,
        }
    }
}

/// The signing key's file in the data directory.
pub const SIGNING_KEY_FILE: &str = "signing-key";

/// Why evidence could not be written or read (infrastructure: never a verdict on the history).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The event store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The vault failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The signing key is unusable.
    #[error("signing key: {0}")]
    Key(String),
    /// A file is not in the expected format (an export given to `audit verify`).
    #[error("{0}")]
    Format(String),
}

/// What signs checkpoints: a local Ed25519 key, or (production) a key that never leaves its
/// service.
#[async_trait::async_trait]
pub trait Signer: Send + Sync {
    /// The key's id: the first 16 hex digits of the SHA-256 of its public key.
    fn key_id(&self) -> String;
    /// The public key, hex (32 bytes of Ed25519, or a P-256 SubjectPublicKeyInfo in DER).
    fn public_key_hex(&self) -> String;
    /// The signature of `bytes`, hex (64 bytes of Ed25519, or a DER ECDSA signature).
    ///
    /// # Errors
    /// [`EvidenceError::Key`].
    async fn sign(&self, bytes: &[u8]) -> Result<String, EvidenceError>;
}

/// The key id of a public key (hex).
pub fn key_id_of(public_key_hex: &str) -> String {
    restorable_domain::evidence::sha256_hex(public_key_hex.as_bytes())[..16].to_owned()
}

/// The DER SubjectPublicKeyInfo header of a P-256 public key (KMS's `GetPublicKey`); the 65
/// bytes after it are the uncompressed point.
const P256_SPKI_HEADER: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

/// Whether `signature_hex` is `public_key_hex`'s signature of `bytes`: Ed25519 for a 32-byte
/// key (the local signer), ECDSA P-256 with SHA-256 (DER signature) for a P-256
/// SubjectPublicKeyInfo (a KMS key).
pub fn signature_holds(public_key_hex: &str, bytes: &[u8], signature_hex: &str) -> bool {
    let (Ok(key), Ok(signature)) = (hex::decode(public_key_hex), hex::decode(signature_hex)) else {
        return false;
    };
    if let Some(point) = public_key_hex.strip_prefix(P256_SPKI_HEADER) {
        let Ok(point) = hex::decode(point) else {
            return false;
        };
        return point.len() == 65
            && ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                point,
            )
            .verify(bytes, &signature)
            .is_ok();
    }
    let (Ok(key), Ok(signature)) = (
        <[u8; 32]>::try_from(key.as_slice()),
        <[u8; 64]>::try_from(signature.as_slice()),
    ) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}
