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
//!   `restore_rejected` and the sandbox is destroyed); the server's memory (`RLIMIT_AS` per
//!   process), processes (`RLIMIT_NPROC`, counted in its user namespace), largest file
//!   (`RLIMIT_FSIZE`) and open files; and its own settings (8 connections, 2 background
//!   workers, no parallel workers, no autovacuum);
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

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use restorable_domain::ladder::ManifestCounts;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolCopyExt, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use std::io::Read;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::owner::Owner;
use super::schema;
use super::{RestoreFailure, RestoreSandbox, Sandbox};
use crate::archive::PositionedReader;

/// How long a fresh cluster may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Chunk size when streaming a decrypted table into `COPY`.
const COPY_CHUNK: usize = 256 << 10;
/// The largest file a sandbox's PostgreSQL may write (RLIMIT_FSIZE).
const MAX_FILE_BYTES: u64 = 2 << 30;
/// How old (by its modification time) a sandbox directory without an owner marker must be
/// before a sweep takes it for a leftover. A marker is written right after the directory is
/// created, so only a process killed between the two leaves one without; this is generous.
pub const UNMARKED_LEFTOVER_AGE: Duration = Duration::from_secs(10 * 60);

/// The name of the per-user parent of the default sandbox roots, before the uid.
const SANDBOX_PARENT_PREFIX: &str = "restorable-sandboxes-";

/// The sandbox root of the installation whose data directory is `data_dir`:
/// `$TMPDIR/restorable-sandboxes-<uid>/<16 hex digits of SHA-256 of the data directory's path>`.
/// One root per installation, so sweeping leftovers never touches another one's sandboxes, and
/// one parent per user, so users of one host never share (or fight over) a directory.
pub fn sandbox_root(data_dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let absolute = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = Sha256::digest(absolute.to_string_lossy().as_bytes());
    std::env::temp_dir()
        .join(format!(
            "{SANDBOX_PARENT_PREFIX}{}",
            effective_uid().unwrap_or(u32::MAX)
        ))
        .join(&hex::encode(digest)[..16])
}

/// Creates `root` (and its parent when missing), checks both (see [`check_root`]: a root
/// another user prepared is refused, never used or chmod-ed), then seals them with
/// [`private_mode`]: nobody but this user — and, as root, the sandbox user's group, so the
/// server can pass through to its own cluster — may enter, and nobody else may list them.
fn create_root(root: &Path, server_gid: Option<u32>) -> std::io::Result<()> {
    if let Some(parent) = root.parent() {
        create_private_dir(parent)?;
    }
    create_private_dir(root)?;
    check_root(root)?;
    // Only a parent of our own making ([`sandbox_root`]'s `restorable-sandboxes-<uid>`): never
    // chmod a directory the root was merely placed in (`/tmp`, `/var/lib`, ...).
    let ours = |p: &&Path| {
        is_ours(p)
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(SANDBOX_PARENT_PREFIX))
    };
    if let Some(parent) = root.parent().filter(ours) {
        seal(parent, server_gid)?;
    }
    seal(root, server_gid)
}

/// Creates `dir` if it is missing (mode 0700, as this user); an existing one is left as it is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Whether `dir` (not followed if a link) belongs to this user.
fn is_ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && Some(m.uid()) == effective_uid())
}

/// 0700 when the server runs as this user (rootless); as root, 0710 with the server user's
/// group, so only that group may pass through (never list) on the way to its cluster.
fn private_mode(server_gid: Option<u32>) -> u32 {
    if server_gid.is_some() {
        0o710
    } else {
        0o700
    }
}

/// Gives a directory of ours its [`private_mode`] (and, as root, the server user's group).
fn seal(dir: &Path, server_gid: Option<u32>) -> std::io::Result<()> {
    if let Some(gid) = server_gid {
        std::os::unix::fs::lchown(dir, None, Some(gid))?;
    }
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(private_mode(server_gid)),
    )
}

