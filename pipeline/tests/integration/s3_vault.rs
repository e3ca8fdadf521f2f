//! The S3 vault against a real local S3 endpoint (moto, or `RESTORABLE_TEST_AWS_ENDPOINT`):
//! round trips through a single PUT and a multipart upload, Object Lock as S3 reports it,
//! write-once and undeletable objects (through the port and through raw S3 calls), failed
//! sources that leave nothing behind, and the `doctor` check.

/// The local AWS endpoint shared by the suite.
mod aws {
    pub use restorable_testkit::{aws_endpoint as endpoint, unique_bucket, AWS_REGION as REGION};
}

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockMode, VersioningConfiguration};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use restorable_pipeline::vault::{LockMode, ObjectLock, Vault, VaultError};
use restorable_pipeline::vault::{S3Config, S3Vault, PART_SIZE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

fn config(bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(aws::endpoint().to_owned()),
        bucket: bucket.to_owned(),
        region: aws::REGION.to_owned(),
    }
}

/// A vault on a fresh bucket created with Object Lock.
async fn locked_vault(label: &str) -> S3Vault {
    let vault = S3Vault::new(config(&aws::unique_bucket(label))).expect("vault");
    vault
        .create_bucket_with_object_lock()
        .await
        .expect("create bucket with object lock");
    vault
}

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compliance lock until `days` from now, in whole seconds (what S3 keeps).
fn compliance(days: i64) -> ObjectLock {
    ObjectLock {
        mode: LockMode::Compliance,
        retain_until: (Utc::now() + Duration::days(days)).trunc_subsecs(0),
    }
}

/// A source that yields `good` bytes, then fails like a broken download.
struct FailingSource {
    data: Vec<u8>,
    offset: usize,
}

impl AsyncRead for FailingSource {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.offset == self.data.len() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the PBX closed the connection",
            )));
        }
        let n = buf
            .remaining()
            .min(self.data.len() - self.offset)
            .min(1 << 16);
        let start = self.offset;
        buf.put_slice(&self.data[start..start + n]);
        self.offset += n;
        Poll::Ready(Ok(()))
    }
}

async fn read_all(vault: &S3Vault, key: &str, version_id: &str) -> Vec<u8> {
    let mut reader = vault.open(key, version_id).await.expect("open");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.expect("read back");
    bytes
}

/// What S3 itself says about the version's lock (raw HeadObject).
async fn raw_lock(vault: &S3Vault, key: &str, version_id: &str) -> (ObjectLockMode, DateTime<Utc>) {
    let head = vault
        .client()
        .head_object()
        .bucket(vault.bucket())
        .key(key)
        .version_id(version_id)
        .send()
        .await
        .expect("raw HeadObject");
    let mode = head.object_lock_mode().cloned().expect("ObjectLockMode");
    let until = head
        .object_lock_retain_until_date()
        .expect("ObjectLockRetainUntilDate");
    let until = DateTime::from_timestamp(until.secs(), until.subsec_nanos()).expect("date");
    (mode, until)
}

async fn version_count(vault: &S3Vault) -> usize {
    let out = vault
        .client()
        .list_object_versions()
        .bucket(vault.bucket())
        .send()
        .await
        .expect("ListObjectVersions");
    out.versions().len() + out.delete_markers().len()
}

async fn open_uploads(vault: &S3Vault) -> usize {
    vault
        .client()
        .list_multipart_uploads()
        .bucket(vault.bucket())
        .send()
        .await
        .expect("ListMultipartUploads")
        .uploads()
        .len()
}

