//! The `Instance` aggregate: one enrolled PBX — where it is, its sealed API credentials, its
//! schedule, whether managed backups are stopped, and the cycle in flight.
//!
//! Rules: enrolment happens once (a repeat with the same facts is a no-op); a stopped instance
//! opens no cycle; at most one cycle is in flight per instance (opening a second is refused with
//! [`InstanceError::CycleInFlight`]); every command is idempotent.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::ladder::{Rung, Trigger};
use crate::native_backups::NativeBackups;
use crate::{Snapshotted, EVENT_VERSION};

/// The PBX API client id and secret, sealed by the key-sealing port. Opaque to the domain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SealedCredentials(pub String);

impl std::fmt::Debug for SealedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedCredentials(..)")
    }
}

/// How often an instance is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    /// Minutes between the starts of two scheduled cycles.
    pub interval_minutes: u32,
}

impl Schedule {
    /// Once a day.
    pub const DAILY: Schedule = Schedule {
        interval_minutes: 24 * 60,
    };

    /// The interval as a duration.
    pub fn interval(self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.interval_minutes))
    }
}

impl RestoreSelection {
    /// `random_within_days N` when a window is given, else `newest`.
    pub fn within_days(days: Option<u32>) -> Self {
        days.map_or(RestoreSelection::Newest, |days| {
            RestoreSelection::RandomWithinDays { days }
        })
    }
}

/// Which copy a scheduled restore test restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreSelection {
    /// The copy the cycle just made (the default).
    #[default]
    Newest,
    /// One picked at random among the instance's Verified copies (still stored, not yet
    /// restore-tested, not failed) made within the last `days` days, the new one included: over
    /// time every copy of the window is as likely to be proven, not only the newest.
    RandomWithinDays {
        /// The window, 1 to [`RESTORE_SELECTION_LIMIT_DAYS`].
        days: u32,
    },
}

/// The longest window a random restore selection may draw from, in days.
pub const RESTORE_SELECTION_LIMIT_DAYS: u32 = 366;

impl RestoreSelection {
    /// How people read it: `newest`, `random within 14 days`.
    pub fn describe(self) -> String {
        match self {
            RestoreSelection::Newest => "newest".to_owned(),
            RestoreSelection::RandomWithinDays { days } => format!("random within {days} days"),
        }
    }
}

/// When a verified copy also gets a restore test: every Nth verified cycle, or whenever the last
/// Restore-Tested copy is older than `max_age_hours` (default: weekly), and always the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestorePolicy {
    /// Restore-test every Nth verified cycle (1: every cycle).
    pub every_nth_verified: u32,
    /// Restore-test when the last Restore-Tested copy is at least this old.
    pub max_age_hours: u32,
    /// The restore-time target in minutes: a restore test that takes longer raises "Restore
    /// Slow" (15 in instances enrolled before the field existed).
    #[serde(default = "default_target_minutes")]
    pub target_minutes: u32,
    /// Which copy a scheduled restore test restores (`newest` in instances enrolled before the
    /// field existed).
    #[serde(default)]
    pub selection: RestoreSelection,
}

/// The default restore-time target, in minutes.
pub const DEFAULT_RESTORE_TARGET_MINUTES: u32 = 15;

fn default_target_minutes() -> u32 {
    DEFAULT_RESTORE_TARGET_MINUTES
}

impl Default for RestorePolicy {
    fn default() -> Self {
        Self {
            every_nth_verified: 7,
            max_age_hours: 7 * 24,
            target_minutes: DEFAULT_RESTORE_TARGET_MINUTES,
            selection: RestoreSelection::Newest,
        }
    }
}

/// A PBX was enrolled for managed backups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceEnrolled {
    /// This instance.
    pub instance_id: InstanceId,
    /// Its tenant (whose key encrypts its backups).
    pub tenant_id: TenantId,
    /// A display name.
    pub name: String,
    /// The PBX's FQDN as the customer knows it.
    pub fqdn: String,
    /// Base URL of the PBX API (`https://<fqdn>` in production).
    pub api_url: String,
    /// The API client id and secret, sealed.
    pub credentials: SealedCredentials,
    /// How often to capture.
    pub schedule: Schedule,
    /// How often a verified copy is also restore-tested.
    pub restore_policy: RestorePolicy,
    /// Plain `http` to a host that is not loopback was explicitly allowed at enrolment (the
    /// tenant's backup password then crosses the network in clear; the UI warns). `false` in
    /// events written before the field existed.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// When.
    pub enrolled_at: DateTime<Utc>,
}

/// The PBX moved (new URL or new API credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointChanged {
    /// The new base URL.
    pub api_url: String,
    /// The base URL it replaced (the old origin); `None` in events written before the field
    /// existed.
    #[serde(default)]
    pub previous_api_url: Option<String>,
    /// Whether plain `http` to a non-loopback host is allowed from now on (see
    /// [`InstanceEnrolled::allow_insecure_http`]).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The new sealed credentials.
    pub credentials: SealedCredentials,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// Managed backups were stopped for the instance; stored copies stay until retain-until.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStopped {
    /// When.
    pub stopped_at: DateTime<Utc>,
}

/// Managed backups were resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceResumed {
    /// When.
    pub resumed_at: DateTime<Utc>,
}

/// The instance was offboarded: managed backups stop for good, and its copies and credentials
/// are removed once `purge_after` has passed (each copy once its Object Lock has run out too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceRemoved {
    /// When.
    pub removed_at: DateTime<Utc>,
    /// From when its copies and credentials are removed.
    pub purge_after: DateTime<Utc>,
}

