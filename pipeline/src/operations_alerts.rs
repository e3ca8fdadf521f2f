//! Operations alerts: what the service's operator must hear about that is no tenant's PBX —
//! a consumer's dead letters, and a NATS relay that stopped publishing. They go to the
//! operator's routes (`[operations_alerts]`: webhook, e-mail, and NATS
//! `restorable.operations.alerts`), through the same delivery machinery as the tenants' alerts
//! ([`crate::alerting`]: leased rows, retries, resumed after a crash), never to a tenant.
//!
//! ```text
//! dead_letters (pending, per consumer) ─► sweep ─┐                 ┌─► webhook
//!                                                ├─► operations_alerts ─┼─► e-mail
//! relay held past RELAY_ALERT_AFTER ─► alarm ────┘   (raise / resolve) └─► NATS
//! ```
//!
//! - **One alert per condition, not per event or retry.** A condition is a key: `dead_letters:
//!   <consumer>` (that consumer has dead letters not replayed yet) or `relay_held`. A key has
//!   at most one open alert ([`Store::raise_operations_alert`] is one conditional statement),
//!   so a hundred dead letters of one consumer, many processes sweeping at once, or a relay
//!   retrying every few seconds raise it once; it is resolved when the condition ends, and a
//!   later recurrence raises it anew (`<key>-2`, ...).
//! - **Dead letters** ([`sweep_dead_letters`]): every process running `alert_delivery`
//!   compares the pending dead letters with the open alerts at start and every
//!   [`SWEEP_EVERY`]: a consumer with pending letters and no open alert raises one (the
//!   count, the first letter's event type, position, attempts and reason — an error text of the
//!   pipeline, never the payload); an open alert whose consumer has none left (all replayed) is
//!   resolved. The dead-letter table is the truth, so a letter written by any process, or
//!   replayed by `restorable dead-letters replay` from another, is seen without a message
//!   between them. Ladder stages' dead letters are included: their cycle's Backup Failed tells
//!   the tenant, this tells the operator that something needs a replay.
//! - **The relay** ([`RelayAlarm`]): a relay held (store error, NATS away, an event of an
//!   unknown version) for longer than [`RELAY_ALERT_AFTER`] raises `relay_held` with the error
//!   it meets, once; its next batch that goes through resolves it. A failover shorter than that
//!   raises nothing (no crying wolf). When the store itself does not answer the raise cannot be
//!   recorded: it is then sent without a record (a process stopped meanwhile loses that
//!   delivery), numbered by its Unix time, and resolved the same way when the relay passes. A
//!   relay that takes the lease resolves a `relay_held` its predecessor left open at its first
//!   batch that goes through.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::alerting::AlertDelivery;
use crate::periodic::{Round, Rounds};
use crate::store::{DeadLetter, OperationsAlert, Store, StoreError, DEAD_LETTERS, RELAY_HELD};

/// How often the dead letters are compared with the open alerts.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// How long the relay stays held before it raises `relay_held` (a database failover or a NATS
/// restart shorter than this raises nothing).
pub const RELAY_ALERT_AFTER: Duration = Duration::from_secs(120);
/// The longest error text quoted in an alert (characters).
const QUOTED: usize = 300;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Alerts this sweep raised (and sent).
    pub raised: usize,
    /// Alerts this sweep resolved (and sent).
    pub resolved: usize,
}

/// `text` cut to [`QUOTED`] characters, on one line.
fn quoted(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(QUOTED) {
        Some((end, _)) => format!("{}...", &one_line[..end]),
        None => one_line,
    }
}

/// The detail of a consumer's dead-letter alert.
fn dead_letters_detail(consumer: &str, count: usize, first: &DeadLetter) -> String {
    format!(
        "the {consumer} consumer gave up on {count} event(s) not replayed yet; the first: {} at \
         log position {} after {} attempt(s): {}. `restorable dead-letters list` shows them, \
         `restorable dead-letters replay` runs them again once the cause is fixed",
        first.event_type,
        first.position,
        first.attempts,
        quoted(&first.reason)
    )
}

/// Raises an alert for every consumer with pending dead letters and none open, and resolves
/// every open dead-letter alert whose consumer has none left (see the module documentation).
///
/// # Errors
/// A store failure (what was not done is done by the next sweep).
pub async fn sweep_dead_letters(
    delivery: &AlertDelivery,
    now: DateTime<Utc>,
) -> Result<Sweep, StoreError> {
    let store: &Store = delivery.store();
    let mut pending: BTreeMap<String, (usize, DeadLetter)> = BTreeMap::new();
    for letter in store.dead_letters(true).await? {
        pending
            .entry(letter.consumer.clone())
            .and_modify(|(count, _)| *count += 1)
            .or_insert((1, letter));
    }
    let mut sweep = Sweep::default();
    let open = store.operations_alerts(true).await?;
    for (consumer, (count, first)) in &pending {
        let key = format!("{DEAD_LETTERS}{consumer}");
        if open.iter().any(|alert| alert.key == key) {
            continue;
        }
        let detail = dead_letters_detail(consumer, *count, first);
        if delivery
            .raise_operations(&key, &detail, now)
            .await?
            .is_some()
        {
            sweep.raised += 1;
        }
    }
    for alert in &open {
        let Some(consumer) = alert.key.strip_prefix(DEAD_LETTERS) else {
            continue;
        };
        if pending.contains_key(consumer) {
            continue;
        }
        if delivery
            .resolve_operations(&alert.key, now)
            .await?
            .is_some()
        {
            sweep.resolved += 1;
        }
    }
    Ok(sweep)
}

