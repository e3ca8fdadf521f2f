//! The 3CX XAPI client: token, backup, list, extras, counts, download, delete — each call on
//! the enrolled origin, under its deadline, with answers read up to a cap.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use reqwest::Url;
use restorable_domain::ladder::ManifestCounts;
use restorable_domain::native_backups::{NativeBackups, NativeScheduleType};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::endpoint::origin_key;
use super::{check_endpoint, EndpointError, PbxError, PbxLimits};

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
    /// When the PBX made it, as the PBX wrote it (read by [`PbxClient::native_backups`]).
    #[serde(rename = "CreationTime", default)]
    pub creation_time: Option<String>,
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

/// `GET /xapi/v1/BackupSettings`: the PBX's own schedule (the fields the watch reads).
#[derive(Deserialize)]
struct BackupSettingsAnswer {
    #[serde(rename = "ScheduleEnabled")]
    schedule_enabled: bool,
    #[serde(rename = "Contents")]
    contents: BackupContents,
    #[serde(rename = "Schedule", default)]
    schedule: Option<BackupSchedule>,
}

#[derive(Deserialize)]
struct BackupContents {
    #[serde(rename = "EncryptBackup")]
    encrypt_backup: bool,
}

#[derive(Deserialize)]
struct BackupSchedule {
    #[serde(rename = "ScheduleType", default)]
    schedule_type: Option<String>,
    #[serde(rename = "RepeatHours", default)]
    repeat_hours: Option<i64>,
}

/// A native backup dated further ahead than this is not believed (clock skew allowed).
const FUTURE_SKEW_HOURS: i64 = 1;

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

    /// The PBX's own backup schedule and its newest native backup: `BackupSettings`, and
    /// the backups listed whose names do not start with `own_prefix` (the ones Restorable asked
    /// for). A creation time that does not parse, or lies more than an hour ahead of `now`, is
    /// not taken as a backup (a PBX cannot hide a stale schedule by dating a file in the
    /// future).
    ///
    /// # Errors
    /// A refused or failed call; an answer without `ScheduleEnabled` or
    /// `Contents.EncryptBackup` is [`PbxError::Protocol`].
    pub async fn native_backups(
        &self,
        own_prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<NativeBackups, PbxError> {
        let settings: BackupSettingsAnswer = self
            .get_json("BackupSettings", "/xapi/v1/BackupSettings")
            .await?;
        let native: Vec<BackupEntry> = self
            .list_backups()
            .await?
            .into_iter()
            .filter(|entry| !entry.file_name.starts_with(own_prefix))
            .collect();
        let latest_believable = now + chrono::Duration::hours(FUTURE_SKEW_HOURS);
        let last_backup_at = native
            .iter()
            .filter_map(|entry| entry.creation_time.as_deref())
            .filter_map(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc))
            .filter(|at| *at <= latest_believable)
            .max();
        let schedule = settings.schedule.unwrap_or(BackupSchedule {
            schedule_type: None,
            repeat_hours: None,
        });
        Ok(NativeBackups {
            schedule_enabled: settings.schedule_enabled,
            encrypted: settings.contents.encrypt_backup,
            schedule: NativeScheduleType::from_pbx(
                schedule.schedule_type.as_deref().unwrap_or_default(),
                schedule.repeat_hours,
            ),
            last_backup_at,
            backups_on_disk: u32::try_from(native.len()).unwrap_or(u32::MAX),
            read_at: now,
        })
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
mod tests;
