//! Transient is not permanent: whole cycles on a simulated PBX with the key sealing on KMS (and
//! the vault on S3) of the local AWS endpoint, reached through a proxy that throttles on demand
//! (moto cannot). A few throttled KMS calls are tried again within the stage and the cycle
//! climbs as usual; a key service throttled for longer than the stage's tries fails the cycle
//! with the retryable `key_service_unavailable` (and the instance is due again a minute after
//! it closed, not an interval later); a refusal (access denied) is not tried again and keeps
//! its permanent `key_unavailable`; a vault throttled through the capture fails it with the
//! retryable `vault_unavailable`. The native backup watch with the key service throttled or
//! refusing reads no PBX (its credentials do not unseal), records and raises nothing, and reads
//! it at the next sweep once the key service answers.

use crate::common;
use crate::fault_proxy;

use std::sync::Arc;

use chrono::Utc;
use common::Harness;
use fault_proxy::{FaultProxy, Service};
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::instance::Instance;
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::{Fault, RunningPbx};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::native_watch::sweep_at;
use restorable_pipeline::sealing::{KmsConfig, KmsKeySealer};
use restorable_pipeline::vault::{S3Config, S3Vault};
use restorable_testkit::{aws_endpoint, unique_bucket, AWS_REGION};

/// A new symmetric KMS key on the local endpoint.
async fn new_kms_key() -> String {
    let direct = KmsKeySealer::new(KmsConfig {
        endpoint: Some(aws_endpoint().to_owned()),
        key_id: "unset".to_owned(),
        region: AWS_REGION.to_owned(),
    })
    .expect("sealer");
    let key = direct
        .client()
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
        .send()
        .await
        .expect("CreateKey");
    key.key_metadata().expect("metadata").key_id().to_owned()
}

/// A harness whose sealer is KMS through a fault proxy, with one enrolled PBX.
async fn on_kms() -> (Harness, FaultProxy, RunningPbx, InstanceId) {
    on_kms_with(None).await
}

/// [`on_kms`] with the PBX given a fault.
async fn on_kms_with(fault: Option<Fault>) -> (Harness, FaultProxy, RunningPbx, InstanceId) {
    let proxy = FaultProxy::start(Service::Kms, aws_endpoint()).await;
    let key_id = new_kms_key().await;
    let mut harness = Harness::new().await;
    harness.pipeline.sealer = Arc::new(
        KmsKeySealer::new(KmsConfig {
            endpoint: Some(proxy.url()),
            key_id,
            region: AWS_REGION.to_owned(),
        })
        .expect("sealer"),
    );
    let pbx = harness.pbx("pbx-kms", fault).await;
    let instance = harness.enrol(&pbx, 60).await;
    (harness, proxy, pbx, instance)
}

/// Opens a cycle and drives it until it closes.
async fn one_cycle(harness: &Harness, instance: InstanceId) -> CycleId {
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle]).await;
    cycle
}

async fn instance(harness: &Harness, id: InstanceId) -> Instance {
    harness
        .pipeline
        .store
        .load(&id.to_string())
        .await
        .expect("instance")
}

#[tokio::test]
async fn kms_throttled_a_few_times_is_tried_again_and_the_cycle_climbs() {
    let (harness, proxy, _pbx, instance_id) = on_kms().await;
    // More than the SDK's own three attempts of the first Decrypt: the stage's retry is needed.
    proxy.throttle(5);
    let cycle_id = one_cycle(&harness, instance_id).await;
    let cycle = harness.cycle(cycle_id).await;
    assert_eq!(cycle.failed.map(|f| (f.reason, f.detail)), None);
    assert!(cycle.rung >= Some(Rung::Verified), "{:?}", cycle.rung);
    assert_eq!(proxy.faulted(), 5);
    let instance = instance(&harness, instance_id).await;
    assert_eq!(
        (instance.retryable_failures, instance.retry_delay()),
        (0, None)
    );
}

#[tokio::test]
async fn kms_throttled_beyond_the_stage_tries_fails_key_service_unavailable_and_retries_soon() {
    let (harness, proxy, _pbx, instance_id) = on_kms().await;
    proxy.throttle_always();
    let cycle_id = one_cycle(&harness, instance_id).await;
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Capture, FailureReason::KeyServiceUnavailable, true),
        "{}",
        failed.detail
    );
    assert!(
        failed.detail.contains("ThrottlingException"),
        "{}",
        failed.detail
    );
    assert_eq!(cycle.rung, Some(Rung::Started));
    // The SDK's three attempts, times the stage's five tries.
    assert!(proxy.faulted() >= 10, "tried again: {}", proxy.faulted());

    // Closed as a retryable failure: due again a minute after, not an hour after.
    let instance = instance(&harness, instance_id).await;
    assert_eq!(instance.open_cycle, None);
    assert_eq!(instance.retryable_failures, 1);
    assert_eq!(instance.retry_delay(), Some(chrono::Duration::minutes(1)));
    let closed = instance.last_closed_at.expect("closed");
    assert!(!instance.is_due(closed + chrono::Duration::seconds(30)));
    assert!(instance.is_due(closed + chrono::Duration::seconds(61)));

    // The key service is back: the next cycle climbs and the back-off is reset.
    proxy.pass();
    let next = one_cycle(&harness, instance_id).await;
    assert_eq!(harness.cycle(next).await.failed.map(|f| f.detail), None);
    let instance = self::instance(&harness, instance_id).await;
    assert_eq!(
        (instance.retryable_failures, instance.retry_delay()),
        (0, None)
    );
    assert!(!instance.is_due(Utc::now() + chrono::Duration::minutes(5)));
}

