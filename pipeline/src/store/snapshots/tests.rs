//! Snapshot tests, each on SQLite and on PostgreSQL (`rstest` cases): a load through snapshots
//! equals a full replay on random histories, sees events written behind a snapshot's back,
//! ignores and replaces a stale or broken snapshot, never moves a snapshot backwards, and reads
//! a bounded number of events however long the history.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateContext, CqrsFramework, EventStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised, InstanceAlerts};
use restorable_domain::audit::{ActionRecorded, AuditAction, AuditTrail};
use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, EndpointChanged, Instance, InstanceCommand, InstanceEnrolled,
    RestorePolicy, Schedule, SealedCredentials,
};
use restorable_domain::ladder::{Rung, Stage, Trigger};
use restorable_domain::tenant_key::TenantKey;
use restorable_domain::Snapshotted;
use rstest::rstest;
use serde_json::Value;

use super::super::tests::Place;
use super::super::{Repository, Store, StoreError};
use super::{read, write, SnapshotStore, SNAPSHOT_EVERY};

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap_or_else(|_| unreachable!())
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::minutes(i64::from(minute))
}

fn enrol(name: &str) -> InstanceCommand {
    let tenant = tenant();
    InstanceCommand::Enrol(InstanceEnrolled {
        instance_id: InstanceId::for_name(&tenant, name),
        tenant_id: tenant,
        name: name.into(),
        fqdn: format!("{name}.example"),
        api_url: format!("https://{name}.example"),
        credentials: SealedCredentials("sealed".into()),
        schedule: Schedule::DAILY,
        restore_policy: RestorePolicy::default(),
        allow_insecure_http: false,
        enrolled_at: at(0),
    })
}

fn open(cycle: CycleId, minute: u32) -> InstanceCommand {
    InstanceCommand::OpenCycle(CycleOpened {
        cycle_id: cycle,
        trigger: Trigger::Scheduled,
        opened_at: at(minute),
    })
}

fn close(cycle: CycleId, reached: Rung, failed: bool, minute: u32) -> InstanceCommand {
    InstanceCommand::CloseCycle(CycleClosed {
        cycle_id: cycle,
        reached,
        failed,
        retryable: failed,
        restore_tested_copy: None,
        closed_at: at(minute),
    })
}

/// The state a full replay of every event gives: the truth a snapshot must agree with.
async fn full_replay<A: Aggregate>(store: &Store, id: &str) -> A {
    let mut context = on_backend!(store, |pool| PersistedEventStore::<_, A>::new_event_store(
        pool.events()
    )
    .load_aggregate(id)
    .await)
    .unwrap_or_else(|e| panic!("replay {id}: {e}"));
    std::mem::take(context.aggregate())
}

/// The sequence of the stored snapshot and whether it is of the current version.
async fn stored<A: Snapshotted>(store: &Store, id: &str) -> Option<(i64, bool)> {
    read(&store.backend, A::TYPE, id)
        .await
        .expect("read snapshot")
        .map(|s| (s.last_sequence, s.version == A::snapshot_version()))
}

/// Loads through snapshots and checks the state against a full replay.
async fn agrees<A: Snapshotted + PartialEq + std::fmt::Debug>(store: &Store, id: &str) -> A {
    let loaded: A = store.load(id).await.expect("load");
    assert_eq!(
        loaded,
        full_replay::<A>(store, id).await,
        "{} {id}",
        A::TYPE
    );
    loaded
}

/// One random command for `Instance` `n`: mostly cycles, sometimes a stop, a resume or a move.
fn instance_command(rng: &mut StdRng, state: &Instance, minute: u32) -> InstanceCommand {
    match (rng.gen_range(0..10), state.open_cycle) {
        (0, _) => InstanceCommand::Stop { at: at(minute) },
        (1, _) => InstanceCommand::Resume { at: at(minute) },
        (2, _) => InstanceCommand::ChangeEndpoint(EndpointChanged {
            api_url: format!("https://pbx-{}.example", rng.gen_range(0..3)),
            previous_api_url: None,
            allow_insecure_http: rng.gen_bool(0.2),
            credentials: SealedCredentials("sealed".into()),
            changed_at: at(minute),
        }),
        (_, Some(cycle)) => {
            let reached =
                [Rung::Captured, Rung::Verified, Rung::RestoreTested][rng.gen_range(0..3)];
            close(cycle, reached, rng.gen_bool(0.3), minute)
        }
        (_, None) => open(CycleId::random(), minute),
    }
}

