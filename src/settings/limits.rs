//! The file's limits sections over the built-in defaults: `[sandbox]` (one restore test's
//! resources), `[pbx]` (deadlines and size caps of PBX calls), `[verify]` (the verifier's budget)
//! and `[deadlines]` (the watchdog's limit per rung). Each value is checked against its range
//! and a mistake names its key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use restorable_domain::ids::TenantId;
use restorable_pipeline::archive::AesStrength;
use restorable_pipeline::deadlines::Deadlines;
use restorable_pipeline::pbx::PbxLimits;
use restorable_pipeline::pipeline::Settings;
use serde::Deserialize;

/// `[sandbox]`: the resources of one restore test.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSandbox {
    disk_mib: Option<u64>,
    memory_mib: Option<u64>,
    processes: Option<u64>,
    dir: Option<PathBuf>,
    user: Option<String>,
    cgroup: Option<PathBuf>,
}

/// `[sandbox]` over the defaults in `settings`.
pub(super) fn sandbox_limits(file: &FileSandbox, settings: &mut Settings) -> Result<()> {
    let mib = |key: &str, value: u64, least: u64| {
        if !(least..=1 << 24).contains(&value) {
            bail!("sandbox.{key} must be between {least} and 16777216, not {value}");
        }
        Ok(value << 20)
    };
    if let Some(value) = file.disk_mib {
        settings.sandbox_limits.disk_bytes = mib("disk_mib", value, 64)?;
    }
    if let Some(value) = file.memory_mib {
        settings.sandbox_limits.memory_bytes = mib("memory_mib", value, 256)?;
    }
    if let Some(value) = file.processes {
        if !(16..=4096).contains(&value) {
            bail!("sandbox.processes must be between 16 and 4096, not {value}");
        }
        settings.sandbox_limits.processes = value;
    }
    if let Some(dir) = &file.dir {
        if !dir.is_absolute() {
            bail!(
                "sandbox.dir must be an absolute path, not {}",
                dir.display()
            );
        }
        settings.sandbox_placement.dir = Some(dir.clone());
    }
    if let Some(user) = &file.user {
        if user.is_empty() || user == "root" || user.contains([':', '/', '\n']) {
            bail!("sandbox.user must name an unprivileged user, not {user:?}");
        }
        settings.sandbox_placement.user = Some(user.clone());
    }
    if let Some(group) = &file.cgroup {
        if !group.is_absolute() {
            bail!(
                "sandbox.cgroup must be an absolute path, not {}",
                group.display()
            );
        }
        settings.sandbox_placement.cgroup = Some(group.clone());
    }
    Ok(())
}

/// `[pbx]`: deadlines and size caps of PBX calls and downloads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePbx {
    call_timeout_seconds: Option<u32>,
    download_minutes: Option<u32>,
    download_per_gib_minutes: Option<u32>,
    max_json_mib: Option<u32>,
    max_backup_gib: Option<u32>,
    #[serde(default)]
    tenant_max_backup_gib: HashMap<String, u32>,
    native_backup_grace_hours: Option<u32>,
    native_watch_hours: Option<u32>,
}

/// `[pbx]` over the defaults in `limits`.
pub(super) fn pbx_limits(file: &FilePbx, limits: &mut PbxLimits) -> Result<()> {
    let within = |key: &str, value: u32, least: u32, most: u32| {
        if (least..=most).contains(&value) {
            Ok(u64::from(value))
        } else {
            Err(anyhow!(
                "pbx.{key} must be between {least} and {most}, not {value}"
            ))
        }
    };
    if let Some(value) = file.call_timeout_seconds {
        limits.call_deadline = Duration::from_secs(within("call_timeout_seconds", value, 1, 3600)?);
    }
    if let Some(value) = file.download_minutes {
        limits.download_deadline.base =
            Duration::from_secs(60 * within("download_minutes", value, 1, 10_080)?);
    }
    if let Some(value) = file.download_per_gib_minutes {
        limits.download_deadline.per_gib =
            Duration::from_secs(60 * within("download_per_gib_minutes", value, 0, 10_080)?);
    }
    if let Some(value) = file.max_json_mib {
        limits.max_json_bytes = within("max_json_mib", value, 1, 1024)? << 20;
    }
    if let Some(value) = file.max_backup_gib {
        limits.max_backup_bytes = within("max_backup_gib", value, 1, 1 << 20)? << 30;
    }
    if let Some(value) = file.native_backup_grace_hours {
        let hours = within("native_backup_grace_hours", value, 0, 8760)?;
        limits.native_backup_grace = chrono::Duration::hours(i64::try_from(hours)?);
    }
    if let Some(value) = file.native_watch_hours {
        let hours = within("native_watch_hours", value, 0, 168)?;
        limits.native_watch_every = chrono::Duration::hours(i64::try_from(hours)?);
    }
    for (tenant, gib) in &file.tenant_max_backup_gib {
        let id = TenantId::new(tenant)
            .with_context(|| format!("pbx.tenant_max_backup_gib: {tenant:?} is not a tenant id"))?;
        let bytes = within(&format!("tenant_max_backup_gib.{tenant}"), *gib, 1, 1 << 20)? << 30;
        limits.tenant_max_backup_bytes.insert(id, bytes);
    }
    Ok(())
}

