//! The `BackupCycle` aggregate: one backup attempt of one instance, climbing the ladder
//! `CycleStarted → Captured → Secured → Verified → RestoreTested`, or ending in `Failed`.
//!
//! Rules enforced here (so every processor and adapter gets them):
//! - the ladder order: an outcome for a stage whose prerequisite rung is not reached is refused
//!   with [`CycleError::OutOfOrder`];
//! - idempotence: an outcome for a stage that already succeeded or failed produces no event
//!   (at-least-once delivery runs processors twice; the second run must be harmless);
//! - `Failed` is terminal: a success arriving after it is refused with [`CycleError::AlreadyFailed`].

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::ladder::{FailureReason, LockMode, ManifestCounts, Rung, Stage, Trigger};
use crate::{Snapshotted, EVENT_VERSION};

/// A cycle began for an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CycleStarted {
    /// This cycle.
    pub cycle_id: CycleId,
    /// Whose backup key encrypts the copy.
    pub tenant_id: TenantId,
    /// The PBX being backed up.
    pub instance_id: InstanceId,
    /// Scheduled or manual: auditors ask who asked for a copy.
    pub trigger: Trigger,
    /// When.
    pub started_at: DateTime<Utc>,
}

/// The PBX made the backup and its bytes were streamed into the vault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Captured {
    /// The tenant key version the PBX encrypted with (verify and restore must use this one).
    pub key_version: u32,
    /// The file name on the PBX.
    pub pbx_file_name: String,
    /// Where the copy lives in the vault.
    pub object_key: String,
    /// The exact stored version (S3 version id): later stages read this version, not "latest".
    pub version_id: String,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the bytes, computed while they streamed in (lowercase hex).
    pub sha256: String,
    /// Object Lock mode requested at write.
    pub lock_mode: LockMode,
    /// Object Lock retain-until requested at write.
    pub retain_until: DateTime<Utc>,
    /// What the live PBX reported; the restore test compares the restored data to it.
    pub manifest: ManifestCounts,
    /// The 3CX version the PBX reported for this backup (`GetBackupExtras`); `None` in events
    /// written before the field existed.
    #[serde(default)]
    pub pbx_version: Option<String>,
    /// The PBX's own backup schedule as read at capture ([`crate::native_backups`]); `None`
    /// when the PBX would not say (or in events written before the field existed).
    #[serde(default)]
    pub native_backups: Option<crate::native_backups::NativeBackups>,
    /// When.
    pub captured_at: DateTime<Utc>,
}

/// The stored copy read back byte for byte and is under Object Lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Secured {
    /// The SHA-256 of the bytes read back (equal to the captured one).
    pub sha256: String,
    /// The lock found on the stored version.
    pub lock_mode: LockMode,
    /// The retain-until found on the stored version.
    pub retain_until: DateTime<Utc>,
    /// When.
    pub secured_at: DateTime<Utc>,
}

/// The archive opened with the tenant key and every entry decrypted, authenticated and inflated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// Bytes after decryption and inflation.
    pub inflated_bytes: u64,
    /// Tables found under `DbTables/`.
    pub tables: Vec<String>,
    /// File entries per encryption (`aes256`, `aes192`, `aes128`); empty in events written
    /// before it was recorded.
    #[serde(default)]
    pub encryption: std::collections::BTreeMap<String, u64>,
    /// File entries per compression method (`stored`, `deflate`, ...); empty in events written
    /// before it was recorded.
    #[serde(default)]
    pub compression: std::collections::BTreeMap<String, u64>,
    /// When.
    pub verified_at: DateTime<Utc>,
}

/// The backup was restored into a clean, isolated sandbox and the data matched the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RestoreTested {
    /// Which sandbox adapter ran it (e.g. `process`), and its throwaway id.
    pub sandbox: String,
    /// The measured recovery time, in milliseconds.
    pub duration_ms: u64,
    /// What landed in the restored database.
    pub counts: ManifestCounts,
    /// When.
    pub restore_tested_at: DateTime<Utc>,
}

