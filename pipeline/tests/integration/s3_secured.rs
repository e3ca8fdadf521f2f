//! The Secured rung on S3: a copy in the bucket without an Object Lock fails `not_locked`,
//! the same bytes stored under a compliance lock are Secured — both read back from S3 itself.
//! Through a proxy that answers `503 SlowDown` (S3's throttling): a few throttled calls are
//! tried again and the copy is Secured; a vault throttled for longer than the stage's tries
//! fails the cycle with the retryable `vault_unavailable`; a deleted copy keeps its permanent
//! `object_missing`.

use crate::fault_proxy;

use fault_proxy::{FaultProxy, Service};

use chrono::{Duration, Utc};
use restorable_domain::cycle::{examples, BackupCycle, BackupCycleCommand, Captured};
use restorable_domain::ids::CycleId;
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::stages::secure::SecureStage;
use restorable_pipeline::transport::Consumer;
use restorable_pipeline::vault::{LockMode, ObjectLock};
use restorable_pipeline::vault::{S3Config, S3Vault};
use restorable_testkit::{aws_endpoint, unique_bucket, AWS_REGION};

/// A pipeline whose vault is a new bucket, reached at `endpoint` (moto, or a proxy of it).
async fn pipeline_on_s3(dir: &std::path::Path, endpoint: &str) -> Pipeline {
    let config = S3Config {
        endpoint: Some(aws_endpoint().to_owned()),
        bucket: unique_bucket("secured"),
        region: AWS_REGION.to_owned(),
    };
    S3Vault::new(config.clone())
        .expect("vault")
        .create_bucket_with_object_lock()
        .await
        .expect("bucket");
    let backends = Backends {
        data_dir: dir.to_owned(),
        s3: Some(S3Config {
            endpoint: Some(endpoint.to_owned()),
            ..config
        }),
        ..Backends::default()
    };
    Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline")
}

/// A cycle whose copy was stored with `lock`, run through the secure stage.
async fn secure_a_copy_stored_with(lock: Option<ObjectLock>) -> BackupCycle {
    secure_through(lock, aws_endpoint(), |_, _| async {}).await
}

/// As [`secure_a_copy_stored_with`], with the vault reached at `endpoint`, and `before_secure`
/// given the pipeline and the cycle's Captured record once the copy is stored, just before the
/// secure stage runs.
async fn secure_through<F, Fut>(
    lock: Option<ObjectLock>,
    endpoint: &str,
    before_secure: F,
) -> BackupCycle
where
    F: FnOnce(Pipeline, Captured) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline_on_s3(dir.path(), endpoint).await;
    let mut started = examples::started();
    started.cycle_id = CycleId::random();
    let id = started.cycle_id.to_string();
    pipeline
        .store
        .cycle(&id, BackupCycleCommand::Start(started.clone()))
        .await
        .expect("start");
    let key = format!("acme/{}/{id}.zip", started.instance_id);
    let bytes = b"PK\x03\x04 a stand-in for the encrypted backup".repeat(1000);
    let retain_until = lock
        .as_ref()
        .map_or_else(|| Utc::now() + Duration::days(30), |l| l.retain_until);
    let stored = pipeline
        .vault
        .put(&key, &mut bytes.as_slice(), lock)
        .await
        .expect("stored");
    let captured = Captured {
        object_key: key,
        version_id: stored.version_id,
        size: stored.size,
        sha256: stored.sha256,
        lock_mode: restorable_domain::ladder::LockMode::Compliance,
        retain_until,
        ..examples::captured()
    };
    pipeline
        .store
        .cycle(&id, BackupCycleCommand::RecordCaptured(captured.clone()))
        .await
        .expect("captured");
    let event = pipeline
        .store
        .history("BackupCycle", &id)
        .await
        .expect("history")
        .pop()
        .expect("the Captured event");
    before_secure(pipeline.clone(), captured).await;
    SecureStage::new(pipeline.clone())
        .react(event)
        .await
        .expect("the stage ran");
    pipeline.store.load(&id).await.expect("cycle")
}

#[tokio::test]
async fn a_copy_stored_in_s3_without_a_lock_fails_secured_with_not_locked() {
    let cycle = secure_a_copy_stored_with(None).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason),
        (Stage::Secure, FailureReason::NotLocked),
        "{}",
        failed.detail
    );
    assert_eq!(cycle.rung, Some(Rung::Captured));
}

#[tokio::test]
async fn the_same_copy_under_a_compliance_lock_is_secured() {
    let retain_until =
        chrono::DateTime::from_timestamp((Utc::now() + Duration::days(30)).timestamp(), 0)
            .expect("a time");
    let cycle = secure_a_copy_stored_with(Some(ObjectLock {
        mode: LockMode::Compliance,
        retain_until,
    }))
    .await;
    assert_eq!(cycle.failed.map(|f| f.detail), None);
    assert_eq!(cycle.rung, Some(Rung::Secured));
}

fn compliance_for_30_days() -> Option<ObjectLock> {
    let retain_until =
        chrono::DateTime::from_timestamp((Utc::now() + Duration::days(30)).timestamp(), 0)
            .expect("a time");
    Some(ObjectLock {
        mode: LockMode::Compliance,
        retain_until,
    })
}

#[tokio::test]
async fn a_vault_throttled_a_few_times_is_tried_again_and_the_copy_is_secured() {
    let proxy = FaultProxy::start(Service::S3, aws_endpoint()).await;
    // More than the SDK's own three attempts of one call: the stage's retry is needed.
    let cycle = secure_through(compliance_for_30_days(), &proxy.url(), |_, _| async {
        proxy.throttle(5);
    })
    .await;
    assert_eq!(cycle.failed.map(|f| f.detail), None);
    assert_eq!(cycle.rung, Some(Rung::Secured));
    assert_eq!(proxy.faulted(), 5, "every throttled answer was met");
}

#[tokio::test]
async fn a_vault_throttled_beyond_the_stage_tries_fails_vault_unavailable_retryable() {
    let proxy = FaultProxy::start(Service::S3, aws_endpoint()).await;
    let cycle = secure_through(compliance_for_30_days(), &proxy.url(), |_, _| async {
        proxy.throttle_always();
    })
    .await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Secure, FailureReason::VaultUnavailable, true),
        "{}",
        failed.detail
    );
    assert!(failed.detail.contains("SlowDown"), "{}", failed.detail);
    assert_eq!(cycle.rung, Some(Rung::Captured));
    // The SDK's three attempts, times the stage's five tries.
    assert!(proxy.faulted() >= 10, "tried again: {}", proxy.faulted());
}

#[tokio::test]
async fn a_deleted_copy_keeps_its_permanent_object_missing() {
    let proxy = FaultProxy::start(Service::S3, aws_endpoint()).await;
    let cycle = secure_through(None, &proxy.url(), |pipeline, captured| async move {
        // Gone behind the pipeline's back (it was stored without a lock).
        pipeline
            .vault
            .delete(&captured.object_key, &captured.version_id)
            .await
            .expect("delete the copy");
    })
    .await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Secure, FailureReason::ObjectMissing, false),
        "{}",
        failed.detail
    );
    assert_eq!(proxy.faulted(), 0);
}
