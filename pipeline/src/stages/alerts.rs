//! The alerts stage: a `Failed` cycle raises a "Backup Failed" alert; a copy reaching Secured
//! or Verified, and a cycle that ends without failure (`CycleClosed`), tell the instance's
//! `InstanceAlerts` aggregate how far the instance recovered, which resolves exactly the open
//! alerts that recovery answers (the table in [`restorable_domain::alert`]) — so a copy that is
//! Secured and then fails verify resolves nothing, and a PBX that never produces a good copy
//! has one alert, open, however many cycles fail. The aggregate raises a kind only once while
//! it is open, so a cycle failing again and again (or a redelivered event) raises nothing more.
//! Every command carries its event's log position: only what comes later in the log resolves
//! an alert. Stale instances are raised by the projector's sweep ([`raise_stale`]). Delivering
//! alerts to their routes is another consumer's job ([`crate::alerting`]), so a slow
//! webhook never holds up the ladder.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::InstanceEvent;
use restorable_domain::ladder::Rung;

use super::is_cycle_event;
use crate::pipeline::Pipeline;
use crate::store::{LoggedEvent, Store, StoreError};
use crate::transport::Consumer;

/// See the module documentation.
pub struct AlertsStage {
    pipeline: Pipeline,
}

impl AlertsStage {
    /// An alerts stage over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

/// Raises a "Backup Stale" (no copy reached Secured lately) or "Verify Stale" (copies are
/// Secured, none reached Verified lately) alert for `instance`, unless one of that kind is
/// open; `last` is when a copy last reached that rung, `position` the last log position the
/// sweep had read (only a later event resolves the alert).
///
/// # Errors
/// A storage error.
pub async fn raise_stale(
    store: &Store,
    kind: AlertKind,
    tenant: &TenantId,
    instance: InstanceId,
    last: Option<DateTime<Utc>>,
    position: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rung = if kind == AlertKind::VerifyStale {
        "Verified"
    } else {
        "Secured"
    };
    let detail = match last {
        Some(at) => format!(
            "no copy reached {rung} since {}",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => format!("no copy has reached {rung} yet"),
    };
    store
        .alerts(
            &instance.to_string(),
            AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                kind,
                tenant_id: tenant.clone(),
                instance_id: instance,
                cycle_id: None,
                stage: None,
                reason: None,
                detail,
                raised_at: now,
                position,
            }),
        )
        .await
}

#[async_trait]
impl Consumer for AlertsStage {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &["Failed", "Secured", "Verified", "CycleClosed"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        ["Failed", "Secured", "Verified"]
            .iter()
            .any(|t| is_cycle_event(event, t))
            || (event.aggregate_type == "Instance" && event.event_type == "CycleClosed")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let store = &self.pipeline.store;
        if event.aggregate_type == "Instance" {
            let InstanceEvent::CycleClosed(closed) = event.decode()? else {
                return Ok(());
            };
            if closed.failed {
                return Ok(());
            }
            let resolve = AlertCommand::Resolve {
                cycle_id: closed.cycle_id,
                reached: closed.reached,
                ended: true,
                position: event.position,
                at: closed.closed_at,
            };
            return store.alerts(&event.aggregate_id, resolve).await;
        }
        let cycle: BackupCycle = store.load(&event.aggregate_id).await?;
        let Some(started) = cycle.started else {
            return Ok(());
        };
        let instance = started.instance_id.to_string();
        match event.decode()? {
            BackupCycleEvent::Failed(failed) => {
                tracing::warn!(tenant = %started.tenant_id, instance = %instance, reason = %failed.reason, "Backup Failed");
                let raise = AlertRaised {
                    alert_id: String::new(),
                    kind: AlertKind::BackupFailed,
                    tenant_id: started.tenant_id,
                    instance_id: started.instance_id,
                    cycle_id: Some(started.cycle_id),
                    stage: Some(failed.stage),
                    reason: Some(failed.reason),
                    detail: failed.detail,
                    raised_at: failed.failed_at,
                    position: event.position,
                };
                store.alerts(&instance, AlertCommand::Raise(raise)).await
            }
            BackupCycleEvent::Secured(secured) => {
                let resolve = climbed(started.cycle_id, Rung::Secured, &event, secured.secured_at);
                store.alerts(&instance, resolve).await
            }
            BackupCycleEvent::Verified(verified) => {
                let resolve = climbed(
                    started.cycle_id,
                    Rung::Verified,
                    &event,
                    verified.verified_at,
                );
                store.alerts(&instance, resolve).await
            }
            _ => Ok(()),
        }
    }
}

/// A copy of `cycle_id` reached `reached` (its cycle may still fail later), told by `event`.
fn climbed(
    cycle_id: CycleId,
    reached: Rung,
    event: &LoggedEvent,
    at: DateTime<Utc>,
) -> AlertCommand {
    AlertCommand::Resolve {
        cycle_id,
        reached,
        ended: false,
        position: event.position,
        at,
    }
}
