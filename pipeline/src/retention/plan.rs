//! What retention does with one instance's stored copies at a given moment: a pure function of
//! the copies, the tenant's policy, the instance's standing and the clock ([`decide`]), so every
//! rule is tested without a vault.
//!
//! A copy whose Object Lock has not run out is left alone (the vault would refuse anything
//! else). One whose lock has run out is
//! - **kept**, its lock extended, when it is the instance's newest Verified copy or its newest
//!   Restore-Tested one (never removed while the instance is live: the last proof of a recovery
//!   point is never thrown away), or when the grandfather-father-son rule keeps it: the newest
//!   good copy of each of the last `daily` days, `weekly` ISO weeks and `monthly` months (UTC
//!   calendar), each kept until its day, week or month falls out of that count;
//! - **removed** otherwise.
//!
//! An offboarded instance ([`Standing::Removed`]) keeps these rules until its purge date, and no
//! lock is extended past that date; from it ([`Standing::PurgeDue`]) every copy is removed as
//! soon as its lock has run out, the newest good one too.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use restorable_domain::cycle::{KeptBecause, RemovedBecause};

use super::policy::Gfs;
use crate::stages::capture::whole_second_after;

/// One stored copy as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCopy {
    /// Its cycle.
    pub cycle_id: String,
    /// When it was captured.
    pub made_at: DateTime<Utc>,
    /// Its Object Lock's retain-until.
    pub retain_until: DateTime<Utc>,
    /// Verified (or Restore-Tested) and its cycle did not fail.
    pub verified: bool,
    /// Restore-Tested and its cycle did not fail.
    pub restore_tested: bool,
}

/// Where the instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Enrolled, running or stopped.
    Live,
    /// Offboarded; its copies go from `purge_after` on.
    Removed {
        /// The purge date.
        purge_after: DateTime<Utc>,
    },
    /// Offboarded and past its purge date.
    PurgeDue,
}

/// The rules of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// How long a kept newest good copy's lock is extended each time (the tenant's retention).
    pub keep_for: Duration,
    /// The grandfather-father-son rule, if the tenant has one.
    pub gfs: Option<Gfs>,
    /// The instance's standing.
    pub standing: Standing,
}

/// What to do with one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its lock has not run out: nothing to do.
    Locked,
    /// Keep it: extend its lock to `until`.
    Extend {
        /// The new retain-until (a whole second, after `now`).
        until: DateTime<Utc>,
        /// Why.
        because: KeptBecause,
    },
    /// Remove it from the vault.
    Remove(RemovedBecause),
}

/// The decision for each of `copies` at `now`, in the same order.
pub fn decide(copies: &[StoredCopy], rules: &Rules, now: DateTime<Utc>) -> Vec<Decision> {
    let newest = |pick: fn(&StoredCopy) -> bool| {
        copies
            .iter()
            .filter(|c| pick(c))
            .max_by(|a, b| (a.made_at, &a.cycle_id).cmp(&(b.made_at, &b.cycle_id)))
            .map(|c| c.cycle_id.as_str())
    };
    let newest_verified = newest(|c| c.verified);
    let newest_tested = newest(|c| c.restore_tested);
    let gfs = rules.gfs.map(|gfs| gfs_keep_until(copies, gfs));
    copies
        .iter()
        .enumerate()
        .map(|(i, copy)| {
            if copy.retain_until > now {
                return Decision::Locked;
            }
            let cap = match rules.standing {
                Standing::PurgeDue => return Decision::Remove(RemovedBecause::Offboarded),
                Standing::Removed { purge_after } => Some(purge_after),
                Standing::Live => None,
            };
            let newest_good =
                [newest_verified, newest_tested].contains(&Some(copy.cycle_id.as_str()));
            let by_gfs = gfs
                .as_ref()
                .and_then(|keep| keep[i])
                .filter(|until| *until > now)
                .map(|until| (until, KeptBecause::Gfs));
            let by_newest = newest_good.then(|| (now + rules.keep_for, KeptBecause::NewestGood));
            // The rule that keeps it longest.
            let kept = by_gfs.max(by_newest);
            match kept.map(|(until, because)| (cap.map_or(until, |cap| until.min(cap)), because)) {
                Some((until, because)) if until > now => Decision::Extend {
                    until: whole_second_after(until),
                    because,
                },
                _ => Decision::Remove(RemovedBecause::Expired),
            }
        })
        .collect()
}

/// A calendar period of the grandfather-father-son rule.
#[derive(Clone, Copy)]
enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// The first day of the period `date` is in (weeks start on Monday).
    fn start(self, date: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => date,
            Period::Week => date - Duration::days(date.weekday().num_days_from_monday().into()),
            Period::Month => date.with_day(1).unwrap_or(date),
        }
    }

    /// `count` periods after `start`.
    fn after(self, start: NaiveDate, count: u32) -> Option<NaiveDate> {
        match self {
            Period::Day => start.checked_add_days(chrono::Days::new(count.into())),
            Period::Week => start.checked_add_days(chrono::Days::new(u64::from(count) * 7)),
            Period::Month => start.checked_add_months(Months::new(count)),
        }
    }
}

/// For each copy, until when the grandfather-father-son rule keeps it (`None`: it does not).
fn gfs_keep_until(copies: &[StoredCopy], gfs: Gfs) -> Vec<Option<DateTime<Utc>>> {
    let mut keep = vec![None; copies.len()];
    let rules = [
        (gfs.daily, Period::Day),
        (gfs.weekly, Period::Week),
        (gfs.monthly, Period::Month),
    ];
    for (count, period) in rules {
        if count == 0 {
            continue;
        }
        // The newest verified copy of each bucket.
        let mut keepers: std::collections::HashMap<NaiveDate, usize> = Default::default();
        for (i, copy) in copies.iter().enumerate().filter(|(_, c)| c.verified) {
            let bucket = period.start(copy.made_at.date_naive());
            let entry = keepers.entry(bucket).or_insert(i);
            let held = &copies[*entry];
            if (copy.made_at, &copy.cycle_id) > (held.made_at, &held.cycle_id) {
                *entry = i;
            }
        }
        for (bucket, i) in keepers {
            let Some(end) = period.after(bucket, count) else {
                continue;
            };
            let until = end.and_time(chrono::NaiveTime::MIN).and_utc();
            keep[i] = keep[i].max(Some(until));
        }
    }
    keep
}

#[cfg(test)]
mod tests;
