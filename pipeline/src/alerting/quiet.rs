//! When a route may be told of an alert: its reminder interval, its quiet hours (UTC), the
//! kinds it takes even then, and the tenant's maintenance windows ([`RouteTimes`]); a leaf the
//! routes, the delivery and the projector's sweep share.
//!
//! **Maintenance windows** (one-off or weekly, for one instance or the whole tenant) hold every
//! configured route (not NATS, whose subscribers are machines), urgent kinds too: a planned
//! migration pages nobody. The history still records every failure and alert. What is still
//! open and not taken on when the window ends is caught up as below.
//!
//! **Quiet hours hold, they do not drop.** A raise that falls in a route's quiet hours (by the
//! alert's raise time) is not sent then; when the quiet hours end, the projector's sweep asks
//! for a catch-up reminder of every alert so held that is still open and not taken on
//! (acknowledged or snoozed), and that reminder is what the route gets. A resolution goes to a
//! route only if the route heard of the alert (its raise was not held, or it got the catch-up),
//! so no route is told of the end of an alert it never heard of. A kind the section marks
//! urgent is never held.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use restorable_domain::alert::AlertKind;
use restorable_domain::ids::InstanceId;

/// A daily span of quiet (UTC), `from` included, `to` excluded; it may cross midnight
/// (`22:00-07:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// When the quiet starts.
    pub from: NaiveTime,
    /// When it ends.
    pub to: NaiveTime,
}

impl QuietHours {
    /// Reads `HH:MM-HH:MM` (UTC).
    ///
    /// # Errors
    /// Another shape, a time that is not one, or an empty span (`from` = `to`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (from, to) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: expected HH:MM-HH:MM (UTC)"))?;
        let time = |part: &str| {
            NaiveTime::parse_from_str(part.trim(), "%H:%M")
                .map_err(|_| format!("{text:?}: {:?} is not a time HH:MM", part.trim()))
        };
        let (from, to) = (time(from)?, time(to)?);
        if from == to {
            return Err(format!(
                "{text:?}: the quiet hours start and end at the same time"
            ));
        }
        Ok(Self { from, to })
    }

    /// Whether `at` falls in the quiet hours.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        let time = at.time();
        if self.from < self.to {
            self.from <= time && time < self.to
        } else {
            time >= self.from || time < self.to
        }
    }

    /// When the quiet hours that `at` falls in end (`None` if `at` is not quiet).
    pub fn end_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.covers(at) {
            return None;
        }
        let today = at.date_naive().and_time(self.to).and_utc();
        Some(if today > at {
            today
        } else {
            today + Duration::days(1)
        })
    }
}

/// When a maintenance window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowTime {
    /// Once, from `start` (included) to `end` (excluded).
    Once {
        /// Its start.
        start: DateTime<Utc>,
        /// Its end.
        end: DateTime<Utc>,
    },
    /// Every week, on `day` at `at` (UTC), for `hours`.
    Weekly {
        /// The day.
        day: Weekday,
        /// The time it starts.
        at: NaiveTime,
        /// How long it lasts (1 to 168 hours).
        hours: u32,
    },
}

impl WindowTime {
    /// Whether `moment` falls in the window.
    pub fn covers(&self, moment: DateTime<Utc>) -> bool {
        match *self {
            WindowTime::Once { start, end } => start <= moment && moment < end,
            WindowTime::Weekly { day, at, hours } => (0..=7)
                .map(|back| moment.date_naive() - Duration::days(back))
                .filter(|date| date.weekday() == day)
                .map(|date| date.and_time(at).and_utc())
                .find(|start| *start <= moment)
                .is_some_and(|start| moment < start + Duration::hours(i64::from(hours))),
        }
    }

