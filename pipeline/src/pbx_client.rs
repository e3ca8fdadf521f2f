//! The PBX client port's production adapter: the 3CX XAPI (v20) calls the capture stage needs
//! (`reference/3cx.md`): OAuth client-credentials token, `Pbx.Backup`, `GET Backups`,
//! `GetCanCreateBackup`, the OData counts for the manifest, download and delete.
//!
//! Secrets (client secret, backup password, access token) are held in `secrecy` types and never
//! appear in errors: errors carry the call, the HTTP status and the PBX's error code only.

use std::time::Duration;

use futures_util::TryStreamExt;
use restorable_domain::ladder::ManifestCounts;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

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
}

impl PbxError {
    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            PbxError::Unauthorized { .. } | PbxError::Protocol { .. } => false,
            PbxError::Unreachable { .. } | PbxError::BrokenOff { .. } => true,
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
}

/// An authenticated session with one PBX.
pub struct PbxClient {
    http: reqwest::Client,
    base_url: String,
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

async fn status_error(call: &'static str, response: reqwest::Response) -> PbxError {
    let status = response.status().as_u16();
    if status == 401 || status == 403 {
        return PbxError::Unauthorized { call, status };
    }
    let code = response
        .json::<XapiErrorBody>()
        .await
        .ok()
        .and_then(|b| b.error.code);
    PbxError::Status { call, status, code }
}

impl PbxClient {
    /// Obtains an access token with the client-credentials grant.
    ///
    /// # Errors
    /// [`PbxError::Unauthorized`] for refused credentials, others as their names say.
    pub async fn connect(
        base_url: &str,
        client_id: &SecretString,
        client_secret: &SecretString,
    ) -> Result<Self, PbxError> {
        const CALL: &str = "token";
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| unreachable_from(CALL, &e))?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        let response = http
            .post(format!("{base_url}/connect/token"))
            .form(&[
                ("client_id", client_id.expose_secret()),
                ("client_secret", client_secret.expose_secret()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .map_err(|e| unreachable_from(CALL, &e))?;
        if !response.status().is_success() {
            return Err(status_error(CALL, response).await);
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| PbxError::Protocol {
            call: CALL,
            detail: e.to_string(),
        })?;
        Ok(Self {
            http,
            base_url,
            token: answer.access_token,
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base_url, path.trim_start_matches('/'))
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        path: &str,
    ) -> Result<T, PbxError> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| unreachable_from(call, &e))?;
        if !response.status().is_success() {
            return Err(status_error(call, response).await);
        }
        response.json().await.map_err(|e| PbxError::Protocol {
            call,
            detail: e.to_string(),
        })
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
        let response = self
            .http
            .post(self.url("/xapi/v1/Backups/Pbx.Backup"))
            .bearer_auth(self.token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable_from(CALL, &e))?;
        if response.status().is_success() {
            return Ok(BackupRequest::Started);
        }
        match status_error(CALL, response).await {
            PbxError::Status {
                status: 400,
                code: Some(code),
                ..
            } if code.ends_with("DUPLICATE") => Ok(BackupRequest::AlreadyExists),
            PbxError::Status {
                status: 400,
                code: Some(code),
                ..
            } if code.ends_with("IN_PROGRESS") => Ok(BackupRequest::Busy),
            other => Err(other),
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

    /// Starts downloading a backup. A missing `Content-Length` is refused: a short body could
    /// not be told from a complete one.
    ///
    /// # Errors
    /// A refused or failed call, or [`PbxError::Protocol`] without `Content-Length`.
    pub async fn download(&self, link: &str) -> Result<Download, PbxError> {
        const CALL: &str = "download";
        let response = self
            .http
            .get(self.url(link))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| match unreachable_from(CALL, &e) {
                PbxError::Unreachable { call, detail } if !e.is_connect() => {
                    PbxError::BrokenOff { call, detail }
                }
                other => other,
            })?;
        if !response.status().is_success() {
            return Err(status_error(CALL, response).await);
        }
        let content_length = response.content_length().ok_or(PbxError::Protocol {
            call: CALL,
            detail: "no Content-Length".into(),
        })?;
        let stream = response.bytes_stream().map_err(std::io::Error::other);
        Ok(Download {
            content_length,
            body: Box::new(StreamReader::new(stream)),
        })
    }

    /// Deletes a backup from the PBX's own disk (after it is safe in the vault).
    ///
    /// # Errors
    /// A refused or failed call.
    pub async fn delete_backup(&self, file_name: &str) -> Result<(), PbxError> {
        const CALL: &str = "delete backup";
        let response = self
            .http
            .delete(self.url(&format!("/xapi/v1/Backups('{file_name}')")))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| unreachable_from(CALL, &e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(CALL, response).await)
        }
    }
}
