//! The things people do, shared by the JSON API and the pages: enrol, stop, resume, backup
//! now (administrators), download, acknowledge and snooze an alert (administrators and owners)
//! and reveal a backup password (owners only). Each checks visibility first (another tenant's id is "not found"), then the
//! role, and records an `ActionRecorded` event in the tenant's audit trail.

mod alerts;
mod audit;
mod download;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use restorable_domain::audit::AuditAction;

use restorable_domain::ids::{CycleId, InstanceId, TenantId};
use restorable_domain::instance::{InstanceCommand, RestorePolicy, RestoreSelection, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pipeline::enrolment::{self, EnrolRequest};
use restorable_pipeline::pipeline::PbxCredentials;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::access;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::{AppState, Shared};
use audit::record;

pub use alerts::{act_on_alert, AlertAction, SnoozeBody};
pub use download::{checked_against, download, Expected};

/// The JSON writes (and the download): enrol, stop, resume, back up now, download, reveal,
/// acknowledge and snooze an alert.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/v1/instances", post(enrol_route))
        .route("/api/v1/instances/{instance_id}/stop", post(stop))
        .route("/api/v1/instances/{instance_id}/resume", post(resume))
        .route("/api/v1/instances/{instance_id}/remove", post(remove))
        .route(
            "/api/v1/instances/{instance_id}/backup-now",
            post(backup_now),
        )
        .route("/api/v1/cycles/{cycle_id}/download", get(download_route))
        .route("/api/v1/cycles/{cycle_id}/reveal-password", post(reveal))
        .route(
            "/api/v1/alerts/{alert_id}/acknowledge",
            post(acknowledge_route),
        )
        .route("/api/v1/alerts/{alert_id}/snooze", post(snooze_route))
}

/// An enrolment request. `client_secret` is sealed at once and never echoed or logged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// Tenant slug.
    pub tenant: String,
    /// Instance name, unique within the tenant.
    pub name: String,
    /// Base URL of the PBX API.
    pub url: String,
    /// The PBX FQDN (default: the URL's host).
    pub fqdn: Option<String>,
    /// API client id.
    pub client_id: String,
    /// API client secret.
    pub client_secret: SecretString,
    /// Minutes between scheduled backups (default: a day).
    pub interval_minutes: Option<u32>,
    /// Restore-test every Nth verified cycle (default 7).
    pub restore_every: Option<u32>,
    /// Restore-test when the last Restore-Tested copy is this many hours old (default 168).
    pub restore_max_age_hours: Option<u32>,
    /// The restore-time target in minutes, 1 to 1440 (default 15).
    pub restore_target_minutes: Option<u32>,
    /// Restore-test a copy drawn at random among the Verified copies of the last N days (1 to
    /// 366) instead of always the newest.
    pub restore_random_within_days: Option<u32>,
}

/// Enrols an instance; returns its id.
///
/// # Errors
/// 404 for a tenant outside the caller's scope, 403 unless administrator, 400 for bad input.
pub async fn enrol(
    state: &AppState,
    who: &Principal,
    body: EnrolBody,
) -> Result<InstanceId, ApiError> {
    let tenant = TenantId::new(&body.tenant).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !who.scope.allows(&tenant) {
        return Err(ApiError::NotFound);
    }
    who.require(&[Role::Administrator])?;
    let restore_policy = restore_policy(&body);
    let fqdn = match body.fqdn {
        Some(fqdn) => fqdn,
        None => url_host(&body.url)?,
    };
    if body.name.trim().is_empty() {
        return Err(ApiError::BadRequest("the instance needs a name".into()));
    }
    let request = EnrolRequest {
        tenant: tenant.clone(),
        name: body.name,
        fqdn,
        api_url: body.url,
        credentials: PbxCredentials {
            client_id: SecretString::from(body.client_id),
            client_secret: body.client_secret,
        },
        schedule: Schedule {
            interval_minutes: body.interval_minutes.unwrap_or(24 * 60),
        },
        restore_policy,
    };
    // Repointing an enrolled instance is audited (`endpoint_changed`) under the caller's name;
    // plain http to a host that is not loopback is refused here (only the CLI can allow it).
    let options = enrolment::EnrolOptions {
        actor: who.actor.clone(),
        allow_insecure_http: false,
    };
    let id = enrolment::enrol_with(&state.pipeline, request, &options)
        .await
        .map_err(|e| match e {
            enrolment::EnrolmentError::Store(s) => ApiError::from(s),
            enrolment::EnrolmentError::Endpoint(e) => ApiError::BadRequest(e.to_string()),
            // As the domain's own refusal of the same values would be (409).
            enrolment::EnrolmentError::Policy(e) => ApiError::Conflict(e.to_string()),
            other => ApiError::internal(other),
        })?;
    record(
        state,
        who,
        &tenant,
        AuditAction::Enrol,
        Some(id),
        None,
        None,
    )
    .await?;
    Ok(id)
}

/// The body's restore policy: each part given, or its default. Out-of-range values are the
/// domain's to refuse (409, as for the CLI).
fn restore_policy(body: &EnrolBody) -> RestorePolicy {
    let default = RestorePolicy::default();
    RestorePolicy {
        every_nth_verified: body.restore_every.unwrap_or(default.every_nth_verified),
        max_age_hours: body.restore_max_age_hours.unwrap_or(default.max_age_hours),
        target_minutes: body
            .restore_target_minutes
            .unwrap_or(default.target_minutes),
        selection: RestoreSelection::within_days(body.restore_random_within_days),
    }
}

