//! Poison events: the rule of [`crate::error`] that lets a stage go on when one event's
//! reaction can never succeed, shared by both transports.
//!
//! - A reaction that fails with a poison error (its event does not decode) is given up on at
//!   once; one that panics, or fails with an infrastructure error *while the store answers*, is
//!   given up on after [`POISON_AFTER`] such attempts. Failures while the store does not answer
//!   are an outage, not the event's fault: they are never counted, however long it lasts.
//! - Giving up ([`give_up`]) writes a row in the store's `dead_letters` (listed by `restorable
//!   dead-letters list`, counted in `/metrics`, replayed by `restorable dead-letters replay`)
//!   and, when a ladder stage gave up on its cycle's event, fails that cycle (`internal`,
//!   retryable), which raises Backup Failed and frees the instance. Consumers that are not a
//!   ladder stage (close, alerts, deliveries) fail nothing: the watchdog closes what they left.
//! - Every consumer's pending dead letters, ladder stage or not, raise one operations alert
//!   per consumer (`dead_letters:<consumer>`, to the operator's routes), resolved once they
//!   are all replayed ([`crate::operations_alerts`]).

use std::collections::HashMap;

use chrono::Utc;
use restorable_domain::cycle::{BackupCycle, BackupCycleCommand, Failed};
use restorable_domain::ladder::{FailureReason, Stage};

use crate::error::ErrorKind;
use crate::store::{LoggedEvent, Store, StoreError};

/// Counted attempts (failures while the store answers) before an event is given up on.
pub const POISON_AFTER: u32 = 5;

/// What to do with an event whose reaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A refusal of the aggregate: nothing to do, acknowledge it.
    Acknowledge,
    /// Deliver it again later.
    Retry,
    /// Give up on it after this many attempts.
    GiveUp(u32),
}

/// The counted attempts of the events a consumer is retrying (in memory: a restart starts the
/// count again, which only delays a give-up).
#[derive(Debug)]
pub struct Attempts {
    counts: HashMap<String, u32>,
    limit: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Self::new(POISON_AFTER)
    }
}

impl Attempts {
    /// Gives up after `limit` counted attempts (at least 1).
    pub fn new(limit: u32) -> Self {
        Self {
            counts: HashMap::new(),
            limit: limit.max(1),
        }
    }

    /// Counts a failure of the event `key` of `kind` (`None`: the reaction panicked) and says
    /// what to do; `store_answers` tells an outage from a failure of the event itself.
    pub fn failed(&mut self, key: &str, kind: Option<ErrorKind>, store_answers: bool) -> Verdict {
        match kind {
            Some(ErrorKind::Refusal) => {
                self.counts.remove(key);
                Verdict::Acknowledge
            }
            Some(ErrorKind::Poison) => Verdict::GiveUp(self.take(key) + 1),
            Some(ErrorKind::Infrastructure) if !store_answers => Verdict::Retry,
            Some(ErrorKind::Infrastructure) | None => {
                let count = self.counts.entry(key.to_owned()).or_insert(0);
                *count += 1;
                if *count >= self.limit {
                    Verdict::GiveUp(self.take(key))
                } else {
                    Verdict::Retry
                }
            }
        }
    }

    /// Forgets an event (it succeeded, or was given up on).
    pub fn succeeded(&mut self, key: &str) {
        self.counts.remove(key);
    }

    fn take(&mut self, key: &str) -> u32 {
        self.counts.remove(key).unwrap_or(0)
    }
}

/// The ladder stage a consumer is (its give-ups fail the cycle at that stage).
pub fn stage_of(consumer: &str) -> Option<Stage> {
    match consumer {
        "capture" => Some(Stage::Capture),
        "secure" => Some(Stage::Secure),
        "verify" => Some(Stage::Verify),
        "restore_test" => Some(Stage::RestoreTest),
        _ => None,
    }
}

/// Gives `consumer` up on `event`: a dead-letter row, and the cycle failed when a ladder stage
/// gave up on its event (see the module documentation).
///
/// # Errors
/// A storage error (the caller then retries the give-up later: nothing is acknowledged).
pub async fn give_up(
    store: &Store,
    consumer: &str,
    event: &LoggedEvent,
    reason: &str,
    attempts: u32,
) -> Result<(), StoreError> {
    tracing::error!(
        consumer,
        position = event.position,
        event_type = %event.event_type,
        attempts,
        %reason,
        "gave up on an event: sent to the dead letters"
    );
    store
        .add_dead_letter(consumer, event, reason, i64::from(attempts))
        .await?;
    let (Some(stage), "BackupCycle") = (stage_of(consumer), event.aggregate_type.as_str()) else {
        return Ok(());
    };
    let cycle: BackupCycle = match store.load(&event.aggregate_id).await {
        Ok(cycle) => cycle,
        Err(error) if error.kind() == ErrorKind::Poison => return Ok(()),
        Err(error) => return Err(error),
    };
    if cycle.is_failed() || cycle.rung != Some(stage.requires()) {
        return Ok(());
    }
    let failed = Failed {
        stage,
        reason: FailureReason::Internal,
        detail: format!(
            "the {consumer} stage gave up on {} after {attempts} attempts: {reason}",
            event.event_type
        ),
        retryable: true,
        failed_at: Utc::now(),
    };
    match store
        .cycle(
            &event.aggregate_id,
            BackupCycleCommand::RecordFailure(failed),
        )
        .await
    {
        Err(error) if error.is_refusal() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_never_counted_against_an_event() {
        let mut attempts = Attempts::default();
        for _ in 0..100 {
            assert_eq!(
                attempts.failed("7", Some(ErrorKind::Infrastructure), false),
                Verdict::Retry
            );
        }
        for n in 1..POISON_AFTER {
            assert_eq!(
                attempts.failed("7", Some(ErrorKind::Infrastructure), true),
                Verdict::Retry,
                "attempt {n}"
            );
        }
        assert_eq!(
            attempts.failed("7", None, true),
            Verdict::GiveUp(POISON_AFTER)
        );
        assert_eq!(
            attempts.failed("7", Some(ErrorKind::Infrastructure), true),
            Verdict::Retry,
            "given up: counted afresh"
        );
    }

    #[test]
    fn a_refusal_is_acknowledged_not_retried() {
        let mut attempts = Attempts::default();
        assert_eq!(
            attempts.failed("3", Some(ErrorKind::Refusal), true),
            Verdict::Acknowledge
        );
    }

    #[test]
    fn an_undecodable_event_is_given_up_at_once_and_a_success_resets() {
        let mut attempts = Attempts::default();
        assert_eq!(
            attempts.failed("1", Some(ErrorKind::Poison), true),
            Verdict::GiveUp(1)
        );
        attempts.failed("2", None, true);
        attempts.succeeded("2");
        for _ in 1..POISON_AFTER {
            assert_eq!(attempts.failed("2", None, true), Verdict::Retry);
        }
    }
}