/// Stores `data` under a compliance lock and checks everything the port and S3 report.
async fn round_trip(vault: &S3Vault, key: &str, data: &[u8]) {
    let lock = compliance(30);
    let started = Instant::now();
    let stored = vault
        .put(key, &mut &data[..], Some(lock.clone()))
        .await
        .expect("put");
    let elapsed = started.elapsed();
    eprintln!(
        "put {} bytes in {elapsed:?} ({:.0} MB/s)",
        data.len(),
        data.len() as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(stored.key, key);
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.sha256, sha256_hex(data));
    assert_eq!(stored.lock, Some(lock.clone()));

    let head = vault.head(key).await.expect("head").expect("object exists");
    assert_eq!(head, stored);

    let (mode, until) = raw_lock(vault, key, &stored.version_id).await;
    assert_eq!(mode, ObjectLockMode::Compliance);
    assert_eq!(until, lock.retain_until);

    let started = Instant::now();
    let back = read_all(vault, key, &stored.version_id).await;
    eprintln!("read back {} bytes in {:?}", back.len(), started.elapsed());
    assert!(back == data, "streamed bytes differ");

    let mut file = vault
        .open_seekable(key, &stored.version_id)
        .await
        .expect("open_seekable");
    let mut spooled = Vec::new();
    file.read_to_end(&mut spooled).expect("read spooled file");
    assert!(spooled == data, "spooled bytes differ");

    assert_eq!(version_count(vault).await, 1);
    assert_eq!(open_uploads(vault).await, 0);
}

#[tokio::test]
async fn a_small_backup_round_trips_through_one_put_under_compliance_lock() {
    let vault = locked_vault("small").await;
    round_trip(&vault, "tenant-a/pbx-1/cycle-1.zip", &pattern(300_000, 1)).await;
}

#[tokio::test]
async fn an_empty_backup_round_trips() {
    let vault = locked_vault("empty").await;
    round_trip(&vault, "tenant-a/pbx-1/empty.zip", &[]).await;
}

#[tokio::test]
async fn a_large_backup_round_trips_as_multipart_under_compliance_lock() {
    let vault = locked_vault("large").await;
    // More than two parts, the last one short.
    let data = pattern(20 * 1024 * 1024 + 12_345, 2);
    round_trip(&vault, "tenant-a/pbx-1/cycle-2.zip", &data).await;
    // S3's own checksum of the object is a composite of the parts: ours is kept beside it.
    let head = vault
        .client()
        .head_object()
        .bucket(vault.bucket())
        .key("tenant-a/pbx-1/cycle-2.zip")
        .part_number(1)
        .send()
        .await
        .expect("raw HeadObject of part 1");
    assert_eq!(head.parts_count(), Some(3));
}

#[tokio::test]
async fn a_backup_of_exactly_one_part_round_trips() {
    let vault = locked_vault("onepart").await;
    round_trip(&vault, "t/i/one-part.zip", &pattern(PART_SIZE, 3)).await;
}

#[tokio::test]
async fn a_locked_backup_can_be_neither_deleted_nor_overwritten() {
    let vault = locked_vault("locked").await;
    let key = "tenant-a/pbx-1/cycle-3.zip";
    let data = pattern(100_000, 4);
    let lock = compliance(7);
    let stored = vault
        .put(key, &mut &data[..], Some(lock.clone()))
        .await
        .expect("put");

    // Through the port.
    let err = vault.delete(key, &stored.version_id).await.unwrap_err();
    match &err {
        VaultError::Locked { retain_until, .. } => assert_eq!(*retain_until, lock.retain_until),
        other => panic!("expected Locked, got {other:?}"),
    }
    let other = pattern(2000, 5);
    let err = vault.put(key, &mut &other[..], None).await.unwrap_err();
    assert!(matches!(err, VaultError::AlreadyExists { .. }), "{err:?}");
    let big = pattern(PART_SIZE + 1, 6);
    let err = vault.put(key, &mut &big[..], None).await.unwrap_err();
    assert!(matches!(err, VaultError::AlreadyExists { .. }), "{err:?}");

    // Through raw S3 calls: deleting the version is refused.
    let raw = vault
        .client()
        .delete_object()
        .bucket(vault.bucket())
        .key(key)
        .version_id(&stored.version_id)
        .send()
        .await;
    let raw_err = raw.expect_err("S3 must refuse deleting a locked version");
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&raw_err).map(str::to_owned);
    assert_eq!(code.as_deref(), Some("AccessDenied"), "{raw_err:?}");
    // A raw unconditional PUT only adds a newer version; a plain DELETE only a delete marker.
    vault
        .client()
        .put_object()
        .bucket(vault.bucket())
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"forged"))
        .send()
        .await
        .expect("raw PutObject adds a version");
    vault
        .client()
        .delete_object()
        .bucket(vault.bucket())
        .key(key)
        .send()
        .await
        .expect("raw DeleteObject without a version adds a delete marker");

    // The locked version is untouched.
    assert!(read_all(&vault, key, &stored.version_id).await == data);
    let (mode, until) = raw_lock(&vault, key, &stored.version_id).await;
    assert_eq!(mode, ObjectLockMode::Compliance);
    assert_eq!(until, lock.retain_until);
    let err = vault.delete(key, &stored.version_id).await.unwrap_err();
    assert!(matches!(err, VaultError::Locked { .. }), "{err:?}");
}

