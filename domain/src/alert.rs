//! The `InstanceAlerts` aggregate: the alerts of one instance (its id is the instance id). An
//! alert of a kind is raised once and stays open until the instance *recovers*, so a cycle that
//! fails again and again while the alert is open raises nothing more (no storm on retries), and
//! nothing short of recovery resolves it (no flapping). Every alert and its resolution stay in
//! the history for good.
//!
//! | kind | raised when | resolved when |
//! |---|---|---|
//! | Backup Failed | a cycle fails | a *later* cycle ends without failure at Verified or above; a Restore-Tested failure only by a later cycle that ends Restore-Tested |
//! | Backup Stale | no copy reached Secured within twice the interval | a later copy reaches Secured |
//! | Verify Stale | copies are Secured but none reached Verified within twice the interval (not while Backup Stale or Backup Failed is open) | a later copy reaches Verified |
//! | Restore Slow | a restore test took longer than the instance's restore-time target (`RestorePolicy::target_minutes`) | a later restore test within the target ([`AlertCommand::ResolveKind`]) |
//! | Native Backup Disabled / Unencrypted / Stale | a capture, or the native backup watch between captures, read the PBX's own schedule and found it off, unencrypted, or without a backup within its period plus a grace ([`crate::native_backups`]) | a later reading (either kind) without that fault ([`AlertCommand::ResolveKind`]) |
//! | Re-check Failed | a rotating re-check found a stored copy changed, gone or no longer locked (`RecheckFailed`) | a later re-check of **the same copy** that finds it intact ([`AlertCommand::ResolveKind`]) |
//!
//! "Later" is the position in the event log, never a wall clock: every alert keeps the log
//! position of what raised it, and only an event further on in the log resolves it — so a
//! redelivered, older success never resolves a newer alert, whatever the workers' clocks say.
//!
//! # Lifecycle
//! An open alert can be **acknowledged** (who, when, a note: someone is on it) and **snoozed**
//! until a time (at most [`SNOOZE_LIMIT_DAYS`] ahead). Both leave it open — only recovery
//! resolves an alert — and both stop reminders (an acknowledged alert for good, a snoozed one
//! until its time). A resolved or unknown alert refuses both; so does a note longer than
//! [`NOTE_LIMIT`] characters or holding control characters.
//!
//! **Reminders**: an alert left open and neither acknowledged nor snoozed is sent again on a
//! route every N hours (the route's setting), counted from the raise or that route's last
//! reminder. The sweep asks ([`AlertCommand::Remind`]) and the aggregate decides, so two
//! sweeps asking at once remind once; an `AlertReminded` event names the route.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::ladder::{FailureReason, Rung, Stage};
use crate::{Snapshotted, EVENT_VERSION};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The latest cycle failed.
    BackupFailed,
    /// No copy reached Secured within the expected interval.
    BackupStale,
    /// Copies are Secured but none reached Verified within the expected interval.
    VerifyStale,
    /// A restore test took longer than the instance's restore-time target.
    RestoreSlow,
    /// The PBX's own backup schedule is turned off.
    NativeBackupDisabled,
    /// The PBX's own scheduled backups are not encrypted.
    NativeBackupUnencrypted,
    /// The PBX's own schedule made no backup within its period plus the grace.
    NativeBackupStale,
    /// A rotating re-check found a stored copy changed, gone or no longer locked.
    RecheckFailed,
}

impl AlertKind {
    /// The title people see: `Backup Failed`, `Backup Stale`, `Verify Stale`, `Restore Slow`,
    /// `Native Backup Disabled` ...
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::BackupFailed => "Backup Failed",
            AlertKind::BackupStale => "Backup Stale",
            AlertKind::VerifyStale => "Verify Stale",
            AlertKind::RestoreSlow => "Restore Slow",
            AlertKind::NativeBackupDisabled => "Native Backup Disabled",
            AlertKind::NativeBackupUnencrypted => "Native Backup Unencrypted",
            AlertKind::NativeBackupStale => "Native Backup Stale",
            AlertKind::RecheckFailed => "Re-check Failed",
        }
    }

    /// Whether a copy that reached `reached` recovers the instance from this kind of alert,
    /// for an alert raised by a failure at `stage`; `ended`: the copy's cycle ended there
    /// without failure (a copy still climbing recovers only the stale kinds). No rung recovers
    /// a Restore Slow, a native-backup or a Re-check Failed alert: only a restore test within the
    /// target, a later reading of the PBX's schedule without that fault, or a later re-check of
    /// the same copy that finds it intact ([`AlertCommand::ResolveKind`]).
    pub fn recovered_by(self, stage: Option<Stage>, reached: Rung, ended: bool) -> bool {
        match self {
            AlertKind::BackupFailed if stage == Some(Stage::RestoreTest) => {
                ended && reached == Rung::RestoreTested
            }
            AlertKind::BackupFailed => ended && reached >= Rung::Verified,
            AlertKind::BackupStale => reached >= Rung::Secured,
            AlertKind::VerifyStale => reached >= Rung::Verified,
            AlertKind::RestoreSlow
            | AlertKind::NativeBackupDisabled
            | AlertKind::NativeBackupUnencrypted
            | AlertKind::NativeBackupStale
            | AlertKind::RecheckFailed => false,
        }
    }
}

