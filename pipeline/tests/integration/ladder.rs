//! The ladder end to end on the embedded default: a simulated PBX over real HTTP, the SQLite
//! store, the local vault and sealer, and the stages driven as in production. Every fault lands
//! on its rung with its reason; nothing climbs that did not earn it.

use crate::common;

use std::time::Duration;

use common::{one_cycle, Backend, Harness};

use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{Instance, InstanceCommand};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::Fault;
use restorable_pipeline::archive::{verify_archive, ArchiveFault, VerifyLimits, CORE_TABLES};
use restorable_pipeline::enrolment::{open_cycle, rotate_tenant_key};
use restorable_pipeline::runtime::driver::head_position;
use restorable_pipeline::runtime::{run_stages, scheduler, LADDER_NAMES};
use restorable_pipeline::stages;
use restorable_pipeline::transport::nats::worker::WorkerSettings;
use rstest::rstest;
use tokio_util::sync::CancellationToken;

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_pbx_climbs_to_verified_with_an_honest_record(#[case] backend: Backend) {
    let (harness, pbx, cycle_id) = one_cycle(backend, None).await;
    assert_eq!(
        harness.cycle_events(cycle_id).await,
        [
            "CycleStarted",
            "Captured",
            "Secured",
            "Verified",
            "RestoreTested"
        ]
    );
    let cycle = harness.cycle(cycle_id).await;
    let captured = cycle.captured.expect("captured");
    let truth = pbx.true_counts();
    assert_eq!(
        (
            captured.manifest.extensions,
            captured.manifest.queues,
            captured.manifest.ivrs,
            captured.manifest.trunks
        ),
        (truth.extensions, truth.queues, truth.ivrs, truth.trunks)
    );
    assert_eq!(captured.key_version, 1);

    // The recorded SHA-256 is that of the stored bytes, and the stored bytes open with the key.
    let (sha, size) = stages::secure::read_back(
        &harness.pipeline,
        &captured.object_key,
        &captured.version_id,
    )
    .await
    .expect("read back");
    assert_eq!((sha, size), (captured.sha256.clone(), captured.size));
    let password = harness
        .pipeline
        .tenant_password(&TenantId::new("acme").expect("t"), 1)
        .await
        .expect("key");
    let file = harness
        .pipeline
        .vault
        .open_seekable(&captured.object_key, &captured.version_id)
        .await
        .expect("open");
    let report = verify_archive(file, &password, CORE_TABLES, &VerifyLimits::default())
        .expect("archive verifies");
    assert!(report.tables.iter().any(|t| t == "extension"));

    // The instance is free for its next cycle.
    let instance: Instance = harness
        .pipeline
        .store
        .load(&cycle.started.expect("s").instance_id.to_string())
        .await
        .expect("i");
    assert_eq!(instance.open_cycle, None);
}

