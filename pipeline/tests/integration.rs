//! The pipeline's integration tests, one binary (one link of the AWS, sqlx and NATS graph) with
//! a module per concern under `tests/integration/`, against real servers: PostgreSQL, NATS
//! JetStream, the local AWS endpoint, the PBX simulator, the restore sandbox. Every test that drives
//! the pipeline (`common::Harness`) takes a [`restorable_testkit::heavy`] permit, so that only a
//! few run at once on a small machine whatever `--test-threads` says.

mod common;
mod fault_proxy;

mod integration {
    mod alert_lifecycle;
    mod alert_routes;
    mod archive_7z;
    mod audit_evidence;
    mod bounded_views;
    mod chat_routes;
    mod digest;
    mod evidence_faults;
    mod evidence_support;
    mod hostile_pbx;
    mod infrastructure_faults;
    mod kms_sealing;
    mod ladder;
    mod native_backups;
    mod nats_outage;
    mod operations_alerts;
    mod read_paths;
    mod rechecks;
    mod restore_sandbox;
    mod restore_selection;
    mod retention;
    mod s3_secured;
    mod s3_vault;
    mod sandbox_cgroups;
    mod schedule_index;
    mod stale_alerts;
    mod transient_faults;
    mod watchdog;
}
