//! The ladder end to end on the embedded default: a simulated PBX over real HTTP, the SQLite
//! store, the local vault and sealer, and the stages driven as in production. Every fault lands
//! on its rung with its reason; nothing climbs that did not earn it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{Instance, InstanceCommand, Schedule};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::archive::{verify_archive, ArchiveFault, CORE_TABLES};
use restorable_pipeline::context::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::driver::{head_position, run_until_closed};
use restorable_pipeline::enrolment::{enrol, open_cycle, rotate_tenant_key, EnrolRequest};
use restorable_pipeline::stages::{capture::CaptureStage, start::StartStage};
use restorable_pipeline::transport::{run_consumer, Consumer};
use restorable_pipeline::{scheduler, stages};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

struct Harness {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    sims: tempfile::TempDir,
    pipeline: Pipeline,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let settings = Settings {
            capture_deadline: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
            ..Settings::default()
        };
        let pipeline = Pipeline::embedded(&data, settings).await.expect("pipeline");
        Self {
            _dir: dir,
            data,
            sims: tempfile::tempdir().expect("tempdir"),
            pipeline,
        }
    }

    async fn pbx(&self, name: &str, fault: Option<Fault>) -> RunningPbx {
        let mut config = SimPbxConfig::new(name, 7);
        config.fault = fault;
        config.backup_delay = Duration::from_millis(20);
        RunningPbx::start(config, self.sims.path())
            .await
            .expect("simulator")
    }

    async fn enrol(&self, pbx: &RunningPbx, interval_minutes: u32) -> InstanceId {
        let config = pbx.config();
        enrol(
            &self.pipeline,
            EnrolRequest {
                tenant: TenantId::new("acme").expect("tenant"),
                name: config.name.clone(),
                fqdn: format!("{}.example", config.name),
                api_url: pbx.base_url(),
                credentials: PbxCredentials {
                    client_id: SecretString::from(config.client_id.clone()),
                    client_secret: SecretString::from(config.client_secret.clone()),
                },
                schedule: Schedule { interval_minutes },
                restore_policy: restorable_domain::instance::RestorePolicy::default(),
            },
        )
        .await
        .expect("enrol")
    }

    async fn drive(&self, cycles: &[CycleId]) {
        let cycles: HashSet<_> = cycles.iter().copied().collect();
        run_until_closed(&self.pipeline, cycles, 0, Duration::from_secs(60), |_| {})
            .await
            .expect("cycles close");
    }

    async fn cycle(&self, id: CycleId) -> BackupCycle {
        self.pipeline
            .store
            .load(&id.to_string())
            .await
            .expect("load cycle")
    }

    async fn cycle_events(&self, id: CycleId) -> Vec<String> {
        let history = self
            .pipeline
            .store
            .history("BackupCycle", &id.to_string())
            .await
            .expect("history");
        history.into_iter().map(|e| e.event_type).collect()
    }

    /// Runs only start and capture until the cycle is captured (or failed).
    async fn capture_only(&self, id: CycleId) {
        let shutdown = CancellationToken::new();
        let consumers: Vec<Arc<dyn Consumer>> = vec![
            Arc::new(StartStage::new(self.pipeline.clone())),
            Arc::new(CaptureStage::new(self.pipeline.clone())),
        ];
        let tasks: Vec<_> = consumers
            .into_iter()
            .map(|c| {
                tokio::spawn(run_consumer(
                    self.pipeline.store.clone(),
                    c,
                    shutdown.clone(),
                ))
            })
            .collect();
        let notify = self.pipeline.store.committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = notify.notified();
            let cycle = self.cycle(id).await;
            if cycle.captured.is_some() || cycle.is_failed() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "capture did not finish"
            );
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        shutdown.cancel();
        for task in tasks {
            task.await.expect("consumer");
        }
    }
}

async fn one_cycle(fault: Option<Fault>) -> (Harness, RunningPbx, CycleId) {
    let harness = Harness::new().await;
    let pbx = harness.pbx("pbx-one", fault).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle]).await;
    (harness, pbx, cycle)
}

