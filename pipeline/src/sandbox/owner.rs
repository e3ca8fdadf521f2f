//! Who owns a sandbox. Every process sandbox directory holds a marker, [`MARKER`], naming the
//! process that made it: its pid, that process's start time (field 22 of `/proc/<pid>/stat`, in
//! clock ticks since boot) and the boot id (`/proc/sys/kernel/random/boot_id`). The marker is
//! written before the sandbox's server starts, atomically (a temporary file renamed into place),
//! so a reader sees a whole marker or none.
//!
//! An owner is gone — and its sandbox a leftover that a sweep may destroy — when the machine
//! booted since (another boot id), when no process has its pid, or when the process with its pid
//! started at another time (the pid was reused) or is a zombie. Whatever cannot be judged (our
//! own boot id or a `/proc` entry unreadable for a reason other than its absence) counts as
//! alive: a sweep that keeps a leftover costs disk space, one that destroys a live restore test
//! raises a false alert.

use std::io::Write;
use std::path::Path;

/// The marker's file name inside a sandbox directory.
pub const MARKER: &str = "owner";
/// The temporary name the marker is written under before it is renamed to [`MARKER`].
const MARKER_TEMPORARY: &str = "owner.tmp";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Why an owner could not be found out, written or read.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// A file under `/proc` or the marker could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `/proc` file or the marker does not say what it should.
    #[error("{0}")]
    Malformed(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OwnerError {
    let what = what.into();
    move |source| OwnerError::Io { what, source }
}

/// The process that owns a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its start time: clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The boot it ran in.
    pub boot_id: String,
}

/// The state (field 3) and start time (field 22) of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some((state, start_time))
}

