//! Shared helpers of the HTTP tests: a token-holding client, backup polling, downloads to disk,
//! archive reading and a small RFC 4180 CSV parser (independent of the crate's writer).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use restorable_pbx_sim::{RunningPbx, SimPbxConfig};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse, \"battery\" staple";

pub struct Pbx {
    pub pbx: RunningPbx,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Pbx {
    pub async fn start(config: SimPbxConfig) -> Pbx {
        let dir = tempfile::tempdir().expect("tempdir");
        let pbx = RunningPbx::start(config, dir.path())
            .await
            .expect("pbx starts");
        Pbx {
            pbx,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.pbx.base_url())
    }

    pub async fn token_response(&self, id: &str, secret: &str) -> reqwest::Response {
        self.http
            .post(self.url("/connect/token"))
            .form(&[
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token request sent")
    }

    pub async fn token(&self) -> String {
        let c = self.pbx.config();
        let resp = self.token_response(&c.client_id, &c.client_secret).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("get sent")
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let resp = self.get(token, path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.expect("json")
    }

    /// The file names `GET Backups` lists, the native backup's first.
    pub async fn listed_names(&self, token: &str) -> Vec<String> {
        let list = self.get_json(token, "/xapi/v1/Backups").await;
        list["value"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|entry| entry["FileName"].as_str().expect("a name").to_owned())
            .collect()
    }

    pub async fn request_backup_body(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/xapi/v1/Backups/Pbx.Backup"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("backup request sent")
    }

    pub async fn request_backup(&self, token: &str, name: &str) -> reqwest::Response {
        self.request_backup_body(
            token,
            &backup_body(name, json!({"Value": PASSWORD, "Concealed": false})),
        )
        .await
    }

    /// Polls `GET /Backups` until `name` is listed (and creation is allowed again).
    pub async fn wait_listed(&self, token: &str, name: &str, deadline: Duration) -> Option<Value> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            let list = self
                .get_json(token, "/xapi/v1/Backups?$top=50&$select=FileName")
                .await;
            let found = list["value"]
                .as_array()
                .expect("value array")
                .iter()
                .find(|e| e["FileName"] == name)
                .cloned();
            let can = self
                .get_json(token, "/xapi/v1/Backups/Pbx.GetCanCreateBackup()")
                .await;
            if let (Some(entry), true) = (found, can["value"] == true) {
                return Some(entry);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    /// Starts a backup and waits for it.
    pub async fn backup(&self, token: &str, name: &str) -> Value {
        let resp = self.request_backup(token, name).await;
        assert_eq!(resp.status(), 204);
        self.wait_listed(token, name, Duration::from_secs(60))
            .await
            .expect("backup listed")
    }

    /// Downloads `link` to a file; returns (declared length, received bytes, stream error?).
    pub async fn download(&self, token: &str, link: &str, to: &Path) -> (Option<u64>, u64, bool) {
        let resp = self.get(token, link).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/zip")
        );
        let declared = resp.content_length();
        let mut out = File::create(to).expect("create");
        let mut received = 0u64;
        let mut failed = false;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    received += bytes.len() as u64;
                    out.write_all(&bytes).expect("write");
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        (declared, received, failed)
    }

    /// Makes a backup and downloads it whole.
    pub async fn backup_and_download(&self, name: &str) -> PathBuf {
        let token = self.token().await;
        let entry = self.backup(&token, name).await;
        let to = self.dir.path().join(format!("downloaded-{name}"));
        let link = entry["DownloadLink"].as_str().expect("link");
        let (declared, received, failed) = self.download(&token, link, &to).await;
        assert!(!failed);
        assert_eq!(declared, Some(received));
        assert_eq!(Some(received), entry["Size"].as_u64());
        to
    }
}

pub fn backup_body(name: &str, password: Value) -> Value {
    json!({"description": {"Name": name, "Contents": {
        "CallHistory": true, "Recordings": false, "VoiceMails": true, "Prompts": true,
        "License": true, "FQDN": true, "PhoneProvisioning": true,
        "DisableBackupCompression": false, "EncryptBackup": true,
        "EncryptBackupPassword": password, "SomethingNew": 1}}})
}

/// Reads every entry to its end with `password`; returns name -> content, or the first error.
pub fn read_all(path: &Path, password: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut archive = zip::ZipArchive::new(File::open(path).map_err(|e| e.to_string())?)
        .map_err(|e| format!("open: {e}"))?;
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index_decrypt(i, password.as_bytes())
            .map_err(|e| format!("entry {i}: {e}"))?;
        let name = entry.name().map_err(|e| e.to_string())?.into_owned();
        if !entry.encrypted() {
            return Err(format!("{name} is not encrypted"));
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{name}: {e}"))?;
        out.insert(name, data);
    }
    Ok(out)
}

/// A minimal RFC 4180 parser: `None` for an empty unquoted field (NULL), `Some("")` for `""`.
pub fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_quotes = true;
            }
            ',' | '\n' => {
                let value = if field.is_empty() && !quoted {
                    None
                } else {
                    Some(std::mem::take(&mut field))
                };
                row.push(value);
                quoted = false;
                if c == '\n' {
                    rows.push(std::mem::take(&mut row));
                }
            }
            '\r' => panic!("CR outside quotes"),
            _ => field.push(c),
        }
    }
    assert!(
        row.is_empty() && field.is_empty(),
        "last line must end with \\n"
    );
    rows
}

/// The CSV of `table` from the archive contents, parsed; first row is the header.
pub fn table(entries: &BTreeMap<String, Vec<u8>>, table: &str) -> Vec<Vec<Option<String>>> {
    let bytes = entries
        .get(&format!("DbTables/{table}.csv"))
        .unwrap_or_else(|| panic!("{table}.csv missing"));
    parse_csv(std::str::from_utf8(bytes).expect("utf-8"))
}

/// Values of `column` in a parsed table.
pub fn column(rows: &[Vec<Option<String>>], column: &str) -> Vec<String> {
    let idx = rows[0]
        .iter()
        .position(|h| h.as_deref() == Some(column))
        .unwrap_or_else(|| panic!("no column {column}"));
    rows[1..].iter().filter_map(|r| r[idx].clone()).collect()
}
