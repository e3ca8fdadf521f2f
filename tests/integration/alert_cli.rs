//! `restorable alert ack|snooze`, run as the binary: an open alert is acknowledged or snoozed
//! (recorded in its history and audited under `<login> (cli)`); a malformed id, an unknown or
//! resolved alert, a refused note and a bad time exit 2 and record nothing.

use crate::common;

use std::path::Path;
use std::process::Output;

use restorable_domain::alert::{AlertCommand, AlertEvent, AlertKind, AlertRaised};
use restorable_domain::audit::AuditEvent;
use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Rung;
use restorable_pipeline::enrolment::{enrol, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use secrecy::SecretString;

fn restorable(data: &Path, args: &[&str]) -> Output {
    common::restorable()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("USER", "ops-alice")
        .output()
        .expect("run restorable")
}

/// An enrolled instance with two alerts raised, the first resolved: (instance, open alert id,
/// resolved alert id).
async fn alerts(data: &Path) -> (InstanceId, String, String) {
    let pipeline = Pipeline::embedded(data, Settings::default())
        .await
        .expect("pipeline");
    let tenant = TenantId::new("acme").expect("tenant");
    let instance = enrol(
        &pipeline,
        EnrolRequest {
            tenant: tenant.clone(),
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
    let raise = |position| {
        AlertCommand::Raise(AlertRaised {
            alert_id: String::new(),
            kind: AlertKind::BackupStale,
            tenant_id: tenant.clone(),
            instance_id: instance,
            cycle_id: None,
            stage: None,
            reason: None,
            detail: "no copy".into(),
            raised_at: chrono::Utc::now(),
            position,
        })
    };
    let id = instance.to_string();
    let store = &pipeline.store;
    store.alerts(&id, raise(1)).await.expect("raise");
    store
        .alerts(
            &id,
            AlertCommand::Resolve {
                cycle_id: CycleId::random(),
                reached: Rung::Secured,
                ended: true,
                position: 2,
                at: chrono::Utc::now(),
            },
        )
        .await
        .expect("resolve");
    store.alerts(&id, raise(3)).await.expect("raise again");
    store.close().await;
    (instance, format!("{instance}-2"), format!("{instance}-1"))
}

/// The alert history's lifecycle events and the audited alert actions.
async fn recorded(data: &Path, instance: InstanceId) -> (Vec<String>, Vec<(String, String)>) {
    let pipeline = Pipeline::embedded(data, Settings::default())
        .await
        .expect("pipeline");
    let lifecycle = pipeline
        .store
        .history("InstanceAlerts", &instance.to_string())
        .await
        .expect("history")
        .iter()
        .filter_map(|e| match e.decode::<AlertEvent>() {
            Ok(AlertEvent::AlertAcknowledged(a)) => {
                Some(format!("ack {} by {}: {}", a.alert_id, a.by, a.note))
            }
            Ok(AlertEvent::AlertSnoozed(s)) => Some(format!("snooze {} by {}", s.alert_id, s.by)),
            _ => None,
        })
        .collect();
    let audited = pipeline
        .store
        .history("AuditTrail", "acme")
        .await
        .expect("audit")
        .iter()
        .filter_map(|e| match e.decode::<AuditEvent>() {
            Ok(AuditEvent::ActionRecorded(r)) if r.action.as_str().starts_with("alert_") => {
                Some((r.action.as_str().to_owned(), r.actor))
            }
            _ => None,
        })
        .collect();
    pipeline.store.close().await;
    (lifecycle, audited)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_acknowledges_and_snoozes_an_open_alert_and_mistakes_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (instance, open, resolved) = alerts(&data).await;

    for args in [
        vec!["alert", "ack", "--alert", "not-an-alert"],
        vec!["alert", "ack", "--alert", &resolved],
        vec![
            "alert",
            "ack",
            "--alert",
            &format!("{}-1", InstanceId::random()),
        ],
        vec!["alert", "ack", "--alert", &open, "--note", "two\nlines"],
        vec![
            "alert",
            "snooze",
            "--alert",
            &open,
            "--until",
            "2001-01-01T00:00:00Z",
        ],
    ] {
        let output = restorable(&data, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    // clap refuses before anything runs (its own exit code 2).
    let output = restorable(
        &data,
        &["alert", "snooze", "--alert", &open, "--hours", "0"],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let (lifecycle, audited) = recorded(&data, instance).await;
    assert!(
        lifecycle.is_empty() && audited.is_empty(),
        "nothing recorded"
    );

    let output = restorable(
        &data,
        &["alert", "snooze", "--alert", &open, "--hours", "4"],
    );
    assert!(output.status.success(), "{output:?}");
    let output = restorable(
        &data,
        &["alert", "ack", "--alert", &open, "--note", "on it"],
    );
    assert!(output.status.success(), "{output:?}");
    let (lifecycle, audited) = recorded(&data, instance).await;
    assert_eq!(
        lifecycle,
        vec![
            format!("snooze {open} by ops-alice (cli)"),
            format!("ack {open} by ops-alice (cli): on it"),
        ]
    );
    assert_eq!(
        audited,
        vec![
            ("alert_snooze".to_owned(), "ops-alice (cli)".to_owned()),
            ("alert_acknowledge".to_owned(), "ops-alice (cli)".to_owned()),
        ]
    );
}
