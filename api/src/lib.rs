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
//! - [`headers`]: security headers on every response.
//! - [`throttle`]: sign-in throttling.
//!
//! # Serving
//! [`serve`] runs HTTP/1.1 connections itself (not `axum::serve`) so that it can bound them:
//! a request's head must arrive within [`ServerOptions::header_timeout`] (this also closes idle
//! keep-alive connections: the wait for the next head is timed the same way), its body within
//! [`ServerOptions::body_timeout`], and each request sees its client's address (sign-in
//! throttling).

pub mod access;
pub mod actions;
pub mod auth;
pub mod cache;
pub mod error;
pub mod export;
pub mod headers;
pub mod json;
pub mod ops;
pub mod pages;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use futures_util::StreamExt;
use restorable_pipeline::pipeline::Pipeline;
use restorable_pipeline::read_model::ReadSide;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How the server treats its clients.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A request's head (and the next head on a kept-alive connection) must arrive within this.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Send HSTS when a proxy says (`X-Forwarded-Proto: https`) the request came over TLS.
    pub trust_forwarded_proto: bool,
    /// Sign-in throttling.
    pub throttle: throttle::ThrottleLimits,
    /// Passwords hashed at once (sign-ins beyond this wait their turn).
    pub concurrent_hashes: usize,
    /// How long a sign-in waits for its turn to hash before it is answered 429.
    pub hash_queue_wait: Duration,
    /// How often a live update stream checks that its session or token still holds.
    pub stream_recheck: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            trust_forwarded_proto: false,
            throttle: throttle::ThrottleLimits::default(),
            concurrent_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            hash_queue_wait: Duration::from_secs(10),
            stream_recheck: Duration::from_secs(5),
        }
    }
}

impl ServerOptions {
    /// The defaults, with `trust_forwarded_proto` from `RESTORABLE_TRUST_FORWARDED_PROTO`
    /// (`1` or `true`).
    pub fn from_env() -> Self {
        let trust = std::env::var("RESTORABLE_TRUST_FORWARDED_PROTO")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Self {
            trust_forwarded_proto: trust,
            ..Self::default()
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The store, vault and key sealing.
    pub pipeline: Pipeline,
    /// The views, kept up to date by the projector.
    pub read: ReadSide,
    /// Rendered fleet answers.
    pub cache: cache::RenderCache,
    /// Timeouts, limits and proxy trust.
    pub options: ServerOptions,
    /// Sign-in throttling.
    pub throttle: throttle::Throttle,
    /// Bounds the passwords hashed at once.
    pub hashing: Arc<Semaphore>,
    /// Woken when a session or token ends in this process (live streams re-check at once).
    pub credentials_changed: tokio::sync::Notify,
}

impl AppState {
    /// The state over `pipeline` and its views, with the default options.
    pub fn new(pipeline: Pipeline, read: ReadSide) -> Self {
        Self::with_options(pipeline, read, ServerOptions::default())
    }

    /// The state over `pipeline` and its views, with `options`.
    pub fn with_options(pipeline: Pipeline, read: ReadSide, options: ServerOptions) -> Self {
        Self {
            pipeline,
            read,
            cache: cache::RenderCache::default(),
            throttle: throttle::Throttle::new(options.throttle.clone()),
            hashing: Arc::new(Semaphore::new(options.concurrent_hashes.max(1))),
            options,
            credentials_changed: tokio::sync::Notify::new(),
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` (HTTP/1.1; see the module's "Serving").
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
    let options = state.options.clone();
    let app = router(state);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_timeout = options.body_timeout;
        let header_timeout = options.header_timeout;
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(remote));
                    let request = request.map(|body| timed_body(Body::new(body), body_timeout));
                    let app = app.clone();
                    async move { tower::ServiceExt::oneshot(app, request).await }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %remote, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A request body that fails unless it is all there within `limit`.
fn timed_body(body: Body, limit: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + limit;
    let chunks = futures_util::stream::unfold(
        (body.into_data_stream(), false),
        move |(mut stream, done)| async move {
            if done {
                return None;
            }
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => Some((item, (stream, false))),
                Ok(None) => None,
                Err(_) => {
                    let late = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    );
                    Some((Err(axum::Error::new(late)), (stream, true)))
                }
            }
        },
    );
    Body::from_stream(chunks)
}
