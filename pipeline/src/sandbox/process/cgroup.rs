//! Control groups for a sandbox's server. rlimits bound each process alone; a cgroup bounds the
//! whole server together — the postmaster, every backend it forks and any program it could be
//! made to run — so one sandbox can neither use more than its memory in total nor fork more than
//! its process count, and [`SandboxCgroup::remove`] kills every process of it, however it was
//! started.
//!
//! Where they come from ([`Cgroups`]):
//! - a configured cgroup v2 directory delegated to the service (`[sandbox] cgroup`, any user:
//!   `memory` and `pids` must be in its `cgroup.subtree_control`);
//! - as root with none configured: cgroup v2 when the host has the unified hierarchy with the
//!   `memory` and `pids` controllers (a `restorable-sandboxes` group at its top); on a host
//!   with only the legacy (v1) hierarchies, `restorable-sandboxes` under this process's own
//!   `memory` and `pids` groups;
//! - otherwise none: the rlimits alone, which `restorable doctor` says.
//!
//! Each sandbox gets a child named after its id with `memory.max` (v1:
//! `memory.limit_in_bytes`), no swap, and `pids.max`; its server's command line starts with
//! [`SandboxCgroup::join_prefix`] — a shell that writes `0` to each `cgroup.procs` (which moves
//! the writer itself) and then `exec`s the rest — so nothing of it ever runs outside.
//! After a failed restore, [`SandboxCgroup::exceeded`] tells whether the kernel enforced a
//! limit (an out-of-memory kill, a refused fork): that restore is `restore_rejected` by the
//! limit, whatever error the client saw.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::limits::SandboxLimits;
use super::provision_error;
use crate::sandbox::RestoreFailure;

/// The group that holds the sandboxes' groups.
const PARENT: &str = "restorable-sandboxes";

/// How long [`SandboxCgroup::remove`] waits for the killed processes to be gone.
const REMOVAL_WAIT: Duration = Duration::from_secs(5);

/// Where the sandboxes' cgroups are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Cgroups {
    /// cgroup v2: children of this group, which has `memory` and `pids` in its subtree.
    Unified(PathBuf),
    /// cgroup v1: children of these groups of the `memory` and `pids` hierarchies.
    Legacy {
        /// The parent in the `memory` hierarchy.
        memory: PathBuf,
        /// The parent in the `pids` hierarchy.
        pids: PathBuf,
    },
}

impl Cgroups {
    /// The cgroups root may use on this host, or why there are none.
    pub(super) fn discover_as_root() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let mounts = parse_mounts(&mountinfo);
        let unified = mounts.iter().find(|m| m.fstype == "cgroup2");
        if let Some(mount) = unified {
            let controllers =
                std::fs::read_to_string(mount.point.join("cgroup.controllers")).unwrap_or_default();
            if has_words(&controllers, &["memory", "pids"]) {
                let parent = mount.point.join(PARENT);
                make_group(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
                for group in [mount.point.as_path(), parent.as_path()] {
                    enable_controllers(group)?;
                }
                return Ok(Self::Unified(parent));
            }
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let legacy = |controller: &str| -> Result<PathBuf, String> {
            let mount = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == controller))
                .ok_or_else(|| format!("no {controller} controller (cgroup v1 or v2)"))?;
            let path = own_group(&own, controller)
                .ok_or_else(|| format!("this process has no {controller} cgroup"))?;
            let inside = path
                .strip_prefix(&mount.root)
                .unwrap_or(Path::new(""))
                .to_owned();
            let parent = mount.point.join(inside).join(PARENT);
            make_group(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            Ok(parent)
        };
        Ok(Self::Legacy {
            memory: legacy("memory")?,
            pids: legacy("pids")?,
        })
    }

    /// A cgroup v2 group delegated to this service (`[sandbox] cgroup`).
    ///
    /// # Errors
    /// [`RestoreFailure::Provision`] naming what is missing: the group, or `memory` and `pids`
    /// in its `cgroup.subtree_control`.
    pub(super) fn delegated(group: &Path) -> Result<Self, RestoreFailure> {
        let subtree = std::fs::read_to_string(group.join("cgroup.subtree_control"))
            .map_err(|e| provision_error(&format!("the cgroup {}", group.display()), e))?;
        if !has_words(&subtree, &["memory", "pids"]) {
            return Err(provision_error(
                &format!("the cgroup {}", group.display()),
                format!(
                    "memory and pids must be enabled in its cgroup.subtree_control (it has \
                     {:?}); e.g. `echo +memory +pids > {}/cgroup.subtree_control`",
                    subtree.trim(),
                    group.display()
                ),
            ));
        }
        Ok(Self::Unified(group.to_owned()))
    }

