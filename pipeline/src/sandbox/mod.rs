//! The restore sandbox port: the top rung of the ladder. A restore test provisions a clean,
//! network-isolated machine, restores the backup into it, inspects what landed, and destroys it.
//!
//! [`restore_test`] owns that lifecycle so no adapter can get it wrong: destroy runs on every
//! path — success, failure, the time limit, a panic in the inspector — and
//! [`RestoreSandbox::sweep_leftovers`] finds and destroys what a killed worker left behind
//! (call it when a worker starts).
//!
//! A sandbox belongs to the process that provisioned it, and a sweep destroys only sandboxes
//! whose owner is gone: several processes share one installation's sandboxes (two workers on a
//! host, `restorable backup-now` or `restore-test` beside `serve`), and one's start must never
//! destroy another's live restore test — that test would fail `sandbox_provision`, a false
//! alert. The process adapter records the owner in each sandbox ([`owner`]: pid, process start
//! time, boot id); a VM adapter tags each VM with it.
//!
//! # Adapters
//! - [`process::ProcessSandboxes`] (runs here): a fresh network namespace with no route out, a
//!   throwaway PostgreSQL cluster on a Unix socket, the backup's `DbTables/*.csv` streamed into
//!   it with `COPY` straight out of the decrypted archive.
//! - A VM adapter (a throwaway 3CX machine per test in the customer's cloud) implements the same
//!   two traits. It must guarantee: the VM is created from a clean 3CX image with no network
//!   route except to the restore controller (no internet, no customer network, no live PBX);
//!   the backup reaches it over that channel only and the password never touches its disk in
//!   clear; `restore` runs 3CX's own restore (`Pbx.Restore` with the footprint and password, or
//!   the unattended `setupconfig.xml` path) and fails with `Rejected` when 3CX refuses it;
//!   `inspect` reads counts from the restored PBX's API (`Users`, `Queues`, `RingGroups`,
//!   `Receptionists`, `Trunks`, `Parameters`) and fails with `Integrity` when 3CX reports broken
//!   references; `destroy` deletes the VM and its disks and is idempotent; every VM is tagged
//!   with the worker that made it (and a lease it renews), so `sweep_leftovers` can find and
//!   delete orphans — VMs whose worker is gone — and never another worker's live VM. None is
//!   shipped: it needs a 3CX licence and a cloud account, which this project cannot test.

pub mod owner;
pub mod process;
pub mod schema;
mod unavailable;

pub use unavailable::Unavailable;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use restorable_domain::ladder::{FailureReason, ManifestCounts};
use secrecy::SecretString;

/// Why a restore test did not pass. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum RestoreFailure {
    /// No sandbox could be provisioned.
    #[error("sandbox could not be provisioned: {0}")]
    Provision(String),
    /// The restore was refused: the schema or the data did not load, or required rows are missing.
    #[error("restore rejected: {0}")]
    Rejected(String),
    /// A constraint of the PBX database does not hold.
    #[error("integrity violation: {0}")]
    Integrity(String),
    /// The restored data differs from the manifest taken from the live PBX.
    #[error("restored data differs from the manifest: {0}")]
    ManifestMismatch(String),
    /// The time limit passed.
    #[error("restore test ran past its limit of {0:?}")]
    Timeout(Duration),
}

impl RestoreFailure {
    /// The ladder's stable reason code.
    pub fn reason(&self) -> FailureReason {
        match self {
            RestoreFailure::Provision(_) => FailureReason::SandboxProvision,
            RestoreFailure::Rejected(_) => FailureReason::RestoreRejected,
            RestoreFailure::Integrity(_) => FailureReason::IntegrityViolation,
            RestoreFailure::ManifestMismatch(_) => FailureReason::ManifestMismatch,
            RestoreFailure::Timeout(_) => FailureReason::RestoreTimeout,
        }
    }
}

