//! A worker killed (SIGKILL) in the middle of a restore test: its sandbox server dies with it,
//! and the next start finds the leftover directory, destroys it, and finishes the cycle.

use std::path::Path;
use std::time::Duration;

use restorable_pipeline::sandbox::process::{leftover_processes, sandbox_root};

#[test]
fn a_killed_worker_leaves_nothing_after_the_next_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let sandboxes = sandbox_root(data.path());
    let bin = env!("CARGO_BIN_EXE_restorable");
    let demo = |data: &Path| {
        std::process::Command::new(bin)
            .args([
                "demo",
                "--fleet",
                "1",
                "--no-faults",
                "--extensions",
                "400",
                "--data-dir",
            ])
            .arg(data)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo")
    };
    let mut worker = demo(data.path());
    // Wait until its restore test has a running server, then kill the worker outright.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let server_up = || {
        std::fs::read_dir(&sandboxes)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().join("pgdata/postmaster.pid").exists())
            })
            .unwrap_or(false)
    };
    while !server_up() {
        assert!(
            std::time::Instant::now() < deadline,
            "no restore test started"
        );
        assert!(
            worker.try_wait().expect("wait").is_none(),
            "the demo ended before its restore test"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.kill().expect("SIGKILL the worker");
    worker.wait().expect("reap");

    // Its server dies with it (parent-death signal); its directory is still there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !leftover_processes(&sandboxes).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox server outlived its worker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_dir(&sandboxes).expect("dir").count() > 0,
        "expected the killed run's directory"
    );

    // The next start destroys the leftovers, and the interrupted cycle finishes.
    let output = demo(data.path()).wait_with_output().expect("second run");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Restore-Tested"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(&sandboxes).expect("dir").count(),
        0,
        "leftover directories"
    );
    assert!(leftover_processes(&sandboxes).is_empty());
}
