//! The resources one sandbox may use: [`SandboxLimits`] (disk, memory, processes), the largest
//! file its server may write, and the disk usage the budget is watched by.

use std::path::Path;
use std::time::Duration;

/// The largest file a sandbox's PostgreSQL may write (RLIMIT_FSIZE).
pub(super) const MAX_FILE_BYTES: u64 = 2 << 30;

/// The resources one sandbox may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Bytes on disk of the whole sandbox (cluster, WAL, logs), watched while restoring.
    pub disk_bytes: u64,
    /// Memory of the whole server, every process together (its cgroup's `memory.max`, no
    /// swap), where there is a cgroup; the address space of each process (`RLIMIT_AS`) always.
    pub memory_bytes: u64,
    /// Processes of the server: its cgroup's `pids.max` where there is one, else
    /// `RLIMIT_NPROC` (counted inside the sandbox's own user namespace, so other processes of
    /// the same user never count against it).
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

/// How often the disk budget is checked during a restore.
pub(super) const DISK_CHECK_EVERY: Duration = Duration::from_millis(200);

/// Bytes on disk under `dir` (allocated blocks; never follows a link). Entries that vanish or
/// cannot be read while it walks are skipped.
pub(super) fn disk_usage(dir: &Path) -> u64 {
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
