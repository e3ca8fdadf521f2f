//! Rotating re-checks over the real pipeline (copies made by the simulator, stored in the local
//! vault), swept with an injected clock: every copy is proven again within the window and not
//! twice for one slot; a flipped byte and a deleted object are found, recorded on their cycle
//! and alerted ("Re-check Failed", delivered twice more: one alert), the coverage says so; the
//! copy made whole again resolves its alert at its next slot, and changed once more raises a
//! second; a lock weakened to governance is
//! `not_locked`; an index that lost rows is rebuilt. On PostgreSQL, two sweeps at once share the
//! due copies without reading one twice.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use chrono::{DateTime, Utc};
use common::{Backend, Harness};
use restorable_domain::alert::{AlertKind, InstanceAlerts};
use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::ladder::{FailureReason, Rung, Trigger};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::recheck::{index, next_slot, sweep_at, Sweep};
use restorable_pipeline::store::RecheckCoverage;

/// A stored copy of the test: its cycle, instance, object file and when it was Secured.
struct Copy {
    cycle: CycleId,
    instance: InstanceId,
    file: std::path::PathBuf,
    secured_at: DateTime<Utc>,
}

/// `count` copies, each of its own PBX, driven through the whole pipeline.
async fn copies(harness: &Harness, count: usize) -> Vec<Copy> {
    let mut made = Vec::new();
    // The simulators serve until the cycles are driven; the re-checks read only the vault.
    let mut pbxes = Vec::new();
    for n in 0..count {
        let pbx = harness.pbx(&format!("recheck-{n}"), None).await;
        let instance = harness.enrol(&pbx, 60).await;
        let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        made.push((cycle, instance));
        pbxes.push(pbx);
    }
    let cycles: Vec<CycleId> = made.iter().map(|(c, _)| *c).collect();
    harness.drive(&cycles).await;
    drop(pbxes);
    let mut copies = Vec::new();
    for (cycle, instance) in made {
        let climbed: BackupCycle = harness.cycle(cycle).await;
        assert!(climbed.rung >= Some(Rung::Verified), "{climbed:?}");
        let captured = climbed.captured.expect("captured");
        let history = harness.cycle_events(cycle).await;
        assert!(history.contains(&"Secured".to_owned()), "{history:?}");
        let secured_at = secured_at(harness, cycle).await;
        copies.push(Copy {
            cycle,
            instance,
            file: harness.vault_object(&captured.object_key),
            secured_at,
        });
    }
    copies
}

async fn secured_at(harness: &Harness, cycle: CycleId) -> DateTime<Utc> {
    let history = harness
        .pipeline
        .store
        .history("BackupCycle", &cycle.to_string())
        .await
        .expect("history");
    history
        .iter()
        .find(|e| e.event_type == "Secured")
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.payload).ok())
        .and_then(|p| p["Secured"]["secured_at"].as_str().map(str::to_owned))
        .and_then(|t| t.parse().ok())
        .expect("secured_at")
}

/// The cycle ids of a sweep's proven copies, sorted.
fn proven(sweep: &Sweep) -> BTreeSet<String> {
    sweep.proven.iter().cloned().collect()
}

/// Every event of the copies' cycles delivered to the alerts stage, twice (at-least-once).
async fn alert_on(harness: &Harness, copies: &[Copy]) {
    let histories: Vec<_> = copies
        .iter()
        .map(|copy| ("BackupCycle", copy.cycle.to_string()))
        .collect();
    common::deliver_to_alerts(&harness.pipeline, &histories, 2).await;
}

/// The open Re-check Failed alerts of an instance: their reasons.
async fn recheck_alerts(harness: &Harness, instance: InstanceId) -> Vec<String> {
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("alerts");
    let history = harness
        .pipeline
        .store
        .history("InstanceAlerts", &instance.to_string())
        .await
        .expect("history");
    alerts
        .open
        .iter()
        .filter(|open| open.kind == AlertKind::RecheckFailed)
        .map(|open| {
            history
                .iter()
                .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).ok())
                .find(|p| p["AlertRaised"]["alert_id"] == open.alert_id.as_str())
                .map(|p| p["AlertRaised"]["reason"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default()
        })
        .collect()
}

async fn coverage(harness: &Harness, at: DateTime<Utc>) -> RecheckCoverage {
    let window = harness.pipeline.settings.recheck_window;
    harness
        .pipeline
        .store
        .recheck_coverage(None, (at - window).timestamp_millis())
        .await
        .expect("coverage")
}

