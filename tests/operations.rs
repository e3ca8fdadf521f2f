//! The operator's commands around the pipeline: `doctor` says which backend is usable and which
//! is not (without leaking a password), and a `worker` stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn restorable() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_restorable"));
    for variable in [
        "RESTORABLE_DATABASE_URL",
        "RESTORABLE_NATS_URL",
        "RESTORABLE_S3_BUCKET",
        "RESTORABLE_S3_ENDPOINT",
        "RESTORABLE_KMS_KEY_ID",
        "RESTORABLE_KMS_ENDPOINT",
        "RESTORABLE_CONFIG",
    ] {
        command.env_remove(variable);
    }
    command
}

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
