//! The alert view: every alert with its raise and resolve times. Every alert is stored (and
//! kept) in the `alerts` view's rows; memory holds the open ones (all of them: the fleet's
//! status, the stale sweep and the metrics need them) and the [`RESOLVED_HELD`] most recently
//! resolved, so a fleet's years of failure episodes do not grow a process. A resolved alert
//! never changes again, so one no longer held is read from storage as it was written.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use restorable_domain::alert::{AlertEvent, AlertKind};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::ladder::{FailureReason, Stage};
use serde::{Deserialize, Serialize};

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// `<instance id>-<number>`.
    pub alert_id: String,
    /// Backup Failed or Backup Stale.
    pub kind: AlertKind,
    /// The instance's tenant.
    pub tenant_id: TenantId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The failed cycle, if any.
    pub cycle_id: Option<CycleId>,
    /// The stage that failed, if any.
    pub stage: Option<Stage>,
    /// The reason code, if any.
    pub reason: Option<FailureReason>,
    /// A human explanation.
    pub detail: String,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
    /// When it was resolved (still open if `None`).
    pub resolved_at: Option<DateTime<Utc>>,
    /// The cycle whose Secured copy resolved it.
    pub resolved_by: Option<CycleId>,
    /// Who acknowledged it, when, and their note (the latest acknowledgement).
    #[serde(default)]
    pub acknowledged: Option<Acknowledgement>,
    /// Until when it is snoozed, by whom and why (the latest snooze).
    #[serde(default)]
    pub snoozed: Option<Snooze>,
    /// The last reminder on each route that had one.
    #[serde(default)]
    pub reminded: BTreeMap<String, DateTime<Utc>>,
}

/// An acknowledgement of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What they said.
    pub note: String,
}

/// A snooze of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snooze {
    /// Who.
    pub by: String,
    /// Until when.
    pub until: DateTime<Utc>,
    /// Why.
    pub note: String,
}

/// Where an alert stands, as the Alerts page filters it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Open, nobody has taken it on, not snoozed.
    Open,
    /// Open and acknowledged.
    Acknowledged,
    /// Open, not acknowledged, snoozed until a time still ahead.
    Snoozed,
    /// Resolved.
    Resolved,
}

impl AlertRow {
    /// Whether `route`, reminding every `every_hours`, owes this alert a reminder at `now`:
    /// open, neither acknowledged nor snoozed past `now`, and that long since the raise or the
    /// route's last reminder. (The aggregate decides again: this only spares it the asking.)
    pub fn reminder_due(&self, route: &str, every_hours: u32, now: DateTime<Utc>) -> bool {
        let last = self.reminded.get(route).copied().unwrap_or(self.raised_at);
        self.state(now) == AlertState::Open
            && every_hours > 0
            && now - last >= chrono::Duration::hours(i64::from(every_hours))
    }

    /// Where the alert stands at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> AlertState {
        if self.resolved_at.is_some() {
            AlertState::Resolved
        } else if self.acknowledged.is_some() {
            AlertState::Acknowledged
        } else if self.snoozed.as_ref().is_some_and(|s| s.until > now) {
            AlertState::Snoozed
        } else {
            AlertState::Open
        }
    }
}

/// Resolved alerts held in memory at most, after [`AlertView::forget_resolved_beyond`]: the
/// latest by resolution time (ties by id): a bound, whatever the years of history.
pub const RESOLVED_HELD: usize = 20_000;

/// The alert view, keyed by alert id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertView {
    rows: BTreeMap<String, AlertRow>,
    resolved: usize,
}

impl AlertView {
    /// A view holding `rows` (as saved).
    pub fn from_rows(rows: impl IntoIterator<Item = AlertRow>) -> Self {
        let rows: BTreeMap<String, AlertRow> =
            rows.into_iter().map(|r| (r.alert_id.clone(), r)).collect();
        let resolved = rows.values().filter(|r| r.resolved_at.is_some()).count();
        Self { rows, resolved }
    }

    /// Drops the resolved alerts beyond the `held` latest (by resolution time, then id). Which
    /// are kept does not depend on when this is called: always the latest `held` of every
    /// resolved alert seen, so a live view, a rebuilt one and one reloaded from storage hold
    /// the same rows. Call it only once the dropped rows are stored.
    pub fn forget_resolved_beyond(&mut self, held: usize) {
        if self.resolved <= held {
            return;
        }
        let mut resolved: Vec<(DateTime<Utc>, &String)> = self
            .rows
            .values()
            .filter_map(|r| r.resolved_at.map(|at| (at, &r.alert_id)))
            .collect();
        let excess = resolved.len() - held;
        resolved.select_nth_unstable(excess - 1);
        let forget: Vec<String> = resolved[..excess]
            .iter()
            .map(|(_, id)| (*id).clone())
            .collect();
        for id in forget {
            self.rows.remove(&id);
        }
        self.resolved = held;
    }

    /// Every open alert (all are held), in no particular order.
    pub fn open(&self) -> impl Iterator<Item = &AlertRow> {
        self.rows.values().filter(|r| r.resolved_at.is_none())
    }

    /// Whether the view holds `alert_id`.
    pub fn holds(&self, alert_id: &str) -> bool {
        self.rows.contains_key(alert_id)
    }

