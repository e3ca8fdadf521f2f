//! The audit view: every recorded API action with its actor, per tenant, in the order recorded.

use std::collections::BTreeMap;

use restorable_domain::audit::{ActionRecorded, AuditEvent};
use serde::{Deserialize, Serialize};

/// One recorded action and its place in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// The event's global position (orders the log).
    pub position: i64,
    /// What was recorded.
    #[serde(flatten)]
    pub action: ActionRecorded,
}

/// The audit view, keyed by position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditView {
    rows: BTreeMap<i64, AuditRow>,
}

impl AuditView {
    /// A view holding `rows` (as saved).
    pub fn from_rows(rows: impl IntoIterator<Item = AuditRow>) -> Self {
        Self {
            rows: rows.into_iter().map(|r| (r.position, r)).collect(),
        }
    }

    /// Folds one audit event in at `position`; returns the position.
    pub fn apply(&mut self, position: i64, event: &AuditEvent) -> i64 {
        let AuditEvent::ActionRecorded(action) = event;
        self.rows.insert(
            position,
            AuditRow {
                position,
                action: action.clone(),
            },
        );
        position
    }

    /// One row.
    pub fn row(&self, position: i64) -> Option<&AuditRow> {
        self.rows.get(&position)
    }

    /// Every row, newest first.
    pub fn rows(&self) -> impl Iterator<Item = &AuditRow> {
        self.rows.values().rev()
    }
}