/// A stage failed; terminal for the cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Failed {
    /// The stage that failed.
    pub stage: Stage,
    /// A stable reason code.
    pub reason: FailureReason,
    /// A human explanation. Never contains a secret.
    pub detail: String,
    /// Whether trying again later may succeed (a 500, a timeout) or needs a person (bad
    /// credentials, a corrupt copy).
    pub retryable: bool,
    /// When.
    pub failed_at: DateTime<Utc>,
}

/// A stored copy was read back again, byte for byte, and its lock checked: one rotating
/// re-check (`pipeline/src/recheck/`), long after the copy was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rechecked {
    /// The re-check slot this answers (each copy has one per window): a slot is recorded once,
    /// so a re-check run twice adds nothing.
    pub slot: DateTime<Utc>,
    /// The SHA-256 of the bytes read back (equal to the captured one).
    pub sha256: String,
    /// The lock found on the stored version.
    pub lock_mode: LockMode,
    /// The retain-until found on the stored version.
    pub retain_until: DateTime<Utc>,
    /// When.
    pub rechecked_at: DateTime<Utc>,
}

/// A rotating re-check found the stored copy no longer as it was secured: changed bytes, gone,
/// or no longer under its lock. Not terminal: the copy is checked again in the next window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecheckFailed {
    /// The re-check slot this answers.
    pub slot: DateTime<Utc>,
    /// A stable reason code (`checksum_mismatch`, `object_missing`, `not_locked` ...).
    pub reason: FailureReason,
    /// A human explanation. Never contains a secret.
    pub detail: String,
    /// When.
    pub failed_at: DateTime<Utc>,
}

/// Why retention kept a copy past its retain-until.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeptBecause {
    /// The instance's newest Verified or newest Restore-Tested copy: never removed.
    NewestGood,
    /// The grandfather-father-son rule keeps it (a day's, week's or month's newest good copy).
    Gfs,
}

/// Retention kept the copy and extended its Object Lock (it only ever grows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LockExtended {
    /// The new retain-until.
    pub retain_until: DateTime<Utc>,
    /// Why it is kept.
    pub because: KeptBecause,
    /// When.
    pub extended_at: DateTime<Utc>,
}

/// Why retention removed a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovedBecause {
    /// Its retain-until passed and no rule keeps it.
    Expired,
    /// Its instance was removed and the removal's grace has passed.
    Offboarded,
}

/// Retention removed the copy's exact version from the vault, after its retain-until.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CopyRemoved {
    /// Why.
    pub because: RemovedBecause,
    /// The retain-until that had passed.
    pub retain_until: DateTime<Utc>,
    /// When.
    pub removed_at: DateTime<Utc>,
}

/// Everything that can happen to a cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum BackupCycleEvent {
    /// See [`CycleStarted`].
    CycleStarted(CycleStarted),
    /// See [`Captured`].
    Captured(Captured),
    /// See [`Secured`].
    Secured(Secured),
    /// See [`Verified`].
    Verified(Verified),
    /// See [`RestoreTested`].
    RestoreTested(RestoreTested),
    /// See [`Failed`].
    Failed(Failed),
    /// See [`Rechecked`].
    Rechecked(Rechecked),
    /// See [`RecheckFailed`].
    RecheckFailed(RecheckFailed),
    /// See [`LockExtended`].
    LockExtended(LockExtended),
    /// See [`CopyRemoved`].
    CopyRemoved(CopyRemoved),
}

