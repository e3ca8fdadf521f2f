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

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the chunks an upload is read, hashed and written in.
const CHUNK: usize = 1 << 20;

/// Read-back chunk size and how many chunks may wait: large sequential reads on a blocking
/// thread, overlapping with the consumer (the Secured rung hashes while the next chunk loads).
const READ_AHEAD_CHUNK: usize = 4 << 20;
const READ_AHEAD_DEPTH: usize = 3;

/// Streams a file through a blocking reader thread that keeps a few chunks ahead.
fn read_ahead(mut file: fs::File) -> impl AsyncRead + Unpin + Send {
    use std::io::Read;
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(READ_AHEAD_DEPTH);
    tokio::task::spawn_blocking(move || loop {
        let mut chunk = vec![0u8; READ_AHEAD_CHUNK];
        let mut filled = 0;
        let result = loop {
            match file.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let done = filled == 0 || result.is_err();
        let message = result.map(|()| bytes::Bytes::from(chunk));
        if (filled > 0 || message.is_err()) && sender.blocking_send(message).is_err() {
            return; // the reader was dropped
        }
        if done {
            return;
        }
    });
    tokio_util::io::StreamReader::new(tokio_stream_from(receiver))
}

/// The channel as a stream of chunks.
fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Unpin + Send {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
/// Longest key accepted (S3's limit).
const MAX_KEY_LEN: usize = 1024;

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
}

/// The embedded vault: a local directory, write-once, refusing deletes before retain-until.
#[derive(Debug, Clone)]
pub struct LocalVault {
    /// The vault's directory (see the module docs for its layout).
    root: PathBuf,
}

/// Removes a temporary file when dropped unless disarmed: a failed or cancelled upload leaves
/// nothing behind.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Checks that `key` is a relative path of normal, non-empty segments.
fn validate_key(key: &str) -> Result<(), VaultError> {
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

fn not_found(key: &str, version_id: &str) -> VaultError {
    VaultError::NotFound {
        key: key.to_owned(),
        version_id: version_id.to_owned(),
    }
}

/// Whether `path` is a regular file (not a directory that holds longer keys).
fn is_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// fsyncs a directory so that a link or rename in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl LocalVault {
    /// Opens (creating if needed) a vault rooted at `root`.
    ///
    /// # Errors
    /// [`VaultError::Io`] if the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, VaultError> {
        let root = root.into();
        for sub in ["objects", "meta", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(VaultError::Io)?;
        }
        Ok(Self { root })
    }

    fn data_path(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(format!("{key}.json"))
    }

    /// Reads the metadata record (blocking).
    fn read_meta(&self, key: &str) -> Result<Option<StoredObject>, VaultError> {
        let meta_path = self.meta_path(key);
        let bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if is_file(&self.data_path(key)) {
                    // Data published but its record never written (a crash in between).
                    return Err(VaultError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("object {key} has no metadata record (interrupted put?)"),
                    )));
                }
                return Ok(None);
            }
            Err(e) => return Err(VaultError::Io(e)),
        };
        if !is_file(&self.data_path(key)) {
            // Left over from an interrupted delete: the object is gone.
            return Ok(None);
        }
        let object: StoredObject = serde_json::from_slice(&bytes).map_err(|e| {
            VaultError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("metadata of {key} unreadable: {e}"),
            ))
        })?;
        Ok(Some(object))
    }

    /// The metadata of `key`, checked against `version_id`.
    fn find_version(&self, key: &str, version_id: &str) -> Result<StoredObject, VaultError> {
        validate_key(key)?;
        match self.read_meta(key)? {
            Some(object) if object.version_id == version_id => Ok(object),
            _ => Err(not_found(key, version_id)),
        }
    }

    /// Publishes a fully written temporary data file under `key` (blocking): read-only, fsynced,
    /// hard-linked into place (fails if the key exists), then the metadata record.
    fn publish(
        &self,
        key: &str,
        tmp: &mut TempFile,
        file: fs::File,
        object: &StoredObject,
    ) -> Result<(), VaultError> {
        file.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(VaultError::Io)?;
        file.sync_all().map_err(VaultError::Io)?;
        drop(file);

        let data_path = self.data_path(key);
        let meta_path = self.meta_path(key);
        for path in [&data_path, &meta_path] {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(VaultError::Io)?;
            }
        }

        // Write the record next to its final place first, so publishing it is one rename.
        let mut meta_tmp_name = meta_path.as_os_str().to_owned();
        meta_tmp_name.push(format!(".{}.tmp", object.version_id));
        let meta_tmp = TempFile {
            path: PathBuf::from(meta_tmp_name),
            armed: true,
        };
        {
            let mut f = fs::File::create(&meta_tmp.path).map_err(VaultError::Io)?;
            serde_json::to_writer_pretty(&mut f, object)
                .map_err(|e| VaultError::Io(io::Error::other(format!("encoding metadata: {e}"))))?;
            f.write_all(b"\n").map_err(VaultError::Io)?;
            f.sync_all().map_err(VaultError::Io)?;
        }

        // The write-once gate: link(2) never replaces an existing name.
        match fs::hard_link(&tmp.path, &data_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(VaultError::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(VaultError::Io(e)),
        }
        let mut meta_tmp = meta_tmp;
        fs::rename(&meta_tmp.path, &meta_path).map_err(VaultError::Io)?;
        meta_tmp.armed = false;
        // The temporary name goes; the data stays under its key.
        fs::remove_file(&tmp.path).map_err(VaultError::Io)?;
        tmp.armed = false;
        for path in [&data_path, &meta_path] {
            if let Some(parent) = path.parent() {
                sync_dir(parent).map_err(VaultError::Io)?;
            }
        }
        Ok(())
    }
}

