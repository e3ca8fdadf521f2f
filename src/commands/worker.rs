//! `restorable worker`: stage processors, over NATS JetStream when configured (a durable
//! consumer per stage, shared by every copy), else in-process, until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::runtime::{self, scheduler};
use restorable_pipeline::transport::nats::worker::WorkerSettings;
use tokio_util::sync::CancellationToken;

use crate::cli::{StageArg, WorkerArgs};
use crate::runtime::{cancel_on_signal, open_waiting};

/// The consumers the `--stage` values name, each once.
fn stage_names(given: &[StageArg]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = given.iter().flat_map(|s| s.consumers()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Runs the stages until a signal.
///
/// # Errors
/// A setting that can never work.
pub async fn run(args: WorkerArgs) -> Result<ExitCode> {
    let names = stage_names(&args.stages);
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
    let evidence = if args.schedule_every_secs > 0 {
        crate::runtime::spawn_evidence(&pipeline, &args.data, &shutdown).await
    } else {
        None
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
    if let Some(evidence) = evidence {
        evidence.await?;
    }
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_consumer_is_a_stage_value_and_all_is_every_one() {
        let mut named: Vec<&str> = StageArg::value_variants()
            .iter()
            .filter(|v| **v != StageArg::All)
            .flat_map(|v| v.consumers())
            .copied()
            .collect();
        named.sort_unstable();
        assert_eq!(named, stage_names(&[StageArg::All]));
        let mut expected = runtime::STAGE_NAMES.to_vec();
        expected.sort_unstable();
        assert_eq!(named, expected);
        assert_eq!(
            StageArg::from_str("restore_test", false),
            Ok(StageArg::RestoreTest)
        );
        assert!(StageArg::from_str("restore", false).is_err());
    }
}
