//! `restorable cycle abort`, run as the binary: a cycle in flight fails `aborted` (not
//! retryable), its instance is freed at once and the action is in the tenant's audit trail; a
//! cycle that is not in flight (closed, unknown) is refused with exit code 2 and nothing is
//! recorded.

use crate::common;

use std::path::Path;
use std::process::Output;

use restorable_domain::audit::{AuditAction, AuditEvent};
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, CycleStarted};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{Instance, RestorePolicy, Schedule};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use secrecy::SecretString;

fn restorable(data: &Path, args: &[&str]) -> Output {
    common::restorable()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("USER", "ops-alice")
        .output()
        .expect("run restorable")
}

/// An enrolled instance with a started cycle in flight (no PBX is contacted).
async fn cycle_in_flight(data: &Path) -> (InstanceId, CycleId) {
    let pipeline = Pipeline::embedded(data, Settings::default())
        .await
        .expect("pipeline");
    let tenant = TenantId::new("acme").expect("tenant");
    let instance = enrol(
        &pipeline,
        EnrolRequest {
            tenant: tenant.clone(),
            name: "hq".into(),
            fqdn: "hq.acme.example".into(),
            api_url: "https://hq.acme.example".into(),
            credentials: PbxCredentials {
                client_id: SecretString::from("client"),
                client_secret: SecretString::from("secret"),
            },
            schedule: Schedule {
                interval_minutes: 60,
            },
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol");
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    pipeline
        .store
        .cycle(
            &cycle.to_string(),
            BackupCycleCommand::Start(CycleStarted {
                cycle_id: cycle,
                tenant_id: tenant,
                instance_id: instance,
                trigger: Trigger::Manual,
                started_at: chrono::Utc::now(),
            }),
        )
        .await
        .expect("start");
    pipeline.store.close().await;
    (instance, cycle)
}

async fn audited_aborts(pipeline: &Pipeline) -> Vec<(String, Option<CycleId>)> {
    pipeline
        .store
        .history("AuditTrail", "acme")
        .await
        .expect("audit")
        .iter()
        .filter_map(|e| match e.decode::<AuditEvent>() {
            Ok(AuditEvent::ActionRecorded(r)) if r.action == AuditAction::AbortCycle => {
                Some((r.actor, r.cycle_id))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_operator_aborts_a_cycle_in_flight_audited_and_a_closed_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (instance, cycle) = cycle_in_flight(&data).await;
    let id = cycle.to_string();

    let output = restorable(
        &data,
        &["cycle", "abort", "--cycle", &id, "--reason", "PBX replaced"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("aborted cycle {id}")), "{stdout}");

    let pipeline = Pipeline::embedded(&data, Settings::default())
        .await
        .expect("pipeline");
    let state: BackupCycle = pipeline.store.load(&id).await.expect("cycle");
    let failed = state.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable, state.rung),
        (
            Stage::Capture,
            FailureReason::Aborted,
            false,
            Some(Rung::Started)
        )
    );
    assert!(
        failed.detail.contains("ops-alice") && failed.detail.contains("PBX replaced"),
        "{}",
        failed.detail
    );
    let freed: Instance = pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("instance");
    assert_eq!(freed.open_cycle, None, "the instance is freed at once");
    assert_eq!(
        audited_aborts(&pipeline).await,
        [("ops-alice (cli)".to_owned(), Some(cycle))]
    );
    pipeline.store.close().await;

    // Closed now: refused, exit code 2, nothing more recorded.
    let again = restorable(&data, &["cycle", "abort", "--cycle", &id]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not in flight"), "{stderr}");
    let unknown = CycleId::random().to_string();
    let output = restorable(&data, &["cycle", "abort", "--cycle", &unknown]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not known"), "{stderr}");

    let pipeline = Pipeline::embedded(&data, Settings::default())
        .await
        .expect("pipeline");
    assert_eq!(audited_aborts(&pipeline).await.len(), 1);
    let events = pipeline
        .store
        .history("BackupCycle", &id)
        .await
        .expect("history");
    assert_eq!(
        events.iter().filter(|e| e.event_type == "Failed").count(),
        1
    );
    pipeline.store.close().await;
}