fn event_count(history: &[String], kind: &str) -> usize {
    history.iter().filter(|t| *t == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_copy_is_proven_within_the_window_and_a_changed_or_gone_copy_is_alerted() {
    let harness = Harness::new().await;
    let window = harness.pipeline.settings.recheck_window;
    assert_eq!(window, chrono::Duration::days(7), "the default window");
    let copies = copies(&harness, 3).await;
    let all: BTreeSet<String> = copies.iter().map(|c| c.cycle.to_string()).collect();
    let slot = |copy: &Copy| next_slot(&copy.cycle.to_string(), copy.secured_at, window);

    // Now: only a copy whose first slot has already come (rare: it was just Secured) is due.
    let now = Utc::now();
    let expected: BTreeSet<String> = copies
        .iter()
        .filter(|c| slot(c) <= now)
        .map(|c| c.cycle.to_string())
        .collect();
    assert_eq!(
        proven(&sweep_at(&harness.pipeline, now).await.expect("sweep")),
        expected
    );
    let fresh = coverage(&harness, now).await;
    assert_eq!((fresh.copies, fresh.proven, fresh.failing), (3, 3, 0));

    // Within one window of being Secured, every copy is read back once; not twice for a slot.
    let week = now + window + chrono::Duration::minutes(1);
    for copy in &copies {
        assert!(slot(copy) <= week, "a slot within the window");
    }
    // (A copy proven early is due again by then: its next slot is a window after its first.)
    let first = sweep_at(&harness.pipeline, week).await.expect("sweep");
    assert_eq!(proven(&first), all, "every copy proven within the window");
    assert!(
        first.failed.is_empty() && first.deferred.is_empty(),
        "{first:?}"
    );
    assert_eq!(
        sweep_at(&harness.pipeline, week).await.expect("sweep"),
        Sweep::default()
    );
    for copy in &copies {
        let history = harness.cycle_events(copy.cycle).await;
        let proofs = 1 + usize::from(expected.contains(&copy.cycle.to_string()));
        assert_eq!(event_count(&history, "Rechecked"), proofs, "{history:?}");
    }
    let covered = coverage(&harness, week).await;
    assert_eq!((covered.copies, covered.proven, covered.failing), (3, 3, 0));

    // Bit rot in one copy, another gone: found at their next slot, the third still proven.
    common::flip_a_byte(&copies[0].file);
    std::fs::remove_file(&copies[1].file).expect("delete");
    let fortnight = week + window;
    let second = sweep_at(&harness.pipeline, fortnight).await.expect("sweep");
    let mut failed = second.failed.clone();
    failed.sort();
    let mut expected_failures = vec![
        (
            copies[0].cycle.to_string(),
            FailureReason::ChecksumMismatch.to_string(),
        ),
        (
            copies[1].cycle.to_string(),
            FailureReason::ObjectMissing.to_string(),
        ),
    ];
    expected_failures.sort();
    assert_eq!(failed, expected_failures);
    assert_eq!(
        proven(&second),
        BTreeSet::from([copies[2].cycle.to_string()])
    );
    for copy in &copies[..2] {
        let climbed = harness.cycle(copy.cycle).await;
        assert!(
            !climbed.is_failed(),
            "a failed re-check does not end the cycle"
        );
        assert!(climbed.rung >= Some(Rung::Verified));
    }
    // An hour on, the two copies' last proofs (a window ago) are out of the window.
    let failing = coverage(&harness, fortnight + chrono::Duration::hours(1)).await;
    assert_eq!((failing.copies, failing.proven, failing.failing), (3, 1, 2));
    assert!(failing.share() < 0.34, "{failing:?}");

    alert_on(&harness, &copies).await;
    assert_eq!(
        recheck_alerts(&harness, copies[0].instance).await,
        vec!["checksum_mismatch".to_owned()]
    );
    assert_eq!(
        recheck_alerts(&harness, copies[1].instance).await,
        vec!["object_missing".to_owned()]
    );
    assert_eq!(
        recheck_alerts(&harness, copies[2].instance).await,
        Vec::<String>::new()
    );

    // The changed copy made whole again: its next re-check proves it and resolves its alert;
    // the gone one stays failing and alerted.
    common::flip_a_byte(&copies[0].file);
    let third_week = fortnight + window;
    let third = sweep_at(&harness.pipeline, third_week)
        .await
        .expect("sweep");
    assert!(
        proven(&third).contains(&copies[0].cycle.to_string()),
        "{third:?}"
    );
    assert_eq!(third.failed.len(), 1, "{third:?}");
    alert_on(&harness, &copies).await;
    assert_eq!(
        recheck_alerts(&harness, copies[0].instance).await,
        Vec::<String>::new()
    );
    assert_eq!(
        recheck_alerts(&harness, copies[1].instance).await,
        vec!["object_missing".to_owned()]
    );
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&copies[1].instance.to_string())
        .await
        .expect("alerts");
    assert_eq!(
        alerts.raised, 1,
        "one alert for the gone copy, not one per re-check"
    );

    // The recovered copy changed again: a second alert, though its first failure (delivered
    // again above, after the recovery) raised nothing more.
    common::flip_a_byte(&copies[0].file);
    let fourth = sweep_at(&harness.pipeline, third_week + window)
        .await
        .expect("sweep");
    assert!(
        fourth
            .failed
            .contains(&(copies[0].cycle.to_string(), "checksum_mismatch".to_owned())),
        "{fourth:?}"
    );
    alert_on(&harness, &copies).await;
    assert_eq!(
        recheck_alerts(&harness, copies[0].instance).await,
        vec!["checksum_mismatch".to_owned()]
    );
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&copies[0].instance.to_string())
        .await
        .expect("alerts");
    assert_eq!(alerts.raised, 2, "the first failure and the new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_at_once_share_the_due_copies_on_postgresql() {
    let harness = Harness::on(Backend::Postgres).await;
    let window = harness.pipeline.settings.recheck_window;
    let copies = copies(&harness, 4).await;
    let all: BTreeSet<String> = copies.iter().map(|c| c.cycle.to_string()).collect();
    // The index learns of the copies now (a sweep's first step), as a sweeping worker would.
    let now = Utc::now();
    restorable_pipeline::recheck::index::refresh(&harness.pipeline.store, window, now)
        .await
        .expect("refresh");
    let week = now + window + chrono::Duration::minutes(1);
    let (a, b) = tokio::join!(
        sweep_at(&harness.pipeline, week),
        sweep_at(&harness.pipeline, week)
    );
    let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
    let (a, b) = (proven(&a), proven(&b));
    assert!(a.is_disjoint(&b), "no copy read by both: {a:?} {b:?}");
    let mut both = a;
    both.extend(b);
    assert_eq!(both, all, "every due copy read by one of them");
    let again = sweep_at(&harness.pipeline, week).await.expect("sweep");
    assert_eq!(again, Sweep::default());
    for copy in &copies {
        let history = harness.cycle_events(copy.cycle).await;
        assert_eq!(event_count(&history, "Rechecked"), 1, "{history:?}");
    }
    let covered = coverage(&harness, week).await;
    assert_eq!((covered.copies, covered.proven), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_lost_rows_is_rebuilt_and_its_copies_are_rechecked_again() {
    let harness = Harness::new().await;
    let window = harness.pipeline.settings.recheck_window;
    let copies = copies(&harness, 2).await;
    let store = &harness.pipeline.store;
    let now = Utc::now();
    assert!(!index::reconcile(store, window, now)
        .await
        .expect("reconcile"));
    // Rows lost behind the log's back: the coverage would count nothing, the sweep read nothing.
    store
        .execute_sql("DELETE FROM copy_rechecks")
        .await
        .expect("delete");
    assert_eq!(coverage(&harness, now).await.copies, 0);
    assert!(index::reconcile(store, window, now)
        .await
        .expect("reconcile"));
    assert_eq!(coverage(&harness, now).await.copies, 2);
    let week = now + window + chrono::Duration::minutes(1);
    let swept = sweep_at(&harness.pipeline, week).await.expect("sweep");
    let all: BTreeSet<String> = copies.iter().map(|c| c.cycle.to_string()).collect();
    assert_eq!(proven(&swept), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_lock_was_weakened_fails_its_recheck_not_locked() {
    let harness = Harness::new().await;
    let window = harness.pipeline.settings.recheck_window;
    let copies = copies(&harness, 1).await;
    let now = Utc::now();
    index::refresh(&harness.pipeline.store, window, now)
        .await
        .expect("refresh");
    // The vault's record of the copy's lock turned to governance (bypassable) behind our back.
    let climbed = harness.cycle(copies[0].cycle).await;
    let key = climbed.captured.expect("captured").object_key;
    let meta = harness.vault_record(&key);
    std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("read")).expect("json");
    assert_eq!(record["lock"]["mode"], "compliance", "{record}");
    record["lock"]["mode"] = "governance".into();
    std::fs::write(&meta, record.to_string()).expect("write");
    let week = now + window + chrono::Duration::minutes(1);
    let swept = sweep_at(&harness.pipeline, week).await.expect("sweep");
    assert_eq!(
        swept.failed,
        vec![(
            copies[0].cycle.to_string(),
            FailureReason::NotLocked.to_string()
        )]
    );
    let history = harness.cycle_events(copies[0].cycle).await;
    assert_eq!(event_count(&history, "RecheckFailed"), 1, "{history:?}");
}
