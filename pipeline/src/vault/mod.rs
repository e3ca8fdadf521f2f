//! The vault: the object-store port where captured backups are kept, and its embedded adapter.
//!
//! The port, [`Vault`], is the part of S3 the pipeline relies on: a write-once `put` that streams
//! the backup in and computes its SHA-256 on the way (the bytes are never read twice), `head` for
//! the recorded metadata, `open` to stream the bytes back (the Secured rung re-hashes them),
//! `open_seekable` for ZIP verification, and `delete`, which Object Lock refuses before the
//! retain-until date. Production uses S3 with Object Lock; [`LocalVault`] is the embedded default,
//! a local directory with the same guarantees:
//!
//! ```text
//! <root>/objects/<key>        the bytes, read-only (0444), published by hard link (write-once)
//! <root>/meta/<key>.json      the StoredObject record (size, sha256, version id, lock)
//! <root>/tmp/                 uploads in progress; a failed upload leaves nothing elsewhere
//! ```
//!
//! # Layout
//! - this file: the [`Vault`] port, its error, and the key rules both adapters share.
//! - [`local`]: [`LocalVault`], the embedded adapter.
//! - [`s3`]: [`S3Vault`], S3 with Object Lock (aws-sdk-s3).

mod local;
pub(crate) mod s3;

pub use local::LocalVault;
pub use s3::{S3Config, S3Vault, PART_SIZE};

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest key accepted (S3's limit).
pub(crate) const MAX_KEY_LEN: usize = 1024;

/// Object Lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Nobody, not even the account root, can delete or shorten the retention.
    Compliance,
    /// Privileged users could bypass the lock on S3; the pipeline never does.
    Governance,
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        })
    }
}

/// The Object Lock an object is stored under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: LockMode,
    /// Deletes are refused before this instant.
    pub retain_until: DateTime<Utc>,
}

/// What the vault recorded about a stored object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The object key, e.g. `tenant/instance/cycle.zip`.
    pub key: String,
    /// The version written (one per key: objects are write-once).
    pub version_id: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex, computed while they streamed in.
    pub sha256: String,
    /// Object Lock, if the object was stored under one.
    pub lock: Option<ObjectLock>,
    /// When the object was published.
    pub stored_at: DateTime<Utc>,
}

/// Why a vault operation failed.
#[derive(thiserror::Error, Debug)]
pub enum VaultError {
    /// The key is taken: objects are write-once.
    #[error("object {key} already exists (objects are write-once)")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// No such object, or not in that version.
    #[error("object {key} version {version_id} not found")]
    NotFound {
        /// The key asked for.
        key: String,
        /// The version asked for.
        version_id: String,
    },
    /// Object Lock refuses the delete until `retain_until`.
    #[error("object {key} is locked until {retain_until}")]
    Locked {
        /// The key asked for.
        key: String,
        /// When deleting becomes possible.
        retain_until: DateTime<Utc>,
    },
    /// The key is not a valid relative object key.
    #[error("invalid object key {key:?}")]
    InvalidKey {
        /// The rejected key.
        key: String,
    },
    /// Reading the input stream failed (e.g. a download broke); the partial object was discarded.
    #[error("reading the source stream failed: {0}")]
    Source(#[source] io::Error),
    /// The store itself failed.
    #[error("vault i/o error: {0}")]
    Io(#[source] io::Error),
    /// A remote object store (S3) refused a call for good (access denied, a malformed answer,
    /// no versioning ...): the operation, the object, the service's error code and message.
    #[error("{0}")]
    Remote(String),
    /// A remote object store (S3) could not answer now: throttled (`SlowDown`), a 5xx
    /// (`InternalError`, `ServiceUnavailable`), a timeout, a connection that failed or broke.
    /// Trying again later may succeed ([`VaultError::is_transient`]).
    #[error("{0}")]
    Unavailable(String),
    /// The vault adapter is not configured well enough to be used (e.g. credentials missing).
    #[error("vault configuration: {0}")]
    Config(String),
    /// An object is there but was left unfinished by an upload that was cut off (a worker
    /// killed between completing the upload and recording its SHA-256): it can never be
    /// trusted, and as objects are write-once, a new copy goes under another key.
    #[error("object {key} was left unfinished by an interrupted upload: {detail}")]
    Unfinished {
        /// The key.
        key: String,
        /// What is missing.
        detail: String,
    },
}

impl VaultError {
    /// Whether trying the same call again later may succeed: the store was busy, briefly
    /// broken or unreachable ([`VaultError::Unavailable`]), or an I/O error of a transient
    /// kind ([`io_is_transient`]). A missing object or version, a refused delete, a taken or
    /// invalid key, a configuration error and a remote refusal are permanent; so is a broken
    /// *source* (the stream being stored, not the vault, failed).
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Unavailable(_) => true,
            VaultError::Io(e) => io_is_transient(e),
            VaultError::AlreadyExists { .. }
            | VaultError::NotFound { .. }
            | VaultError::Locked { .. }
            | VaultError::InvalidKey { .. }
            | VaultError::Source(_)
            | VaultError::Remote(_)
            | VaultError::Config(_)
            | VaultError::Unfinished { .. } => false,
        }
    }
}

