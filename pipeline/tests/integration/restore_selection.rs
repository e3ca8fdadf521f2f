//! Restore depth over the real pipeline: an instance whose restore tests draw at random among
//! its Verified copies of the last N days (`random_within_days`). The draw is a hash of the
//! cycle's id, so each test opens the cycle whose id draws the copy it wants. An older copy
//! drawn is restored and recorded on its own cycle while the new copy stays at Verified, and
//! the cycle's close names it, resetting the cadence; an older copy that no longer restores (gone
//! from the vault) fails on its own cycle and raises Backup Failed for it, the
//! restore test stays due, and the next passed one resolves the alert. Copies outside the window,
//! failed or already restore-tested are never drawn; `newest` never draws an older copy.

use crate::common;

use chrono::Utc;
use common::{Backend, Harness};
use restorable_domain::alert::{AlertKind, InstanceAlerts};
use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::instance::{
    CycleOpened, Instance, InstanceCommand, InstanceEvent, RestorePolicy, RestoreSelection,
};
use restorable_domain::ladder::{Rung, Stage, Trigger};
use restorable_pbx_sim::RunningPbx;
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::stages::restore_test::{draw, pick_older};
use rstest::rstest;

/// Restore-test every third Verified cycle (and the first), drawing within `days`.
fn every_third(selection: RestoreSelection) -> RestorePolicy {
    RestorePolicy {
        every_nth_verified: 3,
        max_age_hours: 24 * 365,
        selection,
        ..RestorePolicy::default()
    }
}

/// Opens a cycle of `instance` whose id draws `wanted` of `choices`, and drives it.
async fn cycle_drawing(
    harness: &Harness,
    instance: InstanceId,
    wanted: usize,
    choices: usize,
) -> CycleId {
    let cycle_id = loop {
        let id = CycleId::random();
        if draw(&id.to_string(), choices) == wanted {
            break id;
        }
    };
    let open = InstanceCommand::OpenCycle(CycleOpened {
        cycle_id,
        trigger: Trigger::Manual,
        opened_at: Utc::now(),
    });
    harness
        .pipeline
        .store
        .instance(&instance.to_string(), open)
        .await
        .expect("open");
    harness.drive(&[cycle_id]).await;
    cycle_id
}

/// An instance with cycle 1 Restore-Tested (the first always is) and cycles 2 and 3 Verified
/// (not due), sorted as the draw orders them: the older candidates by cycle id.
async fn three_cycles(
    harness: &Harness,
    pbx: &RunningPbx,
    selection: RestoreSelection,
) -> (InstanceId, CycleId, Vec<CycleId>) {
    let instance = harness
        .enrol_with_policy(pbx, 24 * 60, every_third(selection))
        .await;
    let mut cycles = Vec::new();
    for _ in 0..3 {
        let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        harness.drive(&[cycle]).await;
        cycles.push(cycle);
    }
    assert_eq!(
        harness.cycle(cycles[0]).await.rung,
        Some(Rung::RestoreTested)
    );
    for cycle in &cycles[1..] {
        let loaded = harness.cycle(*cycle).await;
        assert_eq!(loaded.rung, Some(Rung::Verified), "not due: stays Verified");
        assert!(!loaded.is_failed());
    }
    let mut verified = cycles[1..].to_vec();
    verified.sort_by_key(ToString::to_string);
    (instance, cycles[0], verified)
}

/// The instance's `CycleClosed` of `cycle`.
async fn closed(harness: &Harness, instance: InstanceId, cycle: CycleId) -> InstanceEvent {
    harness
        .pipeline
        .store
        .history("Instance", &instance.to_string())
        .await
        .expect("history")
        .iter()
        .filter(|e| e.event_type == "CycleClosed")
        .filter_map(|e| e.decode::<InstanceEvent>().ok())
        .find(|e| matches!(e, InstanceEvent::CycleClosed(c) if c.cycle_id == cycle))
        .expect("closed")
}

