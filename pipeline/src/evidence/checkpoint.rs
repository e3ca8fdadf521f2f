//! Signed checkpoints: every tenant's head at one moment, committed to by a Merkle root
//! ([`restorable_domain::evidence::merkle_root`]), signed, and written to the vault under Object
//! Lock at `audit/checkpoints/<sequence, 12 digits>.json` (write-once: a second writer of the
//! same sequence is refused). Each header names the SHA-256 of the previous header's canonical
//! JSON, so a removed checkpoint breaks the sequence and the link. Written every hour (also when
//! nothing happened) and at every export.
//!
//! The vault is the truth; `audit_checkpoints` is an index of it. Which sequence comes next is
//! read from the index and then the vault is probed past it, so a checkpoint written by a
//! process that died before indexing it is found (and indexed), never overwritten.

use chrono::{DateTime, DurationRound, Utc};
use restorable_domain::evidence::{canonical_json, merkle_root, sha256_hex, TenantHead};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{EvidenceError, Signer};
use crate::store::Store;
use crate::vault::{LockMode, ObjectLock, Vault, VaultError};

/// Where checkpoints are kept in the vault.
pub const CHECKPOINT_PREFIX: &str = "audit/checkpoints/";
/// Where the public keys that signed them are kept.
pub const KEY_PREFIX: &str = "audit/keys/";
/// Largest checkpoint file read back (a header and one leaf per tenant).
const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// What a checkpoint's signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// The format: 1.
    pub version: u32,
    /// 1, 2, ...: one more than the previous checkpoint's.
    pub sequence: i64,
    /// When it was taken (whole seconds, UTC).
    pub at: DateTime<Utc>,
    /// The key that signed it.
    pub key_id: String,
    /// The Merkle root over the tenants' heads.
    pub root: String,
    /// How many tenants (leaves) the tree has.
    pub leaves: usize,
    /// The SHA-256 of the previous checkpoint's header (`None` for the first).
    pub previous: Option<String>,
}

impl CheckpointHeader {
    /// The bytes signed: the header's canonical JSON.
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The SHA-256 of [`CheckpointHeader::canonical`]: what the next checkpoint names.
    pub fn digest(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }
}

/// A checkpoint as kept in the vault: the header, its signature and every tenant's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub header: CheckpointHeader,
    /// The Ed25519 signature of the header's canonical JSON, hex.
    pub signature: String,
    /// The leaves, sorted by tenant.
    pub tenants: Vec<TenantHead>,
}

/// The vault key of checkpoint `sequence`.
pub fn checkpoint_object(sequence: i64) -> String {
    format!("{CHECKPOINT_PREFIX}{sequence:012}.json")
}

