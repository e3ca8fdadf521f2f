//! `put` on the S3 vault: a source that fits in one part goes up with one PutObject, a longer one
//! as a multipart upload hashed part by part in the same pass; then the version's lock is
//! checked and extended where the endpoint dropped it.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockRetention, Tag, Tagging,
};
use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;

use super::*;
use crate::aws::emulator::unparsed_success;
use crate::aws::status;
use crate::vault::{fill, ObjectLock, StoredObject, VaultError};

/// Size of part `part_number` (1-based).
pub(super) fn part_size(part_number: i32) -> usize {
    let step = usize::try_from((part_number - 1) / PARTS_PER_STEP).unwrap_or(0);
    PART_SIZE * (1 + step)
}

/// Hashes `data` into the whole-file hasher and returns the part's SHA-256, one pass over the
/// bytes (each slice goes through both hashers while it is in cache).
pub(super) fn hash_part(whole: &mut Sha256, data: &[u8]) -> [u8; 32] {
    let mut part = Sha256::new();
    for slice in data.chunks(HASH_SLICE) {
        whole.update(slice);
        part.update(slice);
    }
    part.finalize().into()
}

/// Aborts an open multipart upload when dropped unless disarmed, so that a cancelled `put`
/// leaves no upload (and no billed parts) behind. Error paths abort explicitly and wait.
struct UploadGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl UploadGuard {
    async fn abort(mut self) {
        self.armed = false;
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(
                key = %self.key,
                error = %DisplayErrorContext(&e),
                "aborting the multipart upload failed; a bucket lifecycle rule \
                 (AbortIncompleteMultipartUpload) will clean it up"
            );
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let request = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id);
            handle.spawn(async move {
                let _ = request.send().await;
            });
        }
    }
}

