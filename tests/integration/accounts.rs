//! `restorable user add|remove`, `token add|list|revoke`, `projections rebuild` and
//! `download` from the command line: the first administrator is created with a password read
//! from stdin (never an argument), a short password or an unknown role is refused with a clear
//! message, a token is printed once, listed by id (never its secret), expires, and is revoked;
//! a password reset and a removal end a user's tokens; each is audited; a download whose copy
//! differs from its recorded SHA-256 fails and leaves no file behind.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use restorable_domain::audit::{AuditAction, AuditEvent};
use restorable_domain::cycle::BackupCycle;
use restorable_domain::ids::TenantId;
use restorable_domain::instance::{RestorePolicy, Schedule};
use restorable_domain::ladder::Trigger;
use restorable_pbx_sim::{RunningPbx, SimPbxConfig};
use restorable_pipeline::enrolment::{enrol, open_cycle, EnrolRequest};
use restorable_pipeline::pipeline::{PbxCredentials, Pipeline, Settings};
use restorable_pipeline::runtime::driver::run_until_closed;
use secrecy::SecretString;

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

fn audited(data: &Path, tenant: &str) -> Vec<(AuditAction, String)> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pipeline = Pipeline::embedded(data, Settings::default())
            .await
            .expect("pipeline");
        let history = pipeline
            .store
            .history("AuditTrail", tenant)
            .await
            .expect("audit");
        pipeline.store.close().await;
        history
            .iter()
            .filter_map(|e| match e.decode::<AuditEvent>() {
                Ok(AuditEvent::ActionRecorded(r)) => Some((r.action, r.actor)),
                Err(_) => None,
            })
            .collect()
    })
}

fn token_works(data: &Path, token: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pipeline = Pipeline::embedded(data, Settings::default())
            .await
            .expect("pipeline");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let found = restorable_api::auth::identify_headers(&headers, &pipeline.store)
            .await
            .expect("identify");
        pipeline.store.close().await;
        found.is_some()
    })
}

#[test]
fn tokens_are_listed_expire_and_are_revoked_and_users_are_reset_and_removed_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let secret = "a long enough passphrase";
    let add = |email: &str| {
        restorable(
            data,
            &[
                "user",
                "add",
                "--email",
                email,
                "--role",
                "owner",
                "--tenant",
                "acme",
                "--password-stdin",
            ],
            &format!("{secret}\n"),
        )
    };
    assert!(add("owner@acme.example").status.success());
    let issue = |name: &str, expires: &str| {
        let out = restorable(
            data,
            &[
                "token",
                "add",
                "--email",
                "owner@acme.example",
                "--name",
                name,
                "--expires-in",
                expires,
            ],
            "",
        );
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let ci = issue("ci", "90d");
    let brief = issue("brief", "1s");
    let refused = restorable(
        data,
        &[
            "token",
            "add",
            "--email",
            "owner@acme.example",
            "--name",
            "x",
            "--expires-in",
            "forever",
        ],
        "",
    );
    assert!(
        !refused.status.success(),
        "a lifetime is a number and a unit"
    );
    assert!(
        text(&refused).contains("not a lifetime"),
        "{}",
        text(&refused)
    );

    // The list: ids and names, never a secret; the short-lived one is marked expired.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let list = restorable(data, &["token", "list"], "");
    assert!(list.status.success(), "{}", text(&list));
    let listed = text(&list);
    assert!(
        listed.contains("ci") && listed.contains("brief"),
        "{listed}"
    );
    assert!(
        !listed.contains(&ci) && !listed.contains(&brief),
        "no secret is listed"
    );
    let brief_line = listed.lines().find(|l| l.contains("brief")).expect("brief");
    assert!(brief_line.contains("(expired)"), "{brief_line}");
    assert!(token_works(data, &ci));
    assert!(!token_works(data, &brief), "an expired token does not work");

    // Revoke by the listed id.
    let ci_id = listed
        .lines()
        .find(|l| l.contains(" ci "))
        .and_then(|l| l.split_whitespace().next())
        .expect("ci's id")
        .to_owned();
    let revoked = restorable(data, &["token", "revoke", "--id", &ci_id], "");
    assert!(revoked.status.success(), "{}", text(&revoked));
    assert!(!token_works(data, &ci), "a revoked token does not work");
    let again = restorable(data, &["token", "revoke", "--id", &ci_id], "");
    assert!(!again.status.success(), "nothing left to revoke");

    // A password reset (adding the user again) ends their tokens.
    let other = issue("other", "30d");
    assert!(token_works(data, &other));
    let reset = add("owner@acme.example");
    assert!(reset.status.success(), "{}", text(&reset));
    assert!(text(&reset).contains("password reset"), "{}", text(&reset));
    assert!(!token_works(data, &other), "a reset ends the user's tokens");

    // So does `user reset-password`, which keeps the role and tenant.
    let another = issue("another", "30d");
    assert!(token_works(data, &another));
    let reset = restorable(
        data,
        &[
            "user",
            "reset-password",
            "--email",
            "owner@acme.example",
            "--password-stdin",
        ],
        "yet another long password\n",
    );
    assert!(reset.status.success(), "{}", text(&reset));
    assert!(
        text(&reset).contains("owner, tenant acme"),
        "{}",
        text(&reset)
    );
    assert!(
        !token_works(data, &another),
        "a reset ends the user's tokens"
    );
    let nobody = restorable(
        data,
        &[
            "user",
            "reset-password",
            "--email",
            "nobody@acme.example",
            "--password-stdin",
        ],
        "yet another long password\n",
    );
    assert!(!nobody.status.success(), "no such user");

    // Removing a user ends their tokens; removing them twice is refused.
    let last = issue("last", "30d");
    let removed = restorable(
        data,
        &["user", "remove", "--email", "owner@acme.example"],
        "",
    );
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(
        !token_works(data, &last),
        "a removed user's token does not work"
    );
    let twice = restorable(
        data,
        &["user", "remove", "--email", "owner@acme.example"],
        "",
    );
    assert!(!twice.status.success());
    assert!(text(&twice).contains("no user"), "{}", text(&twice));

    let actions: Vec<AuditAction> = audited(data, "acme").into_iter().map(|(a, _)| a).collect();
    for wanted in [
        AuditAction::TokenRevoke,
        AuditAction::PasswordReset,
        AuditAction::UserRemove,
    ] {
        assert!(actions.contains(&wanted), "{wanted:?} in {actions:?}");
    }
}