    /// Folds one alert event in; returns the alert whose row changed.
    pub fn apply(&mut self, event: &AlertEvent) -> Option<String> {
        match event {
            AlertEvent::AlertRaised(e) => {
                self.rows.insert(
                    e.alert_id.clone(),
                    AlertRow {
                        alert_id: e.alert_id.clone(),
                        kind: e.kind,
                        tenant_id: e.tenant_id.clone(),
                        instance_id: e.instance_id,
                        cycle_id: e.cycle_id,
                        stage: e.stage,
                        reason: e.reason,
                        detail: e.detail.clone(),
                        raised_at: e.raised_at,
                        resolved_at: None,
                        resolved_by: None,
                        acknowledged: None,
                        snoozed: None,
                        reminded: BTreeMap::new(),
                    },
                );
                Some(e.alert_id.clone())
            }
            AlertEvent::AlertResolved(e) => {
                let row = self.rows.get_mut(&e.alert_id)?;
                if row.resolved_at.is_none() {
                    self.resolved += 1;
                }
                row.resolved_at = Some(e.resolved_at);
                row.resolved_by = e.resolved_by;
                Some(e.alert_id.clone())
            }
            AlertEvent::AlertAcknowledged(e) => {
                let row = self.rows.get_mut(&e.alert_id)?;
                row.acknowledged = Some(Acknowledgement {
                    by: e.by.clone(),
                    at: e.at,
                    note: e.note.clone(),
                });
                Some(e.alert_id.clone())
            }
            AlertEvent::AlertReminded(e) => {
                let row = self.rows.get_mut(&e.alert_id)?;
                row.reminded.insert(e.route.clone(), e.at);
                Some(e.alert_id.clone())
            }
            AlertEvent::AlertSnoozed(e) => {
                let row = self.rows.get_mut(&e.alert_id)?;
                row.snoozed = Some(Snooze {
                    by: e.by.clone(),
                    until: e.until,
                    note: e.note.clone(),
                });
                Some(e.alert_id.clone())
            }
        }
    }

    /// One alert.
    pub fn row(&self, alert_id: &str) -> Option<&AlertRow> {
        self.rows.get(alert_id)
    }

    /// Every alert held (see the module documentation), newest first.
    pub fn rows(&self) -> Vec<&AlertRow> {
        let mut rows: Vec<_> = self.rows.values().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.raised_at));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use restorable_domain::alert::{AlertRaised, AlertResolved};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + minute * 60, 0)
            .single()
            .expect("a time")
    }

    /// 60 alerts raised; all but every seventh resolved, with resolution times out of log
    /// order (skewed workers' clocks) and some equal (ties broken by id).
    fn history() -> Vec<AlertEvent> {
        let instance = InstanceId::random();
        let tenant = TenantId::new("acme").expect("slug");
        let mut events = Vec::new();
        for n in 0..60_i64 {
            let alert_id = format!("{instance}-{n}");
            events.push(AlertEvent::AlertRaised(AlertRaised {
                alert_id: alert_id.clone(),
                kind: AlertKind::BackupFailed,
                tenant_id: tenant.clone(),
                instance_id: instance,
                cycle_id: None,
                stage: None,
                reason: None,
                detail: String::new(),
                raised_at: at(n),
                position: n,
            }));
            if n % 7 != 0 {
                events.push(AlertEvent::AlertResolved(AlertResolved {
                    alert_id,
                    kind: AlertKind::BackupFailed,
                    resolved_by: Some(CycleId::random()),
                    resolved_at: at((n * 37) % 23),
                }));
            }
        }
        events
    }

    #[test]
    fn the_same_resolved_alerts_are_held_whenever_the_rest_are_forgotten() {
        let held = 10;
        let events = history();
        let mut once = AlertView::default();
        for event in &events {
            once.apply(event);
        }
        let all = once.clone();
        once.forget_resolved_beyond(held);
        for every in [1, 3, 17] {
            let mut often = AlertView::default();
            for (n, event) in events.iter().enumerate() {
                often.apply(event);
                if n % every == 0 {
                    often.forget_resolved_beyond(held);
                }
            }
            often.forget_resolved_beyond(held);
            assert_eq!(often, once, "forgetting every {every} events");
        }
        let reloaded = AlertView::from_rows(all.rows().into_iter().cloned());
        let mut reloaded = reloaded;
        reloaded.forget_resolved_beyond(held);
        assert_eq!(reloaded, once, "reloaded from every stored row");

        // Every open alert is held; of the resolved, the latest by (time, id).
        let open = all
            .rows()
            .iter()
            .filter(|r| r.resolved_at.is_none())
            .count();
        assert_eq!(open, 9);
        assert_eq!(once.rows().len(), open + held);
        let mut resolved: Vec<(DateTime<Utc>, String)> = all
            .rows()
            .iter()
            .filter_map(|r| r.resolved_at.map(|t| (t, r.alert_id.clone())))
            .collect();
        resolved.sort();
        for (n, (_, id)) in resolved.iter().enumerate() {
            assert_eq!(once.holds(id), n >= resolved.len() - held, "{id}");
        }
    }
}
