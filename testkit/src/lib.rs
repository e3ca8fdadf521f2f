//! Real servers for tests and benchmarks, started and stopped by the test itself: a throwaway
//! `nats-server` with JetStream on a free port (which a test can stop and start again on the
//! same port and store, to cut the transport off mid-run), throwaway (scratch) PostgreSQL
//! databases and whole clusters, and a local AWS endpoint (moto) for S3 and KMS. Readiness is
//! awaited by asking the server, never by a fixed sleep. A dev-dependency only: nothing here
//! ships in the `restorable` binary.
//!
//! # Layout
//! - this file: `nats-server` ([`NatsServer`]) and [`free_port`].
//! - `postgres`: a whole PostgreSQL cluster of the test's own ([`PostgresCluster`]).
//! - `scratch`: a throwaway database on a running server ([`ScratchDatabase`]).
//! - `aws`: the moto endpoint, started once per test binary.
//! - `heavy`: [`heavy`], the limit on heavy tests running at once.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod aws;
mod heavy;
pub mod postgres;
mod scratch;

pub use aws::{aws_endpoint, unique_bucket, AWS_REGION};
pub use heavy::{heavy, HeavyPermit};
pub use postgres::{ClusterError, PostgresCluster};
pub use scratch::{test_server_url, ScratchDatabase};

/// The `nats-server` binary: `RESTORABLE_NATS_SERVER`, else Debian's, else the `PATH`'s.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("RESTORABLE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        return debian;
    }
    PathBuf::from("nats-server")
}

/// A port nobody listens on right now.
///
/// # Panics
/// If the kernel gives no port (a test environment failure).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `nats-server -js` of a test's own.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one on a free port with a fresh JetStream store.
    ///
    /// # Panics
    /// If nats-server cannot be started or does not get ready within 20 s.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        server.resume();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its store stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store, and waits until JetStream is up.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn resume(&mut self) {
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.jetstream_ready() {
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} not ready",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers with JetStream on (its INFO line says so).
    fn jetstream_ready(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"jetstream\":true")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
