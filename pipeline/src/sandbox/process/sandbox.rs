//! One process sandbox, [`ProcessSandbox`]: the restore (every table of the archive streamed
//! into `COPY` while the disk budget is watched, then the foreign keys), the inspection of what
//! was restored, and the destruction (also on drop).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use restorable_domain::ladder::ManifestCounts;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgPool, PgPoolCopyExt};
use sqlx::Row;
use tokio::process::Child;
use tokio::sync::mpsc;

use super::cgroup::SandboxCgroup;
use super::failure::database_failure;
use super::limits::{disk_usage, DISK_CHECK_EVERY};
use crate::archive::PositionedReader;
use crate::sandbox::{schema, RestoreFailure, Sandbox};

/// Chunk size when streaming a decrypted table into `COPY`.
const COPY_CHUNK: usize = 256 << 10;

/// One process sandbox.
pub struct ProcessSandbox {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) server: Option<Child>,
    pub(super) connection: Option<PgPool>,
    /// The `postgres` role's password, random per sandbox.
    pub(super) password: SecretString,
    /// Bytes on disk the sandbox may use.
    pub(super) disk_budget: u64,
    /// The server's cgroup, when the host offers one.
    pub(super) cgroup: Option<SandboxCgroup>,
}

impl Drop for ProcessSandbox {
    /// The safety net when a sandbox is dropped without [`Sandbox::destroy`] (a provision cut
    /// short by the time limit, a panic): kill the server and remove the directory.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
        }
        if self.dir.exists() {
            // A provision cut short leaves a killed `initdb`'s bootstrap server writing into the
            // directory for a moment: keep removing it, off the runtime, until it stays gone.
            let dir = self.dir.clone();
            std::thread::spawn(move || remove_until_gone(&dir));
        }
    }
}

/// How long a dropped sandbox's directory is retried before the failure is logged (the next
/// start's sweep removes what is left then).
const REMOVAL_PERSISTENCE: Duration = Duration::from_secs(10);

