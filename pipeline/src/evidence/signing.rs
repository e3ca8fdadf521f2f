//! The embedded default's signing key: an Ed25519 seed in a file of the data directory
//! (`signing-key`, 0600, 64 hex digits), created on first use. Rotating it (`audit rotate-key`)
//! moves the old file to `signing-keys/<key id>` and creates a new one; old checkpoints stay
//! valid because every public key is published in the vault (`audit/keys/<key id>.pub`) when
//! it first signs.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{key_id_of, EvidenceError, Signer};

/// An Ed25519 key kept in a file.
pub struct LocalSigner {
    key: SigningKey,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalSigner {
    /// Reads the key at `path`, creating it (0600) if there is none.
    ///
    /// # Errors
    /// [`EvidenceError::Io`], or [`EvidenceError::Key`] if the file is not a key or others
    /// may read it.
    pub fn open_or_create(path: &Path) -> Result<Self, EvidenceError> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(EvidenceError::Key(format!(
                        "{} may be read by others (mode {:o}); chmod 600 it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    )));
                }
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
                let seed = Zeroizing::new(
                    hex::decode(text.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                        .ok_or_else(|| {
                            EvidenceError::Key(format!(
                                "{} is not 64 hex digits of an Ed25519 seed",
                                path.display()
                            ))
                        })?,
                );
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(io(path)(e)),
        }
    }

    fn create(path: &Path) -> Result<Self, EvidenceError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        file.write_all(hex::encode(seed.as_ref()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(path))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Retires the key at `path` (kept as `signing-keys/<key id>` beside it) and creates a new
    /// one; the new signer.
    ///
    /// # Errors
    /// As [`LocalSigner::open_or_create`].
    pub fn rotate(path: &Path) -> Result<Self, EvidenceError> {
        let old = Self::open_or_create(path)?;
        let retired: PathBuf = path.parent().unwrap_or(Path::new(".")).join("signing-keys");
        std::fs::create_dir_all(&retired).map_err(io(&retired))?;
        let target = retired.join(old.key_id());
        std::fs::rename(path, &target).map_err(io(&target))?;
        Self::create(path)
    }
}

#[async_trait::async_trait]
impl Signer for LocalSigner {
    fn key_id(&self) -> String {
        key_id_of(&self.public_key_hex())
    }

    fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    async fn sign(&self, bytes: &[u8]) -> Result<String, EvidenceError> {
        Ok(hex::encode(self.key.sign(bytes).to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::signature_holds;

    #[tokio::test]
    async fn a_created_key_is_private_signs_verifiably_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("signing-key");
        let signer = LocalSigner::open_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let signature = signer.sign(b"checkpoint").await.expect("sign");
        assert!(signature_holds(
            &signer.public_key_hex(),
            b"checkpoint",
            &signature
        ));
        assert!(!signature_holds(
            &signer.public_key_hex(),
            b"checkpoinT",
            &signature
        ));
        let again = LocalSigner::open_or_create(&path).expect("reopen");
        assert_eq!(again.key_id(), signer.key_id());
    }

    #[test]
    fn a_key_others_may_read_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("signing-key");
        LocalSigner::open_or_create(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = LocalSigner::open_or_create(&path).err().expect("refused");
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn rotation_keeps_the_old_key_and_makes_a_new_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("signing-key");
        let old = LocalSigner::open_or_create(&path).expect("create");
        let new = LocalSigner::rotate(&path).expect("rotate");
        assert_ne!(old.key_id(), new.key_id());
        assert!(dir.path().join("signing-keys").join(old.key_id()).exists());
    }
}
