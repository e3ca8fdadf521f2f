//! The process sandbox against real PostgreSQL in real network namespaces: no network out,
//! healthy copies restore and match the live PBX, and nothing is left behind — no directory, no
//! server process, no namespace (it dies with its last process) — after success, failure, a
//! time limit, or a killed worker. A sweep destroys only sandboxes whose owning process is gone,
//! never another process's live one, and never follows a symbolic link.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{one_cycle, Backend, Harness};
use restorable_domain::ladder::{FailureReason, Rung, Stage, Trigger};
use restorable_pbx_sim::Fault;
use restorable_pipeline::enrolment::open_cycle;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::sandbox::owner::Owner;
use restorable_pipeline::sandbox::process::{leftover_processes, sandbox_root, ProcessSandboxes};
use restorable_pipeline::sandbox::{RestoreSandbox, Sandbox};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Nothing of any sandbox is left under `root` within a few seconds (the time a killed server's
/// backends take to notice, and a sandbox cut short mid-provision takes to be removed): no
/// directory, no process.
pub(crate) fn assert_nothing_left(root: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leftovers: Vec<_> = std::fs::read_dir(root)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if leftovers.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sandbox directories left: {leftovers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    while !leftover_processes(root).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sandbox processes left: {:?}",
            leftover_processes(root)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_sandbox_cannot_reach_anything_outside_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let sandboxes =
        ProcessSandboxes::discover(root.path()).expect("PostgreSQL and unshare on this machine");
    let mut sandbox = sandboxes.provision_process().await.expect("provision");

    // A listener on the host's loopback: reachable from the host, as the control shows...
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let host = std::process::Command::new("bash")
        .args(["-c", &probe])
        .status()
        .expect("bash");
    assert!(
        host.success(),
        "the control probe from the host must connect"
    );

    // ...but not from inside the sandbox, where the restored PBX's database runs.
    let options = sandbox.connect_options(&sandbox.socket_dir(), "database_single");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("connect over the socket");
    let inside = sqlx::raw_sql(&format!("COPY (SELECT 1) TO PROGRAM 'bash -c \"{probe}\"'"))
        .execute(&pool)
        .await;
    let error = inside.expect_err("a connection out of the sandbox must fail");
    assert!(error.to_string().contains("program"), "{error}");
    // The probe itself works inside (so its failure is the network's, not the probe's).
    sqlx::raw_sql("COPY (SELECT 1) TO PROGRAM 'bash -c \"exit 0\"'")
        .execute(&pool)
        .await
        .expect("a program runs inside the sandbox");
    pool.close().await;

    sandbox.destroy().await;
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn a_healthy_copy_restores_matches_the_live_pbx_and_leaves_nothing() {
    let (harness, pbx, cycle_id) = one_cycle(Backend::Sqlite, None).await;
    let cycle = harness.cycle(cycle_id).await;
    assert_eq!(cycle.rung, Some(Rung::RestoreTested), "{:?}", cycle.failed);
    let history = harness
        .pipeline
        .store
        .history("BackupCycle", &cycle_id.to_string())
        .await
        .expect("history");
    let restore_tested: serde_json::Value =
        serde_json::from_str(&history.last().expect("event").payload).expect("json");
    let counts = &restore_tested["RestoreTested"]["counts"];
    let truth = pbx.true_counts();
    assert_eq!(counts["extensions"], truth.extensions);
    assert_eq!(counts["queues"], truth.queues);
    assert_eq!(counts["ivrs"], truth.ivrs);
    assert_eq!(counts["settings"], truth.settings);
    assert!(
        restore_tested["RestoreTested"]["duration_ms"]
            .as_u64()
            .expect("duration")
            > 0
    );
    assert!(restore_tested["RestoreTested"]["sandbox"]
        .as_str()
        .expect("sandbox")
        .starts_with("process:"));
    assert_nothing_left(&sandbox_root(&harness.data));
}

#[tokio::test]
async fn a_failed_restore_leaves_nothing() {
    let (harness, _pbx, cycle_id) =
        one_cycle(Backend::Sqlite, Some(Fault::DanglingForeignKey)).await;
    let failed = harness.cycle(cycle_id).await.failed.expect("failed");
    assert_eq!(
        (failed.stage, failed.reason),
        (Stage::RestoreTest, FailureReason::IntegrityViolation)
    );
    assert!(
        failed.detail.contains("queue2dn.fkiddn"),
        "{}",
        failed.detail
    );
    assert_nothing_left(&sandbox_root(&harness.data));
}

#[tokio::test]
async fn a_restore_past_its_time_limit_fails_with_restore_timeout_and_leaves_nothing() {
    let harness = Harness::with(Settings {
        restore_time_limit: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    let pbx = harness.pbx("pbx-slow", None).await;
    let instance = harness.enrol(&pbx, 60).await;
    let cycle_id = open_cycle(&harness.pipeline, instance, Trigger::Manual)
        .await
        .expect("open");
    harness.drive(&[cycle_id]).await;
    let cycle = harness.cycle(cycle_id).await;
    let failed = cycle.failed.expect("failed");
    assert_eq!(
        (cycle.rung, failed.reason),
        (Some(Rung::Verified), FailureReason::RestoreTimeout)
    );
    assert!(failed.retryable);
    assert_nothing_left(&sandbox_root(&harness.data));
}

/// An AES-256 archive in the 3CX layout with the given `DbTables/*.csv` contents; every other
/// schema table is present with a header only.
pub(crate) fn archive_with(tables: &[(&str, &str)], password: &str) -> std::fs::File {
    use std::io::Write;
    let mut file = tempfile::tempfile().expect("tempfile");
    {
        let mut zip = zip::ZipWriter::new(&mut file);
        let options = zip::write::SimpleFileOptions::default()
            .with_aes_encryption(zip::AesMode::Aes256, password);
        for (table, body) in restorable_pipeline::sandbox::schema::TABLES {
            let columns: Vec<&str> = body
                .split(',')
                .map(str::trim)
                .filter(|c| !c.starts_with("PRIMARY KEY") && !c.ends_with(')'))
                .filter_map(|c| c.split_whitespace().next())
                .collect();
            let csv = tables.iter().find(|(name, _)| name == table).map_or_else(
                || format!("{}\n", columns.join(",")),
                |(_, csv)| (*csv).to_owned(),
            );
            zip.start_file(format!("DbTables/{table}.csv"), options)
                .expect("entry");
            zip.write_all(csv.as_bytes()).expect("write");
        }
        zip.finish().expect("finish");
    }
    file
}

const SETTINGS: &str = "name,value\nFQDN,x\nVERSION,20\nSIPPORT,5060\nTUNNELPORT,5090\n\
RTPPORTSTART,9000\nRTPPORTEND,10999\nTIMEZONE,UTC\nLANGUAGE,en\n";

async fn restore(
    archive: std::fs::File,
    root: &Path,
) -> Result<restorable_pipeline::sandbox::RestoreReport, restorable_pipeline::sandbox::RestoreFailure>
{
    let sandboxes = ProcessSandboxes::discover(root).expect("discover");
    let manifest = restorable_domain::ladder::ManifestCounts {
        settings: 8,
        ..Default::default()
    };
    restorable_pipeline::sandbox::restore_test(
        &sandboxes,
        archive,
        &secrecy::SecretString::from("pw-for-the-test-archive"),
        &manifest,
        Duration::from_secs(60),
    )
    .await
}

#[tokio::test]
async fn a_minimal_valid_database_restores() {
    let root = tempfile::tempdir().expect("tempdir");
    let archive = archive_with(&[("parameter", SETTINGS)], "pw-for-the-test-archive");
    let report = restore(archive, root.path()).await.expect("restores");
    assert_eq!(report.counts.settings, 8);
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn data_that_does_not_load_is_restore_rejected() {
    let root = tempfile::tempdir().expect("tempdir");
    let archive = archive_with(
        &[
            ("parameter", SETTINGS),
            ("tenant", "idtenant,name\nnot-a-number,acme\n"),
        ],
        "pw-for-the-test-archive",
    );
    let failure = restore(archive, root.path()).await.expect_err("rejected");
    assert_eq!(
        failure.reason(),
        FailureReason::RestoreRejected,
        "{failure}"
    );
    assert!(failure.to_string().contains("tenant"), "{failure}");
    // The table, the SQLSTATE and the line are named; the row's value is not (it is backup
    // content, and the failure text goes into the immutable history).
    let text = failure.to_string();
    assert!(text.contains("22P02") && text.contains("line 2"), "{text}");
    assert!(
        !text.contains("not-a-number"),
        "backup content in the failure: {text}"
    );
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn missing_required_settings_are_restore_rejected_by_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let archive = archive_with(
        &[("parameter", "name,value\nFQDN,x\n")],
        "pw-for-the-test-archive",
    );
    let failure = restore(archive, root.path()).await.expect_err("rejected");
    assert_eq!(failure.reason(), FailureReason::RestoreRejected);
    assert!(failure.to_string().contains("SIPPORT"), "{failure}");
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn a_duplicate_primary_key_is_an_integrity_violation() {
    let root = tempfile::tempdir().expect("tempdir");
    let archive = archive_with(
        &[
            ("parameter", SETTINGS),
            ("tenant", "idtenant,name\n1,acme\n1,again\n"),
        ],
        "pw-for-the-test-archive",
    );
    let failure = restore(archive, root.path()).await.expect_err("violation");
    assert_eq!(
        failure.reason(),
        FailureReason::IntegrityViolation,
        "{failure}"
    );
    let text = failure.to_string();
    assert!(text.contains("unique_violation"), "{text}");
    assert!(
        !text.contains("again") && !text.contains("(1)") && !text.contains("acme"),
        "backup content in the failure: {text}"
    );
    assert_nothing_left(root.path());
}

/// The sandbox server is sealed: its socket directory and socket are private to the server
/// user, and no connection gets in without the sandbox's own password — not even one from this
/// process, and not another local user's, who cannot reach the socket at all.
#[tokio::test]
async fn the_sandbox_server_is_sealed_against_other_local_users() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let sandboxes = ProcessSandboxes::discover(root.path()).expect("discover");
    let mut sandbox = sandboxes.provision_process().await.expect("provision");
    let socket_dir = sandbox.socket_dir();
    let socket = socket_dir.join(".s.PGSQL.5432");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&socket_dir), 0o700, "socket directory");
    assert_eq!(mode(&socket), 0o700, "socket");
    assert!(
        !socket_dir.join("initdb.pw").exists(),
        "the password file outlives initdb"
    );

    // Without the password: refused (no `trust`).
    let without = PgConnectOptions::new()
        .socket(&socket_dir)
        .username("postgres")
        .database("database_single");
    let refused = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(without)
        .await;
    let error = refused.expect_err("a connection without the password must be refused");
    assert!(
        error.to_string().contains("password"),
        "refused for the wrong reason: {error}"
    );

    // Another local user (an unused uid) cannot even reach the socket. Only root can become
    // another user; as anyone else the server runs as that user, and the modes above seal it.
    if is_root() {
        let output = std::process::Command::new("setpriv")
            .args([
                "--reuid=54321",
                "--regid=54321",
                "--clear-groups",
                "ls",
                "-l",
            ])
            .arg(&socket)
            .output()
            .expect("setpriv");
        assert!(!output.status.success(), "another user reached the socket");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }

    // With it, as the restore does: accepted.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(sandbox.connect_options(&socket_dir, "database_single"))
        .await
        .expect("the sandbox's own connection");
    pool.close().await;
    sandbox.destroy().await;
    assert_nothing_left(root.path());
}

pub(crate) fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test]
async fn no_usable_postgresql_is_sandbox_provision_and_leaves_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let sandboxes = ProcessSandboxes::discover(root.path())
        .expect("discover")
        .with_pg_bin("/nonexistent/postgresql/bin");
    let failure = sandboxes
        .provision_process()
        .await
        .err()
        .expect("no server binaries");
    assert_eq!(
        failure.reason(),
        FailureReason::SandboxProvision,
        "{failure}"
    );
    assert_nothing_left(root.path());
}

/// A sandbox directory under `root` owned by `owner`, holding a file standing for its content.
fn owned_sandbox(root: &Path, name: &str, owner: &Owner) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("pgdata")).expect("sandbox directory");
    std::fs::write(dir.join("pgdata/PG_VERSION"), "17\n").expect("content");
    owner.write_marker(&dir).expect("marker");
    dir
}

