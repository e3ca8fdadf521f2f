//! The process sandbox (the restore sandbox adapter that runs here). Each restore test gets:
//! - a fresh network namespace (`unshare --net`): only a downed loopback inside, so nothing in
//!   the sandbox can reach the live PBX, the host's services or the internet. The server runs
//!   inside a fresh user namespace that maps its user to itself (`unshare --user
//!   --map-current-user --net`): as any non-root user, as that user, so Restore-Tested needs
//!   no privilege; as root, as `nobody` (or the configured [`SandboxPlacement::user`]), which
//!   makes the namespaces after dropping root (see [`ProcessSandboxes::describe`]). Where the
//!   kernel forbids unprivileged user namespaces, discovery (at start-up and in `doctor`) fails
//!   naming the sysctl to change (as root: the server keeps root's user namespace, logged);
//! - a throwaway PostgreSQL cluster (`initdb` into a fresh directory, run as the server user,
//!   listening on a Unix socket only) with database `database_single` and the 3CX-shaped
//!   schema of [`super::schema`];
//! - the backup's `DbTables/*.csv` streamed into it with `COPY`, straight out of the decrypted
//!   archive (no plaintext copy of the archive is ever written);
//! - limits ([`SandboxLimits`], from the config): the caller's time limit; a disk budget for the
//!   whole sandbox, watched while the restore runs (over it, the restore ends
//!   `restore_rejected` and the sandbox is destroyed); the server's memory and processes in
//!   total by a cgroup of its own where the host offers one ([`cgroup`]: v2, or v1 on a host
//!   with only that), else its processes by `RLIMIT_NPROC` (counted in its user namespace);
//!   always each process's address space (`RLIMIT_AS`), largest file (`RLIMIT_FSIZE`) and
//!   open files; and its own settings (8 connections, 2 background workers, no parallel
//!   workers, no autovacuum);
//! - a sealed server: its socket directory and socket are 0700 (owned by the server user), and
//!   every connection needs the sandbox's own random password (SCRAM; never `trust`), which only
//!   this process knows — another local user can neither reach the socket nor log in;
//! - no backup content in what it reports: a failed restore names the table, column,
//!   constraint, SQLSTATE and input line, never a row's values (they would land in the
//!   immutable history, the UI and alerts).
//!
//! Everything of one sandbox lives under `<root>/<id>/` (`<id>` random); the root of an
//! installation is [`SandboxPlacement::root`] — by default [`sandbox_root`], outside its data
//! directory, which may be private, since the unprivileged server user must be able to reach its
//! own cluster. The root and `<id>/` are 0700 when rootless, 0710 with the server user's group
//! as root (it may pass through, never list). `<id>/` belongs to the process that made it (the
//! server user only gets `pgdata/` and `socket/` inside it), and before anything else it
//! receives the owner marker of [`super::owner`]: pid, process start time and boot id.
//!
//! The server is started with a parent-death signal, so a worker killed mid-test takes its
//! sandbox server down with it. [`ProcessSandboxes::sweep_leftovers`] then removes its directory
//! — and only such directories: several processes share a root (two workers on one host,
//! `restorable backup-now` or `restore-test` beside `serve`), and one's start must never destroy
//! another's live restore test. A sweep removes (killing its server first) a directory
//! - whose marker names an owner that is gone: no process with its pid, a process with its pid
//!   but another start time (the pid was reused), a zombie, or another boot;
//! - without a readable marker, once it is older than [`UNMARKED_LEFTOVER_AGE`] (younger, it may
//!   be a sandbox another process is creating this very moment).
//!
//! It never follows a symbolic link: a link in the root is left alone, and removing a directory
//! removes links inside it, not what they point to.
//!
//! # Layout
//!
//! - `mod.rs` (here): [`ProcessSandboxes`], the adapter — discovery, provisioning, and the
//!   sweep of leftovers as [`RestoreSandbox`].
//! - [`host`]: what this machine offers: the PostgreSQL binaries, the sandbox user, the
//!   effective uid.
//! - [`namespaces`]: whether user and network namespaces are available, and the command line
//!   that puts the server in them under its own identity.
//! - [`root`]: the sandbox root and [`SandboxPlacement`]: where sandboxes live, created, checked
//!   ([`check_root`]) and sealed.
//! - [`limits`]: [`SandboxLimits`] and the disk budget's measure.
//! - [`cgroup`]: the sandboxes' cgroups: found, made per sandbox, joined by the server, read
//!   for the limit the kernel enforced, emptied and removed.
//! - [`cluster`]: the throwaway PostgreSQL cluster: `initdb`, the server under its limits, the
//!   connection, the 3CX schema.
//! - [`sandbox`]: [`ProcessSandbox`], one sandbox: the restore (tables streamed into `COPY`),
//!   the inspection, the destruction.
//! - [`failure`]: restore failures told without backup content.
//! - [`sweep`]: which entries of the root are leftovers, and their servers.

