//! [`RunningPbx`]: one simulated PBX serving HTTP on a tokio task, from start to graceful
//! shutdown.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::database::Database;
use crate::state::{BackupRecord, PbxState};
use crate::{server, ManifestCounts, SimError, SimPbxConfig};

/// How long [`RunningPbx::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A simulated PBX serving its API. Dropping it starts a graceful shutdown and stops any backup
/// being written; [`RunningPbx::shutdown`] also waits for the server to finish.
pub struct RunningPbx {
    state: Arc<PbxState>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningPbx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningPbx")
            .field("name", &self.state.config.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn valid_pbx_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Backups left in the PBX directory by an earlier run (a real PBX keeps its files too);
/// half-written `.partial` files are removed.
fn existing_backups(dir: &Path) -> std::io::Result<Vec<BackupRecord>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if name.starts_with('.') && path.extension() == Some(OsStr::new("partial")) {
            std::fs::remove_file(&path)?;
        } else if server::valid_backup_name(&name) {
            let created: DateTime<Utc> = meta.modified().map_or_else(|_| Utc::now(), Into::into);
            found.push(BackupRecord {
                file_name: name,
                created,
                size: meta.len(),
                encrypted: true,
            });
        }
    }
    found.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then(a.file_name.cmp(&b.file_name))
    });
    Ok(found)
}

impl RunningPbx {
    /// Starts the PBX on `127.0.0.1` with a free port; backups go to `work_dir/<name>/`.
    pub async fn start(config: SimPbxConfig, work_dir: &Path) -> Result<RunningPbx, SimError> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), work_dir).await
    }

    /// Starts the PBX on `addr`; backups go to `work_dir/<name>/`.
    pub async fn start_on(
        config: SimPbxConfig,
        addr: SocketAddr,
        work_dir: &Path,
    ) -> Result<RunningPbx, SimError> {
        if !valid_pbx_name(&config.name) {
            return Err(SimError::InvalidName { name: config.name });
        }
        let dir = work_dir.join(&config.name);
        let existing = std::fs::create_dir_all(&dir)
            .and_then(|()| existing_backups(&dir))
            .map_err(|source| SimError::WorkDir {
                path: dir.clone(),
                source,
            })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let db = Database::generate(&config.name, config.seed, config.extensions, config.fault);
        let state = Arc::new(PbxState::new(config, db, dir, existing));
        let app = server::router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let name = state.config.name.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(pbx = %name, error = %e, "simulated PBX server failed");
            }
        });
        tracing::info!(pbx = %state.config.name, addr = %local, "simulated PBX started");
        Ok(RunningPbx {
            state,
            addr: local,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration this PBX runs with.
    pub fn config(&self) -> &SimPbxConfig {
        &self.state.config
    }

    /// The counts of the data actually written into the backup's CSVs (the API's counts differ
    /// under [`crate::Fault::ManifestMismatch`]). Under [`crate::Fault::MissingTable`] the
    /// extensions are still counted although `extension.csv` is left out of the archive.
    pub fn true_counts(&self) -> ManifestCounts {
        self.state.db.counts()
    }

    fn signal_stop(&mut self) {
        self.state.stopping.store(true, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops accepting connections, stops background backup writers, and waits (up to 5 s) for
    /// open requests to finish before cutting them.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for RunningPbx {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbx_names_are_checked() {
        assert!(valid_pbx_name("acme-hq"));
        assert!(valid_pbx_name("a.b_c"));
        assert!(!valid_pbx_name(""));
        assert!(!valid_pbx_name(".."));
        assert!(!valid_pbx_name("a/b"));
    }

    #[tokio::test]
    async fn invalid_name_is_refused_and_start_creates_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = RunningPbx::start(SimPbxConfig::new("../x", 1), dir.path())
            .await
            .expect_err("refused");
        assert!(matches!(err, SimError::InvalidName { .. }));
        let pbx = RunningPbx::start(SimPbxConfig::new("ok", 1), dir.path())
            .await
            .expect("starts");
        assert!(dir.path().join("ok").is_dir());
        assert!(pbx.base_url().starts_with("http://127.0.0.1:"));
        pbx.shutdown().await;
    }
}
