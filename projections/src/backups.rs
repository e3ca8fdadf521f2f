//! The instance backups view: every cycle of every instance with how far it climbed, its size,
//! SHA-256, key version, retain-until, the time of each rung, and where and why it failed. A row
//! is a fold over its own cycle's events (a handful), so the projector keeps only the rows it is
//! folding in memory and the rest in storage; readers read them from there.

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{BackupCycleEvent, CycleStarted, Failed, RecheckFailed};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{Rung, Trigger};
use serde::{Deserialize, Serialize};

/// One backup cycle of an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRow {
    /// The cycle.
    pub cycle_id: CycleId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Scheduled or manual.
    pub trigger: Trigger,
    /// The highest rung reached.
    pub rung: Rung,
    /// Bytes stored.
    pub size: Option<u64>,
    /// SHA-256 of the stored bytes.
    pub sha256: Option<String>,
    /// The tenant key version the copy is encrypted with.
    pub key_version: Option<u32>,
    /// Object Lock retain-until.
    pub retain_until: Option<DateTime<Utc>>,
    /// When the cycle began.
    pub started_at: DateTime<Utc>,
    /// When the copy was captured.
    pub captured_at: Option<DateTime<Utc>>,
    /// When it was Secured.
    pub secured_at: Option<DateTime<Utc>>,
    /// When it was Verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it was Restore-Tested.
    pub restore_tested_at: Option<DateTime<Utc>>,
    /// The measured recovery time of the restore test, in milliseconds.
    pub restore_ms: Option<u64>,
    /// Where and why it failed.
    pub failure: Option<Failed>,
    /// When a rotating re-check last found the stored copy intact.
    #[serde(default)]
    pub rechecked_at: Option<DateTime<Utc>>,
    /// The last re-check's failure, until a later re-check finds the copy intact again.
    #[serde(default)]
    pub recheck_failure: Option<RecheckFailed>,
    /// When retention removed the copy from the vault.
    #[serde(default)]
    pub removed_at: Option<DateTime<Utc>>,
}

impl BackupRow {
    /// Whether the copy can be downloaded (it was stored).
    pub fn downloadable(&self) -> bool {
        self.captured_at.is_some() && self.removed_at.is_none()
    }
}

impl BackupRow {
    /// The row a cycle starts with.
    pub fn started(e: &CycleStarted) -> Self {
        BackupRow {
            cycle_id: e.cycle_id,
            instance_id: e.instance_id,
            tenant_id: e.tenant_id.clone(),
            trigger: e.trigger,
            rung: Rung::Started,
            size: None,
            sha256: None,
            key_version: None,
            retain_until: None,
            started_at: e.started_at,
            captured_at: None,
            secured_at: None,
            verified_at: None,
            restore_tested_at: None,
            restore_ms: None,
            failure: None,
            rechecked_at: None,
            recheck_failure: None,
            removed_at: None,
        }
    }

    /// Folds one later event of the cycle in (a `CycleStarted` changes nothing: see
    /// [`BackupRow::started`]).
    pub fn apply(&mut self, event: &BackupCycleEvent) {
        match event {
            BackupCycleEvent::CycleStarted(_) => {}
            BackupCycleEvent::Captured(e) => {
                self.rung = Rung::Captured;
                self.size = Some(e.size);
                self.sha256 = Some(e.sha256.clone());
                self.key_version = Some(e.key_version);
                self.retain_until = Some(e.retain_until);
                self.captured_at = Some(e.captured_at);
            }
            BackupCycleEvent::Secured(e) => {
                self.rung = Rung::Secured;
                self.retain_until = Some(e.retain_until);
                self.secured_at = Some(e.secured_at);
            }
            BackupCycleEvent::Verified(e) => {
                self.rung = Rung::Verified;
                self.verified_at = Some(e.verified_at);
            }
            BackupCycleEvent::RestoreTested(e) => {
                self.rung = Rung::RestoreTested;
                self.restore_tested_at = Some(e.restore_tested_at);
                self.restore_ms = Some(e.duration_ms);
            }
            BackupCycleEvent::Failed(e) => self.failure = Some(e.clone()),
            BackupCycleEvent::Rechecked(e) => {
                self.rechecked_at = Some(e.rechecked_at);
                self.recheck_failure = None;
            }
            BackupCycleEvent::RecheckFailed(e) => self.recheck_failure = Some(e.clone()),
            BackupCycleEvent::LockExtended(e) => self.retain_until = Some(e.retain_until),
            BackupCycleEvent::CopyRemoved(e) => self.removed_at = Some(e.removed_at),
        }
    }

    /// The row a cycle's events lead to, in order (`None` without its `CycleStarted` first).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a BackupCycleEvent>) -> Option<Self> {
        let mut row: Option<Self> = None;
        for event in events {
            match (&mut row, event) {
                (_, BackupCycleEvent::CycleStarted(e)) => row = Some(Self::started(e)),
                (Some(row), e) => row.apply(e),
                (None, _) => {}
            }
        }
        row
    }
}

/// Orders one instance's rows as its page lists them: newest first (by start), ties by cycle id.
pub fn newest_first(rows: &mut [BackupRow]) {
    rows.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then(a.cycle_id.cmp(&b.cycle_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::examples;
    use restorable_domain::ladder::{FailureReason, Stage};

    fn fold(events: Vec<BackupCycleEvent>) -> BackupRow {
        BackupRow::from_events(&events).expect("a started cycle")
    }

    #[test]
    fn a_secured_copy_shows_its_size_hash_key_and_lock() {
        let row = fold(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Secured(examples::secured()),
        ]);
        assert_eq!(row.rung, Rung::Secured);
        assert_eq!(row.size, Some(examples::captured().size));
        assert_eq!(
            row.sha256.as_deref(),
            Some(examples::captured().sha256.as_str())
        );
        assert_eq!(row.key_version, Some(examples::captured().key_version));
        assert!(row.downloadable());
    }

    #[test]
    fn a_failed_copy_keeps_its_rung_and_says_where_and_why() {
        let row = fold(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Failed(examples::failed(Stage::Verify, FailureReason::WrongKey)),
        ]);
        assert_eq!(row.rung, Rung::Captured);
        let failure = row.failure.as_ref().expect("failure");
        assert_eq!(
            (failure.stage, failure.reason),
            (Stage::Verify, FailureReason::WrongKey)
        );
    }
}
