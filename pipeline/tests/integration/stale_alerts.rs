//! Alerts through the real store: an instance with no Secured copy within twice its interval
//! raises "Backup Stale" once however often the projector sweeps, a failing cycle raises
//! "Backup Failed" once however often it is delivered or repeated; a later Secured copy
//! resolves the stale alert only, and only a later cycle that *ends* Verified resolves the
//! failure (no flapping while copies reach Secured and fail one rung later).

use crate::common;

use chrono::{Duration, Utc};
use restorable_domain::alert::AlertKind;
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted, Secured, Verified};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule,
    SealedCredentials,
};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::read_model::ReadSide;

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
    common::deliver_to_alerts(pipeline, &[("BackupCycle", cycle.to_string())], 2).await;
}

#[tokio::test]
async fn stale_and_failed_alerts_are_raised_once_and_resolved_only_by_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("pipeline");
    let long_ago = Utc::now() - Duration::hours(3);
    let (tenant, instance) = enrol_hq(&pipeline, long_ago).await;
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

    // A later copy reaches Secured, then Verified: the stale alert is resolved, the failure is
    // not (the cycle may still fail one rung later).
    let good = start_cycle(&pipeline, &tenant, instance, Utc::now()).await;
    let store = &pipeline.store;
    store
        .instance(
            &instance.to_string(),
            InstanceCommand::OpenCycle(CycleOpened {
                cycle_id: good,
                trigger: Trigger::Scheduled,
                opened_at: Utc::now(),
            }),
        )
        .await
        .expect("open");
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
    store
        .cycle(
            &good.to_string(),
            BackupCycleCommand::RecordVerified(Verified {
                verified_at: Utc::now(),
                ..examples::verified()
            }),
        )
        .await
        .expect("verified");
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
        vec![true],
        "a copy still climbing resolved the failure"
    );

    // The cycle ends Verified without failure: now the failure is resolved.
    store
        .instance(
            &instance.to_string(),
            InstanceCommand::CloseCycle(CycleClosed {
                cycle_id: good,
                reached: Rung::Verified,
                failed: false,
                retryable: false,
                restore_tested_copy: None,
                closed_at: Utc::now(),
            }),
        )
        .await
        .expect("close");
    common::deliver_to_alerts(&pipeline, &[("Instance", instance.to_string())], 2).await;
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    assert_eq!(
        open(&read, AlertKind::BackupFailed),
        vec![false],
        "failed resolved by the recovered cycle"
    );
    read.sweep_stale(&pipeline.store).await.expect("sweep");
    read.catch_up_and_store(&pipeline.store)
        .await
        .expect("fold");
    assert_eq!(
        read.read().alerts.rows().len(),
        2,
        "no new alert once Verified"
    );
}

/// The flapping this product must never do: a PBX whose every copy reaches Secured and then
/// fails verify (its archives are encrypted with another password) raises Backup Failed once
/// and never resolves it, however many cycles run — one raise, no "resolved", until it
/// recovers.
#[tokio::test]
async fn a_pbx_that_never_produces_a_good_copy_has_one_alert_that_never_flaps() {
    let harness = common::Harness::new().await;
    let pbx = harness
        .pbx(
            "pbx-wrong-pw",
            Some(restorable_pbx_sim::Fault::WrongPassword),
        )
        .await;
    let instance = harness.enrol(&pbx, 60).await;
    for _ in 0..3 {
        let cycle = restorable_pipeline::enrolment::open_cycle(
            &harness.pipeline,
            instance,
            Trigger::Manual,
        )
        .await
        .expect("open");
        harness.drive(&[cycle]).await;
        let cycle = harness.cycle(cycle).await;
        assert_eq!(
            cycle.failed.map(|f| f.stage),
            Some(Stage::Verify),
            "the cycle should reach Secured and fail at verify"
        );
    }
    let history: Vec<String> = harness
        .pipeline
        .store
        .history("InstanceAlerts", &instance.to_string())
        .await
        .expect("alert history")
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(history, vec!["AlertRaised".to_owned()]);
}

