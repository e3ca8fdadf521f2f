//! When a route may be told of an alert: its reminder interval, its quiet hours (UTC) and the
//! kinds it takes even then ([`RouteTimes`]); a leaf the routes, the delivery and the
//! projector's sweep share.
//!
//! **Quiet hours hold, they do not drop.** A raise that falls in a route's quiet hours (by the
//! alert's raise time) is not sent then; when the quiet hours end, the projector's sweep asks
//! for a catch-up reminder of every alert so held that is still open and not taken on
//! (acknowledged or snoozed), and that reminder is what the route gets. A resolution goes to a
//! route only if the route heard of the alert (its raise was not held, or it got the catch-up),
//! so no route is told of the end of an alert it never heard of. A kind the section marks
//! urgent is never held.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveTime, Utc};
use restorable_domain::alert::AlertKind;

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
}

impl RouteTimes {
    /// Whether an alert of `kind` raised (or told of) at `at` is held from `route`.
    pub fn holds(&self, route: &str, kind: AlertKind, at: DateTime<Utc>) -> bool {
        !self.urgent_kinds.contains(&kind)
            && self.quiet_hours.get(route).is_some_and(|q| q.covers(at))
    }

    /// The routes with a reminder interval or quiet hours.
    pub fn timed_routes(&self) -> BTreeSet<&str> {
        self.remind_every_hours
            .keys()
            .chain(self.quiet_hours.keys())
            .map(String::as_str)
            .collect()
    }

    /// Whether nothing is timed.
    pub fn is_empty(&self) -> bool {
        self.remind_every_hours.is_empty() && self.quiet_hours.is_empty()
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
        assert!(times.holds("slack", AlertKind::BackupStale, at(3, 0)));
        assert!(!times.holds("slack", AlertKind::BackupFailed, at(3, 0)));
        assert!(!times.holds("email", AlertKind::BackupStale, at(3, 0)));
    }
}