impl DomainEvent for BackupCycleEvent {
    fn event_type(&self) -> String {
        match self {
            BackupCycleEvent::CycleStarted(_) => "CycleStarted",
            BackupCycleEvent::Captured(_) => "Captured",
            BackupCycleEvent::Secured(_) => "Secured",
            BackupCycleEvent::Verified(_) => "Verified",
            BackupCycleEvent::RestoreTested(_) => "RestoreTested",
            BackupCycleEvent::Failed(_) => "Failed",
            BackupCycleEvent::Rechecked(_) => "Rechecked",
            BackupCycleEvent::RecheckFailed(_) => "RecheckFailed",
            BackupCycleEvent::LockExtended(_) => "LockExtended",
            BackupCycleEvent::CopyRemoved(_) => "CopyRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What a processor asks of a cycle.
#[derive(Clone, Debug, PartialEq)]
pub enum BackupCycleCommand {
    /// Begin the cycle.
    Start(CycleStarted),
    /// Record the capture stage's success.
    RecordCaptured(Captured),
    /// Record the secure stage's success.
    RecordSecured(Secured),
    /// Record the verify stage's success.
    RecordVerified(Verified),
    /// Record the restore-test stage's success.
    RecordRestoreTested(RestoreTested),
    /// Record a stage's failure.
    RecordFailure(Failed),
    /// Record a re-check that found the stored copy intact.
    RecordRechecked(Rechecked),
    /// Record a re-check that found the stored copy changed, gone or unlocked.
    RecordRecheckFailed(RecheckFailed),
    /// Record that retention kept the copy and extended its lock.
    RecordLockExtended(LockExtended),
    /// Record that retention removed the copy.
    RecordCopyRemoved(CopyRemoved),
}

/// Why a cycle refused a command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CycleError {
    /// The stage's prerequisite rung is not reached.
    #[error("stage {stage} needs the cycle at {needs}, but it is at {at:?}")]
    OutOfOrder {
        /// The stage whose outcome arrived.
        stage: Stage,
        /// The rung it needs.
        needs: Rung,
        /// Where the cycle is (`None`: not started).
        at: Option<Rung>,
    },
    /// The cycle already failed; nothing climbs after `Failed`.
    #[error("the cycle already failed at stage {0}")]
    AlreadyFailed(Stage),
    /// A second `Start` with different facts (another instance or tenant).
    #[error("the cycle was already started for another instance")]
    StartConflict,
    /// A re-check of a copy that was never Secured: there is nothing proven to prove again.
    #[error("only a Secured copy is re-checked, but the cycle is at {0:?}")]
    NotStored(Option<Rung>),
    /// The copy was removed by retention: nothing more is done with it.
    #[error("the copy was removed from the vault")]
    Removed,
    /// A removal before the copy's retain-until: Object Lock would refuse it, and so do we.
    #[error("the copy is locked until {0}")]
    StillLocked(DateTime<Utc>),
}

/// State of one cycle, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupCycle {
    /// Set by `CycleStarted`.
    pub started: Option<CycleStarted>,
    /// The highest rung reached (`None` before start).
    pub rung: Option<Rung>,
    /// Set by `Captured`: later stages need the object and key version.
    pub captured: Option<Captured>,
    /// Set by `Failed`.
    pub failed: Option<Failed>,
    /// The latest re-check slot recorded (`Rechecked` or `RecheckFailed`).
    #[serde(default)]
    pub rechecked_slot: Option<DateTime<Utc>>,
    /// The copy's Object Lock retain-until as last known (at capture, then as found by Secured
    /// and each re-check, then as extended by retention).
    #[serde(default)]
    pub retain_until: Option<DateTime<Utc>>,
    /// Set when retention removed the copy.
    #[serde(default)]
    pub removed: Option<CopyRemoved>,
}

impl BackupCycle {
    /// Whether the cycle can still move (started and not failed).
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Decides what a stage outcome does: `Ok(true)` emit, `Ok(false)` already done (no event).
    fn admit(&self, stage: Stage) -> Result<bool, CycleError> {
        if self.removed.is_some() {
            return Err(CycleError::Removed);
        }
        if let Some(failed) = &self.failed {
            return Err(CycleError::AlreadyFailed(failed.stage));
        }
        match self.rung {
            Some(rung) if rung >= stage.reaches() => Ok(false),
            Some(rung) if rung == stage.requires() => Ok(true),
            at => Err(CycleError::OutOfOrder {
                stage,
                needs: stage.requires(),
                at,
            }),
        }
    }

