//! The fleet view: one row per enrolled instance, answering "can we recover this customer?" at a
//! glance — how far the latest copy climbed, when each rung was last reached, and whether the
//! instance is Healthy or Needs attention (latest cycle failed, or no Secured copy within the
//! expected interval: stale) — and the newest reading of the PBX's own backup schedule.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use restorable_domain::cycle::{BackupCycleEvent, Failed};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::InstanceEvent;
use restorable_domain::ladder::Rung;
use restorable_domain::native_backups::NativeBackups;
use serde::{Deserialize, Serialize};

use crate::AnyEvent;

/// Healthy, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The latest copy did not fail and a Secured copy is recent enough.
    Healthy,
    /// The latest cycle failed, or no Secured copy within the expected interval.
    NeedsAttention,
    /// Managed backups are stopped for this instance.
    Stopped,
}

impl Status {
    /// Every status, in the order they are listed.
    pub const ALL: [Status; 3] = [Status::Healthy, Status::NeedsAttention, Status::Stopped];

    /// `healthy`, `needs_attention` or `stopped`: how query strings, CSV cells, metrics and
    /// `--json` spell it.
    pub fn code(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::NeedsAttention => "needs_attention",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Healthy => "Healthy",
            Status::NeedsAttention => "Needs attention",
            Status::Stopped => "Stopped",
        })
    }
}

/// One instance in the fleet view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetRow {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its display name.
    pub name: String,
    /// Its FQDN.
    pub fqdn: String,
    /// Whether managed backups are stopped.
    pub stopped: bool,
    /// The schedule interval in seconds (for staleness).
    pub interval_secs: i64,
    /// Cycles started so far.
    pub cycles: u64,
    /// The latest cycle.
    pub last_cycle: Option<CycleId>,
    /// When it started.
    pub last_cycle_at: Option<DateTime<Utc>>,
    /// The highest rung the latest cycle reached.
    pub last_rung: Option<Rung>,
    /// The latest cycle's failure, if it failed.
    pub last_failure: Option<Failed>,
    /// When a copy was last Secured.
    pub last_secured: Option<DateTime<Utc>>,
    /// When a copy was last Verified.
    pub last_verified: Option<DateTime<Utc>>,
    /// When a copy was last Restore-Tested.
    pub last_restore_tested: Option<DateTime<Utc>>,
    /// The newest reading of the PBX's own backup schedule (by a capture or the native backup
    /// watch); `None` until one was read (rows saved before the field existed too, until a
    /// rebuild).
    #[serde(default)]
    pub native_backups: Option<NativeBackups>,
}

impl FleetRow {
    /// The status at `now`. A Secured copy older than twice the interval (or none after the
    /// first cycle had time to finish) makes an instance stale.
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        if self.stopped {
            return Status::Stopped;
        }
        if self.last_failure.is_some() {
            return Status::NeedsAttention;
        }
        if self.last_cycle_at.is_none() || self.is_stale(now) {
            return Status::NeedsAttention; // never captured, or stale
        }
        Status::Healthy
    }
}

impl FleetRow {
    /// Keeps `native` if it was read no earlier than the reading the row has (captures and the
    /// native backup watch read independently, and events of different cycles fold in any
    /// order).
    fn keep_newest_native(&mut self, native: &NativeBackups) {
        let newer = self
            .native_backups
            .as_ref()
            .is_none_or(|seen| seen.read_at <= native.read_at);
        if newer {
            self.native_backups = Some(native.clone());
        }
    }

    /// Whether no copy reached Secured within the expected interval (twice the schedule's) —
    /// counting from the first cycle when none ever did. A stopped instance is never stale.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let stale_after = Duration::seconds(self.interval_secs) * 2;
        match (self.stopped, self.last_secured, self.last_cycle_at) {
            (true, _, _) | (false, None, None) => false,
            (false, Some(at), _) | (false, None, Some(at)) => now - at > stale_after,
        }
    }

    /// Whether copies are Secured but none reached Verified within twice the interval (or,
    /// never Verified, none in the instance's first [`VERIFY_STALE_CYCLES`] cycles): the vault
    /// fills with copies nobody proved. Never while [`Self::is_stale`] (Backup Stale says it).
    pub fn is_verify_stale(&self, now: DateTime<Utc>) -> bool {
        if self.stopped || self.last_secured.is_none() || self.is_stale(now) {
            return false;
        }
        match self.last_verified {
            Some(at) => now - at > Duration::seconds(self.interval_secs) * 2,
            None => self.cycles >= VERIFY_STALE_CYCLES,
        }
    }
}

