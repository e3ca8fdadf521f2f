//! Where the sandboxes live: the sandbox root of an installation ([`sandbox_root`],
//! [`SandboxPlacement`]), created, checked ([`check_root`]: never a directory another user could
//! have prepared) and sealed, and the per-sandbox directories in it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::host::effective_uid;

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
pub(super) fn create_root(root: &Path, server_gid: Option<u32>) -> std::io::Result<()> {
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
pub(super) fn create_owned_dir(dir: &Path, server_gid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    seal(dir, server_gid)
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
    /// A cgroup v2 group delegated to the service (`memory` and `pids` in its
    /// `cgroup.subtree_control`) for the sandboxes' cgroups; `None`: found automatically as
    /// root (see `cgroup`), none otherwise.
    pub cgroup: Option<PathBuf>,
}

impl SandboxPlacement {
    /// The sandbox root of the installation whose data directory is `data_dir`.
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| sandbox_root(data_dir))
    }
}
