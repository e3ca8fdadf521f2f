//! The retention rules, copy by copy, with a fixed clock.

use super::*;
use chrono::TimeZone;

fn day(n: i64) -> DateTime<Utc> {
    // 2026-01-01 is a Thursday.
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::days(n)
}

/// A verified copy made on day `n`, locked for 30 days.
fn copy(n: i64) -> StoredCopy {
    StoredCopy {
        cycle_id: format!("c{n:04}"),
        made_at: day(n),
        retain_until: day(n + 30),
        verified: true,
        restore_tested: false,
    }
}

fn live(gfs: Option<Gfs>) -> Rules {
    Rules {
        keep_for: Duration::days(30),
        gfs,
        standing: Standing::Live,
    }
}

fn removed(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| matches!(d, Decision::Remove(_)))
        .count()
}

#[test]
fn a_copy_is_left_alone_while_locked_and_removed_once_its_lock_has_run_out() {
    let copies = vec![copy(0), copy(10), copy(20)];
    let at_day_35 = decide(&copies, &live(None), day(35));
    assert_eq!(
        at_day_35,
        vec![
            Decision::Remove(RemovedBecause::Expired),
            Decision::Locked,
            Decision::Locked
        ]
    );
    // The lock's last instant is still locked; the next is not.
    let exactly = decide(
        &copies[..1],
        &live(None),
        day(30) - Duration::milliseconds(1),
    );
    assert_eq!(exactly, vec![Decision::Locked]);
}

#[test]
fn the_newest_verified_and_the_newest_restore_tested_copies_are_never_removed() {
    let mut copies: Vec<StoredCopy> = (0..10).map(copy).collect();
    copies[3].restore_tested = true;
    // A newer copy that failed or never got past Secured does not displace the newest good one.
    copies.push(StoredCopy {
        verified: false,
        ..copy(12)
    });
    let now = day(100);
    let decisions = decide(&copies, &live(None), now);
    let until = whole_second_after(now + Duration::days(30));
    let kept = Decision::Extend {
        until,
        because: KeptBecause::NewestGood,
    };
    assert_eq!(decisions[9], kept, "newest verified");
    assert_eq!(decisions[3], kept, "newest restore-tested");
    assert_eq!(decisions[10], Decision::Remove(RemovedBecause::Expired));
    assert_eq!(removed(&decisions), 9);
}

#[test]
fn an_instance_with_no_good_copy_keeps_nothing_past_its_lock() {
    let copies: Vec<StoredCopy> = (0..5)
        .map(|n| StoredCopy {
            verified: false,
            ..copy(n)
        })
        .collect();
    assert_eq!(removed(&decide(&copies, &live(None), day(40))), 5);
}