async fn read_object(vault: &dyn Vault, key: &str) -> Result<Option<Vec<u8>>, EvidenceError> {
    let Some(stored) = vault.head(key).await? else {
        return Ok(None);
    };
    if stored.size > MAX_CHECKPOINT_BYTES {
        return Err(EvidenceError::Format(format!(
            "{key} is {} bytes, more than a checkpoint can be",
            stored.size
        )));
    }
    let mut bytes = Vec::new();
    let reader = match vault.open(key, &stored.version_id).await {
        Ok(reader) => reader,
        // Recorded but gone: for the reader, it is not there.
        Err(VaultError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    reader
        .take(MAX_CHECKPOINT_BYTES)
        .read_to_end(&mut bytes)
        .await
        .map_err(|source| EvidenceError::Io {
            path: key.to_owned(),
            source,
        })?;
    Ok(Some(bytes))
}

/// Checkpoint `sequence` from the vault, if there is one; a stored object that does not parse is
/// returned as its error text (a verdict for `audit check`, not an outage).
pub async fn read_checkpoint(
    vault: &dyn Vault,
    sequence: i64,
) -> Result<Option<Result<SignedCheckpoint, String>>, EvidenceError> {
    let key = checkpoint_object(sequence);
    Ok(read_object(vault, &key).await?.map(|bytes| {
        serde_json::from_slice::<SignedCheckpoint>(&bytes).map_err(|e| format!("{key}: {e}"))
    }))
}

/// The public key (hex) `key_id` published in the vault, if any.
pub async fn published_key(
    vault: &dyn Vault,
    key_id: &str,
) -> Result<Option<String>, EvidenceError> {
    if !key_id.chars().all(|c| c.is_ascii_hexdigit()) || key_id.len() != 16 {
        return Ok(None);
    }
    Ok(read_object(vault, &format!("{KEY_PREFIX}{key_id}.pub"))
        .await?
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
}

/// Every sequence the index or the vault knows, ascending: the index's, then the vault probed
/// past its last (a checkpoint written but not indexed). Gaps stay gaps (`audit check` names
/// them).
pub async fn latest_checkpoints(
    store: &Store,
    vault: &dyn Vault,
) -> Result<Vec<i64>, EvidenceError> {
    let mut sequences: Vec<i64> = store
        .checkpoint_index()
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let mut next = sequences.last().copied().unwrap_or(0) + 1;
    while vault.head(&checkpoint_object(next)).await?.is_some() {
        sequences.push(next);
        next += 1;
    }
    Ok(sequences)
}

/// Publishes the signer's public key in the vault (once).
async fn publish_key(
    vault: &dyn Vault,
    signer: &dyn Signer,
    lock: &ObjectLock,
) -> Result<(), EvidenceError> {
    let key = format!("{KEY_PREFIX}{}.pub", signer.key_id());
    if vault.head(&key).await?.is_some() {
        return Ok(());
    }
    let text = format!("{}\n", signer.public_key_hex());
    match vault
        .put(&key, &mut text.as_bytes(), Some(lock.clone()))
        .await
    {
        Ok(_) | Err(VaultError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Takes a checkpoint of every tenant's head now, signs it and writes it to the vault (locked
/// for `retention`), then indexes it.
///
/// # Errors
/// [`EvidenceError`]; if another process wrote the same sequence first, its checkpoint stands
/// and this one is an error (the caller tries again at the next interval).
pub async fn write_checkpoint(
    store: &Store,
    vault: &dyn Vault,
    signer: &dyn Signer,
    retention: chrono::Duration,
) -> Result<SignedCheckpoint, EvidenceError> {
    let lock = ObjectLock {
        mode: LockMode::Compliance,
        retain_until: (Utc::now() + retention)
            .duration_trunc(chrono::Duration::seconds(1))
            .unwrap_or_else(|_| Utc::now() + retention)
            + chrono::Duration::seconds(1),
    };
    publish_key(vault, signer, &lock).await?;
    let sequences = latest_checkpoints(store, vault).await?;
    let previous = match sequences.last() {
        Some(&last) => match read_checkpoint(vault, last).await? {
            Some(Ok(checkpoint)) => {
                index(store, &checkpoint).await?;
                Some(checkpoint.header)
            }
            Some(Err(e)) => return Err(EvidenceError::Format(e)),
            None => {
                return Err(EvidenceError::Format(format!(
                "checkpoint {last} is indexed but not in the vault (run `restorable audit check`)"
            )))
            }
        },
        None => None,
    };
    let tenants = store.chain_heads().await?;
    let now = Utc::now();
    let header = CheckpointHeader {
        version: 1,
        sequence: previous.as_ref().map_or(1, |p| p.sequence + 1),
        at: now
            .duration_trunc(chrono::Duration::seconds(1))
            .unwrap_or(now),
        key_id: signer.key_id(),
        root: merkle_root(&tenants),
        leaves: tenants.len(),
        previous: previous.as_ref().map(CheckpointHeader::digest),
    };
    let signature = signer.sign(header.canonical().as_bytes()).await?;
    let checkpoint = SignedCheckpoint {
        header,
        signature,
        tenants,
    };
    let bytes =
        serde_json::to_vec(&checkpoint).map_err(|e| EvidenceError::Format(e.to_string()))?;
    vault
        .put(
            &checkpoint_object(checkpoint.header.sequence),
            &mut bytes.as_slice(),
            Some(lock),
        )
        .await?;
    index(store, &checkpoint).await?;
    Ok(checkpoint)
}

/// Records a checkpoint in the index (nothing if it is there).
async fn index(store: &Store, checkpoint: &SignedCheckpoint) -> Result<(), EvidenceError> {
    let key = checkpoint_object(checkpoint.header.sequence);
    store
        .index_checkpoint(
            checkpoint.header.sequence,
            checkpoint.header.at.timestamp_millis(),
            &key,
            &checkpoint.header.digest(),
        )
        .await?;
    Ok(())
}
