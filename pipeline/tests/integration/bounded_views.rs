//! The views that grow with history (`backups`, `audit`) are not held in memory, on SQLite and
//! PostgreSQL: on random histories (cycles interleaved across instances, failures, alerts, audit
//! records) the rows the live projector stores with a tiny cache equal a rebuild's, and a process
//! that only follows the log folds the same fleet; a reader finds a cycle's row in the table once
//! its events are projected; and the projector's cache of backups rows stays within its bound
//! while it folds far more cycles than that.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::audit::{ActionRecorded, AuditAction};
use restorable_domain::cycle::{examples, BackupCycleCommand, CycleStarted};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule, SealedCredentials,
};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pipeline::read_model::{
    alert_list, audit_pages, backup_row, backup_rows_of, rebuild_caching, Bounds, ReadSide, BATCH,
};
use restorable_pipeline::store::{Store, StoreError, ViewRow};
use restorable_projections::model::VIEWS;
use restorable_testkit::{test_server_url, ScratchDatabase};
use rstest::rstest;
use tokio_util::sync::CancellationToken;

/// A store on SQLite (in `dir`) or on a scratch PostgreSQL database.
async fn open(postgres: bool, dir: &std::path::Path) -> (Store, Option<ScratchDatabase>) {
    if postgres {
        let database = ScratchDatabase::create(&test_server_url())
            .await
            .expect("PostgreSQL for tests");
        let store = Store::connect(database.url()).await.expect("connect");
        (store, Some(database))
    } else {
        (Store::open(dir).await.expect("open"), None)
    }
}

fn tenant(n: usize) -> TenantId {
    TenantId::new(&format!("tenant-{}", n % 2)).expect("tenant")
}

fn instance_id(n: usize) -> InstanceId {
    InstanceId::for_name(&tenant(n), &format!("pbx-{n}"))
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::minutes(minute)
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
        enrolled_at: at(0),
    });
    store
        .instance(&instance_id(n).to_string(), command)
        .await
        .expect("enrol");
}

/// The commands of one cycle of instance `n` started at `minute`: up the ladder as far as
/// `climb` rungs, then (if `fail`) a failure at the next stage.
fn cycle_commands(n: usize, minute: i64, climb: usize, fail: bool) -> Vec<BackupCycleCommand> {
    let started = CycleStarted {
        cycle_id: CycleId::random(),
        instance_id: instance_id(n),
        tenant_id: tenant(n),
        trigger: Trigger::Scheduled,
        started_at: at(minute),
    };
    let mut captured = examples::captured();
    captured.size = 1000 + u64::try_from(minute).unwrap_or(0);
    let mut commands = vec![BackupCycleCommand::Start(started)];
    let ladder = [
        BackupCycleCommand::RecordCaptured(captured),
        BackupCycleCommand::RecordSecured(examples::secured()),
        BackupCycleCommand::RecordVerified(examples::verified()),
        BackupCycleCommand::RecordRestoreTested(examples::restore_tested()),
    ];
    commands.extend(ladder.into_iter().take(climb));
    if fail && climb < 4 {
        let stage = [
            Stage::Capture,
            Stage::Secure,
            Stage::Verify,
            Stage::RestoreTest,
        ][climb];
        commands.push(BackupCycleCommand::RecordFailure(examples::failed(
            stage,
            FailureReason::EntryCorrupt,
        )));
    }
    commands
}

fn cycle_id_of(commands: &[BackupCycleCommand]) -> String {
    match commands.first() {
        Some(BackupCycleCommand::Start(started)) => started.cycle_id.to_string(),
        _ => unreachable!("a cycle's first command is Start"),
    }
}

async fn run_cycle(store: &Store, commands: Vec<BackupCycleCommand>) -> CycleId {
    let id = cycle_id_of(&commands);
    for command in commands {
        store.cycle(&id, command).await.expect("cycle command");
    }
    id.parse().expect("a cycle id")
}

fn audit_record(n: usize, minute: i64) -> ActionRecorded {
    ActionRecorded {
        tenant_id: tenant(n),
        actor: "owner@example".into(),
        action: AuditAction::BackupNow,
        instance_id: Some(instance_id(n)),
        cycle_id: None,
        key_version: None,
        at: at(minute),
    }
}

async fn stored_views(store: &Store) -> Vec<ViewRow> {
    let mut rows = Vec::new();
    for view in VIEWS {
        rows.extend(store.view_rows(view, None).await.expect("rows"));
    }
    rows
}

