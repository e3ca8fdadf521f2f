//! The PBX's own (native) backup schedule, as read at capture time, and what it says: the other
//! half of the product — Restorable reads that schedule, never changes it, and alerts when the
//! PBX's own backups are disabled, unencrypted or stale.
//!
//! | finding | when | alert kind |
//! |---|---|---|
//! | disabled | `ScheduleEnabled` is false | Native Backup Disabled |
//! | unencrypted | the schedule's `Contents.EncryptBackup` is false | Native Backup Unencrypted |
//! | stale | the schedule is on, and its newest backup is older than one period of the schedule plus the grace (default 48 h) — or there is none | Native Backup Stale |
//!
//! A disabled schedule is not also judged stale (one cause, one alert). The judgement is made
//! at the time the status was read ([`NativeBackups::read_at`]), so replaying the history gives
//! the same findings whatever the clock says.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::alert::AlertKind;

/// How often the PBX's own schedule makes a backup (`Schedule.ScheduleType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NativeScheduleType {
    /// Every `RepeatHours` hours (1 to 24; 1 when the PBX gives none or nonsense).
    Hourly {
        /// The period in hours.
        repeat_hours: u32,
    },
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
    /// Once a month.
    Monthly,
    /// A type this release does not know (or `Immediate`, a one-off): judged as weekly.
    Other,
}

impl NativeScheduleType {
    /// `ScheduleType` and `RepeatHours` as the PBX gave them (it is not trusted: any value).
    pub fn from_pbx(schedule_type: &str, repeat_hours: Option<i64>) -> Self {
        match schedule_type {
            "Hourly" => NativeScheduleType::Hourly {
                repeat_hours: repeat_hours
                    .and_then(|h| u32::try_from(h).ok())
                    .filter(|h| (1..=24).contains(h))
                    .unwrap_or(1),
            },
            "Daily" => NativeScheduleType::Daily,
            "Weekly" => NativeScheduleType::Weekly,
            "Monthly" => NativeScheduleType::Monthly,
            _ => NativeScheduleType::Other,
        }
    }

    /// The time between two backups of this schedule (a month counts 31 days).
    pub fn period(self) -> Duration {
        match self {
            NativeScheduleType::Hourly { repeat_hours } => Duration::hours(i64::from(repeat_hours)),
            NativeScheduleType::Daily => Duration::days(1),
            NativeScheduleType::Weekly | NativeScheduleType::Other => Duration::days(7),
            NativeScheduleType::Monthly => Duration::days(31),
        }
    }

    /// How people read it: `daily`, `every 6 h`, ...
    pub fn describe(self) -> String {
        match self {
            NativeScheduleType::Hourly { repeat_hours } => format!("every {repeat_hours} h"),
            NativeScheduleType::Daily => "daily".to_owned(),
            NativeScheduleType::Weekly => "weekly".to_owned(),
            NativeScheduleType::Monthly => "monthly".to_owned(),
            NativeScheduleType::Other => "unknown schedule (judged weekly)".to_owned(),
        }
    }
}

/// What the PBX said of its own backups (`GET /xapi/v1/BackupSettings` and `GET Backups`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NativeBackups {
    /// `ScheduleEnabled`.
    pub schedule_enabled: bool,
    /// The schedule's `Contents.EncryptBackup`.
    pub encrypted: bool,
    /// The schedule's period.
    pub schedule: NativeScheduleType,
    /// The newest backup on the PBX that Restorable did not ask for (`None`: there is none).
    pub last_backup_at: Option<DateTime<Utc>>,
    /// Native backups on the PBX's disk.
    pub backups_on_disk: u32,
    /// When it was read.
    pub read_at: DateTime<Utc>,
}

/// One thing wrong with the native backups: its alert kind and the words for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeFinding {
    /// The alert it raises.
    pub kind: AlertKind,
    /// What is wrong, for people (no secrets: the PBX's schedule only).
    pub detail: String,
}

/// The alert kinds the native backup watch raises (and resolves when all is well again).
pub const NATIVE_KINDS: [AlertKind; 3] = [
    AlertKind::NativeBackupDisabled,
    AlertKind::NativeBackupUnencrypted,
    AlertKind::NativeBackupStale,
];

impl NativeBackups {
    /// Whether the newest native backup is older than one period plus `grace` at
    /// [`Self::read_at`] (or missing). Says nothing of a disabled schedule.
    pub fn is_stale(&self, grace: Duration) -> bool {
        match self.last_backup_at {
            Some(at) => self.read_at - at > self.schedule.period() + grace,
            None => true,
        }
    }