/// Cycles after which an instance whose copies were never Verified is Verify Stale.
pub const VERIFY_STALE_CYCLES: u64 = 3;

/// The fleet view. It holds a row per instance and nothing per cycle: a cycle's events are
/// folded in with the instance they belong to (from the cycle's backups row), so the view's size
/// does not grow with history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetView {
    rows: BTreeMap<InstanceId, FleetRow>,
}

impl FleetView {
    /// A view holding saved `rows`.
    pub fn from_rows(rows: impl IntoIterator<Item = FleetRow>) -> Self {
        Self {
            rows: rows.into_iter().map(|r| (r.instance_id, r)).collect(),
        }
    }

    /// Folds one event in; `owner` is the instance of a cycle event's cycle (from its
    /// `CycleStarted`, or its backups row), `None` if unknown (the event then changes nothing).
    /// Returns the instance whose row changed, if any.
    pub fn apply(&mut self, event: &AnyEvent, owner: Option<InstanceId>) -> Option<InstanceId> {
        match event {
            AnyEvent::Instance(id, e) => self.apply_instance(id, e),
            AnyEvent::Cycle(id, e) => self.apply_cycle(owner?, id, e),
            AnyEvent::TenantKey(..) | AnyEvent::Alerts(..) | AnyEvent::Audit(..) => None,
        }
    }

    fn apply_instance(&mut self, id: &str, event: &InstanceEvent) -> Option<InstanceId> {
        match event {
            InstanceEvent::InstanceEnrolled(e) => {
                self.rows.insert(
                    e.instance_id,
                    FleetRow {
                        instance_id: e.instance_id,
                        tenant_id: e.tenant_id.clone(),
                        name: e.name.clone(),
                        fqdn: e.fqdn.clone(),
                        stopped: false,
                        interval_secs: e.schedule.interval().num_seconds(),
                        cycles: 0,
                        last_cycle: None,
                        last_cycle_at: None,
                        last_rung: None,
                        last_failure: None,
                        last_secured: None,
                        last_verified: None,
                        last_restore_tested: None,
                        native_backups: None,
                    },
                );
                Some(e.instance_id)
            }
            InstanceEvent::InstanceStopped(_)
            | InstanceEvent::InstanceResumed(_)
            | InstanceEvent::InstanceRemoved(_) => {
                let stopped = !matches!(event, InstanceEvent::InstanceResumed(_));
                let row = id.parse().ok().and_then(|id| self.rows.get_mut(&id))?;
                row.stopped = stopped;
                Some(row.instance_id)
            }
            InstanceEvent::NativeBackupsRead(e) => {
                let row = id.parse().ok().and_then(|id| self.rows.get_mut(&id))?;
                row.keep_newest_native(&e.native_backups);
                Some(row.instance_id)
            }
            InstanceEvent::EndpointChanged(_)
            | InstanceEvent::CycleOpened(_)
            | InstanceEvent::CycleClosed(_)
            | InstanceEvent::InstancePurged(_) => None,
        }
    }

