//! The alert view: every alert with its raise and resolve times, kept indefinitely.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use restorable_domain::alert::{AlertEvent, AlertKind};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage};
use serde::{Deserialize, Serialize};

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// `<instance id>-<number>`.
    pub alert_id: String,
    /// Backup Failed or Backup Stale.
    pub kind: AlertKind,
    /// The instance's tenant.
    pub tenant_id: TenantId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The failed cycle, if any.
    pub cycle_id: Option<CycleId>,
    /// The stage that failed, if any.
    pub stage: Option<Stage>,
    /// The reason code, if any.
    pub reason: Option<FailureReason>,
    /// A human explanation.
    pub detail: String,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// When it was resolved (still open if `None`).
    pub resolved_at: Option<DateTime<Utc>>,
    /// The cycle whose Secured copy resolved it.
    pub resolved_by: Option<CycleId>,
}

/// The alert view, keyed by alert id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertView {
    rows: BTreeMap<String, AlertRow>,
}

impl AlertView {
    /// A view holding `rows` (as saved).
    pub fn from_rows(rows: impl IntoIterator<Item = AlertRow>) -> Self {
        Self {
            rows: rows.into_iter().map(|r| (r.alert_id.clone(), r)).collect(),
        }
    }

    /// Folds one alert event in; returns the alert whose row changed.
    pub fn apply(&mut self, event: &AlertEvent) -> Option<String> {
        match event {
            AlertEvent::AlertRaised(e) => {
                self.rows.insert(
                    e.alert_id.clone(),
                    AlertRow {
                        alert_id: e.alert_id.clone(),
                        kind: e.kind,
                        tenant_id: e.tenant_id.clone(),
                        instance_id: e.instance_id,
                        cycle_id: e.cycle_id,
                        stage: e.stage,
                        reason: e.reason,
                        detail: e.detail.clone(),
                        raised_at: e.raised_at,
                        resolved_at: None,
                        resolved_by: None,
                    },
                );
                Some(e.alert_id.clone())
            }
            AlertEvent::AlertResolved(e) => {
                let row = self.rows.get_mut(&e.alert_id)?;
                row.resolved_at = Some(e.resolved_at);
                row.resolved_by = Some(e.resolved_by);
                Some(e.alert_id.clone())
            }
        }
    }

    /// One alert.
    pub fn row(&self, alert_id: &str) -> Option<&AlertRow> {
        self.rows.get(alert_id)
    }

    /// Every alert, newest first.
    pub fn rows(&self) -> Vec<&AlertRow> {
        let mut rows: Vec<_> = self.rows.values().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.raised_at));
        rows
    }
}
