//! What the evidence tests share: an enrolment as one command, a pipeline on SQLite or on a
//! PostgreSQL database, the count of open History Tampered alerts, and an export copied with its
//! events replaced (what `audit verify` says of a changed line).

use chrono::{DateTime, Utc};
use restorable_domain::ids::{InstanceId, TenantId};
use restorable_domain::instance::{
    InstanceCommand, InstanceEnrolled, RestorePolicy, Schedule, SealedCredentials,
};
use restorable_pipeline::evidence::{verify_export, Break, Proven, HISTORY_TAMPERED};
use restorable_pipeline::pipeline::{Pipeline, Settings};
use restorable_pipeline::setup::Backends;
use restorable_pipeline::store::Store;
use std::path::Path;

/// Enrols `name` of `tenant` at `at` (one event in the tenant's chain); the instance.
pub(super) async fn enrol(
    store: &Store,
    tenant: &TenantId,
    name: &str,
    at: DateTime<Utc>,
) -> InstanceId {
    let instance = InstanceId::for_name(tenant, name);
    store
        .instance(
            &instance.to_string(),
            InstanceCommand::Enrol(InstanceEnrolled {
                instance_id: instance,
                tenant_id: tenant.clone(),
                name: name.into(),
                fqdn: format!("{name}.example"),
                api_url: format!("https://{name}.example"),
                credentials: SealedCredentials("sealed".into()),
                schedule: Schedule::DAILY,
                restore_policy: RestorePolicy::default(),
                allow_insecure_http: false,
                enrolled_at: at,
            }),
        )
        .await
        .expect("enrol");
    instance
}

/// A pipeline in `dir` on the embedded default, or on `database_url` (PostgreSQL).
pub(super) async fn open_pipeline(
    dir: &Path,
    database_url: Option<String>,
    settings: Settings,
) -> Pipeline {
    let backends = Backends {
        data_dir: dir.to_owned(),
        database_url,
        ..Backends::default()
    };
    Pipeline::open(&backends, settings).await.expect("pipeline")
}

/// How many History Tampered alerts are open.
pub(super) async fn tampered_alerts(pipeline: &Pipeline) -> usize {
    pipeline
        .store
        .operations_alerts(true)
        .await
        .expect("alerts")
        .into_iter()
        .filter(|a| a.key == HISTORY_TAMPERED)
        .count()
}

/// The export in `out` copied to `copy` with `lines` as its events; what `audit verify` says.
pub(super) fn verify_with_events(
    out: &Path,
    copy: &Path,
    lines: &[impl AsRef<str>],
) -> Result<Proven, Break> {
    std::fs::create_dir_all(copy).expect("dir");
    for name in [
        "manifest.json",
        "keys.json",
        "checkpoints.jsonl",
        "links.txt",
    ] {
        std::fs::copy(out.join(name), copy.join(name)).expect("copy");
    }
    let events: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    std::fs::write(copy.join("events.jsonl"), events.join("\n") + "\n").expect("write");
    verify_export(copy).expect("readable")
}
