//! Progress on a terminal and nowhere else: `restorable download` and `verify` draw a bar
//! (bytes, rate, ETA) when standard error is a terminal (a pseudo-terminal made by `script`),
//! and print nothing of it to a pipe or with `--json`.

use std::path::Path;
use std::process::{Command, Output};

fn restorable(data: &Path, args: &[&str]) -> Output {
    crate::common::restorable()
        .args(args)
        .env("RESTORABLE_DATA_DIR", data)
        .env("RUST_LOG", "off")
        .output()
        .expect("run restorable")
}

/// What a terminal shows while `args` run with a pseudo-terminal as stdin, stdout and stderr
/// (whatever the command's exit code).
fn on_a_terminal(data: &Path, args: &[&str]) -> String {
    let command = std::iter::once(env!("CARGO_BIN_EXE_restorable"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("RESTORABLE_DATA_DIR", data)
        .env_remove("RESTORABLE_DATABASE_URL")
        .env_remove("RESTORABLE_NATS_URL")
        .env("RUST_LOG", "off")
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    assert!(output.status.code().is_some(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bars_are_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // A copy of some size, so the bar has something to show.
    let demo = restorable(
        data,
        &[
            "demo",
            "--fleet",
            "1",
            "--no-faults",
            "--padding-bytes",
            "40000000",
        ],
    );
    assert!(demo.status.success(), "{demo:?}");
    let fleet = String::from_utf8_lossy(&restorable(data, &["fleet"]).stdout).into_owned();
    let row: Vec<&str> = fleet
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    let events = restorable(
        data,
        &[
            "events",
            "--instance",
            &format!("{}/{}", row[0], row[1]),
            "--json",
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&events.stdout).expect("json");
    let cycle = doc["events"]
        .as_array()
        .expect("events")
        .iter()
        .find_map(|e| e["payload"]["CycleOpened"]["cycle_id"].as_str())
        .expect("a cycle")
        .to_owned();

    let path = |name: &str| data.join(name).to_string_lossy().into_owned();
    let terminal = on_a_terminal(
        data,
        &["download", "--cycle", &cycle, "--out", &path("tty.zip")],
    );
    assert!(terminal.contains("downloading the copy"), "{terminal}");
    assert!(terminal.contains("MiB"), "bytes shown: {terminal}");

    let piped = restorable(
        data,
        &["download", "--cycle", &cycle, "--out", &path("pipe.zip")],
    );
    assert!(piped.status.success(), "{piped:?}");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("downloading"), "{stderr}");

    let json = on_a_terminal(
        data,
        &[
            "download",
            "--cycle",
            &cycle,
            "--out",
            &path("json.zip"),
            "--json",
        ],
    );
    assert!(!json.contains("downloading the copy"), "{json}");

    // verify: the same. The bar is drawn when the pass begins, so a wrong password (which
    // stops the pass early) still shows it, and the verdict follows.
    std::fs::write(data.join("pw"), "wrong").expect("pw");
    let verify = ["verify", &path("pipe.zip"), "--password-file", &path("pw")];
    let shown = on_a_terminal(data, &verify);
    assert!(shown.contains("verify: authenticating"), "{shown}");
    assert!(shown.contains("REJECTED wrong_key"), "{shown}");
    let piped = restorable(data, &verify);
    assert_eq!(piped.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("verify:"));
}

/// `backup-now` on a terminal shows each stage's long work as it happens: the download from the
/// PBX, the read-back, the verifier's pass and the restore test; on a pipe, none of it.
#[tokio::test(flavor = "multi_thread")]
async fn backup_now_shows_each_stage_on_a_terminal_only() {
    use restorable_pbx_sim::{RunningPbx, SimPbxConfig};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut config = SimPbxConfig::new("hq", 11);
    config.padding_bytes = 40_000_000;
    config.backup_delay = std::time::Duration::from_millis(20);
    let pbx = RunningPbx::start(config, dir.path())
        .await
        .expect("simulator");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &pbx.config().client_secret).expect("secret");
    let url = pbx.base_url();
    let client_id = pbx.config().client_id.clone();
    let secret_path = secret.to_string_lossy().into_owned();
    let data_dir = data.clone();
    let (terminal, piped) = tokio::task::spawn_blocking(move || {
        let enrolled = restorable(
            &data_dir,
            &[
                "enrol",
                "--tenant",
                "acme",
                "--name",
                "hq",
                "--url",
                &url,
                "--client-id",
                &client_id,
                "--client-secret-file",
                &secret_path,
            ],
        );
        assert!(enrolled.status.success(), "{enrolled:?}");
        let terminal = on_a_terminal(&data_dir, &["backup-now", "--instance", "acme/hq"]);
        let piped = restorable(&data_dir, &["backup-now", "--instance", "acme/hq"]);
        // The second cycle stops at Verified (a restore test every 7th): restore-test it now,
        // as a script would, and check its JSON against its schema.
        let json = restorable(
            &data_dir,
            &["backup-now", "--instance", "acme/hq", "--json"],
        );
        assert_eq!(json.status.code(), Some(0), "{json:?}");
        let outcome = crate::common::cli_json(&json.stdout, "backup-now.json");
        assert_eq!(outcome["rung"], "Verified", "{outcome}");
        let cycle = outcome["cycle"].as_str().expect("cycle").to_owned();
        let tested = restorable(&data_dir, &["restore-test", "--cycle", &cycle, "--json"]);
        assert_eq!(tested.status.code(), Some(0), "{tested:?}");
        let tested = crate::common::cli_json(&tested.stdout, "restore-test.json");
        assert_eq!(tested["rung"], "Restore-Tested", "{tested}");
        assert!(tested["failed"].is_null(), "{tested}");
        (terminal, piped)
    })
    .await
    .expect("the commands");
    for label in [
        "capture: downloading",
        "secure: reading back",
        "verify: authenticating",
        "restore test: restoring",
    ] {
        assert!(terminal.contains(label), "{label}: {terminal}");
    }
    assert!(terminal.contains("reached Restore-Tested"), "{terminal}");
    assert!(piped.status.success(), "{piped:?}");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    for label in ["downloading", "reading back", "authenticating", "restoring"] {
        assert!(!stderr.contains(label), "{label} on a pipe: {stderr}");
    }
}