    /// Whether a re-check answering `slot` is news: only for a Secured copy of a cycle that did
    /// not fail, and only for a slot later than the last one recorded.
    fn admit_recheck(&self, slot: DateTime<Utc>) -> Result<bool, CycleError> {
        if self.removed.is_some() {
            return Err(CycleError::Removed);
        }
        if let Some(failed) = &self.failed {
            return Err(CycleError::AlreadyFailed(failed.stage));
        }
        if self.rung.is_none_or(|rung| rung < Rung::Secured) {
            return Err(CycleError::NotStored(self.rung));
        }
        Ok(self.rechecked_slot.is_none_or(|last| slot > last))
    }

    /// Whether a failure of `stage` is news: not if the cycle already failed or already passed
    /// the stage (a duplicate processor's late failure).
    /// Whether retention may extend the lock to `until`: only a stored copy not removed, and
    /// only forward (an extension to a date already reached is a repeat: no event).
    fn admit_extension(&self, until: DateTime<Utc>) -> Result<bool, CycleError> {
        if self.removed.is_some() {
            return Err(CycleError::Removed);
        }
        if self.captured.is_none() {
            return Err(CycleError::NotStored(self.rung));
        }
        Ok(self.retain_until.is_none_or(|current| until > current))
    }

    /// Whether retention may record the copy removed at `at`: only a stored copy, only once,
    /// and never before its retain-until.
    fn admit_removal(&self, at: DateTime<Utc>) -> Result<bool, CycleError> {
        if self.removed.is_some() {
            return Ok(false);
        }
        if self.captured.is_none() {
            return Err(CycleError::NotStored(self.rung));
        }
        match self.retain_until {
            Some(until) if at < until => Err(CycleError::StillLocked(until)),
            _ => Ok(true),
        }
    }

    fn admit_failure(&self, stage: Stage) -> Result<bool, CycleError> {
        if self.failed.is_some() {
            return Ok(false);
        }
        match self.rung {
            Some(rung) if rung >= stage.reaches() => Ok(false),
            Some(rung) if rung == stage.requires() => Ok(true),
            at => Err(CycleError::OutOfOrder {
                stage,
                needs: stage.requires(),
                at,
            }),
        }
    }
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for BackupCycle {
    const SNAPSHOT_VERSION: u32 = 2;
}

impl Aggregate for BackupCycle {
    const TYPE: &'static str = "BackupCycle";
    type Command = BackupCycleCommand;
    type Event = BackupCycleEvent;
    type Error = CycleError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            BackupCycleCommand::Start(started) => match &self.started {
                Some(existing)
                    if existing.instance_id == started.instance_id
                        && existing.tenant_id == started.tenant_id =>
                {
                    None
                }
                Some(_) => return Err(CycleError::StartConflict),
                None => Some(BackupCycleEvent::CycleStarted(started)),
            },
            BackupCycleCommand::RecordCaptured(e) => self
                .admit(Stage::Capture)?
                .then_some(BackupCycleEvent::Captured(e)),
            BackupCycleCommand::RecordSecured(e) => self
                .admit(Stage::Secure)?
                .then_some(BackupCycleEvent::Secured(e)),
            BackupCycleCommand::RecordVerified(e) => self
                .admit(Stage::Verify)?
                .then_some(BackupCycleEvent::Verified(e)),
            BackupCycleCommand::RecordRestoreTested(e) => self
                .admit(Stage::RestoreTest)?
                .then_some(BackupCycleEvent::RestoreTested(e)),
            BackupCycleCommand::RecordFailure(e) => self
                .admit_failure(e.stage)?
                .then_some(BackupCycleEvent::Failed(e)),
            BackupCycleCommand::RecordRechecked(e) => self
                .admit_recheck(e.slot)?
                .then_some(BackupCycleEvent::Rechecked(e)),
            BackupCycleCommand::RecordRecheckFailed(e) => self
                .admit_recheck(e.slot)?
                .then_some(BackupCycleEvent::RecheckFailed(e)),
            BackupCycleCommand::RecordLockExtended(e) => self
                .admit_extension(e.retain_until)?
                .then_some(BackupCycleEvent::LockExtended(e)),
            BackupCycleCommand::RecordCopyRemoved(e) => self
                .admit_removal(e.removed_at)?
                .then_some(BackupCycleEvent::CopyRemoved(e)),
        };
        if let Some(event) = event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            BackupCycleEvent::CycleStarted(e) => {
                self.started = Some(e);
                self.rung = Some(Rung::Started);
            }
            BackupCycleEvent::Captured(e) => {
                self.retain_until = Some(e.retain_until);
                self.captured = Some(e);
                self.rung = Some(Rung::Captured);
            }
            BackupCycleEvent::Secured(e) => {
                self.rung = Some(Rung::Secured);
                self.retain_until = Some(e.retain_until);
            }
            BackupCycleEvent::Verified(_) => self.rung = Some(Rung::Verified),
            BackupCycleEvent::RestoreTested(_) => self.rung = Some(Rung::RestoreTested),
            BackupCycleEvent::Failed(e) => self.failed = Some(e),
            BackupCycleEvent::Rechecked(e) => {
                self.rechecked_slot = Some(e.slot);
                self.retain_until = Some(e.retain_until);
            }
            BackupCycleEvent::LockExtended(e) => self.retain_until = Some(e.retain_until),
            BackupCycleEvent::CopyRemoved(e) => self.removed = Some(e),
            BackupCycleEvent::RecheckFailed(e) => self.rechecked_slot = Some(e.slot),
        }
    }
}

