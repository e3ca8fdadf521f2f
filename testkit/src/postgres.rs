//! A private PostgreSQL cluster for tests that cut the database off mid-run: `initdb` into a temp
//! dir, `postgres` on a free port of 127.0.0.1 with trust auth, and [`PostgresCluster::stop`] /
//! [`PostgresCluster::resume`] on the same port and data directory. It never touches the
//! machine's own server (5432), which other tests use at the same time.
//!
//! Binaries come from `RESTORABLE_PG_BIN`, else the newest `/usr/lib/postgresql/<N>/bin`, else
//! the directory of `pg_ctl` on the `PATH`. PostgreSQL refuses to run as root: when the test runs
//! as root, the cluster runs as the `postgres` system user (else `nobody`) through `runuser`, and
//! its temp dir is made under `/tmp` and handed to that user. `pg_ctl -w` waits until the server
//! accepts connections (bounded), never a fixed sleep. Dropping the cluster stops it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::free_port;

/// How long `pg_ctl` may wait for the server to start or stop, in seconds.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Why the cluster could not be made, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server binaries were found.
    #[error("no PostgreSQL binaries (set RESTORABLE_PG_BIN or install postgresql)")]
    NoBinaries,
    /// The temp dir could not be made or handed to the server's user.
    #[error("preparing {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The user the server must run as (we are root) does not exist.
    #[error("running as root, and neither `postgres` nor `nobody` is in /etc/passwd")]
    NoServerUser,
    /// A PostgreSQL tool failed; its output says why.
    #[error("{step} failed ({status}): {output}")]
    Tool {
        /// `initdb`, `pg_ctl start`, ...
        step: &'static str,
        /// Its exit status.
        status: String,
        /// Its output (and the server log's tail, where useful).
        output: String,
    },
}

/// A PostgreSQL cluster of a test's own.
pub struct PostgresCluster {
    bin: PathBuf,
    /// Holds `data/`, the server log and the Unix socket; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// The system user the server runs as (`None`: the current user).
    run_as: Option<String>,
    running: bool,
}

impl PostgresCluster {
    /// `initdb` into a fresh temp dir and starts the server on a free port.
    ///
    /// # Errors
    /// [`ClusterError`] saying which step failed and why.
    pub fn start() -> Result<Self, ClusterError> {
        let bin = pg_bin().ok_or(ClusterError::NoBinaries)?;
        let run_as = if is_root() {
            Some(server_user().ok_or(ClusterError::NoServerUser)?)
        } else {
            None
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("restorable-test-pg.");
        // The server's user must reach the dir, whatever TMPDIR (maybe under /root) says.
        let made = if run_as.is_some() {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        };
        let dir = made.map_err(|source| ClusterError::Io {
            path: PathBuf::from("/tmp"),
            source,
        })?;
        if let Some(user) = &run_as {
            let (uid, gid) = user_ids(user).ok_or(ClusterError::NoServerUser)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|source| {
                ClusterError::Io {
                    path: dir.path().to_owned(),
                    source,
                }
            })?;
        }
        let mut cluster = Self {
            bin,
            dir,
            port: free_port(),
            run_as,
            running: false,
        };
        let data = cluster.data_dir();
        let output = cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .output()
            .map_err(|source| ClusterError::Io {
                path: cluster.bin.join("initdb"),
                source,
            })?;
        check("initdb", &output, None)?;
        cluster.resume()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (the same after a resume).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected, the data stays).
    ///
    /// # Errors
    /// [`ClusterError::Tool`] if `pg_ctl` could not stop it.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let output = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"])
            .output()
            .map_err(|source| ClusterError::Io {
                path: self.bin.join("pg_ctl"),
                source,
            })?;
        check("pg_ctl stop", &output, Some(&self.log_path()))?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port and data directory, and waits until it accepts
    /// connections.
    ///
    /// # Errors
    /// [`ClusterError::Tool`] with `pg_ctl`'s output and the server log's tail.
    pub fn resume(&mut self) -> Result<(), ClusterError> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off \
             -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let output = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o", &options, "start"])
            .output()
            .map_err(|source| ClusterError::Io {
                path: self.bin.join("pg_ctl"),
                source,
            })?;
        check("pg_ctl start", &output, Some(&self.log_path()))?;
        self.running = true;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `bin/<name>`, as the server's user when we are root.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("stopping the test cluster on port {}: {error}", self.port);
            // Last resort, so no server outlives the test with its files gone.
            let _ = self
                .tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"])
                .output();
        }
    }
}

/// Ok if the tool succeeded, else its output (and the server log's tail).
fn check(step: &'static str, output: &Output, log: Option<&Path>) -> Result<(), ClusterError> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if let Some(log) = log.and_then(|p| std::fs::read_to_string(p).ok()) {
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        text.push_str("\nserver log (last lines):\n");
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    Err(ClusterError::Tool {
        step,
        status: output.status.to_string(),
        output: text,
    })
}

/// `RESTORABLE_PG_BIN`, else the newest `/usr/lib/postgresql/<N>/bin` with a server, else the
/// directory of `pg_ctl` on the `PATH`.
fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RESTORABLE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file())
    })
}

/// Whether this process runs as root (from `/proc/self/status`, no libc needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `postgres` if it exists, else `nobody`.
fn server_user() -> Option<String> {
    ["postgres", "nobody"]
        .into_iter()
        .find(|user| user_ids(user).is_some())
        .map(str::to_owned)
}

/// uid and gid of `user` from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == user).then_some(())?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn a_cluster_stops_and_resumes_on_the_same_port() {
        let mut cluster = PostgresCluster::start().expect("a test cluster");
        let port = cluster.port();
        assert_ne!(port, 5432);
        assert!(answers(port), "listening after start");
        cluster.stop().expect("stop");
        assert!(!answers(port), "nothing listens while stopped");
        cluster.resume().expect("resume");
        assert!(answers(port), "listening again");
        assert_eq!(cluster.port(), port);
        assert!(cluster.url().ends_with(&format!(":{port}/postgres")));
    }
}