/// The state and start time of process `pid`; `Ok(None)` when there is no such process.
fn process_stat(pid: u32) -> Result<Option<(char, u64)>, OwnerError> {
    let path = format!("/proc/{pid}/stat");
    match std::fs::read_to_string(&path) {
        Ok(stat) => parse_stat(&stat)
            .map(Some)
            .ok_or_else(|| OwnerError::Malformed(format!("{path} has no start time"))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A process that exits between the directory lookup and the read gives ESRCH.
        Err(error) if error.raw_os_error() == Some(3) => Ok(None),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// This boot's id.
fn boot_id() -> Result<String, OwnerError> {
    let id = std::fs::read_to_string(BOOT_ID).map_err(io_error(BOOT_ID))?;
    let id = id.trim();
    if id.is_empty() {
        return Err(OwnerError::Malformed(format!("{BOOT_ID} is empty")));
    }
    Ok(id.to_owned())
}

impl Owner {
    /// This process.
    ///
    /// # Errors
    /// [`OwnerError`] when `/proc` cannot be read.
    pub fn current() -> Result<Self, OwnerError> {
        Self::of(std::process::id())
    }

    /// The running process `pid`.
    ///
    /// # Errors
    /// [`OwnerError`] when there is no such process or `/proc` cannot be read.
    pub fn of(pid: u32) -> Result<Self, OwnerError> {
        let (_, start_time) =
            process_stat(pid)?.ok_or_else(|| OwnerError::Malformed(format!("no process {pid}")))?;
        Ok(Self {
            pid,
            start_time,
            boot_id: boot_id()?,
        })
    }

    /// Whether the owning process still runs: same boot, a process with its pid that started
    /// at its start time and is not a zombie. What cannot be judged counts as alive.
    pub fn is_alive(&self) -> bool {
        match boot_id() {
            Ok(current) if current != self.boot_id => return false,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the boot id; keeping the sandbox");
                return true;
            }
        }
        match process_stat(self.pid) {
            Ok(None) => false,
            Ok(Some((state, start_time))) => {
                start_time == self.start_time && !matches!(state, 'Z' | 'X' | 'x')
            }
            Err(error) => {
                tracing::warn!(pid = self.pid, %error, "cannot judge a sandbox owner; keeping the sandbox");
                true
            }
        }
    }

    fn render(&self) -> String {
        format!(
            "pid {}\nstart_time {}\nboot_id {}\n",
            self.pid, self.start_time, self.boot_id
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let (name, value) = line.split_once(' ')?;
                (name == key).then(|| value.trim())
            })
        };
        let pid = field("pid")?.parse().ok().filter(|pid| *pid > 0)?;
        let start_time = field("start_time")?.parse().ok()?;
        let boot_id = field("boot_id").filter(|id| !id.is_empty())?.to_owned();
        Some(Self {
            pid,
            start_time,
            boot_id,
        })
    }

    /// Writes the marker into `dir`: a fresh temporary file (never through an existing file or
    /// symlink), then renamed to [`MARKER`].
    ///
    /// # Errors
    /// [`OwnerError::Io`] when it cannot be written.
    pub fn write_marker(&self, dir: &Path) -> Result<(), OwnerError> {
        let temporary = dir.join(MARKER_TEMPORARY);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(io_error(format!("creating {}", temporary.display())))?;
        file.write_all(self.render().as_bytes())
            .map_err(io_error(format!("writing {}", temporary.display())))?;
        drop(file);
        std::fs::rename(&temporary, dir.join(MARKER))
            .map_err(io_error(format!("renaming {}", temporary.display())))
    }

    /// The owner named by the marker in `dir`; `Ok(None)` when there is no marker.
    ///
    /// # Errors
    /// [`OwnerError`] when the marker is not a regular file, cannot be read, or is malformed.
    pub fn read_marker(dir: &Path) -> Result<Option<Self>, OwnerError> {
        let path = dir.join(MARKER);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(path.display().to_string())(error)),
        };
        if !metadata.file_type().is_file() {
            return Err(OwnerError::Malformed(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(io_error(path.display().to_string()))?;
        Self::parse(&text)
            .map(Some)
            .ok_or_else(|| OwnerError::Malformed(format!("{} is malformed", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_has_spaces_and_parentheses() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[0] = "S".into();
        let stat = format!("4242 (a (b) c) {}", fields.join(" "));
        assert_eq!(parse_stat(&stat), Some(('S', 22)));
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_marker_round_trips() {
        let me = Owner::current().expect("owner");
        assert_eq!(me.pid, std::process::id());
        assert!(me.is_alive());
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Owner::read_marker(dir.path()).expect("read"), None);
        me.write_marker(dir.path()).expect("write");
        assert_eq!(Owner::read_marker(dir.path()).expect("read"), Some(me));
        assert!(!dir.path().join(MARKER_TEMPORARY).exists());
    }

    #[test]
    fn another_start_time_or_boot_or_a_missing_pid_is_gone() {
        let me = Owner::current().expect("owner");
        let reused = Owner {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!reused.is_alive(), "the pid was reused by another process");
        let rebooted = Owner {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me.clone()
        };
        assert!(!rebooted.is_alive(), "the machine booted since");
        // Above the kernel's largest pid (4194304), so no process has it.
        let missing = Owner {
            pid: 4_194_305,
            ..me
        };
        assert!(!missing.is_alive());
    }

    #[test]
    fn an_exited_child_is_gone_even_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("sleep");
        let owner = Owner::of(child.id()).expect("owner");
        assert!(owner.is_alive());
        child.kill().expect("kill");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while owner.is_alive() {
            assert!(std::time::Instant::now() < deadline, "a zombie is alive");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().expect("reap");
        assert!(!owner.is_alive());
    }

    #[test]
    fn a_malformed_or_symlinked_marker_is_an_error_not_an_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MARKER), "pid x\n").expect("write");
        assert!(Owner::read_marker(dir.path()).is_err());
        std::fs::remove_file(dir.path().join(MARKER)).expect("remove");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        Owner::current()
            .expect("owner")
            .write_marker(elsewhere.path())
            .expect("write");
        std::os::unix::fs::symlink(elsewhere.path().join(MARKER), dir.path().join(MARKER))
            .expect("symlink");
        assert!(Owner::read_marker(dir.path()).is_err());
    }
}
