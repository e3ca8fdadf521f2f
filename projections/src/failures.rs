//! The failures view: every failed cycle, per tenant, in the order the failures were recorded.
//! A row is written once (keyed by the `Failed` event's log position) and never changed, so the
//! projector holds none; readers read a tenant's newest first and stop at the time they need
//! (the daily digest reads a day's worth, never the whole history).

use chrono::{DateTime, Utc};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Rung, Stage};
use serde::{Deserialize, Serialize};

use crate::backups::BackupRow;

/// One failed cycle and its place in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    /// The `Failed` event's global position (orders the log).
    pub position: i64,
    /// The cycle.
    pub cycle_id: CycleId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The highest rung it reached before failing.
    pub rung: Rung,
    /// The stage that failed.
    pub stage: Stage,
    /// The stable reason code.
    pub reason: FailureReason,
    /// The human explanation (never a secret: see `Failed::detail`).
    pub detail: String,
    /// When it failed (the worker's clock).
    pub failed_at: DateTime<Utc>,
}

impl FailureRow {
    /// The row of `cycle` once its `Failed` event at `position` is folded in (`None` if the
    /// row has no failure).
    pub fn of(position: i64, cycle: &BackupRow) -> Option<Self> {
        let failure = cycle.failure.as_ref()?;
        Some(FailureRow {
            position,
            cycle_id: cycle.cycle_id,
            instance_id: cycle.instance_id,
            tenant_id: cycle.tenant_id.clone(),
            rung: cycle.rung,
            stage: failure.stage,
            reason: failure.reason,
            detail: failure.detail.clone(),
            failed_at: failure.failed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use restorable_domain::cycle::{examples, BackupCycleEvent};
    use restorable_domain::ladder::{FailureReason, Rung, Stage};

    use crate::model::{ReadModel, StoredRow};
    use crate::AnyEvent;

    #[test]
    fn only_a_cycles_failure_makes_a_failures_row_keyed_by_its_position() {
        let started = examples::started();
        let id = started.cycle_id.to_string();
        let mut model = ReadModel::default();
        let mut row = None;
        let events = [
            BackupCycleEvent::CycleStarted(started.clone()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Failed(examples::failed(
                Stage::Secure,
                FailureReason::VaultUnavailable,
            )),
        ];
        let folded: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(n, event)| {
                let position = i64::try_from(n).unwrap_or(0) + 41;
                model.apply(
                    position,
                    &AnyEvent::Cycle(id.clone(), event.clone()),
                    &mut row,
                )
            })
            .collect();
        assert!(folded[0].failure.is_none() && folded[1].failure.is_none());
        let failure = folded[2].failure.clone().expect("the failure's row");
        assert_eq!(
            (
                failure.position,
                failure.cycle_id,
                failure.rung,
                failure.stage
            ),
            (43, started.cycle_id, Rung::Captured, Stage::Secure)
        );
        assert_eq!(failure.reason, FailureReason::VaultUnavailable);
        let stored = StoredRow::failure(&failure);
        assert_eq!(
            (stored.view, stored.key.as_str(), stored.tenant_id.as_str()),
            ("failures", "00000000000000000043", "acme")
        );
    }
}
