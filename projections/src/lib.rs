//! Read models built from Restorable's events. Each view is a pure fold over the event history
//! (no I/O here), so it can be rebuilt at any time from the store and equals the live one. The
//! pipeline's projector keeps them as rows in the event store's database.
//!
//! # Layout
//! - [`fleet`]: the fleet view — per instance, the last cycle, the highest rung of the latest
//!   copy, the last Secured / Verified / Restore-Tested times and a status.
//! - [`backups`]: the instance backups view — every cycle with its rung, size, SHA-256, key
//!   version, retain-until, timings and failure.
//! - [`alerts`]: the alert view — every alert with raise and resolve times.
//! - [`audit`]: the audit view — every recorded API action with its actor.
//! - [`failures`]: the failures view — every failed cycle, in the order recorded.
//! - [`model`]: all five together, as rows keyed for storage; fleet and alerts held in memory,
//!   backups, audit and failures folded one row at a time and kept in storage.

pub mod alerts;
pub mod audit;
pub mod backups;
pub mod failures;
pub mod fleet;
pub mod model;

use restorable_domain::alert::AlertEvent;
use restorable_domain::audit::AuditEvent;
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
    /// An event of the `InstanceAlerts` with this (instance) id.
    Alerts(String, AlertEvent),
    /// An event of the `AuditTrail` with this (tenant) id.
    Audit(String, AuditEvent),
}