#[test]
fn grandfather_father_son_keeps_a_day_a_week_and_a_month_and_says_until_when() {
    // Two copies a day (06:00 and 12:00) for 120 days, each locked for one day only.
    let mut copies = Vec::new();
    for n in 0..120 {
        for (hour, suffix) in [(-6, "a"), (0, "b")] {
            copies.push(StoredCopy {
                cycle_id: format!("c{n:04}{suffix}"),
                made_at: day(n) + Duration::hours(hour),
                retain_until: day(n) + Duration::hours(hour) + Duration::days(1),
                verified: true,
                restore_tested: false,
            });
        }
    }
    let gfs = Gfs {
        daily: 7,
        weekly: 4,
        monthly: 3,
    };
    let now = day(120);
    let decisions = decide(&copies, &live(Some(gfs)), now);
    let kept: Vec<(&str, DateTime<Utc>, KeptBecause)> = copies
        .iter()
        .zip(&decisions)
        .filter_map(|(c, d)| match d {
            Decision::Extend { until, because } => Some((c.cycle_id.as_str(), *until, *because)),
            _ => None,
        })
        .collect();
    let midnight = |y, m, d| {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    };
    // Now is Friday 2026-05-01 12:00 (day 120; no copy yet today).
    // - daily: the 12:00 copies of days 114..=119 (Apr 25..30), each until 7 days after its day
    //   (Apr 24's ran out at midnight);
    // - weekly (ISO weeks from Apr 6): the newest of each, Sundays Apr 12 (day 101), Apr 19
    //   (108), Apr 26 (115), and Thursday Apr 30 (119) of the current week;
    // - monthly (March, April, May): Mar 31 (day 89) until Jun 1, Apr 30 (119) until Jul 1;
    //   February is out (its three months ended at midnight);
    // - the newest good copy, day 119, is kept by whichever rule keeps it longest (the month).
    let expected: Vec<(String, DateTime<Utc>, KeptBecause)> = vec![
        ("c0089b", midnight(2026, 6, 1), KeptBecause::Gfs),
        ("c0101b", midnight(2026, 5, 4), KeptBecause::Gfs),
        ("c0108b", midnight(2026, 5, 11), KeptBecause::Gfs),
        ("c0114b", midnight(2026, 5, 2), KeptBecause::Gfs),
        ("c0115b", midnight(2026, 5, 18), KeptBecause::Gfs),
        ("c0116b", midnight(2026, 5, 4), KeptBecause::Gfs),
        ("c0117b", midnight(2026, 5, 5), KeptBecause::Gfs),
        ("c0118b", midnight(2026, 5, 6), KeptBecause::Gfs),
        ("c0119b", midnight(2026, 7, 1), KeptBecause::Gfs),
    ]
    .into_iter()
    .map(|(id, until, because)| (id.to_owned(), until, because))
    .collect();
    let kept: Vec<(String, DateTime<Utc>, KeptBecause)> = kept
        .into_iter()
        .map(|(id, until, because)| (id.to_owned(), until, because))
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(removed(&decisions), copies.len() - expected.len());
    // Without the month rule, the newest good copy is kept for the tenant's retention.
    let daily_only = Gfs {
        daily: 7,
        weekly: 0,
        monthly: 0,
    };
    let decisions = decide(&copies, &live(Some(daily_only)), now);
    let newest = copies.iter().position(|c| c.cycle_id == "c0119b");
    assert_eq!(
        newest.map(|i| decisions[i]),
        Some(Decision::Extend {
            until: whole_second_after(now + Duration::days(30)),
            because: KeptBecause::NewestGood
        })
    );
}

#[test]
fn gfs_counts_only_verified_copies_as_a_periods_keeper() {
    let good = copy(0);
    let bad = StoredCopy {
        cycle_id: "c0000z".into(),
        made_at: day(0) + Duration::hours(1),
        verified: false,
        ..copy(0)
    };
    let newer = copy(40);
    let gfs = Gfs {
        daily: 0,
        weekly: 0,
        monthly: 12,
    };
    let decisions = decide(&[good, bad, newer], &live(Some(gfs)), day(35));
    assert!(matches!(
        decisions[0],
        Decision::Extend {
            because: KeptBecause::Gfs,
            ..
        }
    ));
    assert_eq!(decisions[1], Decision::Remove(RemovedBecause::Expired));
}

#[test]
fn an_offboarded_instance_extends_nothing_past_its_purge_date_and_then_loses_every_copy() {
    let copies = vec![copy(0), copy(10), copy(50)];
    let purge_after = day(45);
    let grace = Rules {
        standing: Standing::Removed { purge_after },
        ..live(None)
    };
    let decisions = decide(&copies, &grace, day(41));
    assert_eq!(decisions[0], Decision::Remove(RemovedBecause::Expired));
    assert_eq!(decisions[2], Decision::Locked);
    // The newest good copy is copy(50) (still locked); copy(10) is expired and not kept.
    assert_eq!(decisions[1], Decision::Remove(RemovedBecause::Expired));
    // With only old copies, the newest is kept, but only until the purge date.
    let decisions = decide(&copies[..2], &grace, day(41));
    assert_eq!(
        decisions[1],
        Decision::Extend {
            until: purge_after,
            because: KeptBecause::NewestGood
        }
    );
    let due = Rules {
        standing: Standing::PurgeDue,
        ..live(None)
    };
    let decisions = decide(&copies, &due, day(46));
    assert_eq!(
        decisions,
        vec![
            Decision::Remove(RemovedBecause::Offboarded),
            Decision::Remove(RemovedBecause::Offboarded),
            Decision::Locked
        ]
    );
}
