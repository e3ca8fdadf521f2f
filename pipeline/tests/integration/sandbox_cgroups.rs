//! The restore sandbox's cgroups, against the kernel: as root (CI), each sandbox's server runs
//! in a cgroup of its own with the configured memory and process limits; the kernel enforces
//! them on everything the server runs (an out-of-memory kill, a refused fork), the sandbox then
//! blames a failed restore on that limit (`restore_rejected`), and destroying it kills what is
//! left and removes the group. Rootless, without a delegated group, a sandbox has none, and
//! `doctor`'s description says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use restorable_domain::ladder::FailureReason;
use restorable_pipeline::sandbox::process::{ProcessSandbox, ProcessSandboxes, SandboxLimits};
use restorable_pipeline::sandbox::Sandbox;
use sqlx::postgres::PgPoolOptions;

use super::restore_sandbox::{archive_with, is_root};

/// The postmaster's pid of a running sandbox.
fn postmaster(sandbox: &ProcessSandbox) -> u32 {
    let dir = sandbox.socket_dir();
    let pid_file = std::fs::read_to_string(dir.with_file_name("pgdata").join("postmaster.pid"))
        .expect("pid file");
    pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid")
}

/// The directory of `pid`'s group in the hierarchy holding `controller` (v1), or the unified one.
fn group_of(pid: u32, controller: &str) -> PathBuf {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v1 = cgroup.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| format!("/sys/fs/cgroup/{controller}{path}"))
    });
    let unified = cgroup.lines().find_map(|line| {
        line.strip_prefix("0::")
            .map(|p| format!("/sys/fs/cgroup{p}"))
    });
    let dir = v1
        .filter(|d| Path::new(d).is_dir())
        .or(unified)
        .expect("a group");
    PathBuf::from(dir)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_owned()
}

/// Runs `program` inside the sandbox's server (as its superuser would be able to), returning
/// whether `COPY ... FROM PROGRAM` succeeded.
async fn run_inside(sandbox: &ProcessSandbox, program: &str) -> bool {
    let options = sandbox.connect_options(&sandbox.socket_dir(), "postgres");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("connect");
    let ran = sqlx::raw_sql(&format!(
        "CREATE TEMP TABLE out (line text); COPY out FROM PROGRAM '{program}'"
    ))
    .execute(&pool)
    .await;
    pool.close().await;
    ran.is_ok()
}

async fn sandboxes_with(limits: SandboxLimits) -> Option<(tempfile::TempDir, ProcessSandboxes)> {
    let root = tempfile::tempdir().expect("tempdir");
    let sandboxes = ProcessSandboxes::discover(root.path())
        .expect("discover")
        .with_limits(limits);
    if !is_root() {
        assert!(!sandboxes.has_cgroups(), "{}", sandboxes.describe());
        assert!(
            sandboxes.describe().contains("rlimits only"),
            "{}",
            sandboxes.describe()
        );
        return None;
    }
    assert!(
        sandboxes.has_cgroups(),
        "root on this host must get cgroups: {}",
        sandboxes.describe()
    );
    Some((root, sandboxes))
}

/// The server is in a group named after its sandbox with exactly the configured limits, and
/// destroying the sandbox removes the group.
#[tokio::test]
async fn the_server_runs_in_a_cgroup_of_its_own_with_the_configured_limits() {
    let limits = SandboxLimits {
        memory_bytes: 640 << 20,
        processes: 40,
        ..SandboxLimits::default()
    };
    let Some((_root, sandboxes)) = sandboxes_with(limits).await else {
        return;
    };
    let mut sandbox = sandboxes.provision_process().await.expect("provision");
    let pid = postmaster(&sandbox);
    let memory = group_of(pid, "memory");
    let pids = group_of(pid, "pids");
    for group in [&memory, &pids] {
        assert!(
            group.ends_with(sandbox.id()),
            "the server is not in its sandbox's group: {}",
            group.display()
        );
    }
    let memory_limit = if memory.join("memory.max").exists() {
        read(&memory, "memory.max")
    } else {
        read(&memory, "memory.limit_in_bytes")
    };
    assert_eq!(memory_limit, (640u64 << 20).to_string());
    assert_eq!(read(&pids, "pids.max"), "40");
    // Every process of the server is in it: the postmaster and its children.
    let members = read(&pids, "cgroup.procs");
    assert!(
        members.split_whitespace().count() >= 3,
        "the server's processes are not all in the group: {members}"
    );
    assert!(members.split_whitespace().any(|p| p == pid.to_string()));
    assert_eq!(sandbox.limit_enforced(), None);

    sandbox.destroy().await;
    for group in [&memory, &pids] {
        assert!(!group.exists(), "{} is left", group.display());
    }
}

