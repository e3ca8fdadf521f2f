//! The native backup watch against the simulator: a capture reads the PBX's own schedule
//! (`BackupSettings`) and its newest native backup; a disabled, unencrypted or stale schedule
//! raises its alert while the copy itself still climbs the ladder; a PBX that recovers resolves
//! it at the next capture. Each event is delivered to the alerts stage twice more
//! (at-least-once), which changes nothing. Between captures the watch's own sweep
//! (`native_watch`) reads each live PBX once a period: it raises and resolves the same alerts
//! with no cycle, reads nothing before its period, leaves stopped instances alone, and records
//! nothing (and raises nothing) for a PBX that does not answer. A store that refuses a reading
//! mid-sweep ends the sweep with its (infrastructure) error and loses and doubles nothing.

use crate::common;

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use common::{Backend, Harness};
use restorable_domain::alert::{AlertKind, InstanceAlerts};
use restorable_domain::ids::{CycleId, InstanceId};
use restorable_domain::instance::{Instance, InstanceCommand};
use restorable_domain::ladder::{Rung, Trigger};
use restorable_domain::native_backups::NativeScheduleType;
use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::native_watch::{sweep_at, NativeSweep};
use restorable_pipeline::pipeline::Settings;
use rstest::rstest;

/// One cycle of `instance`, driven by the whole pipeline, then every event of it delivered to
/// the alerts stage twice more.
async fn cycle(harness: &Harness, instance: InstanceId) -> CycleId {
    let cycle = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle]).await;
    common::deliver_to_alerts(&harness.pipeline, &[("BackupCycle", cycle.to_string())], 2).await;
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
    assert_eq!(
        harness
            .event_types("InstanceAlerts", &instance.to_string())
            .await,
        ["AlertRaised", "AlertResolved"]
    );
    healthy.shutdown().await;
}

/// A watch sweep at `now`, then every Instance event of `instances` delivered to the alerts
/// stage three times (at-least-once).
async fn watch(harness: &Harness, now: DateTime<Utc>, instances: &[InstanceId]) -> NativeSweep {
    let sweep = sweep_at(&harness.pipeline, now).await.expect("sweep");
    let histories: Vec<_> = instances
        .iter()
        .map(|instance| ("Instance", instance.to_string()))
        .collect();
    common::deliver_to_alerts(&harness.pipeline, &histories, 3).await;
    sweep
}

/// How many readings the watch recorded for `instance`.
async fn readings(harness: &Harness, instance: InstanceId) -> usize {
    let types = harness.event_types("Instance", &instance.to_string()).await;
    types.iter().filter(|t| *t == "NativeBackupsRead").count()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_reads_between_captures_once_a_period_and_raises_and_resolves_without_a_cycle(
    #[case] backend: Backend,
) {
    let harness = Harness::on(backend).await;
    let every = harness.pipeline.settings.pbx.native_watch_every;
    assert_eq!(every, chrono::Duration::hours(6), "the default period");
    let sims = tempfile::tempdir().expect("tempdir");
    let mut config = SimPbxConfig::new("watched", 7);
    config.fault = Some(Fault::NativeBackupDisabled);
    let off = RunningPbx::start(config.clone(), sims.path())
        .await
        .expect("sim");
    let address: SocketAddr = off
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let instance = harness.enrol(&off, 24 * 60).await;
    let healthy_pbx = harness.pbx("watched-healthy", None).await;
    let healthy = harness.enrol(&healthy_pbx, 24 * 60).await;
    let both = [instance, healthy];

    // Never read: both are due at once, and no cycle has run.
    let now = Utc::now();
    let sweep = watch(&harness, now, &both).await;
    let mut expected = vec![instance.to_string(), healthy.to_string()];
    expected.sort();
    assert_eq!(sweep.read, expected);
    assert_eq!(sweep.unreadable, vec![]);
    let open = open_alerts(&harness, instance).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].0, AlertKind::NativeBackupDisabled);
    assert_eq!(open[0].1, "the PBX's own backup schedule is turned off");
    assert_eq!(open_alerts(&harness, healthy).await, vec![]);
    let alerts: InstanceAlerts = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("alerts");
    assert_eq!(
        alerts.open[0].cycle_id, None,
        "raised by the watch, no cycle"
    );
    let loaded: Instance = harness
        .pipeline
        .store
        .load(&instance.to_string())
        .await
        .expect("instance");
    assert!(loaded.native_read_at.is_some_and(|at| at >= now));

    // Within the period: nothing is read again.
    let sweep = watch(&harness, now + every - chrono::Duration::minutes(1), &both).await;
    assert_eq!(sweep, NativeSweep::default());
    assert_eq!(readings(&harness, instance).await, 1);

    // The PBX's schedule turned on again: the next period's reading resolves the alert.
    off.shutdown().await;
    config.fault = None;
    let on = RunningPbx::start_on(config, address, sims.path())
        .await
        .expect("sim again");
    let later = now + every + chrono::Duration::minutes(1);
    let sweep = watch(&harness, later, &both).await;
    assert_eq!(sweep.read, expected);
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
        ["AlertRaised", "AlertResolved"],
        "one alert, however often the events were delivered"
    );
    let resolved: serde_json::Value = serde_json::from_str(&history[1].payload).expect("payload");
    assert_eq!(
        resolved["AlertResolved"]["resolved_by"],
        serde_json::Value::Null
    );
    assert_eq!(readings(&harness, instance).await, 2);
    on.shutdown().await;
    healthy_pbx.shutdown().await;
}