/// `[verify]`: the verifier's budget per archive and the weakest AES accepted.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileVerify {
    max_entries: Option<u64>,
    max_inflated_gib: Option<u64>,
    max_minutes: Option<u32>,
    minimum_encryption: Option<String>,
    #[serde(default)]
    tenant_minimum_encryption: HashMap<String, String>,
}

/// `[verify]` over the defaults in `settings`.
pub(super) fn verify_limits(file: &FileVerify, settings: &mut Settings) -> Result<()> {
    let strength = |key: &str, text: &str| {
        AesStrength::parse(text).ok_or_else(|| {
            anyhow!("verify.{key} must be one of aes256, aes192, aes128, not {text:?}")
        })
    };
    let limits = &mut settings.verify_limits;
    if let Some(entries) = file.max_entries {
        if entries == 0 {
            bail!("verify.max_entries must be at least 1");
        }
        limits.max_entries = entries;
    }
    if let Some(gib) = file.max_inflated_gib {
        limits.max_inflated_bytes = gib
            .checked_mul(1 << 30)
            .filter(|b| *b > 0)
            .ok_or_else(|| anyhow!("verify.max_inflated_gib must be between 1 and 2^33"))?;
    }
    if let Some(value) = file.max_minutes {
        limits.max_duration = minutes("verify.max_minutes", value, 1)?;
    }
    if let Some(text) = &file.minimum_encryption {
        limits.minimum_encryption = strength("minimum_encryption", text)?;
    }
    for (tenant, text) in &file.tenant_minimum_encryption {
        let id = TenantId::new(tenant).with_context(|| {
            format!("verify.tenant_minimum_encryption: {tenant:?} is not a tenant id")
        })?;
        let minimum = strength(&format!("tenant_minimum_encryption.{tenant}"), text)?;
        settings.tenant_minimum_encryption.insert(id, minimum);
    }
    Ok(())
}

/// `[deadlines]`: the watchdog's limit per rung, and for closing an ended cycle.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDeadlines {
    capture: Option<FileDeadline>,
    secure: Option<FileDeadline>,
    verify: Option<FileDeadline>,
    restore_test: Option<FileDeadline>,
    close_minutes: Option<u32>,
    check_every_seconds: Option<u32>,
}

/// One rung's limit: `minutes` plus `per_gib` minutes per GiB of backup.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDeadline {
    minutes: Option<u32>,
    per_gib: Option<u32>,
}

fn minutes(what: &str, value: u32, least: u32) -> Result<Duration> {
    if !(least..=10_080).contains(&value) {
        bail!("{what} must be between {least} and 10080 minutes, not {value}");
    }
    Ok(Duration::from_secs(u64::from(value) * 60))
}

