//! The sweep of leftovers: which entries of the sandbox root belong to an owner that is gone
//! (see the module header of [`super`]), the servers still running in them, and the processes
//! that name a path under a root.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::process::Command;

use crate::sandbox::owner::Owner;

/// How old (by its modification time) a sandbox directory without an owner marker must be
/// before a sweep takes it for a leftover. A marker is written right after the directory is
/// created, so only a process killed between the two leaves one without; this is generous.
pub const UNMARKED_LEFTOVER_AGE: Duration = Duration::from_secs(10 * 60);

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
pub(super) enum Judgement {
    /// Its owner is gone: destroy it (the reason, for the log).
    Leftover(&'static str),
    /// Owned by a live process, or perhaps being created by one: leave it.
    Live,
    /// A symbolic link or a file: never a sandbox, never followed, left alone.
    NotASandbox,
}

/// Judges one entry of the sandbox root, without following symbolic links.
pub(super) fn leftover(path: &Path) -> Judgement {
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
pub(super) async fn kill_server_of(dir: &Path) {
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