mod cgroup;
mod cluster;
mod failure;
mod host;
mod limits;
mod namespaces;
mod root;
mod sandbox;
mod sweep;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::SecretString;

use super::{RestoreFailure, RestoreSandbox, Sandbox};
use cgroup::Cgroups;
use host::{effective_uid, find_pg_bin, is_root, system_user};
pub use limits::SandboxLimits;
use namespaces::check_user_namespaces;
pub use root::{check_root, sandbox_root, SandboxPlacement};
pub use sandbox::ProcessSandbox;
use sweep::{kill_server_of, leftover, Judgement};
pub use sweep::{leftover_processes, UNMARKED_LEFTOVER_AGE};

/// Makes process sandboxes under a root directory.
#[derive(Clone, Debug)]
pub struct ProcessSandboxes {
    limits: SandboxLimits,
    root: PathBuf,
    pg_bin: PathBuf,
    /// The unprivileged user the cluster runs as, when we are root (PostgreSQL refuses root).
    run_as: Option<(u32, u32)>,
    /// Whether the server gets a user namespace of its own (always when rootless; as root when
    /// the kernel lets the sandbox user make one). Without it (root only), the network
    /// namespace is root's and the process limit counts all of the sandbox user's processes.
    own_user_namespace: bool,
    /// Where each sandbox's cgroup is made, or why there is none (then rlimits alone bound it).
    cgroups: Result<Cgroups, String>,
}

fn provision_error(what: &str, detail: impl std::fmt::Display) -> RestoreFailure {
    RestoreFailure::Provision(format!("{what}: {detail}"))
}

impl ProcessSandboxes {
    /// Process sandboxes kept under `root`, with the machine's PostgreSQL; as root, their
    /// servers run as `nobody`.
    ///
    /// # Errors
    /// [`RestoreFailure::Provision`] when PostgreSQL or the `nobody` user is missing, or (not
    /// root) user namespaces are unavailable.
    pub fn discover(root: impl Into<PathBuf>) -> Result<Self, RestoreFailure> {
        Self::discover_as(root, None)
    }

    /// As [`Self::discover`], with the server user (as root) `user` instead of `nobody`.
    ///
    /// # Errors
    /// As [`Self::discover`]; also when `user` does not exist or is root.
    pub fn discover_as(
        root: impl Into<PathBuf>,
        user: Option<&str>,
    ) -> Result<Self, RestoreFailure> {
        let root_user = is_root();
        let (run_as, own_user_namespace) = if root_user {
            let ids = system_user(user.unwrap_or("nobody"))?;
            let own = match check_user_namespaces(Some(ids)) {
                Ok(()) => true,
                Err(failure) => {
                    tracing::warn!(
                        %failure,
                        "the restore sandbox's server gets root's network namespace, not a user \
                         namespace of its own: its process limit counts every process of its user"
                    );
                    false
                }
            };
            (Some(ids), own)
        } else {
            check_user_namespaces(None)?;
            (None, true)
        };
        let cgroups = if root_user {
            Cgroups::discover_as_root()
        } else {
            Err("not root, and no cgroup delegated to the service ([sandbox] cgroup)".to_owned())
        };
        if let Err(why) = &cgroups {
            tracing::info!(
                why,
                "restore sandboxes are bounded by rlimits, without a cgroup"
            );
        }
        Ok(Self {
            root: root.into(),
            pg_bin: find_pg_bin()?,
            run_as,
            own_user_namespace,
            limits: SandboxLimits::default(),
            cgroups,
        })
    }

    /// The sandboxes of `placement` for the installation whose data directory is `data_dir`.
    ///
    /// # Errors
    /// As [`Self::discover_as`] and [`Self::with_cgroup`].
    pub fn for_placement(
        placement: &SandboxPlacement,
        data_dir: &Path,
    ) -> Result<Self, RestoreFailure> {
        let sandboxes = Self::discover_as(placement.root(data_dir), placement.user.as_deref())?;
        match &placement.cgroup {
            Some(group) => sandboxes.with_cgroup(group),
            None => Ok(sandboxes),
        }
    }

