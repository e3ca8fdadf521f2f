//! `restorable worker`: stage processors, over NATS JetStream when configured (a durable
//! consumer per stage, shared by every copy), else in-process, until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::runtime::{self, scheduler};
use restorable_pipeline::transport::nats::worker::WorkerSettings;
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;
use crate::runtime::{cancel_on_signal, open_waiting};

/// `--stage` names as the user writes them, to the consumers' names.
fn stage_names(given: &[String]) -> Result<Vec<&'static str>> {
    let mut names = Vec::new();
    for stage in given {
        match stage.as_str() {
            "all" => names.extend(runtime::STAGE_NAMES.iter().copied()),
            "restore-test" | "restore_test" => names.push("restore_test"),
            "alert-delivery" | "alert_delivery" => names.push("alert_delivery"),
            other => match runtime::STAGE_NAMES.iter().find(|n| **n == other) {
                Some(name) => names.push(*name),
                None => anyhow::bail!(
                    "unknown stage {other:?}: start, capture, secure, verify, restore-test, close, alerts, alert-delivery or all"
                ),
            },
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Runs the stages until a signal.
///
/// # Errors
/// An unknown stage, or a setting that can never work.
pub async fn run(args: WorkerArgs) -> Result<ExitCode> {
    let names = stage_names(&args.stages)?;
    let shutdown = CancellationToken::new();
    // Before waiting for the backends, so that a signal ends the wait too.
    cancel_on_signal(shutdown.clone());
    let Some(pipeline) = open_waiting(&args.data, Settings::default(), &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let settings = WorkerSettings {
        concurrency: args.concurrency.max(1),
        poison_after: args.poison_after.max(1),
        ack_wait: Duration::from_secs(args.ack_wait_secs.max(1)),
        grace: Duration::from_secs(args.grace_secs),
    };
    let scheduler = (args.schedule_every_secs > 0).then(|| {
        tokio::spawn(scheduler::run(
            pipeline.clone(),
            Duration::from_secs(args.schedule_every_secs),
            shutdown.clone(),
        ))
    });
    tracing::info!(
        stages = ?names,
        store = pipeline.store.backend_name(),
        transport = if pipeline.nats.is_some() { "nats" } else { "in-process" },
        "worker running; SIGTERM or Ctrl-C to stop"
    );
    runtime::run_stages(&pipeline, &names, &settings, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}