/// A child process that stands for another worker: alive until killed.
struct OtherProcess(std::process::Child);

impl OtherProcess {
    fn start() -> Self {
        Self(
            std::process::Command::new("sleep")
                .arg("300")
                .spawn()
                .expect("sleep"),
        )
    }

    fn owner(&self) -> Owner {
        Owner::of(self.0.id()).expect("the other process's owner")
    }

    fn kill_and_reap(&mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("reap");
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_live_sandbox_survives_another_process_start_and_is_swept_once_its_owner_is_gone() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut other = OtherProcess::start();
    let owner = other.owner();
    assert_ne!(owner.pid, std::process::id());
    let dir = owned_sandbox(root.path(), "livesandbox1", &owner);

    let sandboxes = ProcessSandboxes::discover(root.path()).expect("discover");
    assert_eq!(sandboxes.sweep_leftovers().await, 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("pgdata/PG_VERSION")).expect("content untouched"),
        "17\n"
    );
    assert_eq!(
        Owner::read_marker(&dir).expect("marker"),
        Some(owner),
        "the marker is untouched"
    );

    other.kill_and_reap();
    assert_eq!(sandboxes.sweep_leftovers().await, 1);
    assert!(!dir.exists(), "the dead owner's sandbox is swept");
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn a_marker_naming_a_reused_pid_is_swept() {
    let root = tempfile::tempdir().expect("tempdir");
    let me = Owner::current().expect("owner");
    let reused = Owner {
        start_time: me.start_time.saturating_sub(1),
        ..me.clone()
    };
    let stale = owned_sandbox(root.path(), "reusedpid001", &reused);
    let rebooted = Owner {
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        ..me.clone()
    };
    let before_boot = owned_sandbox(root.path(), "rebooted0001", &rebooted);
    let mine = owned_sandbox(root.path(), "mine00000001", &me);

    let sandboxes = ProcessSandboxes::discover(root.path()).expect("discover");
    assert_eq!(sandboxes.sweep_leftovers().await, 2);
    assert!(
        !stale.exists(),
        "same pid, another start time: the pid was reused"
    );
    assert!(!before_boot.exists(), "another boot");
    assert!(
        mine.join("pgdata/PG_VERSION").exists(),
        "our own live sandbox"
    );
}

#[tokio::test]
async fn a_directory_without_a_marker_is_swept_only_once_it_is_old() {
    let root = tempfile::tempdir().expect("tempdir");
    let young = root.path().join("beingmade01");
    std::fs::create_dir(&young).expect("young");
    let old = root.path().join("killedearly");
    std::fs::create_dir(&old).expect("old");
    let long_ago = std::time::SystemTime::now()
        - restorable_pipeline::sandbox::process::UNMARKED_LEFTOVER_AGE
        - Duration::from_secs(60);
    std::fs::File::open(&old)
        .expect("open")
        .set_modified(long_ago)
        .expect("age the directory");

    let sandboxes = ProcessSandboxes::discover(root.path()).expect("discover");
    assert_eq!(sandboxes.sweep_leftovers().await, 1);
    assert!(
        young.exists(),
        "it may be a sandbox being created right now"
    );
    assert!(
        !old.exists(),
        "an old directory without an owner is a leftover"
    );
}

#[tokio::test]
async fn a_live_sandbox_of_one_process_sandboxes_survives_anothers_sweep_and_its_restore_completes()
{
    let root = tempfile::tempdir().expect("tempdir");
    let first = ProcessSandboxes::discover(root.path()).expect("discover");
    let mut sandbox = first.provision_process().await.expect("provision");
    assert!(
        Owner::read_marker(&root.path().join(sandbox.id()))
            .expect("marker")
            .is_some_and(|owner| owner.is_alive()),
        "the sandbox names its live owner"
    );

    // Another start on the same root (a second worker, `restore-test` beside `serve`).
    let second = ProcessSandboxes::discover(root.path()).expect("discover");
    assert_eq!(second.sweep_leftovers().await, 0);

    let archive = archive_with(&[("parameter", SETTINGS)], "pw-for-the-test-archive");
    sandbox
        .restore(
            archive,
            &secrecy::SecretString::from("pw-for-the-test-archive"),
        )
        .await
        .expect("the restore still completes");
    let counts = sandbox.inspect().await.expect("inspect");
    assert_eq!(counts.settings, 8);
    sandbox.destroy().await;
    assert_nothing_left(root.path());
}

#[tokio::test]
async fn a_sweep_never_follows_a_symbolic_link() {
    let root = tempfile::tempdir().expect("tempdir");
    let canary = tempfile::tempdir().expect("canary");
    std::fs::write(canary.path().join("precious"), "keep me").expect("canary file");
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
    std::fs::File::open(canary.path())
        .expect("open")
        .set_modified(long_ago)
        .expect("age the canary");

    // A link in the root, named like a sandbox, to an old directory without a marker...
    std::os::unix::fs::symlink(canary.path(), root.path().join("planted0001")).expect("link");
    // ...and a link inside a leftover (its owner gone) to the same directory.
    let mut other = OtherProcess::start();
    let dead = owned_sandbox(root.path(), "deadowner001", &other.owner());
    other.kill_and_reap();
    std::os::unix::fs::symlink(canary.path(), dead.join("pgdata/inner")).expect("inner link");

    let sandboxes = ProcessSandboxes::discover(root.path()).expect("discover");
    assert_eq!(sandboxes.sweep_leftovers().await, 1);
    assert!(!dead.exists(), "the leftover is removed");
    assert_eq!(
        std::fs::read_to_string(canary.path().join("precious")).expect("the canary remains"),
        "keep me"
    );
    assert!(std::fs::symlink_metadata(root.path().join("planted0001"))
        .expect("the link is left alone")
        .file_type()
        .is_symlink());
}

/// A sandbox root another local user prepared — a world-writable parent with a symbolic link
/// at the root's name, or (as root) a parent and root owned by another uid — is refused with a
/// clear error: nothing is provisioned, swept, deleted or chmod-ed, and a canary directory the
/// link points at stays exactly as it was.
#[tokio::test]
async fn a_sandbox_root_prepared_by_another_user_is_refused_and_nothing_outside_is_touched() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().expect("tempdir");
    let canary = base.path().join("canary");
    std::fs::create_dir(&canary).expect("canary");
    std::fs::write(canary.join("keep"), "precious").expect("canary file");
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let canary_intact = || {
        let mode = std::fs::metadata(&canary)
            .expect("canary")
            .permissions()
            .mode()
            & 0o7777;
        mode == 0o750
            && std::fs::read_to_string(canary.join("keep")).ok().as_deref() == Some("precious")
    };

    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).expect("shared");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let root = shared.join("root");
    std::os::unix::fs::symlink(&canary, &root).expect("the attacker's link");
    let mut cases = vec![root];

    if is_root() {
        let foreign = base.path().join("foreign");
        let foreign_root = foreign.join("root");
        std::fs::create_dir_all(&foreign_root).expect("foreign");
        for dir in [&foreign, &foreign_root] {
            std::os::unix::fs::chown(dir, Some(54321), Some(54321)).expect("chown");
        }
        cases.push(foreign_root);
    }

    for root in cases {
        let sandboxes = ProcessSandboxes::discover(&root).expect("discover");
        assert_eq!(sandboxes.sweep_leftovers().await, 0, "{}", root.display());
        let failure = match sandboxes.provision_process().await {
            Ok(_) => panic!("{}: a sandbox was provisioned", root.display()),
            Err(failure) => failure,
        };
        assert_eq!(
            failure.reason(),
            FailureReason::SandboxProvision,
            "{failure}"
        );
        assert!(
            failure
                .to_string()
                .contains("refusing the sandbox directory"),
            "{failure}"
        );
        assert!(canary_intact(), "the canary changed ({})", root.display());
    }
    assert!(canary.join("keep").exists());
}

