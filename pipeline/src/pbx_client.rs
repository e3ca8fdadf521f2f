//! The PBX client port's production adapter: the 3CX XAPI (v20) calls the capture stage needs
//! (`reference/3cx.md`): OAuth client-credentials token, `Pbx.Backup`, `GET Backups`,
//! `GetCanCreateBackup`, `GetBackupExtras`, the OData counts for the manifest, download and
//! delete.
//!
//! Secrets (client secret, backup password, access token) are held in `secrecy` types and never
//! appear in errors: errors carry the call, the HTTP status and the PBX's error code only.
//!
//! The PBX is the customer's machine and is not trusted (it may be compromised or hostile):
//! - its URL must be `https`, except to a loopback address or with an instance's explicit
//!   `allow_insecure_http` ([`check_endpoint`]);
//! - every request stays on the enrolled origin (scheme, host, port): a `DownloadLink` or a
//!   redirect elsewhere is refused before anything is fetched from there
//!   ([`PbxError::OffOrigin`]);
//! - every call has an overall deadline, headers and body together ([`PbxLimits::call_deadline`]),
//!   so a trickle cannot hold a capture; a download's deadline is enforced by the capture stage
//!   while it streams ([`Download::deadline`]);
//! - JSON answers are read up to a cap ([`PbxLimits::max_json_bytes`]), never whole into memory;
//! - a download announcing more than the tenant's maximum backup size is refused before a byte
//!   of its body is read ([`PbxError::BackupTooLarge`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::TryStreamExt;
use reqwest::Url;
use restorable_domain::ids::TenantId;
use restorable_domain::ladder::ManifestCounts;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use crate::context::Deadline;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// How far the pipeline trusts a PBX: deadlines and size caps (`[pbx]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbxLimits {
    /// Overall deadline of one API call, from connecting to the last byte of the answer.
    pub call_deadline: Duration,
    /// Overall deadline of one backup download, scaled by its `Content-Length`.
    pub download_deadline: Deadline,
    /// The largest JSON answer read from a PBX.
    pub max_json_bytes: u64,
    /// The largest backup stored, unless its tenant has its own maximum.
    pub max_backup_bytes: u64,
    /// The tenants whose backups may be larger or must be smaller than `max_backup_bytes`.
    pub tenant_max_backup_bytes: HashMap<TenantId, u64>,
}

impl Default for PbxLimits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(2 * 60),
            download_deadline: Deadline::new(
                Duration::from_secs(30 * 60),
                Duration::from_secs(10 * 60),
            ),
            max_json_bytes: 4 * MIB,
            max_backup_bytes: 50 * GIB,
            tenant_max_backup_bytes: HashMap::new(),
        }
    }
}

impl PbxLimits {
    /// The largest backup stored for `tenant`.
    pub fn max_backup_for(&self, tenant: &TenantId) -> u64 {
        self.tenant_max_backup_bytes
            .get(tenant)
            .copied()
            .unwrap_or(self.max_backup_bytes)
    }
}

/// Why a PBX URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an absolute URL.
    #[error("the PBX URL is not an absolute URL ({0})")]
    NotAUrl(String),
    /// Neither `https` nor `http`.
    #[error("the PBX URL must be https (not {0})")]
    Scheme(String),
    /// A user name or password in the URL (it would end up in logs).
    #[error("the PBX URL must not carry a user name or password")]
    Userinfo,
    /// Plain `http` to a host that is not loopback, not explicitly allowed.
    #[error(
        "plain http to {0} would send the tenant's backup password in clear: use https, or \
         enrol the instance with allow_insecure_http (--allow-insecure-http)"
    )]
    InsecureHttp(String),
}