/// Retention's two calls on S3: a lock that has run out is extended (PutObjectRetention on the
/// exact version, read back by HeadObject) and then holds off a delete; one never extended is
/// deleted once it has run out, and the version is gone.
#[tokio::test]
async fn retention_extends_a_lock_and_deletes_a_version_once_its_lock_has_run_out() {
    let vault = locked_vault("retention").await;
    let short = ObjectLock {
        mode: LockMode::Compliance,
        retain_until: (Utc::now() + Duration::seconds(2)).trunc_subsecs(0),
    };
    let kept = vault
        .put("t/i/kept.zip", &mut &b"kept"[..], Some(short.clone()))
        .await
        .expect("put kept");
    let gone = vault
        .put("t/i/gone.zip", &mut &b"gone"[..], Some(short.clone()))
        .await
        .expect("put gone");
    let err = vault.delete(&gone.key, &gone.version_id).await.unwrap_err();
    assert!(matches!(err, VaultError::Locked { .. }), "{err:?}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let later = (Utc::now() + Duration::days(7)).trunc_subsecs(0);
    let extended = vault
        .extend_lock(&kept.key, &kept.version_id, later)
        .await
        .expect("extend");
    assert_eq!(extended.lock.map(|l| l.retain_until), Some(later));
    assert_eq!(
        raw_lock(&vault, &kept.key, &kept.version_id).await,
        (ObjectLockMode::Compliance, later)
    );
    // Asking for less changes nothing: a lock is never shortened.
    let again = vault
        .extend_lock(&kept.key, &kept.version_id, short.retain_until)
        .await
        .expect("no-op");
    assert_eq!(again.lock.map(|l| l.retain_until), Some(later));
    let err = vault.delete(&kept.key, &kept.version_id).await.unwrap_err();
    assert!(matches!(err, VaultError::Locked { .. }), "{err:?}");
    assert_eq!(read_all(&vault, &kept.key, &kept.version_id).await, b"kept");

    vault
        .delete(&gone.key, &gone.version_id)
        .await
        .expect("delete once the lock has run out");
    let err = vault.open(&gone.key, &gone.version_id).await.err();
    assert!(matches!(err, Some(VaultError::NotFound { .. })), "{err:?}");
    let err = vault.extend_lock(&gone.key, &gone.version_id, later).await;
    assert!(matches!(err, Err(VaultError::NotFound { .. })), "{err:?}");
}

#[tokio::test]
async fn an_object_stored_without_lock_reports_none_and_can_be_deleted() {
    let vault = locked_vault("nolock").await;
    let key = "tenant-a/pbx-1/unlocked.zip";
    let data = pattern(5000, 7);
    let stored = vault.put(key, &mut &data[..], None).await.expect("put");
    assert_eq!(stored.lock, None);
    let head = vault.head(key).await.expect("head").expect("exists");
    assert_eq!(head.lock, None);
    assert_eq!(head.sha256, sha256_hex(&data));
    vault.delete(key, &stored.version_id).await.expect("delete");
    assert_eq!(vault.head(key).await.expect("head"), None);

    // Multipart too.
    let key = "tenant-a/pbx-1/unlocked-large.zip";
    let data = pattern(PART_SIZE + 10, 8);
    let stored = vault.put(key, &mut &data[..], None).await.expect("put");
    assert_eq!(stored.lock, None);
    assert_eq!(
        vault.head(key).await.expect("head").expect("exists").lock,
        None
    );
}

#[tokio::test]
async fn a_source_failing_mid_stream_leaves_nothing_behind() {
    let vault = locked_vault("failing").await;
    for (key, good) in [
        ("t/i/small-fail.zip", 1000),
        ("t/i/large-fail.zip", 2 * PART_SIZE + 77),
    ] {
        let mut source = FailingSource {
            data: pattern(good, 9),
            offset: 0,
        };
        let err = vault
            .put(key, &mut source, Some(compliance(30)))
            .await
            .unwrap_err();
        match &err {
            VaultError::Source(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("{key}: expected Source, got {other:?}"),
        }
        assert!(err.to_string().contains("closed the connection"), "{err}");
        assert_eq!(vault.head(key).await.expect("head"), None, "{key}");
    }
    assert_eq!(version_count(&vault).await, 0, "no object or version left");
    assert_eq!(
        open_uploads(&vault).await,
        0,
        "no multipart upload left open"
    );
}

#[tokio::test]
async fn missing_versions_and_bad_keys_are_reported_as_such() {
    let vault = locked_vault("missing").await;
    let key = "t/i/x.zip";
    assert_eq!(vault.head(key).await.expect("head"), None);
    let err = vault
        .open(key, "no-such-version")
        .await
        .err()
        .expect("open fails");
    assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");
    let err = vault.delete(key, "no-such-version").await.unwrap_err();
    assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");

    let stored = vault.put(key, &mut &b"abc"[..], None).await.expect("put");
    let err = vault
        .open(key, "another-version")
        .await
        .err()
        .expect("open fails");
    assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");
    assert!(read_all(&vault, key, &stored.version_id).await == b"abc");

    for bad in ["", "/abs", "a/../b", "a//b"] {
        let err = vault.put(bad, &mut &b"x"[..], None).await.unwrap_err();
        assert!(
            matches!(err, VaultError::InvalidKey { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn check_passes_on_an_object_lock_bucket() {
    let vault = locked_vault("check").await;
    let line = vault.check().await.expect("check");
    assert!(line.contains(vault.bucket()), "{line}");
    assert!(line.contains("Object Lock Enabled"), "{line}");
}

#[tokio::test]
async fn check_fails_clearly_without_object_lock_or_without_the_bucket() {
    // Created without Object Lock (and so without versioning).
    let plain = S3Vault::new(config(&aws::unique_bucket("plain"))).expect("vault");
    plain
        .client()
        .create_bucket()
        .bucket(plain.bucket())
        .send()
        .await
        .expect("create plain bucket");
    let err = plain.check().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("bucket {} has no Object Lock", plain.bucket())),
        "{err}"
    );
    assert!(err.contains("--object-lock-enabled-for-bucket"), "{err}");

    // Versioning switched on afterwards is still not Object Lock.
    plain
        .client()
        .put_bucket_versioning()
        .bucket(plain.bucket())
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let err = plain.check().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("bucket {} has no Object Lock", plain.bucket())),
        "{err}"
    );
    assert!(err.contains("--object-lock-enabled-for-bucket"), "{err}");

    let missing = S3Vault::new(config(&aws::unique_bucket("missing"))).expect("vault");
    let err = missing.check().await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains(missing.bucket()), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_transient_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    aws::endpoint(); // credentials in the environment
    let vault = S3Vault::new(S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        bucket: "nowhere".to_owned(),
        region: aws::REGION.to_owned(),
    })
    .expect("vault");
    let err = vault.head("t/i/x.zip").await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient(), "no connection may pass: {err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(!err.to_string().contains("restorable-test-secret"), "{err}");
}