#[test]
fn a_download_whose_copy_differs_fails_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (cycle, object_key, size) = runtime.block_on(async {
        let pipeline = Pipeline::embedded(&data, Settings::default())
            .await
            .expect("pipeline");
        let mut config = SimPbxConfig::new("hq", 5);
        config.backup_delay = std::time::Duration::from_millis(20);
        let pbx = RunningPbx::start(config, dir.path())
            .await
            .expect("simulator");
        let instance = enrol(
            &pipeline,
            EnrolRequest {
                tenant: TenantId::new("acme").expect("tenant"),
                name: "hq".into(),
                fqdn: "hq.acme.example".into(),
                api_url: pbx.base_url(),
                credentials: PbxCredentials {
                    client_id: SecretString::from(pbx.config().client_id.clone()),
                    client_secret: SecretString::from(pbx.config().client_secret.clone()),
                },
                schedule: Schedule::DAILY,
                restore_policy: RestorePolicy::default(),
            },
        )
        .await
        .expect("enrol");
        let cycle = open_cycle(&pipeline, instance, Trigger::Manual)
            .await
            .expect("open");
        run_until_closed(
            &pipeline,
            [cycle].into_iter().collect(),
            0,
            std::time::Duration::from_secs(120),
            |_| {},
        )
        .await
        .expect("the cycle closes");
        let stored: BackupCycle = pipeline
            .store
            .load(&cycle.to_string())
            .await
            .expect("cycle");
        let captured = stored.captured.expect("a stored copy");
        pipeline.store.close().await;
        (cycle, captured.object_key, captured.size)
    });
    let download = |out: &Path| {
        common::restorable()
            .args(["download", "--cycle", &cycle.to_string(), "--out"])
            .arg(out)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("download")
    };
    let good = dir.path().join("good.zip");
    let output = download(&good);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::metadata(&good).expect("downloaded").len(), size);

    let file = data.join("vault").join("objects").join(&object_key);
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("unlock the file for the test");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).expect("write");

    let bad = dir.path().join("bad.zip");
    let output = download(&bad);
    assert!(!output.status.success(), "a differing copy fails");
    assert!(text(&output).contains("SHA-256"), "{}", text(&output));
    assert!(text(&output).contains("removed"), "{}", text(&output));
    assert!(!bad.exists(), "no partial file is left");

    // A copy missing from the vault leaves no file either.
    std::fs::remove_file(&file).expect("remove");
    let gone = dir.path().join("gone.zip");
    let output = download(&gone);
    assert!(!output.status.success());
    assert!(!gone.exists(), "no partial file is left: {}", text(&output));
}