/// A passed restore test.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreReport {
    /// `<adapter>:<throwaway id>`.
    pub sandbox: String,
    /// What landed.
    pub counts: ManifestCounts,
    /// The measured recovery time: provision to inspected.
    pub duration: Duration,
}

/// A kind of sandbox (an adapter).
#[async_trait]
pub trait RestoreSandbox: Send + Sync {
    /// The adapter's name, e.g. `process`.
    fn kind(&self) -> &'static str;

    /// Finds and destroys what earlier runs left behind (a worker killed mid-test): only
    /// sandboxes whose owning process is gone, never a live one of this or another process.
    /// Returns how many sandboxes it destroyed.
    async fn sweep_leftovers(&self) -> usize;

    /// Provisions a clean sandbox. On failure it leaves nothing behind.
    async fn provision(&self) -> Result<Box<dyn Sandbox>, RestoreFailure>;
}

/// One provisioned sandbox.
#[async_trait]
pub trait Sandbox: Send {
    /// Its throwaway id.
    fn id(&self) -> &str;

    /// Restores the backup (an encrypted 3CX archive) into the sandbox.
    async fn restore(
        &mut self,
        archive: std::fs::File,
        password: &SecretString,
    ) -> Result<(), RestoreFailure>;

    /// Checks that the restore is accepted (constraints, required rows) and counts what landed.
    async fn inspect(&mut self) -> Result<ManifestCounts, RestoreFailure>;

    /// Destroys the sandbox and everything in it; safe to call twice.
    async fn destroy(&mut self);
}

/// Names the counts that differ, e.g. `queues: restored 3, manifest 4`.
pub fn manifest_difference(restored: &ManifestCounts, manifest: &ManifestCounts) -> Option<String> {
    let pairs = [
        ("extensions", restored.extensions, manifest.extensions),
        ("queues", restored.queues, manifest.queues),
        ("ring_groups", restored.ring_groups, manifest.ring_groups),
        ("ivrs", restored.ivrs, manifest.ivrs),
        ("trunks", restored.trunks, manifest.trunks),
        ("settings", restored.settings, manifest.settings),
    ];
    let differences: Vec<String> = pairs
        .iter()
        .filter(|(_, restored, manifest)| restored != manifest)
        .map(|(name, restored, manifest)| {
            format!("{name}: restored {restored}, manifest {manifest}")
        })
        .collect();
    (!differences.is_empty()).then(|| differences.join("; "))
}

