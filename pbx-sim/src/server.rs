//! The HTTP side of the simulated PBX: axum routes for the 3CX XAPI v20 calls a backup client
//! makes (token, backups, counts, system status, download), bearer-token checks, and the
//! server-side faults.
//!
//! Paths of the form `Backups('NAME.zip')` and `Backups('NAME.zip')/Pbx.GetBackupExtras()` cannot
//! be expressed as axum routes (a parameter cannot be part of a segment), so they are served by
//! the fallback handler, which parses the (percent-decoded) path itself.
//!
//! Error bodies for XAPI calls look like `{"error": {"code": "...", "message": "..."}}`; the
//! token endpoint answers OAuth-style `{"error": "invalid_client"}`. No response and no log line
//! ever contains the backup password a client sent.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::Utc;
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::archive::{self, BackupJob, BackupPassword};
use crate::database::PBX_VERSION;
use crate::native;
use crate::state::{BackupRecord, PbxState, StartRefusal, TOKEN_LIFETIME};
use crate::Fault;

type Shared = Arc<PbxState>;

/// Delay between chunks under [`Fault::SlowDownload`], and the number of chunks aimed at.
const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(50);
const SLOW_CHUNKS: u64 = 30;

/// Under [`Fault::EndlessTrickle`]: this many bytes, then this pause, for as long as it takes.
const TRICKLE_BYTES: usize = 16;
const TRICKLE_DELAY: Duration = Duration::from_millis(100);

/// Under [`Fault::HugeContentLength`]: the declared length (100 GiB).
const HUGE_CONTENT_LENGTH: u64 = 100 << 30;

/// Builds the router of one PBX.
pub(crate) fn router(state: Shared) -> Router {
    let count_route = |collection: &'static str| {
        get(move |State(s): State<Shared>| async move { count(&s, collection) })
    };
    Router::new()
        .route("/connect/token", post(token))
        .route("/xapi/v1/Backups", get(list_backups))
        .route("/xapi/v1/Backups/Pbx.Backup", post(start_backup))
        .route(
            "/xapi/v1/Backups/Pbx.GetCanCreateBackup()",
            get(can_create_backup),
        )
        .route("/xapi/v1/BackupFiles/{name}", get(download))
        .route("/xapi/v1/SystemStatus", get(system_status))
        .route("/xapi/v1/BackupSettings", get(backup_settings))
        .route("/xapi/v1/Users", count_route("Users"))
        .route("/xapi/v1/Queues", count_route("Queues"))
        .route("/xapi/v1/RingGroups", count_route("RingGroups"))
        .route("/xapi/v1/Receptionists", count_route("Receptionists"))
        .route("/xapi/v1/Trunks", count_route("Trunks"))
        .route("/xapi/v1/Parameters", count_route("Parameters"))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_bearer,
        ))
        .with_state(state)
}

fn xapi_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn not_found() -> Response {
    xapi_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource")
}

/// Compares two secrets in constant time (for equal lengths).
fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

async fn require_bearer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/xapi/") {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token {
        Some(t) if s.token_valid(t) => next.run(req).await,
        _ => {
            let mut resp = xapi_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "a valid bearer token is required",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
}