/// Whether an I/O error may pass by itself (a reset or aborted connection, a timeout, an
/// interrupted or unexpectedly short read, a stream error of unknown kind) rather than
/// needing a person (a missing file, a refused permission, invalid data, a full or read-only
/// disk).
pub fn io_is_transient(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::AlreadyExists
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::Unsupported
            | io::ErrorKind::StorageFull
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::OutOfMemory
    )
}

impl From<tokio::task::JoinError> for VaultError {
    fn from(e: tokio::task::JoinError) -> Self {
        VaultError::Io(io::Error::other(e))
    }
}

/// The object-store port (S3 with Object Lock in production, [`LocalVault`] embedded).
#[async_trait::async_trait]
pub trait Vault: Send + Sync {
    /// Streams `source` into a new object, computing SHA-256 on the way; write-once: an existing
    /// key → [`VaultError::AlreadyExists`]. `lock` `None` = stored without Object Lock.
    ///
    /// # Errors
    /// [`VaultError::InvalidKey`], [`VaultError::AlreadyExists`], [`VaultError::Source`] (the
    /// partial object is discarded), [`VaultError::Io`].
    async fn put(
        &self,
        key: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        lock: Option<ObjectLock>,
    ) -> Result<StoredObject, VaultError>;

    /// The object's recorded metadata, if it exists.
    ///
    /// # Errors
    /// [`VaultError::InvalidKey`], [`VaultError::Io`].
    async fn head(&self, key: &str) -> Result<Option<StoredObject>, VaultError>;

    /// Streams the stored bytes of `key` at `version_id`.
    ///
    /// # Errors
    /// [`VaultError::NotFound`] (also for another version), [`VaultError::InvalidKey`],
    /// [`VaultError::Io`].
    async fn open(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<Box<dyn AsyncRead + Unpin + Send>, VaultError>;

    /// A seekable, read-only file with the stored bytes, for ZIP verification (local: the file
    /// itself; remote adapters download into an unlinked temporary file).
    ///
    /// # Errors
    /// As [`Vault::open`].
    async fn open_seekable(&self, key: &str, version_id: &str) -> Result<fs::File, VaultError>;

    /// Deletes the object version; refused ([`VaultError::Locked`]) before its retain-until.
    ///
    /// # Errors
    /// [`VaultError::Locked`], [`VaultError::NotFound`], [`VaultError::InvalidKey`],
    /// [`VaultError::Io`].
    async fn delete(&self, key: &str, version_id: &str) -> Result<(), VaultError>;

    /// Extends the Object Lock of the object version to `retain_until`, in its own mode
    /// (compliance when it had none); a lock already reaching that far is left as it is (a lock
    /// is never shortened). Returns the metadata read back.
    ///
    /// # Errors
    /// [`VaultError::NotFound`], [`VaultError::InvalidKey`], [`VaultError::Io`],
    /// [`VaultError::Remote`].
    async fn extend_lock(
        &self,
        key: &str,
        version_id: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<StoredObject, VaultError>;
}

/// Checks that `key` is a relative path of normal, non-empty segments.
pub(crate) fn validate_key(key: &str) -> Result<(), VaultError> {
    let invalid = || VaultError::InvalidKey {
        key: key.chars().take(MAX_KEY_LEN).collect(),
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.starts_with('/') {
        return Err(invalid());
    }
    for segment in key.split('/') {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains('\0')
            || segment.contains('\\')
        {
            return Err(invalid());
        }
    }
    // Belt and braces: the path must consist of normal components only.
    if !Path::new(key)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(invalid());
    }
    Ok(())
}

/// Reads from `source` until `buf` is full or the stream ends; returns the bytes read.
pub(crate) async fn fill(
    source: &mut (dyn AsyncRead + Unpin + Send),
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