    fn apply_cycle(
        &mut self,
        owner: InstanceId,
        cycle_id: &str,
        event: &BackupCycleEvent,
    ) -> Option<InstanceId> {
        let row = self.rows.get_mut(&owner)?;
        let is_latest = row.last_cycle.is_some_and(|c| c.to_string() == cycle_id);
        match event {
            BackupCycleEvent::CycleStarted(e) => {
                row.cycles += 1;
                row.last_cycle = Some(e.cycle_id);
                row.last_cycle_at = Some(e.started_at);
                row.last_rung = Some(Rung::Started);
                row.last_failure = None;
            }
            BackupCycleEvent::Captured(e) => {
                if let Some(native) = &e.native_backups {
                    row.keep_newest_native(native);
                }
                if is_latest {
                    row.last_rung = Some(Rung::Captured);
                }
            }
            BackupCycleEvent::Secured(e) => {
                row.last_secured = row.last_secured.max(Some(e.secured_at));
                if is_latest {
                    row.last_rung = Some(Rung::Secured);
                }
            }
            BackupCycleEvent::Verified(e) => {
                row.last_verified = row.last_verified.max(Some(e.verified_at));
                if is_latest {
                    row.last_rung = Some(Rung::Verified);
                }
            }
            BackupCycleEvent::RestoreTested(e) => {
                row.last_restore_tested = row.last_restore_tested.max(Some(e.restore_tested_at));
                if is_latest {
                    row.last_rung = Some(Rung::RestoreTested);
                }
            }
            BackupCycleEvent::Failed(e) if is_latest => row.last_failure = Some(e.clone()),
            BackupCycleEvent::Failed(_) => {}
            // A re-check proves an old copy again: the fleet row is about the newest cycles.
            // Retention acts on old copies too.
            BackupCycleEvent::Rechecked(_)
            | BackupCycleEvent::RecheckFailed(_)
            | BackupCycleEvent::LockExtended(_)
            | BackupCycleEvent::CopyRemoved(_) => return None,
        }
        Some(row.instance_id)
    }

    /// Rows ordered by tenant, then name.
    pub fn rows(&self) -> Vec<&FleetRow> {
        let mut rows: Vec<_> = self.rows.values().collect();
        rows.sort_by(|a, b| (&a.tenant_id, &a.name).cmp(&(&b.tenant_id, &b.name)));
        rows
    }

    /// One instance's row.
    pub fn row(&self, instance: &InstanceId) -> Option<&FleetRow> {
        self.rows.get(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use restorable_domain::cycle::examples;
    use restorable_domain::instance::{
        InstanceEnrolled, InstanceStopped, RestorePolicy, Schedule, SealedCredentials,
    };
    use restorable_domain::ladder::{FailureReason, Stage};

    fn enrolled() -> InstanceEnrolled {
        let started = examples::started();
        InstanceEnrolled {
            instance_id: started.instance_id,
            tenant_id: started.tenant_id,
            name: "hq".into(),
            fqdn: "hq.example".into(),
            api_url: "https://hq.example".into(),
            credentials: SealedCredentials("x".into()),
            schedule: Schedule::DAILY,
            restore_policy: RestorePolicy::default(),
            allow_insecure_http: false,
            enrolled_at: examples::at(),
        }
    }

    fn fold(events: &[AnyEvent]) -> FleetView {
        let mut view = FleetView::default();
        for event in events {
            view.apply(event, Some(enrolled().instance_id));
        }
        view
    }

    fn history(cycle_events: Vec<BackupCycleEvent>) -> Vec<AnyEvent> {
        let cycle = examples::started().cycle_id.to_string();
        let instance = enrolled().instance_id.to_string();
        let mut all = vec![AnyEvent::Instance(
            instance,
            InstanceEvent::InstanceEnrolled(enrolled()),
        )];
        all.extend(
            cycle_events
                .into_iter()
                .map(|e| AnyEvent::Cycle(cycle.clone(), e)),
        );
        all
    }

    #[test]
    fn a_verified_copy_is_healthy_and_shows_its_rung() {
        let view = fold(&history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Secured(examples::secured()),
            BackupCycleEvent::Verified(examples::verified()),
        ]));
        let row = view.row(&enrolled().instance_id).expect("row");
        assert_eq!(row.last_rung, Some(Rung::Verified));
        assert_eq!(row.status(examples::at()), Status::Healthy);
        assert_eq!(row.cycles, 1);
    }