async fn token(
    State(s): State<Shared>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let oauth_error =
        |status: StatusCode, error: &str| (status, Json(json!({ "error": error }))).into_response();
    let Ok(Form(req)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let id_ok = req
        .client_id
        .as_deref()
        .is_some_and(|id| same_secret(id, &s.config.client_id));
    let secret_ok = req
        .client_secret
        .as_deref()
        .is_some_and(|sec| same_secret(sec, &s.config.client_secret));
    if s.config.fault == Some(Fault::BadCredentials) || !id_ok || !secret_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    Json(json!({
        "access_token": s.issue_token(),
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn record_json(s: &PbxState, r: &BackupRecord) -> Value {
    let link = if s.config.fault == Some(Fault::OffOriginLink) {
        format!(
            "{}/{}",
            s.config.hostile_target.trim_end_matches('/'),
            r.file_name
        )
    } else {
        format!("/xapi/v1/BackupFiles/{}", r.file_name)
    };
    json!({
        "FileName": r.file_name,
        "CreationTime": r.created.to_rfc3339(),
        "Size": r.size,
        "DownloadLink": link,
    })
}

/// Under [`Fault::HugeJson`]: the answer of `GET Backups` never ends (it stops at 1 GiB).
const HUGE_JSON_CHUNKS: usize = 16 * 1024;

async fn list_backups(State(s): State<Shared>) -> Response {
    if s.config.fault == Some(Fault::HugeJson) {
        let entry =
            Bytes::from(r#"{"FileName":"padding.zip","Size":1,"DownloadLink":"/x"},"#.repeat(1024));
        let head =
            stream::once(async { Ok::<Bytes, io::Error>(Bytes::from_static(br#"{"value":["#)) });
        let endless = stream::iter(std::iter::repeat_n(entry, HUGE_JSON_CHUNKS).map(Ok));
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(head.chain(endless)),
        )
            .into_response();
    }
    let native = native::newest(s.config.fault, Utc::now());
    let value: Vec<Value> = std::iter::once(&native)
        .chain(s.list().iter())
        .map(|r| record_json(&s, r))
        .collect();
    Json(json!({ "value": value })).into_response()
}

async fn can_create_backup(State(s): State<Shared>) -> Response {
    Json(json!({ "value": s.can_create_backup() })).into_response()
}

/// `EncryptBackupPassword`: `{"Value": "...", "Concealed": bool}` or, on older builds, a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum PasswordField {
    Plain(String),
    Wrapped {
        #[serde(rename = "Value")]
        value: Option<String>,
    },
}

#[derive(Deserialize, Default)]
struct Contents {
    #[serde(rename = "EncryptBackup")]
    encrypt_backup: Option<bool>,
    #[serde(rename = "EncryptBackupPassword")]
    encrypt_backup_password: Option<PasswordField>,
}

#[derive(Deserialize)]
struct Description {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Contents", default)]
    contents: Contents,
}

#[derive(Deserialize)]
struct BackupRequest {
    description: Description,
}

/// A backup file name this PBX accepts: `<letters, digits, ' ', '-', '_', '.'>.zip`.
pub(crate) fn valid_backup_name(name: &str) -> bool {
    name.len() > 4
        && name.len() <= 128
        && name.ends_with(".zip")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
}

async fn start_backup(State(s): State<Shared>, body: Bytes) -> Response {
    const INVALID: &str = "WARNINGS.XAPI.INVALID_REQUEST";
    if s.config.fault == Some(Fault::ServerError) {
        return xapi_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "the backup service failed",
        );
    }
    // serde_json's messages can quote the input, so only the position is reported.
    let req: BackupRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => {
            let msg = format!(
                "malformed backup request (line {}, column {})",
                e.line(),
                e.column()
            );
            return xapi_error(StatusCode::BAD_REQUEST, INVALID, &msg);
        }
    };
    let Description { name, contents } = req.description;
    if !valid_backup_name(&name) {
        return xapi_error(
            StatusCode::BAD_REQUEST,
            INVALID,
            "Name must be 1-124 letters, digits, ' ', '-', '_' or '.' followed by .zip",
        );
    }
    let password = match contents.encrypt_backup_password {
        Some(PasswordField::Plain(p)) | Some(PasswordField::Wrapped { value: Some(p) }) => Some(p),
        _ => None,
    }
    .filter(|p| !p.is_empty());
    let encrypt = contents.encrypt_backup.unwrap_or(password.is_some());
    let password = match (encrypt, password) {
        (true, Some(p)) => Some(BackupPassword::new(p)),
        (true, None) => {
            return xapi_error(
                StatusCode::BAD_REQUEST,
                INVALID,
                "EncryptBackup needs a non-empty EncryptBackupPassword",
            )
        }
        (false, _) => None,
    };
    match s.begin_backup(&name) {
        Ok(()) => {}
        Err(StartRefusal::Duplicate) => {
            return xapi_error(
                StatusCode::BAD_REQUEST,
                "WARNINGS.XAPI.DUPLICATE",
                "a backup with this name already exists",
            )
        }
        Err(StartRefusal::InProgress) => {
            return xapi_error(
                StatusCode::BAD_REQUEST,
                "WARNINGS.XAPI.BACKUP_IN_PROGRESS",
                "another backup is being made",
            )
        }
    }
    if s.config.fault != Some(Fault::NeverFinishes) {
        tokio::spawn(make_backup(s.clone(), name, password));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Waits the configured delay, writes the archive on a blocking thread, then lists it.
async fn make_backup(s: Shared, name: String, password: Option<BackupPassword>) {
    tokio::time::sleep(s.config.backup_delay).await;
    let password = password.filter(|_| s.config.fault != Some(Fault::UnencryptedBackup));
    let encrypted = password.is_some();
    let st = s.clone();
    let file_name = name.clone();
    let written = tokio::task::spawn_blocking(move || {
        let dest = st.dir.join(&file_name);
        let fqdn = format!("{}.pbx.example", st.config.name);
        archive::write_backup(&BackupJob {
            db: &st.db,
            fqdn: &fqdn,
            seed: st.config.seed,
            padding_bytes: st.config.padding_bytes,
            fault: st.config.fault,
            password: password.as_ref(),
            dest: &dest,
            cancel: &st.stopping,
        })
    })
    .await;
    let record = match written {
        Ok(Ok(size)) => {
            tracing::info!(pbx = %s.config.name, backup = %name, size, "backup written");
            Some(BackupRecord {
                file_name: name,
                created: Utc::now(),
                size,
                encrypted,
            })
        }
        Ok(Err(e)) => {
            tracing::warn!(pbx = %s.config.name, backup = %name, error = %e, "backup failed");
            None
        }
        Err(e) => {
            tracing::warn!(pbx = %s.config.name, backup = %name, error = %e, "backup task failed");
            None
        }
    };
    s.end_backup(record);
}

async fn download(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(record) = s.find(&name) else {
        return not_found();
    };
    if s.config.fault == Some(Fault::RedirectLoopback) {
        return (
            StatusCode::FOUND,
            [(header::LOCATION, s.config.hostile_target.clone())],
        )
            .into_response();
    }
    let file = match tokio::fs::File::open(s.dir.join(&record.file_name)).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return not_found(),
        Err(e) => {
            tracing::warn!(pbx = %s.config.name, backup = %name, error = %e, "cannot open backup");
            return xapi_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "cannot read the backup",
            );
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => {
            return xapi_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "cannot read the backup",
            )
        }
    };
    let body = match s.config.fault {
        Some(Fault::TruncatedDownload) => {
            let half = ReaderStream::new(file.take(len / 2));
            // The drop comes a moment after the first half, so the client has the headers and
            // those bytes (as when a real connection dies mid-transfer), not an empty answer.
            let broken = stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err::<Bytes, io::Error>(io::Error::other("simulated truncated download"))
            });
            Body::from_stream(half.chain(broken))
        }
        Some(Fault::EndlessTrickle) => {
            let trickle =
                ReaderStream::with_capacity(file, TRICKLE_BYTES).then(|item| async move {
                    tokio::time::sleep(TRICKLE_DELAY).await;
                    item
                });
            Body::from_stream(trickle)
        }
        Some(Fault::HugeContentLength) => {
            // The declared length is a lie the client must refuse before reading: it gets the
            // real bytes, then nothing more while the connection stays open (until the client
            // hangs up), far short of the announced 100 GiB.
            let headers = [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (header::CONTENT_LENGTH, HUGE_CONTENT_LENGTH.to_string()),
            ];
            let body = ReaderStream::new(file).chain(stream::pending());
            return (headers, Body::from_stream(body)).into_response();
        }
        Some(Fault::SlowDownload) => {
            let chunk = usize::try_from(len.div_ceil(SLOW_CHUNKS).max(256)).unwrap_or(usize::MAX);
            let slow = ReaderStream::with_capacity(file, chunk).then(|item| async move {
                tokio::time::sleep(SLOW_CHUNK_DELAY).await;
                item
            });
            Body::from_stream(slow)
        }
        _ => Body::from_stream(ReaderStream::with_capacity(file, 256 * 1024)),
    };
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_owned()),
        (header::CONTENT_LENGTH, len.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", record.file_name),
        ),
    ];
    (headers, body).into_response()
}

fn count(s: &PbxState, collection: &str) -> Response {
    let c = s.db.counts();
    let n = match collection {
        "Users" => c.extensions,
        "Queues" if s.config.fault == Some(Fault::ManifestMismatch) => c.queues + 1,
        "Queues" => c.queues,
        "RingGroups" => c.ring_groups,
        "Receptionists" => c.ivrs,
        "Trunks" => c.trunks,
        "Parameters" => c.settings,
        _ => return not_found(),
    };
    Json(json!({ "@odata.count": n, "value": [] })).into_response()
}

async fn backup_settings(State(s): State<Shared>) -> Response {
    Json(native::settings(s.config.fault)).into_response()
}

async fn system_status(State(s): State<Shared>) -> Response {
    Json(json!({
        "Version": PBX_VERSION,
        "FQDN": format!("{}.pbx.example", s.config.name),
        "BackupScheduled": true,
        "LastBackupDateTime": s.last_finished().map(|t| t.to_rfc3339()),
    }))
    .into_response()
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `Backups('NAME')` or `Backups('NAME')/Pbx.GetBackupExtras()` into the name and the
/// action (empty for the entity itself).
fn parse_backup_path(rest: &str) -> Option<(&str, &str)> {
    let inner = rest.strip_prefix("Backups('")?;
    let (name, after) = inner.split_once("')")?;
    let action = match after {
        "" => "",
        "/Pbx.GetBackupExtras()" => "extras",
        _ => return None,
    };
    Some((name, action))
}

async fn fallback(State(s): State<Shared>, method: Method, uri: Uri) -> Response {
    let Some(path) = percent_decode(uri.path()) else {
        return not_found();
    };
    let Some((name, action)) = path.strip_prefix("/xapi/v1/").and_then(parse_backup_path) else {
        return not_found();
    };
    match (method, action) {
        (Method::GET, "extras") => match s.find(name) {
            Some(r) => Json(json!({
                "Footprint": r.created.timestamp_millis(),
                "IsEncrypted": r.encrypted,
                "Version": PBX_VERSION,
            }))
            .into_response(),
            None => not_found(),
        },
        (Method::DELETE, "") => match s.remove(name) {
            Some(r) => {
                if let Err(e) = tokio::fs::remove_file(s.dir.join(&r.file_name)).await {
                    tracing::warn!(pbx = %s.config.name, backup = %name, error = %e, "cannot delete backup file");
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => not_found(),
        },
        (Method::GET, "") => match s.find(name) {
            Some(r) => Json(record_json(&s, &r)).into_response(),
            None => not_found(),
        },
        _ => xapi_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_paths_parse() {
        assert_eq!(
            parse_backup_path("Backups('a b.zip')"),
            Some(("a b.zip", ""))
        );
        assert_eq!(
            parse_backup_path("Backups('x.zip')/Pbx.GetBackupExtras()"),
            Some(("x.zip", "extras"))
        );
        assert_eq!(parse_backup_path("Backups('x.zip')/Pbx.Restore"), None);
        assert_eq!(parse_backup_path("Users"), None);
        assert_eq!(
            percent_decode("Backups(%27a%20b.zip%27)").as_deref(),
            Some("Backups('a b.zip')")
        );
        assert_eq!(percent_decode("bad%2"), None);
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_backup_name("nightly-2024_01.zip"));
        assert!(!valid_backup_name("../etc.zip"));
        assert!(!valid_backup_name("a/b.zip"));
        assert!(!valid_backup_name("x.tar"));
        assert!(!valid_backup_name(".zip"));
        assert!(!valid_backup_name("a'b.zip"));
    }
}
