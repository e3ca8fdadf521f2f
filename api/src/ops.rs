//! Operations: `/healthz` (public: is the read side following the log), `/metrics` (public,
//! Prometheus text: counts only, no names or ids) and the live update stream (SSE) of ladder
//! changes, filtered to the caller's tenants.

use std::convert::Infallible;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use futures_util::Stream;
use restorable_domain::ids::TenantId;
use restorable_projections::fleet::Status;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::Principal;
use crate::queries::status_param;
use crate::state::Shared;

/// `/healthz`, `/metrics` and the live update stream.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/stream", get(stream))
}

async fn healthz(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "store": state.pipeline.store.backend_name(),
        "position": state.read.position(),
    }))
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let now = Utc::now();
    let (statuses, cycles, open_alerts) = {
        let model = state.read.read();
        let statuses: Vec<Status> = model
            .fleet
            .rows()
            .iter()
            .map(|row| row.status(now))
            .collect();
        let cycles: u64 = model.fleet.rows().iter().map(|row| row.cycles).sum();
        let open_alerts = model
            .alerts
            .rows()
            .iter()
            .filter(|a| a.resolved_at.is_none())
            .count();
        (statuses, cycles, open_alerts)
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP restorable_instances Enrolled instances by status."
    );
    let _ = writeln!(text, "# TYPE restorable_instances gauge");
    for status in Status::ALL {
        let n = statuses.iter().filter(|s| **s == status).count();
        let name = status_param(status);
        let _ = writeln!(text, "restorable_instances{{status=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        text,
        "# HELP restorable_alerts_open Alerts raised and not resolved."
    );
    let _ = writeln!(text, "# TYPE restorable_alerts_open gauge");
    let _ = writeln!(text, "restorable_alerts_open {open_alerts}");
    let _ = writeln!(
        text,
        "# HELP restorable_cycles_total Backup cycles started."
    );
    let _ = writeln!(text, "# TYPE restorable_cycles_total counter");
    let _ = writeln!(text, "restorable_cycles_total {cycles}");
    let _ = writeln!(
        text,
        "# HELP restorable_read_model_position Last event folded into the views."
    );
    let _ = writeln!(text, "# TYPE restorable_read_model_position gauge");
    let _ = writeln!(
        text,
        "restorable_read_model_position {}",
        state.read.position()
    );
    // Read per scrape (one COUNT); left out when the store does not answer.
    match state.pipeline.store.pending_dead_letters().await {
        Ok(pending) => {
            let _ = writeln!(
                text,
                "# HELP restorable_dead_letters_pending Events a consumer gave up on, not replayed yet."
            );
            let _ = writeln!(text, "# TYPE restorable_dead_letters_pending gauge");
            let _ = writeln!(text, "restorable_dead_letters_pending {pending}");
        }
        Err(error) => tracing::warn!(%error, "/metrics: counting the dead letters failed"),
    }
    match state.pipeline.store.operations_alerts(true).await {
        Ok(open) => {
            let _ = writeln!(
                text,
                "# HELP restorable_operations_alerts_open Operations alerts raised and not resolved (dead letters, a held relay)."
            );
            let _ = writeln!(text, "# TYPE restorable_operations_alerts_open gauge");
            let _ = writeln!(text, "restorable_operations_alerts_open {}", open.len());
        }
        Err(error) => tracing::warn!(%error, "/metrics: listing the operations alerts failed"),
    }
    let window = state.pipeline.settings.recheck_window;
    let since = (now - window).timestamp_millis();
    match state.pipeline.store.recheck_coverage(None, since).await {
        Ok(coverage) => write_recheck_coverage(&mut text, &coverage, now.timestamp_millis()),
        Err(error) => tracing::warn!(%error, "/metrics: reading the re-check coverage failed"),
    }
    let held = restorable_pipeline::transport::nats::relay::HELD
        .load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        text,
        "# HELP restorable_relay_held 1 while this process's NATS relay is held (a batch keeps failing)."
    );
    let _ = writeln!(text, "# TYPE restorable_relay_held gauge");
    let _ = writeln!(text, "restorable_relay_held {}", u8::from(held));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

/// The re-check coverage as gauges: copies watched, proven within the window, their share,
/// failing, and the age of the oldest proof (0 with no copies).
fn write_recheck_coverage(
    text: &mut String,
    coverage: &restorable_pipeline::store::RecheckCoverage,
    now_ms: i64,
) {
    let oldest_age = coverage
        .oldest_proof
        .map_or(0, |proof| (now_ms - proof).max(0) / 1000);
    for (name, help, value) in [
        (
            "restorable_recheck_copies",
            "Stored copies watched by the rotating re-checks.",
            coverage.copies.to_string(),
        ),
        (
            "restorable_recheck_proven",
            "Stored copies proven intact within the re-check window.",
            coverage.proven.to_string(),
        ),
        (
            "restorable_recheck_coverage_ratio",
            "Share of stored copies proven intact within the re-check window (1 with none).",
            format!("{:.6}", coverage.share()),
        ),
        (
            "restorable_recheck_failing",
            "Stored copies whose last re-check failed.",
            coverage.failing.to_string(),
        ),
        (
            "restorable_recheck_oldest_proof_age_seconds",
            "Age of the oldest proof of any stored copy (0 with none).",
            oldest_age.to_string(),
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {value}");
    }
}

/// The live update stream: one SSE event per changed fleet, backups or alerts row the caller
/// may see (`event:` is the view, `data:` the row as JSON). It ends when the session or token it
/// was opened with does (sign-out, revocation, expiry, a removed user or a password reset):
/// checked at once when this process ends a session, and every
/// [`crate::ServerOptions::stream_recheck`] otherwise (another process, the command line).
async fn stream(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.read.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // The task feeds the stream; it ends when the client leaves (a send fails) or the
    // credential does.
    tokio::spawn(async move {
        let mut recheck = tokio::time::interval(state.options.stream_recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.tick().await;
        loop {
            let received = tokio::select! {
                received = changes.recv() => received,
                () = state.credentials_changed.notified() => {
                    if !still_valid(&state, &headers).await { return; }
                    continue;
                }
                _ = recheck.tick() => {
                    if !still_valid(&state, &headers).await { return; }
                    continue;
                }
            };
            match received {
                Ok(changed) => {
                    for row in changed.rows {
                        let visible = TenantId::new(&row.tenant_id)
                            .map(|t| who.scope.allows(&t))
                            .unwrap_or(false);
                        if visible && row.view != "audit" {
                            let event = Event::default().event(row.view).data(row.doc);
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let event = Event::default().event("resync").data("{}");
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

/// Whether the stream's credential still holds (a store failure keeps it: the next check
/// decides).
async fn still_valid(state: &Shared, headers: &HeaderMap) -> bool {
    match crate::auth::identify_headers(headers, &state.pipeline.store).await {
        Ok(found) => {
            if found.is_none() {
                tracing::info!("a live stream ended: its session or token no longer holds");
            }
            found.is_some()
        }
        Err(error) => {
            tracing::warn!(%error, "a live stream could not check its credential");
            true
        }
    }
}