    #[test]
    fn the_newest_native_reading_is_kept_whatever_order_cycles_are_folded_in() {
        use restorable_domain::native_backups::examples::healthy;
        let captured_at = |hours: i64, stale: bool| {
            let mut native = healthy(examples::at() + Duration::hours(hours));
            if stale {
                native.last_backup_at = None;
            }
            BackupCycleEvent::Captured(restorable_domain::cycle::Captured {
                native_backups: Some(native),
                ..examples::captured()
            })
        };
        let view = fold(&history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            captured_at(5, true),
            captured_at(2, false),
        ]));
        let row = view.row(&enrolled().instance_id).expect("row");
        let native = row.native_backups.as_ref().expect("a reading");
        assert_eq!(native.read_at, examples::at() + Duration::hours(5));
        assert_eq!(
            native.last_backup_at, None,
            "the older reading does not win"
        );

        let mut without = examples::captured();
        without.native_backups = None;
        let view = fold(&history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            captured_at(1, false),
            BackupCycleEvent::Captured(without),
        ]));
        let row = view.row(&enrolled().instance_id).expect("row");
        assert!(
            row.native_backups.is_some(),
            "a capture that could not read keeps the last reading"
        );
    }

    /// The native backup watch's reading between captures folds in beside the captures': the
    /// newest reading wins whichever read it.
    #[test]
    fn the_native_watch_reading_counts_beside_the_captures() {
        use restorable_domain::instance::NativeBackupsRead;
        use restorable_domain::native_backups::examples::healthy;
        let instance = enrolled().instance_id.to_string();
        let watched = |hours: i64, enabled: bool| {
            let mut native = healthy(examples::at() + Duration::hours(hours));
            native.schedule_enabled = enabled;
            AnyEvent::Instance(
                instance.clone(),
                InstanceEvent::NativeBackupsRead(NativeBackupsRead {
                    native_backups: native,
                }),
            )
        };
        let mut events = history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(restorable_domain::cycle::Captured {
                native_backups: Some(healthy(examples::at() + Duration::hours(3))),
                ..examples::captured()
            }),
        ]);
        events.push(watched(1, false));
        let view = fold(&events);
        let row = view.row(&enrolled().instance_id).expect("row");
        let native = row.native_backups.as_ref().expect("a reading");
        assert!(native.schedule_enabled, "the capture's reading is newer");

        events.push(watched(9, false));
        let mut view = FleetView::default();
        let mut changed = Vec::new();
        for event in &events {
            changed.extend(view.apply(event, Some(enrolled().instance_id)));
        }
        assert_eq!(changed.last(), Some(&enrolled().instance_id));
        let native = view
            .row(&enrolled().instance_id)
            .and_then(|r| r.native_backups.as_ref())
            .expect("a reading");
        assert!(!native.schedule_enabled, "the watch's newer reading wins");
        assert_eq!(native.read_at, examples::at() + Duration::hours(9));
    }

    #[test]
    fn a_failed_latest_cycle_needs_attention_and_names_the_reason() {
        let view = fold(&history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Failed(examples::failed(Stage::Capture, FailureReason::PbxAuth)),
        ]));
        let row = view.row(&enrolled().instance_id).expect("row");
        assert_eq!(row.last_rung, Some(Rung::Started));
        assert_eq!(
            row.last_failure.as_ref().map(|f| f.reason),
            Some(FailureReason::PbxAuth)
        );
        assert_eq!(row.status(examples::at()), Status::NeedsAttention);
    }

    #[test]
    fn no_secured_copy_within_two_intervals_is_stale() {
        let view = fold(&history(vec![
            BackupCycleEvent::CycleStarted(examples::started()),
            BackupCycleEvent::Captured(examples::captured()),
            BackupCycleEvent::Secured(examples::secured()),
        ]));
        let row = view.row(&enrolled().instance_id).expect("row");
        assert_eq!(
            row.status(examples::at() + Duration::hours(47)),
            Status::Healthy
        );
        assert_eq!(
            row.status(examples::at() + Duration::hours(49)),
            Status::NeedsAttention
        );
    }

    #[test]
    fn a_stopped_instance_says_so() {
        let mut events = history(vec![]);
        events.push(AnyEvent::Instance(
            enrolled().instance_id.to_string(),
            InstanceEvent::InstanceStopped(InstanceStopped {
                stopped_at: examples::at(),
            }),
        ));
        let view = fold(&events);
        let row = view.row(&enrolled().instance_id).expect("row");
        assert_eq!(row.status(examples::at()), Status::Stopped);
    }
}
