//! The `InstanceAlerts` aggregate: the alerts of one instance (its id is the instance id). An
//! alert of a kind is raised once and stays open until a later copy reaches Secured, so a cycle
//! that fails again and again while the alert is open raises nothing more (no storm on retries).
//! Every alert and its resolution stay in the history for good.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::ladder::{FailureReason, Stage};
use crate::EVENT_VERSION;

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The latest cycle failed.
    BackupFailed,
    /// No copy reached Secured within the expected interval.
    BackupStale,
}

impl AlertKind {
    /// The title people see: `Backup Failed` or `Backup Stale`.
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::BackupFailed => "Backup Failed",
            AlertKind::BackupStale => "Backup Stale",
        }
    }
}

/// An alert was raised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRaised {
    /// `<instance id>-<number>`: unique, and the same on every replay.
    pub alert_id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// The instance's tenant.
    pub tenant_id: TenantId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The cycle that failed (for `backup_failed`).
    pub cycle_id: Option<CycleId>,
    /// The stage that failed (for `backup_failed`).
    pub stage: Option<Stage>,
    /// The stable reason code (for `backup_failed`).
    pub reason: Option<FailureReason>,
    /// A human explanation. Never contains a secret.
    pub detail: String,
    /// When.
    pub raised_at: DateTime<Utc>,
}

/// An open alert was resolved by a copy that reached Secured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertResolved {
    /// The alert.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// The cycle whose copy was Secured.
    pub resolved_by: CycleId,
    /// When.
    pub resolved_at: DateTime<Utc>,
}

/// Everything that can happen to an instance's alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum AlertEvent {
    /// See [`AlertRaised`].
    AlertRaised(AlertRaised),
    /// See [`AlertResolved`].
    AlertResolved(AlertResolved),
}

impl DomainEvent for AlertEvent {
    fn event_type(&self) -> String {
        match self {
            AlertEvent::AlertRaised(_) => "AlertRaised",
            AlertEvent::AlertResolved(_) => "AlertResolved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

/// What the alert router asks.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertCommand {
    /// Raise an alert of this kind unless one is open (the `alert_id` field is assigned here).
    Raise(AlertRaised),
    /// Resolve every alert raised before `at`: a copy of `cycle_id` reached Secured then (a
    /// redelivered, older Secured cannot resolve a newer alert).
    Resolve {
        /// The Secured cycle.
        cycle_id: CycleId,
        /// When it was Secured.
        at: DateTime<Utc>,
    },
}

/// Alert commands never fail; the type exists for cqrs-es.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreachable")]
pub struct AlertError;

/// The alerts of one instance, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceAlerts {
    /// Alerts raised so far (numbers the next one).
    pub raised: u64,
    /// Open alerts: id, kind and when raised.
    pub open: Vec<(String, AlertKind, DateTime<Utc>)>,
    /// Cycles that raised an alert (a redelivered `Failed` raises nothing twice).
    pub raised_for: Vec<CycleId>,
}

impl InstanceAlerts {
    /// Whether an alert of `kind` is open.
    pub fn is_open(&self, kind: AlertKind) -> bool {
        self.open.iter().any(|(_, k, _)| *k == kind)
    }
}

impl Aggregate for InstanceAlerts {
    const TYPE: &'static str = "InstanceAlerts";
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = AlertError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AlertCommand::Raise(mut raised) => {
                let seen_cycle = raised
                    .cycle_id
                    .is_some_and(|c| self.raised_for.contains(&c));
                if !self.is_open(raised.kind) && !seen_cycle {
                    raised.alert_id = format!("{}-{}", raised.instance_id, self.raised + 1);
                    sink.write(AlertEvent::AlertRaised(raised), self).await;
                }
            }
            AlertCommand::Resolve { cycle_id, at } => {
                let due = self
                    .open
                    .iter()
                    .filter(|(_, _, raised_at)| *raised_at <= at);
                for (alert_id, kind, _) in due.cloned().collect::<Vec<_>>() {
                    sink.write(
                        AlertEvent::AlertResolved(AlertResolved {
                            alert_id,
                            kind,
                            resolved_by: cycle_id,
                            resolved_at: at,
                        }),
                        self,
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AlertEvent::AlertRaised(e) => {
                self.raised += 1;
                self.open.push((e.alert_id, e.kind, e.raised_at));
                self.raised_for.extend(e.cycle_id);
            }
            AlertEvent::AlertResolved(e) => {
                self.open.retain(|(id, _, _)| *id != e.alert_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::examples;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<InstanceAlerts>;

    fn failed(alert_id: &str) -> AlertRaised {
        let started = examples::started();
        AlertRaised {
            alert_id: alert_id.into(),
            kind: AlertKind::BackupFailed,
            tenant_id: started.tenant_id,
            instance_id: started.instance_id,
            cycle_id: Some(started.cycle_id),
            stage: Some(Stage::Capture),
            reason: Some(FailureReason::PbxAuth),
            detail: "refused".into(),
            raised_at: examples::at(),
        }
    }

    fn first_id() -> String {
        format!("{}-1", examples::started().instance_id)
    }

    #[test]
    fn a_failure_raises_an_alert_numbered_for_its_instance() {
        Given::with(())
            .given_no_previous_events()
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![AlertEvent::AlertRaised(failed(&first_id()))]);
    }

    #[test]
    fn another_failure_while_the_alert_is_open_raises_nothing() {
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_secured_copy_resolves_open_alerts() {
        let later = examples::started().cycle_id;
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(AlertCommand::Resolve {
                cycle_id: later,
                at: examples::at(),
            })
            .then_expect_events(vec![AlertEvent::AlertResolved(AlertResolved {
                alert_id: first_id(),
                kind: AlertKind::BackupFailed,
                resolved_by: later,
                resolved_at: examples::at(),
            })]);
    }

    #[test]
    fn an_older_secured_copy_does_not_resolve_a_newer_alert() {
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
            .when(AlertCommand::Resolve {
                cycle_id: examples::started().cycle_id,
                at: examples::at() - chrono::Duration::hours(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_redelivered_failure_raises_nothing_after_its_alert_was_resolved() {
        Given::with(())
            .given(vec![
                AlertEvent::AlertRaised(failed(&first_id())),
                AlertEvent::AlertResolved(AlertResolved {
                    alert_id: first_id(),
                    kind: AlertKind::BackupFailed,
                    resolved_by: examples::started().cycle_id,
                    resolved_at: examples::at(),
                }),
            ])
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn nothing_open_means_nothing_to_resolve() {
        Given::with(())
            .given_no_previous_events()
            .when(AlertCommand::Resolve {
                cycle_id: examples::started().cycle_id,
                at: examples::at(),
            })
            .then_expect_events(vec![]);
    }
}