/// Enrols `acme/hq` (every 30 minutes) at `enrolled_at`.
async fn enrol_hq(
    pipeline: &Pipeline,
    enrolled_at: chrono::DateTime<Utc>,
) -> (TenantId, InstanceId) {
    let tenant = TenantId::new("acme").expect("slug");
    let instance = InstanceId::for_name(&tenant, "hq");
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
                enrolled_at,
            }),
        )
        .await
        .expect("enrol");
    (tenant, instance)
}

/// A cycle of `instance` that reaches Secured now (and goes no further).
async fn secured_cycle(pipeline: &Pipeline, tenant: &TenantId, instance: InstanceId) -> CycleId {
    let cycle = start_cycle(pipeline, tenant, instance, Utc::now()).await;
    for command in [
        BackupCycleCommand::RecordCaptured(examples::captured()),
        BackupCycleCommand::RecordSecured(Secured {
            secured_at: Utc::now(),
            ..examples::secured()
        }),
    ] {
        pipeline
            .store
            .cycle(&cycle.to_string(), command)
            .await
            .expect("climb");
    }
    cycle
}

/// One problem, one alert: while Backup Failed is open (the copies fail at verify), the sweep
/// raises no Verify Stale for the same instance.
#[tokio::test]
async fn no_verify_stale_beside_an_open_backup_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("pipeline");
    let (tenant, instance) = enrol_hq(&pipeline, Utc::now() - Duration::hours(2)).await;
    let store = &pipeline.store;
    for _ in 0..3 {
        secured_cycle(&pipeline, &tenant, instance).await;
    }
    let failing = secured_cycle(&pipeline, &tenant, instance).await;
    store
        .cycle(
            &failing.to_string(),
            BackupCycleCommand::RecordFailure(examples::failed(
                Stage::Verify,
                FailureReason::WrongKey,
            )),
        )
        .await
        .expect("fail");
    deliver_twice(&pipeline, failing).await;
    let read = ReadSide::load(store).await.expect("views");
    read.catch_up_and_store(store).await.expect("fold");
    read.sweep_stale(store).await.expect("sweep");
    read.catch_up_and_store(store).await.expect("fold");
    let kinds: Vec<_> = read
        .read()
        .alerts
        .rows()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, vec![AlertKind::BackupFailed]);
}

/// Copies that reach Secured but never Verified (the verify stage away, say, while nothing
/// fails): after the first cycles the sweep raises "Verify Stale" once (not "Backup Stale":
/// copies are fresh), and the next Verified copy resolves it.
#[tokio::test]
async fn secured_copies_never_verified_raise_verify_stale_once_until_one_is_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("pipeline");
    let (tenant, instance) = enrol_hq(&pipeline, Utc::now() - Duration::hours(2)).await;
    let store = &pipeline.store;
    let read = ReadSide::load(store).await.expect("views");
    let alerts = |read: &ReadSide| {
        read.read()
            .alerts
            .rows()
            .into_iter()
            .map(|a| (a.kind, a.resolved_at.is_none()))
            .collect::<Vec<_>>()
    };
    let mut last = None;
    for n in 0..3 {
        let cycle = secured_cycle(&pipeline, &tenant, instance).await;
        read.catch_up_and_store(store).await.expect("fold");
        read.sweep_stale(store).await.expect("sweep");
        read.catch_up_and_store(store).await.expect("fold");
        if n < 2 {
            assert_eq!(alerts(&read), vec![], "too early after {} cycles", n + 1);
        }
        last = Some(cycle);
    }
    read.sweep_stale(store).await.expect("sweep again");
    read.catch_up_and_store(store).await.expect("fold");
    assert_eq!(alerts(&read), vec![(AlertKind::VerifyStale, true)]);

    let cycle = last.expect("a cycle");
    store
        .cycle(
            &cycle.to_string(),
            BackupCycleCommand::RecordVerified(Verified {
                verified_at: Utc::now(),
                ..examples::verified()
            }),
        )
        .await
        .expect("verified");
    deliver_twice(&pipeline, cycle).await;
    read.catch_up_and_store(store).await.expect("fold");
    assert_eq!(alerts(&read), vec![(AlertKind::VerifyStale, false)]);
}