/// One random alert command, over a small pool of cycles so redeliveries happen.
fn alert_command(rng: &mut StdRng, cycles: &[CycleId], position: i64) -> AlertCommand {
    let cycle = cycles[rng.gen_range(0..cycles.len())];
    if rng.gen_bool(0.5) {
        let kind = [
            AlertKind::BackupFailed,
            AlertKind::BackupStale,
            AlertKind::VerifyStale,
        ][rng.gen_range(0..3)];
        let failed = kind == AlertKind::BackupFailed;
        AlertCommand::Raise(AlertRaised {
            alert_id: String::new(),
            kind,
            tenant_id: tenant(),
            instance_id: InstanceId::for_name(&tenant(), "hq"),
            cycle_id: failed.then_some(cycle),
            stage: failed.then_some(Stage::Verify),
            reason: None,
            detail: "random".into(),
            raised_at: at(0),
            position,
        })
    } else {
        AlertCommand::Resolve {
            cycle_id: cycle,
            reached: [Rung::Secured, Rung::Verified, Rung::RestoreTested][rng.gen_range(0..3)],
            ended: rng.gen_bool(0.5),
            position,
            at: at(0),
        }
    }
}

fn audit_record(rng: &mut StdRng, minute: u32) -> ActionRecorded {
    ActionRecorded {
        tenant_id: tenant(),
        actor: "owner@acme.example".into(),
        action: [
            AuditAction::Enrol,
            AuditAction::Stop,
            AuditAction::BackupNow,
        ][rng.gen_range(0..3)],
        instance_id: None,
        cycle_id: None,
        key_version: None,
        at: at(minute),
    }
}

/// (a) On random histories (seeded) across three aggregate types, with snapshots every 7
/// events, every load through snapshots equals a full replay, after every command.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_load_through_snapshots_equals_a_full_replay_on_random_histories(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await.with_snapshot_every(7);
    let mut rng = StdRng::seed_from_u64(0x05ee_d13a);
    let instances = ["hq", "branch"];
    for name in instances {
        store.instance(name, enrol(name)).await.expect("enrol");
    }
    let cycles: Vec<CycleId> = (0..80).map(|_| CycleId::random()).collect();
    for step in 0..400u32 {
        match rng.gen_range(0..4) {
            0 | 1 => {
                let name = instances[rng.gen_range(0..instances.len())];
                let state: Instance = store.load(name).await.expect("load");
                let command = instance_command(&mut rng, &state, step + 1);
                match store.instance(name, command).await {
                    Ok(()) | Err(StoreError::Rejected(_)) => {}
                    Err(e) => panic!("instance command: {e}"),
                }
                agrees::<Instance>(&store, name).await;
            }
            2 => {
                let command = alert_command(&mut rng, &cycles, i64::from(step));
                store.alerts("hq", command).await.expect("alerts");
                agrees::<InstanceAlerts>(&store, "hq").await;
            }
            _ => {
                let record = audit_record(&mut rng, step);
                store.audit("acme", record).await.expect("audit");
                agrees::<AuditTrail>(&store, "acme").await;
            }
        }
        if rng.gen_ratio(1, 50) {
            store
                .snapshot_now::<Instance>("hq")
                .await
                .expect("on demand");
        }
    }
    for name in instances {
        agrees::<Instance>(&store, name).await;
        let (at, current) = stored::<Instance>(&store, name).await.expect("snapshotted");
        assert!(current && at > 7, "{name}: snapshot at {at}");
    }
    let trail = agrees::<AuditTrail>(&store, "acme").await;
    let (at, _) = stored::<AuditTrail>(&store, "acme")
        .await
        .expect("snapshotted");
    assert!(
        u64::try_from(at).unwrap_or(0) + 7 > trail.recorded,
        "the snapshot follows the trail: {at} of {}",
        trail.recorded
    );
    assert!(stored::<InstanceAlerts>(&store, "hq").await.is_some());
}

