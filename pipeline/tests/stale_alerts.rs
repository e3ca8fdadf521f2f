//! Alerts through the real store: an instance with no Secured copy within twice its interval
//! raises "Backup Stale" once however often the projector sweeps, a failing cycle raises
//! "Backup Failed" once however often it is delivered or repeated, and a later Secured copy
//! resolves both.

use chrono::{Duration, Utc};
use restorable_domain::alert::AlertKind;
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted, Secured};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule, SealedCredentials,
};
use restorable_domain::ladder::{FailureReason, Stage, Trigger};
use restorable_pipeline::context::{Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;
use restorable_pipeline::stages::alerts::AlertsStage;
use restorable_pipeline::transport::Consumer;

async fn start_cycle(
    pipeline: &Pipeline,
    tenant: &TenantId,
    instance: InstanceId,
    at: chrono::DateTime<Utc>,
) -> CycleId {
    let cycle = CycleId::random();
    pipeline
        .store
        .cycle(
            &cycle.to_string(),
            BackupCycleCommand::Start(CycleStarted {
                cycle_id: cycle,
                tenant_id: tenant.clone(),
                instance_id: instance,
                trigger: Trigger::Scheduled,
                started_at: at,
            }),
        )
        .await
        .expect("start");
    cycle
}

/// Delivers every logged event of `cycle` to the alerts stage, twice (at-least-once).
async fn deliver_twice(pipeline: &Pipeline, cycle: CycleId) {
    let stage = AlertsStage::new(pipeline.clone());
    let events = pipeline
        .store
        .history("BackupCycle", &cycle.to_string())
        .await
        .expect("history");
    for _ in 0..2 {
        for event in events.iter().filter(|e| stage.wants(e)) {
            stage.react(event.clone()).await.expect("react");
        }
    }
}

#[tokio::test]
async fn stale_and_failed_alerts_are_raised_once_and_resolved_by_a_secured_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("pipeline");
    let tenant = TenantId::new("acme").expect("slug");
    let instance = InstanceId::for_name(&tenant, "hq");
    let long_ago = Utc::now() - Duration::hours(3);
    pipeline
        .store
        .instance(
            &instance.to_string(),
            InstanceCommand::Enrol(InstanceEnrolled {
                instance_id: instance,
                tenant_id: tenant.clone(),
                name: "hq".into(),
                fqdn: "hq.example".into(),
                api_url: "https://hq.example".into(),
                credentials: SealedCredentials("sealed".into()),
                schedule: Schedule {
                    interval_minutes: 30,
                },
                restore_policy: RestorePolicy::default(),
                allow_insecure_http: false,
                enrolled_at: long_ago,
            }),
        )
        .await
        .expect("enrol");
    // A cycle three hours ago that never got past capture: stale (interval 30 min).
    let first = start_cycle(&pipeline, &tenant, instance, long_ago).await;
    let read = ReadSide::load(&pipeline.store).await.expect("views");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    for _ in 0..3 {
        read.sweep_stale(&pipeline.store).await.expect("sweep");
        read.catch_up_and_store(&pipeline.store)
            .await
            .expect("fold");
    }
    let open = |read: &ReadSide, kind| {
        read.read()
            .alerts
            .rows()
            .into_iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.resolved_at.is_none())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        open(&read, AlertKind::BackupStale),
        vec![true],
        "one stale alert, open"
    );

    // The cycle fails; delivered twice, then a retry cycle fails the same way: one alert.
    let failed = examples::failed(Stage::Capture, FailureReason::PbxUnreachable);
    pipeline
        .store
        .cycle(
            &first.to_string(),
            BackupCycleCommand::RecordFailure(failed.clone()),
        )
        .await
        .expect("fail");
    deliver_twice(&pipeline, first).await;
    let retry = start_cycle(
        &pipeline,
        &tenant,
        instance,
        Utc::now() - Duration::minutes(5),
    )
    .await;
    pipeline
        .store
        .cycle(
            &retry.to_string(),
            BackupCycleCommand::RecordFailure(failed),
        )
        .await
        .expect("fail again");
    deliver_twice(&pipeline, retry).await;
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    assert_eq!(
        open(&read, AlertKind::BackupFailed),
        vec![true],
        "no storm on retries"
    );

    // A later copy reaches Secured: both resolved.
    let good = start_cycle(&pipeline, &tenant, instance, Utc::now()).await;
    let store = &pipeline.store;
    store
        .cycle(
            &good.to_string(),
            BackupCycleCommand::RecordCaptured(examples::captured()),
        )
        .await
        .expect("captured");
    store
        .cycle(
            &good.to_string(),
            BackupCycleCommand::RecordSecured(Secured {
                secured_at: Utc::now(),
                ..examples::secured()
            }),
        )
        .await
        .expect("secured");
    deliver_twice(&pipeline, good).await;
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    assert_eq!(
        open(&read, AlertKind::BackupStale),
        vec![false],
        "stale resolved"
    );
    assert_eq!(
        open(&read, AlertKind::BackupFailed),
        vec![false],
        "failed resolved"
    );
    read.sweep_stale(&pipeline.store).await.expect("sweep");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    assert_eq!(
        read.read().alerts.rows().len(),
        2,
        "no new alert once Secured"
    );
}
