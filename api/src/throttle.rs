//! Sign-in throttling. Wrong passwords are counted per account (the e-mail address typed, known
//! or not) and per source address; after `limit` failures within `window` the key is locked for
//! `lockout`, doubling at every further lockout up to `max_lockout`. A locked key is answered
//! `429 Too Many Requests` with `Retry-After` *before* any password is hashed, so a locked
//! account is neither an oracle nor a CPU lever.
//!
//! The rule for the real user: an account lock applies from every address (a correct password
//! from elsewhere also waits out `Retry-After`: otherwise spreading guesses over addresses would
//! walk around it); an address lock applies to every account tried from that address, while
//! other addresses sign in as usual. A successful sign-in clears the account's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The throttle's limits.
#[derive(Clone, Debug)]
pub struct ThrottleLimits {
    /// Wrong passwords for one account within `window` before it is locked.
    pub per_account: u32,
    /// Wrong passwords from one address within `window` before it is locked.
    pub per_address: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// The first lockout.
    pub lockout: Duration,
    /// The longest lockout (each further lockout of a key doubles the previous one).
    pub max_lockout: Duration,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    lockouts: u32,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            locked_until: None,
            lockouts: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// The throttle's state (in memory, per process).
#[derive(Debug, Default)]
pub struct Throttle {
    limits: ThrottleLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The most keys kept; past this, entries neither locked nor recently failed are dropped.
const MAX_KEYS: usize = 100_000;

impl Throttle {
    /// A throttle with `limits`.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, address: Option<IpAddr>) -> Vec<Key> {
        let mut keys = vec![Key::Account(email.trim().to_lowercase())];
        keys.extend(address.map(Key::Address));
        keys
    }

    /// `Some(wait)` if the account or the address is locked now.
    pub fn check(&self, email: &str, address: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(email, address)
            .iter()
            .filter_map(|key| entries.get(key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a wrong password.
    pub fn failed(&self, email: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_KEYS {
            let window = self.limits.window;
            entries.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now) || now - e.window_start < window
            });
            if entries.len() >= MAX_KEYS {
                // Still full of recent failures: keep only the locks.
                entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
            }
        }
        for key in Self::keys(email, address) {
            let limit = match key {
                Key::Account(_) => self.limits.per_account,
                Key::Address(_) => self.limits.per_address,
            };
            let entry = entries.entry(key).or_insert_with(|| Entry::new(now));
            if now - entry.window_start >= self.limits.window {
                entry.failures = 0;
                entry.window_start = now;
            }
            entry.failures += 1;
            if entry.failures >= limit {
                let factor = 1u32 << entry.lockouts.min(16);
                let lockout = self
                    .limits
                    .lockout
                    .saturating_mul(factor)
                    .min(self.limits.max_lockout);
                entry.locked_until = Some(now + lockout);
                entry.lockouts += 1;
                entry.failures = 0;
                entry.window_start = now;
            }
        }
    }

    /// Clears the account's count after a correct password.
    pub fn succeeded(&self, email: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&Key::Account(email.trim().to_lowercase()));
    }
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(25),
        }
    }

    #[test]
    fn an_account_locks_after_its_limit_from_any_address() {
        let throttle = Throttle::new(limits());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..2 {
            throttle.failed("X@y.z", Some(a));
            assert!(throttle.check("x@y.z", Some(a)).is_none());
        }
        throttle.failed("x@y.z", Some(b));
        let wait = throttle.check("x@y.z", Some(b)).expect("locked");
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(8));
        assert!(throttle.check("other@y.z", Some(a)).is_none());
    }

    #[test]
    fn an_address_locks_for_every_account_and_lockouts_grow_to_the_cap() {
        let throttle = Throttle::new(limits());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        for i in 0..5 {
            throttle.failed(&format!("u{i}@y.z"), Some(a));
        }
        assert!(throttle.check("fresh@y.z", Some(a)).is_some());
        assert!(throttle.check("fresh@y.z", None).is_none());
        for _ in 0..3 {
            throttle.failed("v@y.z", None);
        }
        for _ in 0..3 {
            throttle.failed("v@y.z", None);
        }
        let second = throttle.check("v@y.z", None).expect("locked");
        assert!(second > Duration::from_secs(15), "doubled: {second:?}");
        for _ in 0..3 {
            throttle.failed("v@y.z", None);
        }
        let third = throttle.check("v@y.z", None).expect("locked");
        assert!(third <= Duration::from_secs(25), "capped: {third:?}");
        throttle.succeeded("v@y.z");
        assert!(throttle.check("v@y.z", None).is_none());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
