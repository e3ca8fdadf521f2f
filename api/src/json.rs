//! The JSON API under `/api/v1/`. Reads come from the projector's views filtered to the
//! caller's scope; writes go through [`crate::actions`]. [`ROUTES`] lists every route with its
//! method; `schemas/openapi.json` must document exactly these (a test checks it).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use restorable_pipeline::store::DeadLetter;
use restorable_projections::alerts::AlertRow;
use restorable_projections::audit::AuditRow;
use restorable_projections::backups::BackupRow;
use restorable_projections::fleet::{FleetRow, Status};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::access;
use crate::actions::{self, EnrolBody, InstanceAction};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::{export, ops, Shared};

/// Every route of the API: (method, path in OpenAPI form).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/fleet"),
    ("post", "/api/v1/instances"),
    ("get", "/api/v1/instances/{instance_id}"),
    ("get", "/api/v1/instances/{instance_id}/backups"),
    ("post", "/api/v1/instances/{instance_id}/stop"),
    ("post", "/api/v1/instances/{instance_id}/resume"),
    ("post", "/api/v1/instances/{instance_id}/backup-now"),
    ("get", "/api/v1/cycles/{cycle_id}"),
    ("get", "/api/v1/cycles/{cycle_id}/download"),
    ("post", "/api/v1/cycles/{cycle_id}/reveal-password"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/dead-letters"),
    ("get", "/api/v1/export/instances.csv"),
    ("get", "/api/v1/export/alerts.csv"),
    ("get", "/api/v1/export/backups.csv"),
    ("get", "/api/v1/stream"),
    ("get", "/healthz"),
    ("get", "/metrics"),
];

/// The JSON routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/fleet", get(fleet))
        .route("/api/v1/instances", post(enrol))
        .route("/api/v1/instances/{instance_id}", get(instance))
        .route("/api/v1/instances/{instance_id}/backups", get(backups))
        .route("/api/v1/instances/{instance_id}/stop", post(stop))
        .route("/api/v1/instances/{instance_id}/resume", post(resume))
        .route(
            "/api/v1/instances/{instance_id}/backup-now",
            post(backup_now),
        )
        .route("/api/v1/cycles/{cycle_id}", get(cycle))
        .route("/api/v1/cycles/{cycle_id}/download", get(download))
        .route("/api/v1/cycles/{cycle_id}/reveal-password", post(reveal))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/export/instances.csv", get(export::instances))
        .route("/api/v1/export/alerts.csv", get(export::alerts))
        .route("/api/v1/export/backups.csv", get(export::backups))
        .route("/api/v1/stream", get(ops::stream))
}

/// Filters of the fleet.
#[derive(Debug, Default, Deserialize)]
pub struct FleetFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this status: `healthy`, `needs_attention` or `stopped`.
    pub status: Option<String>,
}

/// A fleet row with its status now.
#[derive(Serialize)]
pub struct FleetEntry {
    /// The row.
    #[serde(flatten)]
    pub row: FleetRow,
    /// Healthy, Needs attention or Stopped.
    pub status: Status,
}

/// The fleet rows the caller may see, filtered.
///
/// # Errors
/// 400 for an unknown status.
pub fn fleet_entries(
    state: &crate::AppState,
    who: &Principal,
    filter: &FleetFilter,
) -> Result<Vec<FleetEntry>, ApiError> {
    Ok(fleet_window(state, who, filter, 0, usize::MAX)?.entries)
}

/// Some of the fleet rows that match a filter, and how many match in all.
pub struct FleetWindow {
    /// How many rows match the filter.
    pub total: usize,
    /// The matching rows from the window's start, at most its length.
    pub entries: Vec<FleetEntry>,
}

/// The `take` matching rows after the first `skip`, in the fleet's order (tenant, then name);
/// only those rows are copied.
///
/// # Errors
/// 400 for an unknown status.
pub fn fleet_window(
    state: &crate::AppState,
    who: &Principal,
    filter: &FleetFilter,
    skip: usize,
    take: usize,
) -> Result<FleetWindow, ApiError> {
    let wanted = match filter.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("healthy") => Some(Status::Healthy),
        Some("needs_attention") => Some(Status::NeedsAttention),
        Some("stopped") => Some(Status::Stopped),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown status {other:?} (healthy, needs_attention, stopped)"
            )))
        }
    };
    let tenant = filter.tenant.as_deref().filter(|t| !t.is_empty());
    let now = Utc::now();
    let model = state.read.read();
    let mut window = FleetWindow {
        total: 0,
        entries: Vec::new(),
    };
    let matching = model
        .fleet
        .rows()
        .into_iter()
        .filter(|r| who.scope.allows(&r.tenant_id))
        .filter(|r| tenant.is_none_or(|t| r.tenant_id.as_str() == t))
        .map(|r| (r, r.status(now)))
        .filter(|(_, status)| wanted.is_none_or(|w| *status == w));
    for (row, status) in matching {
        if window.total >= skip && window.entries.len() < take {
            window.entries.push(FleetEntry {
                row: row.clone(),
                status,
            });
        }
        window.total += 1;
    }
    Ok(window)
}