    /// What `restorable doctor` shows.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Unified(parent) => format!("cgroup v2 under {}", parent.display()),
            Self::Legacy { memory, .. } => format!(
                "cgroup v1 (this host has no v2 memory controller) under {}",
                memory.display()
            ),
        }
    }

    /// The group of the sandbox `id`, under `limits`.
    ///
    /// # Errors
    /// An I/O error creating or configuring it; nothing is left behind then.
    pub(super) fn create(
        &self,
        id: &str,
        limits: &SandboxLimits,
    ) -> std::io::Result<SandboxCgroup> {
        let mut group = SandboxCgroup {
            unified: matches!(self, Self::Unified(_)),
            dirs: Vec::new(),
        };
        let made = group.configure(self, id, limits);
        match made {
            Ok(()) => Ok(group),
            Err(error) => {
                for dir in &group.dirs {
                    let _ = std::fs::remove_dir(dir);
                }
                Err(error)
            }
        }
    }

    /// Removes the empty groups of sandboxes that are gone (a killed worker's), once they are
    /// older than `age` (younger, one may be a sandbox being made this very moment). A group
    /// with a process in it cannot be removed, so a live sandbox's never is.
    pub(super) fn sweep(&self, age: Duration) -> usize {
        let parents: Vec<&PathBuf> = match self {
            Self::Unified(parent) => vec![parent],
            Self::Legacy { memory, pids } => vec![memory, pids],
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .ok()
                    .filter(|m| m.is_dir())
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|elapsed| elapsed > age);
                if old && std::fs::remove_dir(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// One sandbox's group (in each hierarchy, for v1).
#[derive(Debug)]
pub(super) struct SandboxCgroup {
    unified: bool,
    dirs: Vec<PathBuf>,
}

impl SandboxCgroup {
    fn configure(
        &mut self,
        cgroups: &Cgroups,
        id: &str,
        limits: &SandboxLimits,
    ) -> std::io::Result<()> {
        let memory = limits.memory_bytes.to_string();
        let processes = limits.processes.to_string();
        match cgroups {
            Cgroups::Unified(parent) => {
                let dir = self.make(parent, id)?;
                write_setting(&dir, "memory.max", &memory)?;
                write_optional(&dir, "memory.swap.max", "0")?;
                write_setting(&dir, "pids.max", &processes)?;
            }
            Cgroups::Legacy {
                memory: memory_parent,
                pids: pids_parent,
            } => {
                let dir = self.make(memory_parent, id)?;
                write_setting(&dir, "memory.limit_in_bytes", &memory)?;
                // With swap accounting on, memory and swap together get the same bound.
                write_optional(&dir, "memory.memsw.limit_in_bytes", &memory)?;
                let dir = self.make(pids_parent, id)?;
                write_setting(&dir, "pids.max", &processes)?;
            }
        }
        Ok(())
    }

    fn make(&mut self, parent: &Path, id: &str) -> std::io::Result<PathBuf> {
        let dir = parent.join(id);
        std::fs::create_dir(&dir)?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// The start of a command line that runs the rest of it in this group: per group, `sh -c
    /// 'echo 0 > "$0" && exec "$@"' <group>/cgroup.procs` (a shell that moves itself in, then
    /// becomes the next program; `echo` is a shell builtin, so the writer is the shell itself; a
    /// failed move ends it with the shell's error, never outside).
    pub(super) fn join_prefix(&self) -> Vec<OsString> {
        let mut prefix = Vec::new();
        for dir in &self.dirs {
            prefix.push(OsString::from("sh"));
            prefix.push(OsString::from("-c"));
            prefix.push(OsString::from(r#"echo 0 > "$0" && exec "$@""#));
            prefix.push(dir.join("cgroup.procs").into_os_string());
        }
        prefix
    }

    /// The limit the kernel enforced on this group, if any: an out-of-memory kill, or a fork
    /// refused at the process limit.
    pub(super) fn exceeded(&self) -> Option<&'static str> {
        let count = |dir: &Path, file: &str, key: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_default()
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(' ')?;
                    (name == key).then(|| value.trim().parse().ok()).flatten()
                })
                .unwrap_or(0)
        };
        let (memory_dir, pids_dir) = match self.dirs.as_slice() {
            [dir] => (dir, dir),
            [memory, pids] => (memory, pids),
            _ => return None,
        };
        let memory_file = if self.unified {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        if count(memory_dir, memory_file, "oom_kill") > 0 {
            Some("memory limit")
        } else if count(pids_dir, "pids.events", "max") > 0 {
            Some("process limit")
        } else {
            None
        }
    }

    /// Kills every process left in the group and removes it, retrying while they die; a group
    /// that will not go is logged (the next start's sweep removes it once empty).
    pub(super) async fn remove(&mut self) {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        for dir in std::mem::take(&mut self.dirs) {
            loop {
                kill_members(&dir);
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(error) if tokio::time::Instant::now() >= deadline => {
                        tracing::error!(group = %dir.display(), %error, "could not remove a sandbox cgroup");
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }
}

impl Drop for SandboxCgroup {
    /// The safety net for a sandbox dropped without being destroyed: what is left in the
    /// groups is killed, and they are removed once it is gone.
    fn drop(&mut self) {
        if self.dirs.is_empty() {
            return;
        }
        let dirs = std::mem::take(&mut self.dirs);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + REMOVAL_WAIT;
            for dir in dirs {
                kill_members(&dir);
                while std::fs::remove_dir(&dir).is_err()
                    && dir.exists()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
    }
}

/// Sends `SIGKILL` to every process in the group `dir` (`cgroup.kill` where the kernel has it).
fn kill_members(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<&str> = members.split_whitespace().collect();
    if !pids.is_empty() {
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Makes a group; one that exists already is fine.
fn make_group(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Enables `memory` and `pids` for the children of `group`.
fn enable_controllers(group: &Path) -> Result<(), String> {
    let subtree = std::fs::read_to_string(group.join("cgroup.subtree_control")).unwrap_or_default();
    if has_words(&subtree, &["memory", "pids"]) {
        return Ok(());
    }
    std::fs::write(group.join("cgroup.subtree_control"), "+memory +pids").map_err(|e| {
        format!(
            "enabling memory and pids in {}/cgroup.subtree_control: {e}",
            group.display()
        )
    })
}

fn write_setting(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {value} to {file}: {e}")))
}

/// Writes a setting the kernel may not have (swap accounting off): its absence is fine.
fn write_optional(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    match std::fs::write(dir.join(file), value) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn has_words(text: &str, words: &[&str]) -> bool {
    words
        .iter()
        .all(|word| text.split_whitespace().any(|w| w == *word))
}

/// A cgroup file system mount of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    /// The group the mount shows at its mount point (not `/` inside a cgroup namespace).
    root: PathBuf,
    point: PathBuf,
    fstype: String,
    /// Super-block options (the v1 controllers are among them).
    options: String,
}

/// The cgroup mounts of a `mountinfo` text: `id parent dev root point opts [tags] - fstype
/// source superopts`.
fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let fstype = *right.first()?;
            if !fstype.starts_with("cgroup") {
                return None;
            }
            Some(Mount {
                root: PathBuf::from(left.get(3)?),
                point: PathBuf::from(left.get(4)?),
                fstype: fstype.to_owned(),
                options: right.get(2).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// This process's group in the v1 hierarchy of `controller`, from `/proc/self/cgroup`
/// (`id:controllers:path`).
fn own_group(proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 30 0:31 /outer /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:16 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn only_cgroup_mounts_are_read_with_their_root_point_and_controllers() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].fstype, "cgroup2");
        assert_eq!(mounts[0].point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].root, Path::new("/outer"));
        assert_eq!(mounts[1].options, "rw,memory");
        assert!(mounts[2].options.split(',').any(|o| o == "cpuacct"));
    }

    #[test]
    fn the_own_group_is_found_by_controller_not_by_prefix() {
        let proc_cgroup = "5:cpu,cpuacct:/a\n4:memory:/outer/svc\n0::/\n";
        assert_eq!(
            own_group(proc_cgroup, "memory"),
            Some(PathBuf::from("/outer/svc"))
        );
        assert_eq!(own_group(proc_cgroup, "cpu"), Some(PathBuf::from("/a")));
        assert_eq!(own_group(proc_cgroup, "mem"), None);
        assert_eq!(own_group(proc_cgroup, "pids"), None);
    }

    #[test]
    fn controllers_are_matched_as_whole_words() {
        assert!(has_words("cpu memory pids\n", &["memory", "pids"]));
        assert!(!has_words("cpu memoryx pids", &["memory", "pids"]));
        assert!(!has_words("", &["memory"]));
    }

    #[test]
    fn a_delegated_group_without_memory_and_pids_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu\n").expect("write");
        let error = Cgroups::delegated(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("+memory +pids"), "{error}");
        std::fs::write(
            dir.path().join("cgroup.subtree_control"),
            "cpu memory pids\n",
        )
        .expect("write");
        assert_eq!(
            Cgroups::delegated(dir.path()).expect("accepted"),
            Cgroups::Unified(dir.path().to_owned())
        );
    }
}
