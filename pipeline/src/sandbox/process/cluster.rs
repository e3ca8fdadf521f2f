//! The throwaway PostgreSQL cluster of a sandbox: its directories and owner marker, `initdb`
//! with the sandbox's random password, the server started under its limits in its namespaces,
//! the connection to it, `database_single` and the 3CX schema.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;
use tokio::process::Command;

use super::limits::MAX_FILE_BYTES;
use super::root::{create_owned_dir, create_root};
use super::sandbox::ProcessSandbox;
use super::{provision_error, ProcessSandboxes};
use crate::sandbox::owner::Owner;
use crate::sandbox::{schema, RestoreFailure};

/// How long a fresh cluster may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(20);

impl ProcessSandboxes {
    pub(super) async fn start(&self, sandbox: &mut ProcessSandbox) -> Result<(), RestoreFailure> {
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
        if let Ok(cgroups) = &self.cgroups {
            sandbox.cgroup = Some(
                cgroups
                    .create(&sandbox.id, &self.limits)
                    .map_err(|e| provision_error("creating the sandbox's cgroup", e))?,
            );
        }
        let mut server = self.server_command(sandbox.cgroup.as_ref());
        server
            .arg("prlimit")
            .arg(format!("--fsize={MAX_FILE_BYTES}"))
            .arg("--nofile=1024")
            .arg(format!("--as={}", self.limits.memory_bytes));
        if sandbox.cgroup.is_none() {
            // Without a cgroup, the process count is bounded per user (in the server's user
            // namespace) instead.
            server.arg(format!("--nproc={}", self.limits.processes));
        }
        server
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

impl ProcessSandbox {
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
}