/// A PBX that does not answer is what a cycle's capture reports; the watch records nothing and
/// raises nothing for it (no false red), and reads it on the next sweep once it answers. A
/// stopped instance is not read at all; with `native_watch_hours = 0` nothing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_leaves_unanswering_and_stopped_pbxes_without_a_reading_or_an_alert() {
    let harness = Harness::new().await;
    let sims = tempfile::tempdir().expect("tempdir");
    let config = SimPbxConfig::new("watched-down", 7);
    let down = RunningPbx::start(config.clone(), sims.path())
        .await
        .expect("sim");
    let address: SocketAddr = down
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let instance = harness.enrol(&down, 24 * 60).await;
    down.shutdown().await;
    let stopped_pbx = harness
        .pbx("watched-stopped", Some(Fault::NativeBackupStale))
        .await;
    let stopped = harness.enrol(&stopped_pbx, 24 * 60).await;
    harness
        .pipeline
        .store
        .instance(
            &stopped.to_string(),
            InstanceCommand::Stop { at: Utc::now() },
        )
        .await
        .expect("stop");

    let now = Utc::now();
    let sweep = watch(&harness, now, &[instance, stopped]).await;
    assert_eq!(sweep.read, Vec::<String>::new());
    assert_eq!(sweep.unreadable.len(), 1, "{sweep:?}");
    assert_eq!(sweep.unreadable[0].0, instance.to_string());
    assert_eq!(readings(&harness, instance).await, 0);
    assert_eq!(open_alerts(&harness, instance).await, vec![]);
    assert_eq!(
        readings(&harness, stopped).await,
        0,
        "a stopped instance is not read"
    );
    assert_eq!(open_alerts(&harness, stopped).await, vec![]);

    // Answering again: read by the very next sweep (it stayed due).
    let up = RunningPbx::start_on(config, address, sims.path())
        .await
        .expect("sim again");
    let sweep = watch(&harness, now + chrono::Duration::minutes(10), &[instance]).await;
    assert_eq!(sweep.read, vec![instance.to_string()]);
    assert_eq!(readings(&harness, instance).await, 1);
    up.shutdown().await;
    stopped_pbx.shutdown().await;
}