/// Live rows == a rebuild's rows, on random histories. The live projector holds 3 backups rows
/// and the rebuild 2, so rows are pushed out and read back from the table all the time; a
/// follower (no lease) holding 2 reads them back from the log instead. All hold 2 resolved
/// alerts, so alerts are forgotten all the time too: they hold the same ones, and the alert
/// list (held, then older from storage) gives every alert once, as a whole view would.
#[rstest]
#[case::sqlite(false, 0x13)]
#[case::sqlite_again(false, 0x0b5e_55ed)]
#[case::postgres(true, 0x13)]
#[case::postgres_again(true, 0x0b5e_55ed)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_rows_equal_a_rebuilds_on_random_histories(
    #[case] postgres: bool,
    #[case] seed: u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _database) = open(postgres, dir.path()).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let instances = 4;
    for n in 0..instances {
        enrol(&store, n).await;
    }
    let bounds = |cycles| Bounds {
        cycles,
        resolved_alerts: 2,
    };
    let live = ReadSide::load_bounded(&store, bounds(3))
        .await
        .expect("load");
    let follower = ReadSide::load_bounded(&store, bounds(2))
        .await
        .expect("load");
    // Cycles in flight: their instance and the commands left.
    let mut in_flight: Vec<(usize, String, Vec<BackupCycleCommand>)> = Vec::new();
    let mut started = 0;
    for minute in 0..400i64 {
        match rng.gen_range(0..10) {
            0..=2 if in_flight.len() < 6 && started < 70 => {
                let n = rng.gen_range(0..instances);
                let climb = rng.gen_range(0..=4);
                let commands = cycle_commands(n, minute, climb, rng.gen_bool(0.3));
                let id = cycle_id_of(&commands);
                in_flight.push((n, id, commands.into_iter().rev().collect()));
                started += 1;
            }
            3..=7 if !in_flight.is_empty() => {
                let pick = rng.gen_range(0..in_flight.len());
                let (_, id, left) = &mut in_flight[pick];
                if let Some(command) = left.pop() {
                    store.cycle(id, command).await.expect("cycle command");
                }
                if left.is_empty() {
                    in_flight.swap_remove(pick);
                }
            }
            8 => {
                let n = rng.gen_range(0..instances);
                store
                    .audit(tenant(n).as_str(), audit_record(n, minute))
                    .await
                    .expect("audit");
            }
            _ => {
                let n = rng.gen_range(0..instances);
                let command = if rng.gen_bool(0.6) {
                    AlertCommand::Raise(AlertRaised {
                        alert_id: String::new(),
                        kind: AlertKind::BackupStale,
                        tenant_id: tenant(n),
                        instance_id: instance_id(n),
                        cycle_id: None,
                        stage: None,
                        reason: None,
                        detail: "random".into(),
                        raised_at: at(minute),
                        position: minute,
                    })
                } else {
                    AlertCommand::Resolve {
                        cycle_id: CycleId::random(),
                        reached: Rung::Secured,
                        ended: true,
                        position: minute,
                        at: at(minute),
                    }
                };
                match store.alerts(&instance_id(n).to_string(), command).await {
                    Ok(()) | Err(StoreError::Rejected(_)) => {}
                    Err(e) => panic!("alerts: {e}"),
                }
            }
        }
        if rng.gen_ratio(1, 12) {
            live.catch_up_and_store(&store).await.expect("store");
        }
        if rng.gen_ratio(1, 9) {
            follower.catch_up(&store, None).await.expect("follow");
        }
    }
    live.catch_up_and_store(&store).await.expect("store");
    follower.catch_up(&store, None).await.expect("follow");
    let live_rows = stored_views(&store).await;
    for view in VIEWS {
        assert!(
            live_rows.iter().any(|row| row.view == view),
            "a stored {view} row"
        );
    }
    let backups = live_rows.iter().filter(|r| r.view == "backups").count();
    assert!(backups > 30, "{backups} cycles");
    assert!(live.cache_use().await.held <= 3);
    assert_eq!(*follower.read(), *live.read(), "the follower's fleet");

    let rebuilt = rebuild_caching(&store, bounds(2), BATCH, &mut |_| {})
        .await
        .expect("rebuild");
    assert_eq!(stored_views(&store).await, live_rows, "the rebuilt rows");
    assert_eq!(
        *rebuilt.read(),
        *live.read(),
        "the rebuilt fleet and alerts"
    );

    // Every alert, as a read side holding them all has it.
    let whole = ReadSide::load(&store).await.expect("load");
    for n in 0..instances {
        let mine = |row: &restorable_projections::alerts::AlertRow| row.tenant_id == tenant(n);
        let mut list = alert_list(&live, &store, Some(tenant(n).as_str()), mine);
        let mut listed = list.held.clone();
        while let Some(page) = list.older.next_page().await.expect("page") {
            listed.extend(page);
        }
        let mut expected: Vec<_> = whole
            .read()
            .alerts
            .rows()
            .into_iter()
            .filter(|row| mine(row))
            .cloned()
            .collect();
        assert!(
            listed.len() > list.held.len() || expected.len() <= 2,
            "some of tenant {n}'s alerts come from storage"
        );
        listed.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        expected.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        assert_eq!(listed, expected, "tenant {n}'s alerts, each once");
    }
    let held = live.read().alerts.rows().len();
    let open = whole
        .read()
        .alerts
        .rows()
        .iter()
        .filter(|row| row.resolved_at.is_none())
        .count();
    assert_eq!(held, open + 2, "every open alert and 2 resolved");
    assert!(
        whole.read().alerts.rows().len() > held + 4,
        "some forgotten"
    );
}

