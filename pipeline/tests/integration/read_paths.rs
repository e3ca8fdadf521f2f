//! The read paths over a history of several thousand events, on SQLite and PostgreSQL:
//! `projections rebuild` streams the log in batches, reports its progress and stores the same
//! views the live projector stored; `restorable fleet`'s view (the stored rows plus the log
//! after their checkpoint) equals the rebuilt fleet.

use chrono::Duration;
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule,
    SealedCredentials,
};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pipeline::read_model::{fleet_now, rebuild_caching, Bounds, ReadSide, BATCH};
use restorable_pipeline::store::{Store, ViewRow};
use restorable_projections::model::VIEWS;
use restorable_testkit::{test_server_url, ScratchDatabase};
use rstest::rstest;

fn tenant(n: usize) -> TenantId {
    TenantId::new(&format!("tenant-{}", n % 3)).expect("tenant")
}

fn instance_id(n: usize) -> InstanceId {
    InstanceId::for_name(&tenant(n), &format!("pbx-{n}"))
}

async fn enrol(store: &Store, n: usize) {
    let command = InstanceCommand::Enrol(InstanceEnrolled {
        instance_id: instance_id(n),
        tenant_id: tenant(n),
        name: format!("pbx-{n}"),
        fqdn: format!("pbx-{n}.example"),
        api_url: format!("https://pbx-{n}.example"),
        credentials: SealedCredentials("sealed".into()),
        schedule: Schedule::DAILY,
        restore_policy: RestorePolicy::default(),
        allow_insecure_http: false,
        enrolled_at: examples::at(),
    });
    store
        .instance(&instance_id(n).to_string(), command)
        .await
        .expect("enrol");
}

/// One cycle of instance `n` through the real commands: opened, started, captured, secured,
/// then verified or failed, closed.
async fn cycle(store: &Store, n: usize, k: usize) {
    let instance = instance_id(n).to_string();
    let cycle_id = CycleId::random();
    let at = examples::at() + Duration::hours(k as i64);
    let opened = InstanceCommand::OpenCycle(CycleOpened {
        cycle_id,
        trigger: Trigger::Scheduled,
        opened_at: at,
    });
    store.instance(&instance, opened).await.expect("open");
    let id = cycle_id.to_string();
    let started = CycleStarted {
        cycle_id,
        instance_id: instance_id(n),
        tenant_id: tenant(n),
        trigger: Trigger::Scheduled,
        started_at: at,
    };
    let failed = k % 5 == 4;
    let mut commands = vec![
        BackupCycleCommand::Start(started),
        BackupCycleCommand::RecordCaptured(examples::captured()),
        BackupCycleCommand::RecordSecured(examples::secured()),
    ];
    commands.push(if failed {
        BackupCycleCommand::RecordFailure(examples::failed(
            Stage::Verify,
            FailureReason::EntryCorrupt,
        ))
    } else {
        BackupCycleCommand::RecordVerified(examples::verified())
    });
    for command in commands {
        store.cycle(&id, command).await.expect("cycle command");
    }
    let closed = InstanceCommand::CloseCycle(CycleClosed {
        cycle_id,
        reached: if failed {
            Rung::Secured
        } else {
            Rung::Verified
        },
        failed,
        retryable: false,
        restore_tested_copy: None,
        closed_at: at + Duration::minutes(5),
    });
    store.instance(&instance, closed).await.expect("close");
}

async fn stored_views(store: &Store) -> Vec<ViewRow> {
    let mut rows = Vec::new();
    for view in VIEWS {
        rows.extend(store.view_rows(view, None).await.expect("rows"));
    }
    rows
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_rebuild_stores_the_views_the_projector_stored(#[case] postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = if postgres {
        Some(
            ScratchDatabase::create(&test_server_url())
                .await
                .expect("PostgreSQL for tests"),
        )
    } else {
        None
    };
    let store = match &database {
        Some(db) => Store::connect(db.url()).await.expect("connect"),
        None => Store::open(dir.path()).await.expect("open"),
    };
    let instances = 12;
    for n in 0..instances {
        enrol(&store, n).await;
    }
    // About 2,900 events: three batches of the rebuild folding the live projector's 1,000 at a
    // time (`projections rebuild` folds 10,000).
    for k in 0..40 {
        for n in 0..instances {
            cycle(&store, n, k).await;
        }
        if k == 20 {
            // The live projector stores the first half as it goes.
            let live = ReadSide::load(&store).await.expect("load");
            live.catch_up_and_store(&store).await.expect("store");
        }
    }
    let end = store.log_end().await.expect("end");
    assert!(end > 2_800, "{end} events");

    // `restorable fleet`: the stored half plus the log after it, equal to a full fold.
    let quick = fleet_now(&store).await.expect("fleet");
    let live = ReadSide::load(&store).await.expect("load");
    live.catch_up_and_store(&store).await.expect("store");
    let before = stored_views(&store).await;
    assert!(!before.is_empty());

    let mut seen = Vec::new();
    let rebuilt = rebuild_caching(&store, Bounds::default(), BATCH, &mut |at| seen.push(at))
        .await
        .expect("rebuild")
        .read()
        .clone();
    assert_eq!(stored_views(&store).await, before, "the same views");
    assert!(seen.len() >= 3, "progress after every batch: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "forward: {seen:?}");
    assert_eq!(seen.last(), Some(&end));
    assert_eq!(
        quick.rows(),
        rebuilt.fleet.rows(),
        "fleet without a rebuild"
    );
    assert_eq!(rebuilt.fleet.rows().len(), instances);
    assert!(rebuilt.fleet.rows().iter().all(|r| r.cycles == 40));
}
