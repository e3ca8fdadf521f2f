//! The audit view: every recorded API action with its actor, per tenant, in the order recorded.
//! A row is written once (keyed by its log position) and never changed, so the projector holds
//! none: it writes each as it folds it, and readers read them from storage.

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

impl AuditRow {
    /// The row of the audit event at `position`.
    pub fn recorded(position: i64, event: &AuditEvent) -> Self {
        let AuditEvent::ActionRecorded(action) = event;
        AuditRow {
            position,
            action: action.clone(),
        }
    }
}