/// Whether `url`'s host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The origin of `url` (scheme, host, port) as a comparable key; `None` for an opaque origin
/// (which equals nothing, not even itself).
fn origin_key(url: &Url) -> Option<String> {
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The origin of a URL as shown to people (`https://pbx.example:5001`), or the text itself when
/// it is not a URL.
pub fn origin_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

/// Checks a PBX base URL: `https`, or `http` to a loopback address, or `http` anywhere when
/// `allow_insecure_http`; no credentials in it.
///
/// # Errors
/// [`EndpointError`] naming what is wrong.
pub fn check_endpoint(api_url: &str, allow_insecure_http: bool) -> Result<Url, EndpointError> {
    let url = Url::parse(api_url).map_err(|e| EndpointError::NotAUrl(e.to_string()))?;
    if url.host().is_none() {
        return Err(EndpointError::NotAUrl("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Userinfo);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(EndpointError::InsecureHttp(
            url.origin().ascii_serialization(),
        )),
        other => Err(EndpointError::Scheme(other.to_owned())),
    }
}

/// Why a PBX call failed.
#[derive(Debug, thiserror::Error)]
pub enum PbxError {
    /// The PBX refused the API credentials (HTTP 401/403 on the token or a call).
    #[error("the PBX refused the API credentials ({call}: HTTP {status})")]
    Unauthorized {
        /// The call.
        call: &'static str,
        /// The status.
        status: u16,
    },
    /// The PBX could not be reached.
    #[error("the PBX could not be reached ({call}): {detail}")]
    Unreachable {
        /// The call.
        call: &'static str,
        /// What the connection said.
        detail: String,
    },
    /// The PBX answered with an error status.
    #[error("the PBX answered HTTP {status} to {call}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The call.
        call: &'static str,
        /// The status.
        status: u16,
        /// The XAPI error code, if the body had one.
        code: Option<String>,
    },
    /// The connection broke after the request was sent (the answer never completed).
    #[error("the PBX's answer to {call} broke off: {detail}")]
    BrokenOff {
        /// The call.
        call: &'static str,
        /// What the connection said.
        detail: String,
    },
    /// The PBX answered something that does not follow the API.
    #[error("the PBX's answer to {call} does not follow the API: {detail}")]
    Protocol {
        /// The call.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The PBX's URL is refused (plain http to a host that is not loopback, ...).
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// A `DownloadLink` or a redirect pointed away from the enrolled origin; not followed.
    #[error("the PBX pointed {call} at {target}, off its enrolled origin {enrolled}; refused")]
    OffOrigin {
        /// The call.
        call: &'static str,
        /// The origin it pointed at.
        target: String,
        /// The enrolled origin.
        enrolled: String,
    },
    /// A JSON answer larger than the cap.
    #[error("the PBX's answer to {call} is larger than the cap of {limit} bytes")]
    AnswerTooLarge {
        /// The call.
        call: &'static str,
        /// The cap.
        limit: u64,
    },
    /// A backup larger than the tenant's maximum.
    #[error("the backup is {size} bytes, more than the tenant's maximum of {limit}")]
    BackupTooLarge {
        /// Its announced size.
        size: u64,
        /// The maximum.
        limit: u64,
    },
    /// The call did not complete within its overall deadline.
    #[error("the PBX did not complete {call} within {after:?}")]
    Deadline {
        /// The call.
        call: &'static str,
        /// The deadline.
        after: Duration,
    },
}

impl PbxError {
    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            PbxError::Unauthorized { .. }
            | PbxError::Protocol { .. }
            | PbxError::Endpoint(_)
            | PbxError::OffOrigin { .. }
            | PbxError::AnswerTooLarge { .. }
            | PbxError::BackupTooLarge { .. } => false,
            PbxError::Unreachable { .. }
            | PbxError::BrokenOff { .. }
            | PbxError::Deadline { .. } => true,
            PbxError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// One backup file on the PBX.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BackupEntry {
    /// The file name given at `Pbx.Backup`.
    #[serde(rename = "FileName")]
    pub file_name: String,
    /// Size in bytes, if listed.
    #[serde(rename = "Size", default)]
    pub size: Option<u64>,
    /// Where to download it (absolute or relative to the PBX's base URL).
    #[serde(rename = "DownloadLink")]
    pub download_link: String,
}

/// What `GetBackupExtras` says about one backup.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BackupExtras {
    /// Whether the PBX encrypted the backup.
    #[serde(rename = "IsEncrypted")]
    pub is_encrypted: bool,
    /// The 3CX version that made it.
    #[serde(rename = "Version", default)]
    pub version: Option<String>,
}

/// What `Pbx.Backup` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupRequest {
    /// 204: the PBX started it.
    Started,
    /// 400 `WARNINGS.XAPI.DUPLICATE`: a backup of that name exists (a repeated capture).
    AlreadyExists,
    /// 400 while another backup is being made: try again when `GetCanCreateBackup` is true.
    Busy,
}