/// Reads from `source` until `buf` is full or the stream ends; returns the bytes read.
async fn fill(source: &mut (dyn AsyncRead + Unpin + Send), buf: &mut [u8]) -> io::Result<usize> {
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

/// State handed to the blocking writer and back: the file, the running hash, the chunk.
type WriterState = (fs::File, Sha256, Vec<u8>);

#[async_trait::async_trait]
impl Vault for LocalVault {
    async fn put(
        &self,
        key: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        lock: Option<ObjectLock>,
    ) -> Result<StoredObject, VaultError> {
        validate_key(key)?;
        if is_file(&self.data_path(key)) {
            return Err(VaultError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let version_id = uuid::Uuid::new_v4().to_string();
        let mut tmp = TempFile {
            path: self.root.join("tmp").join(format!("{version_id}.part")),
            armed: true,
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .map_err(VaultError::Io)?;

        // Double buffering: while a blocking task hashes and writes one chunk, the next chunk is
        // read from the source. Each byte is hashed exactly once, as it passes.
        let mut idle: Option<WriterState> = Some((file, Sha256::new(), Vec::new()));
        let mut pending: Option<tokio::task::JoinHandle<io::Result<WriterState>>> = None;
        let mut chunk = vec![0u8; CHUNK];
        let mut size: u64 = 0;
        loop {
            let read = fill(source, &mut chunk).await;
            if let Some(handle) = pending.take() {
                idle = Some(handle.await?.map_err(VaultError::Io)?);
            }
            let n = read.map_err(VaultError::Source)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            let (mut file, mut hasher, spare) = idle
                .take()
                .ok_or_else(|| VaultError::Io(io::Error::other("writer state lost")))?;
            let data = std::mem::replace(&mut chunk, spare);
            if chunk.len() != CHUNK {
                chunk = vec![0u8; CHUNK];
            }
            pending = Some(tokio::task::spawn_blocking(move || {
                hasher.update(&data[..n]);
                file.write_all(&data[..n])?;
                Ok((file, hasher, data))
            }));
        }
        let (file, hasher, _) =
            idle.ok_or_else(|| VaultError::Io(io::Error::other("writer state lost")))?;
        let object = StoredObject {
            key: key.to_owned(),
            version_id,
            size,
            sha256: hex::encode(hasher.finalize()),
            lock,
            stored_at: Utc::now(),
        };
        let this = self.clone();
        let key_owned = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let result = this.publish(&key_owned, &mut tmp, file, &object);
            result.map(|()| object)
        })
        .await?
    }

    async fn head(&self, key: &str) -> Result<Option<StoredObject>, VaultError> {
        validate_key(key)?;
        let this = self.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || this.read_meta(&key)).await?
    }

    async fn open(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<Box<dyn AsyncRead + Unpin + Send>, VaultError> {
        let file = self.open_seekable(key, version_id).await?;
        Ok(Box::new(read_ahead(file)))
    }

    async fn open_seekable(&self, key: &str, version_id: &str) -> Result<fs::File, VaultError> {
        let this = self.clone();
        let key = key.to_owned();
        let version_id = version_id.to_owned();
        tokio::task::spawn_blocking(move || {
            this.find_version(&key, &version_id)?;
            match fs::File::open(this.data_path(&key)) {
                Ok(f) => Ok(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(&key, &version_id)),
                Err(e) => Err(VaultError::Io(e)),
            }
        })
        .await?
    }

    async fn delete(&self, key: &str, version_id: &str) -> Result<(), VaultError> {
        let this = self.clone();
        let key = key.to_owned();
        let version_id = version_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let object = this.find_version(&key, &version_id)?;
            if let Some(lock) = &object.lock {
                if Utc::now() < lock.retain_until {
                    return Err(VaultError::Locked {
                        key,
                        retain_until: lock.retain_until,
                    });
                }
            }
            // Data first: a crash in between leaves only a stale record, which `head` ignores
            // and the next `put` of the key replaces.
            fs::remove_file(this.data_path(&key)).map_err(VaultError::Io)?;
            match fs::remove_file(this.meta_path(&key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(VaultError::Io(e)),
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    fn vault() -> (tempfile::TempDir, LocalVault) {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = LocalVault::open(dir.path().join("vault")).expect("open vault");
        (dir, vault)
    }

    fn lock_until(retain_until: DateTime<Utc>) -> Option<ObjectLock> {
        Some(ObjectLock {
            mode: LockMode::Compliance,
            retain_until,
        })
    }

    async fn put_bytes(
        vault: &LocalVault,
        key: &str,
        bytes: &[u8],
        lock: Option<ObjectLock>,
    ) -> Result<StoredObject, VaultError> {
        let mut source = bytes;
        vault.put(key, &mut source, lock).await
    }

    async fn read_all(vault: &LocalVault, object: &StoredObject) -> Vec<u8> {
        let mut reader = vault
            .open(&object.key, &object.version_id)
            .await
            .expect("open");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        out
    }

    /// Yields `good` bytes, then fails like a broken download.
    struct BrokenSource {
        good: usize,
    }

    impl AsyncRead for BrokenSource {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.good == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "download broke",
                )));
            }
            let n = self.good.min(buf.remaining()).min(64 * 1024);
            buf.put_slice(&vec![0xAB; n]);
            self.good -= n;
            Poll::Ready(Ok(()))
        }
    }

    /// Deterministic pseudo-random bytes (xorshift), so hashes are not of trivial input.
    struct Pattern {
        state: u64,
        left: u64,
    }

    impl AsyncRead for Pattern {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = (self.left.min(buf.remaining() as u64) as usize) & !7;
            let n = if n == 0 {
                self.left.min(buf.remaining() as u64) as usize
            } else {
                n
            };
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let mut x = self.state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.state = x;
                let take = (n - out.len()).min(8);
                out.extend_from_slice(&x.to_le_bytes()[..take]);
            }
            buf.put_slice(&out);
            self.left -= n as u64;
            Poll::Ready(Ok(()))
        }
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn put_records_size_and_sha256_and_streams_back() {
        let (_dir, vault) = vault();
        let bytes = b"3CX backup bytes".repeat(1000);
        let object = put_bytes(&vault, "t1/i1/c1.zip", &bytes, None)
            .await
            .expect("put");
        assert_eq!(object.key, "t1/i1/c1.zip");
        assert_eq!(object.size, bytes.len() as u64);
        assert_eq!(object.sha256, hex::encode(Sha256::digest(&bytes)));
        assert!(uuid::Uuid::parse_str(&object.version_id).is_ok());
        assert_eq!(read_all(&vault, &object).await, bytes);
    }

    #[tokio::test]
    async fn empty_object_is_fine() {
        let (_dir, vault) = vault();
        let object = put_bytes(&vault, "t/i/empty.zip", b"", None)
            .await
            .expect("put");
        assert_eq!(object.size, 0);
        assert_eq!(object.sha256, hex::encode(Sha256::digest(b"")));
        assert!(read_all(&vault, &object).await.is_empty());
    }

    #[tokio::test]
    async fn objects_are_write_once() {
        let (_dir, vault) = vault();
        let first = put_bytes(&vault, "t/i/c.zip", b"first", None)
            .await
            .expect("put");
        let err = put_bytes(&vault, "t/i/c.zip", b"second", None)
            .await
            .unwrap_err();
        assert!(matches!(err, VaultError::AlreadyExists { .. }), "{err:?}");
        assert_eq!(read_all(&vault, &first).await, b"first");
        // The data file itself is read-only.
        let mode = fs::metadata(vault.data_path("t/i/c.zip"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
    }

    #[tokio::test]
    async fn racing_puts_of_one_key_publish_exactly_one() {
        let (_dir, vault) = vault();
        let (a, b) = tokio::join!(
            put_bytes(&vault, "t/i/race.zip", b"aaaa", None),
            put_bytes(&vault, "t/i/race.zip", b"bbbb", None)
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "{a:?} {b:?}"
        );
        let winner = a.or(b).expect("one put wins");
        let head = vault.head("t/i/race.zip").await.expect("head");
        assert_eq!(head.as_ref(), Some(&winner));
        assert!(files_under(&vault.root.join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn head_round_trips_metadata() {
        let (_dir, vault) = vault();
        assert_eq!(vault.head("t/i/c.zip").await.expect("head"), None);
        let retain = Utc::now() + chrono::Duration::days(30);
        let lock = Some(ObjectLock {
            mode: LockMode::Governance,
            retain_until: retain,
        });
        let object = put_bytes(&vault, "t/i/c.zip", b"data", lock.clone())
            .await
            .expect("put");
        assert_eq!(object.lock, lock);
        let head = vault.head("t/i/c.zip").await.expect("head");
        assert_eq!(head, Some(object));
        // The record is human-readable JSON with snake_case lock modes.
        let json = fs::read_to_string(vault.meta_path("t/i/c.zip")).expect("meta");
        assert!(json.contains("\"governance\""), "{json}");
    }

    #[tokio::test]
    async fn delete_is_refused_before_retain_until() {
        let (_dir, vault) = vault();
        let retain = Utc::now() + chrono::Duration::days(1);
        let object = put_bytes(&vault, "t/i/c.zip", b"kept", lock_until(retain))
            .await
            .expect("put");
        let err = vault
            .delete(&object.key, &object.version_id)
            .await
            .unwrap_err();
        match err {
            VaultError::Locked { retain_until, .. } => assert_eq!(retain_until, retain),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(read_all(&vault, &object).await, b"kept");
    }

    #[tokio::test]
    async fn delete_after_retain_until_removes_the_object() {
        let (_dir, vault) = vault();
        let past = Utc::now() - chrono::Duration::seconds(1);
        let object = put_bytes(&vault, "t/i/c.zip", b"old", lock_until(past))
            .await
            .expect("put");
        vault
            .delete(&object.key, &object.version_id)
            .await
            .expect("delete");
        assert_eq!(vault.head("t/i/c.zip").await.expect("head"), None);
        assert!(matches!(
            vault.open(&object.key, &object.version_id).await,
            Err(VaultError::NotFound { .. })
        ));
        // Without a lock, delete works at once too.
        let unlocked = put_bytes(&vault, "t/i/d.zip", b"x", None)
            .await
            .expect("put");
        vault
            .delete(&unlocked.key, &unlocked.version_id)
            .await
            .expect("delete unlocked");
    }

    #[tokio::test]
    async fn a_broken_source_leaves_nothing_behind() {
        let (_dir, vault) = vault();
        let mut source = BrokenSource {
            good: 3 * CHUNK + 100,
        };
        let err = vault
            .put("t/i/broken.zip", &mut source, None)
            .await
            .unwrap_err();
        match &err {
            VaultError::Source(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected Source, got {other:?}"),
        }
        assert_eq!(vault.head("t/i/broken.zip").await.expect("head"), None);
        assert!(
            files_under(&vault.root).is_empty(),
            "{:?}",
            files_under(&vault.root)
        );
        // The key is still free.
        put_bytes(&vault, "t/i/broken.zip", b"retry", None)
            .await
            .expect("retry");
    }

    #[tokio::test]
    async fn invalid_keys_are_refused() {
        let (_dir, vault) = vault();
        for key in [
            "",
            "/abs/key.zip",
            "../escape.zip",
            "t/../../x.zip",
            "t//x.zip",
            "t/x.zip/",
            "./x.zip",
            "t/./x.zip",
            "a\\b.zip",
        ] {
            let err = put_bytes(&vault, key, b"x", None).await.unwrap_err();
            assert!(
                matches!(err, VaultError::InvalidKey { .. }),
                "{key}: {err:?}"
            );
            assert!(matches!(
                vault.head(key).await,
                Err(VaultError::InvalidKey { .. })
            ));
        }
        assert!(files_under(&vault.root).is_empty());
    }

    #[tokio::test]
    async fn another_version_id_is_not_found() {
        let (_dir, vault) = vault();
        let object = put_bytes(&vault, "t/i/c.zip", b"x", None)
            .await
            .expect("put");
        let other = uuid::Uuid::new_v4().to_string();
        assert!(matches!(
            vault.open("t/i/c.zip", &other).await,
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.open_seekable("t/i/c.zip", &other).await,
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.delete("t/i/c.zip", &other).await,
            Err(VaultError::NotFound { .. })
        ));
        assert!(matches!(
            vault.open("t/i/missing.zip", &object.version_id).await,
            Err(VaultError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn open_seekable_gives_the_read_only_file() {
        let (_dir, vault) = vault();
        let object = put_bytes(&vault, "t/i/c.zip", b"seekable", None)
            .await
            .expect("put");
        let mut file = vault
            .open_seekable(&object.key, &object.version_id)
            .await
            .expect("open_seekable");
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(4)).expect("seek");
        let mut rest = String::new();
        file.read_to_string(&mut rest).expect("read");
        assert_eq!(rest, "able");
        assert!(file.write_all(b"x").is_err(), "file must be read-only");
    }

    #[tokio::test]
    async fn fifty_mib_stream_through_with_the_right_hash() {
        let (_dir, vault) = vault();
        let len: u64 = 50 * 1024 * 1024 + 12345;
        let mut source = Pattern {
            state: 0x9E37_79B9_7F4A_7C15,
            left: len,
        };
        let object = vault
            .put("t/i/big.zip", &mut source, None)
            .await
            .expect("put");
        assert_eq!(object.size, len);

        // Re-hash what comes back, in chunks, against a direct sha2 computation of the input.
        let mut expected = Sha256::new();
        let mut again = Pattern {
            state: 0x9E37_79B9_7F4A_7C15,
            left: len,
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = again.read(&mut buf).await.expect("pattern");
            if n == 0 {
                break;
            }
            expected.update(&buf[..n]);
        }
        let expected = hex::encode(expected.finalize());
        assert_eq!(object.sha256, expected);

        let mut reader = vault
            .open(&object.key, &object.version_id)
            .await
            .expect("open");
        let mut actual = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
            actual.update(&buf[..n]);
        }
        assert_eq!(total, len);
        assert_eq!(hex::encode(actual.finalize()), expected);
    }

    #[test]
    fn only_an_unavailable_store_or_a_passing_io_error_is_transient() {
        let transient = [
            VaultError::Unavailable("S3 GetObject: SlowDown (HTTP 503)".into()),
            VaultError::Io(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
            VaultError::Io(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            VaultError::Io(io::Error::other("body stream broke")),
        ];
        for error in &transient {
            assert!(error.is_transient(), "{error:?}");
        }
        let permanent = [
            not_found("k", "v"),
            VaultError::AlreadyExists { key: "k".into() },
            VaultError::Locked {
                key: "k".into(),
                retain_until: Utc::now(),
            },
            VaultError::InvalidKey { key: "/k".into() },
            VaultError::Remote("S3 GetObject: AccessDenied (HTTP 403)".into()),
            VaultError::Config("credentials missing".into()),
            VaultError::Source(io::Error::new(io::ErrorKind::ConnectionReset, "pbx")),
            VaultError::Io(io::Error::new(io::ErrorKind::PermissionDenied, "denied")),
            VaultError::Io(io::Error::new(io::ErrorKind::InvalidData, "bad record")),
        ];
        for error in &permanent {
            assert!(!error.is_transient(), "{error:?}");
        }
    }

    #[test]
    fn lock_mode_serde_and_display_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&LockMode::Compliance).expect("json"),
            "\"compliance\""
        );
        assert_eq!(LockMode::Governance.to_string(), "governance");
    }
}