/// A cycle of `instance` restore-tested now in `duration_ms`.
async fn restore_tested_cycle(
    pipeline: &Pipeline,
    tenant: &TenantId,
    instance: InstanceId,
    duration_ms: u64,
) -> CycleId {
    let cycle = secured_cycle(pipeline, tenant, instance).await;
    for command in [
        BackupCycleCommand::RecordVerified(examples::verified()),
        BackupCycleCommand::RecordRestoreTested(restorable_domain::cycle::RestoreTested {
            duration_ms,
            restore_tested_at: Utc::now(),
            ..examples::restore_tested()
        }),
    ] {
        pipeline
            .store
            .cycle(&cycle.to_string(), command)
            .await
            .expect("climb");
    }
    cycle
}

/// The RTO: a restore test over the instance's target (15 minutes by default) raises one
/// Restore Slow however often it is delivered or repeated; a Verified or Restore-Tested cycle
/// over the target resolves nothing; one within the target resolves it.
#[tokio::test]
async fn a_restore_over_its_target_raises_restore_slow_until_one_within_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("pipeline");
    let (tenant, instance) = enrol_hq(&pipeline, Utc::now() - Duration::hours(2)).await;
    let history = |pipeline: &Pipeline| {
        let pipeline = pipeline.clone();
        async move {
            pipeline
                .store
                .history("InstanceAlerts", &instance.to_string())
                .await
                .expect("alert history")
                .into_iter()
                .map(|e| {
                    let payload: serde_json::Value =
                        serde_json::from_str(&e.payload).expect("json");
                    let inner = &payload[&e.event_type];
                    (
                        e.event_type.clone(),
                        inner["kind"].as_str().unwrap_or_default().to_owned(),
                        inner["detail"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let within = 15 * 60_000;
    let fast = restore_tested_cycle(&pipeline, &tenant, instance, within).await;
    deliver_twice(&pipeline, fast).await;
    assert!(
        history(&pipeline).await.is_empty(),
        "exactly on target: no alert"
    );

    let slow = restore_tested_cycle(&pipeline, &tenant, instance, within + 63_000).await;
    deliver_twice(&pipeline, slow).await;
    let slower = restore_tested_cycle(&pipeline, &tenant, instance, 40 * 60_000).await;
    deliver_twice(&pipeline, slower).await;
    let verified = secured_cycle(&pipeline, &tenant, instance).await;
    pipeline
        .store
        .cycle(
            &verified.to_string(),
            BackupCycleCommand::RecordVerified(examples::verified()),
        )
        .await
        .expect("verify");
    deliver_twice(&pipeline, verified).await;
    assert_eq!(
        history(&pipeline).await,
        vec![(
            "AlertRaised".to_owned(),
            "restore_slow".to_owned(),
            "the restore test took 16 min 3 s, over the 15-minute target".to_owned()
        )],
        "one alert for the slow restores; a copy that climbs resolves nothing"
    );

    let recovered = restore_tested_cycle(&pipeline, &tenant, instance, 60_000).await;
    deliver_twice(&pipeline, recovered).await;
    let kinds: Vec<(String, String)> = history(&pipeline)
        .await
        .into_iter()
        .map(|(event, kind, _)| (event, kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("AlertRaised".to_owned(), "restore_slow".to_owned()),
            ("AlertResolved".to_owned(), "restore_slow".to_owned()),
        ]
    );
}
