//! `restorable instance remove`, run as the binary: the instance is offboarded with the purge
//! date the configuration's `[retention] remove_after_days` gives, the action is in the
//! tenant's audit trail under the operator's name, and an instance that is not enrolled is
//! refused with exit code 2 and nothing recorded.

use crate::common;

use std::path::Path;
use std::process::Output;

use restorable_domain::audit::{AuditAction, AuditEvent};
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{Instance, RestorePolicy, Schedule};
use restorable_pipeline::enrolment::{enrol, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use secrecy::SecretString;

fn restorable(data: &Path, args: &[&str]) -> Output {
    common::restorable()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("USER", "ops-bob")
        .output()
        .expect("run restorable")
}

async fn removals(pipeline: &Pipeline) -> Vec<String> {
    pipeline
        .store
        .history("AuditTrail", "acme")
        .await
        .expect("audit")
        .iter()
        .filter_map(|e| match e.decode::<AuditEvent>() {
            Ok(AuditEvent::ActionRecorded(r)) if r.action == AuditAction::RemoveInstance => {
                Some(r.actor)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_operator_removes_an_instance_with_the_configured_grace_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("restorable.toml");
    std::fs::write(&config, "[retention]\nremove_after_days = 10\n").expect("config");
    let pipeline = Pipeline::embedded(&data, Settings::default())
        .await
        .expect("pipeline");
    let instance = enrol(
        &pipeline,
        EnrolRequest {
            tenant: TenantId::new("acme").expect("tenant"),
            name: "hq".into(),
            fqdn: "hq.acme.example".into(),
            api_url: "https://hq.acme.example".into(),
            credentials: PbxCredentials {
                client_id: SecretString::from("client"),
                client_secret: SecretString::from("secret"),
            },
            schedule: Schedule {
                interval_minutes: 60,
            },
            restore_policy: RestorePolicy::default(),
        },
    )
    .await
    .expect("enrol");
    pipeline.store.close().await;

    let config = config.to_string_lossy().into_owned();
    let output = restorable(
        &data,
        &[
            "instance",
            "remove",
            "--instance",
            "acme/hq",
            "--config",
            &config,
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("removed instance {instance}")),
        "{stdout}"
    );

    let unknown = restorable(&data, &["instance", "remove", "--instance", "acme/nowhere"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");

    let pipeline = Pipeline::embedded(&data, Settings::default())
        .await
        .expect("pipeline");
    let state: Instance = pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("instance");
    assert!(state.stopped);
    let removed = state.removed.expect("removed");
    assert_eq!(
        removed.purge_after - removed.removed_at,
        chrono::Duration::days(10)
    );
    assert_eq!(removals(&pipeline).await, ["ops-bob (cli)".to_owned()]);
    pipeline.store.close().await;
}
