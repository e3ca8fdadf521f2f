//! The cycle deadline: a cycle whose outcome was lost is failed `stage_timeout` by the
//! watchdog, its instance is freed by the close stage, an alert is raised, and the next cycle
//! runs; a cycle that moves is never failed; an ended cycle whose close was lost is closed; on
//! PostgreSQL two watchdogs act once. Real PBX simulators over HTTP, real stores.

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Backend, Harness};
use restorable_domain::alert::{AlertEvent, AlertKind, InstanceAlerts};
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::instance::{Instance, InstanceEvent};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::Fault;
use restorable_pipeline::deadlines::{Deadline, Deadlines};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::watchdog::{sweep, Action, Watchdog};

const SECURE: Duration = Duration::from_secs(30);
const CLOSE: Duration = Duration::from_secs(40);

/// Deadlines long enough for a healthy cycle on a busy test machine, exact (no per-GiB part),
/// and a watchdog that looks often.
fn settings() -> Settings {
    let rung = |secs| Deadline::new(Duration::from_secs(secs), Duration::ZERO);
    Settings {
        deadlines: Deadlines {
            capture: rung(60),
            secure: Deadline::new(SECURE, Duration::ZERO),
            verify: rung(60),
            restore_test: rung(120),
            close: CLOSE,
            check_every: Duration::from_millis(100),
        },
        ..Settings::default()
    }
}

fn after(at: DateTime<Utc>, duration: Duration, plus_secs: i64) -> DateTime<Utc> {
    at + chrono::Duration::from_std(duration).expect("duration")
        + chrono::Duration::seconds(plus_secs)
}

async fn instance(harness: &Harness, id: InstanceId) -> Instance {
    harness
        .pipeline
        .store
        .load(&id.to_string())
        .await
        .expect("instance")
}

async fn failed_events(harness: &Harness, cycle: CycleId) -> usize {
    harness
        .cycle_events(cycle)
        .await
        .iter()
        .filter(|e| *e == "Failed")
        .count()
}

/// A cycle left at Captured: the secure stage never ran, as if its outcome had been lost.
async fn stuck_at_captured(
    backend: Backend,
) -> (Harness, restorable_pbx_sim::RunningPbx, InstanceId, CycleId) {
    let harness = Harness::with_backend(backend, settings()).await;
    let pbx = harness.pbx("pbx-lost", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle).await;
    assert_eq!(harness.cycle(cycle).await.rung, Some(Rung::Captured));
    (harness, pbx, instance, cycle)
}

