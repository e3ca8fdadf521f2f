//! Rotating re-checks: Secured and Verified run when a copy is made; a re-check proves it again
//! long after — the exact stored version read back byte for byte against the SHA-256 taken at
//! capture, and its compliance lock checked ([`crate::stages::secure::prove_copy`], the very
//! check of the Secured rung) — so bit rot, a missing object or a changed lock is found in the
//! vault within a window, not on the day of a restore.
//!
//! # When each copy is due
//! Every copy that reached Secured (and whose cycle did not fail) has a *phase* in the window,
//! taken from a hash of its cycle id, and is due at its phase in every window ([`next_slot`]):
//! the first slot after each proof, so two proofs of a copy are never more than one window
//! apart, and the copies' slots are spread evenly over the window — a sweep reads about
//! `copies / window` per unit of time, not the whole vault at once. A copy whose proof is
//! already older than a window when the index learns of it is spread over the coming window.
//!
//! # Who reads it
//! [`sweep_at`] refreshes the index ([`index`]) and *claims* the due copies one at a time
//! ([`crate::store::Store::claim_rechecks`]): every worker running the `recheck` stage sweeps,
//! and a claimed copy is not taken by another sweep before its claim runs out, so the reading
//! is shared by the workers. The outcome is an event on the copy's cycle (`Rechecked` or
//! `RecheckFailed`, carrying the slot: a slot is recorded once, so a copy read twice by a
//! claim that ran out adds nothing); a `RecheckFailed` raises "Re-check Failed" (the alerts
//! stage). A vault that stays unavailable is infrastructure, not a failed copy: nothing is
//! recorded and the copy is given back when its claim runs out.
//!
//! # Coverage
//! [`crate::store::Store::recheck_coverage`]: the share of watched copies proven within the
//! window, how many are failing, the oldest proof (fleet page, `/metrics`).

pub mod index;

use std::time::Duration;

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, RecheckFailed, Rechecked};
use restorable_domain::ladder::Rung;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::periodic::{Round, Rounds};
use crate::pipeline::Pipeline;
use crate::stages::secure::prove_copy;
use crate::store::StoreError;

/// How long a sweep holds the copies it claimed: longer than reading one copy takes.
const CLAIM: chrono::Duration = chrono::Duration::hours(1);
/// Copies claimed at a time: one, so that sweeps in several workers take turns copy by copy
/// (a claim is one small update; reading the copy is the work).
const CLAIM_BATCH: i64 = 1;

