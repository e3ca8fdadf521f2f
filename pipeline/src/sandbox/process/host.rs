//! What this machine offers the sandbox: the newest PostgreSQL server binaries, the
//! unprivileged user the server runs as (when the service is root), and this process's
//! effective uid.

use std::path::PathBuf;

use super::provision_error;
use crate::sandbox::RestoreFailure;

/// The newest PostgreSQL server binaries on this machine (`RESTORABLE_PG_BIN` overrides).
pub(super) fn find_pg_bin() -> Result<PathBuf, RestoreFailure> {
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
pub(super) fn system_user(name: &str) -> Result<(u32, u32), RestoreFailure> {
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

pub(super) fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// This process's effective uid (from `/proc/self/status`).
pub(super) fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|uid| uid.parse().ok())
}
