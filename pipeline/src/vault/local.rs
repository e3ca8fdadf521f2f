//! The embedded vault adapter: a local directory with the same guarantees as S3 Object Lock
//! (write-once objects, deletes refused before retain-until); the layout is in the port's docs.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;

use super::{fill, validate_key, LockMode, ObjectLock, StoredObject, Vault, VaultError};

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
    tokio_util::io::StreamReader::new(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

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

    /// Replaces the metadata record of `key` with `object` (blocking): written beside it,
    /// fsynced, renamed over it, so a reader sees the old record or the new one, never half.
    fn replace_meta(&self, key: &str, object: &StoredObject) -> Result<(), VaultError> {
        let meta_path = self.meta_path(key);
        let mut tmp_name = meta_path.as_os_str().to_owned();
        tmp_name.push(format!(".{}.lock.tmp", object.version_id));
        let tmp = TempFile {
            path: PathBuf::from(tmp_name),
            armed: true,
        };
        {
            let mut f = fs::File::create(&tmp.path).map_err(VaultError::Io)?;
            serde_json::to_writer_pretty(&mut f, object)
                .map_err(|e| VaultError::Io(io::Error::other(format!("encoding metadata: {e}"))))?;
            f.write_all(b"\n").map_err(VaultError::Io)?;
            f.sync_all().map_err(VaultError::Io)?;
        }
        let mut tmp = tmp;
        fs::rename(&tmp.path, &meta_path).map_err(VaultError::Io)?;
        tmp.armed = false;
        Ok(())
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

    async fn extend_lock(
        &self,
        key: &str,
        version_id: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<StoredObject, VaultError> {
        let this = self.clone();
        let key = key.to_owned();
        let version_id = version_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut object = this.find_version(&key, &version_id)?;
            let mode = match &object.lock {
                Some(lock) if lock.retain_until >= retain_until => return Ok(object),
                Some(lock) => lock.mode,
                None => LockMode::Compliance,
            };
            object.lock = Some(ObjectLock { mode, retain_until });
            this.replace_meta(&key, &object)?;
            Ok(object)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::LockMode;
    use chrono::DateTime;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::AsyncReadExt;
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
    async fn an_extended_lock_only_grows_and_holds_off_a_delete() {
        let (_dir, vault) = vault();
        let first = Utc::now() - chrono::Duration::seconds(1);
        let object = put_bytes(&vault, "t/i/kept.zip", b"kept", lock_until(first))
            .await
            .expect("put");
        let later = Utc::now() + chrono::Duration::days(7);
        let extended = vault
            .extend_lock(&object.key, &object.version_id, later)
            .await
            .expect("extend");
        assert_eq!(extended.lock, lock_until(later));
        // Asking for less leaves the longer lock.
        let shorter = vault
            .extend_lock(&object.key, &object.version_id, first)
            .await
            .expect("no-op");
        assert_eq!(shorter.lock, lock_until(later));
        let head = vault.head(&object.key).await.expect("head");
        assert_eq!(head.and_then(|o| o.lock), lock_until(later));
        match vault.delete(&object.key, &object.version_id).await {
            Err(VaultError::Locked { retain_until, .. }) => assert_eq!(retain_until, later),
            other => panic!("expected Locked, got {other:?}"),
        }
        match vault.extend_lock(&object.key, "another", later).await {
            Err(VaultError::NotFound { .. }) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(read_all(&vault, &object).await, b"kept");
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