/// Every copy of a removed instance is gone from the vault and its credentials are forgotten:
/// the state no longer holds them and nothing unseals them again (the log keeps the facts and
/// the sealed text it always had, never a secret in clear).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstancePurged {
    /// When.
    pub purged_at: DateTime<Utc>,
}

/// The native backup watch read the PBX's own backup schedule between captures (a capture's
/// reading is `Captured::native_backups`, on its cycle).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NativeBackupsRead {
    /// What the PBX said (`read_at`: when).
    pub native_backups: NativeBackups,
}

/// A cycle was opened for the instance (the pipeline starts it from this event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CycleOpened {
    /// The cycle.
    pub cycle_id: CycleId,
    /// Why.
    pub trigger: Trigger,
    /// When.
    pub opened_at: DateTime<Utc>,
}

/// The cycle in flight ended (reached its last rung or failed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CycleClosed {
    /// The cycle.
    pub cycle_id: CycleId,
    /// The highest rung it reached.
    pub reached: Rung,
    /// Whether it ended in `Failed`.
    pub failed: bool,
    /// Whether it failed with a *retryable* reason (the key service or the vault stayed away,
    /// a timeout): the scheduler then tries the instance again soon, with back-off, instead of
    /// a whole interval later ([`Instance::retry_delay`]). `false` in events written before
    /// the field existed.
    #[serde(default)]
    pub retryable: bool,
    /// The older copy whose restore test this cycle ran instead of its own (the instance's
    /// `random_within_days` selection picked it), when that test passed: the instance counts it
    /// as its restore test. `None` otherwise, and in events written before the field existed.
    #[serde(default)]
    pub restore_tested_copy: Option<CycleId>,
    /// When.
    pub closed_at: DateTime<Utc>,
}

/// Everything that can happen to an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum InstanceEvent {
    /// See [`InstanceEnrolled`].
    InstanceEnrolled(InstanceEnrolled),
    /// See [`EndpointChanged`].
    EndpointChanged(EndpointChanged),
    /// See [`InstanceStopped`].
    InstanceStopped(InstanceStopped),
    /// See [`InstanceResumed`].
    InstanceResumed(InstanceResumed),
    /// See [`CycleOpened`].
    CycleOpened(CycleOpened),
    /// See [`CycleClosed`].
    CycleClosed(CycleClosed),
    /// See [`InstanceRemoved`].
    InstanceRemoved(InstanceRemoved),
    /// See [`InstancePurged`].
    InstancePurged(InstancePurged),
    /// See [`NativeBackupsRead`].
    NativeBackupsRead(NativeBackupsRead),
}

impl DomainEvent for InstanceEvent {
    fn event_type(&self) -> String {
        match self {
            InstanceEvent::InstanceEnrolled(_) => "InstanceEnrolled",
            InstanceEvent::EndpointChanged(_) => "EndpointChanged",
            InstanceEvent::InstanceStopped(_) => "InstanceStopped",
            InstanceEvent::InstanceResumed(_) => "InstanceResumed",
            InstanceEvent::CycleOpened(_) => "CycleOpened",
            InstanceEvent::CycleClosed(_) => "CycleClosed",
            InstanceEvent::InstanceRemoved(_) => "InstanceRemoved",
            InstanceEvent::InstancePurged(_) => "InstancePurged",
            InstanceEvent::NativeBackupsRead(_) => "NativeBackupsRead",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What an operator or the scheduler asks of an instance.
#[derive(Clone, Debug, PartialEq)]
pub enum InstanceCommand {
    /// Enrol the PBX.
    Enrol(InstanceEnrolled),
    /// Point at a new URL / credentials (a no-op when nothing changed).
    ChangeEndpoint(EndpointChanged),
    /// Stop managed backups.
    Stop {
        /// When.
        at: DateTime<Utc>,
    },
    /// Resume managed backups.
    Resume {
        /// When.
        at: DateTime<Utc>,
    },
    /// Open a cycle.
    OpenCycle(CycleOpened),
    /// Close the cycle in flight.
    CloseCycle(CycleClosed),
    /// Offboard the instance (a no-op when it already was).
    Remove(InstanceRemoved),
    /// Record that a removed instance's copies are all gone and forget its credentials.
    Purge(InstancePurged),
    /// Record the native backup watch's reading, unless the watch already recorded one read
    /// after `due_before` (another sweep read it first: a no-op) or one read later.
    RecordNativeBackups {
        /// The reading.
        reading: NativeBackups,
        /// Only a watch whose last reading is older than this is due.
        due_before: DateTime<Utc>,
    },
}

/// Why an instance refused a command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InstanceError {
    /// The instance is not enrolled.
    #[error("the instance is not enrolled")]
    NotEnrolled,
    /// A second enrolment with different facts.
    #[error("the instance is already enrolled with other settings")]
    AlreadyEnrolled,
    /// Managed backups are stopped for the instance.
    #[error("managed backups are stopped for this instance")]
    Stopped,
    /// The instance was removed (offboarded): nothing more is done for it.
    #[error("the instance was removed")]
    Removed,
    /// A purge before the removal's `purge_after`, or of an instance not removed.
    #[error("the instance is not due to be purged")]
    PurgeNotDue,
    /// Another cycle is in flight.
    #[error("cycle {0} is still in flight for this instance")]
    CycleInFlight(CycleId),
    /// The schedule interval must be at least one minute.
    #[error("the schedule interval must be at least one minute")]
    InvalidSchedule,
    /// The restore-time target must be 1 to [`RESTORE_TARGET_LIMIT_MINUTES`] minutes.
    #[error("the restore-time target must be 1 to {RESTORE_TARGET_LIMIT_MINUTES} minutes")]
    InvalidRestoreTarget,
    /// A random restore selection's window must be 1 to [`RESTORE_SELECTION_LIMIT_DAYS`] days.
    #[error(
        "a random restore selection's window must be 1 to {RESTORE_SELECTION_LIMIT_DAYS} days"
    )]
    InvalidRestoreSelection,
}

