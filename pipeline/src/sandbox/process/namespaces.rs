//! The namespaces a sandbox server runs in: whether this user (or, as root, the sandbox user)
//! may make user and network namespaces at all, and the command-line prefix (`unshare`,
//! `setpriv`) that puts the server in them under its own identity.

use std::ffi::OsString;
use std::process::Stdio;

use tokio::process::Command;

use super::cgroup::SandboxCgroup;
use super::{provision_error, ProcessSandboxes};
use crate::sandbox::RestoreFailure;

/// Whether this (non-root) user — or, as root, the sandbox user `run_as` — may make the user
/// and network namespaces a sandbox runs in; if not, exactly which setting forbids it — never a
/// silent fall-back to less isolation.
pub(super) fn check_user_namespaces(run_as: Option<(u32, u32)>) -> Result<(), RestoreFailure> {
    let mut command = std::process::Command::new(if run_as.is_some() {
        "setpriv"
    } else {
        "unshare"
    });
    if let Some((uid, gid)) = run_as {
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--", "unshare"]);
    }
    let output = command
        .args(["--user", "--map-current-user", "--net", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| provision_error("running unshare (install util-linux)", e))?;
    if output.status.success() {
        return Ok(());
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|v| v.trim().to_owned())
            .ok()
    };
    let mut why = Vec::new();
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        why.push("sysctl kernel.unprivileged_userns_clone=0 (set it to 1)");
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        why.push("sysctl user.max_user_namespaces=0 (set it above 0)");
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        why.push(
            "sysctl kernel.apparmor_restrict_unprivileged_userns=1 (set it to 0, or give the \
             service an AppArmor profile with `userns`)",
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(provision_error(
        "unprivileged user namespaces are not available, so a rootless restore sandbox cannot \
         be isolated",
        format!(
            "{}; or run the service as root. unshare said: {}",
            if why.is_empty() {
                "check the kernel's user namespace settings".to_owned()
            } else {
                why.join("; ")
            },
            stderr.trim()
        ),
    ))
}

impl ProcessSandboxes {
    /// `setpriv` prefix: drop to the unprivileged user (when root) and die with our process.
    pub(super) fn unprivileged(&self, command: &mut Command) {
        command.arg("--pdeathsig").arg("KILL");
        if let Some((uid, gid)) = self.run_as {
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups");
        }
        command.arg("--");
    }

    /// The cgroup (when there is one), namespaces and identity of the server, up to the
    /// `prlimit` it runs under:
    /// - rootless: `unshare --user --map-current-user --net -- setpriv --pdeathsig KILL --`
    ///   (a user namespace mapping this user to itself lets it own a network namespace);
    /// - root, with a user namespace: `setpriv <user> -- unshare --user --map-current-user
    ///   --net -- setpriv --pdeathsig KILL --` (the same, made by the sandbox user, so the
    ///   process limit counts only the sandbox's processes);
    /// - root, without: `unshare --net -- setpriv --pdeathsig KILL <user> --`;
    ///
    /// each after [`SandboxCgroup::join_prefix`] when the sandbox has a cgroup (joined first,
    /// as the invoking user, who owns the group). The parent-death signal is set last, since
    /// entering a user namespace clears it.
    pub(super) fn server_command(&self, cgroup: Option<&SandboxCgroup>) -> Command {
        let mut line: Vec<OsString> = cgroup.map(SandboxCgroup::join_prefix).unwrap_or_default();
        let mut push = |args: &[&str]| line.extend(args.iter().map(OsString::from));
        match self.run_as {
            Some((uid, gid)) if self.own_user_namespace => {
                push(&[
                    "setpriv",
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                ]);
                push(&["--clear-groups", "--", "unshare"]);
                push(&["--user", "--map-current-user", "--net", "--", "setpriv"]);
                push(&["--pdeathsig", "KILL", "--"]);
            }
            Some((uid, gid)) => {
                push(&["unshare", "--net", "--", "setpriv", "--pdeathsig", "KILL"]);
                push(&[&format!("--reuid={uid}"), &format!("--regid={gid}")]);
                push(&["--clear-groups", "--"]);
            }
            None => {
                push(&[
                    "unshare",
                    "--user",
                    "--map-current-user",
                    "--net",
                    "--",
                    "setpriv",
                ]);
                push(&["--pdeathsig", "KILL", "--"]);
            }
        }
        let mut server = Command::new(&line[0]);
        server.args(&line[1..]);
        server
    }
}