/// Restores `archive` in a sandbox under `root` with `limits`, which must end it
/// `restore_rejected`.
async fn rejected_under(
    limits: restorable_pipeline::sandbox::process::SandboxLimits,
    archive: std::fs::File,
    root: &Path,
) -> restorable_pipeline::sandbox::RestoreFailure {
    let sandboxes = ProcessSandboxes::discover(root)
        .expect("discover")
        .with_limits(limits);
    let failure = restorable_pipeline::sandbox::restore_test(
        &sandboxes,
        archive,
        &secrecy::SecretString::from("pw-for-the-test-archive"),
        &restorable_domain::ladder::ManifestCounts::default(),
        Duration::from_secs(120),
    )
    .await
    .expect_err("over a limit");
    assert_eq!(
        failure.reason(),
        FailureReason::RestoreRejected,
        "{failure}"
    );
    failure
}

/// A backup whose data outgrows the sandbox's disk budget ends `restore_rejected`, naming the
/// budget, and leaves nothing behind.
#[tokio::test]
async fn a_restore_that_outgrows_the_disk_budget_is_rejected_and_leaves_nothing() {
    use restorable_pipeline::sandbox::process::SandboxLimits;
    let root = tempfile::tempdir().expect("tempdir");
    let mut settings = String::from(SETTINGS);
    for i in 0..1_500_000 {
        settings.push_str(&format!("PADDING{i:08},{:0>60}\n", i));
    }
    let archive = archive_with(&[("parameter", &settings)], "pw-for-the-test-archive");
    let limits = SandboxLimits {
        disk_bytes: 96 << 20,
        ..SandboxLimits::default()
    };
    let failure = rejected_under(limits, archive, root.path()).await;
    assert!(failure.to_string().contains("disk budget"), "{failure}");
    assert_nothing_left(root.path());
}