/// Checks that `root` can be trusted with root's deletions and chmods: itself a real directory
/// (not a symbolic link) owned by this user and writable by nobody else; its parent either the
/// same, or a directory of root's that only root may write (`/var/lib`) or that is sticky
/// (`/tmp`, where nobody can rename our entries).
/// Otherwise another local user could have prepared it, or could swap what is inside it for a
/// link to what they want destroyed.
///
/// # Errors
/// `PermissionDenied`, naming the directory and what is wrong with it.
pub fn check_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = effective_uid().ok_or_else(|| std::io::Error::other("no effective uid"))?;
    let refuse = |dir: &Path, why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing the sandbox directory {}: {why}; remove it, or point the data \
                 directory elsewhere",
                dir.display()
            ),
        )
    };
    let judge = |dir: &Path, sticky_root_ok: bool| -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.file_type().is_symlink() {
            return Err(refuse(dir, "it is a symbolic link".to_owned()));
        }
        if !meta.is_dir() {
            return Err(refuse(dir, "it is not a directory".to_owned()));
        }
        let mode = meta.mode();
        // A parent of root's that only root may write (`/var/lib`, `/srv`), or a sticky one
        // (`/tmp`, where nobody can rename our entries), cannot be used against us.
        if sticky_root_ok && meta.uid() == 0 && (mode & 0o1000 != 0 || mode & 0o022 == 0) {
            return Ok(());
        }
        if meta.uid() != me {
            return Err(refuse(
                dir,
                format!(
                    "it belongs to uid {}, not to this service (uid {me})",
                    meta.uid()
                ),
            ));
        }
        if mode & 0o022 != 0 {
            return Err(refuse(
                dir,
                format!("others may write to it (mode {:o})", mode & 0o7777),
            ));
        }
        Ok(())
    };
    judge(root, false)?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        judge(parent, true)?;
    }
    Ok(())
}

/// Creates a sandbox directory of ours, sealed by [`seal`]: the server user may pass through
/// to `pgdata/` and `socket/`, but cannot change the owner marker.
fn create_owned_dir(dir: &Path, server_gid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    seal(dir, server_gid)
}

/// The resources one sandbox may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Bytes on disk of the whole sandbox (cluster, WAL, logs), watched while restoring.
    pub disk_bytes: u64,
    /// Address space of each server process (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes of the server (`RLIMIT_NPROC`, counted inside the sandbox's own user
    /// namespace, so other processes of the same user never count against it).
    pub processes: u64,
}

impl Default for SandboxLimits {
    /// 16 GiB of disk, 4 GiB of memory per server process, 64 processes.
    fn default() -> Self {
        Self {
            disk_bytes: 16 << 30,
            memory_bytes: 4 << 30,
            processes: 64,
        }
    }
}

/// Where the sandboxes of an installation live and, when the service runs as root, which
/// unprivileged user their servers run as (PostgreSQL refuses root).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxPlacement {
    /// The sandbox root; `None`: [`sandbox_root`] of the data directory.
    pub dir: Option<PathBuf>,
    /// The server user when running as root; `None`: `nobody`. A dedicated system user (e.g.
    /// `restorable-sandbox`, no login, no home) shares its files with no other service.
    pub user: Option<String>,
}

impl SandboxPlacement {
    /// The sandbox root of the installation whose data directory is `data_dir`.
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| sandbox_root(data_dir))
    }
}

/// How often the disk budget is checked during a restore.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(200);

/// Bytes on disk under `dir` (allocated blocks; never follows a link). Entries that vanish or
/// cannot be read while it walks are skipped.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

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
}

fn provision_error(what: &str, detail: impl std::fmt::Display) -> RestoreFailure {
    RestoreFailure::Provision(format!("{what}: {detail}"))
}

/// The newest PostgreSQL server binaries on this machine (`RESTORABLE_PG_BIN` overrides).
fn find_pg_bin() -> Result<PathBuf, RestoreFailure> {
    if let Some(dir) = std::env::var_os("RESTORABLE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            provision_error(
                "no PostgreSQL server under /usr/lib/postgresql (install postgresql)",
                e,
            )
        })?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| provision_error("no PostgreSQL server binaries", "install postgresql"))
}

/// uid and gid of the user `name` from /etc/passwd; root is never a sandbox user.
fn system_user(name: &str) -> Result<(u32, u32), RestoreFailure> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| provision_error("reading /etc/passwd", e))?;
    let found = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    });
    match found {
        Some((0, _)) => Err(provision_error(
            &format!("the sandbox user {name:?} is root"),
            "the restore sandbox must run as an unprivileged user",
        )),
        Some(ids) => Ok(ids),
        None => Err(provision_error(
            &format!("no user {name:?}"),
            "needed to run the sandbox unprivileged (create it, or set [sandbox] user)",
        )),
    }
}

