//! Restorable's HTTP side: the JSON API under `/api/v1/`, the web pages (fleet, instance
//! Backups tab, sign-in), accounts and access, downloads streamed from the vault, the audited
//! password reveal, the live update stream, `/healthz` and `/metrics`. It reads the projector's
//! views ([`ReadSide`](restorable_pipeline::read_model::ReadSide)) and writes through the
//! pipeline's aggregates; every mutating action is recorded in the tenant's audit trail.
//!
//! # Layout
//! Every module below answers one concern; none imports a module that imports it back
//! (`state`, `error`, `throttle` and `queries` are leaves the request handlers build on; in a
//! folder, `mod.rs` only declares, routes and re-exports, and its files share through a
//! sibling leaf, never through `mod.rs`).
//! - `state.rs`: [`AppState`], [`ServerOptions`], [`Shared`]: what every handler receives.
//! - `error.rs`: [`ApiError`], the one error type, and its status codes.
//! - [`auth`]: users, sessions, API tokens, roles and tenant scopes
//!   (`auth/`: `principal.rs`, `accounts.rs`, `tokens.rs`, `sessions.rs`; `mod.rs` re-exports).
//! - `access.rs`: looking up what a caller may see (other tenants' data is "not found").
//! - `queries.rs`: the reads `json`, `pages` and `export` share (the fleet, an instance's
//!   backups, a cycle, alerts) and the fleet filter.
//! - [`actions`]: enrol, stop, resume, backup now, download, reveal — audited — and their JSON
//!   routes (`actions/`: `mod.rs`, `audit.rs` (the audit record, a leaf), `download.rs`).
//! - `cache.rs`: rendered fleet answers, kept until the views move on.
//! - [`json`]: the JSON reads ([`json::ROUTES`] lists every API route; `schemas/openapi.json`
//!   documents them).
//! - `export.rs`: CSV exports.
//! - `streamed.rs`: lists that grow with history, written a page at a time as they are read.
//! - [`pages`]: the server-rendered web pages (`pages/`: `mod.rs` the routes, `layout.rs` what
//!   every page shares, `fleet.rs`, `instance.rs`, `sign_in.rs`), from the askama templates in
//!   `api/templates/` (a base layout, the ladder and status badges as shared macros); the CSS
//!   and JavaScript are `api/assets/`, compiled into the binary.
//! - `ops.rs`: `/healthz`, `/metrics` and the live update stream.
//! - `headers.rs`: security headers on every response.
//! - [`throttle`]: sign-in throttling.
//!
//! [`router`] merges each module's own `router()` (json, actions, export, pages, ops).
//!
//! # Serving
//! [`serve`] runs HTTP/1.1 connections itself (not `axum::serve`) so that it can bound them:
//! a request's head must arrive within [`ServerOptions::header_timeout`] (this also closes idle
//! keep-alive connections: the wait for the next head is timed the same way), its body within
//! [`ServerOptions::body_timeout`], and each request sees its client's address (sign-in
//! throttling).

mod access;
pub mod actions;
pub mod auth;
mod cache;
mod error;
mod export;
mod headers;
pub mod json;
mod ops;
pub mod pages;
mod queries;
mod state;
mod streamed;
pub mod throttle;

pub use error::ApiError;
pub use state::{AppState, ServerOptions, Shared};

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every route: JSON API, pages, operations.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(json::router())
        .merge(actions::router())
        .merge(export::router())
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

/// A request body that fails unless it is all there within `limit`. (One deadline for the whole
/// body, so a client trickling a byte a second still fails: `tokio_stream`'s `timeout` and
/// tower-http's body timeout restart their clock at every chunk, which a trickle defeats.)
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