/// A reader finds a cycle's row (by its key, and among its instance's) once the projector has
/// folded its events — the position it publishes is the stored one — and an audit record too.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_a_cycles_row_once_its_events_are_projected(#[case] postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _database) = open(postgres, dir.path()).await;
    enrol(&store, 0).await;
    let read = ReadSide::load(&store).await.expect("load");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(read.clone().run(
        store.clone(),
        Duration::from_secs(3600),
        shutdown.clone(),
    ));
    let projected = |end: i64| {
        let read = read.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while read.position() < end {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not projected: {} < {end}",
                    read.position()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut cycles = Vec::new();
    for minute in 0..3 {
        let cycle = run_cycle(&store, cycle_commands(0, minute, 2, false)).await;
        projected(store.log_end().await.expect("end")).await;
        let row = backup_row(&store, &cycle)
            .await
            .expect("read")
            .expect("the cycle's row");
        assert_eq!((row.rung, row.instance_id), (Rung::Secured, instance_id(0)));
        cycles.insert(0, cycle);
        let listed: Vec<CycleId> = backup_rows_of(&store, &instance_id(0))
            .await
            .expect("read")
            .iter()
            .map(|r| r.cycle_id)
            .collect();
        assert_eq!(listed, cycles, "the instance's cycles, newest first");
    }
    store
        .audit(tenant(0).as_str(), audit_record(0, 9))
        .await
        .expect("audit");
    projected(store.log_end().await.expect("end")).await;
    let mut pages = audit_pages(&store, Some(tenant(0).as_str()));
    let audit = pages.next_page().await.expect("read").expect("a page");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, audit_record(0, 9));
    assert!(pages.next_page().await.expect("read").is_none(), "one page");
    assert!(audit_pages(&store, Some(tenant(1).as_str()))
        .next_page()
        .await
        .expect("read")
        .is_none());
    shutdown.cancel();
    running.await.expect("the projector stops");
}

/// The memory claim: folding 1,200 cycles (6,000 events, six batches) with a cache of 16 rows,
/// the projector never holds more than 16 rows plus one batch's, holds at most 16 between
/// batches, and every cycle's row is in the table. Without the bound it would hold all 1,200.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_of_backups_rows_stays_within_its_bound(#[case] postgres: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _database) = open(postgres, dir.path()).await;
    let instances = 3;
    for n in 0..instances {
        enrol(&store, n).await;
    }
    let capacity = 16;
    let cycles = 1200;
    let live = ReadSide::load_caching(&store, capacity)
        .await
        .expect("load");
    let mut counts: HashMap<InstanceId, u64> = HashMap::new();
    for k in 0..cycles {
        let n = k % instances;
        // 4 events: started, captured, secured, verified.
        run_cycle(&store, cycle_commands(n, k as i64, 3, false)).await;
        *counts.entry(instance_id(n)).or_default() += 1;
        if k % 400 == 399 {
            live.catch_up_and_store(&store).await.expect("store");
            let cache = live.cache_use().await;
            assert!(cache.held <= capacity, "between batches: {cache:?}");
        }
    }
    let end = store.log_end().await.expect("end");
    assert!(end > 4 * cycles as i64, "{end} events");
    let cache = live.cache_use().await;
    let bound = capacity + usize::try_from(BATCH).expect("batch");
    assert!(cache.peak <= bound, "{cache:?}, bound {bound}");
    assert!(cache.peak < cycles, "{cache:?}");
    assert_eq!(
        store.view_count("backups").await.expect("count"),
        cycles as i64
    );
    for (instance, count) in &counts {
        assert_eq!(live.read().fleet.row(instance).expect("row").cycles, *count);
    }

    // A rebuild of the same history, in the same bound.
    let rebuilt = rebuild_caching(
        &store,
        Bounds {
            cycles: capacity,
            ..Bounds::default()
        },
        BATCH,
        &mut |_| {},
    )
    .await
    .expect("rebuild");
    let cache = rebuilt.cache_use().await;
    assert!(cache.peak <= bound && cache.held <= capacity, "{cache:?}");
    assert_eq!(*rebuilt.read(), *live.read());
}
