//! `restorable dead-letters`, run as the binary on an embedded-default data directory: a real
//! event put in the dead letters is listed (`list --json`), `replay` runs its consumer's reaction
//! in the process (the start stage's `CycleStarted` appears in the log) and marks it replayed, so
//! `list` no longer shows it and `list --all` shows it replayed. An unknown consumer, a letter
//! that does not exist and a relay letter without NATS are refused with exit code 2.

use crate::common;

use std::path::Path;
use std::process::Output;

use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::{CycleId, TenantId};
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::store::LoggedEvent;
use secrecy::SecretString;
use serde_json::Value;

fn restorable(data: &Path, args: &[&str]) -> Output {
    common::restorable()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run restorable")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn listed(data: &Path, all: bool) -> Vec<Value> {
    let mut args = vec!["dead-letters", "list", "--json"];
    if all {
        args.push("--all");
    }
    let output = restorable(data, &args);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

/// An enrolled instance with a cycle opened (no PBX is contacted): its `CycleOpened` event,
/// given up on by the start stage, and its first event given up on by the relay.
async fn dead_letters(data: &Path) -> (CycleId, LoggedEvent, i64) {
    let pipeline = Pipeline::embedded(data, Settings::default())
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
    let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    let history = pipeline
        .store
        .history("Instance", &instance.to_string())
        .await
        .expect("history");
    let opened = history
        .iter()
        .find(|e| e.event_type == "CycleOpened")
        .expect("CycleOpened")
        .clone();
    pipeline
        .store
        .add_dead_letter("start", &opened, "the reaction panicked", 5)
        .await
        .expect("dead letter");
    pipeline
        .store
        .add_dead_letter("relay", &history[0], "not the event's JSON", 1)
        .await
        .expect("dead letter");
    let started: BackupCycle = pipeline.store.load(&cycle.to_string()).await.expect("load");
    assert_eq!(started.rung, None, "no stage ran: the cycle is not started");
    pipeline.store.close().await;
    (cycle, opened, history[0].position)
}

#[tokio::test]
async fn a_dead_letter_is_listed_replayed_and_then_no_longer_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (cycle, opened, relayed) = dead_letters(&data).await;
    let position = opened.position.to_string();

    let pending = listed(&data, false);
    assert_eq!(pending.len(), 2, "{pending:?}");
    let letter = pending
        .iter()
        .find(|l| l["consumer"] == "start")
        .expect("the start stage's letter");
    assert_eq!(letter["position"], opened.position);
    assert_eq!(letter["event_type"], "CycleOpened");
    assert_eq!(letter["aggregate_type"], "Instance");
    assert_eq!(letter["aggregate_id"], opened.aggregate_id);
    assert_eq!(letter["attempts"], 5);
    assert_eq!(letter["reason"], "the reaction panicked");
    assert!(letter["replayed_at"].is_null());
    let table = restorable(&data, &["dead-letters", "list"]);
    let table_text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", text(&table));
    assert!(
        table_text.contains("CycleOpened") && table_text.contains("the reaction panicked"),
        "{table_text}"
    );

    // Bad input: exit 2, nothing changes.
    for args in [
        vec!["--consumer", "nope", "--position", position.as_str()],
        vec!["--consumer", "capture", "--position", position.as_str()],
        vec!["--consumer", "start", "--position", "999999"],
    ] {
        let mut full = vec!["dead-letters", "replay"];
        full.extend(args.iter().copied());
        let output = restorable(&data, &full);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
    }
    // The relay's letter needs NATS to be replayed.
    let relayed = relayed.to_string();
    let relay = restorable(
        &data,
        &[
            "dead-letters",
            "replay",
            "--consumer",
            "relay",
            "--position",
            &relayed,
        ],
    );
    assert_eq!(relay.status.code(), Some(2), "{}", text(&relay));
    assert!(
        String::from_utf8_lossy(&relay.stderr).contains("NATS"),
        "{}",
        text(&relay)
    );
    assert_eq!(listed(&data, false).len(), 2);

    let replay = restorable(
        &data,
        &[
            "dead-letters",
            "replay",
            "--consumer",
            "start",
            "--position",
            &position,
        ],
    );
    assert!(replay.status.success(), "{}", text(&replay));

    // The reaction ran in that process: the start stage started the cycle.
    let pipeline = Pipeline::embedded(&data, Settings::default())
        .await
        .expect("pipeline");
    let started: BackupCycle = pipeline.store.load(&cycle.to_string()).await.expect("load");
    assert_eq!(started.rung, Some(Rung::Started), "{}", text(&replay));
    pipeline.store.close().await;

    let pending = listed(&data, false);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["consumer"], "relay");
    let all = listed(&data, true);
    let replayed = all
        .iter()
        .find(|l| l["consumer"] == "start")
        .expect("still listed with --all");
    assert!(replayed["replayed_at"].is_string(), "{replayed:?}");

    // Replaying it again has nothing to do.
    let again = restorable(
        &data,
        &[
            "dead-letters",
            "replay",
            "--consumer",
            "start",
            "--position",
            &position,
        ],
    );
    assert!(again.status.success(), "{}", text(&again));
}
