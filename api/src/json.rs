//! The JSON reads under `/api/v1/`: the fleet, an instance, its backups, a cycle, alerts,
//! audit and dead letters, from the projector's views filtered to the caller's scope (through
//! [`crate::queries`]). The writes are [`crate::actions`]' routes, the CSV exports
//! [`crate::export`]'s and the live stream [`crate::ops`]'. [`ROUTES`] lists every route of the
//! API with its method; `schemas/openapi.json` must document exactly these (a test checks it).

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use restorable_pipeline::read_model;
use restorable_pipeline::store::DeadLetter;
use restorable_projections::backups::BackupRow;
use serde::de::DeserializeOwned;

use crate::access;
use crate::auth::{Principal, Role, Scope};
use crate::error::ApiError;
use crate::queries::{alert_list, backup_rows, cycle_detail, fleet_key};
pub use crate::queries::{fleet_entries, FleetEntry, FleetFilter, HistoryEntry};
use crate::state::Shared;
use crate::streamed;

/// Every route of the API: (method, path in OpenAPI form).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/fleet"),
    ("post", "/api/v1/instances"),
    ("get", "/api/v1/instances/{instance_id}"),
    ("get", "/api/v1/instances/{instance_id}/backups"),
    ("post", "/api/v1/instances/{instance_id}/stop"),
    ("post", "/api/v1/instances/{instance_id}/resume"),
    ("post", "/api/v1/instances/{instance_id}/backup-now"),
    // After the other instance actions: the authorization test runs the routes in this order.
    ("post", "/api/v1/instances/{instance_id}/remove"),
    ("get", "/api/v1/cycles/{cycle_id}"),
    ("get", "/api/v1/cycles/{cycle_id}/download"),
    ("post", "/api/v1/cycles/{cycle_id}/reveal-password"),
    ("get", "/api/v1/alerts"),
    ("post", "/api/v1/alerts/{alert_id}/acknowledge"),
    ("post", "/api/v1/alerts/{alert_id}/snooze"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/dead-letters"),
    ("get", "/api/v1/export/instances.csv"),
    ("get", "/api/v1/export/alerts.csv"),
    ("get", "/api/v1/export/backups.csv"),
    ("get", "/api/v1/export/audit.csv"),
    ("get", "/api/v1/stream"),
    ("get", "/healthz"),
    ("get", "/metrics"),
];

/// The JSON reads.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/fleet", get(fleet))
        .route("/api/v1/instances/{instance_id}", get(instance))
        .route("/api/v1/instances/{instance_id}/backups", get(backups))
        .route("/api/v1/cycles/{cycle_id}", get(cycle))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/dead-letters", get(dead_letters))
}

/// A query string parsed into `T` (enums and all), or a 400 in the API's error form before the
/// handler runs.
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

async fn fleet(
    State(state): State<Shared>,
    who: Principal,
    ApiQuery(filter): ApiQuery<FleetFilter>,
) -> Result<Response, ApiError> {
    let key = fleet_key("fleet.json", &who, &filter, 0);
    let minute = Utc::now().timestamp() / 60;
    let body = state
        .cache
        .get_or_render(key, state.read.position(), minute, || async {
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

async fn backups(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<BackupRow>>, ApiError> {
    backup_rows(&state, &who, &id).await.map(Json)
}

async fn cycle(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (row, events) = cycle_detail(&state, &who, &id).await?;
    Ok(Json(serde_json::json!({ "cycle": row, "events": events })))
}

/// Every alert the caller may see: those held in memory newest first, then the older resolved
/// ones from storage, written as they are read (see [`alert_list`]).
async fn alerts(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let list = alert_list(&state, &who);
    let body = streamed::json_array(&list.held, list.older).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The audit records the caller may see, newest first: a JSON array written a page at a time
/// as it is read (a row per audited action ever: see [`streamed`]).
async fn audit(State(state): State<Shared>, who: Principal) -> Result<Response, ApiError> {
    let pages = read_model::audit_pages(&state.pipeline.store, access::tenant_of(&who));
    let body = streamed::json_array(&[], pages).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The pending dead letters (events a consumer gave up on), oldest first: for the service
/// provider's administrators only (role administrator, scope `*`), since a letter names
/// aggregates of every tenant.
async fn dead_letters(
    State(state): State<Shared>,
    who: Principal,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    who.require(&[Role::Administrator])?;
    if who.scope != Scope::All {
        return Err(ApiError::Forbidden(
            "dead letters are for administrators of every tenant ('*')",
        ));
    }
    Ok(Json(state.pipeline.store.dead_letters(true).await?))
}
