//! A limit on heavy tests (a PostgreSQL cluster, a multi-GiB archive, a whole demo) running at
//! once in one test binary: each takes a [`HeavyPermit`] first, so that on a 2-core machine a
//! few run side by side and the rest wait their turn instead of all timing out together.
//! `RESTORABLE_TEST_HEAVY` sets how many (default: the number of CPUs, at least 1).

use std::sync::{Condvar, Mutex, OnceLock};

struct Gate {
    running: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let limit = std::env::var("RESTORABLE_TEST_HEAVY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cpus)
            .max(1);
        Gate {
            running: Mutex::new(0),
            freed: Condvar::new(),
            limit,
        }
    })
}

/// One heavy test's turn; the next waiting test starts when it is dropped.
#[must_use = "the permit limits the test only while it is held"]
pub struct HeavyPermit(());

impl Drop for HeavyPermit {
    fn drop(&mut self) {
        let gate = gate();
        let mut running = gate.running.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        gate.freed.notify_one();
    }
}

/// Waits until fewer than the limit of heavy tests run, then counts this one in. Blocks the
/// calling thread (each test has its own), so call it first thing in the test, before its
/// runtime does work.
pub fn heavy() -> HeavyPermit {
    let gate = gate();
    let mut running = gate.running.lock().unwrap_or_else(|e| e.into_inner());
    while *running >= gate.limit {
        running = gate.freed.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    *running += 1;
    HeavyPermit(())
}