/// The running server is under every configured limit and in namespaces of its own, and its
/// files are out of other users' reach: `/proc/<postmaster>/limits` shows the process count
/// (without a cgroup), address space and file size limits; its user and network namespaces are not ours; the
/// sandbox directories are 0700 (rootless) or 0710 with the server's group (root), so another
/// local user can neither list nor enter them.
#[tokio::test]
async fn the_sandbox_server_runs_under_its_limits_in_its_own_namespaces() {
    use restorable_pipeline::sandbox::process::SandboxLimits;
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().expect("tempdir");
    let limits = SandboxLimits {
        disk_bytes: 512 << 20,
        memory_bytes: 768 << 20,
        processes: 48,
    };
    let sandboxes = ProcessSandboxes::discover(root.path())
        .expect("discover")
        .with_limits(limits);
    let mut sandbox = sandboxes.provision_process().await.expect("provision");
    let dir = sandbox
        .socket_dir()
        .parent()
        .expect("sandbox dir")
        .to_owned();
    let pid_file = std::fs::read_to_string(dir.join("pgdata/postmaster.pid")).expect("pid file");
    let pid: u32 = pid_file
        .lines()
        .next()
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");

    let proc_limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft = |name: &str| -> String {
        let line = proc_limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {proc_limits}"));
        line[name.len()..]
            .split_whitespace()
            .next()
            .expect("value")
            .to_owned()
    };
    if sandboxes.has_cgroups() {
        // The process count is the cgroup's (see sandbox_cgroups.rs), not a per-user rlimit:
        // the server keeps the one it inherited.
        let ours = std::fs::read_to_string("/proc/self/limits").expect("our limits");
        let inherited = ours
            .lines()
            .find_map(|l| l.strip_prefix("Max processes"))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("our process limit");
        assert_eq!(soft("Max processes"), inherited);
    } else {
        assert_eq!(soft("Max processes"), "48");
    }
    assert_eq!(soft("Max address space"), (768u64 << 20).to_string());
    assert_eq!(soft("Max file size"), (2u64 << 30).to_string());

    let ns =
        |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns");
    for kind in ["net", "user"] {
        assert_ne!(
            ns(&pid.to_string(), kind),
            ns("self", kind),
            "the server shares our {kind} namespace"
        );
    }

    let server_uid = std::fs::metadata(format!("/proc/{pid}"))
        .expect("proc")
        .uid();
    let me = std::fs::metadata("/proc/self").expect("proc").uid();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
    if me == 0 {
        assert_ne!(server_uid, 0, "the server runs as root");
        let server_gid = std::fs::metadata(format!("/proc/{pid}"))
            .expect("proc")
            .gid();
        for d in [root.path(), dir.as_path()] {
            assert_eq!(mode(d), 0o710, "{}", d.display());
            assert_eq!(std::fs::metadata(d).expect("stat").gid(), server_gid);
        }
        // Another local user can neither list the root nor enter a sandbox.
        for (what, args) in [
            (
                "list",
                vec!["ls".to_owned(), root.path().display().to_string()],
            ),
            (
                "enter",
                vec!["ls".to_owned(), dir.join("pgdata").display().to_string()],
            ),
        ] {
            let output = std::process::Command::new("setpriv")
                .args(["--reuid=54321", "--regid=54321", "--clear-groups"])
                .args(&args)
                .output()
                .expect("setpriv");
            assert!(!output.status.success(), "another user could {what}");
        }
    } else {
        assert_eq!(server_uid, me);
        for d in [root.path(), dir.as_path()] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
    }
    sandbox.destroy().await;
    assert_nothing_left(root.path());
}