    /// What is wrong, judged at [`Self::read_at`] with `grace` on top of the schedule's
    /// period; empty when the native backups are healthy.
    pub fn findings(&self, grace: Duration) -> Vec<NativeFinding> {
        let mut found = Vec::new();
        if !self.schedule_enabled {
            found.push(NativeFinding {
                kind: AlertKind::NativeBackupDisabled,
                detail: "the PBX's own backup schedule is turned off".to_owned(),
            });
        }
        if !self.encrypted {
            found.push(NativeFinding {
                kind: AlertKind::NativeBackupUnencrypted,
                detail: "the PBX's own scheduled backups are not encrypted".to_owned(),
            });
        }
        if self.schedule_enabled && self.is_stale(grace) {
            let detail = match self.last_backup_at {
                Some(at) => format!(
                    "the PBX's own {} backup last ran {}, more than {} h ago",
                    self.schedule.describe(),
                    at.format("%Y-%m-%d %H:%M UTC"),
                    (self.schedule.period() + grace).num_hours()
                ),
                None => format!(
                    "the PBX's own {} backup schedule has no backup on its disk",
                    self.schedule.describe()
                ),
            };
            found.push(NativeFinding {
                kind: AlertKind::NativeBackupStale,
                detail,
            });
        }
        found
    }
}

/// Example payloads for tests of this crate and others.
pub mod examples {
    use super::*;

    /// A healthy daily schedule whose last backup ran 6 hours before `read_at`.
    pub fn healthy(read_at: DateTime<Utc>) -> NativeBackups {
        NativeBackups {
            schedule_enabled: true,
            encrypted: true,
            schedule: NativeScheduleType::Daily,
            last_backup_at: Some(read_at - Duration::hours(6)),
            backups_on_disk: 3,
            read_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::examples::healthy;
    use super::*;
    use crate::cycle::examples::at;

    fn kinds(native: &NativeBackups) -> Vec<AlertKind> {
        native
            .findings(Duration::hours(48))
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn a_healthy_schedule_finds_nothing() {
        assert_eq!(kinds(&healthy(at())), vec![]);
    }

    #[test]
    fn stale_is_one_period_plus_the_grace_exactly() {
        let mut native = healthy(at());
        native.last_backup_at = Some(at() - Duration::hours(72));
        assert_eq!(kinds(&native), vec![], "exactly a day and 48 h: not yet");
        native.last_backup_at = Some(at() - Duration::hours(72) - Duration::seconds(1));
        assert_eq!(kinds(&native), vec![AlertKind::NativeBackupStale]);
        let detail = &native.findings(Duration::hours(48))[0].detail;
        assert!(
            detail.contains("daily") && detail.contains("72 h"),
            "{detail}"
        );

        native.schedule = NativeScheduleType::Weekly;
        assert_eq!(kinds(&native), vec![], "a weekly schedule has 7 days");
        native.last_backup_at = None;
        assert_eq!(kinds(&native), vec![AlertKind::NativeBackupStale]);
    }

    #[test]
    fn disabled_is_not_also_stale_but_unencrypted_is_its_own() {
        let mut native = healthy(at());
        native.schedule_enabled = false;
        native.last_backup_at = None;
        assert_eq!(kinds(&native), vec![AlertKind::NativeBackupDisabled]);
        native.encrypted = false;
        assert_eq!(
            kinds(&native),
            vec![
                AlertKind::NativeBackupDisabled,
                AlertKind::NativeBackupUnencrypted
            ]
        );
    }

    #[test]
    fn the_pbx_schedule_is_read_without_trusting_it() {
        assert_eq!(
            NativeScheduleType::from_pbx("Hourly", Some(6)).period(),
            Duration::hours(6)
        );
        for nonsense in [None, Some(0), Some(-5), Some(25), Some(i64::MAX)] {
            assert_eq!(
                NativeScheduleType::from_pbx("Hourly", nonsense),
                NativeScheduleType::Hourly { repeat_hours: 1 }
            );
        }
        assert_eq!(
            NativeScheduleType::from_pbx("Monthly", None).period(),
            Duration::days(31)
        );
        for other in ["Immediate", "", "daily", "\u{202e}Daily"] {
            assert_eq!(
                NativeScheduleType::from_pbx(other, None),
                NativeScheduleType::Other
            );
        }
    }
}
