//! The settings every pipeline command shares: flags (with `RESTORABLE_*` environment
//! fallbacks, see `cli::DataDir`) over an optional TOML file, checked before anything starts so a
//! mistake is named at once. Nothing set means the embedded default.
//!
//! Alert routes live only in the file; secrets are never written in it, only the names of the
//! environment variables that hold them:
//!
//! ```toml
//! [smtp]                        # the relay alert e-mail goes through
//! host = "smtp.example.com"
//! port = 587                    # default: 587 with STARTTLS, 25 without
//! from = "Restorable <alerts@example.com>"
//! username = "alerts"           # optional, with password_env
//! password_env = "RESTORABLE_SMTP_PASSWORD"
//! starttls = true               # default; false only for a loopback relay (local MTA, tests)
//!
//! [alert_routes.acme]           # per tenant slug
//! webhook_url = "https://hooks.acme.example/restorable"
//! webhook_secret_env = "ACME_WEBHOOK_SECRET"   # required with webhook_url: webhooks are signed
//! email_to = ["ops@acme.example"]              # needs [smtp]
//!
//! [operations_alerts]           # the operator's routes: dead letters, a held relay (same keys)
//! webhook_url = "https://hooks.ops.example/restorable"
//! webhook_secret_env = "OPS_WEBHOOK_SECRET"
//! email_to = ["oncall@example.com"]
//!
//! [deadlines]                   # how long a cycle may stand on a rung before the watchdog
//! capture = { minutes = 30, per_gib = 10 }     # fails it stage_timeout: minutes, plus
//! secure = { minutes = 10, per_gib = 5 }       # per_gib minutes per GiB of backup
//! verify = { minutes = 10, per_gib = 5 }       # (the defaults; any may be left out)
//! restore_test = { minutes = 30, per_gib = 10 }
//! close_minutes = 5             # an ended cycle whose instance still holds it open
//! check_every_seconds = 60      # how often the watchdog looks
//!
//! [sandbox]                     # the resources of one restore test (the defaults)
//! disk_mib = 16384              # the whole sandbox on disk; over it: restore_rejected
//! memory_mib = 4096             # address space of each sandbox server process
//! processes = 64                # processes of the sandbox server (RLIMIT_NPROC)
//! # dir = "/var/lib/restorable-sandboxes"  # default: $TMPDIR/restorable-sandboxes-<uid>/<hash>
//! # user = "restorable-sandbox" # as root, the server's user (default: nobody)
//!
//! [verify]                      # the verifier's budget per archive (the defaults)
//! max_entries = 1000000
//! max_inflated_gib = 1024       # inflated bytes the entries may declare, in all
//! max_minutes = 360
//! minimum_encryption = "aes256" # the weakest AES accepted: aes256, aes192 or aes128
//! [verify.tenant_minimum_encryption]
//! acme = "aes128"               # a tenant whose policy accepts weaker AES
//!
//! [pbx]                         # how far a PBX is trusted (the defaults)
//! call_timeout_seconds = 120    # overall deadline of one API call, headers and body
//! download_minutes = 30         # overall deadline of one download: minutes, plus
//! download_per_gib_minutes = 10 # these minutes per GiB of its Content-Length
//! max_json_mib = 4              # the largest JSON answer read
//! max_backup_gib = 50           # the largest backup stored (Content-Length and streamed)
//! [pbx.tenant_max_backup_gib]
//! acme = 200                    # a tenant whose backups may be larger
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use restorable_domain::ids::TenantId;
use restorable_pipeline::alert_routes::{AlertRoutes, SmtpRelay, TenantRoutes, WebhookRoute};
use restorable_pipeline::archive::AesStrength;
use restorable_pipeline::config::Backends;
use restorable_pipeline::context::{Deadlines, Settings};
use restorable_pipeline::kms_sealer::KmsConfig;
use restorable_pipeline::nats::NatsConfig;
use restorable_pipeline::pbx_client::PbxLimits;
use restorable_pipeline::s3_vault::S3Config;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::cli::DataDir;