    /// Reads a weekly window's start, `sun 02:00` (UTC).
    ///
    /// # Errors
    /// Another shape.
    pub fn weekly(text: &str, hours: u32) -> Result<Self, String> {
        let (day, at) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{text:?}: expected a day and a time, e.g. \"sun 02:00\""))?;
        let day: Weekday = day
            .parse()
            .map_err(|_| format!("{text:?}: {day:?} is not a day of the week"))?;
        let at = NaiveTime::parse_from_str(at.trim(), "%H:%M")
            .map_err(|_| format!("{text:?}: {at:?} is not a time HH:MM"))?;
        if !(1..=168).contains(&hours) {
            return Err(format!("hours = {hours}: expected 1 to 168"));
        }
        Ok(WindowTime::Weekly { day, at, hours })
    }
}

impl std::fmt::Display for WindowTime {
    /// `2026-12-01 22:00 UTC to 2026-12-02 02:00 UTC`, or `every Sun 02:00 UTC for 3 h`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowTime::Once { start, end } => write!(
                f,
                "{} to {}",
                start.format("%Y-%m-%d %H:%M UTC"),
                end.format("%Y-%m-%d %H:%M UTC")
            ),
            WindowTime::Weekly { day, at, hours } => {
                write!(f, "every {day} {} UTC for {hours} h", at.format("%H:%M"))
            }
        }
    }
}

impl std::fmt::Display for QuietHours {
    /// `22:00-07:00 UTC`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{} UTC",
            self.from.format("%H:%M"),
            self.to.format("%H:%M")
        )
    }
}

/// A span during which an instance's (or, without one, every instance of the tenant's)
/// failures are recorded but not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Only this instance (`None`: the whole tenant).
    pub instance: Option<InstanceId>,
    /// When.
    pub when: WindowTime,
    /// Why (shown on the instance page).
    pub reason: String,
}

impl MaintenanceWindow {
    /// Whether it holds `instance`'s alerts at `at`.
    pub fn covers(&self, instance: InstanceId, at: DateTime<Utc>) -> bool {
        self.instance.is_none_or(|only| only == instance) && self.when.covers(at)
    }
}

/// One tenant's (or the operator's) timing of its routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTimes {
    /// Reminders: an alert left open and not taken on is sent again on the route every so
    /// many hours.
    pub remind_every_hours: BTreeMap<String, u32>,
    /// Quiet hours per route.
    pub quiet_hours: BTreeMap<String, QuietHours>,
    /// Kinds never held by quiet hours.
    pub urgent_kinds: Vec<AlertKind>,
    /// Maintenance windows.
    pub windows: Vec<MaintenanceWindow>,
    /// The section's configured routes (a window holds them all).
    pub routes: Vec<String>,
}

impl RouteTimes {
    /// Whether an alert of `kind` on `instance` raised (or told of) at `at` is held from
    /// `route`: a maintenance window of the instance (any configured route, any kind), or the
    /// route's quiet hours (unless the kind is urgent).
    pub fn holds(
        &self,
        route: &str,
        kind: AlertKind,
        instance: InstanceId,
        at: DateTime<Utc>,
    ) -> bool {
        let in_window = self.routes.iter().any(|r| r == route)
            && self.windows.iter().any(|w| w.covers(instance, at));
        in_window
            || (!self.urgent_kinds.contains(&kind)
                && self.quiet_hours.get(route).is_some_and(|q| q.covers(at)))
    }

    /// The routes the sweep looks at: those with a reminder interval or quiet hours, and every
    /// configured route when there are maintenance windows.
    pub fn timed_routes(&self) -> BTreeSet<&str> {
        let windowed = self.routes.iter().filter(|_| !self.windows.is_empty());
        self.remind_every_hours
            .keys()
            .chain(self.quiet_hours.keys())
            .chain(windowed)
            .map(String::as_str)
            .collect()
    }

