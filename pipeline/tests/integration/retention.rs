//! Retention over the real pipeline (copies made by the simulator, stored in the local vault
//! under a lock of two seconds): once the locks have run out, a sweep removes every copy but
//! the instance's newest Verified and newest Restore-Tested ones, whose locks it extends; the
//! vault, the cycles' events and the stored copies' index agree, a second sweep does nothing,
//! and no re-check reads a removed copy. A copy a re-check is reading waits; a delete the vault
//! refuses records nothing; one the vault did but the log missed is recorded by the next sweep.
//! An offboarded instance stops for good, keeps its newest good copy until its purge date (its
//! lock never extended past it), and from that date loses every copy and its credentials.

use crate::common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use common::{Backend, Harness};
use restorable_domain::cycle::{BackupCycle, KeptBecause, RemovedBecause};
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::instance::{Instance, InstanceCommand, SealedCredentials};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::retention::{offboard, sweep_at, RetentionPolicy};
use rstest::rstest;

/// Copies locked for two seconds.
fn short_locks(remove_after: chrono::Duration) -> Settings {
    Settings {
        retention: chrono::Duration::seconds(2),
        retention_policy: RetentionPolicy {
            remove_after,
            ..RetentionPolicy::default()
        },
        ..Settings::default()
    }
}