/// Sweeps the dead letters at once, then every [`SWEEP_EVERY`], until `shutdown`.
pub async fn watch_dead_letters(delivery: AlertDelivery, shutdown: CancellationToken) {
    let mut sweeps = DeadLetterSweeps(delivery);
    crate::periodic::repeat(SWEEP_EVERY, Rounds::Whole, shutdown, &mut sweeps).await;
}

/// The dead-letter sweeps, one a round.
struct DeadLetterSweeps(AlertDelivery);

impl Round for DeadLetterSweeps {
    async fn once(&mut self) {
        if let Err(error) = sweep_dead_letters(&self.0, Utc::now()).await {
            tracing::warn!(%error, "could not compare the dead letters with the operations alerts");
        }
    }
}

/// What this relay has raised.
#[derive(Debug)]
enum Alarm {
    /// Nothing; with `check`, a `relay_held` left open (by an earlier holder of the lease, or
    /// a resolution that failed) is resolved at the next batch that goes through.
    Quiet {
        /// Look for an open alert at the next pass.
        check: bool,
    },
    /// Raised and recorded (by this relay, or found open).
    Recorded,
    /// Raised while the store did not answer: sent without a record.
    Unrecorded(OperationsAlert),
}

/// The relay's `relay_held` alert (see the module documentation): told of every batch that
/// fails ([`RelayAlarm::held`]) and every one that goes through ([`RelayAlarm::passed`]).
pub struct RelayAlarm {
    delivery: AlertDelivery,
    after: Duration,
    held_since: Option<Instant>,
    state: Alarm,
}

impl RelayAlarm {
    /// An alarm that raises through `delivery` once the relay is held for `after`.
    pub fn new(delivery: AlertDelivery, after: Duration) -> Self {
        Self {
            delivery,
            after,
            held_since: None,
            state: Alarm::Quiet { check: true },
        }
    }

    /// The relay took the lease: an alert its predecessor left open is resolved at the next
    /// batch that goes through.
    pub fn lease_taken(&mut self) {
        if let Alarm::Quiet { check } = &mut self.state {
            *check = true;
        }
    }

    /// The relay lost the lease: whatever holds it now is another's to report.
    pub fn lease_lost(&mut self) {
        self.held_since = None;
    }

    /// A batch failed with `error` (its text): raises `relay_held` once the relay has been
    /// held for long enough, once.
    pub async fn held(&mut self, error: &str) {
        let since = *self.held_since.get_or_insert_with(Instant::now);
        let held_for = since.elapsed();
        if !matches!(self.state, Alarm::Quiet { .. }) || held_for < self.after {
            return;
        }
        let detail = format!(
            "the NATS relay has published nothing for {} s: every batch fails with: {}. No event \
             is skipped: stages that depend on NATS wait until it passes",
            held_for.as_secs(),
            quoted(error)
        );
        let now = Utc::now();
        match self
            .delivery
            .raise_operations(RELAY_HELD, &detail, now)
            .await
        {
            // Raised now, or open already (a predecessor's): one alert is open either way.
            Ok(_) => self.state = Alarm::Recorded,
            Err(store_error) => {
                tracing::warn!(error = %store_error, "the relay-held alert could not be recorded; sent without a record");
                let alert = OperationsAlert {
                    key: RELAY_HELD.to_owned(),
                    number: now.timestamp(),
                    detail,
                    raised_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                    resolved_at: None,
                };
                self.delivery.send_operations_unrecorded(&alert);
                self.state = Alarm::Unrecorded(alert);
            }
        }
    }

    /// A batch went through (the relay holds the lease): resolves what was raised.
    pub async fn passed(&mut self) {
        self.held_since = None;
        match std::mem::replace(&mut self.state, Alarm::Quiet { check: false }) {
            Alarm::Quiet { check: false } => {}
            Alarm::Quiet { check: true } | Alarm::Recorded => {
                if let Err(error) = self
                    .delivery
                    .resolve_operations(RELAY_HELD, Utc::now())
                    .await
                {
                    tracing::warn!(%error, "the relay-held alert could not be resolved yet");
                    self.state = Alarm::Quiet { check: true };
                }
            }
            Alarm::Unrecorded(mut alert) => {
                alert.resolved_at = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
                self.delivery.send_operations_unrecorded(&alert);
                self.state = Alarm::Quiet { check: true };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_error_is_one_line_and_bounded() {
        assert_eq!(quoted("a\nb"), "a b");
        let long = "é".repeat(QUOTED + 10);
        let cut = quoted(&long);
        assert_eq!(cut.chars().count(), QUOTED + 3);
        assert!(cut.ends_with("..."));
    }
}