/// (b) Events written by a process that knows nothing of snapshots (cqrs-es's plain event
/// store, as the previous release wrote) after the snapshot are read by the next load and the
/// next command.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_event_appended_behind_a_snapshots_back_is_never_missed(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await.with_snapshot_every(5);
    store.instance("hq", enrol("hq")).await.expect("enrol");
    for n in 0..10u32 {
        let cycle = CycleId::random();
        store
            .instance("hq", open(cycle, 2 * n + 1))
            .await
            .expect("open");
        store
            .instance("hq", close(cycle, Rung::Verified, false, 2 * n + 2))
            .await
            .expect("close");
    }
    store
        .snapshot_now::<Instance>("hq")
        .await
        .expect("snapshot");
    assert_eq!(stored::<Instance>(&store, "hq").await, Some((21, true)));

    let older = on_backend!(store, |pool| {
        let framework = CqrsFramework::new(
            PersistedEventStore::<_, Instance>::new_event_store(pool.events()),
            vec![],
            (),
        );
        framework
            .execute("hq", InstanceCommand::Stop { at: at(100) })
            .await
    });
    older.expect("an older process stops the instance");
    assert_eq!(
        stored::<Instance>(&store, "hq").await,
        Some((21, true)),
        "it wrote no snapshot"
    );
    let state = agrees::<Instance>(&store, "hq").await;
    assert!(state.stopped, "the load saw the stop");
    let refused = store
        .instance("hq", open(CycleId::random(), 101))
        .await
        .expect_err("the next command sees the stop too");
    assert!(matches!(refused, StoreError::Rejected(_)), "{refused}");

    // A row inserted directly, as any writer of the table would.
    let cycle = CycleId::random();
    let resumed = serde_json::json!({"InstanceResumed": {"resumed_at": at(102)}});
    let opened = serde_json::json!({"CycleOpened": {
        "cycle_id": cycle, "trigger": "scheduled", "opened_at": at(103)}});
    for (sequence, event_type, payload) in [
        (23, "InstanceResumed", resumed),
        (24, "CycleOpened", opened),
    ] {
        store
            .execute_sql(&format!(
                "INSERT INTO events VALUES ('Instance', 'hq', {sequence}, '{event_type}', \
                 '1.0', '{payload}', '{{}}')"
            ))
            .await
            .expect("insert");
    }
    let state = agrees::<Instance>(&store, "hq").await;
    assert_eq!(state.open_cycle, Some(cycle));
    store
        .instance("hq", close(cycle, Rung::Verified, false, 104))
        .await
        .expect("the command builds on every event");
    let state = agrees::<Instance>(&store, "hq").await;
    assert_eq!((state.open_cycle, state.stopped), (None, false));
}

/// (c) A snapshot of another version, or whose payload is not the aggregate, is ignored (the
/// state is the full replay's) and replaced by a current one.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_stale_or_broken_snapshot_is_ignored_and_replaced(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    for minute in 0..12 {
        let mut record = audit_record(&mut StdRng::seed_from_u64(1), minute);
        record.actor = format!("user-{minute}@acme.example");
        store.audit("acme", record).await.expect("audit");
    }
    let wrong_state = serde_json::to_string(&AuditTrail { recorded: 999 }).expect("json");
    let version = AuditTrail::snapshot_version();
    for (version, payload) in [
        ("0.0000000000000000", wrong_state.as_str()),
        (version.as_str(), "[1, 2, 3]"),
        (version.as_str(), "{\"recorded\": \"twelve\"}"),
    ] {
        store
            .execute_sql("DELETE FROM snapshots")
            .await
            .expect("clear");
        assert!(
            write(&store.backend, "AuditTrail", "acme", version, 12, payload)
                .await
                .expect("plant")
        );
        let trail = agrees::<AuditTrail>(&store, "acme").await;
        assert_eq!(trail.recorded, 12, "{version} {payload}");
        assert_eq!(
            stored::<AuditTrail>(&store, "acme").await,
            Some((12, true)),
            "replaced by the load ({version} {payload})"
        );
        let row = read(&store.backend, "AuditTrail", "acme")
            .await
            .expect("read")
            .expect("row");
        let payload: Value = serde_json::from_str(&row.payload).expect("json");
        assert_eq!(payload["recorded"], 12);
    }
}