/// An alert was raised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRaised {
    /// `<instance id>-<number>`: unique, and the same on every replay.
    pub alert_id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// The instance's tenant.
    pub tenant_id: TenantId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The cycle that failed (for `backup_failed`).
    pub cycle_id: Option<CycleId>,
    /// The stage that failed (for `backup_failed`).
    pub stage: Option<Stage>,
    /// The stable reason code (for `backup_failed`).
    pub reason: Option<FailureReason>,
    /// A human explanation. Never contains a secret.
    pub detail: String,
    /// When.
    pub raised_at: DateTime<Utc>,
    /// The event-log position of what raised it (the `Failed` event; for a stale alert, the
    /// last event the sweep had read): only what comes later in the log resolves it. 0 in
    /// alerts written before the field existed.
    #[serde(default)]
    pub position: i64,
}

/// An open alert was resolved: the instance recovered (see the module's table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertResolved {
    /// The alert.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// The cycle whose copy (or capture, or re-check) recovered the instance; none when the
    /// native backup watch's own reading between captures did.
    pub resolved_by: Option<CycleId>,
    /// When.
    pub resolved_at: DateTime<Utc>,
}

/// Someone took an open alert on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertAcknowledged {
    /// The alert.
    pub alert_id: String,
    /// Who: a user's e-mail address, an API token's name, or `cli:<user>`.
    pub by: String,
    /// What they said (may be empty).
    pub note: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Someone silenced an open alert's reminders until a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertSnoozed {
    /// The alert.
    pub alert_id: String,
    /// Who.
    pub by: String,
    /// Until when.
    pub until: DateTime<Utc>,
    /// Why (may be empty).
    pub note: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An open alert was sent again on one route: still open, nobody took it on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertReminded {
    /// The alert.
    pub alert_id: String,
    /// The route (`webhook`, `email`, `slack`, `teams`, `pagerduty`, `nats`).
    pub route: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The longest note an acknowledgement or snooze keeps, in characters.
pub const NOTE_LIMIT: usize = 500;

/// How far ahead a snooze may reach, in days.
pub const SNOOZE_LIMIT_DAYS: i64 = 30;

/// Everything that can happen to an instance's alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum AlertEvent {
    /// See [`AlertRaised`].
    AlertRaised(AlertRaised),
    /// See [`AlertResolved`].
    AlertResolved(AlertResolved),
    /// See [`AlertAcknowledged`].
    AlertAcknowledged(AlertAcknowledged),
    /// See [`AlertSnoozed`].
    AlertSnoozed(AlertSnoozed),
    /// See [`AlertReminded`].
    AlertReminded(AlertReminded),
}

