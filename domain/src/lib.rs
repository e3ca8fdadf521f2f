//! Restorable's domain: the aggregates, commands, events and invariants of the backup ladder.
//!
//! Nothing here does I/O: no async runtime, no SQL, no HTTP. The pipeline drives these aggregates
//! through cqrs-es; the rules (ladder order, idempotence, one cycle in flight per instance) live
//! here so every adapter gets them for free.
//!
//! # Layout
//! - [`ids`]: typed identifiers (tenant, instance, cycle) and their validation.
//! - [`ladder`]: the rungs, stages and stable failure reason codes shared by every aggregate.
//! - [`cycle`]: the `BackupCycle` aggregate — one backup attempt of one instance up the ladder.
//! - [`instance`]: the `Instance` aggregate — enrolment, schedule, stop/resume, cycle in flight.
//! - [`tenant_key`]: the `TenantKey` aggregate — sealed backup password versions of a tenant.
//! - [`alert`]: the `InstanceAlerts` aggregate — Backup Failed / Backup Stale / Verify Stale
//!   alerts, raised once, resolved only when the instance recovers (in log order).
//! - [`audit`]: the `AuditTrail` aggregate — what people did through the API, per tenant.
//! - [`schema`]: the JSON Schemas of every event type and version (the public wire contract).

pub mod alert;
pub mod audit;
pub mod cycle;
pub mod ids;
pub mod instance;
pub mod ladder;
pub mod schema;
pub mod tenant_key;

/// The version written with every event of this release (cqrs-es `event_version`).
/// Bump per event type when its payload changes shape, and add an upcaster.
pub const EVENT_VERSION: &str = "1.0";

/// An aggregate whose state the store may keep as a snapshot: a cache of a replay, used only
/// if it was written under the same snapshot version. That version is
/// [`Snapshotted::SNAPSHOT_VERSION`] combined with a fingerprint of the aggregate's JSON Schema
/// (computed by the store), so a change of the struct's serialized shape invalidates old
/// snapshots by itself; the constant covers what the schema cannot see.
pub trait Snapshotted: cqrs_es::Aggregate + schemars::JsonSchema {
    /// Bump when `apply()` changes the state an event leads to, or a field's meaning changes
    /// without its shape changing: old snapshots are then ignored (a full replay rebuilds
    /// them).
    const SNAPSHOT_VERSION: u32;
}