    /// Whether nothing is timed.
    pub fn is_empty(&self) -> bool {
        self.remind_every_hours.is_empty() && self.quiet_hours.is_empty() && self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, hour, minute, 0)
            .single()
            .expect("a time")
    }

    #[test]
    fn quiet_hours_cover_their_span_across_midnight_and_end_on_time() {
        let night = QuietHours::parse("22:00-07:00").expect("parses");
        for (h, m, quiet) in [
            (21, 59, false),
            (22, 0, true),
            (23, 30, true),
            (0, 0, true),
            (6, 59, true),
            (7, 0, false),
            (12, 0, false),
        ] {
            assert_eq!(night.covers(at(h, m)), quiet, "{h}:{m}");
        }
        assert_eq!(
            night.end_after(at(23, 0)),
            Some(at(7, 0) + Duration::days(1))
        );
        assert_eq!(night.end_after(at(3, 0)), Some(at(7, 0)));
        assert_eq!(night.end_after(at(12, 0)), None);
        let lunch = QuietHours::parse(" 12:00 - 13:30 ").expect("parses");
        assert!(lunch.covers(at(13, 29)) && !lunch.covers(at(13, 30)) && !lunch.covers(at(11, 59)));
        assert_eq!(lunch.end_after(at(12, 0)), Some(at(13, 30)));
        for bad in ["22:00", "25:00-07:00", "22:00-07", "07:00-07:00", "x-y", ""] {
            assert!(QuietHours::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_urgent_kind_is_never_held() {
        let times = RouteTimes {
            quiet_hours: BTreeMap::from([(
                "slack".to_owned(),
                QuietHours::parse("00:00-23:59").expect("parses"),
            )]),
            urgent_kinds: vec![AlertKind::BackupFailed],
            ..RouteTimes::default()
        };
        let instance = InstanceId::random();
        assert!(times.holds("slack", AlertKind::BackupStale, instance, at(3, 0)));
        assert!(!times.holds("slack", AlertKind::BackupFailed, instance, at(3, 0)));
        assert!(!times.holds("email", AlertKind::BackupStale, instance, at(3, 0)));
    }

    #[test]
    fn a_maintenance_window_holds_its_instances_routes_whatever_the_kind() {
        let (one, other) = (InstanceId::random(), InstanceId::random());
        // 2026-11-28 is a Saturday.
        let weekly = WindowTime::weekly("sat 22:00", 4).expect("parses");
        for (day, h, m, inside) in [
            (28, 21, 59, false),
            (28, 22, 0, true),
            (29, 1, 59, true),
            (29, 2, 0, false),
            (21, 23, 0, true),
            (27, 23, 0, false),
        ] {
            let moment = Utc
                .with_ymd_and_hms(2026, 11, day, h, m, 0)
                .single()
                .expect("time");
            assert_eq!(weekly.covers(moment), inside, "{day} {h}:{m}");
        }
        let times = RouteTimes {
            urgent_kinds: vec![AlertKind::BackupFailed],
            windows: vec![MaintenanceWindow {
                instance: Some(one),
                when: WindowTime::Once {
                    start: at(2, 0),
                    end: at(4, 0),
                },
                reason: "migration".into(),
            }],
            routes: vec!["slack".into(), "email".into()],
            ..RouteTimes::default()
        };
        assert!(
            times.holds("slack", AlertKind::BackupFailed, one, at(3, 0)),
            "urgent too"
        );
        assert!(times.holds("email", AlertKind::BackupStale, one, at(2, 0)));
        assert!(
            !times.holds("slack", AlertKind::BackupFailed, one, at(4, 0)),
            "ended"
        );
        assert!(
            !times.holds("slack", AlertKind::BackupFailed, other, at(3, 0)),
            "another instance"
        );
        assert!(
            !times.holds("nats", AlertKind::BackupFailed, one, at(3, 0)),
            "not NATS"
        );
        assert_eq!(
            times.timed_routes().into_iter().collect::<Vec<_>>(),
            vec!["email", "slack"]
        );
        for bad in [
            ("sat", 4),
            ("someday 22:00", 4),
            ("sat 25:00", 4),
            ("sat 22:00", 0),
            ("sat 22:00", 169),
        ] {
            assert!(WindowTime::weekly(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }
}