/// The store refusing one instance's reading mid-sweep (a real database error, from a trigger)
/// ends the sweep with the store's error: an infrastructure error, never taken for a refusal
/// (which would skip the reading for good). The other PBX's reading, recorded before, stays;
/// nothing is raised for the refused one; the next sweep records it once, and only it.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_a_reading_mid_sweep_loses_nothing_and_doubles_nothing(
    #[case] backend: Backend,
) {
    let harness = Harness::on(backend).await;
    let refused_pbx = harness
        .pbx("watch-refused", Some(Fault::NativeBackupDisabled))
        .await;
    let refused = harness.enrol(&refused_pbx, 24 * 60).await;
    let other_pbx = harness
        .pbx("watch-other", Some(Fault::NativeBackupDisabled))
        .await;
    let other = harness.enrol(&other_pbx, 24 * 60).await;
    let store = &harness.pipeline.store;
    let refused_id = refused.to_string();
    common::fail_inserts_for(store, backend, "NativeBackupsRead", Some(&refused_id), 600).await;

    let now = Utc::now();
    let error = sweep_at(&harness.pipeline, now)
        .await
        .expect_err("the store's error ends the sweep");
    assert!(!error.is_refusal(), "an infrastructure error: {error}");
    assert_eq!(readings(&harness, refused).await, 0);
    assert_eq!(
        readings(&harness, other).await,
        1,
        "the reading recorded before stays"
    );
    let both = [
        ("Instance", refused_id.clone()),
        ("Instance", other.to_string()),
    ];
    common::deliver_to_alerts(&harness.pipeline, &both, 2).await;
    assert_eq!(open_alerts(&harness, refused).await, vec![]);
    assert_eq!(open_alerts(&harness, other).await.len(), 1);

    common::stop_failing_inserts(store).await;
    let sweep = watch(
        &harness,
        now + chrono::Duration::minutes(10),
        &[refused, other],
    )
    .await;
    assert_eq!(
        sweep.read,
        vec![refused_id],
        "only the refused one is still due"
    );
    assert_eq!(readings(&harness, refused).await, 1);
    assert_eq!(readings(&harness, other).await, 1);
    let open = open_alerts(&harness, refused).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].0, AlertKind::NativeBackupDisabled);
    refused_pbx.shutdown().await;
    other_pbx.shutdown().await;
}

/// Two workers sweeping at once (two sweeps racing over one store, as two processes would): a
/// PBX may be read by both, but each instance records one reading of the period, and neither
/// sweep fails for the race.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_at_once_record_one_reading_per_instance(#[case] backend: Backend) {
    let harness = Harness::on(backend).await;
    let mut pbxes = Vec::new();
    let mut instances = Vec::new();
    for n in 0..4 {
        let pbx = harness.pbx(&format!("raced-{n}"), None).await;
        instances.push(harness.enrol(&pbx, 24 * 60).await);
        pbxes.push(pbx);
    }
    let now = Utc::now();
    let (first, second) = tokio::join!(
        sweep_at(&harness.pipeline, now),
        sweep_at(&harness.pipeline, now + chrono::Duration::seconds(1)),
    );
    let (first, second) = (first.expect("first sweep"), second.expect("second sweep"));
    let mut read: Vec<String> = first.read.iter().chain(&second.read).cloned().collect();
    read.sort();
    read.dedup();
    let mut all: Vec<String> = instances.iter().map(ToString::to_string).collect();
    all.sort();
    assert_eq!(read, all, "every instance read by one sweep or the other");
    for instance in &instances {
        assert_eq!(
            readings(&harness, *instance).await,
            1,
            "{first:?} {second:?}"
        );
    }
    for pbx in pbxes {
        pbx.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_period_turns_the_watch_off() {
    let mut settings = Settings::default();
    settings.pbx.native_watch_every = chrono::Duration::zero();
    let harness = Harness::with(settings).await;
    let pbx = harness
        .pbx("unwatched", Some(Fault::NativeBackupDisabled))
        .await;
    let instance = harness.enrol(&pbx, 24 * 60).await;
    let sweep = watch(&harness, Utc::now(), &[instance]).await;
    assert_eq!(sweep, NativeSweep::default());
    assert_eq!(readings(&harness, instance).await, 0);
    assert_eq!(open_alerts(&harness, instance).await, vec![]);
    pbx.shutdown().await;
}