impl S3Vault {
    /// Single PutObject of a source that fit in one part.
    pub(super) async fn put_single(
        &self,
        key: &str,
        body: bytes::Bytes,
        digest: &[u8; 32],
        lock: Option<&ObjectLock>,
    ) -> Result<String, VaultError> {
        let target = self.target(key);
        let sha256_hex = hex::encode(digest);
        let length = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length)
            .body(ByteStream::from(body))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(BASE64.encode(digest))
            .metadata(SHA256_META, &sha256_hex)
            .if_none_match("*");
        if let Some(lock) = lock {
            request = request
                .object_lock_mode(sdk_lock_mode(lock.mode).0)
                .object_lock_retain_until_date(to_aws_time(lock.retain_until));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if status(&e) == Some(412) => {
                return Err(VaultError::AlreadyExists {
                    key: key.to_owned(),
                })
            }
            Err(e) => return Err(remote("PutObject", &target, &e)),
        };
        out.version_id()
            .filter(|v| *v != "null")
            .map(str::to_owned)
            .ok_or_else(|| {
                VaultError::Remote(format!(
                    "S3 PutObject {target}: no version id (is versioning enabled on the bucket?)"
                ))
            })
    }

    /// Multipart upload: `first` is the already-read first part (full); the rest is read from
    /// `source` into the same buffer. Returns the version id.
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        mut buffer: BytesMut,
        whole: &mut Sha256,
        total: &mut u64,
        lock: Option<&ObjectLock>,
    ) -> Result<String, VaultError> {
        let target = self.target(key);
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        if let Some(lock) = lock {
            request = request
                .object_lock_mode(sdk_lock_mode(lock.mode).0)
                .object_lock_retain_until_date(to_aws_time(lock.retain_until));
        }
        let created = request
            .send()
            .await
            .map_err(|e| remote("CreateMultipartUpload", &target, &e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                VaultError::Remote(format!("S3 CreateMultipartUpload {target}: no upload id"))
            })?
            .to_owned();
        let guard = UploadGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            armed: true,
        };

        let result = self
            .upload_parts(key, &upload_id, source, &mut buffer, whole, total)
            .await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .if_none_match("*")
            .send()
            .await;
        let version_id = match completed {
            Ok(out) => out.version_id().map(str::to_owned),
            // The upload completed but the answer could not be parsed: its version id is in a
            // header, and the caller checks that version's size and SHA-256 before trusting it.
            Err(e) if unparsed_success(&e).is_some() => unparsed_success(&e)
                .and_then(|raw| raw.headers().get("x-amz-version-id"))
                .map(str::to_owned),
            Err(e) => {
                guard.abort().await;
                if status(&e) == Some(412) {
                    return Err(VaultError::AlreadyExists {
                        key: key.to_owned(),
                    });
                }
                return Err(remote("CompleteMultipartUpload", &target, &e));
            }
        };
        guard.disarm();
        version_id.filter(|v| v != "null").ok_or_else(|| {
            VaultError::Remote(format!(
                "S3 CompleteMultipartUpload {target}: no version id \
                     (is versioning enabled on the bucket?)"
            ))
        })
    }

    /// Uploads the part in `buffer` and every further part read from `source`.
    pub(super) async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        buffer: &mut BytesMut,
        whole: &mut Sha256,
        total: &mut u64,
    ) -> Result<Vec<CompletedPart>, VaultError> {
        let target = self.target(key);
        let mut parts = Vec::new();
        let mut part_number: i32 = 1;
        // The first part was read (and hashed into `whole`) by the caller.
        let mut part_sha = hash_part(&mut Sha256::new(), buffer);
        loop {
            let length = buffer.len();
            *total += length as u64;
            let body = std::mem::take(buffer).freeze();
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(i64::try_from(length).unwrap_or(i64::MAX))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(BASE64.encode(part_sha))
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map_err(|e| remote(&format!("UploadPart {part_number}"), &target, &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .checksum_sha256(
                        out.checksum_sha256()
                            .map_or_else(|| BASE64.encode(part_sha), str::to_owned),
                    )
                    .build(),
            );
            // Take the buffer back once the SDK has let go of it (one allocation per upload).
            *buffer = body.try_into_mut().unwrap_or_default();

            part_number += 1;
            if part_number > MAX_PARTS {
                return Err(VaultError::Remote(format!(
                    "S3 upload {target}: the source exceeds {MAX_PARTS} parts"
                )));
            }
            let size = part_size(part_number);
            buffer.clear();
            buffer.resize(size, 0);
            let n = fill(source, buffer).await.map_err(VaultError::Source)?;
            buffer.truncate(n);
            if n == 0 {
                return Ok(parts);
            }
            part_sha = hash_part(whole, buffer);
        }
    }

    /// Records a multipart version's whole-file SHA-256 as its `sha256` tag.
    pub(super) async fn tag_sha256(
        &self,
        key: &str,
        version_id: &str,
        sha256: &str,
    ) -> Result<(), VaultError> {
        let tag = Tag::builder()
            .key(SHA256_META)
            .value(sha256)
            .build()
            .map_err(|e| VaultError::Remote(format!("S3 tag: {e}")))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| VaultError::Remote(format!("S3 tagging: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| remote("PutObjectTagging", &self.target(key), &e))?;
        Ok(())
    }

    /// Makes sure the version carries `lock` (setting it with PutObjectRetention if the upload
    /// did not), then returns its metadata read back with HeadObject.
    pub(super) async fn ensure_lock(
        &self,
        key: &str,
        version_id: &str,
        lock: Option<&ObjectLock>,
    ) -> Result<StoredObject, VaultError> {
        let target = self.target(key);
        let missing = || {
            VaultError::Remote(format!(
                "S3 HeadObject {target} version {version_id}: the version just written is gone"
            ))
        };
        let stored = self
            .head_version(key, Some(version_id))
            .await?
            .ok_or_else(missing)?;
        let Some(want) = lock else {
            return Ok(stored);
        };
        if lock_satisfies(stored.lock.as_ref(), want) {
            return Ok(stored);
        }
        tracing::info!(
            key,
            version_id,
            found = ?stored.lock,
            "the upload did not apply the Object Lock asked for; setting it on the version"
        );
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .retention(
                ObjectLockRetention::builder()
                    .mode(sdk_lock_mode(want.mode).1)
                    .retain_until_date(to_aws_time(want.retain_until))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| remote("PutObjectRetention", &target, &e))?;
        let stored = self
            .head_version(key, Some(version_id))
            .await?
            .ok_or_else(missing)?;
        if lock_satisfies(stored.lock.as_ref(), want) {
            Ok(stored)
        } else {
            Err(VaultError::Remote(format!(
                "S3 {target} version {version_id}: Object Lock {} until {} was asked for but \
                 HeadObject shows {:?}",
                want.mode, want.retain_until, stored.lock
            )))
        }
    }
}