async fn assert_lands(
    backend: Backend,
    fault: Fault,
    rung: Rung,
    stage: Stage,
    reason: FailureReason,
) {
    let (harness, _pbx, cycle_id) = one_cycle(backend, Some(fault)).await;
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle
        .failed
        .unwrap_or_else(|| panic!("{fault}: expected a failure, got {:?}", cycle.rung));
    assert_eq!(
        (cycle.rung, failed.stage, failed.reason),
        (Some(rung), stage, reason),
        "{fault}: {}",
        failed.detail
    );
    let events = harness.cycle_events(cycle_id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "Failed").count(),
        1,
        "{fault}: {events:?}"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_capture_with_pbx_auth(#[case] backend: Backend) {
    assert_lands(
        backend,
        Fault::BadCredentials,
        Rung::Started,
        Stage::Capture,
        FailureReason::PbxAuth,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_never_appears_fails_capture_with_capture_timeout(#[case] backend: Backend) {
    assert_lands(
        backend,
        Fault::NeverFinishes,
        Rung::Started,
        Stage::Capture,
        FailureReason::CaptureTimeout,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_fails_capture_with_pbx_error_and_is_retryable(#[case] backend: Backend) {
    assert_lands(
        backend,
        Fault::ServerError,
        Rung::Started,
        Stage::Capture,
        FailureReason::PbxError,
    )
    .await;
    let (harness, _pbx, cycle) = one_cycle(backend, Some(Fault::ServerError)).await;
    assert!(harness.cycle(cycle).await.failed.expect("failed").retryable);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_download_fails_capture_and_stores_nothing(#[case] backend: Backend) {
    let (harness, _pbx, cycle_id) = one_cycle(backend, Some(Fault::TruncatedDownload)).await;
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason),
        (Stage::Capture, FailureReason::DownloadTruncated),
        "{}",
        failed.detail
    );
    let started = cycle.started.expect("started");
    let key = stages::capture::object_key(&started);
    assert_eq!(
        harness.pipeline.vault.head(&key).await.expect("head"),
        None,
        "a partial copy was stored"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_passes_secured_and_fails_verify_with_entry_corrupt(
    #[case] backend: Backend,
) {
    assert_lands(
        backend,
        Fault::FlippedByte,
        Rung::Secured,
        Stage::Verify,
        FailureReason::EntryCorrupt,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_password_fails_verify_with_wrong_key(#[case] backend: Backend) {
    assert_lands(
        backend,
        Fault::WrongPassword,
        Rung::Secured,
        Stage::Verify,
        FailureReason::WrongKey,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_core_table_fails_verify_with_structure_incomplete(#[case] backend: Backend) {
    assert_lands(
        backend,
        Fault::MissingTable,
        Rung::Secured,
        Stage::Verify,
        FailureReason::StructureIncomplete,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_foreign_key_passes_verified_and_fails_the_restore_test_with_integrity_violation(
    #[case] backend: Backend,
) {
    // Verified checks the archive, not the data's integrity: the restore test catches this one.
    assert_lands(
        backend,
        Fault::DanglingForeignKey,
        Rung::Verified,
        Stage::RestoreTest,
        FailureReason::IntegrityViolation,
    )
    .await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_differ_from_the_manifest_fail_the_restore_test_naming_the_table(
    #[case] backend: Backend,
) {
    let (harness, _pbx, cycle_id) = one_cycle(backend, Some(Fault::ManifestMismatch)).await;
    let failed = harness.cycle(cycle_id).await.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason),
        (Stage::RestoreTest, FailureReason::ManifestMismatch)
    );
    assert!(
        failed.detail.contains("queues: restored"),
        "{}",
        failed.detail
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_still_reaches_the_top_rung(#[case] backend: Backend) {
    let (harness, _pbx, cycle_id) = one_cycle(backend, Some(Fault::SlowDownload)).await;
    assert_eq!(
        harness.cycle(cycle_id).await.rung,
        Some(Rung::RestoreTested)
    );
}

async fn captured_then_tampered(
    backend: Backend,
    tamper: impl FnOnce(&std::path::Path, &str),
) -> BackupCycle {
    let harness = Harness::on(backend).await;
    let pbx = harness.pbx("pbx-tamper", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;
    let captured = harness.cycle(cycle_id).await.captured.expect("captured");
    tamper(&harness.data.join("vault"), &captured.object_key);
    harness.drive(&[cycle_id]).await;
    harness.cycle(cycle_id).await
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_altered_in_the_vault_fails_secure_with_checksum_mismatch(#[case] backend: Backend) {
    let cycle = captured_then_tampered(backend, |vault, key| {
        common::flip_a_byte(&vault.join("objects").join(key));
    })
    .await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (cycle.rung, failed.stage, failed.reason),
        (
            Some(Rung::Captured),
            Stage::Secure,
            FailureReason::ChecksumMismatch
        )
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[case::postgres_nats(Backend::PostgresNats)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_without_object_lock_fails_secure_with_not_locked(#[case] backend: Backend) {
    let cycle = captured_then_tampered(backend, |vault, key| {
        let path = vault.join("meta").join(format!("{key}.json"));
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("meta")).expect("json");
        meta["lock"] = serde_json::Value::Null;
        std::fs::write(&path, meta.to_string()).expect("tamper");
    })
    .await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason),
        (Stage::Secure, FailureReason::NotLocked)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivering_every_event_produces_no_second_event(#[case] backend: Backend) {
    let (harness, _pbx, cycle_id) = one_cycle(backend, None).await;
    let before = harness
        .pipeline
        .store
        .read_after(0, 10_000)
        .await
        .expect("read")
        .len();
    // As if every consumer crashed before saving its checkpoint: the whole log is delivered again.
    harness
        .pipeline
        .store
        .rewind_checkpoints(0)
        .await
        .expect("rewind");
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn({
        let (pipeline, shutdown) = (harness.pipeline.clone(), shutdown.clone());
        // The consumers of the ladder (the sweeps are time-driven: a native watch reading
        // would be new work, not a redelivery).
        async move {
            run_stages(
                &pipeline,
                LADDER_NAMES,
                &WorkerSettings::default(),
                shutdown,
            )
            .await;
        }
    });
    // Wait until every consumer has caught up with the log again.
    let head = head_position(&harness.pipeline).await.expect("head");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for consumer in [
        "start",
        "capture",
        "secure",
        "verify",
        "restore_test",
        "close",
    ] {
        while harness
            .pipeline
            .store
            .checkpoint(consumer)
            .await
            .expect("checkpoint")
            < head
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{consumer} did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    shutdown.cancel();
    workers.await.expect("workers");
    let after = harness
        .pipeline
        .store
        .read_after(0, 10_000)
        .await
        .expect("read")
        .len();
    assert_eq!(after, before, "redelivery added events");
    assert_eq!(
        harness.cycle(cycle_id).await.rung,
        Some(Rung::RestoreTested)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_opens_due_instances_once_and_skips_stopped_ones(#[case] backend: Backend) {
    let harness = Harness::on(backend).await;
    let first = harness.pbx("pbx-a", None).await;
    let second = harness.pbx("pbx-b", None).await;
    let a = harness.enrol(&first, 60).await;
    let b = harness.enrol(&second, 60).await;
    harness
        .pipeline
        .store
        .instance(
            &b.to_string(),
            InstanceCommand::Stop {
                at: chrono::Utc::now(),
            },
        )
        .await
        .expect("stop");

    assert_eq!(
        scheduler::tick(&harness.pipeline).await.expect("tick"),
        vec![a]
    );
    assert!(
        scheduler::tick(&harness.pipeline)
            .await
            .expect("tick")
            .is_empty(),
        "one cycle in flight at most"
    );
    let refused = open_cycle(&harness.pipeline, b, Trigger::Manual)
        .await
        .expect_err("stopped");
    assert!(refused.to_string().contains("stopped"), "{refused}");

    let open: Instance = harness
        .pipeline
        .store
        .load(&a.to_string())
        .await
        .expect("load");
    harness.drive(&[open.open_cycle.expect("open cycle")]).await;
    assert!(
        scheduler::tick(&harness.pipeline)
            .await
            .expect("tick")
            .is_empty(),
        "not due again within the interval"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotation_new_copies_use_the_new_key_and_old_ones_still_open_with_theirs(
    #[case] backend: Backend,
) {
    let harness = Harness::on(backend).await;
    let pbx = harness.pbx("pbx-rot", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let old = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[old]).await;
    let tenant = TenantId::new("acme").expect("t");
    assert_eq!(
        rotate_tenant_key(&harness.pipeline, &tenant)
            .await
            .expect("rotate"),
        2
    );
    let new = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[new]).await;

    let new_captured = harness.cycle(new).await.captured.expect("captured");
    assert_eq!(
        (harness.cycle(new).await.rung, new_captured.key_version),
        (Some(Rung::Verified), 2)
    );
    let old_captured = harness.cycle(old).await.captured.expect("captured");
    assert_eq!(old_captured.key_version, 1);
    let open_old = || async {
        harness
            .pipeline
            .vault
            .open_seekable(&old_captured.object_key, &old_captured.version_id)
            .await
            .expect("open")
    };
    let v1 = harness
        .pipeline
        .tenant_password(&tenant, 1)
        .await
        .expect("v1");
    let v2 = harness
        .pipeline
        .tenant_password(&tenant, 2)
        .await
        .expect("v2");
    assert!(verify_archive(open_old().await, &v1, CORE_TABLES, &VerifyLimits::default()).is_ok());
    assert!(matches!(
        verify_archive(open_old().await, &v2, CORE_TABLES, &VerifyLimits::default()),
        Err(ArchiveFault::WrongKey)
    ));
}
