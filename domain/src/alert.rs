//! The `InstanceAlerts` aggregate: the alerts of one instance (its id is the instance id). An
//! alert of a kind is raised once and stays open until the instance *recovers*, so a cycle that
//! fails again and again while the alert is open raises nothing more (no storm on retries), and
//! nothing short of recovery resolves it (no flapping). Every alert and its resolution stay in
//! the history for good.
//!
//! | kind | raised when | resolved when |
//! |---|---|---|
//! | Backup Failed | a cycle fails | a *later* cycle ends without failure at Verified or above; a Restore-Tested failure only by a later cycle that ends Restore-Tested |
//! | Backup Stale | no copy reached Secured within twice the interval | a later copy reaches Secured |
//! | Verify Stale | copies are Secured but none reached Verified within twice the interval (not while Backup Stale or Backup Failed is open) | a later copy reaches Verified |
//!
//! "Later" is the position in the event log, never a wall clock: every alert keeps the log
//! position of what raised it, and only an event further on in the log resolves it — so a
//! redelivered, older success never resolves a newer alert, whatever the workers' clocks say.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{CycleId, InstanceId, TenantId};
use crate::ladder::{FailureReason, Rung, Stage};
use crate::{Snapshotted, EVENT_VERSION};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The latest cycle failed.
    BackupFailed,
    /// No copy reached Secured within the expected interval.
    BackupStale,
    /// Copies are Secured but none reached Verified within the expected interval.
    VerifyStale,
}

impl AlertKind {
    /// The title people see: `Backup Failed`, `Backup Stale` or `Verify Stale`.
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::BackupFailed => "Backup Failed",
            AlertKind::BackupStale => "Backup Stale",
            AlertKind::VerifyStale => "Verify Stale",
        }
    }

    /// Whether a copy that reached `reached` recovers the instance from this kind of alert,
    /// for an alert raised by a failure at `stage`; `ended`: the copy's cycle ended there
    /// without failure (a copy still climbing recovers only the stale kinds).
    pub fn recovered_by(self, stage: Option<Stage>, reached: Rung, ended: bool) -> bool {
        match self {
            AlertKind::BackupFailed if stage == Some(Stage::RestoreTest) => {
                ended && reached == Rung::RestoreTested
            }
            AlertKind::BackupFailed => ended && reached >= Rung::Verified,
            AlertKind::BackupStale => reached >= Rung::Secured,
            AlertKind::VerifyStale => reached >= Rung::Verified,
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
    /// The event-log position of what raised it (the `Failed` event; for a stale alert, the
    /// last event the sweep had read): only what comes later in the log resolves it. 0 in
    /// alerts written before the field existed.
    #[serde(default)]
    pub position: i64,
}

/// An open alert was resolved: the instance recovered (see the module's table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertResolved {
    /// The alert.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// The cycle whose copy recovered the instance.
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
    /// A copy of `cycle_id` reached `reached` (and, if `ended`, its cycle ended there without
    /// failure), told by the event at log `position`: resolves every open alert raised earlier
    /// in the log that this recovers (see [`AlertKind::recovered_by`]).
    Resolve {
        /// The cycle.
        cycle_id: CycleId,
        /// The rung its copy reached.
        reached: Rung,
        /// Whether the cycle ended there without failure.
        ended: bool,
        /// The log position of the event that says so.
        position: i64,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Alert commands never fail; the type exists for cqrs-es.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreachable")]
pub struct AlertError;

/// The alerts of one instance, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceAlerts {
    /// Alerts raised so far (numbers the next one).
    pub raised: u64,
    /// Open alerts.
    pub open: Vec<OpenAlert>,
    /// The most recent cycles that raised an alert, oldest first, at most
    /// [`RAISED_FOR_KEPT`] (a redelivered `Failed` raises nothing twice; redeliveries come soon
    /// after the first delivery, so the state needs no memory of every failed cycle ever).
    pub raised_for: Vec<CycleId>,
}

/// How many of the most recent alerting cycles [`InstanceAlerts::raised_for`] keeps: the state
/// stays bounded however many cycles an instance has failed.
pub const RAISED_FOR_KEPT: usize = 64;

/// An alert that is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpenAlert {
    /// Its id.
    pub alert_id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// The stage whose failure raised it (Backup Failed).
    pub stage: Option<Stage>,
    /// The log position of what raised it.
    pub position: i64,
}