fn url_host(url: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("{url:?} is not an http(s) URL"));
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', ':', '?']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host.to_owned())
}

/// Stop, resume or back up now; a form names them `stop`, `resume` and `backup-now` (anything
/// else fails to parse: 400 before any handler runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceAction {
    /// Stop managed backups.
    Stop,
    /// Resume them.
    Resume,
    /// Open a cycle now.
    BackupNow,
    /// Offboard it: stopped for good, its copies and credentials removed after the grace.
    Remove,
}

/// Stops, resumes or backs up an instance now; a backup returns the new cycle.
///
/// # Errors
/// 404 if not visible, 403 unless administrator, 409 if the instance refuses (stopped, a cycle
/// already in flight).
pub async fn act_on_instance(
    state: &AppState,
    who: &Principal,
    instance: &str,
    action: InstanceAction,
) -> Result<Option<CycleId>, ApiError> {
    let row = access::instance(state, who, instance)?;
    who.require(&[Role::Administrator])?;
    let id = row.instance_id.to_string();
    let store = &state.pipeline.store;
    let now = Utc::now();
    let (audit, cycle) = match action {
        InstanceAction::Stop => {
            store
                .instance(&id, InstanceCommand::Stop { at: now })
                .await?;
            (AuditAction::Stop, None)
        }
        InstanceAction::Resume => {
            store
                .instance(&id, InstanceCommand::Resume { at: now })
                .await?;
            (AuditAction::Resume, None)
        }
        InstanceAction::Remove => {
            restorable_pipeline::retention::offboard(&state.pipeline, &id, now).await?;
            (AuditAction::RemoveInstance, None)
        }
        InstanceAction::BackupNow => {
            let cycle = enrolment::open_cycle(&state.pipeline, row.instance_id, Trigger::Manual)
                .await
                .map_err(|e| match e {
                    enrolment::EnrolmentError::Store(s) => ApiError::from(s),
                    other => ApiError::internal(other),
                })?;
            (AuditAction::BackupNow, Some(cycle))
        }
    };
    record(
        state,
        who,
        &row.tenant_id,
        audit,
        Some(row.instance_id),
        cycle,
        None,
    )
    .await?;
    Ok(cycle)
}

/// Reveals the backup password of a cycle's key version (owners only).
///
/// # Errors
/// 404 if not visible or never stored, 403 unless owner.
pub async fn reveal_password(
    state: &AppState,
    who: &Principal,
    cycle: &str,
) -> Result<(u32, SecretString), ApiError> {
    let row = access::cycle(state, who, cycle).await?;
    who.require(&[Role::Owner])?;
    let version = row.key_version.ok_or(ApiError::NotFound)?;
    let password = state
        .pipeline
        .tenant_password(&row.tenant_id, version)
        .await
        .map_err(ApiError::Internal)?;
    record(
        state,
        who,
        &row.tenant_id,
        AuditAction::RevealPassword,
        Some(row.instance_id),
        Some(row.cycle_id),
        Some(version),
    )
    .await?;
    Ok((version, password))
}

// The routes: visibility and role come before the form token, so another tenant's id is a
// 404 whatever the request carries.

/// The form token header of cookie-authenticated writes.
fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok())
}

async fn enrol_route(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    body: Result<Json<EnrolBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    who.check_csrf(csrf_header(&headers))?;
    // The body's own text is never echoed: it carries the PBX secret.
    let Json(body) =
        body.map_err(|e| ApiError::BadRequest(format!("enrolment body: {}", e.status())))?;
    let id = enrol(&state, &who, body).await?;
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
    who.require(&[Role::Administrator])?;
    who.check_csrf(csrf_header(&headers))?;
    let cycle = act_on_instance(&state, &who, &id, action).await?;
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

async fn remove(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(state, who, headers, id, InstanceAction::Remove).await
}

async fn backup_now(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(state, who, headers, id, InstanceAction::BackupNow).await
}

async fn download_route(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    download(&state, &who, &id)
        .await
        .map(IntoResponse::into_response)
}

async fn reveal(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    access::cycle(&state, &who, &id).await?;
    who.require(&[Role::Owner])?;
    who.check_csrf(csrf_header(&headers))?;
    let (version, password) = reveal_password(&state, &who, &id).await?;
    let body = serde_json::json!({ "key_version": version, "password": password.expose_secret() });
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}

/// An acknowledgement's body: an optional note.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeBody {
    /// What the acknowledger says.
    #[serde(default)]
    pub note: String,
}

/// A JSON body, or a 400 naming what is wrong with it.
fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

async fn on_alert(
    state: Shared,
    who: Principal,
    headers: HeaderMap,
    id: String,
    action: impl FnOnce() -> Result<AlertAction, ApiError>,
) -> Result<Response, ApiError> {
    // Visibility and role before the form token and the body (see `act`).
    access::alert(&state, &who, &id)?;
    who.require(&[Role::Administrator, Role::Owner])?;
    who.check_csrf(csrf_header(&headers))?;
    act_on_alert(&state, &who, &id, action()?).await?;
    Ok(Json(serde_json::json!({ "alert_id": id })).into_response())
}

async fn acknowledge_route(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<AcknowledgeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    on_alert(state, who, headers, id, || {
        json_body(body).map(|body| AlertAction::Acknowledge { note: body.note })
    })
    .await
}

async fn snooze_route(
    State(state): State<Shared>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<SnoozeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    on_alert(state, who, headers, id, || {
        json_body(body).and_then(|body| body.action(Utc::now()))
    })
    .await
}
