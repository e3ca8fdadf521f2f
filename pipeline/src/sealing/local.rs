//! The embedded key sealer: a 32-byte master key in a local file (mode 0600) and AES-256-GCM with
//! a random 96-bit nonce per seal and the port's context as additional authenticated data.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{KeySealer, SealError, SealedSecret};

/// Length of the AES-GCM nonce that prefixes every sealed secret.
const NONCE_LEN: usize = 12;
/// Length of the AES-GCM authentication tag at the end of the ciphertext.
const TAG_LEN: usize = 16;
/// Length of the master key: AES-256.
const KEY_LEN: usize = 32;

/// The embedded key sealer: AES-256-GCM under a master key kept in a local file.
pub struct LocalKeySealer {
    /// The master key; wiped from memory when the sealer is dropped.
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for LocalKeySealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeySealer")
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl LocalKeySealer {
    /// Opens the master key file at `path`, creating it on first run (32 random bytes from the
    /// OS, mode 0600, published atomically so two processes racing on first run agree on one key;
    /// its directory is created with mode 0700 if missing).
    ///
    /// # Errors
    /// [`SealError::MasterKey`] if the existing file has the wrong length, is readable or
    /// writable by group or others, or is not a regular file; [`SealError::Io`] otherwise.
    pub fn open_or_create(path: &Path) -> Result<Self, SealError> {
        match Self::read_key(path) {
            Ok(key) => return Ok(Self { key }),
            Err(SealError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Self::create_key(path)?;
        let key = Self::read_key(path)?;
        Ok(Self { key })
    }

    fn master_key_error(path: &Path, detail: impl Into<String>) -> SealError {
        SealError::MasterKey {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Reads and checks an existing key file.
    fn read_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
        let mut file = fs::File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Self::master_key_error(path, "not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Self::master_key_error(
                path,
                format!(
                    "permissions {mode:04o} let group or others access the key; \
                     it must be 0600 (chmod 600)"
                ),
            ));
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(Self::master_key_error(
                path,
                format!(
                    "expected exactly {KEY_LEN} bytes, found {}; refusing to use it",
                    meta.len()
                ),
            ));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        file.read_exact(key.as_mut())?;
        // The file must not have grown between the length check and the read.
        let mut probe = [0u8; 1];
        if file.read(&mut probe)? != 0 {
            return Err(Self::master_key_error(
                path,
                "file changed while being read",
            ));
        }
        Ok(key)
    }

    /// Writes a new key into a private temporary file and links it into place; a key that
    /// appeared meanwhile (another process) wins and ours is discarded.
    fn create_key(path: &Path) -> Result<(), SealError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Self::master_key_error(path, format!("cannot create directory: {e}")))?;
        let file_name = path
            .file_name()
            .ok_or_else(|| Self::master_key_error(path, "path has no file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".new-{}", uuid::Uuid::new_v4()));
        let tmp = dir.join(tmp_name);

        let result = (|| -> Result<(), SealError> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The umask can only remove bits; make the mode exact anyway.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            OsRng.fill_bytes(key.as_mut());
            file.write_all(key.as_ref())?;
            file.sync_all()?;
            match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                // Someone else created the key first: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            if let Ok(d) = fs::File::open(&dir) {
                d.sync_all()?;
            }
            Ok(())
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }

    fn seal_sync(&self, context: &str, secret: &SecretString) -> Result<SealedSecret, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // aes-gcm fails only for absurd lengths (> 64 GiB).
            .map_err(|_| SealError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(SealedSecret(BASE64.encode(blob)))
    }

    fn unseal_sync(&self, context: &str, sealed: &SealedSecret) -> Result<SecretString, SealError> {
        let blob = BASE64
            .decode(sealed.as_str().trim())
            .map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: context.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Tampered)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[async_trait::async_trait]
impl KeySealer for LocalKeySealer {
    async fn seal(&self, context: &str, secret: &SecretString) -> Result<SealedSecret, SealError> {
        self.seal_sync(context, secret)
    }

    async fn unseal(
        &self,
        context: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretString, SealError> {
        self.unseal_sync(context, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::{generate_tenant_password, TENANT_PASSWORD_LEN};

    fn sealer() -> (tempfile::TempDir, LocalKeySealer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = LocalKeySealer::open_or_create(&dir.path().join("keys/master.key"))
            .expect("create master key");
        (dir, sealer)
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn seal_then_unseal_round_trips() {
        let (_dir, sealer) = sealer();
        let sealed = sealer
            .seal("tenant-a/v1", &secret("Correct horse 42"))
            .await
            .expect("seal");
        assert!(!sealed.as_str().contains("Correct horse"));
        let opened = sealer.unseal("tenant-a/v1", &sealed).await.expect("unseal");
        assert_eq!(opened.expose_secret(), "Correct horse 42");
    }

    #[tokio::test]
    async fn each_seal_uses_a_fresh_nonce() {
        let (_dir, sealer) = sealer();
        let a = sealer.seal("t", &secret("same")).await.expect("seal");
        let b = sealer.seal("t", &secret("same")).await.expect("seal");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unsealing_under_another_context_is_tampered() {
        let (_dir, sealer) = sealer();
        let sealed = sealer.seal("tenant-a", &secret("pw")).await.expect("seal");
        let err = sealer.unseal("tenant-b", &sealed).await.unwrap_err();
        assert!(matches!(err, SealError::Tampered), "{err:?}");
    }

    #[tokio::test]
    async fn a_flipped_ciphertext_byte_is_tampered() {
        let (_dir, sealer) = sealer();
        let sealed = sealer.seal("t", &secret("password")).await.expect("seal");
        let mut blob = BASE64.decode(sealed.as_str()).expect("base64");
        blob[NONCE_LEN + 2] ^= 0x01;
        let forged = SealedSecret::from_string(BASE64.encode(blob));
        let err = sealer.unseal("t", &forged).await.unwrap_err();
        assert!(matches!(err, SealError::Tampered), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let (_dir, sealer) = sealer();
        for text in ["not base64!!", "", "AAAA"] {
            let err = sealer
                .unseal("t", &SealedSecret::from_string(text.to_owned()))
                .await
                .unwrap_err();
            assert!(matches!(err, SealError::Malformed), "{text}: {err:?}");
        }
    }

    #[tokio::test]
    async fn key_file_is_private_and_reused_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let first = LocalKeySealer::open_or_create(&path).expect("create");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        let sealed = first.seal("ctx", &secret("kept")).await.expect("seal");
        drop(first);

        let again = LocalKeySealer::open_or_create(&path).expect("reopen");
        let opened = again.unseal("ctx", &sealed).await.expect("unseal");
        assert_eq!(opened.expose_secret(), "kept");
        // No temporary files are left next to the key.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
    }

    #[tokio::test]
    async fn another_master_key_cannot_unseal() {
        let (_d1, one) = sealer();
        let (_d2, two) = sealer();
        let sealed = one.seal("ctx", &secret("x")).await.expect("seal");
        assert!(matches!(
            two.unseal("ctx", &sealed).await,
            Err(SealError::Tampered)
        ));
    }

    #[test]
    fn only_an_unavailable_key_service_is_transient() {
        assert!(SealError::Unavailable("KMS Decrypt: ThrottlingException".into()).is_transient());
        assert!(SealError::Io(io::Error::new(io::ErrorKind::Interrupted, "eintr")).is_transient());
        for permanent in [
            SealError::Tampered,
            SealError::Malformed,
            SealError::Kms("KMS Decrypt: AccessDeniedException (HTTP 400)".into()),
            SealError::MasterKey {
                path: PathBuf::from("master.key"),
                detail: "mode 0644".into(),
            },
            SealError::Io(io::Error::new(io::ErrorKind::NotFound, "no key file")),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[test]
    fn group_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        drop(LocalKeySealer::open_or_create(&path).expect("create"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = LocalKeySealer::open_or_create(&path).unwrap_err();
        assert!(matches!(err, SealError::MasterKey { .. }), "{err:?}");
        assert!(err.to_string().contains("0640"), "{err}");
    }

    #[test]
    fn key_file_of_wrong_length_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        fs::write(&path, [7u8; 16]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = LocalKeySealer::open_or_create(&path).unwrap_err();
        assert!(matches!(err, SealError::MasterKey { .. }), "{err:?}");
        assert!(err.to_string().contains("16"), "{err}");
        // The refused file is left untouched (never clobbered).
        assert_eq!(fs::read(&path).expect("read"), vec![7u8; 16]);
    }

    #[test]
    fn tenant_passwords_are_long_alphanumeric_and_distinct() {
        let a = generate_tenant_password();
        let b = generate_tenant_password();
        for pw in [&a, &b] {
            assert_eq!(pw.expose_secret().len(), TENANT_PASSWORD_LEN);
            assert!(pw
                .expose_secret()
                .chars()
                .all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[tokio::test]
    async fn debug_output_never_shows_plaintext() {
        let (_dir, sealer) = sealer();
        let plain = "VisibleSecretValue123";
        let pw = secret(plain);
        let sealed = sealer.seal("ctx", &pw).await.expect("seal");
        let opened = sealer.unseal("ctx", &sealed).await.expect("unseal");
        for text in [
            format!("{pw:?}"),
            format!("{sealed:?}"),
            format!("{sealed}"),
            format!("{opened:?}"),
            format!("{sealer:?}"),
        ] {
            assert!(!text.contains(plain), "{text}");
        }
        let err = sealer.unseal("other", &sealed).await.unwrap_err();
        assert!(!format!("{err:?} {err}").contains(plain));
    }
}