async fn fleet(
    State(state): State<Shared>,
    who: Principal,
    Query(filter): Query<FleetFilter>,
) -> Result<Response, ApiError> {
    let key = crate::AppState::fleet_key("fleet.json", &who, &filter, 0);
    let minute = Utc::now().timestamp() / 60;
    let body = state
        .cache
        .get_or_render(key, state.read.position(), minute, || {
            let entries = fleet_entries(&state, &who, &filter)?;
            serde_json::to_vec(&entries)
                .map(axum::body::Bytes::from)
                .map_err(ApiError::internal)
        })
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn instance(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<FleetEntry>, ApiError> {
    let row = access::instance(&state, &who, &id)?;
    Ok(Json(FleetEntry {
        status: row.status(Utc::now()),
        row,
    }))
}

/// Every cycle of a visible instance, newest first.
///
/// # Errors
/// 404 if not visible.
pub fn backup_rows(
    state: &crate::AppState,
    who: &Principal,
    instance: &str,
) -> Result<Vec<BackupRow>, ApiError> {
    let row = access::instance(state, who, instance)?;
    let model = state.read.read();
    Ok(model
        .backups
        .of_instance(&row.instance_id)
        .into_iter()
        .cloned()
        .collect())
}

async fn backups(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<BackupRow>>, ApiError> {
    backup_rows(&state, &who, &id).map(Json)
}

/// The form token header of cookie-authenticated writes.
fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

async fn enrol(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    body: Result<Json<EnrolBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    who.check_csrf(csrf_header(&headers))?;
    // The body's own text is never echoed: it carries the PBX secret.
    let Json(body) =
        body.map_err(|e| ApiError::BadRequest(format!("enrolment body: {}", e.status())))?;
    let id = actions::enrol(&state, &who, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "instance_id": id })),
    )
        .into_response())
}

async fn act(
    state: Shared,
    who: Principal,
    headers: HeaderMap,
    id: String,
    action: InstanceAction,
) -> Result<Response, ApiError> {
    // Visibility and role come before the form token, so another tenant's id is a 404 whatever
    // the request carries.
    access::instance(&state, &who, &id)?;
    who.require(&[crate::auth::Role::Administrator])?;
    who.check_csrf(csrf_header(&headers))?;
    let cycle = actions::act_on_instance(&state, &who, &id, action).await?;
    let status = if cycle.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "instance_id": id, "cycle_id": cycle })),
    )
        .into_response())
}

async fn stop(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(state, who, headers, id, InstanceAction::Stop).await
}

async fn resume(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(state, who, headers, id, InstanceAction::Resume).await
}

async fn backup_now(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(state, who, headers, id, InstanceAction::BackupNow).await
}

/// One event of a cycle's history.
#[derive(Serialize)]
pub struct HistoryEntry {
    /// Order within the cycle.
    pub sequence: i64,
    /// e.g. `Captured`.
    pub event_type: String,
    /// e.g. `1.0`.
    pub event_version: String,
    /// The event as stored.
    pub payload: serde_json::Value,
}

/// A cycle and its event history, oldest first.
///
/// # Errors
/// 404 if not visible.
pub async fn cycle_detail(
    state: &crate::AppState,
    who: &Principal,
    id: &str,
) -> Result<(BackupRow, Vec<HistoryEntry>), ApiError> {
    let row = access::cycle(state, who, id)?;
    let history = state
        .pipeline
        .store
        .history("BackupCycle", &row.cycle_id.to_string())
        .await?
        .into_iter()
        .map(|e| HistoryEntry {
            sequence: e.sequence,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
            event_type: e.event_type,
            event_version: e.event_version,
        })
        .collect();
    Ok((row, history))
}

async fn cycle(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (row, events) = cycle_detail(&state, &who, &id).await?;
    Ok(Json(serde_json::json!({ "cycle": row, "events": events })))
}

async fn download(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    actions::download(&state, &who, &id)
        .await
        .map(IntoResponse::into_response)
}

async fn reveal(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    access::cycle(&state, &who, &id)?;
    who.require(&[crate::auth::Role::Owner])?;
    who.check_csrf(csrf_header(&headers))?;
    let (version, password) = actions::reveal_password(&state, &who, &id).await?;
    let body = serde_json::json!({ "key_version": version, "password": password.expose_secret() });
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// Alerts the caller may see, newest first.
pub fn alert_rows(state: &crate::AppState, who: &Principal) -> Vec<AlertRow> {
    let model = state.read.read();
    model
        .alerts
        .rows()
        .into_iter()
        .filter(|a| who.scope.allows(&a.tenant_id))
        .cloned()
        .collect()
}

async fn alerts(State(state): State<Shared>, who: Principal) -> Json<Vec<AlertRow>> {
    Json(alert_rows(&state, &who))
}

async fn audit(State(state): State<Shared>, who: Principal) -> Json<Vec<AuditRow>> {
    let model = state.read.read();
    Json(
        model
            .audit
            .rows()
            .filter(|a| who.scope.allows(&a.action.tenant_id))
            .cloned()
            .collect(),
    )
}

/// The pending dead letters (events a consumer gave up on), oldest first: for the service
/// provider's administrators only (role administrator, scope `*`), since a letter names
/// aggregates of every tenant.
async fn dead_letters(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    who.require(&[crate::auth::Role::Administrator])?;
    if who.scope != crate::auth::Scope::All {
        return Err(ApiError::Forbidden(
            "dead letters are for administrators of every tenant ('*')",
        ));
    }
    Ok(Json(state.pipeline.store.dead_letters(true).await?))
}