impl DomainEvent for AlertEvent {
    fn event_type(&self) -> String {
        match self {
            AlertEvent::AlertRaised(_) => "AlertRaised",
            AlertEvent::AlertResolved(_) => "AlertResolved",
            AlertEvent::AlertAcknowledged(_) => "AlertAcknowledged",
            AlertEvent::AlertSnoozed(_) => "AlertSnoozed",
            AlertEvent::AlertReminded(_) => "AlertReminded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What the alert router asks.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertCommand {
    /// Raise an alert of this kind unless one is open (the `alert_id` field is assigned here).
    Raise(AlertRaised),
    /// A copy of `cycle_id` reached `reached` (and, if `ended`, its cycle ended there without
    /// failure), told by the event at log `position`: resolves every open alert raised earlier
    /// in the log that this recovers (see [`AlertKind::recovered_by`]).
    Resolve {
        /// The cycle.
        cycle_id: CycleId,
        /// The rung its copy reached.
        reached: Rung,
        /// Whether the cycle ended there without failure.
        ended: bool,
        /// The log position of the event that says so.
        position: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// The condition of `kind` ended, told by the event at log `position` (of `cycle_id`, or
    /// of the instance for the native backup watch's reading between captures): resolves the
    /// open alert of that kind if it was raised earlier in the log (a Restore Slow by a restore
    /// test within the target).
    ResolveKind {
        /// The kind whose condition ended.
        kind: AlertKind,
        /// The cycle that shows it (none: the native backup watch's own reading).
        cycle_id: Option<CycleId>,
        /// The log position of the event that says so.
        position: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Acknowledge the open alert `alert_id` (see the module's "Lifecycle").
    Acknowledge {
        /// The alert.
        alert_id: String,
        /// Who.
        by: String,
        /// A note.
        note: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Snooze the open alert `alert_id` until `until`.
    Snooze {
        /// The alert.
        alert_id: String,
        /// Who.
        by: String,
        /// Until when.
        until: DateTime<Utc>,
        /// A note.
        note: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Remind `route` of the alert `alert_id` if it wants reminding and either `every_hours`
    /// have passed since it was raised or last reminded on that route, or (`catch_up`: the
    /// route's quiet hours held its raise) the route was never reminded of it; otherwise
    /// nothing (never an error: a sweep asks often).
    Remind {
        /// The alert.
        alert_id: String,
        /// The route.
        route: String,
        /// The route's reminder interval (0: none).
        every_hours: u32,
        /// The route's quiet hours held the raise: tell it now if it was never told.
        catch_up: bool,
        /// Now.
        at: DateTime<Utc>,
    },
}

/// Why an acknowledgement or a snooze was refused (raising and resolving never are).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlertError {
    /// No open alert has that id (never raised, or resolved already).
    #[error("no open alert {0}")]
    NotOpen(String),
    /// The note is too long or holds control characters.
    #[error("a note is at most {NOTE_LIMIT} characters, without control characters")]
    BadNote,
    /// The snooze does not end in the future, or ends too far ahead.
    #[error("a snooze ends after now and at most {SNOOZE_LIMIT_DAYS} days ahead")]
    BadSnooze,
}

/// The alerts of one instance, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceAlerts {
    /// Alerts raised so far (numbers the next one).
    pub raised: u64,
    /// Open alerts.
    pub open: Vec<OpenAlert>,
    /// The most recent cycles that raised an alert, with the kind each raised and the log
    /// position of the event that raised it, oldest first, at most [`RAISED_FOR_KEPT`] (a
    /// redelivered `Failed` raises nothing twice; redeliveries come soon after the first
    /// delivery, so the state needs no memory of every failed cycle ever). Keyed by kind too: a
    /// cycle whose capture found the native backups stale can still fail, and that failure is an
    /// alert of its own. The position tells a redelivery (at or before it) from a new event of
    /// the same cycle and kind (after it): a copy that fails a re-check, recovers and fails a
    /// later one raises a second alert.
    pub raised_for: Vec<(CycleId, AlertKind, i64)>,
}

/// How many of the most recent alerting cycles [`InstanceAlerts::raised_for`] keeps: the state
/// stays bounded however many cycles an instance has failed.
pub const RAISED_FOR_KEPT: usize = 64;

/// An alert that is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpenAlert {
    /// Its id.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// The stage whose failure raised it (Backup Failed).
    pub stage: Option<Stage>,
    /// The cycle it is about, if any (a Re-check Failed is resolved only by its own copy).
    #[serde(default)]
    pub cycle_id: Option<CycleId>,
    /// The log position of what raised it.
    pub position: i64,
    /// Whether someone acknowledged it.
    #[serde(default)]
    pub acknowledged: bool,
    /// Until when it is snoozed, if it was.
    #[serde(default)]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// The last reminder on each route that had one.
    #[serde(default)]
    pub reminded: Vec<(String, DateTime<Utc>)>,
}

impl OpenAlert {
    /// Whether reminders of it are due at `now`: neither acknowledged nor snoozed past `now`.
    pub fn wants_reminding(&self, now: DateTime<Utc>) -> bool {
        !self.acknowledged && self.snoozed_until.is_none_or(|until| until <= now)
    }

    /// When `route` last heard of it: its last reminder there, else the raise.
    pub fn last_notice(&self, route: &str) -> DateTime<Utc> {
        self.reminded
            .iter()
            .find(|(r, _)| r == route)
            .map_or(self.raised_at, |(_, at)| *at)
    }
}

impl InstanceAlerts {
    /// Whether an alert of `kind` is open.
    pub fn is_open(&self, kind: AlertKind) -> bool {
        self.open.iter().any(|a| a.kind == kind)
    }

    /// The open alert `alert_id`.
    fn open_alert(&self, alert_id: &str) -> Result<&OpenAlert, AlertError> {
        self.open
            .iter()
            .find(|a| a.alert_id == alert_id)
            .ok_or_else(|| AlertError::NotOpen(alert_id.to_owned()))
    }

    /// Resolves each of `due`, recovered by `cycle_id` at `at`.
    async fn resolve_all(
        &mut self,
        due: Vec<OpenAlert>,
        cycle_id: Option<CycleId>,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) {
        for alert in due {
            sink.write(
                AlertEvent::AlertResolved(AlertResolved {
                    alert_id: alert.alert_id,
                    kind: alert.kind,
                    resolved_by: cycle_id,
                    resolved_at: at,
                }),
                self,
            )
            .await;
        }
    }
}

/// The cycle an alert is remembered under in [`InstanceAlerts::raised_for`]: its own, or the
/// nil id for one raised without a cycle (a stale sweep, the native backup watch) — so a
/// redelivered reading of the watch raises nothing again after its alert was resolved.
fn raised_for_key(cycle: Option<CycleId>) -> CycleId {
    cycle.unwrap_or(CycleId(uuid::Uuid::nil()))
}

/// A note as kept: trimmed; refused if too long or with control characters.
fn checked_note(note: &str) -> Result<String, AlertError> {
    let note = note.trim();
    if note.chars().count() > NOTE_LIMIT || note.chars().any(char::is_control) {
        return Err(AlertError::BadNote);
    }
    Ok(note.to_owned())
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for InstanceAlerts {
    const SNAPSHOT_VERSION: u32 = 4;
}

impl Aggregate for InstanceAlerts {
    const TYPE: &'static str = "InstanceAlerts";
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = AlertError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AlertCommand::Raise(mut raised) => {
                let about = raised_for_key(raised.cycle_id);
                let seen_cycle = self.raised_for.iter().any(|(c, kind, position)| {
                    *c == about && *kind == raised.kind && *position >= raised.position
                });
                if !self.is_open(raised.kind) && !seen_cycle {
                    raised.alert_id = format!("{}-{}", raised.instance_id, self.raised + 1);
                    sink.write(AlertEvent::AlertRaised(raised), self).await;
                }
            }
            AlertCommand::Resolve {
                cycle_id,
                reached,
                ended,
                position,
                at,
            } => {
                let due: Vec<OpenAlert> = self
                    .open
                    .iter()
                    .filter(|a| a.position < position)
                    .filter(|a| a.kind.recovered_by(a.stage, reached, ended))
                    .cloned()
                    .collect();
                self.resolve_all(due, Some(cycle_id), at, sink).await;
            }
            AlertCommand::ResolveKind {
                kind,
                cycle_id,
                position,
                at,
            } => {
                let due: Vec<OpenAlert> = self
                    .open
                    .iter()
                    .filter(|a| a.position < position && a.kind == kind)
                    .filter(|a| kind != AlertKind::RecheckFailed || a.cycle_id == cycle_id)
                    .cloned()
                    .collect();
                self.resolve_all(due, cycle_id, at, sink).await;
            }
            AlertCommand::Acknowledge {
                alert_id,
                by,
                note,
                at,
            } => {
                self.open_alert(&alert_id)?;
                let note = checked_note(&note)?;
                let event = AlertAcknowledged {
                    alert_id,
                    by,
                    note,
                    at,
                };
                sink.write(AlertEvent::AlertAcknowledged(event), self).await;
            }
            AlertCommand::Remind {
                alert_id,
                route,
                every_hours,
                catch_up,
                at,
            } => {
                let due = self.open.iter().any(|alert| {
                    let never_told = catch_up && !alert.reminded.iter().any(|(r, _)| *r == route);
                    let interval = every_hours > 0
                        && at - alert.last_notice(&route)
                            >= chrono::Duration::hours(i64::from(every_hours));
                    alert.alert_id == alert_id
                        && alert.wants_reminding(at)
                        && (never_told || interval)
                });
                if due {
                    let event = AlertReminded {
                        alert_id,
                        route,
                        at,
                    };
                    sink.write(AlertEvent::AlertReminded(event), self).await;
                }
            }
            AlertCommand::Snooze {
                alert_id,
                by,
                until,
                note,
                at,
            } => {
                self.open_alert(&alert_id)?;
                let note = checked_note(&note)?;
                if until <= at || until - at > chrono::Duration::days(SNOOZE_LIMIT_DAYS) {
                    return Err(AlertError::BadSnooze);
                }
                let event = AlertSnoozed {
                    alert_id,
                    by,
                    until,
                    note,
                    at,
                };
                sink.write(AlertEvent::AlertSnoozed(event), self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AlertEvent::AlertRaised(e) => {
                self.raised += 1;
                self.open.push(OpenAlert {
                    alert_id: e.alert_id,
                    kind: e.kind,
                    stage: e.stage,
                    cycle_id: e.cycle_id,
                    position: e.position,
                    acknowledged: false,
                    snoozed_until: None,
                    raised_at: e.raised_at,
                    reminded: Vec::new(),
                });
                self.raised_for
                    .push((raised_for_key(e.cycle_id), e.kind, e.position));
                let excess = self.raised_for.len().saturating_sub(RAISED_FOR_KEPT);
                self.raised_for.drain(..excess);
            }
            AlertEvent::AlertResolved(e) => {
                self.open.retain(|a| a.alert_id != e.alert_id);
            }
            AlertEvent::AlertAcknowledged(e) => {
                if let Some(alert) = self.open.iter_mut().find(|a| a.alert_id == e.alert_id) {
                    alert.acknowledged = true;
                }
            }
            AlertEvent::AlertSnoozed(e) => {
                if let Some(alert) = self.open.iter_mut().find(|a| a.alert_id == e.alert_id) {
                    alert.snoozed_until = Some(e.until);
                }
            }
            AlertEvent::AlertReminded(e) => {
                if let Some(alert) = self.open.iter_mut().find(|a| a.alert_id == e.alert_id) {
                    match alert.reminded.iter_mut().find(|(r, _)| *r == e.route) {
                        Some((_, at)) => *at = e.at,
                        None => alert.reminded.push((e.route, e.at)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::examples;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<InstanceAlerts>;

    fn failed_at(alert_id: &str, stage: Stage, position: i64) -> AlertRaised {
        let started = examples::started();
        AlertRaised {
            alert_id: alert_id.into(),
            kind: AlertKind::BackupFailed,
            tenant_id: started.tenant_id,
            instance_id: started.instance_id,
            cycle_id: Some(started.cycle_id),
            stage: Some(stage),
            reason: Some(FailureReason::PbxAuth),
            detail: "refused".into(),
            raised_at: examples::at(),
            position,
        }
    }

    fn failed(alert_id: &str) -> AlertRaised {
        failed_at(alert_id, Stage::Verify, 10)
    }

    fn stale(alert_id: &str, kind: AlertKind) -> AlertRaised {
        AlertRaised {
            kind,
            cycle_id: None,
            stage: None,
            reason: None,
            ..failed(alert_id)
        }
    }

    fn first_id() -> String {
        format!("{}-1", examples::started().instance_id)
    }

    fn later_cycle() -> CycleId {
        CycleId::random()
    }

    fn resolve(cycle_id: CycleId, reached: Rung, ended: bool, position: i64) -> AlertCommand {
        AlertCommand::Resolve {
            cycle_id,
            reached,
            ended,
            position,
            at: examples::at(),
        }
    }

    fn resolved(kind: AlertKind, by: CycleId) -> AlertEvent {
        AlertEvent::AlertResolved(AlertResolved {
            alert_id: first_id(),
            kind,
            resolved_by: Some(by),
            resolved_at: examples::at(),
        })
    }

    #[test]
    fn a_failure_raises_an_alert_numbered_for_its_instance() {
        Given::with(())
            .given_no_previous_events()
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![AlertEvent::AlertRaised(failed(&first_id()))]);
    }

    #[test]
    fn another_failure_while_the_alert_is_open_raises_nothing() {
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_later_cycle_that_ends_verified_resolves_backup_failed() {
        let later = later_cycle();
        for reached in [Rung::Verified, Rung::RestoreTested] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(resolve(later, reached, true, 20))
                .then_expect_events(vec![resolved(AlertKind::BackupFailed, later)]);
        }
    }

    /// The flapping this rule ends: a copy reaching Secured (or Verified) in a cycle that may
    /// still fail one rung later, or a cycle that ended below Verified, recovers nothing.
    #[test]
    fn a_copy_that_only_climbs_or_ends_below_verified_leaves_backup_failed_open() {
        for (reached, ended) in [
            (Rung::Secured, false),
            (Rung::Verified, false),
            (Rung::RestoreTested, false),
            (Rung::Secured, true),
            (Rung::Captured, true),
        ] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(resolve(later_cycle(), reached, ended, 20))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn a_restore_test_failure_is_resolved_only_by_a_later_restore_tested_cycle() {
        let raised = || {
            vec![AlertEvent::AlertRaised(failed_at(
                &first_id(),
                Stage::RestoreTest,
                10,
            ))]
        };
        Given::with(())
            .given(raised())
            .when(resolve(later_cycle(), Rung::Verified, true, 20))
            .then_expect_events(vec![]);
        let later = later_cycle();
        Given::with(())
            .given(raised())
            .when(resolve(later, Rung::RestoreTested, true, 20))
            .then_expect_events(vec![resolved(AlertKind::BackupFailed, later)]);
    }

    /// Order is the log's, never a clock's: an event earlier in the log (a redelivered, older
    /// success) resolves nothing raised after it, whatever its timestamp.
    #[test]
    fn only_an_event_later_in_the_log_resolves() {
        for position in [9, 10] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(AlertCommand::Resolve {
                    cycle_id: later_cycle(),
                    reached: Rung::RestoreTested,
                    ended: true,
                    position,
                    at: examples::at() + chrono::Duration::days(1),
                })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn stale_alerts_resolve_on_the_rung_they_wait_for() {
        let later = later_cycle();
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::BackupStale,
            ))])
            .when(resolve(later, Rung::Secured, false, 20))
            .then_expect_events(vec![resolved(AlertKind::BackupStale, later)]);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::VerifyStale,
            ))])
            .when(resolve(later_cycle(), Rung::Secured, false, 20))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::VerifyStale,
            ))])
            .when(resolve(later, Rung::Verified, false, 20))
            .then_expect_events(vec![resolved(AlertKind::VerifyStale, later)]);
    }

