//! How the stages run in a process: every consumer of the ladder, run in-process from the store
//! or as NATS JetStream workers with the outbox relay, beside the watchdog, alert delivery,
//! the dead-letter watch and the sweeps: rotating re-checks, retention, the native backup watch.
//!
//! # Layout
//! - this file: [`consumers`], [`run_stages`], [`run_all`].
//! - [`driver`]: runs the stages in-process until given cycles close (CLI, demo, tests).
//! - [`scheduler`]: opens a cycle for every instance that is due.

pub mod driver;
pub mod scheduler;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::alerting::AlertDelivery;
use crate::pipeline::Pipeline;
use crate::stages;
use crate::transport::nats::relay::Relay;
use crate::transport::nats::worker::{run_worker, WorkerSettings};
use crate::transport::{run_consumer, Consumer};

/// Every consumer of the ladder, in ladder order.
pub fn consumers(pipeline: &Pipeline) -> Vec<Arc<dyn Consumer>> {
    vec![
        Arc::new(stages::start::StartStage::new(pipeline.clone())),
        Arc::new(stages::capture::CaptureStage::new(pipeline.clone())),
        Arc::new(stages::secure::SecureStage::new(pipeline.clone())),
        Arc::new(stages::verify::VerifyStage::new(pipeline.clone())),
        Arc::new(stages::restore_test::RestoreTestStage::new(
            pipeline.clone(),
        )),
        Arc::new(stages::close::CloseStage::new(pipeline.clone())),
        Arc::new(stages::alerts::AlertsStage::new(pipeline.clone())),
        Arc::new(AlertDelivery::new(pipeline)),
    ]
}

/// The stage names `restorable worker --stage` accepts (`restore-test` is `restore_test`): the
/// consumers of the ladder, and last the [`SWEEP_NAMES`].
pub const STAGE_NAMES: &[&str] = &[
    "start",
    "capture",
    "secure",
    "verify",
    "restore_test",
    "close",
    "alerts",
    "alert_delivery",
    "recheck",
    "retention",
    "native_watch",
];

/// The sweeps, the last of [`STAGE_NAMES`]: `recheck` (the rotating re-checks,
/// [`crate::recheck`]), `retention` ([`crate::retention`]) and `native_watch` (the PBXes' own
/// backups between captures, [`crate::native_watch`]).
pub const SWEEP_NAMES: &[&str] = STAGE_NAMES.split_at(STAGE_NAMES.len() - 3).1;

/// The stages that climb the ladder and tell of it (every stage but the sweeps): what the
/// in-process [`driver`] runs to see given cycles through.
pub const LADDER_NAMES: &[&str] = STAGE_NAMES.split_at(STAGE_NAMES.len() - 3).0;

/// How often a process running the `recheck` stage sweeps for due copies.
pub const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs every stage in this process until `shutdown` is cancelled (see [`run_stages`]).
pub async fn run_all(pipeline: &Pipeline, shutdown: CancellationToken) {
    run_stages(pipeline, STAGE_NAMES, &WorkerSettings::default(), shutdown).await;
}

/// Runs the named stages until `shutdown` is cancelled: over NATS JetStream when the pipeline
/// has it (with the outbox relay alongside), else in-process from the store. First destroys any
/// restore sandbox an earlier, killed run left behind.
pub async fn run_stages(
    pipeline: &Pipeline,
    names: &[&str],
    settings: &WorkerSettings,
    shutdown: CancellationToken,
) {
    if names.contains(&"restore_test") {
        pipeline.sandbox.sweep_leftovers().await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    // The cycle deadline: one watchdog per process; the `watchdog` lease lets only one act.
    let watchdog = crate::watchdog::Watchdog::new(pipeline.clone());
    tasks.spawn(watchdog.run(shutdown.clone()));
    if names.contains(&"recheck") {
        // Every process sweeping claims its own share of the due copies.
        tasks.spawn(crate::recheck::run(
            pipeline.clone(),
            RECHECK_EVERY,
            shutdown.clone(),
        ));
    }
    if names.contains(&"retention") {
        tasks.spawn(crate::retention::run(
            pipeline.clone(),
            crate::retention::RETENTION_EVERY,
            shutdown.clone(),
        ));
    }
    if names.contains(&"native_watch") {
        tasks.spawn(crate::native_watch::run(
            pipeline.clone(),
            crate::native_watch::NATIVE_WATCH_EVERY,
            shutdown.clone(),
        ));
    }
    if names.contains(&"alert_delivery") {
        let resumer = AlertDelivery::new(pipeline);
        // Dead letters become operations alerts (raised once per consumer, resolved when
        // replayed): every process delivering alerts looks; the store lets one raise each.
        tasks.spawn(crate::operations_alerts::watch_dead_letters(
            resumer.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(resumer.resume_until(shutdown.clone()));
    }
    let chosen = consumers(pipeline)
        .into_iter()
        .filter(|c| names.contains(&c.name()));
    match &pipeline.nats {
        None => {
            for consumer in chosen {
                tasks.spawn(run_consumer(
                    pipeline.store.clone(),
                    consumer,
                    shutdown.clone(),
                ));
            }
        }
        Some(nats) => {
            let alarm = crate::operations_alerts::RelayAlarm::new(
                AlertDelivery::new(pipeline),
                crate::operations_alerts::RELAY_ALERT_AFTER,
            );
            let relay = Relay::new(pipeline.store.clone(), nats.clone()).with_alarm(alarm);
            tasks.spawn(relay.run(shutdown.clone()));
            for consumer in chosen {
                let (pipeline, nats, settings, shutdown) = (
                    pipeline.clone(),
                    nats.clone(),
                    settings.clone(),
                    shutdown.clone(),
                );
                tasks.spawn(async move {
                    let name = consumer.name();
                    if let Err(error) =
                        run_worker(pipeline, nats, consumer, settings, shutdown.clone()).await
                    {
                        tracing::error!(stage = name, %error, "worker could not start");
                        shutdown.cancel();
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_is_every_stage_but_the_sweeps() {
        assert_eq!(SWEEP_NAMES, &["recheck", "retention", "native_watch"]);
        assert_eq!(LADDER_NAMES.len() + SWEEP_NAMES.len(), STAGE_NAMES.len());
        assert!(SWEEP_NAMES.iter().all(|s| !LADDER_NAMES.contains(s)));
        assert_eq!(LADDER_NAMES.last(), Some(&"alert_delivery"));
    }
}
