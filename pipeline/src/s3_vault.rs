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

use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedHttpClient,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime as AwsDateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode,
    ChecksumType, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    ObjectLockEnabled, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, Tag, Tagging,
    VersioningConfiguration,
};
use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::vault::{LockMode, ObjectLock, StoredObject, Vault, VaultError};

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
/// Longest key accepted (S3's limit).
const MAX_KEY_LEN: usize = 1024;
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

/// The HTTP client every AWS SDK client here uses: hyper 1 with rustls on *ring* (already in the
/// dependency graph through reqwest), instead of the SDKs' default aws-lc build.
pub(crate) fn aws_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Static credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the optional
/// `AWS_SESSION_TOKEN`). The error names the missing variable, never a value.
pub(crate) fn env_credentials() -> Result<Credentials, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let access_key = var("AWS_ACCESS_KEY_ID")
        .ok_or("AWS credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
    let secret_key = var("AWS_SECRET_ACCESS_KEY").ok_or(
        "AWS credentials missing: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
    )?;
    Ok(Credentials::new(
        access_key,
        secret_key,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// chrono → smithy time (whole microseconds are plenty; S3 keeps seconds for retain-until).
fn to_aws_time(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

/// smithy time → chrono.
fn from_aws_time(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

/// Checks that `key` is a usable object key: the same rules as the local vault (relative,
/// non-empty segments, no `.`/`..`, no NUL or backslash, at most 1024 bytes), so that keys stay
/// portable between the adapters.
fn validate_key(key: &str) -> Result<(), VaultError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('/')
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && !segment.contains('\0')
                && !segment.contains('\\')
        });
    if valid {
        Ok(())
    } else {
        Err(VaultError::InvalidKey {
            key: key.chars().take(MAX_KEY_LEN).collect(),
        })
    }
}

/// A failed SDK call (every AWS operation's error has this shape).
pub(crate) type AwsError<E> = SdkError<E, HttpResponse>;

/// The HTTP status of a failed call, if a response came back.
pub(crate) fn status<E>(err: &AwsError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code (`NoSuchKey`, `AccessDenied`, ...), if it answered with one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &AwsError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Error codes of S3 and KMS that mean "busy or briefly broken, try again": throttling,
/// internal errors and timeouts of the service (the same families the SDK's own retry
/// classifier treats as throttling or transient).
const TRANSIENT_CODES: &[&str] = &[
    // Throttling.
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    // The service broken inside or not answering in time.
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
];

/// Whether a failed S3 or KMS call may succeed if tried again later: a timeout, a connection
/// that could not be made or broke (a dispatch failure that is not a malformed request), an
/// answer cut off or unreadable on the wire, or an answer of the service with a throttling or
/// internal-error code ([`TRANSIENT_CODES`]) or an HTTP status of 408, 429 or 5xx (except
/// 501, "not implemented"). Everything else — `NoSuchKey`, `NoSuchVersion`, `AccessDenied`,
/// `InvalidCiphertextException`, `DisabledException`, a request that could not be built — is
/// permanent.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(err: &AwsError<E>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(_) => {
            code(err).is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status(err).is_some_and(|s| matches!(s, 408 | 429 | 500 | 502..=599))
        }
        _ => false,
    }
}

