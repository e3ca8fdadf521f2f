//! The production vault adapter: S3 with Object Lock, through aws-sdk-s3.
//!
//! [`S3Vault`] implements the [`Vault`] port against one bucket created with Object Lock (and so
//! with versioning). What each call does on the wire:
//!
//! - `put`: refuses an existing key (HeadObject, then `If-None-Match: *` on the write itself, so a
//!   racing writer also loses). The source is read into one reused part buffer; every byte is
//!   hashed once into the whole-file SHA-256 and the part's SHA-256 in the same pass. A source
//!   that ends within the first part is stored with one `PutObject` (its SHA-256 sent as
//!   `x-amz-checksum-sha256`, which S3 verifies, and kept as `x-amz-meta-sha256`); a longer one is
//!   streamed as a multipart upload (parts of 8 MiB and up, each with its own SHA-256 checksum).
//!   S3's checksum of a multipart object is a composite of the parts, and metadata can only be
//!   given before the bytes are known, so a multipart object's whole-file SHA-256 is kept as the
//!   version's `sha256` tag. The lock is asked for in the upload itself and then checked with
//!   HeadObject on the exact version; if it is missing or short (the local emulator drops it on
//!   multipart uploads) it is set with `PutObjectRetention` on that version, which S3 allows in
//!   compliance mode since it only extends. A failed source aborts the multipart upload.
//! - `head`: HeadObject (checksum mode on) → [`StoredObject`]; the lock comes from
//!   `ObjectLockMode`/`ObjectLockRetainUntilDate` (`GetObjectRetention` is never needed).
//! - `open`: GetObject of the version, streamed; `open_seekable` spools it into an unlinked
//!   temporary file.
//! - `delete`: DeleteObject of the version; S3 refuses it under the lock (→ [`VaultError::Locked`]).
//!
//! [`S3Vault::check`] is the `doctor` probe; [`S3Vault::create_bucket_with_object_lock`] the
//! first-time setup. Credentials are the standard static ones from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`); they never
//! appear in errors. The HTTP client is hyper with rustls on *ring* (see [`aws_http_client`]).
//!
//! # Layout
//! - this file: [`S3Config`], [`S3Vault`], its reads and deletes (the [`Vault`] impl).
//! - [`bucket`]: bucket set-up with Object Lock and the `doctor` probe.
//! - [`upload`]: `put` — single and multipart uploads, the SHA-256 tag, the lock check.

mod bucket;
mod upload;

use upload::hash_part;

use std::fs;
use std::io::{Seek, SeekFrom};
use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::DateTime as AwsDateTime;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ObjectLockMode, ObjectLockRetentionMode};
use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::aws::{
    aws_http_client, code, describe, env_credentials, is_transient, status, AwsError,
};
use crate::vault::{fill, validate_key, LockMode, ObjectLock, StoredObject, Vault, VaultError};

/// Size of the first parts of a multipart upload (S3's minimum is 5 MiB); a source that ends
/// within it is stored with a single PutObject.
pub const PART_SIZE: usize = 8 << 20;
/// Parts grow by [`PART_SIZE`] every this many parts, so that S3's 10,000-part limit is reached
/// only past ~440 GB while the buffer stays at 8 MiB for anything below 8 GB.
const PARTS_PER_STEP: i32 = 1000;
/// S3's limit on the number of parts.
const MAX_PARTS: i32 = 10_000;
/// Hashing granularity: both hashers see each slice while it is in cache.
const HASH_SLICE: usize = 256 << 10;
/// User metadata / tag name holding the whole-file SHA-256 (lowercase hex).
const SHA256_META: &str = "sha256";
/// How long connecting to the endpoint may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the vault lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// A non-AWS endpoint (a local emulator, MinIO, ...); path-style addressing is used with it.
    /// `None` = AWS's own endpoint for `region`.
    pub endpoint: Option<String>,
    /// The bucket; it must have been created with Object Lock.
    pub bucket: String,
    /// The AWS region, e.g. `eu-central-1`.
    pub region: String,
}