/// (d) A write at an earlier sequence than the stored snapshot changes nothing.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_snapshot_never_moves_backwards(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await.with_snapshot_every(4);
    for minute in 0..10 {
        let record = audit_record(&mut StdRng::seed_from_u64(2), minute);
        store.audit("acme", record).await.expect("audit");
    }
    assert_eq!(
        store.snapshot_now::<AuditTrail>("acme").await.expect("now"),
        10
    );
    let version = AuditTrail::snapshot_version();
    let older = serde_json::to_string(&AuditTrail { recorded: 6 }).expect("json");
    let written = write(&store.backend, "AuditTrail", "acme", &version, 6, &older)
        .await
        .expect("write");
    assert!(!written, "refused");
    assert_eq!(stored::<AuditTrail>(&store, "acme").await, Some((10, true)));
    assert_eq!(agrees::<AuditTrail>(&store, "acme").await.recorded, 10);
}

/// Writers racing on one aggregate through two handles (optimistic-lock conflicts, retried
/// by `execute_on`, each try loading afresh through the snapshot) leave a state, and a
/// snapshot, that agree with a full replay: every command that succeeded counted once.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn racing_writers_and_their_retries_keep_snapshots_true(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let handles = [
        place.open().await.with_snapshot_every(3),
        place.open().await.with_snapshot_every(3),
    ];
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..4u32 {
        let store = handles[n as usize % 2].clone();
        writers.spawn(async move {
            let mut succeeded = 0u64;
            for minute in 0..10 {
                let record = audit_record(&mut StdRng::seed_from_u64(u64::from(n)), minute);
                match store.audit("acme", record).await {
                    Ok(()) => succeeded += 1,
                    Err(StoreError::Conflict) => {}
                    Err(e) => panic!("audit: {e}"),
                }
            }
            succeeded
        });
    }
    let mut succeeded = 0;
    while let Some(done) = writers.join_next().await {
        succeeded += done.expect("writer");
    }
    assert!(succeeded > 0);
    let store = &handles[0];
    let trail = agrees::<AuditTrail>(store, "acme").await;
    assert_eq!(trail.recorded, succeeded);
    let (at, current) = stored::<AuditTrail>(store, "acme")
        .await
        .expect("snapshotted");
    assert!(current && at > 0 && u64::try_from(at).unwrap_or(0) <= succeeded);
    assert_eq!(
        store.snapshot_now::<AuditTrail>("acme").await.expect("now"),
        usize::try_from(succeeded).unwrap_or(0)
    );
}

/// On SQLite the guard against payloads that are not JSON looks at the events a load reads:
/// a bad event after the snapshot is refused, one before it is not read at all.
#[tokio::test]
async fn the_sqlite_payload_guard_covers_the_events_after_the_snapshot() {
    let place = Place::new(false).await;
    let store = place.open().await;
    for minute in 0..6 {
        let record = audit_record(&mut StdRng::seed_from_u64(3), minute);
        store.audit("acme", record).await.expect("audit");
    }
    store.snapshot_now::<AuditTrail>("acme").await.expect("now");
    store
        .execute_sql("UPDATE events SET payload = 'not json' WHERE sequence = 2")
        .await
        .expect("break an old event");
    let trail: AuditTrail = store.load("acme").await.expect("behind the snapshot");
    assert_eq!(trail.recorded, 6);
    store
        .execute_sql(
            "INSERT INTO events VALUES ('AuditTrail', 'acme', 7, 'ActionRecorded', '1.0', \
             'not json', '{}')",
        )
        .await
        .expect("a bad new event");
    let error = store.load::<AuditTrail>("acme").await.expect_err("refused");
    assert!(error.to_string().contains("event 7 is not JSON"), "{error}");
    let record = audit_record(&mut StdRng::seed_from_u64(3), 7);
    let command = store.audit("acme", record).await.expect_err("refused");
    assert!(matches!(command, StoreError::Malformed(_)), "{command}");
}