/// What went wrong in a failed call, for an error message: the service's code, HTTP status and
/// message, or the transport failure with its causes. Never contains credentials.
pub(crate) fn describe<E>(err: &AwsError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(e) if e.err().code().is_none() => {
            // An answer the SDK could not read: show the start of it.
            let body = e.raw().body().bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            format!(
                "unreadable answer (HTTP {}): {text:?}",
                e.raw().status().as_u16()
            )
        }
        SdkError::ServiceError(e) => {
            let meta = e.err();
            format!(
                "{} (HTTP {}): {}",
                meta.code().unwrap_or("unknown error"),
                e.raw().status().as_u16(),
                meta.message().unwrap_or("no message")
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("endpoint unreachable: {}", DisplayErrorContext(err))
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// A failed S3 call as a [`VaultError::Unavailable`] when it may pass ([`is_transient`]),
/// else a [`VaultError::Remote`]: the operation, what it was on, and [`describe`]'s account of
/// the failure.
fn remote<E>(operation: &str, target: &str, err: &AwsError<E>) -> VaultError
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

/// A successful (HTTP 200, not an `<Error>` document) answer the SDK could not parse. The local
/// emulator names the root element of some answers `<...Response>` where S3 says `<...Result>`
/// or the configuration's own name; boto3 reads them, aws-sdk-s3 does not. The callers read the
/// one field they need from the raw answer and verify the outcome independently.
fn unparsed_success<E: ProvideErrorMetadata>(err: &AwsError<E>) -> Option<&HttpResponse> {
    match err {
        SdkError::ServiceError(e)
            if e.raw().status().as_u16() == 200
                && e.err().code().is_none()
                && !e
                    .raw()
                    .body()
                    .bytes()
                    .is_some_and(|b| b.windows(7).any(|w| w == b"<Error>")) =>
        {
            Some(e.raw())
        }
        _ => None,
    }
}

/// The text of the first `<name>` element of an XML answer (no nesting, no entities: enough for
/// the status words and ids it is used for).
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim().to_owned())
}

fn is_not_found<E: ProvideErrorMetadata>(err: &AwsError<E>) -> bool {
    // HeadObject has no body, so only the status tells; 405 is GetObject on a delete marker.
    matches!(status(err), Some(404 | 405))
        || matches!(code(err), Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
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

/// Size of part `part_number` (1-based).
fn part_size(part_number: i32) -> usize {
    let step = usize::try_from((part_number - 1) / PARTS_PER_STEP).unwrap_or(0);
    PART_SIZE * (1 + step)
}

/// Hashes `data` into the whole-file hasher and returns the part's SHA-256, one pass over the
/// bytes (each slice goes through both hashers while it is in cache).
fn hash_part(whole: &mut Sha256, data: &[u8]) -> [u8; 32] {
    let mut part = Sha256::new();
    for slice in data.chunks(HASH_SLICE) {
        whole.update(slice);
        part.update(slice);
    }
    part.finalize().into()
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

    /// Creates the bucket with Object Lock enabled (which implies versioning; it is also set
    /// explicitly, harmless on S3 and needed by some emulators). For first-time setup and tests.
    ///
    /// # Errors
    /// [`VaultError::Remote`] with S3's answer (e.g. `BucketAlreadyOwnedByYou`).
    pub async fn create_bucket_with_object_lock(&self) -> Result<(), VaultError> {
        let target = format!("bucket {}", self.bucket);
        let mut request = self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .object_lock_enabled_for_bucket(true);
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| remote("CreateBucket", &target, &e))?;
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| remote("PutBucketVersioning", &target, &e))?;
        Ok(())
    }

    /// The `doctor` probe: the bucket exists and is reachable, versioning is Enabled and Object
    /// Lock is Enabled. Returns a one-line description of the bucket.
    ///
    /// # Errors
    /// [`VaultError::Remote`] naming what is wrong and how to fix it.
    pub async fn check(&self) -> Result<String, VaultError> {
        let bucket = &self.bucket;
        let target = format!("bucket {bucket}");
        if let Err(e) = self.client.head_bucket().bucket(bucket).send().await {
            return Err(match status(&e) {
                Some(404) => VaultError::Remote(format!(
                    "bucket {bucket} does not exist: create it with Object Lock \
                     (aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket)"
                )),
                Some(403) => VaultError::Remote(format!(
                    "access to bucket {bucket} denied: check the credentials and the bucket policy"
                )),
                _ => remote("HeadBucket", &target, &e),
            });
        }
        let no_lock = || {
            VaultError::Remote(format!(
                "bucket {bucket} has no Object Lock: create it with \
                 --object-lock-enabled-for-bucket (it cannot be added to this bucket here)"
            ))
        };
        let lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ObjectLockConfigurationNotFoundError") => {
                return Err(no_lock())
            }
            Err(e) => return Err(remote("GetObjectLockConfiguration", &target, &e)),
        };
        let config = lock.object_lock_configuration();
        if config.and_then(|c| c.object_lock_enabled()) != Some(&ObjectLockEnabled::Enabled) {
            return Err(no_lock());
        }
        let versioning = match self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.status().map(|s| s.as_str().to_owned()),
            Err(e) => match unparsed_success(&e) {
                Some(raw) => xml_element(raw.body().bytes().unwrap_or_default(), "Status"),
                None => return Err(remote("GetBucketVersioning", &target, &e)),
            },
        };
        if versioning.as_deref() != Some(BucketVersioningStatus::Enabled.as_str()) {
            return Err(VaultError::Remote(format!(
                "bucket {bucket} has versioning {}, not Enabled; Object Lock needs it: \
                 create the bucket with --object-lock-enabled-for-bucket",
                versioning.as_deref().unwrap_or("never enabled")
            )));
        }
        let default = config
            .and_then(|c| c.rule())
            .and_then(|r| r.default_retention())
            .map_or_else(
                || "no default retention (each object gets its own)".to_owned(),
                |d| {
                    let mode = d.mode().map_or("?", |m| m.as_str());
                    match (d.days(), d.years()) {
                        (Some(days), _) => format!("default retention {mode} {days} days"),
                        (_, Some(years)) => format!("default retention {mode} {years} years"),
                        _ => format!("default retention {mode}"),
                    }
                },
            );
        Ok(format!(
            "s3 bucket {bucket}: versioning Enabled, Object Lock Enabled, {default}"
        ))
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

    /// Single PutObject of a source that fit in one part.
    async fn put_single(
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
    async fn put_multipart(
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
    async fn upload_parts(
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
    async fn tag_sha256(
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
    async fn ensure_lock(
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    mod classification {
        use super::super::*;
        use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_sdk_s3::primitives::SdkBody;

        fn answer(status: u16, code: Option<&str>) -> AwsError<HeadObjectError> {
            let mut meta = ErrorMetadata::builder();
            if let Some(code) = code {
                meta = meta.code(code);
            }
            let raw =
                HttpResponse::new(status.try_into().expect("a status code"), SdkBody::empty());
            SdkError::service_error(HeadObjectError::generic(meta.build()), raw)
        }

        #[test]
        fn throttling_5xx_timeouts_and_broken_connections_are_transient() {
            for (status, code) in [
                (503, Some("SlowDown")),
                (500, Some("InternalError")),
                (503, Some("ServiceUnavailable")),
                (400, Some("RequestTimeout")),
                (400, Some("ThrottlingException")),
                (500, Some("KMSInternalException")),
                (502, None),
                (504, None),
                (429, None),
            ] {
                assert!(is_transient(&answer(status, code)), "{status} {code:?}");
            }
            let timeout: AwsError<HeadObjectError> =
                SdkError::timeout_error(io::Error::new(io::ErrorKind::TimedOut, "slow"));
            assert!(is_transient(&timeout));
            let refused: AwsError<HeadObjectError> =
                SdkError::dispatch_failure(ConnectorError::io(Box::new(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "refused",
                ))));
            assert!(is_transient(&refused));
            let timed_out: AwsError<HeadObjectError> = SdkError::dispatch_failure(
                ConnectorError::timeout(Box::new(io::Error::other("connect timeout"))),
            );
            assert!(is_transient(&timed_out));
            let cut_off: AwsError<HeadObjectError> = SdkError::response_error(
                io::Error::new(io::ErrorKind::UnexpectedEof, "cut off"),
                HttpResponse::new(200.try_into().expect("200"), SdkBody::empty()),
            );
            assert!(is_transient(&cut_off));
        }

        #[test]
        fn missing_objects_refusals_and_bad_requests_are_permanent() {
            for (status, code) in [
                (404, Some("NoSuchKey")),
                (404, Some("NoSuchVersion")),
                (404, None),
                (403, Some("AccessDenied")),
                (400, Some("InvalidCiphertextException")),
                (400, Some("DisabledException")),
                (501, Some("NotImplemented")),
                (412, Some("PreconditionFailed")),
            ] {
                assert!(!is_transient(&answer(status, code)), "{status} {code:?}");
            }
            let malformed: AwsError<HeadObjectError> = SdkError::dispatch_failure(
                ConnectorError::user(Box::new(io::Error::other("invalid header"))),
            );
            assert!(!is_transient(&malformed));
            let unbuilt: AwsError<HeadObjectError> =
                SdkError::construction_failure(io::Error::other("no bucket"));
            assert!(!is_transient(&unbuilt));
        }

        #[test]
        fn a_failed_call_becomes_unavailable_or_remote_by_its_kind() {
            let throttled = remote("HeadObject", "s3://b/k", &answer(503, Some("SlowDown")));
            assert!(
                matches!(throttled, VaultError::Unavailable(_)) && throttled.is_transient(),
                "{throttled:?}"
            );
            assert!(throttled.to_string().contains("SlowDown"), "{throttled}");
            let denied = remote("HeadObject", "s3://b/k", &answer(403, Some("AccessDenied")));
            assert!(
                matches!(denied, VaultError::Remote(_)) && !denied.is_transient(),
                "{denied:?}"
            );
        }
    }

    #[test]
    fn times_convert_both_ways() {
        let t = Utc
            .with_ymd_and_hms(2031, 5, 6, 7, 8, 9)
            .single()
            .expect("date");
        assert_eq!(from_aws_time(&to_aws_time(t)), Some(t));
    }
}