/// The S3 vault: write-once objects under Object Lock in one bucket.
#[derive(Clone, Debug)]
pub struct S3Vault {
    /// The SDK client (cheap to clone; shares one connection pool).
    client: Client,
    /// The bucket every key lives in.
    bucket: String,
}

/// chrono → smithy time (whole microseconds are plenty; S3 keeps seconds for retain-until).
pub(crate) fn to_aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

/// smithy time → chrono.
pub(crate) fn from_aws_time(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

/// A failed S3 call as a [`VaultError::Unavailable`] when it may pass ([`is_transient`]),
/// else a [`VaultError::Remote`]: the operation, what it was on, and [`describe`]'s account of
/// the failure.
pub(crate) fn remote<E>(operation: &str, target: &str, err: &AwsError<E>) -> VaultError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = format!("S3 {operation} {target}: {}", describe(err));
    if is_transient(err) {
        VaultError::Unavailable(message)
    } else {
        VaultError::Remote(message)
    }
}

fn is_not_found<E: ProvideErrorMetadata>(err: &AwsError<E>) -> bool {
    // HeadObject has no body, so only the status tells; 405 is GetObject on a delete marker.
    matches!(status(err), Some(404 | 405))
        || matches!(code(err), Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
}

fn sdk_lock_mode(mode: LockMode) -> (ObjectLockMode, ObjectLockRetentionMode) {
    match mode {
        LockMode::Compliance => (
            ObjectLockMode::Compliance,
            ObjectLockRetentionMode::Compliance,
        ),
        LockMode::Governance => (
            ObjectLockMode::Governance,
            ObjectLockRetentionMode::Governance,
        ),
    }
}

/// Whether `have` satisfies `want`: same mode, retained at least as long.
fn lock_satisfies(have: Option<&ObjectLock>, want: &ObjectLock) -> bool {
    have.is_some_and(|h| h.mode == want.mode && h.retain_until >= want.retain_until)
}

impl S3Vault {
    /// A vault on `config.bucket`, with static credentials from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`). Nothing is
    /// contacted yet: see [`S3Vault::check`].
    ///
    /// # Errors
    /// [`VaultError::Config`] if the credentials are not in the environment.
    pub fn new(config: S3Config) -> Result<Self, VaultError> {
        let credentials = env_credentials().map_err(VaultError::Config)?;
        Ok(Self::with_credentials(config, credentials))
    }

    /// A vault on `config.bucket` with the given credentials.
    pub fn with_credentials(config: S3Config, credentials: Credentials) -> Self {
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region))
            .credentials_provider(credentials)
            .http_client(aws_http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            )
            // We send our own SHA-256 with every write and re-hash every read ourselves: the
            // SDK's extra CRC32 on each request and response would hash the bytes twice.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = config.endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
        }
    }

    /// The bucket this vault writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying SDK client (for setup and for tests that check S3 directly).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn target(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// HeadObject of `key` (a given version, or the current one) as a [`StoredObject`].
    async fn head_version(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<StoredObject>, VaultError> {
        let target = self.target(key);
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            // A malformed version id is a version that does not exist.
            Err(e) if version_id.is_some() && status(&e) == Some(400) => return Ok(None),
            Err(e) => return Err(remote("HeadObject", &target, &e)),
        };
        let bad = |what: &str| VaultError::Remote(format!("S3 HeadObject {target}: {what}"));
        let version_id = out
            .version_id()
            .filter(|v| *v != "null")
            .ok_or_else(|| bad("no version id (is versioning enabled on the bucket?)"))?
            .to_owned();
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad("no content length"))?;
        let stored_at = out
            .last_modified()
            .and_then(from_aws_time)
            .ok_or_else(|| bad("no last-modified date"))?;
        let lock = match (out.object_lock_mode(), out.object_lock_retain_until_date()) {
            (Some(mode), Some(until)) => {
                let mode = match mode {
                    ObjectLockMode::Compliance => Some(LockMode::Compliance),
                    ObjectLockMode::Governance => Some(LockMode::Governance),
                    _ => None,
                };
                match (mode, from_aws_time(until)) {
                    (Some(mode), Some(retain_until)) => Some(ObjectLock { mode, retain_until }),
                    _ => None,
                }
            }
            _ => None,
        };
        // A multipart object's ETag ends in `-<parts>`; its S3 checksum is not of the whole.
        let multipart = out
            .e_tag()
            .is_some_and(|t| t.trim_matches('"').contains('-'))
            || out.checksum_type() == Some(&ChecksumType::Composite);
        // S3's own SHA-256, when it is one of the whole object (a single PUT).
        let full_checksum = match out.checksum_sha256() {
            Some(b64) if !multipart && !b64.contains('-') => {
                BASE64.decode(b64).ok().map(hex::encode)
            }
            _ => None,
        };
        let recorded = out
            .metadata()
            .and_then(|m| m.get(SHA256_META))
            .map(|s| s.to_ascii_lowercase());
        let sha256 = match (recorded, full_checksum) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err(bad(&format!(
                    "recorded SHA-256 {ours} disagrees with S3's checksum {theirs}"
                )))
            }
            (Some(ours), _) => ours,
            (None, Some(theirs)) => theirs,
            (None, None) => self.tagged_sha256(key, &version_id).await?.ok_or_else(|| {
                VaultError::Unfinished {
                    key: target.to_string(),
                    detail: "no recorded SHA-256 (neither metadata nor tag)".to_owned(),
                }
            })?,
        };
        Ok(Some(StoredObject {
            key: key.to_owned(),
            version_id,
            size,
            sha256,
            lock,
            stored_at,
        }))
    }

    /// The `sha256` tag of a version (where multipart uploads keep their whole-file SHA-256).
    async fn tagged_sha256(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<Option<String>, VaultError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| remote("GetObjectTagging", &self.target(key), &e))?;
        Ok(out
            .tag_set()
            .iter()
            .find(|t| t.key() == SHA256_META)
            .map(|t| t.value().to_ascii_lowercase()))
    }
}

