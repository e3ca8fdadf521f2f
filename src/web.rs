//! Starting the web UI and API in this process: load the stored views, follow the log with the
//! projector (which also sweeps for stale instances), and serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use restorable_api::AppState;
use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the projector looks for stale instances.
const STALE_SWEEP: Duration = Duration::from_secs(60);

/// Starts the projector and the HTTP server on `listen`; returns the bound address. Both stop
/// when `shutdown` is cancelled (joined through `tasks`).
///
/// # Errors
/// The stored views cannot be loaded or the address cannot be bound.
pub async fn start(
    pipeline: &Pipeline,
    listen: SocketAddr,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let read = ReadSide::load(&pipeline.store).await?;
    read.catch_up(&pipeline.store, None).await?;
    tasks.spawn(
        read.clone()
            .run(pipeline.store.clone(), STALE_SWEEP, shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    let options = restorable_api::ServerOptions::from_env();
    let state = Arc::new(AppState::with_options(pipeline.clone(), read, options));
    tasks.spawn(async move {
        if let Err(error) = restorable_api::serve(listener, state, shutdown).await {
            tracing::error!(%error, "the web server stopped");
        }
    });
    Ok(address)
}
