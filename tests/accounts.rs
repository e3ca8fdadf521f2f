//! `restorable user add`, `token add` and `projections rebuild` from the command line: the
//! first administrator is created with a password read from stdin (never an argument), a short
//! password or an unknown role is refused with a clear message, and a token is printed once.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn restorable(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_restorable"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run restorable");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_first_administrator_and_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let add = [
        "user",
        "add",
        "--email",
        "Admin@Example.com",
        "--role",
        "administrator",
        "--tenant",
        "*",
        "--password-stdin",
    ];
    let secret = "a long enough passphrase";
    let output = restorable(dir.path(), &add, &format!("{secret}\n"));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !text(&output).contains(secret),
        "the password is not echoed"
    );

    let short = restorable(dir.path(), &add, "short\n");
    assert!(!short.status.success());
    assert!(
        text(&short).contains("at least 12 characters"),
        "{}",
        text(&short)
    );

    let mut bad_role = add;
    bad_role[5] = "superuser";
    let refused = restorable(dir.path(), &bad_role, &format!("{secret}\n"));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("unknown role"),
        "{}",
        text(&refused)
    );

    let token = restorable(
        dir.path(),
        &[
            "token",
            "add",
            "--email",
            "admin@example.com",
            "--name",
            "ci",
        ],
        "",
    );
    assert!(token.status.success(), "{}", text(&token));
    let printed = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(printed.len() >= 40, "a long random token: {printed}");
    let unknown = restorable(
        dir.path(),
        &[
            "token",
            "add",
            "--email",
            "nobody@example.com",
            "--name",
            "ci",
        ],
        "",
    );
    assert!(!unknown.status.success(), "a token needs an existing user");

    let rebuilt = restorable(dir.path(), &["projections", "rebuild"], "");
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    assert!(
        text(&rebuilt).contains("rebuilt: 0 instances"),
        "{}",
        text(&rebuilt)
    );
}
