//! The error taxonomy under injected infrastructure faults (issue 9): a store error exactly when
//! a stage records its outcome loses nothing; the relay holds on a store error and on an event
//! of an unknown version and never dead-letters or skips it; a poison event does not stop the
//! next tenant's cycle; a process that becomes the projector's writer stores views equal to a
//! rebuild. Faults are real: database triggers that raise, a renamed table, rows written behind
//! the pipeline's back.

use crate::common;

use std::time::Duration;

use common::{Backend, Harness};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::read_model::{rebuild, ReadSide};
use restorable_pipeline::runtime::driver::head_position;
use restorable_pipeline::store::Store;
use restorable_pipeline::transport::nats::relay::{Relay, CHECKPOINT};
use restorable_pipeline::transport::nats::{DEAD_LETTER_STREAM, EVENTS_STREAM};
use tokio_util::sync::CancellationToken;

async fn an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers(backend: Backend) {
    let harness = Harness::on(backend).await;
    let pbx = harness.pbx("pbx-fault", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    common::fail_inserts_for(&harness.pipeline.store, backend, "Captured", None, 4).await;
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    let shutdown = CancellationToken::new();
    let stages = tokio::spawn({
        let (pipeline, shutdown) = (harness.pipeline.clone(), shutdown.clone());
        async move { restorable_pipeline::runtime::run_all(&pipeline, shutdown).await }
    });
    // While the store refuses the outcome, the cycle stays where it was: the copy is in the
    // vault, but the cycle is neither captured nor failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = harness.cycle(cycle).await;
    assert_eq!(
        during.rung,
        Some(Rung::Started),
        "nothing recorded during the fault"
    );
    assert!(
        !during.is_failed(),
        "an infrastructure error is not a stage failure"
    );
    assert!(
        files_under(&harness.data.join("vault")) > 0,
        "the capture ran and met the fault when it recorded its outcome"
    );
    // Once the store answers, the outcome is recorded and the cycle climbs on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = harness.cycle(cycle).await;
        assert!(!now.is_failed(), "no false red: {:?}", now.failed);
        if now.rung >= Some(Rung::Verified) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outcome was lost: the cycle stayed at {:?}",
            now.rung
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    stages.await.expect("stages");
    let events = harness.cycle_events(cycle).await;
    assert_eq!(
        events.iter().filter(|e| *e == "Captured").count(),
        1,
        "{events:?}"
    );
    assert!(
        harness
            .pipeline
            .store
            .dead_letters(false)
            .await
            .expect("dead letters")
            .is_empty(),
        "an outage is never poison"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers() {
    an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers() {
    an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nats_an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers() {
    an_outcome_that_meets_a_store_error_is_recorded_once_the_store_answers(Backend::PostgresNats)
        .await;
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() {
                    files_under(&path)
                } else {
                    1
                }
            })
            .sum()
    })
}

async fn relay_checkpoint(store: &Store) -> i64 {
    store.checkpoint(CHECKPOINT).await.unwrap_or(-1)
}

async fn stream_messages(harness: &Harness, stream: &str) -> u64 {
    let nats = harness.pipeline.nats.clone().expect("nats");
    let mut stream = nats.jetstream.get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").state.messages
}

/// The relay meets a store that cannot be read, then an event of a version it does not know:
/// it holds on both (nothing skipped, nothing dead-lettered) and publishes everything once the
/// store answers and the event is one it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_holds_on_a_store_error_and_an_unknown_version_and_never_skips() {
    let harness = Harness::on(Backend::PostgresNats).await;
    let store = harness.pipeline.store.clone();
    let pbx = harness.pbx("pbx-relay", None).await;
    harness.enrol(&pbx, 60).await;
    let head = head_position(&harness.pipeline).await.expect("head");
    store
        .execute_sql("ALTER TABLE event_log RENAME TO event_log_away")
        .await
        .expect("hide the log");
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(store.clone(), harness.pipeline.nats.clone().expect("nats"))
            .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stream_messages(&harness, EVENTS_STREAM).await, 0);
    assert!(
        restorable_pipeline::transport::nats::relay::HELD
            .load(std::sync::atomic::Ordering::Relaxed),
        "the relay says it is held"
    );
    store
        .execute_sql("ALTER TABLE event_log_away RENAME TO event_log")
        .await
        .expect("the log is back");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relay_checkpoint(&store).await < head {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream_messages(&harness, EVENTS_STREAM).await, head as u64);

    // An event written by a newer Restorable (a version with no schema here), then a known one.
    let instance = store.aggregate_ids("Instance").await.expect("ids")[0].clone();
    let next = store
        .history("Instance", &instance)
        .await
        .expect("history")
        .len()
        + 1;
    store
        .execute_sql(&format!(
            "INSERT INTO events VALUES ('Instance', '{instance}', {next}, 'InstanceStopped', '9.9', \
             '{{\"InstanceStopped\": {{\"stopped_at\": \"2026-11-27T00:00:00Z\"}}}}', '{{}}')"
        ))
        .await
        .expect("a newer event");
    store
        .execute_sql(&format!(
            "INSERT INTO events VALUES ('Instance', '{instance}', {}, 'InstanceResumed', '1.0', \
             '{{\"InstanceResumed\": {{\"resumed_at\": \"2026-11-27T00:00:01Z\"}}}}', '{{}}')",
            next + 1
        ))
        .await
        .expect("a known event after it");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        relay_checkpoint(&store).await,
        head,
        "held at the unknown version: neither it nor the event after it skipped ahead"
    );
    assert_eq!(stream_messages(&harness, DEAD_LETTER_STREAM).await, 0);
    assert!(store.dead_letters(false).await.expect("list").is_empty());
    // An upgrade (here: the row as this version writes it) lets it through, in order.
    store
        .execute_sql(&format!(
            "UPDATE events SET event_version = '1.0' WHERE aggregate_id = '{instance}' AND sequence = {next}"
        ))
        .await
        .expect("upgrade");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while relay_checkpoint(&store).await < head + 2 {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    relay.await.expect("relay");
    assert_eq!(
        stream_messages(&harness, EVENTS_STREAM).await,
        head as u64 + 2
    );
    assert_eq!(stream_messages(&harness, DEAD_LETTER_STREAM).await, 0);
}

