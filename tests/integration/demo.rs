//! The `restorable` binary end to end: the demo on the embedded default, run twice on one data
//! directory, and a scan proving no tenant password or PBX credential leaks into logs, output,
//! events or any file of the data directory.

use std::path::Path;
use std::process::{Command, Output};

use restorable_domain::ids::TenantId;
use restorable_pbx_sim::SimPbxConfig;
use restorable_pipeline::pipeline::{Pipeline, Settings};
use secrecy::ExposeSecret;
use sqlx::Row;

fn demo(data_dir: &Path, extra_env: &[(&str, &str)]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_restorable"))
        .args(["demo", "--capture-deadline-secs", "2", "--data-dir"])
        .arg(data_dir)
        .envs(extra_env.iter().copied())
        .output()
        .expect("run the demo");
    assert!(
        output.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The fleet table's line for an instance.
fn table_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .rev()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no table line for {name} in:\n{stdout}"))
}

#[tokio::test]
async fn the_demo_lands_every_pbx_on_its_rung_and_a_second_run_continues_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = demo(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    let expected = [
        ("pbx-01", "Restore-Tested", "Healthy", ""),
        ("pbx-03", "Restore-Tested", "Healthy", ""),
        (
            "pbx-02",
            "Started",
            "Needs attention",
            "pbx_auth at capture",
        ),
        (
            "pbx-04",
            "Started",
            "Needs attention",
            "capture_timeout at capture",
        ),
        (
            "pbx-05",
            "Started",
            "Needs attention",
            "pbx_error at capture",
        ),
        (
            "pbx-07",
            "Started",
            "Needs attention",
            "download_truncated at capture",
        ),
        (
            "pbx-08",
            "Secured",
            "Needs attention",
            "entry_corrupt at verify",
        ),
        (
            "pbx-09",
            "Secured",
            "Needs attention",
            "wrong_key at verify",
        ),
        (
            "pbx-10",
            "Secured",
            "Needs attention",
            "structure_incomplete at verify",
        ),
        (
            "pbx-11",
            "Verified",
            "Needs attention",
            "integrity_violation at restore_test",
        ),
        (
            "pbx-12",
            "Verified",
            "Needs attention",
            "manifest_mismatch at restore_test",
        ),
    ];
    let native = stdout
        .lines()
        .find(|line| line.contains("/pbx-06 ") && line.contains("captured"))
        .unwrap_or_else(|| panic!("no captured line for pbx-06 in:\n{stdout}"));
    assert!(
        native.contains("native_backup_stale: the PBX's own daily backup last ran"),
        "{native}"
    );
    assert!(table_line(&stdout, "pbx-06").contains("Restore-Tested"));
    for (name, rung, status, reason) in expected {
        let line = table_line(&stdout, name);
        assert!(
            line.contains(rung) && line.contains(status) && line.ends_with(reason.trim()),
            "{name}: {line}"
        );
    }

    demo(dir.path(), &[]);
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("events.db").display()
    ))
    .await
    .expect("open the store");
    let instances: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Instance'",
    )
    .fetch_one(&pool)
    .await
    .expect("count")
    .get(0);
    assert_eq!(
        instances, 12,
        "the second run re-used the enrolled instances"
    );
    let cycles: i64 = sqlx::query("SELECT COUNT(*) FROM events WHERE event_type = 'CycleStarted'")
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0);
    assert_eq!(cycles, 24, "two runs, one cycle per PBX each");
    let duplicated: i64 = sqlx::query(
        "SELECT COUNT(*) FROM (SELECT aggregate_id, event_type FROM events WHERE aggregate_type = 'BackupCycle' \
         GROUP BY aggregate_id, event_type HAVING COUNT(*) > 1)",
    )
    .fetch_one(&pool)
    .await
    .expect("count")
    .get(0);
    assert_eq!(duplicated, 0, "a cycle recorded the same event twice");
    let keys: i64 = sqlx::query("SELECT COUNT(*) FROM events WHERE event_type = 'KeyIssued'")
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0);
    assert_eq!(keys, 3, "one key per tenant, issued once");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn no_secret_reaches_logs_output_events_or_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = demo(dir.path(), &[("RUST_LOG", "debug")]);

    let pipeline = Pipeline::embedded(dir.path(), Settings::default())
        .await
        .expect("open");
    let mut secrets = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        let password = pipeline
            .tenant_password(&TenantId::new(tenant).expect("tenant"), 1)
            .await
            .expect("the key unseals with the master key");
        secrets.push((
            format!("{tenant} backup password"),
            password.expose_secret().to_owned(),
        ));
    }
    for index in 0..12u64 {
        let config = SimPbxConfig::new(&format!("pbx-{:02}", index + 1), index + 1);
        secrets.push((
            format!("{} client secret", config.name),
            config.client_secret.clone(),
        ));
    }
    // The scan can fail: each password is 24 characters and really is the one the PBX used
    // (the healthy PBXes reached Verified with it, which the demo test asserts).
    assert!(secrets.iter().all(|(_, s)| s.len() >= 16));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("DEBUG"),
        "debug logging was on"
    );

    let mut haystacks = vec![
        ("stdout".to_owned(), output.stdout.clone()),
        ("stderr".to_owned(), output.stderr.clone()),
    ];
    pipeline.store.close().await;
    drop(pipeline);
    // The last SQLite connection checkpoints the write-ahead log into events.db and removes it
    // as it closes, which may finish just after `close()` returns: scan once it has.
    let wal = dir.path().join("events.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while wal.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for file in files_under(dir.path()) {
        match std::fs::read(&file) {
            Ok(bytes) => haystacks.push((file.display().to_string(), bytes)),
            // A file removed between listing and reading (SQLite's shared-memory index) holds
            // nothing that is not also in a file that stays.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("reading {}: {e}", file.display()),
        }
    }
    assert!(haystacks
        .iter()
        .any(|(name, _)| name.ends_with("events.db")));
    for (what, secret) in &secrets {
        for (name, bytes) in &haystacks {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the {what} appears in {name}");
        }
    }
}

/// Restore-Tested needs no privilege: as an ordinary user the sandbox runs in a user namespace
/// of its own. When the suite runs as root (CI), the demo runs here as `nobody` (uid 65534,
/// through `setpriv`); run as anyone else, the test above already is that proof.
#[test]
fn the_demo_reaches_restore_tested_as_an_unprivileged_user() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    // A copy of the binary nobody can run, wherever the checkout lives (e.g. under /root).
    let binary = home.path().join("restorable");
    std::fs::copy(env!("CARGO_BIN_EXE_restorable"), &binary).expect("copy the binary");
    for path in [home.path(), binary.as_path()] {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
    }
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .args(["demo", "--fleet", "2", "--no-faults", "--data-dir"])
        .arg(home.path().join("data"))
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .output()
        .expect("run the demo as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo as nobody failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["pbx-01", "pbx-02"] {
        let line = table_line(&stdout, name);
        assert!(line.contains("Restore-Tested"), "{line}\n{stdout}");
    }
}
