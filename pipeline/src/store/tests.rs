//! The store's own tests, each on SQLite and on PostgreSQL (`rstest` cases).

use rstest::rstest;

use super::*;
use restorable_domain::cycle::{examples, BackupCycleCommand};
use restorable_testkit::{test_server_url, ScratchDatabase};

/// Where a test's store lives; `reopen` gives a second, independent handle on it (shared with
/// the snapshot tests).
pub(super) enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(ScratchDatabase),
}

impl Place {
    pub(super) async fn new(postgres: bool) -> Self {
        if postgres {
            Place::Postgres(
                ScratchDatabase::create(&test_server_url())
                    .await
                    .expect("PostgreSQL for tests (RESTORABLE_TEST_DATABASE_URL)"),
            )
        } else {
            Place::Sqlite(tempfile::tempdir().expect("tempdir"))
        }
    }

    pub(super) async fn open(&self) -> Store {
        match self {
            Place::Sqlite(dir) => Store::open(dir.path()).await.expect("open"),
            Place::Postgres(db) => Store::connect(db.url()).await.expect("connect"),
        }
    }
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_lease_has_one_holder_and_passes_on_when_it_runs_out(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let first = store
        .acquire_lease("relay", "a", 60_000)
        .await
        .expect("acquire")
        .expect("free: granted");
    assert!(
        store
            .acquire_lease("relay", "b", 60_000)
            .await
            .expect("acquire")
            .is_none(),
        "held by a"
    );
    let again = store
        .acquire_lease("relay", "a", 60_000)
        .await
        .expect("acquire")
        .expect("its own holder");
    assert_eq!(again.epoch, first.epoch, "the same holder keeps its epoch");
    store.renew_lease(&first).await.expect("renewed");

    let short = store
        .acquire_lease("projector", "a", 1)
        .await
        .expect("acquire")
        .expect("granted");
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let taken = store
        .acquire_lease("projector", "b", 60_000)
        .await
        .expect("acquire")
        .expect("ran out: taken over");
    assert_eq!(taken.epoch, short.epoch + 1, "a new holder, a new epoch");
    assert!(matches!(
        store.renew_lease(&short).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.release_lease(&taken).await.expect("release");
    assert!(store
        .acquire_lease("projector", "c", 60_000)
        .await
        .expect("acquire")
        .is_some());
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_writer_that_lost_its_lease_writes_nothing_and_checkpoints_never_move_back(
    #[case] postgres: bool,
) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let row = |doc: &str| ViewRow {
        view: "fleet".into(),
        key: "i1".into(),
        tenant_id: "acme".into(),
        instance_id: None,
        doc: doc.into(),
    };
    let old = store
        .acquire_lease("projector", "old", 500)
        .await
        .expect("acquire")
        .expect("granted");
    store
        .save_view_rows(&[row("{\"v\":1}")], "projections", 10, &old)
        .await
        .expect("written while held");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let new = store
        .acquire_lease("projector", "new", 60_000)
        .await
        .expect("acquire")
        .expect("taken over");
    store
        .save_view_rows(&[row("{\"v\":3}")], "projections", 30, &new)
        .await
        .expect("the new holder writes");
    let stale = store
        .save_view_rows(&[row("{\"v\":2}")], "projections", 20, &old)
        .await
        .expect_err("fenced out");
    assert!(matches!(stale, StoreError::LeaseLost(_)), "{stale}");
    let rows = store.view_rows("fleet", None).await.expect("rows");
    assert_eq!(rows, [row("{\"v\":3}")], "the stale write left nothing");
    assert_eq!(store.checkpoint("projections").await.expect("read"), 30);
    store
        .save_view_rows(&[], "projections", 25, &new)
        .await
        .expect("written");
    assert_eq!(
        store.checkpoint("projections").await.expect("read"),
        30,
        "a checkpoint never moves back"
    );
}

/// Many rows in one save (more than one upsert statement), a key named twice among them: every
/// row is stored, and the later of the two wins, as upserting them one by one would leave.
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_save_of_many_rows_stores_each_and_the_last_of_a_repeated_key_wins(
    #[case] postgres: bool,
) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let row = |key: usize, doc: &str| ViewRow {
        view: "backups".into(),
        key: format!("c{key:04}"),
        tenant_id: "acme".into(),
        instance_id: Some(format!("i{}", key % 7)),
        doc: doc.into(),
    };
    let mut rows: Vec<ViewRow> = (0..450).map(|k| row(k, "{\"v\":1}")).collect();
    rows.push(row(3, "{\"v\":2}"));
    let lease = store
        .acquire_lease("projector", "one", 60_000)
        .await
        .expect("acquire")
        .expect("granted");
    store
        .save_view_rows(&rows, "projections", 451, &lease)
        .await
        .expect("saved");
    let stored = store.view_rows("backups", None).await.expect("rows");
    assert_eq!(stored.len(), 450);
    assert_eq!(
        stored[3],
        row(3, "{\"v\":2}"),
        "the later row of c0003 wins"
    );
    assert_eq!(stored[449], row(449, "{\"v\":1}"));
    assert_eq!(store.checkpoint("projections").await.expect("read"), 451);
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn dead_letters_are_listed_until_replayed(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let started = examples::started();
    let id = started.cycle_id.to_string();
    store
        .cycle(&id, BackupCycleCommand::Start(started))
        .await
        .expect("start");
    let event = store
        .event_at(1)
        .await
        .expect("read")
        .expect("the first event");
    assert_eq!(event.event_type, "CycleStarted");
    assert!(store.event_at(2).await.expect("read").is_none());
    store
        .add_dead_letter("capture", &event, "it panicked", 5)
        .await
        .expect("add");
    store
        .add_dead_letter("capture", &event, "again", 6)
        .await
        .expect("a repeat is kept once");
    let pending = store.dead_letters(true).await.expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].consumer.as_str(),
            pending[0].position,
            pending[0].attempts
        ),
        ("capture", 1, 5)
    );
    assert_eq!(pending[0].reason, "it panicked");
    assert!(store
        .mark_dead_letter_replayed("capture", 1)
        .await
        .expect("mark"));
    assert!(store.dead_letters(true).await.expect("list").is_empty());
    let all = store.dead_letters(false).await.expect("list");
    assert!(all[0].replayed_at.is_some());
    assert!(store.is_reachable().await);
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn pending_deliveries_are_leased_taken_over_and_ended(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let pending = |route: &str| PendingDelivery {
        instance_id: "instance-a".into(),
        sequence: 1,
        route: route.into(),
    };
    assert!(store
        .begin_delivery(&pending("webhook"), 1_000)
        .await
        .expect("begin"));
    assert!(store
        .begin_delivery(&pending("email"), 5_000)
        .await
        .expect("begin"));
    assert!(
        !store
            .begin_delivery(&pending("webhook"), 9_000)
            .await
            .expect("again"),
        "a delivery under way is not begun twice"
    );
    assert!(
        store
            .take_over_deliveries(1_000, 2_000)
            .await
            .expect("take")
            .is_empty(),
        "no lease has run out yet"
    );
    assert_eq!(
        store
            .take_over_deliveries(1_001, 2_000)
            .await
            .expect("take"),
        vec![pending("webhook")],
        "the first lease ran out"
    );
    assert!(
        store
            .take_over_deliveries(1_500, 3_000)
            .await
            .expect("take")
            .is_empty(),
        "taken over: leased again"
    );
    store.end_delivery(&pending("webhook")).await.expect("end");
    assert_eq!(
        store
            .take_over_deliveries(10_000, 20_000)
            .await
            .expect("take"),
        vec![pending("email")],
        "an ended delivery is gone"
    );
    store.close().await;
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_days_digest_is_claimed_by_one_given_back_on_failure_and_never_claimed_once_sent(
    #[case] postgres: bool,
) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let other = place.open().await;
    let tenant = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let day = "2026-11-28";
    assert!(store
        .claim_digest(&tenant, day, 1_000, 5_000)
        .await
        .expect("claim"));
    assert!(
        !other
            .claim_digest(&tenant, day, 2_000, 6_000)
            .await
            .expect("claim"),
        "claimed and leased: not claimed again"
    );
    assert!(
        other
            .claim_digest(&tenant, "2026-11-29", 2_000, 6_000)
            .await
            .expect("claim"),
        "another day is another digest"
    );
    store.release_digest(&tenant, day).await.expect("release");
    assert!(
        other
            .claim_digest(&tenant, day, 2_000, 6_000)
            .await
            .expect("claim"),
        "a failed send's claim is given back"
    );
    assert!(
        store
            .claim_digest(&tenant, day, 6_001, 9_000)
            .await
            .expect("claim"),
        "a claim whose lease ran out (its process stopped) is taken over"
    );
    assert_eq!(
        store.digest_sent_at(&tenant, day).await.expect("read"),
        None
    );
    store.digest_sent(&tenant, day, 7_000).await.expect("sent");
    assert_eq!(
        store.digest_sent_at(&tenant, day).await.expect("read"),
        Some(7_000)
    );
    store.release_digest(&tenant, day).await.expect("release");
    assert!(
        !other
            .claim_digest(&tenant, day, 99_000, 100_000)
            .await
            .expect("claim"),
        "a sent digest is never claimed again, leased or not"
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn events_get_global_positions_and_survive_reopen(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let started = examples::started();
    let id = started.cycle_id.to_string();
    store
        .cycle(&id, BackupCycleCommand::Start(started.clone()))
        .await
        .expect("start");
    store
        .cycle(&id, BackupCycleCommand::Start(started))
        .await
        .expect("repeat is a no-op");
    store
        .cycle(
            &id,
            BackupCycleCommand::RecordCaptured(examples::captured()),
        )
        .await
        .expect("capture");
    store.close().await;

    let reopened = place.open().await; // migrations are idempotent
    let events = reopened.read_after(0, 100).await.expect("read");
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["CycleStarted", "Captured"]);
    assert_eq!(events[0].position + 1, events[1].position);
    assert_eq!(
        events[1]
            .decode::<restorable_domain::cycle::BackupCycleEvent>()
            .expect("decode"),
        restorable_domain::cycle::BackupCycleEvent::Captured(examples::captured())
    );
    let cycle: BackupCycle = reopened.load(&id).await.expect("load");
    assert_eq!(cycle.rung, Some(restorable_domain::ladder::Rung::Captured));
    assert_eq!(
        reopened.history("BackupCycle", &id).await.expect("history"),
        events
    );
    assert_eq!(
        reopened.aggregate_ids("BackupCycle").await.expect("ids"),
        [id]
    );
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn an_out_of_order_command_is_rejected_with_the_domain_reason(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let error = store
        .cycle("c1", BackupCycleCommand::RecordSecured(examples::secured()))
        .await
        .expect_err("out of order");
    assert!(
        matches!(error, StoreError::Rejected(ref m) if m.contains("needs the cycle at Captured")),
        "{error}"
    );
    assert!(store.read_after(0, 10).await.expect("read").is_empty());
}

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn checkpoints_only_move_forward_unless_rewound(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    assert_eq!(store.checkpoint("capture").await.expect("read"), 0);
    store.save_checkpoint("capture", 7).await.expect("save");
    store.save_checkpoint("capture", 3).await.expect("save");
    assert_eq!(store.checkpoint("capture").await.expect("read"), 7);
    store.rewind_checkpoints(2).await.expect("rewind");
    assert_eq!(store.checkpoint("capture").await.expect("read"), 2);
}

/// Many cycles written at once from two handles (two "processes"): every position from 1 to
/// N is there once, and a reader that followed the log while they were written saw them all
/// in order (a commit never lands behind a position already read).
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn concurrent_writers_get_gap_free_positions_in_commit_order(#[case] postgres: bool) {
    let place = Place::new(postgres).await;
    let (a, b) = (place.open().await, place.open().await);
    let reader = place.open().await;
    let follower = tokio::spawn(async move {
        let (mut position, mut seen) = (0, Vec::new());
        while seen.len() < 40 {
            for event in reader.read_after(position, 100).await.expect("read") {
                assert_eq!(event.position, position + 1, "a gap or a late commit");
                position = event.position;
                seen.push(event.position);
            }
            tokio::task::yield_now().await;
        }
        seen
    });
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..20 {
        for store in [a.clone(), b.clone()] {
            writers.spawn(async move {
                let mut started = examples::started();
                started.cycle_id = restorable_domain::ids::CycleId::random();
                let id = format!("{}-{n}", started.cycle_id);
                store
                    .cycle(&id, BackupCycleCommand::Start(started))
                    .await
                    .expect("start");
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), follower)
        .await
        .expect("the follower saw every event")
        .expect("follower");
    assert_eq!(seen, (1..=40).collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_malformed_payload_is_a_clear_error_not_a_panic() {
    let place = Place::new(false).await;
    let store = place.open().await;
    store
        .execute_sql(
            "INSERT INTO events VALUES ('BackupCycle', 'x', 1, 'Captured', '1.0', 'not json', '{}')",
        )
        .await
        .expect("insert");
    let events = store.read_after(0, 10).await.expect("the log still reads");
    let error = events[0]
        .decode::<restorable_domain::cycle::BackupCycleEvent>()
        .expect_err("malformed");
    assert!(
        error.to_string().contains("Captured event at position 1"),
        "{error}"
    );
    let load = store
        .load::<BackupCycle>("x")
        .await
        .expect_err("no panic, an error");
    assert!(load.to_string().contains("event 1 is not JSON"), "{load}");
    let command = store
        .cycle("x", BackupCycleCommand::Start(examples::started()))
        .await
        .expect_err("refused");
    assert!(matches!(command, StoreError::Malformed(_)));
}

#[tokio::test]
async fn postgresql_refuses_a_payload_that_is_not_json() {
    let place = Place::new(true).await;
    let store = place.open().await;
    let error = store
        .execute_sql(
            "INSERT INTO events VALUES ('BackupCycle', 'x', 1, 'Captured', '1.0', 'not json', '{}')",
        )
        .await
        .expect_err("jsonb refuses it");
    assert!(error.to_string().contains("json"), "{error}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let error = Store::connect("postgres://restorable:s3cret-pw@127.0.0.1:1/events")
        .await
        .err()
        .expect("nothing listens on port 1");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        !text.contains("s3cret-pw") && !format!("{error:?}").contains("s3cret-pw"),
        "{text}"
    );
}

#[test]
fn passwords_are_redacted_from_urls() {
    assert_eq!(
        redact_url("postgres://u:pw@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("/var/lib/events.db"), "/var/lib/events.db");
}

/// A view read a page at a time gives exactly the rows of one reading in key order — each
/// once, only the tenant's — in both directions, across pages and a last short page; and the
/// page's statement reads an index in key order (no sort of the tenant's rows per page).
#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
#[tokio::test]
async fn a_view_read_in_pages_gives_every_row_of_its_tenant_once_in_key_order(
    #[case] postgres: bool,
) {
    let place = Place::new(postgres).await;
    let store = place.open().await;
    let tenants = ["acme", "globex", "initech"];
    // Keys in a scrambled order, of the shape of a cycle id.
    let rows: Vec<ViewRow> = (0..1_203_u32)
        .map(|n| {
            let scrambled = n.wrapping_mul(2_654_435_761);
            ViewRow {
                view: "backups".into(),
                key: format!("{scrambled:08x}-0000-4000-8000-{n:012x}"),
                tenant_id: tenants[(n % 3) as usize].into(),
                instance_id: Some(format!("i{}", n % 11)),
                doc: format!("{{\"n\":{n}}}"),
            }
        })
        .collect();
    let lease = store
        .acquire_lease("projector", "one", 60_000)
        .await
        .expect("acquire")
        .expect("granted");
    store
        .save_view_rows(&rows, "projections", 1, &lease)
        .await
        .expect("saved");
    for tenant in [Some("globex"), None] {
        let mut expected: Vec<&ViewRow> = rows
            .iter()
            .filter(|r| tenant.is_none_or(|t| r.tenant_id == t))
            .collect();
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        for order in [KeyOrder::Ascending, KeyOrder::Descending] {
            let mut read: Vec<ViewRow> = Vec::new();
            loop {
                let page = store
                    .view_page(&ViewPage {
                        view: "backups",
                        tenant,
                        order,
                        after: read.last().map(|r| r.key.as_str()),
                        limit: 100,
                    })
                    .await
                    .expect("page");
                assert!(page.len() <= 100);
                let last = page.len() < 100;
                read.extend(page);
                if last {
                    break;
                }
            }
            let mut wanted = expected.clone();
            if order == KeyOrder::Descending {
                wanted.reverse();
            }
            assert_eq!(
                read.iter().collect::<Vec<_>>(),
                wanted,
                "{tenant:?} {order:?}"
            );
        }
    }
    // The plan of a tenant's page: the index in key order, no sort.
    let plan: Vec<String> = match &*store.backend {
        Backend::Sqlite(pool) => sqlx::query_as::<_, (i64, i64, i64, String)>(
            "EXPLAIN QUERY PLAN SELECT view, key, tenant_id, instance_id, doc FROM read_model \
             WHERE view = 'backups' AND tenant_id = 'acme' AND key > '8' ORDER BY key DESC LIMIT 500",
        )
        .fetch_all(pool)
        .await
        .expect("plan")
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect(),
        Backend::Postgres(pool) => {
            let mut connection = pool.acquire().await.expect("connection");
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *connection)
                .await
                .expect("set");
            sqlx::query_scalar(
                "EXPLAIN SELECT view, key, tenant_id, instance_id, doc FROM read_model \
                 WHERE view = 'backups' AND tenant_id = 'acme' AND key > '8' \
                 ORDER BY key DESC LIMIT 500",
            )
            .fetch_all(&mut *connection)
            .await
            .expect("plan")
        }
    };
    let plan = plan.join("\n");
    assert!(plan.contains("read_model_by_tenant_key"), "{plan}");
    assert!(
        !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}