/// Whether this (non-root) user — or, as root, the sandbox user `run_as` — may make the user
/// and network namespaces a sandbox runs in; if not, exactly which setting forbids it — never a
/// silent fall-back to less isolation.
fn check_user_namespaces(run_as: Option<(u32, u32)>) -> Result<(), RestoreFailure> {
    let mut command = std::process::Command::new(if run_as.is_some() {
        "setpriv"
    } else {
        "unshare"
    });
    if let Some((uid, gid)) = run_as {
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--", "unshare"]);
    }
    let output = command
        .args(["--user", "--map-current-user", "--net", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| provision_error("running unshare (install util-linux)", e))?;
    if output.status.success() {
        return Ok(());
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|v| v.trim().to_owned())
            .ok()
    };
    let mut why = Vec::new();
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        why.push("sysctl kernel.unprivileged_userns_clone=0 (set it to 1)");
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        why.push("sysctl user.max_user_namespaces=0 (set it above 0)");
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        why.push(
            "sysctl kernel.apparmor_restrict_unprivileged_userns=1 (set it to 0, or give the \
             service an AppArmor profile with `userns`)",
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(provision_error(
        "unprivileged user namespaces are not available, so a rootless restore sandbox cannot \
         be isolated",
        format!(
            "{}; or run the service as root. unshare said: {}",
            if why.is_empty() {
                "check the kernel's user namespace settings".to_owned()
            } else {
                why.join("; ")
            },
            stderr.trim()
        ),
    ))
}

fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// This process's effective uid (from `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|uid| uid.parse().ok())
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
        let (run_as, own_user_namespace) = if is_root() {
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
        Ok(Self {
            root: root.into(),
            pg_bin: find_pg_bin()?,
            run_as,
            own_user_namespace,
            limits: SandboxLimits::default(),
        })
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
        format!(
            "process sandbox {who}, {namespaces}, under {}; limits: disk {} MiB, memory {} MiB \
             per process, {} processes",
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
        };
        match self.start(&mut sandbox).await {
            Ok(()) => Ok(sandbox),
            Err(failure) => {
                sandbox.destroy().await;
                Err(failure)
            }
        }
    }

    /// `setpriv` prefix: drop to the unprivileged user (when root) and die with our process.
    fn unprivileged(&self, command: &mut Command) {
        command.arg("--pdeathsig").arg("KILL");
        if let Some((uid, gid)) = self.run_as {
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups");
        }
        command.arg("--");
    }

    /// The namespaces and identity of the server, up to the `prlimit` it runs under:
    /// - rootless: `unshare --user --map-current-user --net -- setpriv --pdeathsig KILL --`
    ///   (a user namespace mapping this user to itself lets it own a network namespace);
    /// - root, with a user namespace: `setpriv <user> -- unshare --user --map-current-user
    ///   --net -- setpriv --pdeathsig KILL --` (the same, made by the sandbox user, so the
    ///   process limit counts only the sandbox's processes);
    /// - root, without: `unshare --net -- setpriv --pdeathsig KILL <user> --`.
    ///
    /// The parent-death signal is set last, since entering a user namespace clears it.
    fn server_command(&self) -> Command {
        let mut server;
        match self.run_as {
            Some((uid, gid)) if self.own_user_namespace => {
                server = Command::new("setpriv");
                server
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--", "unshare"])
                    .args(["--user", "--map-current-user", "--net", "--", "setpriv"])
                    .args(["--pdeathsig", "KILL", "--"]);
            }
            Some(_) => {
                server = Command::new("unshare");
                server.args(["--net", "--", "setpriv"]);
                self.unprivileged(&mut server);
            }
            None => {
                server = Command::new("unshare");
                server.args(["--user", "--map-current-user", "--net", "--", "setpriv"]);
                self.unprivileged(&mut server);
            }
        }
        server
    }

    async fn start(&self, sandbox: &mut ProcessSandbox) -> Result<(), RestoreFailure> {
        let server_gid = self.run_as.map(|(_, gid)| gid);
        create_root(&self.root, server_gid)
            .map_err(|e| provision_error("creating the sandbox root", e))?;
        let pgdata = sandbox.dir.join("pgdata");
        let socket = sandbox.dir.join("socket");
        create_owned_dir(&sandbox.dir, server_gid)
            .map_err(|e| provision_error("creating the sandbox directory", e))?;
        Owner::current()
            .and_then(|owner| owner.write_marker(&sandbox.dir))
            .map_err(|e| provision_error("recording the sandbox's owner", e))?;
        for dir in [&pgdata, &socket] {
            std::fs::create_dir(dir)
                .map_err(|e| provision_error("creating the sandbox directory", e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| provision_error("sealing the sandbox directory", e))?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| {
                    provision_error("handing the sandbox to the unprivileged user", e)
                })?;
            }
        }
        // initdb reads the password from a file; it lives in the sealed socket directory only
        // until initdb has run.
        let password_file = socket.join("initdb.pw");
        write_private(
            &password_file,
            sandbox.password.expose_secret(),
            self.run_as,
        )
        .map_err(|e| provision_error("writing the sandbox password", e))?;

        let mut initdb = Command::new("setpriv");
        self.unprivileged(&mut initdb);
        initdb
            .arg(self.pg_bin.join("initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = initdb.output().await;
        let _ = std::fs::remove_file(&password_file);
        let output = output.map_err(|e| provision_error("running initdb", e))?;
        if !output.status.success() {
            return Err(provision_error(
                "initdb failed",
                String::from_utf8_lossy(&output.stderr).trim(),
            ));
        }

        let log = std::fs::File::create(sandbox.dir.join("server.log"))
            .map_err(|e| provision_error("creating the server log", e))?;
        let mut server = self.server_command();
        server
            .arg("prlimit")
            .arg(format!("--fsize={MAX_FILE_BYTES}"))
            .arg("--nofile=1024")
            .arg(format!("--as={}", self.limits.memory_bytes))
            .arg(format!("--nproc={}", self.limits.processes))
            .arg("--")
            .arg(self.pg_bin.join("postgres"))
            .arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .args([
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=8",
            ])
            .args(["-c", "temp_file_limit=1GB", "-c", "max_wal_size=256MB"])
            .args(["-c", "unix_socket_permissions=0700"])
            .args([
                "-c",
                "max_worker_processes=2",
                "-c",
                "max_parallel_workers=0",
            ])
            .args(["-c", "autovacuum=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        sandbox.server = Some(
            server
                .spawn()
                .map_err(|e| provision_error("starting the sandbox server", e))?,
        );

        let admin = sandbox.wait_until_ready(&socket).await?;
        let created = sqlx::raw_sql("CREATE DATABASE database_single")
            .execute(&admin)
            .await;
        admin.close().await;
        created.map_err(|e| provision_error("creating database_single", e))?;
        let restore_db = sandbox.connect(&socket, "database_single").await?;
        sandbox.connection = Some(restore_db);
        sandbox
            .execute(&schema::create_tables_sql())
            .await
            .map_err(|e| provision_error("creating the 3CX schema", e))?;
        Ok(())
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

/// Processes whose command line names a path under `root` (sandbox servers and backends).
pub fn leftover_processes(root: &Path) -> Vec<u32> {
    let needle = root.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

/// What a sweep makes of an entry of the sandbox root.
#[derive(Debug, PartialEq)]
enum Judgement {
    /// Its owner is gone: destroy it (the reason, for the log).
    Leftover(&'static str),
    /// Owned by a live process, or perhaps being created by one: leave it.
    Live,
    /// A symbolic link or a file: never a sandbox, never followed, left alone.
    NotASandbox,
}

/// Judges one entry of the sandbox root, without following symbolic links.
fn leftover(path: &Path) -> Judgement {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Judgement::NotASandbox;
    };
    if !metadata.file_type().is_dir() {
        if metadata.file_type().is_symlink() {
            tracing::warn!(path = %path.display(), "a symbolic link in the sandbox root; left alone");
        }
        return Judgement::NotASandbox;
    }
    match Owner::read_marker(path) {
        Ok(Some(owner)) if owner.is_alive() => Judgement::Live,
        Ok(Some(_)) => Judgement::Leftover("its owning process is gone"),
        Ok(None) | Err(_) => {
            let age = metadata
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .unwrap_or_default();
            if age >= UNMARKED_LEFTOVER_AGE {
                Judgement::Leftover("it has no owner marker and is old")
            } else {
                Judgement::Live
            }
        }
    }
}

/// Kills the PostgreSQL server of a leftover sandbox directory, if one still runs.
async fn kill_server_of(dir: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(dir.join("pgdata/postmaster.pid")) else {
        return;
    };
    let Some(pid) = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        return;
    };
    let owned = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()))
        .unwrap_or(false);
    if owned {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .await;
    }
}

/// One process sandbox.
pub struct ProcessSandbox {
    id: String,
    dir: PathBuf,
    server: Option<Child>,
    connection: Option<PgPool>,
    /// The `postgres` role's password, random per sandbox.
    password: SecretString,
    /// Bytes on disk the sandbox may use.
    disk_budget: u64,
}

impl Drop for ProcessSandbox {
    /// The safety net when a sandbox is dropped without [`Sandbox::destroy`] (a provision cut
    /// short by the time limit, a panic): kill the server and remove the directory.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
        }
        if self.dir.exists() {
            if let Err(error) = std::fs::remove_dir_all(&self.dir) {
                tracing::error!(dir = %self.dir.display(), %error, "could not remove a dropped sandbox");
            }
        }
    }
}

