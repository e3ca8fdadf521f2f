//! The `AuditTrail` aggregate: what people and machines did through the API, one trail per
//! tenant (its id is the tenant id). Every mutating action, every download and every password
//! reveal is an `ActionRecorded` event, kept with the rest of the history.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::{Snapshotted, EVENT_VERSION};

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An instance was enrolled for managed backups.
    Enrol,
    /// Managed backups of an instance were stopped.
    Stop,
    /// Managed backups of an instance were resumed.
    Resume,
    /// A backup was asked for now.
    BackupNow,
    /// A stored copy was downloaded.
    Download,
    /// A backup password was revealed.
    RevealPassword,
    /// An operator aborted a cycle in flight (`restorable cycle abort`).
    AbortCycle,
    /// An enrolled instance was pointed at a new URL or given new API credentials (its
    /// instance history has the old and the new origin).
    EndpointChanged,
    /// A download was cut off because the stored copy differs from its recorded SHA-256.
    DownloadCorrupt,
    /// An API token was revoked (`restorable token revoke`).
    TokenRevoke,
    /// A user was removed (`restorable user remove`), with their sessions and tokens.
    UserRemove,
    /// A user's password was reset (`restorable user add` on an existing user): their sessions
    /// and tokens ended.
    PasswordReset,
    /// An open alert of an instance was acknowledged (the alert's history has which, and the
    /// note).
    AlertAcknowledge,
    /// An open alert of an instance was snoozed (the alert's history has which, and until when).
    AlertSnooze,
    /// An instance was removed (offboarded): stopped for good, its copies and credentials
    /// removed after the grace (`restorable instance remove`, the API).
    RemoveInstance,
}

impl AuditAction {
    /// Every action, in the order of the enum (the Audit page's filter offers them all).
    pub const ALL: [AuditAction; 15] = [
        AuditAction::Enrol,
        AuditAction::Stop,
        AuditAction::Resume,
        AuditAction::BackupNow,
        AuditAction::Download,
        AuditAction::RevealPassword,
        AuditAction::AbortCycle,
        AuditAction::EndpointChanged,
        AuditAction::DownloadCorrupt,
        AuditAction::TokenRevoke,
        AuditAction::UserRemove,
        AuditAction::PasswordReset,
        AuditAction::AlertAcknowledge,
        AuditAction::AlertSnooze,
        AuditAction::RemoveInstance,
    ];

    /// The action's wire name (`backup_now`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Enrol => "enrol",
            AuditAction::Stop => "stop",
            AuditAction::Resume => "resume",
            AuditAction::BackupNow => "backup_now",
            AuditAction::Download => "download",
            AuditAction::RevealPassword => "reveal_password",
            AuditAction::AbortCycle => "abort_cycle",
            AuditAction::EndpointChanged => "endpoint_changed",
            AuditAction::DownloadCorrupt => "download_corrupt",
            AuditAction::TokenRevoke => "token_revoke",
            AuditAction::UserRemove => "user_remove",
            AuditAction::PasswordReset => "password_reset",
            AuditAction::AlertAcknowledge => "alert_acknowledge",
            AuditAction::AlertSnooze => "alert_snooze",
            AuditAction::RemoveInstance => "remove_instance",
        }
    }
}

/// One recorded action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionRecorded {
    /// The tenant whose data was touched.
    pub tenant_id: TenantId,
    /// Who: a user's e-mail address or an API token's name.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// On which instance.
    pub instance_id: Option<InstanceId>,
    /// On which cycle (downloads, aborts).
    pub cycle_id: Option<CycleId>,
    /// Which key version (downloads and reveals).
    pub key_version: Option<u32>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything that can happen to an audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum AuditEvent {
    /// See [`ActionRecorded`].
    ActionRecorded(ActionRecorded),
}

impl DomainEvent for AuditEvent {
    fn event_type(&self) -> String {
        match self {
            AuditEvent::ActionRecorded(_) => "ActionRecorded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// Recording never fails; the type exists for cqrs-es.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreachable")]
pub struct AuditError;

/// An audit trail keeps no state: every record is accepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditTrail {
    /// Actions recorded so far.
    pub recorded: u64,
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for AuditTrail {
    const SNAPSHOT_VERSION: u32 = 1;
}

impl Aggregate for AuditTrail {
    const TYPE: &'static str = "AuditTrail";
    type Command = ActionRecorded;
    type Event = AuditEvent;
    type Error = AuditError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        sink.write(AuditEvent::ActionRecorded(command), self).await;
        Ok(())
    }

    fn apply(&mut self, _event: Self::Event) {
        self.recorded += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::examples;
    use cqrs_es::test::TestFramework;

    /// `ALL` holds every action once, in order, under its wire name: the match below stops
    /// compiling when an action is added, until it is placed.
    #[test]
    fn all_lists_every_action_once_by_its_wire_name() {
        let place = |action: AuditAction| match action {
            AuditAction::Enrol => 0,
            AuditAction::Stop => 1,
            AuditAction::Resume => 2,
            AuditAction::BackupNow => 3,
            AuditAction::Download => 4,
            AuditAction::RevealPassword => 5,
            AuditAction::AbortCycle => 6,
            AuditAction::EndpointChanged => 7,
            AuditAction::DownloadCorrupt => 8,
            AuditAction::TokenRevoke => 9,
            AuditAction::UserRemove => 10,
            AuditAction::PasswordReset => 11,
            AuditAction::AlertAcknowledge => 12,
            AuditAction::AlertSnooze => 13,
            AuditAction::RemoveInstance => 14,
        };
        for (index, action) in AuditAction::ALL.into_iter().enumerate() {
            assert_eq!(place(action), index, "{action:?}");
            assert_eq!(
                serde_json::to_value(action).expect("serializes"),
                serde_json::json!(action.as_str())
            );
        }
    }

    #[test]
    fn every_action_is_recorded() {
        let started = examples::started();
        let record = ActionRecorded {
            tenant_id: started.tenant_id,
            actor: "owner@acme.example".into(),
            action: AuditAction::RevealPassword,
            instance_id: Some(started.instance_id),
            cycle_id: None,
            key_version: Some(1),
            at: examples::at(),
        };
        TestFramework::<AuditTrail>::with(())
            .given(vec![AuditEvent::ActionRecorded(record.clone())])
            .when(record.clone())
            .then_expect_events(vec![AuditEvent::ActionRecorded(record)]);
    }
}
