//! Every back-off policy of the pipeline, in one place (see the error taxonomy in
//! [`crate::error`]): how long to wait before trying an infrastructure operation again.
//!
//! All delays grow exponentially, are capped, and carry jitter, so that a fleet of workers that
//! lost the same database at the same moment do not all come back at the same instant.
//! - [`within_stage`]: a KMS, S3 or network call inside a stage; a few quick tries, then the
//!   stage fails with a *retryable* reason (the cycle is retried soon by the scheduler).
//! - [`infrastructure`]: a loop that must go on for as long as it takes (the relay, the
//!   projector, a consumer whose store is away, start-up waiting for a dependency).
//! - [`redelivery_delay`]: the delay before JetStream delivers a message again after an
//!   infrastructure error (never a limit: only the delay grows).
//!
//! One operation that may give up (a call within a stage, an alert delivery, a conflicting
//! command) is retried with backon's `Retryable::retry` and one of these builders. A loop that
//! never gives up (the relay, the projector, the in-process consumer, a worker whose store is
//! away) steps a [`Backoff`] instead: it must also watch for shutdown between tries and start
//! again from the shortest delay after progress, which a `retry` future cannot express. Both
//! take their delays from the same backon builders here.

use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder, ExponentialBuilder};
use rand::Rng;

/// A command that lost a race with a concurrent writer of the same aggregate (optimistic
/// locking): tried again at once — it re-reads the history — up to five more times.
pub fn on_conflict() -> ConstantBuilder {
    ConstantBuilder::default()
        .with_delay(Duration::ZERO)
        .with_max_times(5)
}

/// The longest pause between two redeliveries of one message.
pub const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(120);

/// A few quick tries of a call inside a stage (about 6 s in all), with jitter.
pub fn within_stage() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(4)
        .with_jitter()
}

/// Tries for as long as it takes: 100 ms doubling to `cap`, with jitter, no limit.
pub fn infrastructure(cap: Duration) -> ExponentialBuilder {
    between(Duration::from_millis(100), cap)
}

/// Tries for as long as it takes: `min` doubling to `cap`, with jitter, no limit.
fn between(min: Duration, cap: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(cap)
        .without_max_times()
        .with_jitter()
}

/// A back-off that a hand-written loop steps through and resets after a success.
pub struct Backoff {
    policy: ExponentialBuilder,
    cap: Duration,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    /// An unlimited [`infrastructure`] back-off capped at `cap`.
    pub fn new(cap: Duration) -> Self {
        Self::from(infrastructure(cap), cap)
    }

    /// An unlimited back-off from `min` doubling to `cap`.
    pub fn between(min: Duration, cap: Duration) -> Self {
        Self::from(between(min, cap), cap)
    }

    fn from(policy: ExponentialBuilder, cap: Duration) -> Self {
        Self {
            delays: policy.build(),
            policy,
            cap,
        }
    }

    /// The next delay (growing up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.cap)
    }

    /// Starts again from the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.policy.build();
    }
}

/// The delay before the next delivery of a message that failed `delivered` times on an
/// infrastructure error: 1 s, 2 s, 4 s ... up to [`MAX_REDELIVERY_DELAY`], plus up to 25 %
/// jitter.
pub fn redelivery_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 16) - 1).unwrap_or(0);
    let base = Duration::from_secs(1u64 << exponent).min(MAX_REDELIVERY_DELAY);
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_retried_at_once_five_times() {
        let pauses: Vec<_> = on_conflict().build().collect();
        assert_eq!(pauses, [Duration::ZERO; 5]);
    }

    #[test]
    fn redelivery_delays_double_to_the_cap_with_bounded_jitter() {
        for (delivered, base) in [(1, 1), (2, 2), (3, 4), (7, 64), (8, 120), (40, 120)] {
            let delay = redelivery_delay(delivered);
            let base = Duration::from_secs(base);
            assert!(
                delay >= base && delay <= base.mul_f64(1.25),
                "{delivered}: {delay:?}"
            );
        }
    }

    #[test]
    fn an_infrastructure_backoff_never_ends_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(4)),
            "{delays:?}"
        );
        assert!(delays[49] >= Duration::from_secs(1), "grew: {delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(300));
    }
}

/// How deliveries are retried: `attempts` in all, the first pause `first_delay`, doubling after
/// each failure; each attempt limited to `attempt_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// The pause after the first failure.
    pub first_delay: Duration,
    /// The time limit of one attempt (HTTP request, SMTP command).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts, pauses of 0.5, 1, 2, 4 and 8 seconds, 10 seconds per attempt.
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `n` (1-based).
    pub fn delay_after(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first_delay.saturating_mul(factor)
    }

    /// The pauses between attempts as a backon builder: `first_delay`, doubling, no cap, no
    /// jitter, `attempts - 1` of them (so `attempts` tries in all).
    pub fn backoff(&self) -> ExponentialBuilder {
        let retries = self.attempts.max(1).saturating_sub(1);
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_factor(2.0)
            .without_max_delay()
            .with_max_times(usize::try_from(retries).unwrap_or(usize::MAX))
    }

    /// How long one route's delivery can take at most: every attempt to its time limit, every
    /// pause, and one attempt's time more as a margin. A delivery's lease lasts this long.
    pub fn longest_delivery(&self) -> Duration {
        let attempts = self.attempts.max(1);
        let pauses: Duration = (1..attempts).map(|n| self.delay_after(n)).sum();
        pauses + self.attempt_timeout.saturating_mul(attempts + 1)
    }
}