    /// The same sandboxes, each in a child of `group`: a cgroup v2 group delegated to the
    /// service (`[sandbox] cgroup`), with `memory` and `pids` in its `cgroup.subtree_control`.
    ///
    /// # Errors
    /// [`RestoreFailure::Provision`] when `group` is not such a group — a configured cgroup is
    /// never silently dropped.
    pub fn with_cgroup(self, group: &Path) -> Result<Self, RestoreFailure> {
        Ok(Self {
            cgroups: Ok(Cgroups::delegated(group)?),
            ..self
        })
    }

    /// Whether each sandbox gets a cgroup (else rlimits alone bound it).
    pub fn has_cgroups(&self) -> bool {
        self.cgroups.is_ok()
    }

    /// What isolates these sandboxes, for `restorable doctor`.
    pub fn describe(&self) -> String {
        let who = match self.run_as {
            None => format!("as uid {} (rootless)", effective_uid().unwrap_or(u32::MAX)),
            Some((uid, _)) => format!("as uid {uid}"),
        };
        let namespaces = if self.own_user_namespace {
            "own user + network namespace"
        } else {
            "own network namespace"
        };
        let enforced = match &self.cgroups {
            Ok(cgroups) => format!("{} and rlimits", cgroups.describe()),
            Err(why) => format!("rlimits only ({why})"),
        };
        format!(
            "process sandbox {who}, {namespaces}, under {}; limits: disk {} MiB, memory {} MiB, \
             {} processes, by {enforced}",
            self.root.display(),
            self.limits.disk_bytes >> 20,
            self.limits.memory_bytes >> 20,
            self.limits.processes
        )
    }

    /// The same sandboxes with other PostgreSQL server binaries.
    pub fn with_pg_bin(self, pg_bin: impl Into<PathBuf>) -> Self {
        Self {
            pg_bin: pg_bin.into(),
            ..self
        }
    }

    /// The same sandboxes with other limits.
    pub fn with_limits(self, limits: SandboxLimits) -> Self {
        Self { limits, ..self }
    }

    /// Where the sandboxes live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Provisions a sandbox and returns the concrete type (tests use its socket directory).
    ///
    /// # Errors
    /// [`RestoreFailure::Provision`]; nothing is left behind.
    pub async fn provision_process(&self) -> Result<ProcessSandbox, RestoreFailure> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dir = self.root.join(&id);
        let password: [u8; 24] = rand::random();
        let mut sandbox = ProcessSandbox {
            id,
            dir,
            server: None,
            connection: None,
            password: SecretString::from(hex::encode(password)),
            disk_budget: self.limits.disk_bytes,
            cgroup: None,
        };
        match self.start(&mut sandbox).await {
            Ok(()) => Ok(sandbox),
            Err(failure) => {
                sandbox.destroy().await;
                Err(failure)
            }
        }
    }
}

#[async_trait]
impl RestoreSandbox for ProcessSandboxes {
    fn kind(&self) -> &'static str {
        "process"
    }

    /// Destroys the sandboxes under the root whose owner is gone (see the module header); a
    /// live one — of this process or another — is left alone.
    async fn sweep_leftovers(&self) -> usize {
        if let Err(error) = check_root(&self.root) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(%error, "not sweeping the sandbox root");
            }
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        if let Ok(cgroups) = &self.cgroups {
            let removed = cgroups.sweep(UNMARKED_LEFTOVER_AGE);
            if removed > 0 {
                tracing::info!(removed, "removed the empty cgroups of gone sandboxes");
            }
        }
        let mut swept = 0;
        let mut live = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            match leftover(&dir) {
                Judgement::Leftover(why) => {
                    kill_server_of(&dir).await;
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => {
                            tracing::info!(dir = %dir.display(), why, "destroyed a leftover sandbox");
                            swept += 1;
                        }
                        Err(error) => {
                            tracing::error!(dir = %dir.display(), %error, "could not remove a leftover sandbox")
                        }
                    }
                }
                Judgement::Live => live += 1,
                Judgement::NotASandbox => {}
            }
        }
        if swept > 0 {
            tracing::warn!(
                swept,
                live,
                "destroyed sandboxes whose owning process is gone"
            );
        }
        swept
    }

    async fn provision(&self) -> Result<Box<dyn Sandbox>, RestoreFailure> {
        Ok(Box::new(self.provision_process().await?))
    }
}