/// `count` cycles of one instance, one after the other, driven up the ladder.
async fn cycles_of(harness: &Harness, name: &str, count: usize) -> (InstanceId, Vec<CycleId>) {
    let pbx = harness.pbx(name, None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let mut cycles = Vec::new();
    for _ in 0..count {
        let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        harness.drive(&[cycle]).await;
        cycles.push(cycle);
    }
    (instance, cycles)
}

/// Waits until every lock of `cycles` has run out (by the wall clock: the local vault's).
async fn locks_run_out(harness: &Harness, cycles: &[CycleId]) {
    let mut last = Utc::now();
    for cycle in cycles {
        let loaded = harness.cycle(*cycle).await;
        last = last.max(loaded.retain_until.expect("a stored copy"));
    }
    let wait = (last - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(1100)).await;
}

fn object_file(harness: &Harness, cycle: &BackupCycle) -> std::path::PathBuf {
    harness.vault_object(&cycle.captured.as_ref().expect("captured").object_key)
}

fn ids(cycles: impl IntoIterator<Item = CycleId>) -> BTreeSet<String> {
    cycles.into_iter().map(|c| c.to_string()).collect()
}

/// What the vault's record says the copy's lock is.
async fn vault_lock(harness: &Harness, cycle: &BackupCycle) -> Option<DateTime<Utc>> {
    let key = &cycle.captured.as_ref().expect("captured").object_key;
    let head = harness.pipeline.vault.head(key).await.expect("head");
    head.and_then(|o| o.lock).map(|l| l.retain_until)
}

/// The copies the rules keep (the newest Verified and the newest Restore-Tested) and the
/// others, oldest first.
async fn kept_and_gone(harness: &Harness, cycles: &[CycleId]) -> (BTreeSet<String>, Vec<CycleId>) {
    let mut newest_verified = None;
    let mut newest_tested = None;
    for cycle in cycles {
        let loaded = harness.cycle(*cycle).await;
        assert!(loaded.rung >= Some(Rung::Verified), "{loaded:?}");
        newest_verified = Some(*cycle);
        if loaded.rung == Some(Rung::RestoreTested) {
            newest_tested = Some(*cycle);
        }
    }
    let kept = ids(newest_verified.into_iter().chain(newest_tested));
    let gone = cycles
        .iter()
        .copied()
        .filter(|c| !kept.contains(&c.to_string()))
        .collect();
    (kept, gone)
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread")]
async fn expired_copies_go_while_the_newest_good_ones_stay_locked(#[case] backend: Backend) {
    let harness = Harness::with_backend(backend, short_locks(chrono::Duration::days(30))).await;
    let (_, cycles) = cycles_of(&harness, "retention-a", 4).await;
    let (kept, gone) = kept_and_gone(&harness, &cycles).await;
    let gone = ids(gone);
    assert!(!gone.is_empty(), "at least one copy to remove: {kept:?}");

    // (Before a lock runs out nothing is touched: `plan::decide` says `Locked`, and the cycle
    // refuses a removal with `StillLocked` — tested in their modules, not here, where a loaded
    // machine can make the first copy's two seconds run out before the last one is made.)
    locks_run_out(&harness, &cycles).await;
    let now = Utc::now();
    let sweep = sweep_at(&harness.pipeline, now).await.expect("sweep");
    assert_eq!(sweep.removed.iter().cloned().collect::<BTreeSet<_>>(), gone);
    let extended: BTreeSet<String> = sweep.extended.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(extended, kept);
    assert!(sweep
        .extended
        .iter()
        .all(|(_, because)| *because == KeptBecause::NewestGood));
    assert!(
        sweep.deferred.is_empty() && sweep.refused.is_empty(),
        "{sweep:?}"
    );

    for cycle in &cycles {
        let loaded = harness.cycle(*cycle).await;
        let file = object_file(&harness, &loaded);
        if gone.contains(&cycle.to_string()) {
            let removed = loaded.removed.as_ref().expect("recorded removed");
            assert_eq!(removed.because, RemovedBecause::Expired);
            assert!(removed.removed_at >= removed.retain_until);
            assert!(!file.exists(), "{} still in the vault", file.display());
        } else {
            assert!(loaded.removed.is_none());
            assert!(file.exists());
            let until = loaded.retain_until.expect("lock");
            assert!(until > now, "extended past now: {until}");
            // The vault holds the lock the event says.
            assert_eq!(vault_lock(&harness, &loaded).await, Some(until));
        }
    }

    // A second sweep at the same moment finds nothing to do and records nothing.
    let events_before = harness.pipeline.store.log_end().await.expect("log end");
    let again = sweep_at(&harness.pipeline, now).await.expect("sweep again");
    assert!(
        again.removed.is_empty() && again.extended.is_empty(),
        "{again:?}"
    );
    assert_eq!(
        harness.pipeline.store.log_end().await.expect("log end"),
        events_before
    );

    // The index follows: only the kept copies are watched, and a re-check sweep a window later
    // proves them and never reads a removed copy (no false Re-check Failed).
    let later = now + harness.pipeline.settings.recheck_window + chrono::Duration::days(1);
    let coverage = harness
        .pipeline
        .store
        .recheck_coverage(None, 0)
        .await
        .expect("coverage");
    assert_eq!(coverage.copies, kept.len() as u64);
    let rechecked = restorable_pipeline::recheck::sweep_at(&harness.pipeline, later)
        .await
        .expect("re-check sweep");
    assert!(rechecked.failed.is_empty(), "{rechecked:?}");
    assert_eq!(
        rechecked.proven.iter().cloned().collect::<BTreeSet<_>>(),
        kept
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_being_rechecked_or_refused_by_the_vault_is_left_and_nothing_is_recorded() {
    let harness = Harness::with(short_locks(chrono::Duration::days(30))).await;
    let (_, cycles) = cycles_of(&harness, "retention-b", 5).await;
    let (_, gone) = kept_and_gone(&harness, &cycles).await;
    assert!(gone.len() >= 2, "two copies no rule keeps: {gone:?}");
    locks_run_out(&harness, &cycles).await;
    let store = &harness.pipeline.store;
    restorable_pipeline::recheck::index::refresh(
        store,
        harness.pipeline.settings.recheck_window,
        Utc::now(),
    )
    .await
    .expect("index");
    // A re-check sweep claims copies one at a time (far ahead) until it holds one no rule keeps.
    let gone_ids = ids(gone.iter().copied());
    let far = (Utc::now() + chrono::Duration::days(30)).timestamp_millis();
    let oldest = loop {
        let batch = store
            .claim_rechecks(far, far + 3_600_000, 1)
            .await
            .expect("claim");
        let (cycle, _) = batch.into_iter().next().expect("a claimable copy");
        if gone_ids.contains(&cycle) {
            break cycle;
        }
    };
    let held: CycleId = oldest.parse().expect("cycle id");
    let free: Vec<CycleId> = gone.iter().copied().filter(|c| *c != held).collect();
    // Another such copy's vault record is made unreadable: the vault cannot say what it holds.
    let second = harness.cycle(free[0]).await;
    let second_id = free[0].to_string();
    let file = object_file(&harness, &second);
    let key = &second.captured.as_ref().expect("captured").object_key;
    let record = harness.vault_record(key);
    let good_record = std::fs::read(&record).expect("the vault's record");
    std::fs::write(&record, b"{ not json").expect("garble the record");

    let sweep = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    // The copy a re-check holds waits; the one the vault refuses is not recorded removed.
    assert!(sweep.deferred.contains(&oldest), "{sweep:?}");
    assert!(!sweep.removed.contains(&oldest));
    assert!(harness.cycle(held).await.removed.is_none());
    assert!(!sweep.removed.contains(&second_id), "{sweep:?}");
    assert!(
        sweep.refused.iter().any(|(c, _)| *c == second_id) || sweep.deferred.contains(&second_id),
        "{sweep:?}"
    );
    assert!(harness.cycle(free[0]).await.removed.is_none());
    // The rest went.
    for cycle in &free[1..] {
        assert!(sweep.removed.contains(&cycle.to_string()), "{sweep:?}");
    }

    // Once the vault can, the next sweep removes it.
    std::fs::write(&record, &good_record).expect("mend the record");
    assert!(file.exists());
    let sweep = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    assert!(sweep.removed.contains(&second_id), "{sweep:?}");
    assert!(!file.exists());
    assert!(harness.cycle(free[0]).await.removed.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offboarded_instance_keeps_its_newest_copy_until_its_purge_date() {
    // The default grace: 30 days.
    let harness = Harness::with(short_locks(chrono::Duration::days(30))).await;
    let (instance, cycles) = cycles_of(&harness, "retention-c", 4).await;
    let (kept, gone) = kept_and_gone(&harness, &cycles).await;
    assert!(!gone.is_empty(), "a copy no rule keeps: {kept:?}");
    let id = instance.to_string();
    let removed_at = Utc::now();
    let purge_after = offboard(&harness.pipeline, &id, removed_at)
        .await
        .expect("offboard");
    assert_eq!(purge_after, removed_at + chrono::Duration::days(30));
    // Removing again keeps the first date.
    let again = offboard(
        &harness.pipeline,
        &id,
        removed_at + chrono::Duration::days(1),
    )
    .await
    .expect("offboard again");
    assert_eq!(again, purge_after);
    // Stopped for good.
    let resume = InstanceCommand::Resume { at: Utc::now() };
    let refused = harness.pipeline.store.instance(&id, resume).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_refusal()),
        "{refused:?}"
    );
    assert!(open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .is_err());

    locks_run_out(&harness, &cycles).await;
    // A day before the purge date (an injected clock), the usual rules hold: the copies no rule
    // keeps go as expired, the newest good ones stay, locked no later than the purge date; no
    // purge.
    let sweep = sweep_at(&harness.pipeline, purge_after - chrono::Duration::days(1))
        .await
        .expect("sweep");
    assert_eq!(
        sweep.removed.iter().cloned().collect::<BTreeSet<_>>(),
        ids(gone.iter().copied())
    );
    assert_eq!(
        sweep
            .extended
            .iter()
            .map(|(c, _)| c.clone())
            .collect::<BTreeSet<_>>(),
        kept
    );
    assert!(sweep.purged.is_empty());
    for cycle in &cycles {
        let loaded = harness.cycle(*cycle).await;
        if kept.contains(&cycle.to_string()) {
            assert!(loaded.retain_until.is_some_and(|u| u <= purge_after));
        } else {
            assert_eq!(
                loaded.removed.map(|r| r.because),
                Some(RemovedBecause::Expired)
            );
        }
    }
    let state: Instance = harness.pipeline.store.load(&id).await.expect("instance");
    assert!(state.purged_at.is_none());
    assert_eq!(state.purge_due_at(), Some(purge_after));
}

#[tokio::test(flavor = "multi_thread")]
async fn from_its_purge_date_an_offboarded_instance_loses_every_copy_and_its_credentials() {
    // A grace of three seconds, so the vault's own clock sees the purge date pass too.
    let harness = Harness::with(short_locks(chrono::Duration::seconds(3))).await;
    let (instance, cycles) = cycles_of(&harness, "retention-d", 2).await;
    let (other, other_cycles) = cycles_of(&harness, "retention-e", 1).await;
    let id = instance.to_string();
    let purge_after = offboard(&harness.pipeline, &id, Utc::now())
        .await
        .expect("offboard");
    let wait = (purge_after - Utc::now()).to_std().unwrap_or_default();
    locks_run_out(&harness, &cycles).await;
    tokio::time::sleep(wait + std::time::Duration::from_millis(100)).await;

    let sweep = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    assert_eq!(
        sweep.removed.iter().cloned().collect::<BTreeSet<_>>(),
        ids(cycles.iter().copied())
    );
    assert_eq!(sweep.purged, vec![id.clone()]);
    for cycle in &cycles {
        let loaded = harness.cycle(*cycle).await;
        assert_eq!(
            loaded.removed.as_ref().map(|r| r.because),
            Some(RemovedBecause::Offboarded)
        );
        assert!(!object_file(&harness, &loaded).exists());
    }
    let state: Instance = harness.pipeline.store.load(&id).await.expect("instance");
    assert!(state.purged_at.is_some());
    assert_eq!(
        state.enrolled.map(|e| e.credentials),
        Some(SealedCredentials(String::new()))
    );
    // The other instance, live, keeps its only (newest good) copy.
    let kept = harness.cycle(other_cycles[0]).await;
    assert!(kept.removed.is_none() && object_file(&harness, &kept).exists());
    let live: Instance = harness
        .pipeline
        .store
        .load(&other.to_string())
        .await
        .expect("other");
    assert!(live.removed.is_none());
    // Purged once: a later sweep has nothing left to do for it.
    let later = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    assert!(
        later.purged.is_empty() && later.removed.is_empty(),
        "{later:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removal_the_vault_did_but_the_log_missed_is_recorded_by_the_next_sweep() {
    let harness = Harness::with(short_locks(chrono::Duration::days(30))).await;
    let (_, cycles) = cycles_of(&harness, "retention-f", 4).await;
    let (_, gone) = kept_and_gone(&harness, &cycles).await;
    locks_run_out(&harness, &cycles).await;
    // A sweep killed between the vault's delete and the event: the version is gone, the cycle
    // does not know.
    let crashed = harness.cycle(gone[0]).await;
    let captured = crashed.captured.as_ref().expect("captured");
    harness
        .pipeline
        .vault
        .delete(&captured.object_key, &captured.version_id)
        .await
        .expect("the vault's delete");
    assert!(crashed.removed.is_none());

    let sweep = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    assert!(sweep.removed.contains(&gone[0].to_string()), "{sweep:?}");
    assert!(sweep.refused.is_empty(), "{sweep:?}");
    let recorded = harness.cycle(gone[0]).await.removed.expect("recorded");
    assert_eq!(recorded.because, RemovedBecause::Expired);
    let end = harness.pipeline.store.log_end().await.expect("log end");
    let again = sweep_at(&harness.pipeline, Utc::now())
        .await
        .expect("sweep");
    assert!(again.removed.is_empty(), "{again:?}");
    assert_eq!(
        harness.pipeline.store.log_end().await.expect("log end"),
        end
    );
}