/// Every event of `cycles` and of the instance delivered to the alerts stage, twice.
async fn alert_on(harness: &Harness, instance: InstanceId, cycles: &[CycleId]) -> InstanceAlerts {
    let mut histories: Vec<_> = cycles
        .iter()
        .map(|cycle| ("BackupCycle", cycle.to_string()))
        .collect();
    histories.push(("Instance", instance.to_string()));
    common::deliver_to_alerts(&harness.pipeline, &histories, 2).await;
    harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("alerts")
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_copy_drawn_is_restored_on_its_own_cycle_and_the_new_one_stays_verified(
    #[case] backend: Backend,
) {
    let harness = Harness::on(backend).await;
    let pbx = harness.pbx("random-older", None).await;
    let selection = RestoreSelection::RandomWithinDays { days: 30 };
    let (instance, _, older) = three_cycles(&harness, &pbx, selection).await;

    // Cycle 4 is due; it draws the first older copy (of three choices: two older, its own).
    let fourth = cycle_drawing(&harness, instance, 0, 3).await;
    let drawn = harness.cycle(older[0]).await;
    assert_eq!(
        drawn.rung,
        Some(Rung::RestoreTested),
        "the older copy drawn"
    );
    assert!(!drawn.is_failed());
    let untouched = harness.cycle(older[1]).await;
    assert_eq!(untouched.rung, Some(Rung::Verified), "the one not drawn");
    let new = harness.cycle(fourth).await;
    assert_eq!(
        new.rung,
        Some(Rung::Verified),
        "no rung claimed for the copy that was not restored"
    );
    assert!(!new.is_failed());
    assert!(
        !harness
            .cycle_events(fourth)
            .await
            .contains(&"RestoreTested".to_owned()),
        "its own copy was not restore-tested"
    );
    let InstanceEvent::CycleClosed(close) = closed(&harness, instance, fourth).await else {
        unreachable!("found by matches! above");
    };
    assert_eq!(close.reached, Rung::Verified);
    assert_eq!(close.restore_tested_copy, Some(older[0]));
    let state: Instance = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("instance");
    assert_eq!(state.open_cycle, None, "the cycle closed");
    assert_eq!(
        state.verified_since_restore_test, 0,
        "the cadence starts again"
    );
    assert_eq!(state.last_restore_tested_at, Some(close.closed_at));
    assert!(!state.restore_test_due(Utc::now()));
    pbx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_copy_that_no_longer_restores_is_found_and_alerted_until_a_test_passes() {
    let harness = Harness::new().await;
    let pbx = harness.pbx("random-rotten", None).await;
    let selection = RestoreSelection::RandomWithinDays { days: 30 };
    let (instance, _, older) = three_cycles(&harness, &pbx, selection).await;
    let rotten = harness.cycle(older[1]).await;
    let captured = rotten.captured.as_ref().expect("captured");
    common::remove_from_vault(&harness.vault_object(&captured.object_key));

    let fourth = cycle_drawing(&harness, instance, 1, 3).await;
    let failed = harness.cycle(older[1]).await;
    let failure = failed.failed.as_ref().expect("the rotten copy failed");
    assert_eq!(failure.stage, Stage::RestoreTest);
    assert_eq!(harness.cycle(fourth).await.rung, Some(Rung::Verified));
    let InstanceEvent::CycleClosed(close) = closed(&harness, instance, fourth).await else {
        unreachable!("found by matches! above");
    };
    assert_eq!(close.restore_tested_copy, None, "the test did not pass");
    assert!(!close.failed, "the new copy is fine");
    let state: Instance = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("instance");
    assert!(state.restore_test_due(Utc::now()), "still due");
    let alerts = alert_on(&harness, instance, &[older[1], fourth]).await;
    assert_eq!(alerts.open.len(), 1, "{:?}", alerts.open);
    assert_eq!(alerts.open[0].kind, AlertKind::BackupFailed);
    assert_eq!(
        alerts.open[0].cycle_id,
        Some(older[1]),
        "raised for the rotten copy"
    );
    assert_eq!(alerts.open[0].stage, Some(Stage::RestoreTest));

    // Cycle 5 is due again; candidates now: the first older copy and cycle 4 (the rotten one
    // failed), its own last. It draws cycle 4's copy, which restores: the alert resolves.
    let mut candidates = [older[0], fourth];
    candidates.sort_by_key(ToString::to_string);
    let wanted = candidates
        .iter()
        .position(|c| *c == fourth)
        .expect("a candidate");
    let fifth = cycle_drawing(&harness, instance, wanted, 3).await;
    assert_eq!(harness.cycle(fourth).await.rung, Some(Rung::RestoreTested));
    let alerts = alert_on(&harness, instance, &[older[1], fourth, fifth]).await;
    assert_eq!(alerts.open, vec![], "a passed restore test resolves it");
    pbx.shutdown().await;
}

/// What the draw may pick: never a copy outside the window, failed, or already restore-tested;
/// under `newest`, never an older copy at all; over many cycles, every candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_draw_takes_only_verified_copies_within_the_window_and_each_of_them() {
    let harness = Harness::new().await;
    let pbx = harness.pbx("random-draw", None).await;
    let selection = RestoreSelection::RandomWithinDays { days: 30 };
    let (instance, first, older) = three_cycles(&harness, &pbx, selection).await;
    let as_if = |cycle_id: CycleId| {
        let mut probe: BackupCycle = BackupCycle::default();
        let mut started = restorable_domain::cycle::examples::started();
        started.instance_id = instance;
        started.cycle_id = cycle_id;
        probe.started = Some(started);
        probe
    };
    let now = Utc::now();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let probe = as_if(CycleId::random());
        let picked = pick_older(&harness.pipeline, &probe, now)
            .await
            .expect("pick")
            .and_then(|c| c.started.map(|s| s.cycle_id));
        *seen.entry(picked).or_insert(0u32) += 1;
    }
    assert!(
        !seen.contains_key(&Some(first)),
        "restore-tested already: {seen:?}"
    );
    for candidate in [None, Some(older[0]), Some(older[1])] {
        assert!(
            seen.contains_key(&candidate),
            "{candidate:?} never drawn: {seen:?}"
        );
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // 31 days on, every copy is outside the 30-day window: only the cycle's own.
    let later = now + chrono::Duration::days(31);
    for _ in 0..20 {
        let picked = pick_older(&harness.pipeline, &as_if(CycleId::random()), later)
            .await
            .expect("pick");
        assert!(picked.is_none());
    }

    // Under `newest` no older copy is ever drawn.
    let newest_pbx = harness.pbx("newest-draw", None).await;
    let (newest, _, _) = three_cycles(&harness, &newest_pbx, RestoreSelection::Newest).await;
    for _ in 0..20 {
        let mut probe = as_if(CycleId::random());
        if let Some(started) = probe.started.as_mut() {
            started.instance_id = newest;
        }
        let picked = pick_older(&harness.pipeline, &probe, now)
            .await
            .expect("pick");
        assert!(picked.is_none());
    }
    pbx.shutdown().await;
    newest_pbx.shutdown().await;
}
