//! Progress of the long work inside a stage — a download from the PBX, the vault read-back, the
//! verifier's pass, a restore test — for a terminal that shows it (`restorable backup-now`).
//! The stages report to a [`ProgressHook`] in the pipeline's settings; by default it reports
//! nowhere, and reporting never changes what a stage does.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a stage is busy with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Capture: the PBX's backup streaming into the vault.
    Download,
    /// Secure: the stored copy read back and hashed.
    ReadBack,
    /// Verify: every entry decrypted and authenticated.
    Verify,
    /// Restore test: the copy restored into a sandbox.
    RestoreTest,
    /// `restorable download`: the stored copy streamed out of the vault.
    Fetch,
}

impl Work {
    /// A label for a person.
    pub fn label(self) -> &'static str {
        match self {
            Work::Download => "capture: downloading",
            Work::ReadBack => "secure: reading back",
            Work::Verify => "verify: authenticating",
            Work::RestoreTest => "restore test: restoring",
            Work::Fetch => "downloading the copy",
        }
    }
}

/// Where progress goes.
pub trait Progress: Send + Sync {
    /// `work` on `cycle` began; `total` bytes if known.
    fn begin(&self, cycle: &str, work: Work, total: Option<u64>);
    /// `done` bytes of it are done so far.
    fn position(&self, cycle: &str, done: u64);
    /// It ended (done or not).
    fn end(&self, cycle: &str);
}

/// The pipeline's progress hook: nothing by default.
#[derive(Clone, Default)]
pub struct ProgressHook(Option<Arc<dyn Progress>>);

impl fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressHook(set)"
        } else {
            "ProgressHook(none)"
        })
    }
}

impl ProgressHook {
    /// Reports to `to`.
    pub fn new(to: Arc<dyn Progress>) -> Self {
        Self(Some(to))
    }

    /// See [`Progress::begin`].
    pub fn begin(&self, cycle: &str, work: Work, total: Option<u64>) {
        if let Some(to) = &self.0 {
            to.begin(cycle, work, total);
        }
    }

    /// See [`Progress::position`].
    pub fn position(&self, cycle: &str, done: u64) {
        if let Some(to) = &self.0 {
            to.position(cycle, done);
        }
    }

    /// See [`Progress::end`].
    pub fn end(&self, cycle: &str) {
        if let Some(to) = &self.0 {
            to.end(cycle);
        }
    }

    /// Whether anything listens (work is only counted then).
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

/// Awaits `task` (work on another thread that counts its bytes into `done`), reporting `done`
/// to `progress` every 200 ms while it runs.
///
/// # Errors
/// The task's join error (it panicked or was cancelled).
pub async fn report_while<T>(
    progress: &ProgressHook,
    cycle: &str,
    work: Work,
    total: u64,
    done: &AtomicU64,
    task: tokio::task::JoinHandle<T>,
) -> Result<T, tokio::task::JoinError> {
    if !progress.is_set() {
        return task.await;
    }
    progress.begin(cycle, work, Some(total));
    let mut task = std::pin::pin!(task);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let outcome = loop {
        tokio::select! {
            outcome = &mut task => break outcome,
            _ = tick.tick() => progress.position(cycle, done.load(Ordering::Relaxed).min(total)),
        }
    };
    progress.end(cycle);
    outcome
}
