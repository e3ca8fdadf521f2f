//! The Secured rung on S3: a copy in the bucket without an Object Lock fails `not_locked`,
//! the same bytes stored under a compliance lock are Secured — both read back from S3 itself.

use chrono::{Duration, Utc};
use restorable_domain::cycle::{examples, BackupCycle, BackupCycleCommand, Captured};
use restorable_domain::ids::CycleId;
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use restorable_pipeline::config::Backends;
use restorable_pipeline::context::{Pipeline, Settings};
use restorable_pipeline::s3_vault::{S3Config, S3Vault};
use restorable_pipeline::stages::secure::SecureStage;
use restorable_pipeline::testing::{aws_endpoint, unique_bucket, AWS_REGION};
use restorable_pipeline::transport::Consumer;
use restorable_pipeline::vault::{LockMode, ObjectLock};

async fn pipeline_on_s3(dir: &std::path::Path) -> Pipeline {
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
        s3: Some(config),
        ..Backends::default()
    };
    Pipeline::open(&backends, Settings::default())
        .await
        .expect("pipeline")
}

/// A cycle whose copy was stored with `lock`, run through the secure stage.
async fn secure_a_copy_stored_with(lock: Option<ObjectLock>) -> BackupCycle {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline_on_s3(dir.path()).await;
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
        .cycle(&id, BackupCycleCommand::RecordCaptured(captured))
        .await
        .expect("captured");
    let event = pipeline
        .store
        .history("BackupCycle", &id)
        .await
        .expect("history")
        .pop()
        .expect("the Captured event");
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
