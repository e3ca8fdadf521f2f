//! The alerts stage: a `Failed` cycle raises a "Backup Failed" alert; a copy reaching Secured
//! or Verified, and a cycle that ends without failure (`CycleClosed`), tell the instance's
//! `InstanceAlerts` aggregate how far the instance recovered, which resolves exactly the open
//! alerts that recovery answers (the table in [`restorable_domain::alert`]) — so a copy that is
//! Secured and then fails verify resolves nothing, and a PBX that never produces a good copy
//! has one alert, open, however many cycles fail. The aggregate raises a kind only once while
//! it is open, so a cycle failing again and again (or a redelivered event) raises nothing more.
//! Every command carries its event's log position: only what comes later in the log resolves
//! an alert. A restore test slower than its instance's target (`RestorePolicy::target_minutes`)
//! raises "Restore Slow"; one within the target resolves it ([`restore_timed`]). A capture's
//! reading of the PBX's own backup schedule (`Captured::native_backups`), or the native backup
//! watch's between captures (`Instance::NativeBackupsRead`, [`crate::native_watch`]), raises
//! "Native Backup Disabled / Unencrypted / Stale" for what it finds wrong and resolves the
//! kinds it finds well again ([`native_judged`]); a capture without a reading changes nothing. A rotating re-check
//! that finds a stored copy changed, gone or unlocked (`RecheckFailed`) raises "Re-check
//! Failed"; a later good re-check of that same copy resolves it ([`crate::recheck`]). Stale instances
//! are raised by the projector's sweep ([`raise_stale`]). Delivering
//! alerts to their routes is another consumer's job ([`crate::alerting`]), so a slow
//! webhook never holds up the ladder.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use restorable_domain::alert::{AlertCommand, AlertKind, AlertRaised};
use restorable_domain::cycle::{BackupCycle, BackupCycleEvent};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{Instance, InstanceEvent, RestorePolicy};
use restorable_domain::ladder::Rung;
use restorable_domain::native_backups::{NativeBackups, NATIVE_KINDS};

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
        &[
            "Captured",
            "Failed",
            "Secured",
            "Verified",
            "RestoreTested",
            "CycleClosed",
            "Rechecked",
            "RecheckFailed",
            "NativeBackupsRead",
        ]
    }

    fn wants(&self, event: &LoggedEvent) -> bool {
        [
            "Captured",
            "Failed",
            "Secured",
            "Verified",
            "RestoreTested",
            "Rechecked",
            "RecheckFailed",
        ]
        .iter()
        .any(|t| is_cycle_event(event, t))
            || (event.aggregate_type == "Instance"
                && ["CycleClosed", "NativeBackupsRead"].contains(&event.event_type.as_str()))
    }

    async fn react(&self, event: LoggedEvent) -> Result<(), StoreError> {
        let store = &self.pipeline.store;
        if event.aggregate_type == "Instance" {
            let closed = match event.decode()? {
                InstanceEvent::CycleClosed(closed) => closed,
                InstanceEvent::NativeBackupsRead(read) => {
                    let instance: Instance = store.load(&event.aggregate_id).await?;
                    let Some(enrolled) = instance.enrolled else {
                        return Ok(());
                    };
                    let reader = NativeReader {
                        tenant: &enrolled.tenant_id,
                        instance: enrolled.instance_id,
                        cycle: None,
                    };
                    let grace = self.pipeline.settings.pbx.native_backup_grace;
                    for command in native_judged(&reader, &read.native_backups, grace, &event) {
                        store.alerts(&event.aggregate_id, command).await?;
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            };
            if closed.failed {
                return Ok(());
            }
            // A cycle whose restore test proved an older copy (random selection) recovers the
            // instance as a Restore-Tested one would: a restore test passed, the cycle ended.
            let reached = if closed.restore_tested_copy.is_some() {
                Rung::RestoreTested
            } else {
                closed.reached
            };
            let resolve = AlertCommand::Resolve {
                cycle_id: closed.cycle_id,
                reached,
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
            BackupCycleEvent::Captured(captured) => {
                let Some(native) = captured.native_backups else {
                    return Ok(());
                };
                let grace = self.pipeline.settings.pbx.native_backup_grace;
                let reader = NativeReader {
                    tenant: &started.tenant_id,
                    instance: started.instance_id,
                    cycle: Some(started.cycle_id),
                };
                for command in native_judged(&reader, &native, grace, &event) {
                    store.alerts(&instance, command).await?;
                }
                Ok(())
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
            BackupCycleEvent::RestoreTested(tested) => {
                let enrolled = store.load::<Instance>(&instance).await?.enrolled;
                let policy = enrolled.map(|e| e.restore_policy).unwrap_or_default();
                let command = restore_timed(
                    &started.tenant_id,
                    started.instance_id,
                    started.cycle_id,
                    &policy,
                    tested.duration_ms,
                    &event,
                    tested.restore_tested_at,
                );
                store.alerts(&instance, command).await
            }
            BackupCycleEvent::RecheckFailed(failed) => {
                tracing::warn!(tenant = %started.tenant_id, instance = %instance, reason = %failed.reason, "Re-check Failed");
                let raise = AlertRaised {
                    alert_id: String::new(),
                    kind: AlertKind::RecheckFailed,
                    tenant_id: started.tenant_id,
                    instance_id: started.instance_id,
                    cycle_id: Some(started.cycle_id),
                    stage: None,
                    reason: Some(failed.reason),
                    detail: format!(
                        "the copy of {} failed its re-check: {}",
                        started.started_at.format("%Y-%m-%d %H:%M UTC"),
                        failed.detail
                    ),
                    raised_at: failed.failed_at,
                    position: event.position,
                };
                store.alerts(&instance, AlertCommand::Raise(raise)).await
            }
            BackupCycleEvent::Rechecked(rechecked) => {
                let resolve = AlertCommand::ResolveKind {
                    kind: AlertKind::RecheckFailed,
                    cycle_id: Some(started.cycle_id),
                    position: event.position,
                    at: rechecked.rechecked_at,
                };
                store.alerts(&instance, resolve).await
            }
            _ => Ok(()),
        }
    }
}

/// What a restore test of `cycle_id` that took `duration_ms` (told by `event`) says of the
/// instance's restore-time target: over it, raise "Restore Slow"; within it, resolve one.
fn restore_timed(
    tenant: &TenantId,
    instance: InstanceId,
    cycle_id: CycleId,
    policy: &RestorePolicy,
    duration_ms: u64,
    event: &LoggedEvent,
    at: DateTime<Utc>,
) -> AlertCommand {
    let target_ms = u64::from(policy.target_minutes) * 60_000;
    if duration_ms <= target_ms {
        return AlertCommand::ResolveKind {
            kind: AlertKind::RestoreSlow,
            cycle_id: Some(cycle_id),
            position: event.position,
            at,
        };
    }
    tracing::warn!(%tenant, %instance, duration_ms, target_minutes = policy.target_minutes, "Restore Slow");
    AlertCommand::Raise(AlertRaised {
        alert_id: String::new(),
        kind: AlertKind::RestoreSlow,
        tenant_id: tenant.clone(),
        instance_id: instance,
        cycle_id: Some(cycle_id),
        stage: Some(restorable_domain::ladder::Stage::RestoreTest),
        reason: None,
        detail: format!(
            "the restore test took {}, over the {}-minute target",
            minutes_and_seconds(duration_ms),
            policy.target_minutes
        ),
        raised_at: at,
        position: event.position,
    })
}

/// Who read the PBX's own backups: a capture of a cycle, or the native backup watch between
/// captures (`cycle: None`).
struct NativeReader<'a> {
    tenant: &'a TenantId,
    instance: InstanceId,
    cycle: Option<CycleId>,
}

/// What a reading of the PBX's own backups (told by `event`) says: for each native kind, raise
/// it if the reading finds that fault, resolve it otherwise.
fn native_judged(
    reader: &NativeReader<'_>,
    native: &NativeBackups,
    grace: chrono::Duration,
    event: &LoggedEvent,
) -> Vec<AlertCommand> {
    let findings = native.findings(grace);
    NATIVE_KINDS
        .iter()
        .map(
            |kind| match findings.iter().find(|found| found.kind == *kind) {
                Some(found) => {
                    tracing::warn!(tenant = %reader.tenant, instance = %reader.instance, kind = kind.title(), "native backups");
                    AlertCommand::Raise(AlertRaised {
                        alert_id: String::new(),
                        kind: *kind,
                        tenant_id: reader.tenant.clone(),
                        instance_id: reader.instance,
                        cycle_id: reader.cycle,
                        stage: reader
                            .cycle
                            .map(|_| restorable_domain::ladder::Stage::Capture),
                        reason: None,
                        detail: found.detail.clone(),
                        raised_at: native.read_at,
                        position: event.position,
                    })
                }
                None => AlertCommand::ResolveKind {
                    kind: *kind,
                    cycle_id: reader.cycle,
                    position: event.position,
                    at: native.read_at,
                },
            },
        )
        .collect()
}

/// `61500` → `1 min 1 s`.
fn minutes_and_seconds(ms: u64) -> String {
    let seconds = ms / 1000;
    format!("{} min {} s", seconds / 60, seconds % 60)
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
