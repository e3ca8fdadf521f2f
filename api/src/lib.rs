//! Restorable's HTTP side: the JSON API under `/api/v1/`, the web pages (fleet, instance
//! Backups tab, sign-in), accounts and access, downloads streamed from the vault, the audited
//! password reveal, the live update stream, `/healthz` and `/metrics`. It reads the projector's
//! views ([`ReadSide`]) and writes through the pipeline's aggregates; every mutating action is
//! recorded in the tenant's audit trail.
//!
//! # Layout
//! - [`auth`]: users, sessions, API tokens, roles and tenant scopes.
//! - [`cache`]: rendered fleet answers, kept until the views move on.
//! - [`error`]: the one error type and its status codes.
//! - [`access`]: looking up what a caller may see (other tenants' data is "not found").
//! - [`json`]: the JSON routes ([`json::ROUTES`] lists them; `schemas/openapi.json` documents them).
//! - [`actions`]: enrol, stop, resume, backup now, download, reveal — audited.
//! - [`export`]: CSV exports.
//! - [`pages`]: the server-rendered web pages.
//! - [`ops`]: `/healthz`, `/metrics` and the live update stream.

pub mod access;
pub mod actions;
pub mod auth;
pub mod cache;
pub mod error;
pub mod export;
pub mod json;
pub mod ops;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use restorable_pipeline::context::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
pub struct AppState {
    /// The store, vault and key sealing.
    pub pipeline: Pipeline,
    /// The views, kept up to date by the projector.
    pub read: ReadSide,
    /// Rendered fleet answers.
    pub cache: cache::RenderCache,
}

impl AppState {
    /// The state over `pipeline` and its views.
    pub fn new(pipeline: Pipeline, read: ReadSide) -> Self {
        Self {
            pipeline,
            read,
            cache: cache::RenderCache::default(),
        }
    }

    /// The cache key of a fleet answer for `who` with `filter` (`page` 0 for the whole fleet).
    pub fn fleet_key(
        kind: &'static str,
        who: &auth::Principal,
        filter: &json::FleetFilter,
        page: usize,
    ) -> cache::CacheKey {
        cache::CacheKey {
            kind,
            scope: who.scope.to_string(),
            tenant: filter.tenant.clone().unwrap_or_default(),
            status: filter.status.clone().unwrap_or_default(),
            page,
        }
    }
}

/// The shared state handlers receive.
pub type Shared = Arc<AppState>;

/// Every route: JSON API, pages, operations.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(json::router())
        .merge(pages::router())
        .merge(ops::router())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown`.
///
/// # Errors
/// The server failed.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?address, "serving the web UI and API");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
