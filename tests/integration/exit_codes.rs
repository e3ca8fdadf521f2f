//! The CLI as scripts use it: the exit codes the README documents (0 success, 1 the thing
//! checked failed, 2 unusable input or configuration, 3 a backend unavailable), shell
//! completions and the manual page.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

fn restorable(data: &Path, args: &[&str]) -> Output {
    crate::common::restorable()
        .args(args)
        .env("RESTORABLE_DATA_DIR", data)
        .env("RUST_LOG", "off")
        .output()
        .expect("run restorable")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn every_kind_of_outcome_has_its_documented_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let code = |output: &Output| output.status.code();

    // 0: a fleet table on the embedded default (empty).
    let fleet = restorable(data, &["fleet"]);
    assert_eq!(code(&fleet), Some(0), "{fleet:?}");

    // 1: the thing checked failed — a file that is not a backup does not verify.
    let junk = data.join("junk.zip");
    std::fs::write(&junk, b"PK\x03\x04 not really an archive").expect("write");
    let password = data.join("password");
    std::fs::write(&password, "pw").expect("write");
    let verify = restorable(
        data,
        &[
            "verify",
            "--password-file",
            password.to_str().expect("utf-8"),
            junk.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code(&verify), Some(1), "{verify:?}");

    // 2: unusable input or configuration.
    for args in [
        &["fleet", "--database-url", "mysql://h/db"][..],
        &["worker", "--stage", "no-such-stage"][..],
        &["events", "--cycle", "not-a-cycle-id"][..],
    ] {
        let output = restorable(data, args);
        assert_eq!(code(&output), Some(2), "{args:?}: {output:?}");
    }

    // 3: a backend unavailable — PostgreSQL that does not answer.
    let url = format!("postgres://restorable@127.0.0.1:{}/x", closed_port());
    let unreachable = restorable(data, &["fleet", "--database-url", &url]);
    assert_eq!(code(&unreachable), Some(3), "{unreachable:?}");
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let output = restorable(dir.path(), &["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).expect("utf-8");
        for word in ["restorable", "backup-now", "dead-letters", "database-url"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let unknown = restorable(dir.path(), &["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn the_manual_is_printed_and_written_one_page_per_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let printed = restorable(dir.path(), &["manual"]);
    assert_eq!(printed.status.code(), Some(0), "{printed:?}");
    let page = String::from_utf8(printed.stdout).expect("utf-8");
    assert!(
        page.starts_with(".ie") || page.contains(".TH restorable"),
        "{page}"
    );
    let out = dir.path().join("man");
    let written = restorable(
        dir.path(),
        &["manual", "--out", out.to_str().expect("utf-8")],
    );
    assert_eq!(written.status.code(), Some(0), "{written:?}");
    for page in [
        "restorable.1",
        "restorable-fleet.1",
        "restorable-user-add.1",
    ] {
        let text = std::fs::read_to_string(out.join(page)).expect(page);
        assert!(text.contains(".SH"), "{page}");
    }
}