/// Runs one restore test: provision, restore, inspect, compare with `manifest`, destroy —
/// destroy on every path, within `limit`.
///
/// # Errors
/// See [`RestoreFailure`].
pub async fn restore_test(
    sandboxes: &dyn RestoreSandbox,
    archive: std::fs::File,
    password: &SecretString,
    manifest: &ManifestCounts,
    limit: Duration,
) -> Result<RestoreReport, RestoreFailure> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut sandbox = tokio::time::timeout_at(deadline, sandboxes.provision())
        .await
        .map_err(|_| RestoreFailure::Timeout(limit))??;
    let id = format!("{}:{}", sandboxes.kind(), sandbox.id());
    let outcome = AssertUnwindSafe(tokio::time::timeout_at(deadline, async {
        sandbox.restore(archive, password).await?;
        sandbox.inspect().await
    }))
    .catch_unwind()
    .await;
    sandbox.destroy().await;
    let counts = match outcome {
        Err(_panic) => {
            return Err(RestoreFailure::Rejected(format!(
                "the inspection of sandbox {id} panicked (the sandbox was destroyed)"
            )))
        }
        Ok(Err(_elapsed)) => return Err(RestoreFailure::Timeout(limit)),
        Ok(Ok(result)) => result?,
    };
    if let Some(difference) = manifest_difference(&counts, manifest) {
        return Err(RestoreFailure::ManifestMismatch(difference));
    }
    Ok(RestoreReport {
        sandbox: id,
        counts,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A unit-test stand-in recording the lifecycle calls (the real adapter is tested against
    /// real PostgreSQL in `tests/restore_sandbox.rs`).
    struct Scripted {
        destroyed: Arc<AtomicUsize>,
        behaviour: &'static str,
    }

    struct ScriptedSandbox {
        destroyed: Arc<AtomicUsize>,
        behaviour: &'static str,
    }

    #[async_trait]
    impl RestoreSandbox for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn sweep_leftovers(&self) -> usize {
            0
        }
        async fn provision(&self) -> Result<Box<dyn Sandbox>, RestoreFailure> {
            Ok(Box::new(ScriptedSandbox {
                destroyed: self.destroyed.clone(),
                behaviour: self.behaviour,
            }))
        }
    }

    #[async_trait]
    impl Sandbox for ScriptedSandbox {
        fn id(&self) -> &str {
            "s1"
        }
        async fn restore(
            &mut self,
            _: std::fs::File,
            _: &SecretString,
        ) -> Result<(), RestoreFailure> {
            match self.behaviour {
                "hang" => std::future::pending().await,
                "reject" => Err(RestoreFailure::Rejected("bad".into())),
                _ => Ok(()),
            }
        }
        async fn inspect(&mut self) -> Result<ManifestCounts, RestoreFailure> {
            if self.behaviour == "panic" {
                panic!("inspector bug");
            }
            Ok(ManifestCounts {
                queues: 2,
                ..ManifestCounts::default()
            })
        }
        async fn destroy(&mut self) {
            self.destroyed.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn run(
        behaviour: &'static str,
        manifest: ManifestCounts,
    ) -> (Result<RestoreReport, RestoreFailure>, usize) {
        let destroyed = Arc::new(AtomicUsize::new(0));
        let sandboxes = Scripted {
            destroyed: destroyed.clone(),
            behaviour,
        };
        let file = tempfile::tempfile().expect("file");
        let result = restore_test(
            &sandboxes,
            file,
            &SecretString::from("pw"),
            &manifest,
            Duration::from_millis(300),
        )
        .await;
        (result, destroyed.load(Ordering::SeqCst))
    }

    fn two_queues() -> ManifestCounts {
        ManifestCounts {
            queues: 2,
            ..ManifestCounts::default()
        }
    }

    #[tokio::test]
    async fn destroy_runs_after_success() {
        let (result, destroyed) = run("ok", two_queues()).await;
        assert_eq!(result.expect("passes").sandbox, "scripted:s1");
        assert_eq!(destroyed, 1);
    }

    #[tokio::test]
    async fn destroy_runs_after_a_rejection() {
        let (result, destroyed) = run("reject", two_queues()).await;
        assert_eq!(
            result.expect_err("fails").reason(),
            FailureReason::RestoreRejected
        );
        assert_eq!(destroyed, 1);
    }

    #[tokio::test]
    async fn destroy_runs_after_the_time_limit() {
        let (result, destroyed) = run("hang", two_queues()).await;
        assert_eq!(
            result.expect_err("fails").reason(),
            FailureReason::RestoreTimeout
        );
        assert_eq!(destroyed, 1);
    }

    #[tokio::test]
    async fn destroy_runs_after_a_panic_in_the_inspector() {
        let (result, destroyed) = run("panic", two_queues()).await;
        assert_eq!(
            result.expect_err("fails").reason(),
            FailureReason::RestoreRejected
        );
        assert_eq!(destroyed, 1);
    }

    #[tokio::test]
    async fn a_count_that_differs_from_the_manifest_is_named() {
        let (result, _) = run(
            "ok",
            ManifestCounts {
                queues: 3,
                ..ManifestCounts::default()
            },
        )
        .await;
        let failure = result.expect_err("mismatch");
        assert_eq!(failure.reason(), FailureReason::ManifestMismatch);
        assert!(
            failure
                .to_string()
                .contains("queues: restored 2, manifest 3"),
            "{failure}"
        );
    }
}