async fn the_deadline_frees_an_instance_whose_outcome_was_lost(backend: Backend) {
    let (harness, _pbx, instance_id, cycle_id) = stuck_at_captured(backend).await;
    let captured_at = harness
        .cycle(cycle_id)
        .await
        .captured
        .expect("captured")
        .captured_at;

    // Within the deadline of its rung nothing happens; past it, the secure stage is failed.
    let early = sweep(&harness.pipeline, after(captured_at, SECURE, -2), None)
        .await
        .expect("sweep");
    assert_eq!((early.in_flight, early.actions.len()), (1, 0), "{early:?}");
    let late = sweep(&harness.pipeline, after(captured_at, SECURE, 2), None)
        .await
        .expect("sweep");
    match late.actions.as_slice() {
        [Action::Failed {
            cycle,
            stage,
            detail,
        }] => {
            assert_eq!((*cycle, *stage), (cycle_id, Stage::Secure));
            assert!(
                detail.starts_with("no progress at Captured for 32s (deadline 30s)"),
                "{detail}"
            );
        }
        other => panic!("expected one failure, got {other:?}"),
    }
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Secure, FailureReason::StageTimeout, true)
    );
    // Still open on the instance until the close stage runs.
    assert_eq!(
        instance(&harness, instance_id).await.open_cycle,
        Some(cycle_id)
    );

    // The stages (the watchdog among them) run: close frees the instance, alerts raise.
    harness.drive(&[cycle_id]).await;
    assert_eq!(instance(&harness, instance_id).await.open_cycle, None);
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&instance_id.to_string())
        .await
        .expect("alerts");
    assert!(alerts.is_open(AlertKind::BackupFailed), "{alerts:?}");
    let raised = harness
        .pipeline
        .store
        .history("InstanceAlerts", &instance_id.to_string())
        .await
        .expect("history");
    let raised: Vec<_> = raised
        .iter()
        .filter_map(|e| match e.decode::<AlertEvent>() {
            Ok(AlertEvent::AlertRaised(raised)) => Some(raised),
            _ => None,
        })
        .collect();
    assert!(
        raised
            .iter()
            .any(|r| r.cycle_id == Some(cycle_id) && r.reason == Some(FailureReason::StageTimeout)),
        "{raised:?}"
    );
    assert_eq!(failed_events(&harness, cycle_id).await, 1);

    // The instance backs up again: the next cycle opens and climbs to its end, unharmed by the
    // watchdog running beside the stages.
    let next = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("the instance is free for its next cycle");
    harness.drive(&[next]).await;
    let next_cycle = harness.cycle(next).await;
    assert!(next_cycle.failed.is_none(), "{:?}", next_cycle.failed);
    assert!(
        next_cycle.rung >= Some(Rung::Verified),
        "{:?}",
        next_cycle.rung
    );
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&instance_id.to_string())
        .await
        .expect("alerts");
    assert!(
        !alerts.is_open(AlertKind::BackupFailed),
        "resolved by the next copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_frees_an_instance_whose_outcome_was_lost_sqlite() {
    the_deadline_frees_an_instance_whose_outcome_was_lost(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_frees_an_instance_whose_outcome_was_lost_postgres() {
    the_deadline_frees_an_instance_whose_outcome_was_lost(Backend::Postgres).await;
}

/// Time before the watchdog took its lock does not count: after a restart or an outage the
/// stages get a full deadline to catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_before_the_watchdog_looked_does_not_count() {
    let (harness, _pbx, _instance, cycle_id) = stuck_at_captured(Backend::Sqlite).await;
    let captured_at = harness
        .cycle(cycle_id)
        .await
        .captured
        .expect("captured")
        .captured_at;
    let now = after(captured_at, SECURE, 60);
    let since = now - chrono::Duration::seconds(5);
    let round = sweep(&harness.pipeline, now, Some(since))
        .await
        .expect("sweep");
    assert!(round.actions.is_empty(), "{round:?}");
    assert!(harness.cycle(cycle_id).await.failed.is_none());
    let round = sweep(
        &harness.pipeline,
        after(since.max(captured_at), SECURE, 1),
        Some(since),
    )
    .await
    .expect("sweep");
    assert_eq!(round.actions.len(), 1, "{round:?}");
}

/// A cycle that climbs is never failed: a whole cycle, the watchdog looking every 100 ms with
/// per-rung deadlines the whole cycle may exceed, ends on its last rung; and a look just
/// before the deadline of a standing cycle does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_that_moves_is_never_failed() {
    let harness = Harness::with_backend(Backend::Sqlite, settings()).await;
    let pbx = harness.pbx("pbx-moving", None).await;
    let instance_id = harness.enrol(&pbx, 60).await;
    for _ in 0..2 {
        let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
            .await
            .expect("open");
        harness.drive(&[cycle_id]).await;
        let cycle: BackupCycle = harness.cycle(cycle_id).await;
        assert!(cycle.failed.is_none(), "{:?}", cycle.failed);
        assert!(cycle.rung >= Some(Rung::Verified), "{:?}", cycle.rung);
    }
    let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;
    let captured_at = harness
        .cycle(cycle_id)
        .await
        .captured
        .expect("captured")
        .captured_at;
    for seconds in [-25, -5, -1] {
        let round = sweep(&harness.pipeline, after(captured_at, SECURE, seconds), None)
            .await
            .expect("sweep");
        assert!(round.actions.is_empty(), "{seconds}: {round:?}");
    }
    assert!(harness.cycle(cycle_id).await.failed.is_none());
}

/// A cycle that ended (here: capture failed) but whose close was lost is closed by the
/// watchdog past the close deadline, as the close stage would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_cycle_whose_close_was_lost_is_closed() {
    let harness = Harness::with_backend(Backend::Sqlite, settings()).await;
    let pbx = harness
        .pbx("pbx-refuses", Some(Fault::BadCredentials))
        .await;
    let instance_id = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await; // no close stage: its outcome is "lost"
    let failed = harness
        .cycle(cycle_id)
        .await
        .failed
        .expect("capture failed");
    assert_eq!(failed.reason, FailureReason::PbxAuth);
    assert_eq!(
        instance(&harness, instance_id).await.open_cycle,
        Some(cycle_id)
    );

    let early = sweep(&harness.pipeline, after(failed.failed_at, CLOSE, -2), None)
        .await
        .expect("sweep");
    assert!(early.actions.is_empty(), "{early:?}");
    let late = sweep(&harness.pipeline, after(failed.failed_at, CLOSE, 2), None)
        .await
        .expect("sweep");
    assert_eq!(late.actions, [Action::Closed { cycle: cycle_id }]);
    let state = instance(&harness, instance_id).await;
    assert_eq!(state.open_cycle, None);
    let history = harness
        .pipeline
        .store
        .history("Instance", &instance_id.to_string())
        .await
        .expect("history");
    let closed: Vec<_> = history
        .iter()
        .filter_map(|e| match e.decode::<InstanceEvent>() {
            Ok(InstanceEvent::CycleClosed(closed)) => Some(closed),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].cycle_id, closed[0].reached, closed[0].failed),
        (cycle_id, Rung::Started, true)
    );
    // Its original failure stands: nothing more is recorded on the cycle.
    assert_eq!(failed_events(&harness, cycle_id).await, 1);
    let again = sweep(&harness.pipeline, after(failed.failed_at, CLOSE, 60), None)
        .await
        .expect("sweep");
    assert_eq!((again.in_flight, again.actions.len()), (0, 0));
}

