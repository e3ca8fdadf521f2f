//! The operator's commands around the pipeline: `doctor` says which backend is usable and which
//! is not (without leaking a password), a `worker` stops cleanly on SIGTERM, and a `worker`
//! started while NATS or PostgreSQL is down waits for it (without leaking a password) and gets
//! going when it returns.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::restorable;

#[test]
fn doctor_passes_on_the_embedded_default() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = restorable()
        .args(["doctor", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("doctor");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for port in ["event store", "transport", "vault", "key sealing"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(port) && l.contains(" ok ")),
            "{port}: {text}"
        );
    }
}

#[test]
fn doctor_names_each_unusable_backend_without_its_password() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = restorable()
        .args(["doctor", "--data-dir"])
        .arg(data.path())
        .env(
            "RESTORABLE_DATABASE_URL",
            "postgres://restorable:hunter2-secret@127.0.0.1:1/events",
        )
        .env("RESTORABLE_NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("doctor");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for port in ["event store", "transport"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(port) && l.contains("FAIL")),
            "{port}: {text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("vault") && l.contains(" ok ")),
        "the others are still checked: {text}"
    );
    let everything = format!("{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(!everything.contains("hunter2-secret"), "{everything}");
}

#[test]
fn a_wrong_setting_stops_a_worker_at_start_naming_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = restorable()
        .args(["worker", "--stage", "capture", "--data-dir"])
        .arg(data.path())
        .env("RESTORABLE_NATS_URL", "localhost:4222")
        .output()
        .expect("worker");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("RESTORABLE_NATS_URL"), "{text}");
}

#[test]
fn a_worker_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut worker = restorable()
        .args(["worker", "--stage", "all", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker");
    // Wait until it runs (its log says so), then ask it to stop.
    let stderr = worker.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let running = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("worker running"));
    assert!(running, "the worker did not start");
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = worker.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM")),
        "the stop was the signal's doing: {rest:?}"
    );
}

/// The lines a child writes to stderr, collected by a thread, so a test can wait for one.
struct Log {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Log {
    fn of(child: &mut std::process::Child) -> Self {
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                    let Ok(line) = line else { break };
                    lines.lock().expect("log lock").push(line);
                }
            }
        });
        Self { lines }
    }

    fn text(&self) -> String {
        self.lines.lock().expect("log lock").join("\n")
    }

    /// Waits up to `limit` for a line containing all of `words`.
    fn wait_for(&self, words: &[&str], limit: Duration) -> bool {
        self.wait_for_lines(1, words, limit)
    }

    /// Waits up to `limit` for `count` lines containing all of `words`.
    fn wait_for_lines(&self, count: usize, words: &[&str], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .lines
                .lock()
                .expect("log lock")
                .iter()
                .filter(|line| words.iter().all(|word| line.contains(word)))
                .count();
            if found >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A child killed when the test ends, whatever happened.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_database() -> restorable_testkit::ScratchDatabase {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(restorable_testkit::ScratchDatabase::create(
            &restorable_testkit::test_server_url(),
        ))
        .expect("scratch database")
}

fn start_worker(data: &std::path::Path, database_url: &str, nats_url: &str) -> (Running, Log) {
    let mut child = restorable()
        .args(["worker", "--stage", "all", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .env("RESTORABLE_DATABASE_URL", database_url)
        .env("RESTORABLE_NATS_URL", nats_url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker");
    let log = Log::of(&mut child);
    (Running(child), log)
}

/// Sends SIGTERM and waits (up to 20 s) for the exit status.
fn terminate(worker: &mut Running) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = worker.0.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_started_before_nats_waits_for_it_and_then_runs() {
    let database = scratch_database();
    let data = tempfile::tempdir().expect("tempdir");
    // A NATS server that is down: its port and store are kept, nothing listens there yet.
    let mut nats = restorable_testkit::NatsServer::start();
    nats.stop();
    let (mut worker, log) = start_worker(data.path(), database.url(), &nats.url());
    assert!(
        log.wait_for(
            &["WARN", "waiting for the transport"],
            Duration::from_secs(30)
        ),
        "it says it waits for NATS: {}",
        log.text()
    );
    // Still waiting a few tries later, not exited.
    assert!(
        log.wait_for_lines(3, &["waiting for the transport"], Duration::from_secs(30)),
        "{}",
        log.text()
    );
    assert!(
        worker.0.try_wait().expect("wait").is_none(),
        "it waits instead of exiting: {}",
        log.text()
    );
    assert!(!log.text().contains("worker running"), "{}", log.text());
    nats.resume();
    assert!(
        log.wait_for(&["worker running"], Duration::from_secs(90)),
        "it gets going once NATS is back: {}",
        log.text()
    );
    assert!(
        log.wait_for(&["transport", "reachable now"], Duration::from_secs(1)),
        "{}",
        log.text()
    );
    let status = terminate(&mut worker);
    assert!(status.success(), "{status}: {}", log.text());
}

#[test]
fn a_worker_waits_for_its_database_without_its_password_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = restorable_testkit::free_port();
    let url = format!("postgres://u:s3cret@127.0.0.1:{port}/db");
    let nats = restorable_testkit::NatsServer::start();
    let (mut worker, log) = start_worker(data.path(), &url, &nats.url());
    assert!(
        log.wait_for(
            &["WARN", "waiting for the event store"],
            Duration::from_secs(30)
        ),
        "it says it waits for the event store: {}",
        log.text()
    );
    assert!(
        log.wait_for_lines(2, &["waiting for the event store"], Duration::from_secs(30)),
        "{}",
        log.text()
    );
    assert!(
        worker.0.try_wait().expect("wait").is_none(),
        "it waits instead of exiting: {}",
        log.text()
    );
    let status = terminate(&mut worker);
    let text = log.text();
    assert!(
        status.success(),
        "SIGTERM while waiting is a clean stop: {status}: {text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret"), "no password in the log: {text}");
    assert!(!text.contains("worker running"), "{text}");
}

#[test]
fn doctor_answers_at_once_while_the_backends_are_down() {
    let data = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "postgres://u:s3cret@127.0.0.1:{}/db",
        restorable_testkit::free_port()
    );
    let nats_url = format!("nats://127.0.0.1:{}", restorable_testkit::free_port());
    let started = Instant::now();
    let output = restorable()
        .args(["doctor", "--data-dir"])
        .arg(data.path())
        .env("RESTORABLE_DATABASE_URL", &url)
        .env("RESTORABLE_NATS_URL", &nats_url)
        .output()
        .expect("doctor");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // The store's own connect limit (10 s) and NATS's (10 s) bound it; no waiting loop.
    assert!(took < Duration::from_secs(25), "took {took:?}: {text}");
    for port in ["event store", "transport"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(port) && l.contains("FAIL")),
            "{port}: {text}"
        );
    }
    let everything = format!("{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(!everything.contains("s3cret"), "{everything}");
}
