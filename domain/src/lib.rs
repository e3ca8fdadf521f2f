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
//! - [`native_backups`]: the PBX's own backup schedule as read at capture, and what is wrong
//!   with it (disabled, unencrypted, stale).
//! - [`audit`]: the `AuditTrail` aggregate — what people did through the API, per tenant.
//! - [`schema`]: the JSON Schemas of every event type and version (the public wire contract).

pub mod alert;
pub mod audit;
pub mod cycle;
pub mod evidence;
pub mod ids;
pub mod instance;
pub mod ladder;
pub mod native_backups;
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

    /// `<SNAPSHOT_VERSION>.<fingerprint>`: the fingerprint is a hash (FNV-1a, 64 bits) of the
    /// aggregate's JSON Schema without its descriptions, so it changes when a field, a type or
    /// a serde attribute of the state changes, and not when a doc comment does.
    fn snapshot_version() -> String {
        format!(
            "{}.{:016x}",
            Self::SNAPSHOT_VERSION,
            schema_fingerprint::<Self>()
        )
    }
}

/// A hash of `T`'s JSON Schema, descriptions left out and keys sorted: the same for the same
/// serialized shape in every build.
pub fn schema_fingerprint<T: schemars::JsonSchema>() -> u64 {
    let mut schema = schemars::schema_for!(T).to_value();
    strip_descriptions(&mut schema);
    let mut text = Vec::new();
    evidence::write_canonical(&schema, &mut text);
    fnv1a(&text)
}

/// Removes every `description` (doc comments) from a schema, in place.
fn strip_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // A property named `description` is an object (its schema), not a string: kept.
            if map
                .get("description")
                .is_some_and(serde_json::Value::is_string)
            {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// FNV-1a, 64 bits: stable across builds and releases (unlike `std`'s hasher), and enough to
/// tell one schema from another (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(dead_code, reason = "the test's structs exist for their schemas only")]
mod tests {
    use super::schema_fingerprint;

    mod v1 {
        /// The state.
        #[derive(schemars::JsonSchema)]
        pub struct State {
            /// A count.
            pub count: u32,
        }
    }

    mod v1_reworded {
        /// The state, described differently.
        #[derive(schemars::JsonSchema)]
        pub struct State {
            /// How many there were.
            pub count: u32,
        }
    }

    mod v2 {
        /// The state.
        #[derive(schemars::JsonSchema)]
        pub struct State {
            /// A count.
            pub count: u32,
            /// A new field.
            pub description: Option<String>,
        }
    }

    mod v3 {
        /// The state.
        #[derive(schemars::JsonSchema)]
        pub struct State {
            /// A count, now signed.
            pub count: i64,
        }
    }

    /// A changed field set or field type changes the fingerprint; a changed doc comment does
    /// not (a field named `description` counts as a field).
    #[test]
    fn the_fingerprint_follows_the_shape_not_the_docs() {
        let v1 = schema_fingerprint::<v1::State>();
        assert_eq!(v1, schema_fingerprint::<v1_reworded::State>());
        assert_ne!(v1, schema_fingerprint::<v2::State>());
        assert_ne!(v1, schema_fingerprint::<v3::State>());
    }
}