#[async_trait::async_trait]
impl Vault for S3Vault {
    async fn put(
        &self,
        key: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        lock: Option<ObjectLock>,
    ) -> Result<StoredObject, VaultError> {
        validate_key(key)?;
        if self.head_version(key, None).await?.is_some() {
            return Err(VaultError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let mut whole = Sha256::new();
        let mut buffer = BytesMut::zeroed(PART_SIZE);
        let n = fill(source, &mut buffer)
            .await
            .map_err(VaultError::Source)?;
        buffer.truncate(n);
        let (version_id, sha256, size) = if n < PART_SIZE {
            let digest = hash_part(&mut whole, &buffer);
            let version_id = self
                .put_single(key, buffer.freeze(), &digest, lock.as_ref())
                .await?;
            (version_id, hex::encode(digest), n as u64)
        } else {
            hash_part(&mut whole, &buffer);
            let mut size = 0;
            let version_id = self
                .put_multipart(key, source, buffer, &mut whole, &mut size, lock.as_ref())
                .await?;
            let sha256 = hex::encode(whole.finalize());
            self.tag_sha256(key, &version_id, &sha256).await?;
            (version_id, sha256, size)
        };
        let stored = self.ensure_lock(key, &version_id, lock.as_ref()).await?;
        // What S3 now reports must be what we sent.
        if stored.size != size || stored.sha256 != sha256 {
            return Err(VaultError::Remote(format!(
                "S3 {} version {version_id}: stored {} bytes with SHA-256 {}, but {size} bytes \
                 with SHA-256 {sha256} were sent",
                self.target(key),
                stored.size,
                stored.sha256
            )));
        }
        Ok(stored)
    }

    async fn head(&self, key: &str) -> Result<Option<StoredObject>, VaultError> {
        validate_key(key)?;
        self.head_version(key, None).await
    }

    async fn open(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<Box<dyn AsyncRead + Unpin + Send>, VaultError> {
        validate_key(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
        {
            Ok(out) => Ok(Box::new(out.body.into_async_read())),
            Err(e) if is_not_found(&e) || status(&e) == Some(400) => Err(VaultError::NotFound {
                key: key.to_owned(),
                version_id: version_id.to_owned(),
            }),
            Err(e) => Err(remote("GetObject", &self.target(key), &e)),
        }
    }

    async fn open_seekable(&self, key: &str, version_id: &str) -> Result<fs::File, VaultError> {
        let mut reader = self.open(key, version_id).await?;
        let file = tempfile::tempfile().map_err(VaultError::Io)?;
        let mut writer = tokio::fs::File::from_std(file.try_clone().map_err(VaultError::Io)?);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            // The body broke on the wire (a reset, a timeout, a cut-off answer).
            let n = reader.read(&mut buffer).await.map_err(|e| {
                VaultError::Unavailable(format!(
                    "S3 GetObject {} version {version_id}: the download broke: {e}",
                    self.target(key)
                ))
            })?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buffer[..n])
                .await
                .map_err(VaultError::Io)?;
        }
        writer.flush().await.map_err(VaultError::Io)?;
        drop(writer);
        let mut file = file;
        file.seek(SeekFrom::Start(0)).map_err(VaultError::Io)?;
        Ok(file)
    }

    async fn delete(&self, key: &str, version_id: &str) -> Result<(), VaultError> {
        validate_key(key)?;
        let Some(stored) = self.head_version(key, Some(version_id)).await? else {
            return Err(VaultError::NotFound {
                key: key.to_owned(),
                version_id: version_id.to_owned(),
            });
        };
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(403) => match stored.lock {
                Some(lock) => Err(VaultError::Locked {
                    key: key.to_owned(),
                    retain_until: lock.retain_until,
                }),
                None => Err(remote("DeleteObject", &self.target(key), &e)),
            },
            Err(e) => Err(remote("DeleteObject", &self.target(key), &e)),
        }
    }

    async fn extend_lock(
        &self,
        key: &str,
        version_id: &str,
        retain_until: DateTime<Utc>,
    ) -> Result<StoredObject, VaultError> {
        validate_key(key)?;
        let Some(stored) = self.head_version(key, Some(version_id)).await? else {
            return Err(VaultError::NotFound {
                key: key.to_owned(),
                version_id: version_id.to_owned(),
            });
        };
        let mode = stored
            .lock
            .as_ref()
            .map_or(LockMode::Compliance, |l| l.mode);
        let want = ObjectLock { mode, retain_until };
        if stored
            .lock
            .as_ref()
            .is_some_and(|have| have.retain_until >= retain_until)
        {
            return Ok(stored);
        }
        self.ensure_lock(key, version_id, Some(&want)).await
    }
}

#[cfg(test)]
mod tests {
    use super::upload::part_size;
    use super::*;
    use crate::vault::MAX_KEY_LEN;

    #[test]
    fn keys_follow_the_local_vault_rules() {
        for good in ["a", "tenant/instance/cycle.zip", "a b/c"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a//b", "a/../b", "./a", "a/", "a\\b", "a\0b"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn parts_grow_so_the_part_limit_allows_large_backups() {
        assert_eq!(part_size(1), PART_SIZE);
        assert_eq!(part_size(1000), PART_SIZE);
        assert_eq!(part_size(1001), 2 * PART_SIZE);
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert!(total > 400_000_000_000, "{total}");
    }

    #[test]
    fn hashing_a_part_feeds_both_hashers() {
        let data = vec![7u8; HASH_SLICE * 2 + 5];
        let mut whole = Sha256::new();
        let part = hash_part(&mut whole, &data);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(part, expected);
        assert_eq!(<[u8; 32]>::from(whole.finalize()), expected);
    }
}