impl InstanceAlerts {
    /// Whether an alert of `kind` is open.
    pub fn is_open(&self, kind: AlertKind) -> bool {
        self.open.iter().any(|a| a.kind == kind)
    }
}

/// Bump when `apply()` below changes (see [`Snapshotted`]).
impl Snapshotted for InstanceAlerts {
    const SNAPSHOT_VERSION: u32 = 1;
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
            AlertCommand::Resolve {
                cycle_id,
                reached,
                ended,
                position,
                at,
            } => {
                let due: Vec<OpenAlert> = self
                    .open
                    .iter()
                    .filter(|a| a.position < position)
                    .filter(|a| a.kind.recovered_by(a.stage, reached, ended))
                    .cloned()
                    .collect();
                for alert in due {
                    sink.write(
                        AlertEvent::AlertResolved(AlertResolved {
                            alert_id: alert.alert_id,
                            kind: alert.kind,
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
                self.open.push(OpenAlert {
                    alert_id: e.alert_id,
                    kind: e.kind,
                    stage: e.stage,
                    position: e.position,
                });
                self.raised_for.extend(e.cycle_id);
                let excess = self.raised_for.len().saturating_sub(RAISED_FOR_KEPT);
                self.raised_for.drain(..excess);
            }
            AlertEvent::AlertResolved(e) => {
                self.open.retain(|a| a.alert_id != e.alert_id);
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

    fn failed_at(alert_id: &str, stage: Stage, position: i64) -> AlertRaised {
        let started = examples::started();
        AlertRaised {
            alert_id: alert_id.into(),
            kind: AlertKind::BackupFailed,
            tenant_id: started.tenant_id,
            instance_id: started.instance_id,
            cycle_id: Some(started.cycle_id),
            stage: Some(stage),
            reason: Some(FailureReason::PbxAuth),
            detail: "refused".into(),
            raised_at: examples::at(),
            position,
        }
    }

    fn failed(alert_id: &str) -> AlertRaised {
        failed_at(alert_id, Stage::Verify, 10)
    }

    fn stale(alert_id: &str, kind: AlertKind) -> AlertRaised {
        AlertRaised {
            kind,
            cycle_id: None,
            stage: None,
            reason: None,
            ..failed(alert_id)
        }
    }

    fn first_id() -> String {
        format!("{}-1", examples::started().instance_id)
    }

    fn later_cycle() -> CycleId {
        CycleId::random()
    }

    fn resolve(cycle_id: CycleId, reached: Rung, ended: bool, position: i64) -> AlertCommand {
        AlertCommand::Resolve {
            cycle_id,
            reached,
            ended,
            position,
            at: examples::at(),
        }
    }

    fn resolved(kind: AlertKind, by: CycleId) -> AlertEvent {
        AlertEvent::AlertResolved(AlertResolved {
            alert_id: first_id(),
            kind,
            resolved_by: by,
            resolved_at: examples::at(),
        })
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
    fn a_later_cycle_that_ends_verified_resolves_backup_failed() {
        let later = later_cycle();
        for reached in [Rung::Verified, Rung::RestoreTested] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(resolve(later, reached, true, 20))
                .then_expect_events(vec![resolved(AlertKind::BackupFailed, later)]);
        }
    }

    /// The flapping this rule ends: a copy reaching Secured (or Verified) in a cycle that may
    /// still fail one rung later, or a cycle that ended below Verified, recovers nothing.
    #[test]
    fn a_copy_that_only_climbs_or_ends_below_verified_leaves_backup_failed_open() {
        for (reached, ended) in [
            (Rung::Secured, false),
            (Rung::Verified, false),
            (Rung::RestoreTested, false),
            (Rung::Secured, true),
            (Rung::Captured, true),
        ] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(resolve(later_cycle(), reached, ended, 20))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn a_restore_test_failure_is_resolved_only_by_a_later_restore_tested_cycle() {
        let raised = || {
            vec![AlertEvent::AlertRaised(failed_at(
                &first_id(),
                Stage::RestoreTest,
                10,
            ))]
        };
        Given::with(())
            .given(raised())
            .when(resolve(later_cycle(), Rung::Verified, true, 20))
            .then_expect_events(vec![]);
        let later = later_cycle();
        Given::with(())
            .given(raised())
            .when(resolve(later, Rung::RestoreTested, true, 20))
            .then_expect_events(vec![resolved(AlertKind::BackupFailed, later)]);
    }

    /// Order is the log's, never a clock's: an event earlier in the log (a redelivered, older
    /// success) resolves nothing raised after it, whatever its timestamp.
    #[test]
    fn only_an_event_later_in_the_log_resolves() {
        for position in [9, 10] {
            Given::with(())
                .given(vec![AlertEvent::AlertRaised(failed(&first_id()))])
                .when(AlertCommand::Resolve {
                    cycle_id: later_cycle(),
                    reached: Rung::RestoreTested,
                    ended: true,
                    position,
                    at: examples::at() + chrono::Duration::days(1),
                })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn stale_alerts_resolve_on_the_rung_they_wait_for() {
        let later = later_cycle();
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::BackupStale,
            ))])
            .when(resolve(later, Rung::Secured, false, 20))
            .then_expect_events(vec![resolved(AlertKind::BackupStale, later)]);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::VerifyStale,
            ))])
            .when(resolve(later_cycle(), Rung::Secured, false, 20))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![AlertEvent::AlertRaised(stale(
                &first_id(),
                AlertKind::VerifyStale,
            ))])
            .when(resolve(later, Rung::Verified, false, 20))
            .then_expect_events(vec![resolved(AlertKind::VerifyStale, later)]);
    }

    #[test]
    fn a_redelivered_failure_raises_nothing_after_its_alert_was_resolved() {
        Given::with(())
            .given(vec![
                AlertEvent::AlertRaised(failed(&first_id())),
                resolved(AlertKind::BackupFailed, later_cycle()),
            ])
            .when(AlertCommand::Raise(failed("")))
            .then_expect_events(vec![]);
    }

    /// However many cycles have failed, the state keeps only the last [`RAISED_FOR_KEPT`]
    /// (oldest forgotten first), and a redelivery of a recent one still raises nothing.
    #[test]
    fn the_cycles_that_raised_are_bounded_to_the_most_recent() {
        let mut alerts = InstanceAlerts::default();
        let cycles: Vec<CycleId> = (0..1000u128)
            .map(|n| CycleId(uuid::Uuid::from_u128(n + 1)))
            .collect();
        for (n, cycle) in cycles.iter().enumerate() {
            let id = format!("a-{n}");
            alerts.apply(AlertEvent::AlertRaised(AlertRaised {
                cycle_id: Some(*cycle),
                ..failed(&id)
            }));
            alerts.apply(AlertEvent::AlertResolved(AlertResolved {
                alert_id: id,
                kind: AlertKind::BackupFailed,
                resolved_by: *cycle,
                resolved_at: examples::at(),
            }));
        }
        assert_eq!(alerts.raised, 1000);
        assert!(alerts.open.is_empty());
        assert_eq!(alerts.raised_for, cycles[1000 - RAISED_FOR_KEPT..]);

        let recent = cycles[999];
        let given: Vec<AlertEvent> = vec![
            AlertEvent::AlertRaised(AlertRaised {
                cycle_id: Some(recent),
                ..failed(&first_id())
            }),
            resolved(AlertKind::BackupFailed, later_cycle()),
        ];
        Given::with(())
            .given(given)
            .when(AlertCommand::Raise(AlertRaised {
                cycle_id: Some(recent),
                ..failed("")
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn nothing_open_means_nothing_to_resolve() {
        Given::with(())
            .given_no_previous_events()
            .when(resolve(later_cycle(), Rung::RestoreTested, true, 20))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_alert_written_before_positions_existed_still_reads() {
        let mut json = serde_json::to_value(failed(&first_id())).expect("json");
        json.as_object_mut().expect("object").remove("position");
        let read: AlertRaised = serde_json::from_value(json).expect("old alert");
        assert_eq!(read.position, 0);
    }
}