/// A restore failure told by table, SQLSTATE (and its name), column, constraint and input line
/// — never by PostgreSQL's message or detail, which quote the row's values (decrypted backup
/// content).
fn database_failure(table: &str, error: &sqlx::Error) -> RestoreFailure {
    let Some(database) = error.as_database_error() else {
        // Not a database error: the connection or the protocol, which carry no row values.
        return RestoreFailure::Rejected(format!("{table}: {error}"));
    };
    let code = database.code().map(|c| c.into_owned()).unwrap_or_default();
    let mut message = format!("{table}: {} ({code})", sqlstate_name(&code));
    if let Some(pg) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(column) = pg.column() {
            message.push_str(&format!(", column {column}"));
        }
        if let Some(constraint) = pg.constraint() {
            message.push_str(&format!(", constraint {constraint}"));
        }
        if let Some(line) = pg.r#where().and_then(copy_line) {
            message.push_str(&format!(", line {line}"));
        }
    }
    if code.starts_with("23") {
        RestoreFailure::Integrity(message)
    } else {
        RestoreFailure::Rejected(message)
    }
}

/// The input line number in a `COPY` error context (`COPY t, line 3, column c: "value"`), the
/// only part of it that is not backup content.
fn copy_line(context: &str) -> Option<u64> {
    let rest = context.split(", line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The condition name of the SQLSTATEs a restore meets (PostgreSQL Appendix A).
fn sqlstate_name(code: &str) -> &'static str {
    match code {
        "23502" => "not_null_violation",
        "23503" => "foreign_key_violation",
        "23505" => "unique_violation",
        "23514" => "check_violation",
        "22001" => "string_data_right_truncation",
        "22003" => "numeric_value_out_of_range",
        "22007" => "invalid_datetime_format",
        "22008" => "datetime_field_overflow",
        "22021" => "character_not_in_repertoire",
        "22P02" => "invalid_text_representation",
        "22P04" => "bad_copy_file_format",
        "53100" => "disk_full",
        "53200" => "out_of_memory",
        "53300" => "too_many_connections",
        "54000" => "program_limit_exceeded",
        "57014" => "query_canceled",
        _ => "database error",
    }
}

/// Writes `text` to a new file readable only by its owner, handed to `owner` when given.
fn write_private(path: &Path, text: &str, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    Ok(())
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

    /// How to connect to `database` of this sandbox as its `postgres` role (with the
    /// sandbox's password); tests use it to look inside.
    pub fn connect_options(&self, socket: &Path, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(socket)
            .username("postgres")
            .password(self.password.expose_secret())
            .database(database)
            .disable_statement_logging()
    }

    async fn connect(&self, socket: &Path, database: &str) -> Result<PgPool, RestoreFailure> {
        let options = self.connect_options(socket, database);
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| provision_error("connecting to the sandbox", e))
    }

    async fn wait_until_ready(&mut self, socket: &Path) -> Result<PgPool, RestoreFailure> {
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(provision_error(
                    &format!("the sandbox server exited ({status})"),
                    tail,
                ));
            }
            if let Ok(connection) = self.connect(socket, "postgres").await {
                return Ok(connection);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(provision_error(
                    "the sandbox server did not start",
                    format!("within {START_LIMIT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let pool = self.connection.as_ref().ok_or(sqlx::Error::PoolClosed)?;
        sqlx::raw_sql(sql).execute(pool).await.map(|_| ())
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
        tokio::select! {
            loaded = self.load(archive, password) => loaded,
            used = over_budget => Err(RestoreFailure::Rejected(format!(
                "the restore outgrew the sandbox's disk budget ({used} bytes used, {budget} \
                 allowed)"
            ))),
        }
    }

    async fn inspect(&mut self) -> Result<ManifestCounts, RestoreFailure> {
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

    async fn destroy(&mut self) {
        if let Some(pool) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.start_kill();
            let _ = server.wait().await;
        }
        if self.dir.exists() {
            if let Err(error) = std::fs::remove_dir_all(&self.dir) {
                tracing::error!(dir = %self.dir.display(), %error, "could not remove a sandbox");
            }
        }
    }
}