/// Example payloads for tests of this crate and others (deterministic, no secrets).
pub mod examples {
    use super::*;
    use chrono::TimeZone;

    /// A fixed instant.
    pub fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// A `CycleStarted` for a fixed tenant and instance.
    pub fn started() -> CycleStarted {
        let tenant = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        CycleStarted {
            cycle_id: CycleId(uuid::Uuid::from_u128(1)),
            instance_id: InstanceId::for_name(&tenant, "hq"),
            tenant_id: tenant,
            trigger: Trigger::Scheduled,
            started_at: at(),
        }
    }

    /// A `Captured` with plausible values.
    pub fn captured() -> Captured {
        Captured {
            key_version: 1,
            pbx_file_name: "restorable-1.zip".into(),
            object_key: "acme/hq/1.zip".into(),
            version_id: "v1".into(),
            size: 4096,
            sha256: "ab".repeat(32),
            lock_mode: LockMode::Compliance,
            retain_until: at() + chrono::Duration::days(30),
            manifest: ManifestCounts {
                extensions: 12,
                queues: 2,
                ring_groups: 1,
                ivrs: 1,
                trunks: 1,
                settings: 10,
            },
            pbx_version: Some("20.0.10.999".into()),
            native_backups: Some(crate::native_backups::examples::healthy(at())),
            captured_at: at(),
        }
    }

    /// A `Secured` matching [`captured`].
    pub fn secured() -> Secured {
        Secured {
            sha256: "ab".repeat(32),
            lock_mode: LockMode::Compliance,
            retain_until: at() + chrono::Duration::days(30),
            secured_at: at(),
        }
    }

    /// A `Verified`.
    pub fn verified() -> Verified {
        Verified {
            entries: 20,
            inflated_bytes: 10_000,
            tables: vec!["dn".into(), "extension".into()],
            encryption: [("aes256".to_owned(), 20)].into(),
            compression: [("deflate".to_owned(), 20)].into(),
            verified_at: at(),
        }
    }

    /// A `RestoreTested`.
    pub fn restore_tested() -> RestoreTested {
        RestoreTested {
            sandbox: "process".into(),
            duration_ms: 900,
            counts: captured().manifest,
            restore_tested_at: at(),
        }
    }