#[tokio::test]
async fn a_kms_refusal_is_not_tried_again_and_stays_key_unavailable() {
    let (harness, proxy, _pbx, instance_id) = on_kms().await;
    proxy.deny_always();
    let cycle_id = one_cycle(&harness, instance_id).await;
    let failed = harness.cycle(cycle_id).await.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Capture, FailureReason::KeyUnavailable, false),
        "{}",
        failed.detail
    );
    assert_eq!(proxy.faulted(), 1, "a refusal is asked once");
    let instance = instance(&harness, instance_id).await;
    assert_eq!(
        (instance.retryable_failures, instance.retry_delay()),
        (0, None)
    );
}

/// A harness whose vault is a new S3 bucket through a fault proxy (the sealer stays local).
async fn on_s3() -> (Harness, FaultProxy, RunningPbx, InstanceId) {
    let proxy = FaultProxy::start(Service::S3, aws_endpoint()).await;
    let config = S3Config {
        endpoint: Some(aws_endpoint().to_owned()),
        bucket: unique_bucket("transient"),
        region: AWS_REGION.to_owned(),
    };
    S3Vault::new(config.clone())
        .expect("vault")
        .create_bucket_with_object_lock()
        .await
        .expect("bucket");
    let mut harness = Harness::new().await;
    harness.pipeline.vault = Arc::new(
        S3Vault::new(S3Config {
            endpoint: Some(proxy.url()),
            ..config
        })
        .expect("vault"),
    );
    let pbx = harness.pbx("pbx-s3", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    (harness, proxy, pbx, instance)
}

#[tokio::test]
async fn s3_throttled_a_few_times_before_the_upload_is_tried_again_and_the_cycle_climbs() {
    let (harness, proxy, _pbx, instance_id) = on_s3().await;
    // The capture's first vault calls (before any byte of the download went in) are throttled.
    proxy.throttle(5);
    let cycle_id = one_cycle(&harness, instance_id).await;
    let cycle = harness.cycle(cycle_id).await;
    assert_eq!(cycle.failed.map(|f| (f.reason, f.detail)), None);
    assert!(cycle.rung >= Some(Rung::Verified), "{:?}", cycle.rung);
    assert_eq!(proxy.faulted(), 5);
}

#[tokio::test]
async fn s3_throttled_through_the_capture_fails_vault_unavailable_retryable() {
    let (harness, proxy, _pbx, instance_id) = on_s3().await;
    proxy.throttle_always();
    let cycle_id = one_cycle(&harness, instance_id).await;
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Capture, FailureReason::VaultUnavailable, true),
        "{}",
        failed.detail
    );
    assert_eq!(cycle.rung, Some(Rung::Started));
    let instance = instance(&harness, instance_id).await;
    assert_eq!(instance.retry_delay(), Some(chrono::Duration::minutes(1)));
}

/// A worker killed between completing an upload and recording its SHA-256 leaves an object
/// that can never be trusted (and, write-once, never replaced): the redelivered capture passes
/// it over and stores the copy under the cycle's next key; no false red.
#[tokio::test]
async fn an_upload_left_unfinished_by_a_killed_worker_is_passed_over_not_failed() {
    let config = S3Config {
        endpoint: Some(aws_endpoint().to_owned()),
        bucket: unique_bucket("unfinished"),
        region: AWS_REGION.to_owned(),
    };
    let vault = S3Vault::new(config.clone()).expect("vault");
    vault
        .create_bucket_with_object_lock()
        .await
        .expect("bucket");
    let mut harness = Harness::new().await;
    harness.pipeline.vault = Arc::new(S3Vault::new(config.clone()).expect("vault"));
    let pbx = harness.pbx("pbx-unfinished", None).await;
    let instance_id = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("open");
    vault
        .client()
        .put_object()
        .bucket(&config.bucket)
        .key(format!("acme/{instance_id}/{cycle_id}.zip"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"half a backup",
        ))
        .send()
        .await
        .expect("an unfinished object at the cycle's key");
    harness.drive(&[cycle_id]).await;
    let cycle = harness.cycle(cycle_id).await;
    assert_eq!(cycle.failed.map(|f| (f.reason, f.detail)), None);
    assert!(cycle.rung >= Some(Rung::Verified), "{:?}", cycle.rung);
    let captured = cycle.captured.expect("captured");
    assert_eq!(
        captured.object_key,
        format!("acme/{instance_id}/{cycle_id}.1.zip")
    );
}