/// A download in progress: the announced length and the body as a byte stream.
pub struct Download {
    /// `Content-Length` of the answer.
    pub content_length: u64,
    /// The body; a connection that breaks mid-way surfaces as an I/O error.
    pub body: Box<dyn AsyncRead + Unpin + Send>,
    /// How long the whole body may take ([`PbxLimits::download_deadline`] for its length); the
    /// reader of the body enforces it.
    pub deadline: Duration,
}

/// An authenticated session with one PBX.
pub struct PbxClient {
    http: reqwest::Client,
    base_url: String,
    origin: String,
    limits: PbxLimits,
    token: SecretString,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
}

#[derive(Deserialize)]
struct ListAnswer<T> {
    value: T,
}

#[derive(Deserialize)]
struct CountAnswer {
    #[serde(rename = "@odata.count")]
    count: u64,
}

#[derive(Deserialize)]
struct XapiErrorBody {
    error: XapiError,
}

#[derive(Deserialize)]
struct XapiError {
    code: Option<String>,
}

/// Most redirects followed within the origin.
const MAX_REDIRECTS: usize = 5;

fn unreachable_from(call: &'static str, error: &reqwest::Error) -> PbxError {
    // reqwest's Display names the URL (no secrets in our URLs) and the cause.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    PbxError::Unreachable { call, detail }
}

/// The redirect policy: follow up to [`MAX_REDIRECTS`] redirects on `origin`; stop at any other
/// (the 3xx answer then comes back, and [`PbxClient::success`] names where it pointed).
fn same_origin(origin: String) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() < MAX_REDIRECTS
            && origin_key(attempt.url()).as_deref() == Some(origin.as_str())
        {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Reads a JSON body of at most `limit` bytes.
async fn read_json<T: serde::de::DeserializeOwned>(
    call: &'static str,
    mut response: reqwest::Response,
    limit: u64,
) -> Result<T, PbxError> {
    let too_large = || PbxError::AnswerTooLarge { call, limit };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response
            .chunk()
            .await
            .map_err(|e| match unreachable_from(call, &e) {
                PbxError::Unreachable { call, detail } => PbxError::BrokenOff { call, detail },
                other => other,
            })?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| PbxError::Protocol {
        call,
        detail: e.to_string(),
    })
}