/// Whether an enrolment's schedule and restore policy are in range: the interval at least a
/// minute, the restore-time target 1 to [`RESTORE_TARGET_LIMIT_MINUTES`], a random selection's
/// window 1 to [`RESTORE_SELECTION_LIMIT_DAYS`] days. `Enrol` refuses what this refuses, and an
/// enrolment checks it first, before anything is sealed or looked up.
///
/// # Errors
/// [`InstanceError::InvalidSchedule`], [`InstanceError::InvalidRestoreTarget`] or
/// [`InstanceError::InvalidRestoreSelection`].
pub fn check_policy(schedule: &Schedule, policy: &RestorePolicy) -> Result<(), InstanceError> {
    if schedule.interval_minutes == 0 {
        return Err(InstanceError::InvalidSchedule);
    }
    if !(1..=RESTORE_TARGET_LIMIT_MINUTES).contains(&policy.target_minutes) {
        return Err(InstanceError::InvalidRestoreTarget);
    }
    if let RestoreSelection::RandomWithinDays { days } = policy.selection {
        if !(1..=RESTORE_SELECTION_LIMIT_DAYS).contains(&days) {
            return Err(InstanceError::InvalidRestoreSelection);
        }
    }
    Ok(())
}

/// The longest restore-time target, in minutes (a day).
pub const RESTORE_TARGET_LIMIT_MINUTES: u32 = 24 * 60;

/// State of one instance, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Instance {
    /// Set by enrolment (and updated by endpoint changes).
    pub enrolled: Option<InstanceEnrolled>,
    /// Whether managed backups are stopped.
    pub stopped: bool,
    /// The cycle in flight, if any.
    pub open_cycle: Option<CycleId>,
    /// When the last cycle was opened (the scheduler counts the interval from it).
    pub last_opened_at: Option<DateTime<Utc>>,
    /// Verified cycles closed since the last Restore-Tested one.
    pub verified_since_restore_test: u32,
    /// When a copy of this instance was last Restore-Tested.
    pub last_restore_tested_at: Option<DateTime<Utc>>,
    /// Cycles in a row that closed with a retryable failure (0 after any other close).
    #[serde(default)]
    pub retryable_failures: u32,
    /// When the last cycle closed.
    #[serde(default)]
    pub last_closed_at: Option<DateTime<Utc>>,
    /// Set when the instance was offboarded.
    #[serde(default)]
    pub removed: Option<InstanceRemoved>,
    /// When its copies were all gone and its credentials forgotten.
    #[serde(default)]
    pub purged_at: Option<DateTime<Utc>>,
    /// When the native backup watch last read the PBX's own schedule (between captures).
    #[serde(default)]
    pub native_read_at: Option<DateTime<Utc>>,
}

/// The pause before an instance whose cycle failed retryably is tried again: it doubles with
/// each further retryable failure in a row (1, 2, 4, 8 ... minutes), up to the schedule
/// interval.
pub const FIRST_RETRY_DELAY_MINUTES: i64 = 1;

impl Instance {
    fn enrolled(&self) -> Result<&InstanceEnrolled, InstanceError> {
        self.enrolled.as_ref().ok_or(InstanceError::NotEnrolled)
    }

    /// Enrolled and not removed: what every command but a close, a stop and a purge needs.
    fn live(&self) -> Result<&InstanceEnrolled, InstanceError> {
        let enrolled = self.enrolled()?;
        if self.removed.is_some() {
            return Err(InstanceError::Removed);
        }
        Ok(enrolled)
    }

    /// When a removed instance's copies and credentials are due to be removed, until it is
    /// purged (`None` for an instance that was not removed, or is purged).
    pub fn purge_due_at(&self) -> Option<DateTime<Utc>> {
        match (&self.removed, self.purged_at) {
            (Some(removed), None) => Some(removed.purge_after),
            _ => None,
        }
    }