/// A backup whose one huge value needs more memory than the sandbox's server may have ends
/// `restore_rejected` (out of memory, never the value) and leaves nothing behind.
#[tokio::test]
async fn a_restore_that_outgrows_the_memory_limit_is_rejected_and_leaves_nothing() {
    use restorable_pipeline::sandbox::process::SandboxLimits;
    let root = tempfile::tempdir().expect("tempdir");
    let mut settings = String::from(SETTINGS);
    settings.push_str("HUGE,");
    settings.push_str(&"m".repeat(400 << 20));
    settings.push('\n');
    let archive = archive_with(&[("parameter", &settings)], "pw-for-the-test-archive");
    drop(settings);
    let limits = SandboxLimits {
        memory_bytes: 384 << 20,
        ..SandboxLimits::default()
    };
    let failure = rejected_under(limits, archive, root.path()).await;
    let text = failure.to_string();
    assert!(!text.contains("mmmmmmmm"), "the value leaked: {text:.200}");
    assert!(
        text.contains("out_of_memory") || text.contains("54000"),
        "not ended by the memory limit: {text}"
    );
    assert_nothing_left(root.path());
}

/// Every sandbox rule holds for an ordinary user too (the rootless branch: a user namespace of
/// the sandbox's own, 0700 directories). Run as root (CI), this runs a copy of this very test
/// binary as `nobody` with the tests that need nothing but the sandbox; run as anyone else,
/// those tests above already are that proof.
#[test]
fn the_sandbox_tests_pass_as_an_unprivileged_user() {
    if !is_root() {
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let binary = home.path().join("integration");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &binary)
        .expect("copy the test binary");
    for path in [home.path(), binary.as_path()] {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
    }
    let tests = [
        "restore_sandbox::a_minimal_valid_database_restores",
        "restore_sandbox::data_that_does_not_load_is_restore_rejected",
        "restore_sandbox::the_sandbox_server_is_sealed_against_other_local_users",
        "restore_sandbox::the_sandbox_server_runs_under_its_limits_in_its_own_namespaces",
        "restore_sandbox::a_restore_that_outgrows_the_memory_limit_is_rejected_and_leaves_nothing",
        "restore_sandbox::a_restore_that_outgrows_the_disk_budget_is_rejected_and_leaves_nothing",
        "restore_sandbox::a_restore_past_its_time_limit_fails_with_restore_timeout_and_leaves_nothing",
        "restore_sandbox::a_sandbox_root_prepared_by_another_user_is_refused_and_nothing_outside_is_touched",
        "restore_sandbox::a_sweep_never_follows_a_symbolic_link",
        // Rootless, a sandbox has no cgroup, and says why.
        "sandbox_cgroups::the_server_runs_in_a_cgroup_of_its_own_with_the_configured_limits",
    ];
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .args(tests.iter().map(|name| format!("integration::{name}")))
        .args(["--exact", "--test-threads=2"])
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .current_dir(home.path())
        .output()
        .expect("run the sandbox tests as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the sandbox tests failed as nobody:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passed = stdout.matches("... ok").count();
    assert_eq!(
        passed,
        tests.len(),
        "not every test ran as nobody:\n{stdout}"
    );
}
