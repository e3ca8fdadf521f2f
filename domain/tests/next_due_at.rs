//! `Instance::next_due_at` agrees with `Instance::is_due` for every state and every moment: the
//! scheduler's index stores the one and the scheduler checks the other. Checked over many
//! generated states (a small seeded generator: the same cases every run) and moments, including
//! each due time itself and the nanoseconds either side of it.

use chrono::{DateTime, Duration, TimeZone, Utc};
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{
    CycleClosed, CycleOpened, Instance, InstanceEnrolled, InstanceEvent, InstanceResumed,
    InstanceStopped, RestorePolicy, Schedule, SealedCredentials,
};
use restorable_domain::ladder::{Rung, Trigger};

/// xorshift64*: enough randomness for generated cases, and reproducible.
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn enrolment(interval_minutes: u32) -> InstanceEnrolled {
    let tenant = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
    InstanceEnrolled {
        instance_id: InstanceId::for_name(&tenant, "hq"),
        tenant_id: tenant,
        name: "hq".into(),
        fqdn: "hq.acme.example".into(),
        api_url: "https://hq.acme.example".into(),
        credentials: SealedCredentials("sealed".into()),
        schedule: Schedule { interval_minutes },
        restore_policy: RestorePolicy::default(),
        allow_insecure_http: false,
        enrolled_at: base(),
    }
}

/// A state reached through events, as the store would fold it.
fn history(cases: &mut Cases) -> (Instance, DateTime<Utc>) {
    let mut instance = Instance::default();
    let mut clock = base() + Duration::milliseconds(cases.below(10_000_000) as i64);
    if cases.chance(95) {
        let interval = [1, 5, 60, 24 * 60][cases.below(4) as usize];
        cqrs_es::Aggregate::apply(
            &mut instance,
            InstanceEvent::InstanceEnrolled(enrolment(interval)),
        );
    }
    let mut open = None;
    for n in 0..cases.below(12) {
        clock += Duration::milliseconds(cases.below(90 * 60_000) as i64 + 1);
        let event = match (open, cases.below(10)) {
            (_, 0) => InstanceEvent::InstanceStopped(InstanceStopped { stopped_at: clock }),
            (_, 1) => InstanceEvent::InstanceResumed(InstanceResumed { resumed_at: clock }),
            (None, _) => {
                let cycle_id = CycleId(uuid::Uuid::from_u128(u128::from(n)));
                open = Some(cycle_id);
                InstanceEvent::CycleOpened(CycleOpened {
                    cycle_id,
                    trigger: Trigger::Scheduled,
                    opened_at: clock,
                })
            }
            (Some(cycle_id), _) => {
                open = None;
                let failed = cases.chance(50);
                InstanceEvent::CycleClosed(CycleClosed {
                    cycle_id,
                    reached: if failed {
                        Rung::Started
                    } else {
                        Rung::Verified
                    },
                    failed,
                    retryable: failed && cases.chance(70),
                    restore_tested_copy: None,
                    closed_at: clock,
                })
            }
        };
        cqrs_es::Aggregate::apply(&mut instance, event);
    }
    (instance, clock)
}

/// A state with its fields chosen freely (some no history can reach).
fn arbitrary(cases: &mut Cases) -> Instance {
    let moment = |cases: &mut Cases| {
        cases
            .chance(80)
            .then(|| base() + Duration::seconds(cases.below(10 * 86_400) as i64))
    };
    Instance {
        enrolled: cases
            .chance(90)
            .then(|| enrolment(cases.below(3 * 24 * 60) as u32 + 1)),
        stopped: cases.chance(15),
        open_cycle: cases.chance(20).then(|| CycleId(uuid::Uuid::from_u128(7))),
        last_opened_at: moment(cases),
        verified_since_restore_test: 0,
        last_restore_tested_at: None,
        retryable_failures: if cases.chance(50) {
            0
        } else {
            cases.below(40) as u32
        },
        last_closed_at: moment(cases),
        // A removal also stops the instance: `stopped` covers it here.
        removed: None,
        purged_at: None,
        native_read_at: moment(cases),
    }
}

fn check(instance: &Instance, now: DateTime<Utc>) {
    let next = instance.next_due_at();
    assert_eq!(
        instance.is_due(now),
        next.is_some_and(|t| t <= now),
        "at {now}, due at {next:?}: {instance:?}"
    );
}

#[test]
fn next_due_at_agrees_with_is_due_for_every_state_and_moment() {
    let mut cases = Cases(0x9E37_79B9_7F4A_7C15);
    let mut due_ever = 0;
    for case in 0..20_000 {
        let (instance, clock) = if case % 2 == 0 {
            history(&mut cases)
        } else {
            (arbitrary(&mut cases), base())
        };
        let mut moments = vec![
            clock,
            base() - Duration::days(1),
            base() + Duration::days(30),
        ];
        for _ in 0..8 {
            moments.push(clock + Duration::seconds(cases.below(4 * 86_400) as i64 - 86_400));
        }
        if let Some(due) = instance.next_due_at() {
            due_ever += 1;
            for edge in [-1, 0, 1] {
                if let Some(t) = due.checked_add_signed(Duration::nanoseconds(edge)) {
                    moments.push(t);
                }
            }
        }
        for now in moments {
            check(&instance, now);
        }
    }
    assert!(due_ever > 5_000, "the cases reach due states ({due_ever})");
}

#[test]
fn no_due_time_when_not_enrolled_stopped_or_in_flight() {
    let mut instance = Instance::default();
    assert_eq!(instance.next_due_at(), None, "not enrolled");
    cqrs_es::Aggregate::apply(
        &mut instance,
        InstanceEvent::InstanceEnrolled(enrolment(60)),
    );
    assert_eq!(
        instance.next_due_at(),
        Some(DateTime::<Utc>::MIN_UTC),
        "never opened: due at once"
    );
    let opened = CycleOpened {
        cycle_id: CycleId(uuid::Uuid::from_u128(1)),
        trigger: Trigger::Scheduled,
        opened_at: base(),
    };
    cqrs_es::Aggregate::apply(&mut instance, InstanceEvent::CycleOpened(opened.clone()));
    assert_eq!(instance.next_due_at(), None, "in flight");
    cqrs_es::Aggregate::apply(
        &mut instance,
        InstanceEvent::CycleClosed(CycleClosed {
            cycle_id: opened.cycle_id,
            reached: Rung::Verified,
            failed: false,
            retryable: false,
            restore_tested_copy: None,
            closed_at: base() + Duration::minutes(3),
        }),
    );
    assert_eq!(instance.next_due_at(), Some(base() + Duration::minutes(60)));
    cqrs_es::Aggregate::apply(
        &mut instance,
        InstanceEvent::InstanceStopped(InstanceStopped { stopped_at: base() }),
    );
    assert_eq!(instance.next_due_at(), None, "stopped");
}
