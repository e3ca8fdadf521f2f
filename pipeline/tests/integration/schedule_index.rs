//! The scheduler's index against the truth, on SQLite and PostgreSQL: the index equals what a
//! full replay of each instance says, over random histories kept incrementally and rebuilt; a
//! tick opens exactly the cycles the old full scan would; a tick over 1,000 instances of which
//! 3 are due loads those 3 only; and an instance missing from the index is still picked up.

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, Instance, InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule,
    SealedCredentials,
};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_pipeline::runtime::scheduler::{due_by_full_scan, tick_at};
use restorable_pipeline::schedule::{rebuild, reconcile, refresh, row};
use restorable_pipeline::store::{ScheduleRow, Store};
use restorable_testkit::{test_server_url, ScratchDatabase};
use rstest::rstest;

/// A store on a fresh database of either backend.
struct Place {
    store: Store,
    _database: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

async fn place(postgres: bool) -> Place {
    let dir = tempfile::tempdir().expect("tempdir");
    if postgres {
        let database = ScratchDatabase::create(&test_server_url())
            .await
            .expect("PostgreSQL for tests (RESTORABLE_TEST_DATABASE_URL)");
        let store = Store::connect(database.url()).await.expect("connect");
        Place {
            store,
            _database: Some(database),
            _dir: dir,
        }
    } else {
        let store = Store::open(dir.path()).await.expect("open");
        Place {
            store,
            _database: None,
            _dir: dir,
        }
    }
}

/// xorshift64*: random histories that are the same every run.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn instance_id(n: usize) -> InstanceId {
    InstanceId::for_name(&tenant(), &format!("pbx-{n}"))
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

fn enrolment(n: usize, interval_minutes: u32) -> InstanceCommand {
    InstanceCommand::Enrol(InstanceEnrolled {
        instance_id: instance_id(n),
        tenant_id: tenant(),
        name: format!("pbx-{n}"),
        fqdn: format!("pbx-{n}.acme.example"),
        api_url: format!("https://pbx-{n}.acme.example"),
        credentials: SealedCredentials("sealed".into()),
        schedule: Schedule { interval_minutes },
        restore_policy: RestorePolicy::default(),
        allow_insecure_http: false,
        enrolled_at: Utc::now(),
    })
}

fn open(cycle: CycleId, at: DateTime<Utc>) -> InstanceCommand {
    InstanceCommand::OpenCycle(CycleOpened {
        cycle_id: cycle,
        trigger: Trigger::Manual,
        opened_at: at,
    })
}

fn close(cycle: CycleId, at: DateTime<Utc>, failed: bool, retryable: bool) -> InstanceCommand {
    InstanceCommand::CloseCycle(CycleClosed {
        cycle_id: cycle,
        reached: if failed {
            Rung::Started
        } else {
            Rung::Verified
        },
        failed,
        retryable,
        restore_tested_copy: None,
        closed_at: at,
    })
}

/// What a full replay of the instance's events says its row is.
async fn replayed(store: &Store, id: &str) -> ScheduleRow {
    let history = store.history("Instance", id).await.expect("history");
    let mut instance = Instance::default();
    for logged in &history {
        cqrs_es::Aggregate::apply(&mut instance, logged.decode().expect("decodes"));
    }
    let version = history.last().map_or(0, |e| e.sequence);
    row(id, &instance, version)
}

/// `count` instances given random histories (commands through the store, refused ones
/// included), refreshing the index at random moments on the way.
async fn random_histories(store: &Store, random: &mut Random, count: usize, steps: usize) {
    let now = Utc::now();
    let mut open_cycles: Vec<Option<CycleId>> = vec![None; count];
    for n in 0..count {
        let interval = [1, 30, 60, 24 * 60][random.below(4) as usize];
        store
            .instance(&instance_id(n).to_string(), enrolment(n, interval))
            .await
            .expect("enrol");
    }
    for _ in 0..steps {
        let n = random.below(count as u64) as usize;
        let id = instance_id(n).to_string();
        let at = now - Duration::minutes(random.below(3 * 24 * 60) as i64);
        let command = match (random.below(10), open_cycles[n]) {
            (0, _) => InstanceCommand::Stop { at },
            (1 | 2, _) => InstanceCommand::Resume { at },
            (_, None) => open(CycleId::random(), at),
            (_, Some(cycle)) => {
                let failed = random.below(2) == 0;
                close(cycle, at, failed, failed && random.below(3) > 0)
            }
        };
        // Refused commands (opening on a stopped instance) are part of the history too.
        let _ = store.instance(&id, command).await;
        if random.below(7) == 0 {
            refresh(store).await.expect("refresh");
        }
        let state: Instance = store.load(&id).await.expect("load");
        open_cycles[n] = state.open_cycle;
    }
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn the_index_equals_a_full_replay_over_random_histories(#[case] postgres: bool) {
    let place = place(postgres).await;
    let store = &place.store;
    let mut random = Random(0x5DEE_CE66_D1CE_4E5B ^ u64::from(postgres));
    random_histories(store, &mut random, 12, 300).await;
    refresh(store).await.expect("refresh");

    let mut expected = Vec::new();
    for id in store.aggregate_ids("Instance").await.expect("ids") {
        expected.push(replayed(store, &id).await);
    }
    expected.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let kept = store.schedule_rows().await.expect("rows");
    assert_eq!(kept, expected, "kept incrementally");
    assert!(
        kept.iter().any(|r| r.due_at.is_some()) && kept.iter().any(|r| r.due_at.is_none()),
        "the histories reach both kinds of row: {kept:?}"
    );

    rebuild(store).await.expect("rebuild");
    assert_eq!(
        store.schedule_rows().await.expect("rows"),
        expected,
        "rebuilt"
    );

    // A row never gives way to an older one (two processes keeping the index at once).
    let newest = expected[0].clone();
    let older = ScheduleRow {
        due_at: Some(0),
        open_cycle: None,
        version: newest.version - 1,
        ..newest.clone()
    };
    store
        .save_schedule(&[older], "schedule", 0)
        .await
        .expect("save");
    assert_eq!(store.schedule_rows().await.expect("rows")[0], newest);
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_tick_opens_the_cycles_a_full_scan_says_are_due(#[case] postgres: bool) {
    let place = place(postgres).await;
    let store = &place.store;
    let mut random = Random(0x2545_F491_4F6C_DD1D ^ u64::from(postgres));
    random_histories(store, &mut random, 16, 200).await;
    for at in [Utc::now(), Utc::now() + Duration::hours(3)] {
        let mut due = due_by_full_scan(store, at).await.expect("full scan");
        let tick = tick_at(store, at).await.expect("tick");
        let mut opened = tick.opened.clone();
        due.sort();
        opened.sort();
        assert_eq!(opened, due, "at {at}");
        assert_eq!(
            tick.loaded,
            due.len(),
            "loaded only what the index said was due"
        );
        assert!(
            tick_at(store, at).await.expect("tick").opened.is_empty(),
            "in flight now"
        );
        // Close every cycle now in flight, so the next moment has something due.
        for id in store.aggregate_ids("Instance").await.expect("ids") {
            let instance: Instance = store.load(&id).await.expect("load");
            if let Some(cycle) = instance.open_cycle {
                store
                    .instance(&id, close(cycle, at, false, false))
                    .await
                    .expect("close");
            }
        }
    }
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_over_a_thousand_instances_loads_only_the_three_due(#[case] postgres: bool) {
    let place = place(postgres).await;
    let store = &place.store;
    let now = Utc::now();
    let due: Vec<usize> = vec![17, 500, 999];
    let due_ref = &due;
    futures_util::stream::iter(0..1000)
        .map(|n| async move {
            let id = instance_id(n).to_string();
            store.instance(&id, enrolment(n, 24 * 60)).await?;
            if due_ref.contains(&n) {
                // Last opened two days ago on a daily schedule: due.
                let cycle = CycleId::random();
                store
                    .instance(&id, open(cycle, now - Duration::days(2)))
                    .await?;
                return store
                    .instance(&id, close(cycle, now - Duration::days(2), false, false))
                    .await;
            }
            let cycle = CycleId::random();
            store
                .instance(&id, open(cycle, now - Duration::hours(1)))
                .await?;
            if n % 2 == 0 {
                // Closed an hour ago: due tomorrow. (Odd ones stay in flight: never due.)
                store
                    .instance(&id, close(cycle, now - Duration::hours(1), false, false))
                    .await?;
            }
            Ok(())
        })
        .buffer_unordered(8)
        .for_each(|done| async move { done.expect("history") })
        .await;
    refresh(store).await.expect("refresh");

    // Make the 997 not due unloadable: a tick that loads one of them fails (as the full scan
    // does), so the test tells the index from the old tick by more than a count.
    let not_due: Vec<String> = (0..1000)
        .filter(|n| !due.contains(n))
        .map(|n| format!("'{}'", instance_id(n)))
        .collect();
    store
        .execute_sql(&format!(
            "UPDATE events SET payload = '{{\"Unknown\": {{}}}}' \
             WHERE aggregate_type = 'Instance' AND aggregate_id IN ({})",
            not_due.join(", ")
        ))
        .await
        .expect("poison");
    assert!(
        due_by_full_scan(store, now).await.is_err(),
        "the full scan loads every instance"
    );

    let tick = tick_at(store, now).await.expect("tick");
    let mut opened = tick.opened.clone();
    opened.sort();
    let mut expected: Vec<InstanceId> = due.iter().map(|n| instance_id(*n)).collect();
    expected.sort();
    assert_eq!(opened, expected);
    assert_eq!(tick.loaded, 3, "only the three due were loaded");
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_instance_missing_from_the_index_is_still_picked_up(#[case] postgres: bool) {
    let place = place(postgres).await;
    let store = &place.store;
    let now = Utc::now();
    for n in 0..3 {
        store
            .instance(&instance_id(n).to_string(), enrolment(n, 60))
            .await
            .expect("enrol");
    }
    refresh(store).await.expect("refresh");

    // Rows lost while the checkpoint stayed (emptied by hand): the tick alone does not see
    // them, the reconcile (which the scheduler runs at start and every hour) rebuilds.
    store
        .execute_sql("DELETE FROM instance_schedule")
        .await
        .expect("delete");
    assert!(tick_at(store, now).await.expect("tick").opened.is_empty());
    assert!(reconcile(store).await.expect("reconcile"), "rebuilt");
    assert!(!reconcile(store).await.expect("reconcile"), "whole again");
    assert_eq!(tick_at(store, now).await.expect("tick").opened.len(), 3);

    // A database migrated to the index: no rows, no checkpoint; the first tick fills it.
    for n in 3..5 {
        store
            .instance(&instance_id(n).to_string(), enrolment(n, 60))
            .await
            .expect("enrol");
    }
    store
        .execute_sql("DELETE FROM instance_schedule")
        .await
        .expect("delete");
    store
        .execute_sql("DELETE FROM consumer_checkpoints WHERE consumer = 'schedule'")
        .await
        .expect("delete");
    let mut opened = tick_at(store, now).await.expect("tick").opened;
    opened.sort();
    let mut expected = vec![instance_id(3), instance_id(4)];
    expected.sort();
    assert_eq!(opened, expected, "the three in flight are not due");

    // A row that says due while the aggregate is not (late): loaded, checked, not opened.
    refresh(store).await.expect("refresh");
    store
        .execute_sql("UPDATE instance_schedule SET due_at = 0")
        .await
        .expect("update");
    let tick = tick_at(store, now).await.expect("tick");
    assert!(tick.opened.is_empty(), "{tick:?}");
    assert_eq!(tick.loaded, 5, "the aggregate is the truth");
}