    /// A `Rechecked` answering the slot `days` days after [`at`].
    pub fn rechecked(days: i64) -> Rechecked {
        Rechecked {
            slot: at() + chrono::Duration::days(days),
            sha256: "ab".repeat(32),
            lock_mode: LockMode::Compliance,
            retain_until: at() + chrono::Duration::days(30),
            rechecked_at: at() + chrono::Duration::days(days),
        }
    }

    /// A `RecheckFailed` answering the slot `days` days after [`at`].
    pub fn recheck_failed(days: i64, reason: FailureReason) -> RecheckFailed {
        RecheckFailed {
            slot: at() + chrono::Duration::days(days),
            reason,
            detail: format!("{reason} for the test"),
            failed_at: at() + chrono::Duration::days(days),
        }
    }

    /// A `Failed` at `stage`.
    pub fn failed(stage: Stage, reason: FailureReason) -> Failed {
        Failed {
            stage,
            reason,
            detail: format!("{reason} for the test"),
            retryable: false,
            failed_at: at(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::examples::*;
    use super::BackupCycleCommand as C;
    use super::BackupCycleEvent as E;
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<BackupCycle>;

    fn climbed_to(rung: Rung) -> Vec<E> {
        let all = [
            E::CycleStarted(started()),
            E::Captured(captured()),
            E::Secured(secured()),
            E::Verified(verified()),
            E::RestoreTested(restore_tested()),
        ];
        all.into_iter().take(rung as usize + 1).collect()
    }

    #[test]
    fn start_emits_cycle_started() {
        Given::with(())
            .given_no_previous_events()
            .when(C::Start(started()))
            .then_expect_events(vec![E::CycleStarted(started())]);
    }

    #[test]
    fn a_repeated_start_emits_nothing() {
        Given::with(())
            .given(climbed_to(Rung::Started))
            .when(C::Start(started()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_start_for_another_instance_is_refused() {
        let mut other = started();
        other.instance_id = InstanceId::random();
        let result = Given::with(())
            .given(climbed_to(Rung::Started))
            .when(C::Start(other))
            .inspect_result();
        assert_eq!(result, Err(CycleError::StartConflict));
    }

    #[test]
    fn each_stage_climbs_one_rung_in_order() {
        let steps = [
            (
                Rung::Started,
                C::RecordCaptured(captured()),
                E::Captured(captured()),
            ),
            (
                Rung::Captured,
                C::RecordSecured(secured()),
                E::Secured(secured()),
            ),
            (
                Rung::Secured,
                C::RecordVerified(verified()),
                E::Verified(verified()),
            ),
            (
                Rung::Verified,
                C::RecordRestoreTested(restore_tested()),
                E::RestoreTested(restore_tested()),
            ),
        ];
        for (from, command, event) in steps {
            Given::with(())
                .given(climbed_to(from))
                .when(command)
                .then_expect_events(vec![event]);
        }
    }

    #[test]
    fn a_repeated_stage_outcome_emits_nothing() {
        let repeats = [
            (Rung::Captured, C::RecordCaptured(captured())),
            (Rung::Secured, C::RecordSecured(secured())),
            (Rung::Verified, C::RecordVerified(verified())),
            (
                Rung::RestoreTested,
                C::RecordRestoreTested(restore_tested()),
            ),
            (Rung::Verified, C::RecordCaptured(captured())),
        ];
        for (at, command) in repeats {
            Given::with(())
                .given(climbed_to(at))
                .when(command)
                .then_expect_events(vec![]);
        }
    }

    fn removed(days_after: i64) -> CopyRemoved {
        CopyRemoved {
            because: RemovedBecause::Expired,
            retain_until: at() + chrono::Duration::days(30),
            removed_at: at() + chrono::Duration::days(days_after),
        }
    }

    #[test]
    fn a_copy_is_removed_once_and_never_before_its_lock_runs_out() {
        let retain_until = at() + chrono::Duration::days(30);
        Given::with(())
            .given(climbed_to(Rung::Verified))
            .when(C::RecordCopyRemoved(removed(29)))
            .then_expect_error(CycleError::StillLocked(retain_until));
        Given::with(())
            .given(climbed_to(Rung::Verified))
            .when(C::RecordCopyRemoved(removed(30)))
            .then_expect_events(vec![E::CopyRemoved(removed(30))]);
        let mut gone = climbed_to(Rung::Verified);
        gone.push(E::CopyRemoved(removed(30)));
        Given::with(())
            .given(gone.clone())
            .when(C::RecordCopyRemoved(removed(31)))
            .then_expect_events(vec![]);
        // Nothing more is proven of a removed copy: no re-check, no restore test.
        let recheck = Rechecked {
            slot: at() + chrono::Duration::days(31),
            sha256: "ab".repeat(32),
            lock_mode: LockMode::Compliance,
            retain_until,
            rechecked_at: at() + chrono::Duration::days(31),
        };
        Given::with(())
            .given(gone.clone())
            .when(C::RecordRechecked(recheck))
            .then_expect_error(CycleError::Removed);
        Given::with(())
            .given(gone)
            .when(C::RecordRestoreTested(restore_tested()))
            .then_expect_error(CycleError::Removed);
    }

    #[test]
    fn an_extended_lock_only_grows_and_delays_the_removal() {
        let later = at() + chrono::Duration::days(60);
        let extended = LockExtended {
            retain_until: later,
            because: KeptBecause::Gfs,
            extended_at: at() + chrono::Duration::days(30),
        };
        Given::with(())
            .given(climbed_to(Rung::Verified))
            .when(C::RecordLockExtended(extended.clone()))
            .then_expect_events(vec![E::LockExtended(extended.clone())]);
        let mut kept = climbed_to(Rung::Verified);
        kept.push(E::LockExtended(extended.clone()));
        let shorter = LockExtended {
            retain_until: at() + chrono::Duration::days(40),
            ..extended
        };
        Given::with(())
            .given(kept.clone())
            .when(C::RecordLockExtended(shorter))
            .then_expect_events(vec![]);
        Given::with(())
            .given(kept)
            .when(C::RecordCopyRemoved(removed(45)))
            .then_expect_error(CycleError::StillLocked(later));
        Given::with(())
            .given(climbed_to(Rung::Started))
            .when(C::RecordCopyRemoved(removed(45)))
            .then_expect_error(CycleError::NotStored(Some(Rung::Started)));
    }

    #[test]
    fn skipping_a_rung_is_refused() {
        let result = Given::with(())
            .given(climbed_to(Rung::Started))
            .when(C::RecordVerified(verified()))
            .inspect_result();
        assert_eq!(
            result,
            Err(CycleError::OutOfOrder {
                stage: Stage::Verify,
                needs: Rung::Secured,
                at: Some(Rung::Started),
            })
        );
    }

    #[test]
    fn an_outcome_before_start_is_refused() {
        let result = Given::with(())
            .given_no_previous_events()
            .when(C::RecordCaptured(captured()))
            .inspect_result();
        assert_eq!(
            result,
            Err(CycleError::OutOfOrder {
                stage: Stage::Capture,
                needs: Rung::Started,
                at: None,
            })
        );
    }

    #[test]
    fn a_failure_is_recorded_at_its_stage() {
        let failure = failed(Stage::Secure, FailureReason::ChecksumMismatch);
        Given::with(())
            .given(climbed_to(Rung::Captured))
            .when(C::RecordFailure(failure.clone()))
            .then_expect_events(vec![E::Failed(failure)]);
    }

    #[test]
    fn a_repeated_failure_emits_nothing() {
        let failure = failed(Stage::Capture, FailureReason::PbxAuth);
        let mut history = climbed_to(Rung::Started);
        history.push(E::Failed(failure.clone()));
        Given::with(())
            .given(history)
            .when(C::RecordFailure(failure))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_late_failure_of_a_passed_stage_emits_nothing() {
        Given::with(())
            .given(climbed_to(Rung::Secured))
            .when(C::RecordFailure(failed(
                Stage::Capture,
                FailureReason::VaultWrite,
            )))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_of_a_stage_not_yet_reached_is_refused() {
        let result = Given::with(())
            .given(climbed_to(Rung::Started))
            .when(C::RecordFailure(failed(
                Stage::Verify,
                FailureReason::WrongKey,
            )))
            .inspect_result();
        assert!(matches!(result, Err(CycleError::OutOfOrder { .. })));
    }

    #[test]
    fn nothing_climbs_after_failed() {
        let mut history = climbed_to(Rung::Started);
        history.push(E::Failed(failed(
            Stage::Capture,
            FailureReason::CaptureTimeout,
        )));
        let result = Given::with(())
            .given(history)
            .when(C::RecordCaptured(captured()))
            .inspect_result();
        assert_eq!(result, Err(CycleError::AlreadyFailed(Stage::Capture)));
    }

    #[test]
    fn a_restore_test_can_fail_after_verified() {
        let failure = failed(Stage::RestoreTest, FailureReason::IntegrityViolation);
        Given::with(())
            .given(climbed_to(Rung::Verified))
            .when(C::RecordFailure(failure.clone()))
            .then_expect_events(vec![E::Failed(failure)]);
    }

    #[test]
    fn a_secured_copy_records_each_recheck_slot_once_and_in_order() {
        let failure = recheck_failed(14, FailureReason::ChecksumMismatch);
        Given::with(())
            .given(climbed_to(Rung::Secured))
            .when(C::RecordRechecked(rechecked(7)))
            .then_expect_events(vec![E::Rechecked(rechecked(7))]);
        let mut history = climbed_to(Rung::RestoreTested);
        history.push(E::Rechecked(rechecked(7)));
        for repeated in [
            C::RecordRechecked(rechecked(7)),
            C::RecordRechecked(rechecked(3)),
        ] {
            Given::with(())
                .given(history.clone())
                .when(repeated)
                .then_expect_events(vec![]);
        }
        Given::with(())
            .given(history.clone())
            .when(C::RecordRecheckFailed(failure.clone()))
            .then_expect_events(vec![E::RecheckFailed(failure.clone())]);
        history.push(E::RecheckFailed(failure.clone()));
        Given::with(())
            .given(history)
            .when(C::RecordRecheckFailed(failure))
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_a_secured_copy_of_a_cycle_that_did_not_fail_is_rechecked() {
        let result = Given::with(())
            .given(climbed_to(Rung::Captured))
            .when(C::RecordRechecked(rechecked(7)))
            .inspect_result();
        assert_eq!(result, Err(CycleError::NotStored(Some(Rung::Captured))));
        let mut failed_verify = climbed_to(Rung::Secured);
        failed_verify.push(E::Failed(failed(Stage::Verify, FailureReason::WrongKey)));
        let result = Given::with(())
            .given(failed_verify)
            .when(C::RecordRecheckFailed(recheck_failed(
                7,
                FailureReason::ObjectMissing,
            )))
            .inspect_result();
        assert_eq!(result, Err(CycleError::AlreadyFailed(Stage::Verify)));
    }

    #[test]
    fn a_recheck_does_not_move_the_rung() {
        let mut cycle = BackupCycle::default();
        for event in climbed_to(Rung::Verified) {
            cycle.apply(event);
        }
        cycle.apply(E::RecheckFailed(recheck_failed(
            7,
            FailureReason::ChecksumMismatch,
        )));
        assert_eq!(cycle.rung, Some(Rung::Verified));
        assert!(!cycle.is_failed());
        assert_eq!(cycle.rechecked_slot, Some(at() + chrono::Duration::days(7)));
    }

    #[test]
    fn events_carry_type_and_version() {
        let event = E::Captured(captured());
        assert_eq!(event.event_type(), "Captured");
        assert_eq!(event.event_version(), EVENT_VERSION);
    }
}
