//! `restorable verify` on archives written by another tool (7-Zip, `7z a -tzip -mem=AES256`):
//! a good copy passes (exit 0); corrupted, truncated and wrong-password copies are rejected with
//! distinct reasons (exit 1).

use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "Zq7mK2pX9vR4tL8nW3yB6cD1";

fn seven_zip(dir: &Path, password: &str) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("DbTables")).expect("mkdir");
    std::fs::create_dir_all(tree.join("Recordings")).expect("mkdir");
    for table in restorable_pipeline::archive::CORE_TABLES {
        let rows: String = (0..200).map(|i| format!("{i},value-{i}\n")).collect();
        std::fs::write(
            tree.join("DbTables").join(format!("{table}.csv")),
            format!("id,value\n{rows}"),
        )
        .expect("csv");
    }
    let noise: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("Recordings").join("call.wav"), noise).expect("wav");
    let archive = dir.join("backup.zip");
    let status = Command::new("7z")
        .current_dir(&tree)
        .args(["a", "-tzip", "-mem=AES256", &format!("-p{password}")])
        .arg(&archive)
        .args(["DbTables", "Recordings"])
        .output()
        .expect("7z must be installed (Debian: p7zip-full; .ci/run installs it)");
    assert!(
        status.status.success(),
        "7z failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    archive
}

fn verify(file: &Path, password: &str) -> (i32, String) {
    let password_file = file.with_extension("pw");
    std::fs::write(&password_file, format!("{password}\n")).expect("password file");
    let output = Command::new(env!("CARGO_BIN_EXE_restorable"))
        .arg("verify")
        .arg(file)
        .arg("--password-file")
        .arg(&password_file)
        .output()
        .expect("run verify");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!text.contains(password), "verify printed the password");
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn a_7zip_archive_passes_and_damaged_copies_fail_with_distinct_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = seven_zip(dir.path(), PASSWORD);
    let (code, text) = verify(&good, PASSWORD);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("OK:") && text.contains("extension"), "{text}");

    let bytes = std::fs::read(&good).expect("read");
    let flipped = dir.path().join("flipped.zip");
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 3] ^= 0x20; // inside the recording's data
    std::fs::write(&flipped, damaged).expect("write");
    let truncated = dir.path().join("truncated.zip");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).expect("write");

    let mut reasons = Vec::new();
    for (file, password, reason) in [
        (&flipped, PASSWORD, "entry_corrupt"),
        (&truncated, PASSWORD, "archive_truncated"),
        (&good, "not-the-password-at-all!", "wrong_key"),
    ] {
        let (code, text) = verify(file, password);
        assert_eq!(code, 1, "{}: {text}", file.display());
        assert!(
            text.contains(&format!("REJECTED {reason}")),
            "{}: expected {reason}: {text}",
            file.display()
        );
        reasons.push(reason);
    }
    reasons.dedup();
    assert_eq!(reasons.len(), 3);
}

#[test]
fn a_missing_password_file_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_restorable"))
        .args([
            "verify",
            "/nonexistent.zip",
            "--password-file",
            "/nonexistent.pw",
        ])
        .output()
        .expect("run verify");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("reading the password file"));
}
