//! The instance backups view: every cycle of every instance with how far it climbed, its size,
//! SHA-256, key version, retain-until, the time of each rung, and where and why it failed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use restorable_domain::cycle::{BackupCycleEvent, Failed};
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
}

impl BackupRow {
    /// Whether the copy can be downloaded (it was stored).
    pub fn downloadable(&self) -> bool {
        self.captured_at.is_some()
    }
}

/// The instance backups view, keyed by cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupsView {
    rows: BTreeMap<CycleId, BackupRow>,
}

impl BackupsView {
    /// A view holding `rows` (as saved).
    pub fn from_rows(rows: impl IntoIterator<Item = BackupRow>) -> Self {
        Self {
            rows: rows.into_iter().map(|r| (r.cycle_id, r)).collect(),
        }
    }

    /// Folds one cycle event in; returns the cycle whose row changed.
    pub fn apply(&mut self, cycle_id: &str, event: &BackupCycleEvent) -> Option<CycleId> {
        if let BackupCycleEvent::CycleStarted(e) = event {
            self.rows.insert(
                e.cycle_id,
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
                },
            );
            return Some(e.cycle_id);
        }
        let id: CycleId = cycle_id.parse().ok()?;
        let row = self.rows.get_mut(&id)?;
        match event {
            BackupCycleEvent::CycleStarted(_) => {}
            BackupCycleEvent::Captured(e) => {
                row.rung = Rung::Captured;
                row.size = Some(e.size);
                row.sha256 = Some(e.sha256.clone());
                row.key_version = Some(e.key_version);
                row.retain_until = Some(e.retain_until);
                row.captured_at = Some(e.captured_at);
            }
            BackupCycleEvent::Secured(e) => {
                row.rung = Rung::Secured;
                row.retain_until = Some(e.retain_until);
                row.secured_at = Some(e.secured_at);
            }
            BackupCycleEvent::Verified(e) => {
                row.rung = Rung::Verified;
                row.verified_at = Some(e.verified_at);
            }
            BackupCycleEvent::RestoreTested(e) => {
                row.rung = Rung::RestoreTested;
                row.restore_tested_at = Some(e.restore_tested_at);
                row.restore_ms = Some(e.duration_ms);
            }
            BackupCycleEvent::Failed(e) => row.failure = Some(e.clone()),
        }
        Some(id)
    }

    /// One cycle's row.
    pub fn row(&self, cycle: &CycleId) -> Option<&BackupRow> {
        self.rows.get(cycle)
    }

    /// Every cycle of `instance`, newest first.
    pub fn of_instance(&self, instance: &InstanceId) -> Vec<&BackupRow> {
        let mut rows: Vec<_> = self
            .rows
            .values()
            .filter(|r| r.instance_id == *instance)
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        rows
    }

    /// Every row, by cycle id.
    pub fn rows(&self) -> impl Iterator<Item = &BackupRow> {
        self.rows.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::examples;
    use restorable_domain::ladder::{FailureReason, Stage};

    fn fold(events: Vec<BackupCycleEvent>) -> BackupsView {
        let id = examples::started().cycle_id.to_string();
        let mut view = BackupsView::default();
        for e in &events {
            view.apply(&id, e);
        }
        view
    }

    #[test]
    fn a_secured_copy_shows_its_size_hash_key_and_lock() {
        let view = fold(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Secured(examples::secured()),
        ]);
        let row = view.row(&examples::started().cycle_id).expect("row");
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
        let view = fold(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Failed(examples::failed(Stage::Verify, FailureReason::WrongKey)),
        ]);
        let row = view.row(&examples::started().cycle_id).expect("row");
        assert_eq!(row.rung, Rung::Captured);
        let failure = row.failure.as_ref().expect("failure");
        assert_eq!(
            (failure.stage, failure.reason),
            (Stage::Verify, FailureReason::WrongKey)
        );
    }
}