/// The TOML file's keys: the flags' names in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    nats_url: Option<String>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    kms_endpoint: Option<String>,
    kms_key_id: Option<String>,
    retention_days: Option<u32>,
    #[serde(default)]
    tenant_retention_days: HashMap<String, u32>,
    smtp: Option<FileSmtp>,
    #[serde(default)]
    alert_routes: HashMap<String, FileAlertRoute>,
    operations_alerts: Option<FileAlertRoute>,
    deadlines: Option<FileDeadlines>,
    verify: Option<FileVerify>,
    pbx: Option<FilePbx>,
    sandbox: Option<FileSandbox>,
}

/// `[sandbox]`: the resources of one restore test.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    disk_mib: Option<u64>,
    memory_mib: Option<u64>,
    processes: Option<u64>,
    dir: Option<PathBuf>,
    user: Option<String>,
}

/// `[sandbox]` over the defaults in `settings`.
fn sandbox_limits(file: &FileSandbox, settings: &mut Settings) -> Result<()> {
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
    Ok(())
}

/// `[pbx]`: deadlines and size caps of PBX calls and downloads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePbx {
    call_timeout_seconds: Option<u32>,
    download_minutes: Option<u32>,
    download_per_gib_minutes: Option<u32>,
    max_json_mib: Option<u32>,
    max_backup_gib: Option<u32>,
    #[serde(default)]
    tenant_max_backup_gib: HashMap<String, u32>,
}

/// `[pbx]` over the defaults in `limits`.
fn pbx_limits(file: &FilePbx, limits: &mut PbxLimits) -> Result<()> {
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
    for (tenant, gib) in &file.tenant_max_backup_gib {
        let id = TenantId::new(tenant)
            .with_context(|| format!("pbx.tenant_max_backup_gib: {tenant:?} is not a tenant id"))?;
        let bytes = within(&format!("tenant_max_backup_gib.{tenant}"), *gib, 1, 1 << 20)? << 30;
        limits.tenant_max_backup_bytes.insert(id, bytes);
    }
    Ok(())
}

/// `[verify]`: the verifier's budget per archive and the weakest AES accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVerify {
    max_entries: Option<u64>,
    max_inflated_gib: Option<u64>,
    max_minutes: Option<u32>,
    minimum_encryption: Option<String>,
    #[serde(default)]
    tenant_minimum_encryption: HashMap<String, String>,
}

/// `[verify]` over the defaults in `settings`.
fn verify_limits(file: &FileVerify, settings: &mut Settings) -> Result<()> {
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeadlines {
    capture: Option<FileDeadline>,
    secure: Option<FileDeadline>,
    verify: Option<FileDeadline>,
    restore_test: Option<FileDeadline>,
    close_minutes: Option<u32>,
    check_every_seconds: Option<u32>,
}

/// One rung's limit: `minutes` plus `per_gib` minutes per GiB of backup.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeadline {
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
fn deadlines(file: &FileDeadlines, set: &mut Deadlines) -> Result<()> {
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

/// `[smtp]`: the relay alert e-mail goes through.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSmtp {
    host: String,
    port: Option<u16>,
    from: String,
    username: Option<String>,
    /// The name of the environment variable holding the password.
    password_env: Option<String>,
    starttls: Option<bool>,
}

/// `[alert_routes.<tenant>]`: where a tenant's alerts go; `[operations_alerts]`: where the
/// operator's go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAlertRoute {
    webhook_url: Option<String>,
    /// The name of the environment variable holding the webhook's signing secret.
    webhook_secret_env: Option<String>,
    #[serde(default)]
    email_to: Vec<String>,
}

