//! `--json` as scripts use it: every reporting command prints one JSON document that validates
//! against its published schema (`schemas/cli/`) and carries the same facts as the text output.

use std::path::Path;
use std::process::Output;

use sha2::Digest;

fn restorable(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = crate::common::restorable()
        .args(args)
        .env("RESTORABLE_DATA_DIR", data)
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run restorable");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

/// The document `output` printed, checked against `schemas/cli/<schema>`.
fn document(output: &Output, schema: &str) -> serde_json::Value {
    crate::common::cli_json(&output.stdout, schema)
}

#[test]
fn every_json_output_validates_and_says_what_the_text_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let demo = restorable(
        data,
        &[
            "demo",
            "--fleet",
            "1",
            "--no-faults",
            "--capture-deadline-secs",
            "5",
        ],
        None,
    );
    assert!(demo.status.success(), "{demo:?}");

    // The fleet's one instance, as the text table names it.
    let fleet = restorable(data, &["fleet"], None);
    let table = String::from_utf8_lossy(&fleet.stdout).into_owned();
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a fleet row")
        .split_whitespace()
        .collect();
    let instance = format!("{}/{}", row[0], row[1]);
    let fleet_json = restorable(data, &["fleet", "--json"], None);
    let fleet_doc = document(&fleet_json, "fleet.json");
    let instances = fleet_doc["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), table.lines().count() - 1, "{fleet_doc}");
    assert_eq!(instances[0]["tenant"], row[0]);
    assert_eq!(instances[0]["name"], row[1]);
    assert_eq!(instances[0]["status"], "healthy", "{table}");
    assert!(table.contains("Healthy"), "{table}");

    // events: the same events, in the same order, as the text.
    let text = restorable(data, &["events", "--instance", &instance], None);
    let json = restorable(data, &["events", "--instance", &instance, "--json"], None);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let events = document(&json, "events.json");
    let listed = events["events"].as_array().expect("events");
    let text_types: Vec<String> = String::from_utf8_lossy(&text.stdout)
        .lines()
        .map(|l| l.split_whitespace().nth(1).expect("type").to_owned())
        .collect();
    let json_types: Vec<String> = listed
        .iter()
        .map(|e| e["event_type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(json_types, text_types);
    let cycle = listed
        .iter()
        .find(|e| e["event_type"] == "CycleOpened")
        .and_then(|e| e["payload"]["CycleOpened"]["cycle_id"].as_str())
        .expect("a CycleOpened with its cycle")
        .to_owned();
    let cycle_events = restorable(data, &["events", "--cycle", &cycle, "--json"], None);
    let cycle_doc = document(&cycle_events, "events.json");
    assert_eq!(cycle_doc["aggregate"], "BackupCycle");

    // download: size and SHA-256 of the file written.
    let out = data.join("copy.zip");
    let download = restorable(
        data,
        &[
            "download",
            "--cycle",
            &cycle,
            "--out",
            out.to_str().expect("utf-8"),
            "--json",
        ],
        None,
    );
    assert_eq!(download.status.code(), Some(0), "{download:?}");
    let report = document(&download, "download.json");
    let bytes = std::fs::read(&out).expect("the copy");
    assert_eq!(report["size"], bytes.len() as u64);
    assert_eq!(report["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));

    // verify: a damaged copy gives its reason code, the same the text names; exit 1.
    let mut damaged = bytes.clone();
    damaged.truncate(bytes.len() / 2);
    let damaged_path = data.join("damaged.zip");
    std::fs::write(&damaged_path, damaged).expect("write");
    let password = data.join("pw");
    std::fs::write(&password, "not-the-password").expect("write");
    let args = [
        "verify",
        damaged_path.to_str().expect("utf-8"),
        "--password-file",
        password.to_str().expect("utf-8"),
    ];
    let text = restorable(data, &args, None);
    let json = restorable(data, &[&args[..], &["--json"]].concat(), None);
    assert_eq!(json.status.code(), Some(1), "{json:?}");
    assert_eq!(text.status.code(), Some(1), "{text:?}");
    let verdict = document(&json, "verify.json");
    assert_eq!(verdict["verified"], false);
    let reason = verdict["reason"].as_str().expect("a reason code");
    assert!(
        String::from_utf8_lossy(&text.stdout).starts_with(&format!("REJECTED {reason}:")),
        "{reason} vs {text:?}"
    );

    // backup-now: the PBX simulator is gone, so the cycle fails at capture; exit 1.
    let backup = restorable(
        data,
        &[
            "backup-now",
            "--instance",
            &instance,
            "--capture-deadline-secs",
            "2",
            "--json",
        ],
        None,
    );
    assert_eq!(backup.status.code(), Some(1), "{backup:?}");
    let outcome = document(&backup, "backup-now.json");
    assert_eq!(outcome["failed"]["stage"], "capture", "{outcome}");
    assert!(outcome["failed"]["reason"].is_string(), "{outcome}");

    // token list: the token just issued, never its secret.
    let added = restorable(
        data,
        &[
            "user",
            "add",
            "--email",
            "ops@msp.example",
            "--role",
            "administrator",
            "--tenant",
            "*",
            "--password-stdin",
        ],
        Some("a long enough password for the test\n"),
    );
    assert!(added.status.success(), "{added:?}");
    let issued = restorable(
        data,
        &[
            "token",
            "add",
            "--email",
            "ops@msp.example",
            "--name",
            "rmm",
        ],
        None,
    );
    assert!(issued.status.success(), "{issued:?}");
    let secret = String::from_utf8_lossy(&issued.stdout).into_owned();
    let tokens = restorable(data, &["token", "list", "--json"], None);
    let listed = document(&tokens, "token-list.json");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "rmm");
    assert_eq!(listed[0]["expired"], false);
    for word in secret.split_whitespace().filter(|w| w.len() >= 20) {
        assert!(!tokens_text(&tokens).contains(word), "the secret is listed");
    }

    // doctor: one line per backend, healthy as the exit code says.
    let doctor = restorable(data, &["doctor", "--json"], None);
    let health = document(&doctor, "doctor.json");
    assert_eq!(health["healthy"], doctor.status.code() == Some(0));
    let text = restorable(data, &["doctor"], None);
    assert_eq!(
        health["backends"].as_array().expect("backends").len(),
        String::from_utf8_lossy(&text.stdout).lines().count()
    );
}

fn tokens_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
