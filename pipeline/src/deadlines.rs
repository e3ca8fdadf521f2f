//! Time limits that grow with the size of a backup: one [`Deadline`] per rung ([`Deadlines`]),
//! enforced by the watchdog, and the PBX client's transfer limits. A leaf.

use std::time::Duration;

/// A time limit that grows with the size of the backup: `base + per_gib × GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The limit of an empty backup.
    pub base: Duration,
    /// Added for every GiB (pro rata) of the backup.
    pub per_gib: Duration,
}

impl Deadline {
    /// A limit of `base` plus `per_gib` for every GiB.
    pub const fn new(base: Duration, per_gib: Duration) -> Self {
        Self { base, per_gib }
    }

    /// The limit for a backup of `bytes`.
    pub fn for_size(&self, bytes: u64) -> Duration {
        const GIB: f64 = (1u64 << 30) as f64;
        #[allow(clippy::cast_precision_loss)] // sizes far below 2^52 bytes
        let gib = bytes as f64 / GIB;
        let scaled =
            Duration::try_from_secs_f64(self.per_gib.as_secs_f64() * gib).unwrap_or(Duration::MAX);
        self.base.saturating_add(scaled)
    }
}

/// The time limit of each rung of the ladder, and of a finished cycle not yet closed. A cycle
/// that stands still longer is failed `stage_timeout` (retryable) by the watchdog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Started → Captured, scaled by the instance's last known backup size.
    pub capture: Deadline,
    /// Captured → Secured.
    pub secure: Deadline,
    /// Secured → Verified.
    pub verify: Deadline,
    /// Verified → Restore-Tested (only when a restore test is due).
    pub restore_test: Deadline,
    /// A cycle that ended (failed, or at its last rung) whose instance still holds it open.
    pub close: Duration,
    /// How often the watchdog looks.
    pub check_every: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        let minutes = |m: u64| Duration::from_secs(m * MINUTE);
        Self {
            capture: Deadline::new(minutes(30), minutes(10)),
            secure: Deadline::new(minutes(10), minutes(5)),
            verify: Deadline::new(minutes(10), minutes(5)),
            restore_test: Deadline::new(minutes(30), minutes(10)),
            close: minutes(5),
            check_every: Duration::from_secs(MINUTE),
        }
    }
}