/// The secret in the environment variable `name`, which `what` refers to.
fn secret_from_env(
    what: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretString> {
    match env(name) {
        Some(value) if !value.is_empty() => Ok(SecretString::from(value)),
        _ => bail!("{what}: the environment variable {name} is not set (or is empty or not UTF-8)"),
    }
}

/// One `[alert_routes.<tenant>]` or `[operations_alerts]` section (named `section`), its
/// webhook secret read through `env`.
fn section_routes(
    section: &str,
    route: &FileAlertRoute,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TenantRoutes> {
    let webhook = match (&route.webhook_url, &route.webhook_secret_env) {
        (Some(url), Some(name)) => Some(WebhookRoute {
            url: url.clone(),
            secret: secret_from_env(&format!("{section}.webhook_secret_env"), name, env)?,
        }),
        (None, None) => None,
        (Some(_), None) => bail!(
            "{section}.webhook_secret_env is required with webhook_url: webhooks are always signed"
        ),
        (None, Some(_)) => {
            bail!("{section}.webhook_secret_env is set but webhook_url is not")
        }
    };
    Ok(TenantRoutes {
        webhook,
        email_to: route.email_to.clone(),
    })
}

/// `[smtp]`, `[alert_routes.*]` and `[operations_alerts]`, secrets read through `env`.
fn alert_routes(file: &FileSettings, env: &dyn Fn(&str) -> Option<String>) -> Result<AlertRoutes> {
    let smtp = match &file.smtp {
        None => None,
        Some(smtp) => {
            let starttls = smtp.starttls.unwrap_or(true);
            let password = match (&smtp.username, &smtp.password_env) {
                (Some(_), Some(name)) => Some(secret_from_env("smtp.password_env", name, env)?),
                (None, None) => None,
                (Some(_), None) => bail!("smtp.username is set but smtp.password_env is not"),
                (None, Some(_)) => bail!("smtp.password_env is set but smtp.username is not"),
            };
            Some(SmtpRelay {
                host: smtp.host.clone(),
                port: smtp.port.unwrap_or(if starttls { 587 } else { 25 }),
                from: smtp.from.clone(),
                username: smtp.username.clone(),
                password,
                starttls,
            })
        }
    };
    let mut tenants = HashMap::new();
    let mut slugs: Vec<_> = file.alert_routes.keys().collect();
    slugs.sort();
    for slug in slugs {
        let route = &file.alert_routes[slug];
        let tenant = TenantId::new(slug)
            .with_context(|| format!("alert_routes: {slug:?} is not a tenant id"))?;
        tenants.insert(
            tenant,
            section_routes(&format!("alert_routes.{slug}"), route, env)?,
        );
    }
    let operations = match &file.operations_alerts {
        Some(route) => Some(section_routes("operations_alerts", route, env)?),
        None => None,
    };
    let routes = AlertRoutes {
        smtp,
        tenants,
        operations,
    };
    routes.check().map_err(|e| anyhow!("{e}"))?;
    Ok(routes)
}

fn read_file(path: &Path) -> Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// `text` fit for messages: a URL's password replaced by `***`. Text that is not a URL but holds
/// an `@` (perhaps credentials) is not shown at all. The one place the binary shows a URL that
/// may carry a password.
pub fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Only fails on a URL without a host, which has no password either.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) if !url.cannot_be_a_base() => text.to_owned(),
        _ if text.contains('@') => "<not a URL>".to_owned(),
        _ => text.to_owned(),
    }
}