/// The first slot of copy `cycle` strictly after `after`, for re-check window `window`: the
/// copy's phase (a hash of its cycle id, in `[0, window)`) plus a whole number of windows.
pub fn next_slot(cycle: &str, after: DateTime<Utc>, window: chrono::Duration) -> DateTime<Utc> {
    let window_ms = window.num_milliseconds().max(1);
    let digest = Sha256::digest(cycle.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let phase = i64::try_from(u64::from_be_bytes(first) % window_ms.unsigned_abs()).unwrap_or(0);
    let after_ms = after.timestamp_millis();
    let windows = (after_ms - phase).div_euclid(window_ms) + 1;
    DateTime::from_timestamp_millis(phase + windows * window_ms).unwrap_or(after)
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Copies found intact (their cycle ids).
    pub proven: Vec<String>,
    /// Copies found changed, gone or unlocked, with the reason.
    pub failed: Vec<(String, String)>,
    /// Copies the vault could not be asked about now (given back when the claim runs out).
    pub deferred: Vec<String>,
}

/// One sweep at `now`: brings the index up to the log, then re-checks every copy due by then
/// that no other sweep holds, and records each outcome on the copy's cycle.
///
/// # Errors
/// A store failure (the copies it had claimed are given back when their claims run out).
pub async fn sweep_at(pipeline: &Pipeline, now: DateTime<Utc>) -> Result<Sweep, StoreError> {
    let store = &pipeline.store;
    let window = pipeline.settings.recheck_window;
    index::refresh(store, window, now).await?;
    let started = tokio::time::Instant::now();
    let clock = || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let mut sweep = Sweep::default();
    loop {
        // Held for an hour from the claim, not from the sweep's start (a sweep through a backlog
        // runs long).
        let claimed = store
            .claim_rechecks(
                now.timestamp_millis(),
                (clock() + CLAIM).timestamp_millis(),
                CLAIM_BATCH,
            )
            .await?;
        if claimed.is_empty() {
            break;
        }
        for (cycle_id, slot) in claimed {
            let Some(slot) = DateTime::from_timestamp_millis(slot) else {
                continue;
            };
            recheck_one(pipeline, &cycle_id, slot, clock, &mut sweep).await?;
        }
    }
    index::refresh(store, window, clock()).await?;
    Ok(sweep)
}

/// Re-checks the copy of `cycle_id` for `slot` and records the outcome.
async fn recheck_one(
    pipeline: &Pipeline,
    cycle_id: &str,
    slot: DateTime<Utc>,
    clock: impl Fn() -> DateTime<Utc>,
    sweep: &mut Sweep,
) -> Result<(), StoreError> {
    let cycle: BackupCycle = pipeline.store.load(cycle_id).await?;
    let stored = cycle.rung >= Some(Rung::Secured) && !cycle.is_failed();
    let Some(captured) = cycle.captured.as_ref().filter(|_| stored) else {
        return Ok(());
    };
    let command = match prove_copy(pipeline, cycle_id, captured).await {
        Ok(secured) => {
            sweep.proven.push(cycle_id.to_owned());
            BackupCycleCommand::RecordRechecked(Rechecked {
                slot,
                sha256: secured.sha256,
                lock_mode: secured.lock_mode,
                retain_until: secured.retain_until,
                rechecked_at: clock(),
            })
        }
        Err(failure) if failure.retryable => {
            tracing::warn!(cycle = cycle_id, detail = %failure.detail, "re-check deferred: the vault is unavailable");
            sweep.deferred.push(cycle_id.to_owned());
            return Ok(());
        }
        Err(failure) => {
            tracing::warn!(cycle = cycle_id, reason = %failure.reason, detail = %failure.detail, "Re-check Failed");
            sweep
                .failed
                .push((cycle_id.to_owned(), failure.reason.to_string()));
            BackupCycleCommand::RecordRecheckFailed(RecheckFailed {
                slot,
                reason: failure.reason,
                detail: failure.detail,
                failed_at: clock(),
            })
        }
    };
    match pipeline.store.cycle(cycle_id, command).await {
        Err(error) if error.is_refusal() => {
            tracing::info!(cycle = cycle_id, why = %error, "re-check not recorded");
            Ok(())
        }
        other => other,
    }
}

/// How often [`run`] checks the index covers every stored copy.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps every `every` until `shutdown` is cancelled, reconciling the index at start and every
/// [`RECONCILE_EVERY`].
pub async fn run(pipeline: Pipeline, every: Duration, shutdown: CancellationToken) {
    let mut sweeps = Sweeps {
        pipeline,
        reconciled: None,
    };
    crate::periodic::repeat(every, Rounds::Cancellable, shutdown, &mut sweeps).await;
}

/// The re-check sweeps, one a round, and when the index was last reconciled.
struct Sweeps {
    pipeline: Pipeline,
    reconciled: Option<tokio::time::Instant>,
}

impl Round for Sweeps {
    async fn once(&mut self) {
        let pipeline = &self.pipeline;
        if self
            .reconciled
            .is_none_or(|at| at.elapsed() >= RECONCILE_EVERY)
        {
            let window = pipeline.settings.recheck_window;
            match index::reconcile(&pipeline.store, window, Utc::now()).await {
                Ok(_) => self.reconciled = Some(tokio::time::Instant::now()),
                Err(error) => tracing::error!(%error, "the re-check index check failed"),
            }
        }
        match sweep_at(pipeline, Utc::now()).await {
            Ok(sweep) if sweep.proven.len() + sweep.failed.len() > 0 => tracing::info!(
                proven = sweep.proven.len(),
                failed = sweep.failed.len(),
                deferred = sweep.deferred.len(),
                "re-check sweep"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "re-check sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_copy_is_due_at_its_own_phase_once_per_window_strictly_after_each_proof() {
        let window = chrono::Duration::days(7);
        let first = next_slot("cycle-a", at(1, 0), window);
        assert!(first > at(1, 0) && first <= at(8, 0), "{first}");
        assert_eq!(next_slot("cycle-a", first, window), first + window);
        assert_eq!(
            next_slot("cycle-a", first - chrono::Duration::milliseconds(1), window),
            first
        );
        assert_eq!(
            next_slot("cycle-a", first + window * 3, window),
            first + window * 4
        );
    }

    #[test]
    fn copies_are_spread_evenly_over_the_window() {
        let window = chrono::Duration::days(7);
        let from = at(1, 0);
        let mut per_day = [0u32; 7];
        for n in 0..7000 {
            let slot = next_slot(&format!("cycle-{n}"), from, window);
            let day = (slot - from).num_days().clamp(0, 6);
            per_day[usize::try_from(day).unwrap_or(0)] += 1;
        }
        // 1,000 a day on average; a hash spreads them within a few percent.
        assert!(
            per_day.iter().all(|n| (900..=1100).contains(n)),
            "{per_day:?}"
        );
    }
}