/// A repository that counts the events it hands out, whatever asks for them.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicUsize>,
}

impl<R: PersistedEventRepository> PersistedEventRepository for Counting<R> {
    async fn get_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_events::<A>(id).await?;
        self.read.fetch_add(events.len(), Ordering::Relaxed);
        Ok(events)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_last_events::<A>(id, last_sequence).await?;
        self.read.fetch_add(events.len(), Ordering::Relaxed);
        Ok(events)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.inner.persist::<A>(events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

/// (e) After 1,000 cycles of history (2,001 events), a load and a command read at most
/// [`SNAPSHOT_EVERY`] events; the same count over a full replay (the path before snapshots)
/// reads them all.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_load_reads_a_bounded_number_of_events_after_a_thousand_cycles(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    store.instance("hq", enrol("hq")).await.expect("enrol");
    for n in 0..1000u32 {
        let cycle = CycleId::random();
        store
            .instance("hq", open(cycle, 2 * n + 1))
            .await
            .expect("open");
        store
            .instance("hq", close(cycle, Rung::Verified, n % 7 == 0, 2 * n + 2))
            .await
            .expect("close");
    }
    let read = Arc::new(AtomicUsize::new(0));
    let (snapshot_read, command_read, replay_read, state) = on_backend!(store, |pool| {
        let repo = || Counting {
            inner: pool.events(),
            read: read.clone(),
        };
        let through = SnapshotStore::<Instance, _>::new(
            repo(),
            repo(),
            store.backend.clone(),
            SNAPSHOT_EVERY,
        );
        let loaded = through.load("hq").await.expect("load");
        let snapshot_read = read.swap(0, Ordering::Relaxed);
        let framework = CqrsFramework::new(through, vec![], ());
        framework
            .execute("hq", open(CycleId::random(), 3000))
            .await
            .expect("a command");
        let command_read = read.swap(0, Ordering::Relaxed);
        let mut replayed = PersistedEventStore::<_, Instance>::new_event_store(repo())
            .load_aggregate("hq")
            .await
            .expect("replay");
        let replay_read = read.swap(0, Ordering::Relaxed);
        assert_eq!(&loaded.context.aggregate.last_closed_at, &Some(at(2000)));
        (
            snapshot_read,
            command_read,
            replay_read,
            replayed.aggregate().clone(),
        )
    });
    assert!(
        snapshot_read <= SNAPSHOT_EVERY,
        "a load read {snapshot_read} events"
    );
    assert!(
        command_read <= SNAPSHOT_EVERY,
        "a command read {command_read} events"
    );
    assert_eq!(replay_read, 2002, "the full replay reads every event");
    assert_eq!(agrees::<Instance>(&store, "hq").await, state);
}

/// Each aggregate's snapshot version, pinned: a change of an aggregate's serialized shape
/// changes its version by itself (old snapshots are ignored), and fails this test so the change
/// is seen. Then: if `apply()` changed what state an event leads to, bump the aggregate's
/// `SNAPSHOT_VERSION` too; update the value here.
#[test]
fn each_aggregates_snapshot_version_is_pinned() {
    let versions = [
        (Instance::TYPE, Instance::snapshot_version()),
        (InstanceAlerts::TYPE, InstanceAlerts::snapshot_version()),
        (AuditTrail::TYPE, AuditTrail::snapshot_version()),
        (TenantKey::TYPE, TenantKey::snapshot_version()),
        (BackupCycle::TYPE, BackupCycle::snapshot_version()),
    ];
    let pinned = [
        ("Instance", "3.7a1a53e3a92179e2"),
        ("InstanceAlerts", "4.c99d0342d29d116d"),
        ("AuditTrail", "1.3cfd8226c340c265"),
        ("TenantKey", "1.3f3a5d9ddf7a32cf"),
        ("BackupCycle", "2.91b8a4ef9f13a8d3"),
    ]
    .map(|(name, version)| (name, version.to_owned()));
    assert_eq!(
        versions, pinned,
        "an aggregate's serialized shape changed: its old snapshots will be ignored. If its \
         apply() changed too, bump its SNAPSHOT_VERSION; then pin the new value here"
    );
}