/// Removes `dir`, again and again until it is gone and stays gone for a moment (a dying child
/// may still create a file in it), or [`REMOVAL_PERSISTENCE`] has passed.
fn remove_until_gone(dir: &Path) {
    let deadline = std::time::Instant::now() + REMOVAL_PERSISTENCE;
    loop {
        let outcome = match std::fs::remove_dir_all(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
        if outcome.is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            if !dir.exists() {
                return;
            }
        }
        if std::time::Instant::now() > deadline {
            let error = outcome.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::error!(dir = %dir.display(), %error, "could not remove a dropped sandbox");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the archive reader hands to the loader.
enum Piece {
    Table(&'static str),
    Chunk(Bytes),
    End,
    Missing(&'static str),
    Failed(String),
}

impl ProcessSandbox {
    /// Streams every table of the archive into the sandbox, then checks the foreign keys.
    async fn load(
        &mut self,
        archive: std::fs::File,
        password: &SecretString,
    ) -> Result<(), RestoreFailure> {
        let (sender, mut pieces) = mpsc::channel(8);
        let password = password.clone();
        let reader = tokio::task::spawn_blocking(move || read_tables(archive, password, sender));
        let connection = self.connection()?;
        let mut copy = None;
        let mut table = "";
        while let Some(piece) = pieces.recv().await {
            match piece {
                Piece::Table(name) => {
                    table = name;
                    let statement =
                        format!("COPY {name} FROM STDIN WITH (FORMAT csv, HEADER true)");
                    copy = Some(
                        connection
                            .copy_in_raw(&statement)
                            .await
                            .map_err(|e| database_failure(name, &e))?,
                    );
                }
                Piece::Chunk(bytes) => {
                    if let Some(copy) = copy.as_mut() {
                        copy.send(bytes)
                            .await
                            .map_err(|e| database_failure(table, &e))?;
                    }
                }
                Piece::End => {
                    if let Some(copy) = copy.take() {
                        copy.finish()
                            .await
                            .map_err(|e| database_failure(table, &e))?;
                    }
                }
                Piece::Missing(name) if schema::REQUIRED_TABLES.contains(&name) => {
                    return Err(RestoreFailure::Rejected(format!(
                        "DbTables/{name}.csv is missing"
                    )));
                }
                Piece::Missing(_) => {}
                Piece::Failed(detail) => return Err(RestoreFailure::Rejected(detail)),
            }
        }
        reader
            .await
            .map_err(|e| RestoreFailure::Rejected(format!("the archive reader stopped: {e}")))?;
        for foreign_key in schema::FOREIGN_KEYS {
            let (table, column, referenced, referenced_column) = *foreign_key;
            sqlx::raw_sql(&schema::foreign_key_sql(*foreign_key))
                .execute(&connection)
                .await
                .map_err(|e| match database_failure(table, &e) {
                    RestoreFailure::Integrity(why) => RestoreFailure::Integrity(format!(
                        "{table}.{column} references a missing {referenced}.{referenced_column} \
                         ({why})"
                    )),
                    other => other,
                })?;
        }
        Ok(())
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// The limit the kernel enforced on this sandbox's cgroup, if it has one and any was hit
    /// (tests look).
    pub fn limit_enforced(&self) -> Option<&'static str> {
        self.cgroup.as_ref().and_then(SandboxCgroup::exceeded)
    }

    /// `failure`, or — when the kernel enforced a cgroup limit meanwhile, whatever error the
    /// client saw (a backend killed for memory, a refused fork) — `restore_rejected` by it.
    fn blame_limits(&self, failure: RestoreFailure) -> RestoreFailure {
        match self.limit_enforced() {
            Some(limit) => RestoreFailure::Rejected(format!(
                "the restore outgrew the sandbox's {limit} ({failure})"
            )),
            None => failure,
        }
    }

    fn connection(&self) -> Result<PgPool, RestoreFailure> {
        self.connection
            .clone()
            .ok_or_else(|| RestoreFailure::Rejected("the sandbox has no connection".into()))
    }
}

/// Reads `DbTables/<table>.csv` of every schema table out of the archive, decrypting as it
/// goes, and sends it in chunks (runs on a blocking thread).
fn read_tables(archive: std::fs::File, password: SecretString, out: mpsc::Sender<Piece>) {
    let send = |piece| out.blocking_send(piece).is_ok();
    let reader = match PositionedReader::new(std::sync::Arc::new(archive)) {
        Ok(reader) => reader,
        Err(e) => {
            send(Piece::Failed(format!("reading the archive: {e}")));
            return;
        }
    };
    let mut zip = match zip::ZipArchive::new(reader) {
        Ok(zip) => zip,
        Err(e) => {
            send(Piece::Failed(format!("opening the archive: {e}")));
            return;
        }
    };
    let mut buffer = vec![0u8; COPY_CHUNK];
    for (table, _) in schema::TABLES {
        let name = format!("DbTables/{table}.csv");
        let mut entry = match zip.by_name_decrypt(&name, password.expose_secret().as_bytes()) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                if !send(Piece::Missing(table)) {
                    return;
                }
                continue;
            }
            Err(e) => {
                send(Piece::Failed(format!("{name}: {e}")));
                return;
            }
        };
        if !send(Piece::Table(table)) {
            return;
        }
        loop {
            match entry.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if !send(Piece::Chunk(Bytes::copy_from_slice(&buffer[..n]))) {
                        return;
                    }
                }
                Err(e) => {
                    send(Piece::Failed(format!("{name}: {e}")));
                    return;
                }
            }
        }
        if !send(Piece::End) {
            return;
        }
    }
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn restore(
        &mut self,
        archive: std::fs::File,
        password: &SecretString,
    ) -> Result<(), RestoreFailure> {
        let (dir, budget) = (self.dir.clone(), self.disk_budget);
        let over_budget = async move {
            loop {
                tokio::time::sleep(DISK_CHECK_EVERY).await;
                let used = tokio::task::spawn_blocking({
                    let dir = dir.clone();
                    move || disk_usage(&dir)
                })
                .await
                .unwrap_or(0);
                if used > budget {
                    return used;
                }
            }
        };
        let restored = tokio::select! {
            loaded = self.load(archive, password) => loaded,
            used = over_budget => Err(RestoreFailure::Rejected(format!(
                "the restore outgrew the sandbox's disk budget ({used} bytes used, {budget} \
                 allowed)"
            ))),
        };
        restored.map_err(|failure| self.blame_limits(failure))
    }

    async fn inspect(&mut self) -> Result<ManifestCounts, RestoreFailure> {
        self.inspect_counts()
            .await
            .map_err(|failure| self.blame_limits(failure))
    }

    async fn destroy(&mut self) {
        if let Some(pool) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
            let _ = server.wait().await;
        }
        if let Some(mut cgroup) = self.cgroup.take() {
            cgroup.remove().await;
        }
        if self.dir.exists() {
            if let Err(error) = std::fs::remove_dir_all(&self.dir) {
                tracing::error!(dir = %self.dir.display(), %error, "could not remove a sandbox");
            }
        }
    }
}

impl ProcessSandbox {
    /// The inspection: the required settings are there, and what was restored, counted.
    async fn inspect_counts(&self) -> Result<ManifestCounts, RestoreFailure> {
        let connection = self.connection()?;
        let present: Vec<String> = sqlx::query("SELECT name FROM parameter WHERE name = ANY($1)")
            .bind(schema::REQUIRED_SETTINGS)
            .fetch_all(&connection)
            .await
            .map_err(|e| database_failure("parameter", &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let missing: Vec<&str> = schema::REQUIRED_SETTINGS
            .iter()
            .filter(|name| !present.iter().any(|p| p == *name))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(RestoreFailure::Rejected(format!(
                "settings a PBX cannot start without are missing: {}",
                missing.join(", ")
            )));
        }
        let row = sqlx::query(schema::COUNTS_SQL)
            .fetch_one(&connection)
            .await
            .map_err(|e| database_failure("counts", &e))?;
        let count = |i: usize| row.get::<i64, _>(i).max(0) as u64;
        Ok(ManifestCounts {
            extensions: count(0),
            queues: count(1),
            ring_groups: count(2),
            ivrs: count(3),
            trunks: count(4),
            settings: count(5),
        })
    }
}