    /// From when the native backup watch is due to read the PBX's own schedule again, for the
    /// scheduler's index: its last reading (the earliest instant when it never read one).
    /// `None` for an instance the watch leaves alone: not enrolled, stopped or removed.
    pub fn native_watch_from(&self) -> Option<DateTime<Utc>> {
        if self.enrolled.is_none() || self.stopped || self.removed.is_some() {
            return None;
        }
        Some(self.native_read_at.unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// The earliest moment at which [`Instance::is_due`] holds, for the scheduler's index:
    /// `is_due(now) == next_due_at().is_some_and(|t| t <= now)` for every state and `now`.
    ///
    /// `None` when no moment is due as things stand: not enrolled, stopped, or a cycle in
    /// flight (the instance is not due until that cycle closes; the close is an event, after
    /// which the due time is known again), or a due time beyond the calendar. An instance
    /// that never opened a cycle is due at once: [`DateTime::<Utc>::MIN_UTC`].
    pub fn next_due_at(&self) -> Option<DateTime<Utc>> {
        let enrolled = self.enrolled.as_ref()?;
        if self.stopped || self.open_cycle.is_some() {
            return None;
        }
        let scheduled = match self.last_opened_at {
            None => Some(DateTime::<Utc>::MIN_UTC),
            Some(last) => last.checked_add_signed(enrolled.schedule.interval()),
        };
        let retry = match (self.retry_delay(), self.last_closed_at) {
            (Some(delay), Some(closed)) => closed.checked_add_signed(delay),
            _ => None,
        };
        match (scheduled, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the scheduler should open a cycle at `now`: the schedule interval has passed
    /// since the last cycle was opened, or the last cycle failed retryably and its back-off
    /// ([`Instance::retry_delay`]) has passed since it closed.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        let Some(enrolled) = &self.enrolled else {
            return false;
        };
        let retry_due = match (self.retry_delay(), self.last_closed_at) {
            (Some(delay), Some(closed)) => now - closed >= delay,
            _ => false,
        };
        !self.stopped
            && self.open_cycle.is_none()
            && (retry_due
                || self
                    .last_opened_at
                    .is_none_or(|last| now - last >= enrolled.schedule.interval()))
    }

    /// How long after the last close the instance is tried again, if its last cycle failed
    /// retryably: [`FIRST_RETRY_DELAY_MINUTES`] doubling with each retryable failure in a row,
    /// capped at the schedule interval. `None` after any other close.
    pub fn retry_delay(&self) -> Option<chrono::Duration> {
        let enrolled = self.enrolled.as_ref()?;
        let doublings = self.retryable_failures.checked_sub(1)?.min(20);
        let delay = chrono::Duration::minutes(FIRST_RETRY_DELAY_MINUTES << doublings);
        Some(delay.min(enrolled.schedule.interval()))
    }
}

impl Instance {
    /// Whether the cycle in flight, now Verified, should also be restore-tested at `now`.
    /// The same answer for every stage that asks while the cycle is open, so the restore-test
    /// stage and the close stage agree on where the cycle ends.
    pub fn restore_test_due(&self, now: DateTime<Utc>) -> bool {
        let Some(enrolled) = &self.enrolled else {
            return false;
        };
        let policy = enrolled.restore_policy;
        match self.last_restore_tested_at {
            None => true,
            Some(last) => {
                now - last >= chrono::Duration::hours(i64::from(policy.max_age_hours))
                    || self.verified_since_restore_test + 1 >= policy.every_nth_verified
            }
        }
    }
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for Instance {
    const SNAPSHOT_VERSION: u32 = 3;
}

impl Aggregate for Instance {
    const TYPE: &'static str = "Instance";
    type Command = InstanceCommand;
    type Event = InstanceEvent;
    type Error = InstanceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            InstanceCommand::Enrol(enrol) => {
                check_policy(&enrol.schedule, &enrol.restore_policy)?;
                if self.removed.is_some() {
                    return Err(InstanceError::Removed);
                }
                match &self.enrolled {
                    None => Some(InstanceEvent::InstanceEnrolled(enrol)),
                    Some(existing)
                        if existing.tenant_id == enrol.tenant_id && existing.name == enrol.name =>
                    {
                        None
                    }
                    Some(_) => return Err(InstanceError::AlreadyEnrolled),
                }
            }
            InstanceCommand::ChangeEndpoint(change) => {
                let enrolled = self.live()?;
                (enrolled.api_url != change.api_url
                    || enrolled.credentials != change.credentials
                    || enrolled.allow_insecure_http != change.allow_insecure_http)
                    .then_some(InstanceEvent::EndpointChanged(change))
            }
            InstanceCommand::Stop { at } => {
                self.enrolled()?;
                (!self.stopped).then_some(InstanceEvent::InstanceStopped(InstanceStopped {
                    stopped_at: at,
                }))
            }
            InstanceCommand::Resume { at } => {
                self.live()?;
                self.stopped
                    .then_some(InstanceEvent::InstanceResumed(InstanceResumed {
                        resumed_at: at,
                    }))
            }
            InstanceCommand::OpenCycle(open) => {
                self.enrolled()?;
                match self.open_cycle {
                    Some(current) if current == open.cycle_id => None,
                    Some(current) => return Err(InstanceError::CycleInFlight(current)),
                    None if self.removed.is_some() => return Err(InstanceError::Removed),
                    None if self.stopped => return Err(InstanceError::Stopped),
                    None => Some(InstanceEvent::CycleOpened(open)),
                }
            }
            InstanceCommand::CloseCycle(close) => {
                self.enrolled()?;
                (self.open_cycle == Some(close.cycle_id))
                    .then_some(InstanceEvent::CycleClosed(close))
            }
            InstanceCommand::Remove(remove) => {
                self.enrolled()?;
                self.removed
                    .is_none()
                    .then_some(InstanceEvent::InstanceRemoved(remove))
            }
            InstanceCommand::Purge(purge) => {
                self.enrolled()?;
                match (&self.removed, self.purged_at) {
                    (_, Some(_)) => None,
                    (Some(removed), None) if purge.purged_at >= removed.purge_after => {
                        Some(InstanceEvent::InstancePurged(purge))
                    }
                    _ => return Err(InstanceError::PurgeNotDue),
                }
            }
            InstanceCommand::RecordNativeBackups {
                reading,
                due_before,
            } => {
                self.live()?;
                if self.stopped {
                    return Err(InstanceError::Stopped);
                }
                self.native_read_at
                    .is_none_or(|last| last < due_before && last < reading.read_at)
                    .then_some(InstanceEvent::NativeBackupsRead(NativeBackupsRead {
                        native_backups: reading,
                    }))
            }
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            InstanceEvent::InstanceEnrolled(e) => self.enrolled = Some(e),
            InstanceEvent::EndpointChanged(e) => {
                if let Some(enrolled) = &mut self.enrolled {
                    enrolled.api_url = e.api_url;
                    enrolled.credentials = e.credentials;
                    enrolled.allow_insecure_http = e.allow_insecure_http;
                }
            }
            InstanceEvent::InstanceStopped(_) => self.stopped = true,
            InstanceEvent::InstanceResumed(_) => self.stopped = false,
            InstanceEvent::CycleOpened(e) => {
                self.open_cycle = Some(e.cycle_id);
                self.last_opened_at = Some(e.opened_at);
            }
            InstanceEvent::CycleClosed(e) => {
                self.open_cycle = None;
                self.last_closed_at = Some(e.closed_at);
                self.retryable_failures = if e.failed && e.retryable {
                    self.retryable_failures.saturating_add(1)
                } else {
                    0
                };
                if e.reached == Rung::RestoreTested || e.restore_tested_copy.is_some() {
                    self.verified_since_restore_test = 0;
                    self.last_restore_tested_at = Some(e.closed_at);
                } else if e.reached >= Rung::Verified {
                    self.verified_since_restore_test += 1;
                }
            }
            InstanceEvent::InstanceRemoved(e) => {
                self.stopped = true;
                self.removed = Some(e);
            }
            InstanceEvent::NativeBackupsRead(e) => {
                self.native_read_at = Some(e.native_backups.read_at);
            }
            InstanceEvent::InstancePurged(e) => {
                self.purged_at = Some(e.purged_at);
                if let Some(enrolled) = &mut self.enrolled {
                    enrolled.credentials = SealedCredentials(String::new());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceCommand as C;
    use super::InstanceEvent as E;
    use super::*;
    use crate::cycle::examples::at;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Instance>;

    fn enrolled() -> InstanceEnrolled {
        let tenant = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        InstanceEnrolled {
            instance_id: InstanceId::for_name(&tenant, "hq"),
            tenant_id: tenant,
            name: "hq".into(),
            fqdn: "hq.acme.example".into(),
            api_url: "https://hq.acme.example".into(),
            credentials: SealedCredentials("sealed".into()),
            schedule: Schedule::DAILY,
            restore_policy: RestorePolicy {
                every_nth_verified: 3,
                max_age_hours: 48,
                target_minutes: 30,
                selection: RestoreSelection::Newest,
            },
            allow_insecure_http: false,
            enrolled_at: at(),
        }
    }

    fn opened(n: u128) -> CycleOpened {
        CycleOpened {
            cycle_id: CycleId(uuid::Uuid::from_u128(n)),
            trigger: Trigger::Scheduled,
            opened_at: at(),
        }
    }

    fn closed(n: u128) -> CycleClosed {
        closed_at(n, Rung::Verified, at())
    }

    fn closed_at(n: u128, reached: Rung, when: DateTime<Utc>) -> CycleClosed {
        CycleClosed {
            cycle_id: CycleId(uuid::Uuid::from_u128(n)),
            reached,
            failed: false,
            retryable: false,
            restore_tested_copy: None,
            closed_at: when,
        }
    }

    fn failed_retryably(n: u128, when: DateTime<Utc>) -> CycleClosed {
        CycleClosed {
            failed: true,
            retryable: true,
            ..closed_at(n, Rung::Started, when)
        }
    }

    fn minutes(n: i64) -> chrono::Duration {
        chrono::Duration::minutes(n)
    }

    /// An instance on an hourly schedule, given these events after its enrolment.
    fn hourly_given(events: Vec<InstanceEvent>) -> Instance {
        let mut hourly = enrolled();
        hourly.schedule = Schedule {
            interval_minutes: 60,
        };
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(hourly));
        for event in events {
            instance.apply(event);
        }
        instance
    }

    fn removed(days: i64) -> InstanceRemoved {
        InstanceRemoved {
            removed_at: at(),
            purge_after: at() + chrono::Duration::days(days),
        }
    }

    #[test]
    fn a_removed_instance_stops_for_good_and_refuses_what_would_start_it_again() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        instance.apply(E::InstanceRemoved(removed(30)));
        assert!(instance.stopped);
        assert_eq!(instance.next_due_at(), None);
        assert_eq!(
            instance.purge_due_at(),
            Some(at() + chrono::Duration::days(30))
        );
        let given = || {
            Given::with(()).given(vec![
                E::InstanceEnrolled(enrolled()),
                E::InstanceRemoved(removed(30)),
            ])
        };
        given()
            .when(C::Resume { at: at() })
            .then_expect_error(InstanceError::Removed);
        given()
            .when(C::OpenCycle(opened(1)))
            .then_expect_error(InstanceError::Removed);
        given()
            .when(C::Enrol(enrolled()))
            .then_expect_error(InstanceError::Removed);
        // A second removal changes nothing (its later date does not move the purge).
        given()
            .when(C::Remove(removed(60)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_removed_instance_is_purged_only_from_its_purge_date_and_then_forgets_its_credentials() {
        let given = || {
            Given::with(()).given(vec![
                E::InstanceEnrolled(enrolled()),
                E::InstanceRemoved(removed(30)),
            ])
        };
        let early = InstancePurged {
            purged_at: at() + chrono::Duration::days(29),
        };
        given()
            .when(C::Purge(early))
            .then_expect_error(InstanceError::PurgeNotDue);
        let due = InstancePurged {
            purged_at: at() + chrono::Duration::days(30),
        };
        given()
            .when(C::Purge(due.clone()))
            .then_expect_events(vec![E::InstancePurged(due.clone())]);
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::Purge(due.clone()))
            .then_expect_error(InstanceError::PurgeNotDue);
        let mut instance = Instance::default();
        for event in [
            E::InstanceEnrolled(enrolled()),
            E::InstanceRemoved(removed(30)),
            E::InstancePurged(due),
        ] {
            instance.apply(event);
        }
        assert_eq!(instance.purge_due_at(), None);
        let credentials = instance.enrolled.map(|e| e.credentials);
        assert_eq!(credentials, Some(SealedCredentials(String::new())));
    }

    fn watched(hours_after: i64) -> NativeBackups {
        crate::native_backups::examples::healthy(at() + chrono::Duration::hours(hours_after))
    }

    fn record_native(hours_after: i64, due_before_hours: i64) -> InstanceCommand {
        C::RecordNativeBackups {
            reading: watched(hours_after),
            due_before: at() + chrono::Duration::hours(due_before_hours),
        }
    }

    fn native_read(hours_after: i64) -> InstanceEvent {
        E::NativeBackupsRead(NativeBackupsRead {
            native_backups: watched(hours_after),
        })
    }

    #[test]
    fn the_native_watch_records_a_reading_only_when_its_last_one_is_older_than_due() {
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(record_native(0, 0))
            .then_expect_events(vec![native_read(0)]);
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled()), native_read(0)])
            .when(record_native(6, 1))
            .then_expect_events(vec![native_read(6)]);
        // Another sweep read it after the due time: this second reading is a no-op.
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled()), native_read(6)])
            .when(record_native(7, 1))
            .then_expect_events(vec![]);
        // A reading older than the one recorded never replaces it.
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled()), native_read(6)])
            .when(record_native(5, 7))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_native_watch_leaves_stopped_removed_and_unknown_instances_alone() {
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::InstanceStopped(InstanceStopped { stopped_at: at() }),
            ])
            .when(record_native(1, 1))
            .then_expect_error(InstanceError::Stopped);
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::InstanceRemoved(removed(30)),
            ])
            .when(record_native(1, 1))
            .then_expect_error(InstanceError::Removed);
        Given::with(())
            .given_no_previous_events()
            .when(record_native(1, 1))
            .then_expect_error(InstanceError::NotEnrolled);

        let mut instance = Instance::default();
        assert_eq!(instance.native_watch_from(), None, "not enrolled");
        instance.apply(E::InstanceEnrolled(enrolled()));
        assert_eq!(
            instance.native_watch_from(),
            Some(DateTime::<Utc>::MIN_UTC),
            "never read: due at once"
        );
        instance.apply(native_read(3));
        assert_eq!(
            instance.native_watch_from(),
            Some(at() + chrono::Duration::hours(3))
        );
        instance.apply(E::InstanceStopped(InstanceStopped { stopped_at: at() }));
        assert_eq!(instance.native_watch_from(), None, "stopped");
        instance.apply(E::InstanceResumed(InstanceResumed { resumed_at: at() }));
        instance.apply(E::InstanceRemoved(removed(30)));
        assert_eq!(instance.native_watch_from(), None, "removed");
    }

    #[test]
    fn enrol_emits_enrolled() {
        Given::with(())
            .given_no_previous_events()
            .when(C::Enrol(enrolled()))
            .then_expect_events(vec![E::InstanceEnrolled(enrolled())]);
    }

    #[test]
    fn a_repeated_enrolment_emits_nothing() {
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::Enrol(enrolled()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_conflicting_enrolment_is_refused() {
        let mut other = enrolled();
        other.name = "branch".into();
        let result = Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::Enrol(other))
            .inspect_result();
        assert_eq!(result, Err(InstanceError::AlreadyEnrolled));
    }

    #[test]
    fn a_zero_interval_is_refused() {
        let mut bad = enrolled();
        bad.schedule.interval_minutes = 0;
        let result = Given::with(())
            .given_no_previous_events()
            .when(C::Enrol(bad))
            .inspect_result();
        assert_eq!(result, Err(InstanceError::InvalidSchedule));
    }

    #[test]
    fn a_restore_target_of_zero_or_over_a_day_is_refused() {
        for minutes in [0, RESTORE_TARGET_LIMIT_MINUTES + 1] {
            let mut bad = enrolled();
            bad.restore_policy.target_minutes = minutes;
            let result = Given::with(())
                .given_no_previous_events()
                .when(C::Enrol(bad))
                .inspect_result();
            assert_eq!(
                result,
                Err(InstanceError::InvalidRestoreTarget),
                "{minutes}"
            );
        }
    }

    #[test]
    fn an_enrolment_stored_before_the_restore_target_existed_reads_as_fifteen_minutes() {
        let policy: RestorePolicy =
            serde_json::from_str(r#"{"every_nth_verified": 7, "max_age_hours": 168}"#)
                .expect("an old policy parses");
        assert_eq!(policy.target_minutes, DEFAULT_RESTORE_TARGET_MINUTES);
        assert_eq!(policy.selection, RestoreSelection::Newest);
        let closed: CycleClosed = serde_json::from_value(serde_json::json!({
            "cycle_id": CycleId(uuid::Uuid::from_u128(1)),
            "reached": "verified",
            "failed": false,
            "closed_at": at(),
        }))
        .expect("an old close parses");
        assert_eq!(closed.restore_tested_copy, None);
    }

    #[test]
    fn a_random_selection_window_of_zero_or_over_a_year_is_refused() {
        for days in [0, RESTORE_SELECTION_LIMIT_DAYS + 1] {
            let mut bad = enrolled();
            bad.restore_policy.selection = RestoreSelection::RandomWithinDays { days };
            let result = Given::with(())
                .given_no_previous_events()
                .when(C::Enrol(bad))
                .inspect_result();
            assert_eq!(
                result,
                Err(InstanceError::InvalidRestoreSelection),
                "{days}"
            );
        }
        let mut good = enrolled();
        good.restore_policy.selection = RestoreSelection::RandomWithinDays { days: 14 };
        Given::with(())
            .given_no_previous_events()
            .when(C::Enrol(good.clone()))
            .then_expect_events(vec![E::InstanceEnrolled(good)]);
        assert_eq!(
            RestoreSelection::RandomWithinDays { days: 14 }.describe(),
            "random within 14 days"
        );
    }

    /// A cycle that ran its restore test on an older copy (random selection) and closed at
    /// Verified counts as the instance's restore test: the cadence starts again from it.
    #[test]
    fn a_close_that_restore_tested_an_older_copy_resets_the_cadence() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        let soon = at() + chrono::Duration::hours(1);
        instance.apply(E::CycleClosed(closed_at(1, Rung::Verified, soon)));
        instance.apply(E::CycleClosed(closed_at(2, Rung::Verified, soon)));
        assert!(instance.restore_test_due(soon), "never restore-tested");
        instance.apply(E::CycleClosed(CycleClosed {
            restore_tested_copy: Some(CycleId(uuid::Uuid::from_u128(1))),
            ..closed_at(3, Rung::Verified, soon)
        }));
        assert_eq!(instance.last_restore_tested_at, Some(soon));
        assert_eq!(instance.verified_since_restore_test, 0);
        assert!(!instance.restore_test_due(soon + chrono::Duration::hours(1)));
    }

    #[test]
    fn commands_on_an_unknown_instance_are_refused() {
        let result = Given::with(())
            .given_no_previous_events()
            .when(C::OpenCycle(opened(1)))
            .inspect_result();
        assert_eq!(result, Err(InstanceError::NotEnrolled));
    }

    #[test]
    fn stop_and_resume_are_idempotent() {
        let stopped = E::InstanceStopped(InstanceStopped { stopped_at: at() });
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::Stop { at: at() })
            .then_expect_events(vec![stopped.clone()]);
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled()), stopped.clone()])
            .when(C::Stop { at: at() })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled()), stopped])
            .when(C::Resume { at: at() })
            .then_expect_events(vec![E::InstanceResumed(InstanceResumed {
                resumed_at: at(),
            })]);
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::Resume { at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_stopped_instance_opens_no_cycle() {
        let result = Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::InstanceStopped(InstanceStopped { stopped_at: at() }),
            ])
            .when(C::OpenCycle(opened(1)))
            .inspect_result();
        assert_eq!(result, Err(InstanceError::Stopped));
    }

    #[test]
    fn one_cycle_in_flight_at_most() {
        let result = Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::CycleOpened(opened(1)),
            ])
            .when(C::OpenCycle(opened(2)))
            .inspect_result();
        assert_eq!(
            result,
            Err(InstanceError::CycleInFlight(CycleId(
                uuid::Uuid::from_u128(1)
            )))
        );
    }

    #[test]
    fn reopening_the_same_cycle_emits_nothing() {
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::CycleOpened(opened(1)),
            ])
            .when(C::OpenCycle(opened(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn closing_frees_the_instance_for_the_next_cycle() {
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::CycleOpened(opened(1)),
            ])
            .when(C::CloseCycle(closed(1)))
            .then_expect_events(vec![E::CycleClosed(closed(1))]);
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::CycleOpened(opened(1)),
                E::CycleClosed(closed(1)),
            ])
            .when(C::OpenCycle(opened(2)))
            .then_expect_events(vec![E::CycleOpened(opened(2))]);
    }

    #[test]
    fn closing_a_cycle_that_is_not_open_emits_nothing() {
        Given::with(())
            .given(vec![
                E::InstanceEnrolled(enrolled()),
                E::CycleOpened(opened(1)),
            ])
            .when(C::CloseCycle(closed(7)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unchanged_endpoint_emits_nothing() {
        let same = EndpointChanged {
            api_url: enrolled().api_url,
            previous_api_url: Some(enrolled().api_url),
            allow_insecure_http: false,
            credentials: enrolled().credentials,
            changed_at: at(),
        };
        Given::with(())
            .given(vec![E::InstanceEnrolled(enrolled())])
            .when(C::ChangeEndpoint(same))
            .then_expect_events(vec![]);
    }

    #[test]
    fn due_follows_schedule_stop_and_cycle_in_flight() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        assert!(instance.is_due(at()));
        instance.apply(E::CycleOpened(opened(1)));
        assert!(!instance.is_due(at() + chrono::Duration::days(2)));
        instance.apply(E::CycleClosed(closed(1)));
        assert!(!instance.is_due(at() + chrono::Duration::hours(23)));
        assert!(instance.is_due(at() + chrono::Duration::hours(24)));
        instance.apply(E::InstanceStopped(InstanceStopped { stopped_at: at() }));
        assert!(!instance.is_due(at() + chrono::Duration::days(2)));
    }

    #[test]
    fn given_a_retryable_failure_when_a_minute_passed_then_the_instance_is_due_again() {
        let instance = hourly_given(vec![
            E::CycleOpened(opened(1)),
            E::CycleClosed(failed_retryably(1, at() + minutes(2))),
        ]);
        assert_eq!(instance.retry_delay(), Some(minutes(1)));
        assert!(!instance.is_due(at() + minutes(2)));
        assert!(!instance.is_due(at() + minutes(2) + chrono::Duration::seconds(59)));
        assert!(
            instance.is_due(at() + minutes(3)),
            "a minute after the close"
        );
    }

    #[test]
    fn given_retryable_failures_in_a_row_when_asked_then_the_delay_doubles_up_to_the_interval() {
        let mut events = Vec::new();
        let mut delays = Vec::new();
        for n in 1..=8 {
            events.push(E::CycleOpened(opened(n)));
            events.push(E::CycleClosed(failed_retryably(n, at())));
            delays.push(hourly_given(events.clone()).retry_delay());
        }
        let expected: Vec<_> = [1, 2, 4, 8, 16, 32, 60, 60]
            .into_iter()
            .map(|m| Some(minutes(m)))
            .collect();
        assert_eq!(delays, expected);
        let instance = hourly_given(events);
        assert!(!instance.is_due(at() + minutes(59)));
        assert!(
            instance.is_due(at() + minutes(60)),
            "never later than the interval"
        );
    }

    #[test]
    fn given_retryable_failures_when_a_cycle_closes_otherwise_then_the_back_off_resets() {
        for other in [
            closed_at(3, Rung::Verified, at()),
            CycleClosed {
                failed: true,
                retryable: false,
                ..closed_at(3, Rung::Started, at())
            },
        ] {
            let instance = hourly_given(vec![
                E::CycleOpened(opened(1)),
                E::CycleClosed(failed_retryably(1, at())),
                E::CycleOpened(opened(2)),
                E::CycleClosed(failed_retryably(2, at())),
                E::CycleOpened(opened(3)),
                E::CycleClosed(other.clone()),
            ]);
            assert_eq!(instance.retryable_failures, 0, "{other:?}");
            assert_eq!(instance.retry_delay(), None);
            assert!(
                !instance.is_due(at() + minutes(30)),
                "{other:?}: the interval again"
            );
            assert!(instance.is_due(at() + minutes(60)));
        }
        // After the reset, the next retryable failure starts again at one minute.
        let instance = hourly_given(vec![
            E::CycleOpened(opened(1)),
            E::CycleClosed(failed_retryably(1, at())),
            E::CycleOpened(opened(2)),
            E::CycleClosed(closed_at(2, Rung::Verified, at())),
            E::CycleOpened(opened(3)),
            E::CycleClosed(failed_retryably(3, at())),
        ]);
        assert_eq!(instance.retry_delay(), Some(minutes(1)));
    }

    #[test]
    fn given_a_retryable_failure_when_stopped_or_in_flight_then_not_due() {
        let stopped = hourly_given(vec![
            E::CycleOpened(opened(1)),
            E::CycleClosed(failed_retryably(1, at())),
            E::InstanceStopped(InstanceStopped { stopped_at: at() }),
        ]);
        assert!(!stopped.is_due(at() + minutes(5)));
        let in_flight = hourly_given(vec![
            E::CycleOpened(opened(1)),
            E::CycleClosed(failed_retryably(1, at())),
            E::CycleOpened(opened(2)),
        ]);
        assert!(!in_flight.is_due(at() + minutes(5)));
    }

    #[test]
    fn given_a_cycle_closed_before_the_retryable_field_when_loaded_then_it_is_not_retryable() {
        let old = serde_json::json!({
            "cycle_id": CycleId(uuid::Uuid::from_u128(1)),
            "reached": "started",
            "failed": true,
            "closed_at": at(),
        });
        let closed: CycleClosed = serde_json::from_value(old).expect("an old CycleClosed loads");
        assert!(closed.failed && !closed.retryable);
    }

    #[test]
    fn the_first_verified_copy_is_restore_tested() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        assert!(instance.restore_test_due(at()));
    }

    #[test]
    fn restore_tests_follow_every_nth_verified_cycle() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        instance.apply(E::CycleClosed(closed_at(1, Rung::RestoreTested, at())));
        let soon = at() + chrono::Duration::hours(1);
        assert!(
            !instance.restore_test_due(soon),
            "1st verified after a restore test"
        );
        instance.apply(E::CycleClosed(closed_at(2, Rung::Verified, soon)));
        assert!(!instance.restore_test_due(soon), "2nd");
        instance.apply(E::CycleClosed(closed_at(3, Rung::Verified, soon)));
        assert!(instance.restore_test_due(soon), "3rd verified cycle: due");
        instance.apply(E::CycleClosed(closed_at(4, Rung::Started, soon)));
        assert!(
            instance.restore_test_due(soon),
            "a failed capture does not count"
        );
    }

    #[test]
    fn restore_tests_are_due_when_the_last_one_is_too_old() {
        let mut instance = Instance::default();
        instance.apply(E::InstanceEnrolled(enrolled()));
        instance.apply(E::CycleClosed(closed_at(1, Rung::RestoreTested, at())));
        assert!(!instance.restore_test_due(at() + chrono::Duration::hours(47)));
        assert!(instance.restore_test_due(at() + chrono::Duration::hours(48)));
    }

    #[test]
    fn sealed_credentials_do_not_debug_print() {
        let printed = format!("{:?}", enrolled());
        assert!(!printed.contains("sealed\""), "{printed}");
    }
}
