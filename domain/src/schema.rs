//! JSON Schemas of every event type and version: the public wire contract. The files under
//! `schemas/events/` are generated from these types; a test fails when they drift apart.

use schemars::{schema_for, Schema};

use crate::{alert, audit, cycle, instance, tenant_key, EVENT_VERSION};

/// `(aggregate type, event type, event version, schema)` for every event this release writes.
pub fn event_schemas() -> Vec<(&'static str, &'static str, &'static str, Schema)> {
    vec![
        (
            "InstanceAlerts",
            "AlertRaised",
            EVENT_VERSION,
            schema_for!(alert::AlertRaised),
        ),
        (
            "InstanceAlerts",
            "AlertResolved",
            EVENT_VERSION,
            schema_for!(alert::AlertResolved),
        ),
        (
            "AuditTrail",
            "ActionRecorded",
            EVENT_VERSION,
            schema_for!(audit::ActionRecorded),
        ),
        (
            "BackupCycle",
            "CycleStarted",
            EVENT_VERSION,
            schema_for!(cycle::CycleStarted),
        ),
        (
            "BackupCycle",
            "Captured",
            EVENT_VERSION,
            schema_for!(cycle::Captured),
        ),
        (
            "BackupCycle",
            "Secured",
            EVENT_VERSION,
            schema_for!(cycle::Secured),
        ),
        (
            "BackupCycle",
            "Verified",
            EVENT_VERSION,
            schema_for!(cycle::Verified),
        ),
        (
            "BackupCycle",
            "RestoreTested",
            EVENT_VERSION,
            schema_for!(cycle::RestoreTested),
        ),
        (
            "BackupCycle",
            "Failed",
            EVENT_VERSION,
            schema_for!(cycle::Failed),
        ),
        (
            "Instance",
            "InstanceEnrolled",
            EVENT_VERSION,
            schema_for!(instance::InstanceEnrolled),
        ),
        (
            "Instance",
            "EndpointChanged",
            EVENT_VERSION,
            schema_for!(instance::EndpointChanged),
        ),
        (
            "Instance",
            "InstanceStopped",
            EVENT_VERSION,
            schema_for!(instance::InstanceStopped),
        ),
        (
            "Instance",
            "InstanceResumed",
            EVENT_VERSION,
            schema_for!(instance::InstanceResumed),
        ),
        (
            "Instance",
            "CycleOpened",
            EVENT_VERSION,
            schema_for!(instance::CycleOpened),
        ),
        (
            "Instance",
            "CycleClosed",
            EVENT_VERSION,
            schema_for!(instance::CycleClosed),
        ),
        (
            "TenantKey",
            "KeyIssued",
            EVENT_VERSION,
            schema_for!(tenant_key::KeyIssued),
        ),
        (
            "TenantKey",
            "KeyRotated",
            EVENT_VERSION,
            schema_for!(tenant_key::KeyRotated),
        ),
    ]
}

/// The file name of a schema under `schemas/events/`.
pub fn schema_file_name(aggregate: &str, event: &str, version: &str) -> String {
    format!("{aggregate}.{event}.v{version}.json")
}