/// Checks that the setting `what` is a URL with a host and one of `schemes`.
fn url_with_scheme(what: &str, text: &str, schemes: &[&str]) -> Result<()> {
    let shown = redact_url(text);
    let url = match Url::parse(text) {
        Ok(url) if !url.cannot_be_a_base() => Some(url),
        Err(url::ParseError::EmptyHost) => None,
        _ => bail!(
            "{what} {shown:?} is not a URL (expected {}://host...)",
            schemes[0]
        ),
    };
    let usable = url.is_some_and(|url| {
        schemes.contains(&url.scheme()) && url.host_str().is_some_and(|host| !host.is_empty())
    });
    if !usable {
        bail!(
            "{what} {shown:?}: expected a {} URL",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    Ok(())
}

fn days(what: &str, days: u32) -> Result<chrono::Duration> {
    if days == 0 || days > 36_500 {
        bail!("{what} must be between 1 and 36500 days, not {days}");
    }
    Ok(chrono::Duration::days(i64::from(days)))
}

/// The backends and the retention the flags, environment and file ask for.
///
/// # Errors
/// A message naming the setting that is missing or wrong.
pub fn resolve(data: &DataDir, mut settings: Settings) -> Result<(Backends, Settings)> {
    let file = match &data.config {
        Some(path) => read_file(path)?,
        None => FileSettings::default(),
    };
    let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or(file.clone());
    let database_url = pick(&data.database_url, &file.database_url);
    if let Some(url) = &database_url {
        if url.contains("://") && !url.starts_with("sqlite://") {
            url_with_scheme("RESTORABLE_DATABASE_URL", url, &["postgres", "postgresql"])?;
        }
    }
    let nats_url = pick(&data.nats_url, &file.nats_url);
    if let Some(url) = &nats_url {
        url_with_scheme("RESTORABLE_NATS_URL", url, &["nats", "tls"])?;
    }
    let s3_endpoint = pick(&data.s3_endpoint, &file.s3_endpoint);
    let s3_bucket = pick(&data.s3_bucket, &file.s3_bucket);
    if let (Some(endpoint), None) = (&s3_endpoint, &s3_bucket) {
        bail!(
            "RESTORABLE_S3_ENDPOINT is set ({}) but RESTORABLE_S3_BUCKET is not: name the Object Lock bucket",
            redact_url(endpoint)
        );
    }
    if let Some(endpoint) = &s3_endpoint {
        url_with_scheme("RESTORABLE_S3_ENDPOINT", endpoint, &["http", "https"])?;
    }
    let kms_endpoint = pick(&data.kms_endpoint, &file.kms_endpoint);
    let kms_key_id = pick(&data.kms_key_id, &file.kms_key_id);
    if let (Some(endpoint), None) = (&kms_endpoint, &kms_key_id) {
        bail!(
            "RESTORABLE_KMS_ENDPOINT is set ({}) but RESTORABLE_KMS_KEY_ID is not: name the key that seals tenant passwords",
            redact_url(endpoint)
        );
    }
    if let Some(endpoint) = &kms_endpoint {
        url_with_scheme("RESTORABLE_KMS_ENDPOINT", endpoint, &["http", "https"])?;
    }
    let s3_region = pick(&data.s3_region, &file.s3_region);
    if let Some(days_set) = data.retention_days.or(file.retention_days) {
        settings.retention = days("RESTORABLE_RETENTION_DAYS", days_set)?;
    }
    for (tenant, tenant_days) in &file.tenant_retention_days {
        let id = TenantId::new(tenant)
            .with_context(|| format!("tenant_retention_days: {tenant:?} is not a tenant id"))?;
        let retention = days(&format!("tenant_retention_days.{tenant}"), *tenant_days)?;
        settings.tenant_retention.insert(id, retention);
    }
    settings.alert_routes = alert_routes(&file, &|name| std::env::var(name).ok())?;
    if let Some(file_deadlines) = &file.deadlines {
        deadlines(file_deadlines, &mut settings.deadlines)?;
    }
    if let Some(file_verify) = &file.verify {
        verify_limits(file_verify, &mut settings)?;
    }
    if let Some(file_sandbox) = &file.sandbox {
        sandbox_limits(file_sandbox, &mut settings)?;
    }
    if let Some(file_pbx) = &file.pbx {
        pbx_limits(file_pbx, &mut settings.pbx)?;
    }
    let region = s3_region.unwrap_or_else(|| "us-east-1".to_owned());
    let backends = Backends {
        data_dir: data.data_dir.clone(),
        database_url,
        nats: nats_url.map(|url| NatsConfig { url }),
        s3: s3_bucket.map(|bucket| S3Config {
            endpoint: s3_endpoint,
            bucket,
            region: region.clone(),
        }),
        kms: kms_key_id.map(|key_id| KmsConfig {
            endpoint: kms_endpoint,
            key_id,
            region,
        }),
    };
    Ok((backends, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        data: DataDir,
    }

    fn resolve_args(args: &[&str]) -> Result<(Backends, Settings)> {
        let probe = Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))?;
        resolve(&probe.data, Settings::default())
    }

    #[test]
    fn nothing_set_is_the_embedded_default() {
        let (backends, settings) = resolve_args(&["--data-dir", "/tmp/x"]).expect("resolve");
        assert_eq!(backends.database_url, None);
        assert!(backends.nats.is_none());
        assert_eq!(settings.retention, chrono::Duration::days(30));
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--database-url", "mysql://h/db"],
                "RESTORABLE_DATABASE_URL",
            ),
            (&["--nats-url", "localhost:4222"], "RESTORABLE_NATS_URL"),
            (&["--s3-endpoint", "http://h:1"], "RESTORABLE_S3_BUCKET"),
            (&["--kms-endpoint", "http://h:1"], "RESTORABLE_KMS_KEY_ID"),
            (&["--retention-days", "0"], "RESTORABLE_RETENTION_DAYS"),
        ];
        for (args, named) in cases {
            let error = resolve_args(args).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{args:?}: {error:#}");
        }
    }

    #[test]
    fn urls_are_checked_with_their_passwords_hidden() {
        for (url, named) in [
            ("postgres://u:hunter2@h:99999/db", "is not a URL"),
            (
                "mysql://u:hunter2@h/db",
                "expected a postgres:// or postgresql:// URL",
            ),
            ("postgres://", "expected a postgres://"),
        ] {
            let error = resolve_args(&["--database-url", url]).expect_err(url);
            let text = format!("{error:#}");
            assert!(text.contains(named), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
        for url in ["nats://", "http://h:1", "localhost:4222"] {
            let error = resolve_args(&["--nats-url", url]).expect_err(url);
            assert!(
                format!("{error:#}").contains("RESTORABLE_NATS_URL"),
                "{url}: {error:#}"
            );
        }
        assert!(resolve_args(&["--database-url", "postgres://u:pw@db.example:5432/x"]).is_ok());
        assert!(resolve_args(&["--database-url", "sqlite://./x.db"]).is_ok());
        assert!(resolve_args(&["--nats-url", "tls://nats.example:4222"]).is_ok());
        assert_eq!(
            redact_url("postgres://u:hunter2@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:hunter2@h:bad"), "<not a URL>");
    }

    #[test]
    fn a_file_fills_what_flags_leave_open_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("restorable.toml");
        std::fs::write(
            &file,
            "nats_url = \"nats://file:4222\"\nretention_days = 45\n\
             [tenant_retention_days]\nacme = 90\n",
        )
        .expect("write");
        let config = file.to_string_lossy().into_owned();
        let (backends, settings) =
            resolve_args(&["--config", &config, "--retention-days", "60"]).expect("resolve");
        assert_eq!(
            backends.nats.map(|n| n.url).as_deref(),
            Some("nats://file:4222")
        );
        assert_eq!(settings.retention, chrono::Duration::days(60));
        let acme = TenantId::new("acme").expect("tenant");
        assert_eq!(settings.retention_for(&acme), chrono::Duration::days(90));

        std::fs::write(&file, "nats_ulr = \"nats://typo\"\n").expect("write");
        let error = resolve_args(&["--config", &config]).expect_err("unknown key");
        assert!(format!("{error:#}").contains("nats_ulr"), "{error:#}");
    }

    #[test]
    fn pbx_limits_come_from_the_file_over_the_defaults() {
        let file: FileSettings = toml::from_str(
            "[pbx]\ncall_timeout_seconds = 30\ndownload_minutes = 5\nmax_json_mib = 2\n\
             max_backup_gib = 10\n[pbx.tenant_max_backup_gib]\nacme = 200\n",
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
        ] {
            let file: FileSettings = toml::from_str(&format!("[pbx]\n{text}\n")).expect("toml");
            let error = pbx_limits(file.pbx.as_ref().expect("section"), &mut limits)
                .expect_err(text)
                .to_string();
            assert!(error.contains(named), "{error}");
        }
        assert!(toml::from_str::<FileSettings>("[pbx]\nmax_json = 3\n").is_err());
    }

    #[test]
    fn deadlines_come_from_the_file_over_the_defaults() {
        let file: FileSettings = toml::from_str(
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
            let file: FileSettings =
                toml::from_str(&format!("[deadlines]\n{text}\n")).expect("toml");
            let error = deadlines(file.deadlines.as_ref().expect("section"), &mut set)
                .expect_err("refused");
            assert!(error.to_string().contains(named), "{error}");
        }
        assert!(toml::from_str::<FileSettings>("[deadlines]\nverify = { minuts = 3 }\n").is_err());
    }

    const ROUTES: &str = r#"
[smtp]
host = "smtp.example.com"
from = "Restorable <alerts@example.com>"
username = "alerts"
password_env = "TEST_SMTP_PASSWORD"

[alert_routes.acme]
webhook_url = "https://hooks.acme.example/restorable?team=ops"
webhook_secret_env = "TEST_ACME_SECRET"
email_to = ["ops@acme.example", "cto@acme.example"]

[alert_routes.globex]
email_to = ["noc@globex.example"]
"#;

    fn fake_env(name: &str) -> Option<String> {
        match name {
            "TEST_SMTP_PASSWORD" => Some("smtp-password-value".to_owned()),
            "TEST_ACME_SECRET" => Some("acme-secret-value".to_owned()),
            _ => None,
        }
    }

    fn routes_from(text: &str) -> Result<AlertRoutes> {
        let file: FileSettings = toml::from_str(text)?;
        alert_routes(&file, &fake_env)
    }

    #[test]
    fn alert_routes_are_read_with_their_secrets_from_the_environment() {
        use secrecy::ExposeSecret;
        let routes = routes_from(ROUTES).expect("routes");
        let smtp = routes.smtp.as_ref().expect("smtp");
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 587));
        assert!(smtp.starttls, "STARTTLS unless turned off");
        assert_eq!(
            smtp.password.as_ref().map(|p| p.expose_secret().to_owned()),
            Some("smtp-password-value".to_owned())
        );
        let acme = &routes.tenants[&TenantId::new("acme").expect("slug")];
        let webhook = acme.webhook.as_ref().expect("webhook");
        assert_eq!(webhook.secret.expose_secret(), "acme-secret-value");
        assert_eq!(acme.email_to.len(), 2);
        let globex = &routes.tenants[&TenantId::new("globex").expect("slug")];
        assert!(globex.webhook.is_none());
        let shown = format!("{routes:?}");
        for secret in ["smtp-password-value", "acme-secret-value", "team=ops"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(routes_from("").expect("none").tenants.is_empty());
        assert!(routes_from("").expect("none").operations.is_none());
    }

    #[test]
    fn the_operators_routes_are_their_own_section() {
        use secrecy::ExposeSecret;
        let routes = routes_from(&format!(
            "{ROUTES}\n[operations_alerts]\nwebhook_url = \"https://hooks.ops.example/r\"\n\
             webhook_secret_env = \"TEST_ACME_SECRET\"\nemail_to = [\"oncall@ops.example\"]\n"
        ))
        .expect("routes");
        let operations = routes.operations.as_ref().expect("operations routes");
        let webhook = operations.webhook.as_ref().expect("webhook");
        assert_eq!(webhook.url, "https://hooks.ops.example/r");
        assert_eq!(webhook.secret.expose_secret(), "acme-secret-value");
        assert_eq!(operations.email_to, ["oncall@ops.example"]);
        assert_eq!(routes.tenants.len(), 2, "no tenant of that name");
        for (text, named) in [
            (
                "[operations_alerts]\nwebhook_url = \"https://h/x\"\n",
                "operations_alerts.webhook_secret_env",
            ),
            (
                "[operations_alerts]\nemail_to = [\"oncall@ops.example\"]\n",
                "operations_alerts.email_to",
            ),
        ] {
            let error = routes_from(text).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
    }

    #[test]
    fn alert_route_mistakes_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "[alert_routes.acme]\nwebhook_url = \"https://h/x\"\nwebhook_secret_env = \"TEST_UNSET\"\n",
                "TEST_UNSET",
            ),
            (
                "[alert_routes.acme]\nwebhook_url = \"https://h/x\"\n",
                "alert_routes.acme.webhook_secret_env",
            ),
            (
                "[alert_routes.Acme_Corp]\nemail_to = [\"a@b.example\"]\n",
                "Acme_Corp",
            ),
            (
                "[alert_routes.acme]\nemail_to = [\"ops@acme.example\"]\n",
                "[smtp]",
            ),
            (
                "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@b.example\"\nusername = \"u\"\npassword_env = \"TEST_NO_PASSWORD\"\n",
                "TEST_NO_PASSWORD",
            ),
            (
                "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@b.example\"\nstarttls = false\n",
                "smtp.starttls",
            ),
            (
                "[alert_routes.acme]\nwebhook = \"https://h/x\"\n",
                "webhook",
            ),
        ];
        for (text, named) in cases {
            let error = routes_from(text).expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
    }

    #[test]
    fn a_missing_secret_variable_stops_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("restorable.toml");
        std::fs::write(
            &file,
            "[alert_routes.acme]\nwebhook_url = \"https://h/x\"\n\
             webhook_secret_env = \"RESTORABLE_TEST_SURELY_UNSET_7F3A\"\n",
        )
        .expect("write");
        let config = file.to_string_lossy().into_owned();
        let error = resolve_args(&["--config", &config]).expect_err("no secret");
        assert!(
            format!("{error:#}").contains("RESTORABLE_TEST_SURELY_UNSET_7F3A"),
            "{error:#}"
        );
    }
}