/// Processes of the sandbox that together outgrow its memory (each one well under the
/// per-process address-space limit) are stopped by the kernel; a restore failing after that is
/// `restore_rejected` naming the memory limit, and nothing is left.
#[tokio::test]
async fn memory_used_together_over_the_limit_is_stopped_and_blamed_on_it() {
    let limits = SandboxLimits {
        memory_bytes: 384 << 20,
        ..SandboxLimits::default()
    };
    let Some((root, sandboxes)) = sandboxes_with(limits).await else {
        return;
    };
    let mut sandbox = sandboxes.provision_process().await.expect("provision");
    let group = group_of(postmaster(&sandbox), "memory");
    // Four processes of 150 MB each (tail keeps the last N bytes of a pipe in memory), each
    // holding it for three seconds after it has it (its pipe stays open), so all four hold
    // theirs at once however busy the machine is.
    run_inside(
        &sandbox,
        "sh -c \"for i in 1 2 3 4; do (head -c 150000000 /dev/zero; sleep 3) | tail -c 150000000 \
         > /dev/null & done; wait\"",
    )
    .await;
    assert_eq!(sandbox.limit_enforced(), Some("memory limit"));

    // A restore that fails now is blamed on the limit, not on its data.
    let archive = archive_with(
        &[("parameter", "name,value\n,no name\n")],
        "pw-for-the-test-archive",
    );
    let failure = sandbox
        .restore(
            archive,
            &secrecy::SecretString::from("pw-for-the-test-archive"),
        )
        .await
        .expect_err("the data does not load");
    assert_eq!(
        failure.reason(),
        FailureReason::RestoreRejected,
        "{failure}"
    );
    assert!(failure.to_string().contains("memory limit"), "{failure}");

    sandbox.destroy().await;
    assert!(!group.exists(), "{} is left", group.display());
    super::restore_sandbox::assert_nothing_left(root.path());
}

/// Forks past the process limit are refused by the kernel, whoever in the sandbox makes them,
/// and a sandbox destroyed with processes still running in its group leaves none of them.
#[tokio::test]
async fn forks_over_the_process_limit_are_refused_and_nothing_survives_destruction() {
    let limits = SandboxLimits {
        processes: 24,
        ..SandboxLimits::default()
    };
    let Some((root, sandboxes)) = sandboxes_with(limits).await else {
        return;
    };
    let mut sandbox = sandboxes.provision_process().await.expect("provision");
    let group = group_of(postmaster(&sandbox), "pids");
    let forty: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    run_inside(
        &sandbox,
        &format!(
            "sh -c \"for i in {}; do sleep 600 < /dev/null > /dev/null 2>&1 & done; exit 0\"",
            forty.join(" ")
        ),
    )
    .await;
    assert_eq!(sandbox.limit_enforced(), Some("process limit"));
    let members = read(&group, "cgroup.procs");
    assert!(
        members.split_whitespace().count() <= 24,
        "more processes than the limit: {members}"
    );
    // The sleeps outlive the COPY (they are not the server's children any more): only the
    // group finds them.
    let sleepers: Vec<String> = members.split_whitespace().map(str::to_owned).collect();

    sandbox.destroy().await;
    assert!(!group.exists(), "{} is left", group.display());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for pid in sleepers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} of the sandbox survived"
        );
    }
    super::restore_sandbox::assert_nothing_left(root.path());
}
