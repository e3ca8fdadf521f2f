//! The native backup watch against the simulator: a capture reads the PBX's own schedule
//! (`BackupSettings`) and its newest native backup; a disabled, unencrypted or stale schedule
//! raises its alert while the copy itself still climbs the ladder; a PBX that recovers resolves
//! it at the next capture. Each event is delivered to the alerts stage twice more
//! (at-least-once), which changes nothing.

use crate::common;

use std::net::SocketAddr;

use common::Harness;
use restorable_domain::alert::{AlertKind, InstanceAlerts};
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_domain::native_backups::NativeScheduleType;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::stages::alerts::AlertsStage;
use restorable_pipeline::transport::Consumer;

/// One cycle of `instance`, driven by the whole pipeline, then every event of it delivered to
/// the alerts stage twice more.
async fn cycle(harness: &Harness, instance: InstanceId) -> CycleId {
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle]).await;
    let stage = AlertsStage::new(harness.pipeline.clone());
    let events = harness
        .pipeline
        .store
        .history("BackupCycle", &cycle.to_string())
        .await
        .expect("history");
    for _ in 0..2 {
        for event in events.iter().filter(|e| stage.wants(e)) {
            stage.react(event.clone()).await.expect("react");
        }
    }
    cycle
}

/// The instance's open alerts: kind and detail.
async fn open_alerts(harness: &Harness, instance: InstanceId) -> Vec<(AlertKind, String)> {
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("alerts");
    let history = harness
        .pipeline
        .store
        .history("InstanceAlerts", &instance.to_string())
        .await
        .expect("history");
    alerts
        .open
        .iter()
        .map(|open| {
            let detail = history
                .iter()
                .filter(|e| e.event_type == "AlertRaised")
                .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).ok())
                .find(|p| p["AlertRaised"]["alert_id"] == open.alert_id.as_str())
                .map(|p| p["AlertRaised"]["detail"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            (open.kind, detail)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_native_backup_fault_raises_its_alert_and_the_copy_still_climbs() {
    let harness = Harness::new().await;
    for (name, fault, expected, detail) in [
        ("native-ok", None, None, ""),
        (
            "native-stale",
            Some(Fault::NativeBackupStale),
            Some(AlertKind::NativeBackupStale),
            "the PBX's own daily backup last ran",
        ),
        (
            "native-off",
            Some(Fault::NativeBackupDisabled),
            Some(AlertKind::NativeBackupDisabled),
            "the PBX's own backup schedule is turned off",
        ),
        (
            "native-plain",
            Some(Fault::NativeBackupUnencrypted),
            Some(AlertKind::NativeBackupUnencrypted),
            "the PBX's own scheduled backups are not encrypted",
        ),
    ] {
        let pbx = harness.pbx(name, fault).await;
        let instance = harness.enrol(&pbx, 60).await;
        let id = cycle(&harness, instance).await;
        let climbed = harness.cycle(id).await;
        assert_eq!(
            climbed.rung,
            Some(Rung::RestoreTested),
            "{name}: the copy is fine"
        );
        assert!(!climbed.is_failed(), "{name}");
        let native = climbed
            .captured
            .and_then(|c| c.native_backups)
            .expect("the capture read the native schedule");
        assert_eq!(native.schedule, NativeScheduleType::Daily, "{name}");
        assert_eq!(
            native.backups_on_disk, 1,
            "{name}: our own copy is not counted"
        );
        let open = open_alerts(&harness, instance).await;
        match expected {
            None => assert_eq!(open, vec![], "{name}"),
            Some(kind) => {
                assert_eq!(open.len(), 1, "{name}: {open:?}");
                assert_eq!(open[0].0, kind, "{name}");
                assert!(open[0].1.starts_with(detail), "{name}: {}", open[0].1);
            }
        }
        pbx.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_whose_native_backups_recover_resolves_the_alert_at_the_next_capture() {
    let harness = Harness::new().await;
    let sims = tempfile::tempdir().expect("tempdir");
    let mut config = SimPbxConfig::new("native-recovers", 7);
    config.fault = Some(Fault::NativeBackupStale);
    let stale = RunningPbx::start(config.clone(), sims.path())
        .await
        .expect("sim");
    let address: SocketAddr = stale
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let instance = harness.enrol(&stale, 60).await;
    cycle(&harness, instance).await;
    cycle(&harness, instance).await;
    let open = open_alerts(&harness, instance).await;
    assert_eq!(
        open.iter().map(|(kind, _)| *kind).collect::<Vec<_>>(),
        vec![AlertKind::NativeBackupStale],
        "two stale readings: one alert"
    );
    stale.shutdown().await;

    // The same PBX, its schedule running again.
    config.fault = None;
    let healthy = RunningPbx::start_on(config, address, sims.path())
        .await
        .expect("sim again");
    cycle(&harness, instance).await;
    assert_eq!(open_alerts(&harness, instance).await, vec![]);
    let history = harness
        .pipeline
        .store
        .history("InstanceAlerts", &instance.to_string())
        .await
        .expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["AlertRaised", "AlertResolved"]
    );
    healthy.shutdown().await;
}
