//! The alerts stage: a `Failed` cycle raises a "Backup Failed" alert and a `Secured` copy
//! resolves the instance's open alerts, through the `InstanceAlerts` aggregate — which raises a
//! kind of alert only once while it is open, so a cycle failing again and again (or a
//! redelivered event) raises nothing more. Stale instances are raised by the projector's sweep
//! ([`raise_stale`]). Delivering alerts to their routes is another consumer's job
//! ([`crate::alert_routes`]), so a slow webhook never holds up the ladder.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::{InstanceId, TenantId};

use super::is_cycle_event;
use crate::context::Pipeline;
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

/// The subject a tenant's alerts are published on.
pub fn alert_subject(tenant: &str) -> String {
    format!("restorable.alerts.{tenant}")
}

/// Raises a "Backup Stale" alert for `instance` (nothing if one is open).
///
/// # Errors
/// A storage error.
pub async fn raise_stale(
    store: &Store,
    tenant: &TenantId,
    instance: InstanceId,
    last_secured: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let detail = match last_secured {
        Some(at) => format!(
            "no copy reached Secured since {}",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => "no copy has reached Secured yet".to_owned(),
    };
    store
        .alerts(
            &instance.to_string(),
            AlertCommand::Raise(AlertRaised {
                alert_id: String::new(),
                kind: AlertKind::BackupStale,
                tenant_id: tenant.clone(),
                instance_id: instance,
                cycle_id: None,
                stage: None,
                reason: None,
                detail,
                raised_at: now,
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
        &["Failed", "Secured"]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        is_cycle_event(event, "Failed") || is_cycle_event(event, "Secured")
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let store = &self.pipeline.store;
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
                };
                store.alerts(&instance, AlertCommand::Raise(raise)).await
            }
            BackupCycleEvent::Secured(secured) => {
                let resolve = AlertCommand::Resolve {
                    cycle_id: started.cycle_id,
                    at: secured.secured_at,
                };
                store.alerts(&instance, resolve).await
            }
            _ => Ok(()),
        }
    }
}