/// A vault throttled through a rotating re-check is infrastructure, not a changed copy: the
/// re-check is deferred and nothing is recorded (no Re-check Failed, no false red); once the
/// vault answers and the claim has run out, the next sweep proves the copy.
#[tokio::test]
async fn s3_throttled_through_a_recheck_defers_it_and_records_nothing() {
    let (harness, proxy, _pbx, instance_id) = on_s3().await;
    let cycle_id = one_cycle(&harness, instance_id).await;
    assert!(harness.cycle(cycle_id).await.rung >= Some(Rung::Secured));
    let now = Utc::now();
    let window = harness.pipeline.settings.recheck_window;
    restorable_pipeline::recheck::index::refresh(&harness.pipeline.store, window, now)
        .await
        .expect("refresh");
    let week = now + window + chrono::Duration::minutes(1);
    proxy.throttle_always();
    let deferred = restorable_pipeline::recheck::sweep_at(&harness.pipeline, week)
        .await
        .expect("sweep");
    assert_eq!(
        deferred.deferred,
        vec![cycle_id.to_string()],
        "{deferred:?}"
    );
    assert!(deferred.failed.is_empty() && deferred.proven.is_empty());
    let history = harness.cycle_events(cycle_id).await;
    assert!(
        !history.iter().any(|t| t.starts_with("Recheck")),
        "{history:?}"
    );
    proxy.pass();
    let held = restorable_pipeline::recheck::sweep_at(&harness.pipeline, week)
        .await
        .expect("sweep");
    assert!(held.proven.is_empty(), "still claimed: {held:?}");
    let later = week + chrono::Duration::hours(2);
    let proven = restorable_pipeline::recheck::sweep_at(&harness.pipeline, later)
        .await
        .expect("sweep");
    assert_eq!(proven.proven, vec![cycle_id.to_string()], "{proven:?}");
    let coverage = harness
        .pipeline
        .store
        .recheck_coverage(None, (later - window).timestamp_millis())
        .await
        .expect("coverage");
    assert_eq!(
        (coverage.copies, coverage.proven, coverage.failing),
        (1, 1, 0)
    );
}

/// The native backup watch while the key service is throttled, then refuses: the PBX's
/// credentials do not unseal, so it is not read — nothing recorded and nothing raised, even
/// for a PBX whose own schedule is off (no guess either way) — and the sweep itself succeeds
/// (the store is fine). Once the key service answers, the next sweep reads it and records the
/// reading that raises the alert.
#[tokio::test]
async fn the_native_watch_reads_nothing_while_the_key_service_is_down_and_reads_once_it_answers() {
    let (harness, proxy, pbx, instance_id) = on_kms_with(Some(Fault::NativeBackupDisabled)).await;
    let id = instance_id.to_string();
    let readings = async || {
        let types = harness.event_types("Instance", &id).await;
        types.iter().filter(|t| *t == "NativeBackupsRead").count()
    };
    let now = Utc::now();
    for (fault, label) in [(0, "throttled"), (1, "refusing")] {
        if fault == 0 {
            proxy.throttle_always();
        } else {
            proxy.deny_always();
        }
        let sweep = sweep_at(&harness.pipeline, now + chrono::Duration::minutes(fault))
            .await
            .expect("the store answers: a sweep, not an error");
        assert_eq!(sweep.read, Vec::<String>::new(), "{label}");
        assert_eq!(sweep.unreadable.len(), 1, "{label}: {sweep:?}");
        assert_eq!(readings().await, 0, "{label}");
    }
    assert!(proxy.faulted() > 0, "the key service was asked");
    common::deliver_to_alerts(&harness.pipeline, &[("Instance", id.clone())], 2).await;
    let alerts = harness.event_types("InstanceAlerts", &id).await;
    assert!(alerts.is_empty(), "nothing raised: {alerts:?}");

    proxy.pass();
    let sweep = sweep_at(&harness.pipeline, now + chrono::Duration::minutes(10))
        .await
        .expect("sweep");
    assert_eq!(sweep.read, vec![id.clone()]);
    assert_eq!(readings().await, 1);
    common::deliver_to_alerts(&harness.pipeline, &[("Instance", id.clone())], 2).await;
    assert_eq!(
        harness.event_types("InstanceAlerts", &id).await,
        ["AlertRaised"]
    );
    pbx.shutdown().await;
}