/// A cycle opened whose start was lost (no event on the cycle at all) is started and failed
/// on capture past the capture deadline, so its instance is freed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_whose_start_was_lost_is_failed() {
    let harness = Harness::with_backend(Backend::Sqlite, settings()).await;
    let pbx = harness.pbx("pbx-unstarted", None).await;
    let instance_id = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("open");
    let opened_at = instance(&harness, instance_id)
        .await
        .last_opened_at
        .expect("opened");
    let capture = Duration::from_secs(60);
    let early = sweep(&harness.pipeline, after(opened_at, capture, -2), None)
        .await
        .expect("sweep");
    assert!(early.actions.is_empty(), "{early:?}");
    let late = sweep(&harness.pipeline, after(opened_at, capture, 2), None)
        .await
        .expect("sweep");
    assert_eq!(late.actions.len(), 1, "{late:?}");
    assert_eq!(
        harness.cycle_events(cycle_id).await,
        ["CycleStarted", "Failed"]
    );
    let history = harness
        .pipeline
        .store
        .history("BackupCycle", &cycle_id.to_string())
        .await
        .expect("history");
    let Ok(BackupCycleEvent::Failed(failed)) = history[1].decode::<BackupCycleEvent>() else {
        panic!("not a Failed event");
    };
    assert_eq!(
        (failed.stage, failed.reason, failed.retryable),
        (Stage::Capture, FailureReason::StageTimeout, true)
    );
    assert!(
        failed.detail.starts_with("no progress at Opened"),
        "{}",
        failed.detail
    );
    harness.drive(&[cycle_id]).await;
    assert_eq!(instance(&harness, instance_id).await.open_cycle, None);
}

/// Two watchdogs on one PostgreSQL store (two processes): only the holder of the lock acts,
/// and the stuck cycle gets exactly one `Failed` event; when the holder goes, the other takes
/// over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchdogs_on_one_postgres_store_act_once() {
    let mut short = settings();
    short.deadlines.secure = Deadline::new(Duration::from_secs(1), Duration::ZERO);
    let harness = Harness::with_backend(Backend::Postgres, short).await;
    let pbx = harness.pbx("pbx-twice", None).await;
    let instance_id = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance_id, Trigger::Manual)
        .await
        .expect("open");
    harness.capture_only(cycle_id).await;

    let mut first = Watchdog::new(harness.pipeline.clone());
    let mut second = Watchdog::new(harness.pipeline.clone());
    let looked = first
        .round()
        .await
        .expect("round")
        .expect("the lock is free");
    assert_eq!(
        (looked.in_flight, looked.actions.len()),
        (1, 0),
        "{looked:?}"
    );
    assert!(
        second.round().await.expect("round").is_none(),
        "the lock is held"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (a, b) = tokio::join!(first.round(), second.round());
    let (a, b) = (a.expect("round"), b.expect("round"));
    assert!(
        b.is_none(),
        "the second never acts while the first holds the lock"
    );
    let acted = a.expect("the holder acts");
    assert_eq!(acted.actions.len(), 1, "{acted:?}");
    for _ in 0..3 {
        let (a, b) = tokio::join!(first.round(), second.round());
        assert!(a.expect("round").expect("held").actions.is_empty());
        assert!(b.expect("round").is_none());
    }
    assert_eq!(failed_events(&harness, cycle_id).await, 1);

    // The holder stops (and gives its lease back); the other takes over.
    first.release().await;
    let mut taken = None;
    for _ in 0..50 {
        taken = second.round().await.expect("round");
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = taken.expect("the second takes the lock over");
    assert!(taken.actions.is_empty(), "{taken:?}");
    assert_eq!(failed_events(&harness, cycle_id).await, 1);
}