#[tokio::test]
async fn a_healthy_pbx_climbs_to_verified_with_an_honest_record() {
    let (harness, pbx, cycle_id) = one_cycle(None).await;
    assert_eq!(
        harness.cycle_events(cycle_id).await,
        ["CycleStarted", "Captured", "Secured", "Verified"]
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
    let report = verify_archive(file, &password, CORE_TABLES).expect("archive verifies");
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

async fn assert_lands(fault: Fault, rung: Rung, stage: Stage, reason: FailureReason) {
    let (harness, _pbx, cycle_id) = one_cycle(Some(fault)).await;
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

#[tokio::test]
async fn bad_credentials_fail_capture_with_pbx_auth() {
    assert_lands(
        Fault::BadCredentials,
        Rung::Started,
        Stage::Capture,
        FailureReason::PbxAuth,
    )
    .await;
}

#[tokio::test]
async fn a_backup_that_never_appears_fails_capture_with_capture_timeout() {
    assert_lands(
        Fault::NeverFinishes,
        Rung::Started,
        Stage::Capture,
        FailureReason::CaptureTimeout,
    )
    .await;
}

#[tokio::test]
async fn a_server_error_fails_capture_with_pbx_error_and_is_retryable() {
    assert_lands(
        Fault::ServerError,
        Rung::Started,
        Stage::Capture,
        FailureReason::PbxError,
    )
    .await;
    let (harness, _pbx, cycle) = one_cycle(Some(Fault::ServerError)).await;
    assert!(harness.cycle(cycle).await.failed.expect("failed").retryable);
}

#[tokio::test]
async fn a_truncated_download_fails_capture_and_stores_nothing() {
    let (harness, _pbx, cycle_id) = one_cycle(Some(Fault::TruncatedDownload)).await;
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

#[tokio::test]
async fn a_flipped_byte_passes_secured_and_fails_verify_with_entry_corrupt() {
    assert_lands(
        Fault::FlippedByte,
        Rung::Secured,
        Stage::Verify,
        FailureReason::EntryCorrupt,
    )
    .await;
}

#[tokio::test]
async fn another_password_fails_verify_with_wrong_key() {
    assert_lands(
        Fault::WrongPassword,
        Rung::Secured,
        Stage::Verify,
        FailureReason::WrongKey,
    )
    .await;
}

#[tokio::test]
async fn a_missing_core_table_fails_verify_with_structure_incomplete() {
    assert_lands(
        Fault::MissingTable,
        Rung::Secured,
        Stage::Verify,
        FailureReason::StructureIncomplete,
    )
    .await;
}

#[tokio::test]
async fn a_dangling_foreign_key_still_reaches_verified() {
    // Verified checks the archive, not the data's integrity: the restore test catches this one.
    let (harness, _pbx, cycle_id) = one_cycle(Some(Fault::DanglingForeignKey)).await;
    let cycle = harness.cycle(cycle_id).await;
    assert_eq!((cycle.rung, cycle.failed), (Some(Rung::Verified), None));
}

#[tokio::test]
async fn a_slow_download_still_reaches_verified() {
    let (harness, _pbx, cycle_id) = one_cycle(Some(Fault::SlowDownload)).await;
    assert_eq!(harness.cycle(cycle_id).await.rung, Some(Rung::Verified));
}

async fn captured_then_tampered(tamper: impl FnOnce(&std::path::Path, &str)) -> BackupCycle {
    let harness = Harness::new().await;
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

#[tokio::test]
async fn a_copy_altered_in_the_vault_fails_secure_with_checksum_mismatch() {
    let cycle = captured_then_tampered(|vault, key| {
        let path = vault.join("objects").join(key);
        let mut bytes = std::fs::read(&path).expect("read object");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).expect("tamper (as root, past the read-only mode)");
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

#[tokio::test]
async fn a_copy_without_object_lock_fails_secure_with_not_locked() {
    let cycle = captured_then_tampered(|vault, key| {
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

#[tokio::test]
async fn redelivering_every_event_produces_no_second_event() {
    let (harness, _pbx, cycle_id) = one_cycle(None).await;
    let before = harness
        .pipeline
        .store
        .read_after(0, 10_000)
        .await
        .expect("read")
        .len();
    // As if every consumer crashed before saving its checkpoint: the whole log is delivered again.
    sqlx::query("UPDATE consumer_checkpoints SET position = 0")
        .execute(harness.pipeline.store.pool())
        .await
        .expect("reset");
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn({
        let (pipeline, shutdown) = (harness.pipeline.clone(), shutdown.clone());
        async move { stages::run_all(&pipeline, shutdown).await }
    });
    // Wait until every consumer has caught up with the log again.
    let head = head_position(&harness.pipeline).await.expect("head");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for consumer in ["start", "capture", "secure", "verify", "close"] {
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
    assert_eq!(harness.cycle(cycle_id).await.rung, Some(Rung::Verified));
}

#[tokio::test]
async fn the_scheduler_opens_due_instances_once_and_skips_stopped_ones() {
    let harness = Harness::new().await;
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

#[tokio::test]
async fn after_rotation_new_copies_use_the_new_key_and_old_ones_still_open_with_theirs() {
    let harness = Harness::new().await;
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
    assert!(verify_archive(open_old().await, &v1, CORE_TABLES).is_ok());
    assert!(matches!(
        verify_archive(open_old().await, &v2, CORE_TABLES),
        Err(ArchiveFault::WrongKey)
    ));
    let _ = BackupCycleEvent::CycleStarted; // the event type the history is made of
}