    #[test]
    fn a_redelivered_failure_raises_nothing_after_its_alert_was_resolved() {
        Given::with(())
            .given(vec![
                AlertEvent::AlertRaised(failed(&first_id())),
                resolved(AlertKind::BackupFailed, later_cycle()),
            ])
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![]);
    }

    /// However many cycles have failed, the state keeps only the last [`RAISED_FOR_KEPT`]
    /// (oldest forgotten first), and a redelivery of a recent one still raises nothing.
    #[test]
    fn the_cycles_that_raised_are_bounded_to_the_most_recent() {
        let mut alerts = InstanceAlerts::default();
        let cycles: Vec<CycleId> = (0..1000u128)
            .map(|n| CycleId(uuid::Uuid::from_u128(n + 1)))
            .collect();
        for (n, cycle) in cycles.iter().enumerate() {
            let id = format!("a-{n}");
            alerts.apply(AlertEvent::AlertRaised(AlertRaised {
                cycle_id: Some(*cycle),
                ..failed(&id)
            }));
            alerts.apply(AlertEvent::AlertResolved(AlertResolved {
                alert_id: id,
                kind: AlertKind::BackupFailed,
                resolved_by: Some(*cycle),
                resolved_at: examples::at(),
            }));
        }
        assert_eq!(alerts.raised, 1000);
        assert!(alerts.open.is_empty());
        let kept: Vec<(CycleId, AlertKind, i64)> = cycles[1000 - RAISED_FOR_KEPT..]
            .iter()
            .map(|c| (*c, AlertKind::BackupFailed, 10))
            .collect();
        assert_eq!(alerts.raised_for, kept);

        let recent = cycles[999];
        let given: Vec<AlertEvent> = vec![
            AlertEvent::AlertRaised(AlertRaised {
                cycle_id: Some(recent),
                ..failed(&first_id())
            }),
            resolved(AlertKind::BackupFailed, later_cycle()),
        ];
        Given::with(())
            .given(given)
            .when(AlertCommand::Raise(AlertRaised {
                cycle_id: Some(recent),
                ..failed("")
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn nothing_open_means_nothing_to_resolve() {
        Given::with(())
            .given_no_previous_events()
            .when(resolve(later_cycle(), Rung::RestoreTested, true, 20))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_alert_written_before_positions_existed_still_reads() {
        let mut json = serde_json::to_value(failed(&first_id())).expect("json");
        json.as_object_mut().expect("object").remove("position");
        let read: AlertRaised = serde_json::from_value(json).expect("old alert");
        assert_eq!(read.position, 0);
    }

    fn acknowledge(note: &str) -> AlertCommand {
        AlertCommand::Acknowledge {
            alert_id: first_id(),
            by: "owner@acme.example".into(),
            note: note.into(),
            at: examples::at(),
        }
    }

    fn snooze(hours: i64) -> AlertCommand {
        AlertCommand::Snooze {
            alert_id: first_id(),
            by: "owner@acme.example".into(),
            until: examples::at() + chrono::Duration::hours(hours),
            note: "migration tonight".into(),
            at: examples::at(),
        }
    }

    #[test]
    fn an_open_alert_is_acknowledged_and_snoozed_and_stays_open() {
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(acknowledge("  on it  "))
            .then_expect_events(vec![AlertEvent::AlertAcknowledged(AlertAcknowledged {
                alert_id: first_id(),
                by: "owner@acme.example".into(),
                note: "on it".into(),
                at: examples::at(),
            })]);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(snooze(8))
            .then_expect_events(vec![AlertEvent::AlertSnoozed(AlertSnoozed {
                alert_id: first_id(),
                by: "owner@acme.example".into(),
                until: examples::at() + chrono::Duration::hours(8),
                note: "migration tonight".into(),
                at: examples::at(),
            })]);
        // Still open: another failure raises nothing; recovery resolves it.
        let mut alerts = InstanceAlerts::default();
        alerts.apply(AlertEvent::AlertRaised(failed(&first_id())));
        let now = examples::at();
        assert!(alerts.open[0].wants_reminding(now));
        alerts.apply(AlertEvent::AlertSnoozed(AlertSnoozed {
            alert_id: first_id(),
            by: "x".into(),
            until: now + chrono::Duration::hours(1),
            note: String::new(),
            at: now,
        }));
        assert!(!alerts.open[0].wants_reminding(now), "snoozed");
        assert!(
            alerts.open[0].wants_reminding(now + chrono::Duration::hours(1)),
            "the snooze ended"
        );
        alerts.apply(AlertEvent::AlertAcknowledged(AlertAcknowledged {
            alert_id: first_id(),
            by: "x".into(),
            note: String::new(),
            at: now,
        }));
        assert!(
            !alerts.open[0].wants_reminding(now + chrono::Duration::days(9)),
            "acknowledged: no reminders, ever"
        );
        assert!(alerts.is_open(AlertKind::BackupFailed));
    }

    #[test]
    fn only_an_open_alert_can_be_acknowledged_or_snoozed() {
        let closed = || {
            vec![
                AlertEvent::AlertRaised(failed(&first_id())),
                resolved(AlertKind::BackupFailed, later_cycle()),
            ]
        };
        for command in [acknowledge("late"), snooze(1)] {
            Given::with(())
                .given(closed())
                .when(command.clone())
                .then_expect_error(AlertError::NotOpen(first_id()));
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(AlertError::NotOpen(first_id()));
        }
    }

    #[test]
    fn a_hostile_note_or_snooze_is_refused() {
        let open = || vec![AlertEvent::AlertRaised(failed(&first_id()))];
        for note in [
            "x".repeat(NOTE_LIMIT + 1),
            "line\nbreak".into(),
            "\u{1b}[31m".into(),
        ] {
            Given::with(())
                .given(open())
                .when(acknowledge(&note))
                .then_expect_error(AlertError::BadNote);
        }
        Given::with(())
            .given(open())
            .when(acknowledge(&"é".repeat(NOTE_LIMIT)))
            .then_expect_events(vec![AlertEvent::AlertAcknowledged(AlertAcknowledged {
                alert_id: first_id(),
                by: "owner@acme.example".into(),
                note: "é".repeat(NOTE_LIMIT),
                at: examples::at(),
            })]);
        for hours in [0, -5, SNOOZE_LIMIT_DAYS * 24 + 1] {
            Given::with(())
                .given(open())
                .when(snooze(hours))
                .then_expect_error(AlertError::BadSnooze);
        }
    }

    fn remind(hours_after_raise: i64) -> AlertCommand {
        AlertCommand::Remind {
            alert_id: first_id(),
            route: "slack".into(),
            every_hours: 24,
            catch_up: false,
            at: examples::at() + chrono::Duration::hours(hours_after_raise),
        }
    }

    fn reminded(route: &str, hours_after_raise: i64) -> AlertEvent {
        AlertEvent::AlertReminded(AlertReminded {
            alert_id: first_id(),
            route: route.into(),
            at: examples::at() + chrono::Duration::hours(hours_after_raise),
        })
    }

    #[test]
    fn an_open_alert_is_reminded_per_route_every_interval_until_taken_on() {
        let raised = AlertEvent::AlertRaised(failed(&first_id()));
        // Not before the interval; at it; counted from the route's own last reminder.
        Given::with(())
            .given(vec![raised.clone()])
            .when(remind(23))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![raised.clone()])
            .when(remind(24))
            .then_expect_events(vec![reminded("slack", 24)]);
        Given::with(())
            .given(vec![raised.clone(), reminded("slack", 24)])
            .when(remind(47))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![raised.clone(), reminded("email", 40)])
            .when(remind(30))
            .then_expect_events(vec![reminded("slack", 30)]);
        // Acknowledged: never again; snoozed: not until the snooze ends; resolved: never.
        let acknowledged = AlertEvent::AlertAcknowledged(AlertAcknowledged {
            alert_id: first_id(),
            by: "x".into(),
            note: String::new(),
            at: examples::at(),
        });
        Given::with(())
            .given(vec![raised.clone(), acknowledged])
            .when(remind(24 * 9))
            .then_expect_events(vec![]);
        let snoozed = AlertEvent::AlertSnoozed(AlertSnoozed {
            alert_id: first_id(),
            by: "x".into(),
            until: examples::at() + chrono::Duration::hours(72),
            note: String::new(),
            at: examples::at(),
        });
        Given::with(())
            .given(vec![raised.clone(), snoozed.clone()])
            .when(remind(71))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![raised.clone(), snoozed])
            .when(remind(72))
            .then_expect_events(vec![reminded("slack", 72)]);
        Given::with(())
            .given(vec![
                raised,
                resolved(AlertKind::BackupFailed, later_cycle()),
            ])
            .when(remind(48))
            .then_expect_events(vec![]);
    }

    /// A raise held by quiet hours is caught up once, whatever the interval, then the interval
    /// counts from that catch-up.
    #[test]
    fn a_raise_held_by_quiet_hours_is_caught_up_once() {
        let raised = AlertEvent::AlertRaised(failed(&first_id()));
        let catch_up = |hours: i64| AlertCommand::Remind {
            alert_id: first_id(),
            route: "slack".into(),
            every_hours: 0,
            catch_up: true,
            at: examples::at() + chrono::Duration::hours(hours),
        };
        Given::with(())
            .given(vec![raised.clone()])
            .when(catch_up(1))
            .then_expect_events(vec![reminded("slack", 1)]);
        Given::with(())
            .given(vec![raised.clone(), reminded("slack", 1)])
            .when(catch_up(90))
            .then_expect_events(vec![]);
        let acknowledged = AlertEvent::AlertAcknowledged(AlertAcknowledged {
            alert_id: first_id(),
            by: "x".into(),
            note: String::new(),
            at: examples::at(),
        });
        Given::with(())
            .given(vec![raised, acknowledged])
            .when(catch_up(1))
            .then_expect_events(vec![]);
    }

    fn slow(position: i64) -> AlertRaised {
        AlertRaised {
            kind: AlertKind::RestoreSlow,
            stage: Some(Stage::RestoreTest),
            reason: None,
            position,
            ..failed(&first_id())
        }
    }

    #[test]
    fn a_recheck_failed_ends_only_by_a_later_good_recheck_of_the_same_copy() {
        let copy = later_cycle();
        let raised = AlertEvent::AlertRaised(AlertRaised {
            kind: AlertKind::RecheckFailed,
            stage: None,
            reason: Some(FailureReason::ChecksumMismatch),
            cycle_id: Some(copy),
            position: 10,
            ..failed(&first_id())
        });
        let good_recheck = |cycle_id, position| AlertCommand::ResolveKind {
            kind: AlertKind::RecheckFailed,
            cycle_id: Some(cycle_id),
            position,
            at: examples::at(),
        };
        // No rung of a newer copy, no good re-check of another copy, nothing earlier in the log.
        for command in [
            resolve(later_cycle(), Rung::RestoreTested, true, 20),
            good_recheck(later_cycle(), 20),
            good_recheck(copy, 9),
        ] {
            Given::with(())
                .given(vec![raised.clone()])
                .when(command)
                .then_expect_events(vec![]);
        }
        Given::with(())
            .given(vec![raised])
            .when(good_recheck(copy, 20))
            .then_expect_events(vec![resolved(AlertKind::RecheckFailed, copy)]);
    }

    /// A copy that fails a re-check, recovers, and fails a later one raises a second alert; a
    /// redelivery of the first failure (the same log position) raises nothing.
    #[test]
    fn a_copy_that_fails_a_recheck_again_after_recovering_raises_again() {
        let copy = later_cycle();
        let failed_recheck = |alert_id: &str, position| AlertRaised {
            kind: AlertKind::RecheckFailed,
            stage: None,
            reason: Some(FailureReason::ObjectMissing),
            cycle_id: Some(copy),
            position,
            ..failed(alert_id)
        };
        let history = vec![
            AlertEvent::AlertRaised(failed_recheck(&first_id(), 10)),
            resolved(AlertKind::RecheckFailed, copy),
        ];
        Given::with(())
            .given(history.clone())
            .when(AlertCommand::Raise(failed_recheck("", 10)))
            .then_expect_events(vec![]);
        let second = format!("{}-2", examples::started().instance_id);
        Given::with(())
            .given(history)
            .when(AlertCommand::Raise(failed_recheck("", 30)))
            .then_expect_events(vec![AlertEvent::AlertRaised(failed_recheck(&second, 30))]);
    }

    #[test]
    fn restore_slow_ends_only_by_a_later_restore_within_the_target() {
        let raised = AlertEvent::AlertRaised(slow(10));
        // No rung recovers it, not even a later Restore-Tested cycle.
        Given::with(())
            .given(vec![raised.clone()])
            .when(resolve(later_cycle(), Rung::RestoreTested, true, 20))
            .then_expect_events(vec![]);
        // A restore within the target told earlier in the log, or of another kind: nothing.
        for (kind, position) in [(AlertKind::RestoreSlow, 9), (AlertKind::BackupFailed, 20)] {
            Given::with(())
                .given(vec![raised.clone()])
                .when(AlertCommand::ResolveKind {
                    kind,
                    cycle_id: Some(later_cycle()),
                    position,
                    at: examples::at(),
                })
                .then_expect_events(vec![]);
        }
        let within = later_cycle();
        Given::with(())
            .given(vec![raised])
            .when(AlertCommand::ResolveKind {
                kind: AlertKind::RestoreSlow,
                cycle_id: Some(within),
                position: 20,
                at: examples::at(),
            })
            .then_expect_events(vec![resolved(AlertKind::RestoreSlow, within)]);
    }

    #[test]
    fn a_restore_slow_beside_an_open_backup_failed_is_its_own_alert() {
        let slow_cycle = later_cycle();
        let mut second = slow(12);
        second.alert_id = String::new();
        let mut expected = slow(12);
        expected.alert_id = format!("{}-2", examples::started().instance_id);
        second.cycle_id = Some(slow_cycle);
        expected.cycle_id = Some(slow_cycle);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(AlertCommand::Raise(second))
            .then_expect_events(vec![AlertEvent::AlertRaised(expected)]);
    }

    fn native_stale(position: i64) -> AlertRaised {
        AlertRaised {
            kind: AlertKind::NativeBackupStale,
            stage: Some(Stage::Capture),
            reason: None,
            position,
            ..failed(&first_id())
        }
    }

    #[test]
    fn a_cycle_that_raised_a_native_alert_can_still_raise_its_failure_once() {
        // The same cycle: its capture found the native backups stale, then it failed verify.
        let mut failure = failed("");
        failure.position = 20;
        let mut expected = failure.clone();
        expected.alert_id = format!("{}-2", examples::started().instance_id);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(native_stale(10))])
            .when(AlertCommand::Raise(failure.clone()))
            .then_expect_events(vec![AlertEvent::AlertRaised(expected.clone())]);
        // Both raised, the native one resolved: a redelivered capture raises nothing again.
        Given::with(())
            .given(vec![
                AlertEvent::AlertRaised(native_stale(10)),
                AlertEvent::AlertRaised(expected),
                resolved(AlertKind::NativeBackupStale, later_cycle()),
            ])
            .when(AlertCommand::Raise(native_stale(10)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_native_alert_ends_only_by_a_later_reading_without_its_fault() {
        let raised = AlertEvent::AlertRaised(native_stale(10));
        for reached in [Rung::Verified, Rung::RestoreTested] {
            Given::with(())
                .given(vec![raised.clone()])
                .when(resolve(later_cycle(), reached, true, 30))
                .then_expect_events(vec![]);
        }
        let later = later_cycle();
        for (kind, position, expected) in [
            (AlertKind::NativeBackupDisabled, 30, vec![]),
            (AlertKind::NativeBackupStale, 9, vec![]),
            (
                AlertKind::NativeBackupStale,
                30,
                vec![resolved(AlertKind::NativeBackupStale, later)],
            ),
        ] {
            Given::with(())
                .given(vec![raised.clone()])
                .when(AlertCommand::ResolveKind {
                    kind,
                    cycle_id: Some(later),
                    position,
                    at: examples::at(),
                })
                .then_expect_events(expected);
        }
    }

    /// The native backup watch between captures reads with no cycle: its alert is raised once
    /// however often it reads, and a later good reading resolves it with no cycle named; no
    /// reading of the watch resolves a Re-check Failed (only a re-check of that copy does).
    #[test]
    fn the_native_watch_raises_and_resolves_without_a_cycle() {
        let watched = |position| AlertRaised {
            cycle_id: None,
            stage: None,
            ..native_stale(position)
        };
        let raised = AlertEvent::AlertRaised(AlertRaised {
            alert_id: first_id(),
            ..watched(10)
        });
        Given::with(())
            .given(vec![raised.clone()])
            .when(AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                ..watched(20)
            }))
            .then_expect_events(vec![]);
        let by_watch = |kind, position| AlertCommand::ResolveKind {
            kind,
            cycle_id: None,
            position,
            at: examples::at(),
        };
        // A redelivered reading after the resolution raises nothing; a later one raises again.
        let resolution = AlertEvent::AlertResolved(AlertResolved {
            alert_id: first_id(),
            kind: AlertKind::NativeBackupStale,
            resolved_by: None,
            resolved_at: examples::at(),
        });
        Given::with(())
            .given(vec![raised.clone(), resolution.clone()])
            .when(AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                ..watched(10)
            }))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![raised.clone(), resolution])
            .when(AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                ..watched(40)
            }))
            .then_expect_events(vec![AlertEvent::AlertRaised(AlertRaised {
                alert_id: format!("{}-2", examples::started().instance_id),
                ..watched(40)
            })]);
        Given::with(())
            .given(vec![raised])
            .when(by_watch(AlertKind::NativeBackupStale, 30))
            .then_expect_events(vec![AlertEvent::AlertResolved(AlertResolved {
                alert_id: first_id(),
                kind: AlertKind::NativeBackupStale,
                resolved_by: None,
                resolved_at: examples::at(),
            })]);
        let recheck = AlertEvent::AlertRaised(AlertRaised {
            kind: AlertKind::RecheckFailed,
            cycle_id: Some(later_cycle()),
            ..failed(&first_id())
        });
        Given::with(())
            .given(vec![recheck])
            .when(by_watch(AlertKind::RecheckFailed, 30))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_alert_resolved_before_the_watch_existed_still_names_its_cycle() {
        let by = later_cycle();
        let json = serde_json::json!({
            "alert_id": first_id(),
            "kind": "backup_failed",
            "resolved_by": by.to_string(),
            "resolved_at": examples::at(),
        });
        let read: AlertResolved = serde_json::from_value(json).expect("old resolution");
        assert_eq!(read.resolved_by, Some(by));
    }
}