/// A cycle whose first event can never be read (written behind the pipeline's back) is given
/// up on by the stage that meets it, and the next tenant's cycle climbs as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_does_not_stop_the_next_tenants_cycle() {
    let harness = Harness::new().await;
    let store = harness.pipeline.store.clone();
    store
        .execute_sql(
            "INSERT INTO events VALUES ('BackupCycle', 'poison-cycle', 1, 'CycleStarted', '1.0', \
             '{\"CycleStarted\": {\"not\": \"a cycle\"}}', '{}')",
        )
        .await
        .expect("a poison event");
    let pbx = harness.pbx("pbx-next", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    tokio::time::timeout(Duration::from_secs(90), harness.drive(&[cycle]))
        .await
        .expect("the next cycle was not held up");
    let state = harness.cycle(cycle).await;
    assert!(!state.is_failed(), "{:?}", state.failed);
    assert!(state.rung >= Some(Rung::Verified));
    let letters = store.dead_letters(true).await.expect("dead letters");
    assert!(
        letters.iter().any(|l| l.aggregate_id == "poison-cycle"
            && l.consumer == "capture"
            && l.position == 1),
        "{letters:?}"
    );
}

/// A process that folded the log in memory while another stored the views, and then becomes
/// the writer, stores views equal to a rebuild (it starts from the stored rows, not from what it
/// folded unseen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_writer_stores_views_equal_to_a_rebuild() {
    let (harness, _pbx, _cycle) = common::one_cycle(Backend::Postgres, None).await;
    let store = harness.pipeline.store.clone();
    let head = head_position(&harness.pipeline).await.expect("head");
    let follower = ReadSide::load(&store).await.expect("load");
    follower
        .catch_up(&store, None)
        .await
        .expect("fold in memory");
    assert_eq!(store.checkpoint("projections").await.expect("read"), 0);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(follower.clone().run(
        store.clone(),
        Duration::from_secs(3600),
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.checkpoint("projections").await.expect("read") < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new writer never stored the views"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    running.await.expect("projector");
    let mut stored = Vec::new();
    for view in restorable_projections::model::VIEWS {
        stored.extend(store.view_rows(view, None).await.expect("rows"));
    }
    assert!(!stored.is_empty());
    rebuild(&store).await.expect("rebuild");
    let mut rebuilt = Vec::new();
    for view in restorable_projections::model::VIEWS {
        rebuilt.extend(store.view_rows(view, None).await.expect("rows"));
    }
    assert_eq!(stored, rebuilt);
}
