//! `restorable serve`: the scheduler, every stage and the web UI and API in one process, until
//! SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::runtime::{self, scheduler};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::runtime::{cancel_on_signal, open_waiting, start_web};

/// Serves until a signal, then finishes the work in hand.
///
/// # Errors
/// A setting that can never work, or an address that cannot be bound.
pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    // Before waiting for the backends, so that a signal ends the wait too.
    cancel_on_signal(shutdown.clone());
    let Some(pipeline) = open_waiting(&args.data, Settings::default(), &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let stages = tokio::spawn({
        let (pipeline, shutdown) = (pipeline.clone(), shutdown.clone());
        async move { runtime::run_all(&pipeline, shutdown).await }
    });
    let scheduler = tokio::spawn(scheduler::run(
        pipeline.clone(),
        Duration::from_secs(args.tick_secs),
        shutdown.clone(),
    ));
    let evidence = crate::runtime::spawn_evidence(&pipeline, &args.data, &shutdown).await;
    let mut web_tasks = tokio::task::JoinSet::new();
    let address = start_web(
        &pipeline,
        &args.data,
        args.listen,
        &mut web_tasks,
        shutdown.clone(),
    )
    .await?;
    println!("web UI and API on http://{address}/");
    tracing::info!(
        %address,
        store = pipeline.store.backend_name(),
        transport = if pipeline.nats.is_some() {
            "nats"
        } else {
            "in-process"
        },
        "serving; Ctrl-C or SIGTERM to stop"
    );
    shutdown.cancelled().await;
    tracing::info!("stopping: finishing the work in hand");
    stages.await?;
    scheduler.await?;
    if let Some(evidence) = evidence {
        evidence.await?;
    }
    web_tasks.join_all().await;
    pipeline.store.close().await;
    Ok(ExitCode::SUCCESS)
}