impl PbxClient {
    /// Obtains an access token with the client-credentials grant, after checking the URL
    /// ([`check_endpoint`]).
    ///
    /// # Errors
    /// [`PbxError::Endpoint`] for a refused URL, [`PbxError::Unauthorized`] for refused
    /// credentials, others as their names say.
    pub async fn connect(
        base_url: &str,
        allow_insecure_http: bool,
        limits: &PbxLimits,
        client_id: &SecretString,
        client_secret: &SecretString,
    ) -> Result<Self, PbxError> {
        const CALL: &str = "token";
        let url = check_endpoint(base_url, allow_insecure_http)?;
        let origin = origin_key(&url)
            .ok_or_else(|| PbxError::Endpoint(EndpointError::NotAUrl("an opaque origin".into())))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(same_origin(origin.clone()))
            .build()
            .map_err(|e| unreachable_from(CALL, &e))?;
        let mut client = Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            origin,
            limits: limits.clone(),
            token: SecretString::from(String::new()),
        };
        let answer: TokenAnswer = client
            .bounded(CALL, async {
                let response = client
                    .http
                    .post(format!("{}/connect/token", client.base_url))
                    .form(&[
                        ("client_id", client_id.expose_secret()),
                        ("client_secret", client_secret.expose_secret()),
                        ("grant_type", "client_credentials"),
                    ])
                    .send()
                    .await
                    .map_err(|e| unreachable_from(CALL, &e))?;
                let response = client.success(CALL, response).await?;
                read_json(CALL, response, client.limits.max_json_bytes).await
            })
            .await?;
        client.token = answer.access_token;
        Ok(client)
    }

    /// Runs `call` within the overall deadline of a PBX call.
    async fn bounded<T>(
        &self,
        call: &'static str,
        work: impl Future<Output = Result<T, PbxError>>,
    ) -> Result<T, PbxError> {
        let after = self.limits.call_deadline;
        tokio::time::timeout(after, work)
            .await
            .unwrap_or(Err(PbxError::Deadline { call, after }))
    }

    /// Sends `request` with the session's token: the response if it is a success, an
    /// unreachable PBX or an error status otherwise (see [`Self::success`]).
    async fn authorized(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PbxError> {
        let response = request
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| unreachable_from(call, &e))?;
        self.success(call, response).await
    }

    /// The response if it is a success; a redirect that was not followed (off the origin, or
    /// too many) or an error status as its error.
    async fn success(
        &self,
        call: &'static str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, PbxError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            let target = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| response.url().join(location).ok());
            if let Some(target) = target {
                if origin_key(&target).as_deref() != Some(self.origin.as_str()) {
                    return Err(self.off_origin(call, &target));
                }
            }
            return Err(PbxError::Protocol {
                call,
                detail: format!("HTTP {} without a usable redirect", status.as_u16()),
            });
        }
        let status = status.as_u16();
        if status == 401 || status == 403 {
            return Err(PbxError::Unauthorized { call, status });
        }
        let code = read_json::<XapiErrorBody>(call, response, self.limits.max_json_bytes)
            .await
            .ok()
            .and_then(|b| b.error.code);
        Err(PbxError::Status { call, status, code })
    }

    fn off_origin(&self, call: &'static str, target: &Url) -> PbxError {
        PbxError::OffOrigin {
            call,
            target: target.origin().ascii_serialization(),
            enrolled: self.origin.clone(),
        }
    }

    /// The URL of `path`: relative paths under the base URL; absolute ones (a `DownloadLink`)
    /// only on the enrolled origin.
    fn url(&self, call: &'static str, path: &str) -> Result<Url, PbxError> {
        let absolute = Url::parse(path).ok().or_else(|| {
            // `//host/...` is relative to the scheme only: another host.
            path.starts_with("//")
                .then(|| Url::parse(&self.base_url).ok()?.join(path).ok())
                .flatten()
        });
        let url = match absolute {
            Some(url) => url,
            None => Url::parse(&format!(
                "{}/{}",
                self.base_url,
                path.trim_start_matches('/')
            ))
            .map_err(|e| PbxError::Protocol {
                call,
                detail: format!("not a usable link: {e}"),
            })?,
        };
        if origin_key(&url).as_deref() == Some(self.origin.as_str()) {
            Ok(url)
        } else {
            Err(self.off_origin(call, &url))
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        path: &str,
    ) -> Result<T, PbxError> {
        let url = self.url(call, path)?;
        self.bounded(call, async {
            let response = self.authorized(call, self.http.get(url)).await?;
            read_json(call, response, self.limits.max_json_bytes).await
        })
        .await
    }

    /// Asks the PBX to make an encrypted backup named `file_name` with `password`.
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn request_backup(
        &self,
        file_name: &str,
        password: &SecretString,
    ) -> Result<BackupRequest, PbxError> {
        const CALL: &str = "Pbx.Backup";
        let body = serde_json::json!({"description": {"Name": file_name, "Contents": {
            "CallHistory": true, "Recordings": true, "VoiceMails": true, "Prompts": true,
            "License": true, "FQDN": true, "PhoneProvisioning": true,
            "DisableBackupCompression": false, "EncryptBackup": true,
            "EncryptBackupPassword": {"Value": password.expose_secret(), "Concealed": false}}}});
        let url = self.url(CALL, "/xapi/v1/Backups/Pbx.Backup")?;
        let outcome = self
            .bounded(CALL, async {
                self.authorized(CALL, self.http.post(url).json(&body))
                    .await
                    .map(drop)
            })
            .await;
        match outcome {
            Ok(()) => Ok(BackupRequest::Started),
            Err(PbxError::Status {
                status: 400,
                code: Some(code),
                ..
            }) if code.ends_with("DUPLICATE") => Ok(BackupRequest::AlreadyExists),
            Err(PbxError::Status {
                status: 400,
                code: Some(code),
                ..
            }) if code.ends_with("IN_PROGRESS") => Ok(BackupRequest::Busy),
            Err(other) => Err(other),
        }
    }

    /// Whether the PBX can start a backup now (false while one runs).
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn can_create_backup(&self) -> Result<bool, PbxError> {
        let answer: ListAnswer<bool> = self
            .get_json(
                "GetCanCreateBackup",
                "/xapi/v1/Backups/Pbx.GetCanCreateBackup()",
            )
            .await?;
        Ok(answer.value)
    }

    /// The backups on the PBX's disk.
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn list_backups(&self) -> Result<Vec<BackupEntry>, PbxError> {
        let answer: ListAnswer<Vec<BackupEntry>> =
            self.get_json("Backups", "/xapi/v1/Backups").await?;
        Ok(answer.value)
    }

    /// What the PBX says about one backup (`GetBackupExtras`): whether it is encrypted, and the
    /// 3CX version that made it.
    ///
    /// # Errors
    /// A refused or failed call; an answer without `IsEncrypted` is [`PbxError::Protocol`].
    pub async fn backup_extras(&self, file_name: &str) -> Result<BackupExtras, PbxError> {
        self.get_json(
            "GetBackupExtras",
            &format!("/xapi/v1/Backups('{file_name}')/Pbx.GetBackupExtras()"),
        )
        .await
    }

    /// The counts the manifest records (extensions, queues, ring groups, IVRs, trunks, settings).
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn manifest_counts(&self) -> Result<ManifestCounts, PbxError> {
        let count = |collection: &'static str| async move {
            let answer: CountAnswer = self
                .get_json(
                    collection,
                    &format!("/xapi/v1/{collection}?$count=true&$top=0"),
                )
                .await?;
            Ok::<u64, PbxError>(answer.count)
        };
        Ok(ManifestCounts {
            extensions: count("Users").await?,
            queues: count("Queues").await?,
            ring_groups: count("RingGroups").await?,
            ivrs: count("Receptionists").await?,
            trunks: count("Trunks").await?,
            settings: count("Parameters").await?,
        })
    }

    /// Starts downloading a backup from `link`, which must stay on the enrolled origin. A
    /// missing `Content-Length` is refused (a short body could not be told from a complete one),
    /// and so is one above `max_bytes`, before any of the body is read.
    ///
    /// # Errors
    /// [`PbxError::OffOrigin`], [`PbxError::BackupTooLarge`], [`PbxError::Deadline`] (for the
    /// answer's headers), a refused or failed call, or [`PbxError::Protocol`] without
    /// `Content-Length`.
    pub async fn download(&self, link: &str, max_bytes: u64) -> Result<Download, PbxError> {
        const CALL: &str = "download";
        let url = self.url(CALL, link)?;
        let response = self
            .bounded(CALL, async {
                let response = self
                    .http
                    .get(url)
                    .bearer_auth(self.token.expose_secret())
                    .send()
                    .await
                    .map_err(|e| match unreachable_from(CALL, &e) {
                        PbxError::Unreachable { call, detail } if !e.is_connect() => {
                            PbxError::BrokenOff { call, detail }
                        }
                        other => other,
                    })?;
                self.success(CALL, response).await
            })
            .await?;
        let content_length = response.content_length().ok_or(PbxError::Protocol {
            call: CALL,
            detail: "no Content-Length".into(),
        })?;
        if content_length > max_bytes {
            return Err(PbxError::BackupTooLarge {
                size: content_length,
                limit: max_bytes,
            });
        }
        let stream = response.bytes_stream().map_err(std::io::Error::other);
        Ok(Download {
            content_length,
            body: Box::new(StreamReader::new(stream)),
            deadline: self.limits.download_deadline.for_size(content_length),
        })
    }

    /// Deletes a backup from the PBX's own disk (after it is safe in the vault).
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn delete_backup(&self, file_name: &str) -> Result<(), PbxError> {
        const CALL: &str = "delete backup";
        let url = self.url(CALL, &format!("/xapi/v1/Backups('{file_name}')"))?;
        self.bounded(CALL, async {
            self.authorized(CALL, self.http.delete(url)).await.map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_loopback_or_when_allowed() {
        assert!(check_endpoint("https://pbx.acme.example", false).is_ok());
        assert!(check_endpoint("https://pbx.acme.example:5001/", false).is_ok());
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://localhost:5000",
            "http://[::1]:80",
        ] {
            assert!(check_endpoint(loopback, false).is_ok(), "{loopback}");
        }
        assert_eq!(
            check_endpoint("http://pbx.acme.example", false),
            Err(EndpointError::InsecureHttp(
                "http://pbx.acme.example".into()
            ))
        );
        assert_eq!(
            check_endpoint("http://10.0.0.5:5000", false),
            Err(EndpointError::InsecureHttp("http://10.0.0.5:5000".into()))
        );
        assert!(check_endpoint("http://pbx.acme.example", true).is_ok());
        assert_eq!(
            check_endpoint("ftp://pbx.acme.example", true),
            Err(EndpointError::Scheme("ftp".into()))
        );
        assert_eq!(
            check_endpoint("https://user:pw@pbx.acme.example", false),
            Err(EndpointError::Userinfo)
        );
        assert!(matches!(
            check_endpoint("pbx.acme.example", false),
            Err(EndpointError::NotAUrl(_))
        ));
        // A host that merely starts with "127." or "localhost" is not loopback.
        assert!(check_endpoint("http://localhost.evil.example", false).is_err());
        assert!(check_endpoint("http://127.0.0.1.evil.example", false).is_err());
    }

    #[test]
    fn the_limits_default_generously_and_per_tenant() {
        let mut limits = PbxLimits::default();
        let acme = TenantId::new("acme").expect("slug");
        let other = TenantId::new("other").expect("slug");
        assert_eq!(limits.max_backup_for(&acme), 50 * GIB);
        limits.tenant_max_backup_bytes.insert(acme.clone(), GIB);
        assert_eq!(limits.max_backup_for(&acme), GIB);
        assert_eq!(limits.max_backup_for(&other), 50 * GIB);
        assert_eq!(limits.max_json_bytes, 4 * MIB);
    }

    fn client(base: &str) -> PbxClient {
        let url = Url::parse(base).expect("url");
        PbxClient {
            http: reqwest::Client::new(),
            base_url: base.trim_end_matches('/').to_owned(),
            origin: origin_key(&url).expect("a tuple origin"),
            limits: PbxLimits::default(),
            token: SecretString::from(String::new()),
        }
    }

    /// A PBX that answers every request with `answer` (raw HTTP/1.1), then trickles `trickle`
    /// bytes one per 50 ms (if any).
    async fn raw_pbx(answer: impl Into<String>, trickle: usize) -> String {
        let answer: &'static str = Box::leak(answer.into().into_boxed_str());
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..trickle {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if socket.write_all(b" ").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn bounded_client(base: &str) -> PbxClient {
        let mut pbx = client(base);
        pbx.limits.call_deadline = Duration::from_millis(400);
        pbx.limits.max_json_bytes = 64 * 1024;
        pbx
    }

    #[tokio::test]
    async fn a_trickling_json_answer_hits_the_call_deadline() {
        let base = raw_pbx(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
            10_000,
        )
        .await;
        let started = std::time::Instant::now();
        let error = bounded_client(&base)
            .list_backups()
            .await
            .expect_err("trickle");
        assert!(matches!(error, PbxError::Deadline { .. }), "{error}");
        assert!(error.retryable());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_announced_or_streamed_json_answer_over_the_cap_is_refused() {
        let announced = raw_pbx(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\n{",
            0,
        )
        .await;
        let error = bounded_client(&announced)
            .list_backups()
            .await
            .expect_err("cap");
        assert!(matches!(error, PbxError::AnswerTooLarge { .. }), "{error}");
        // No length: read up to the cap, then refused.
        let streamed = raw_pbx(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{{\"value\": [{}",
                "{},".repeat(100_000)
            ),
            0,
        )
        .await;
        let error = bounded_client(&streamed)
            .list_backups()
            .await
            .expect_err("cap");
        assert!(matches!(error, PbxError::AnswerTooLarge { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_redirect_off_the_origin_is_not_followed() {
        let base = raw_pbx(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/internal\r\ncontent-length: 0\r\n\r\n",
            0,
        )
        .await;
        let mut pbx = bounded_client(&base);
        pbx.http = reqwest::Client::builder()
            .redirect(same_origin(pbx.origin.clone()))
            .build()
            .expect("client");
        let error = pbx.list_backups().await.expect_err("redirect");
        match error {
            PbxError::OffOrigin { target, .. } => assert_eq!(target, "http://127.0.0.1:9"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn links_stay_on_the_enrolled_origin() {
        let pbx = client("https://pbx.acme.example:5001");
        let on = |link: &str| pbx.url("download", link).map(|u| u.to_string());
        assert_eq!(
            on("/xapi/v1/BackupFiles/a.zip").expect("relative"),
            "https://pbx.acme.example:5001/xapi/v1/BackupFiles/a.zip"
        );
        assert!(on("https://pbx.acme.example:5001/x.zip").is_ok());
        for off in [
            "https://pbx.acme.example/x.zip",     // another port
            "http://pbx.acme.example:5001/x.zip", // another scheme
            "https://169.254.169.254/latest/meta-data",
            "//evil.example/x.zip",
            "http://127.0.0.1:5432/",
        ] {
            assert!(
                matches!(on(off), Err(PbxError::OffOrigin { .. })),
                "{off}: {:?}",
                on(off)
            );
        }
    }
}
