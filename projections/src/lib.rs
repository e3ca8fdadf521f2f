//! Read models built from Restorable's events. Each view is a pure fold over the event history
//! (no I/O here), so it can be rebuilt at any time from the store and equals the live one.
//!
//! # Layout
//! - [`fleet`]: the fleet view — per instance, the last cycle, the highest rung of the latest
//!   copy, the last Secured / Verified / Restore-Tested times and a status.

pub mod fleet;

use restorable_domain::cycle::BackupCycleEvent;
use restorable_domain::instance::InstanceEvent;
use restorable_domain::tenant_key::TenantKeyEvent;

/// Any event, tagged by its aggregate, with the aggregate's id.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyEvent {
    /// An event of the `BackupCycle` with this id.
    Cycle(String, BackupCycleEvent),
    /// An event of the `Instance` with this id.
    Instance(String, InstanceEvent),
    /// An event of the `TenantKey` with this id.
    TenantKey(String, TenantKeyEvent),
}
