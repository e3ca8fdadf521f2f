//! Acknowledging and snoozing an open alert (administrators and owners), from the JSON API
//! and the Alerts page: the alert's own history records who, when and the note, and the
//! tenant's audit trail records the action.

use chrono::{DateTime, Duration, Utc};
use restorable_domain::alert::{AlertCommand, SNOOZE_LIMIT_DAYS};
use restorable_domain::audit::AuditAction;
use serde::Deserialize;

use super::audit::record;
use crate::access;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// What to do to an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertAction {
    /// Someone is on it.
    Acknowledge {
        /// Their note.
        note: String,
    },
    /// No reminders until `until`.
    Snooze {
        /// Until when.
        until: DateTime<Utc>,
        /// Why.
        note: String,
    },
}

/// A snooze as the API and the form ask for it: until a time, or for some hours.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    /// Until this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// For this many hours from now.
    pub hours: Option<u32>,
    /// Why.
    #[serde(default)]
    pub note: String,
}

impl SnoozeBody {
    /// The action: exactly one of `until` and `hours`.
    ///
    /// # Errors
    /// 400 for neither, both, or hours beyond the snooze limit.
    pub fn action(self, now: DateTime<Utc>) -> Result<AlertAction, ApiError> {
        let until = match (self.until, self.hours) {
            (Some(until), None) => until,
            (None, Some(hours)) if i64::from(hours) <= SNOOZE_LIMIT_DAYS * 24 => {
                now + Duration::hours(i64::from(hours))
            }
            (None, Some(_)) => {
                return Err(ApiError::BadRequest(format!(
                    "hours: at most {} ({SNOOZE_LIMIT_DAYS} days)",
                    SNOOZE_LIMIT_DAYS * 24
                )))
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "give either until (RFC 3339) or hours".into(),
                ))
            }
        };
        Ok(AlertAction::Snooze {
            until,
            note: self.note,
        })
    }
}

/// Acknowledges or snoozes the alert `alert_id`, as `who`.
///
/// # Errors
/// 404 if not visible, 403 for a viewer, 409 if the alert is not open or the note or time is
/// refused.
pub async fn act_on_alert(
    state: &AppState,
    who: &Principal,
    alert_id: &str,
    action: AlertAction,
) -> Result<(), ApiError> {
    let row = access::alert(state, who, alert_id)?;
    who.require(&[Role::Administrator, Role::Owner])?;
    let at = Utc::now();
    let (command, audited) = match action {
        AlertAction::Acknowledge { note } => (
            AlertCommand::Acknowledge {
                alert_id: row.alert_id.clone(),
                by: who.actor.clone(),
                note,
                at,
            },
            AuditAction::AlertAcknowledge,
        ),
        AlertAction::Snooze { until, note } => (
            AlertCommand::Snooze {
                alert_id: row.alert_id.clone(),
                by: who.actor.clone(),
                until,
                note,
                at,
            },
            AuditAction::AlertSnooze,
        ),
    };
    state
        .pipeline
        .store
        .alerts(&row.instance_id.to_string(), command)
        .await?;
    record(
        state,
        who,
        &row.tenant_id,
        audited,
        Some(row.instance_id),
        None,
        None,
    )
    .await
}