/// `[deadlines]` over the defaults in `set`.
pub(super) fn deadlines(file: &FileDeadlines, set: &mut Deadlines) -> Result<()> {
    for (rung, given, into) in [
        ("capture", &file.capture, &mut set.capture),
        ("secure", &file.secure, &mut set.secure),
        ("verify", &file.verify, &mut set.verify),
        ("restore_test", &file.restore_test, &mut set.restore_test),
    ] {
        let Some(given) = given else { continue };
        if let Some(value) = given.minutes {
            into.base = minutes(&format!("deadlines.{rung}.minutes"), value, 1)?;
        }
        if let Some(value) = given.per_gib {
            into.per_gib = minutes(&format!("deadlines.{rung}.per_gib"), value, 0)?;
        }
    }
    if let Some(value) = file.close_minutes {
        set.close = minutes("deadlines.close_minutes", value, 1)?;
    }
    if let Some(seconds) = file.check_every_seconds {
        if !(1..=3600).contains(&seconds) {
            bail!("deadlines.check_every_seconds must be between 1 and 3600, not {seconds}");
        }
        set.check_every = Duration::from_secs(u64::from(seconds));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sections these tests read, as the file holds them.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sections {
        pbx: Option<FilePbx>,
        deadlines: Option<FileDeadlines>,
    }

    #[test]
    fn pbx_limits_come_from_the_file_over_the_defaults() {
        let file: Sections = toml::from_str(
            "[pbx]\ncall_timeout_seconds = 30\ndownload_minutes = 5\nmax_json_mib = 2\n\
             max_backup_gib = 10\nnative_backup_grace_hours = 12\nnative_watch_hours = 2\n\
             [pbx.tenant_max_backup_gib]\nacme = 200\n",
        )
        .expect("toml");
        let mut limits = PbxLimits::default();
        pbx_limits(file.pbx.as_ref().expect("section"), &mut limits).expect("valid");
        assert_eq!(limits.call_deadline, Duration::from_secs(30));
        assert_eq!(limits.download_deadline.base, Duration::from_secs(300));
        assert_eq!(
            limits.download_deadline.per_gib,
            PbxLimits::default().download_deadline.per_gib
        );
        assert_eq!(limits.max_json_bytes, 2 << 20);
        assert_eq!(limits.native_backup_grace, chrono::Duration::hours(12));
        assert_eq!(limits.native_watch_every, chrono::Duration::hours(2));
        assert_eq!(
            PbxLimits::default().native_watch_every,
            chrono::Duration::hours(6)
        );
        assert_eq!(
            limits.max_backup_for(&TenantId::new("other").expect("t")),
            10 << 30
        );
        assert_eq!(
            limits.max_backup_for(&TenantId::new("acme").expect("t")),
            200 << 30
        );
        for (text, named) in [
            ("call_timeout_seconds = 0", "pbx.call_timeout_seconds"),
            ("max_json_mib = 0", "pbx.max_json_mib"),
            ("max_backup_gib = 0", "pbx.max_backup_gib"),
            (
                "native_backup_grace_hours = 9000",
                "pbx.native_backup_grace_hours",
            ),
            ("native_watch_hours = 169", "pbx.native_watch_hours"),
        ] {
            let file: Sections = toml::from_str(&format!("[pbx]\n{text}\n")).expect("toml");
            let error = pbx_limits(file.pbx.as_ref().expect("section"), &mut limits)
                .expect_err(text)
                .to_string();
            assert!(error.contains(named), "{error}");
        }
        assert!(toml::from_str::<Sections>("[pbx]\nmax_json = 3\n").is_err());
    }

    #[test]
    fn deadlines_come_from_the_file_over_the_defaults() {
        let file: Sections = toml::from_str(
            "[deadlines]\nsecure = { minutes = 20, per_gib = 0 }\ncheck_every_seconds = 15\n",
        )
        .expect("toml");
        let mut set = Deadlines::default();
        deadlines(file.deadlines.as_ref().expect("section"), &mut set).expect("valid");
        assert_eq!(set.secure.base, Duration::from_secs(20 * 60));
        assert_eq!(set.secure.per_gib, Duration::ZERO);
        assert_eq!(set.check_every, Duration::from_secs(15));
        assert_eq!(
            set.capture,
            Deadlines::default().capture,
            "the rest keep their defaults"
        );
        for (text, named) in [
            ("verify = { minutes = 0 }", "deadlines.verify.minutes"),
            ("check_every_seconds = 0", "deadlines.check_every_seconds"),
        ] {
            let file: Sections = toml::from_str(&format!("[deadlines]\n{text}\n")).expect("toml");
            let error = deadlines(file.deadlines.as_ref().expect("section"), &mut set)
                .expect_err("refused");
            assert!(error.to_string().contains(named), "{error}");
        }
        assert!(toml::from_str::<Sections>("[deadlines]\nverify = { minuts = 3 }\n").is_err());
    }
}
