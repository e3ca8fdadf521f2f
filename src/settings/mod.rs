//! The settings every pipeline command shares: flags (with `RESTORABLE_*` environment
//! fallbacks) over an optional TOML file, checked before anything starts so a
//! mistake is named at once. Nothing set means the embedded default.
//!
//! This module reads the file and merges it under the flags ([`resolve`]); the file's sections
//! are checked by job: `limits` (`[sandbox]`, `[pbx]`, `[verify]`, `[deadlines]`), `alerts`
//! (`[smtp]`, `[alert_routes.*]`, `[operations_alerts]`), `audit` (`[audit]`) and `urls` (every
//! URL setting, and [`redact_url`] for showing one). Those four are leaves: they never import
//! this module.
//!
//! Alert routes live only in the file; secrets are never written in it, only the names of the
//! environment variables that hold them:
//!
//! ```toml
//! console_url = "https://restorable.example"   # chat and incident messages link under it
//!
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
//! slack_webhook_env = "ACME_SLACK_WEBHOOK_URL"  # Slack incoming webhook (the URL is a secret)
//! teams_webhook_env = "ACME_TEAMS_WEBHOOK_URL"  # Microsoft Teams incoming webhook
//! pagerduty_routing_key_env = "ACME_PAGERDUTY_KEY"  # PagerDuty Events API v2
//! pagerduty_events_url = "https://events.eu.pagerduty.com/v2/enqueue"  # default: PagerDuty's
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
//! memory_mib = 4096             # the sandbox server's memory (its cgroup; RLIMIT_AS per process)
//! processes = 64                # processes of the sandbox server (its cgroup; RLIMIT_NPROC)
//! # dir = "/var/lib/restorable-sandboxes"  # default: $TMPDIR/restorable-sandboxes-<uid>/<hash>
//! # user = "restorable-sandbox" # as root, the server's user (default: nobody)
//! # cgroup = "/sys/fs/cgroup/restorable.slice"  # a delegated cgroup v2 group (default: as root,
//! #                             # found automatically; otherwise rlimits only)
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
//!
//! [audit]                       # the tamper-evident history (the defaults)
//! checkpoint_minutes = 60       # a signed checkpoint in the vault, also when nothing happened
//! check_hours = 24              # the whole history checked against the checkpoints
//! ```

mod alerts;
mod audit;
mod limits;
mod recheck;
mod retention;
mod urls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use restorable_domain::ids::TenantId;
use restorable_pipeline::pipeline::Settings;
use restorable_pipeline::sealing::KmsConfig;
use restorable_pipeline::setup::Backends;
use restorable_pipeline::transport::nats::NatsConfig;
use restorable_pipeline::vault::S3Config;
use serde::Deserialize;

use self::alerts::{alert_routes, FileAlertRoute, FileSmtp};
use self::audit::{audit_schedule, FileAudit};
use self::limits::{
    deadlines, pbx_limits, sandbox_limits, verify_limits, FileDeadlines, FilePbx, FileSandbox,
    FileVerify,
};
use self::recheck::{recheck_window, FileRecheck};
use self::retention::{retention_policy, FileRetention};
pub use self::urls::redact_url;
use self::urls::url_with_scheme;

/// Every setting the pipeline commands share, in one struct that clap reads (flags, with
/// `RESTORABLE_*` environment fallbacks) and serde reads (the TOML file, keys in snake_case, an
/// unknown key refused by name). Flags and environment win over the file ([`Config::over`]);
/// the sections (`[smtp]`, `[alert_routes.*]`, `[sandbox]` ...) are only in the file.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Local state of the embedded default (events.db, vault/, master.key).
    #[arg(long, env = "RESTORABLE_DATA_DIR", default_value = "./restorable-data")]
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// A TOML file with any of the settings below (same names, snake_case, plus
    /// `[tenant_retention_days]`); flags and environment variables win over it.
    #[arg(long, env = "RESTORABLE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Event store: postgres://user@host/db, or a SQLite file path (default: DATA_DIR/events.db).
    #[arg(long, env = "RESTORABLE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// NATS JetStream transport, e.g. nats://127.0.0.1:4222 (default: in-process).
    #[arg(long, env = "RESTORABLE_NATS_URL")]
    pub nats_url: Option<String>,
    /// S3 endpoint for a non-AWS or local S3 (default: AWS for the region).
    #[arg(long, env = "RESTORABLE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket with Object Lock (default: the local vault under DATA_DIR/vault).
    #[arg(long, env = "RESTORABLE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 region.
    #[arg(long, env = "RESTORABLE_S3_REGION")]
    pub s3_region: Option<String>,
    /// KMS endpoint for a local KMS (default: AWS for the region).
    #[arg(long, env = "RESTORABLE_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// KMS key that seals tenant passwords (default: local sealing with DATA_DIR/master.key).
    #[arg(long, env = "RESTORABLE_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// KMS key (ECC_NIST_P256, SIGN_VERIFY) that signs checkpoints and restore certificates
    /// (default: DATA_DIR/signing-key, Ed25519); uses the KMS endpoint and the S3 region.
    #[arg(long, env = "RESTORABLE_SIGNING_KEY_ID")]
    pub signing_key_id: Option<String>,
    /// Object Lock retention of new copies, in days (default 30).
    #[arg(long, env = "RESTORABLE_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Retention per tenant slug, in days (file only).
    #[arg(skip)]
    #[serde(default)]
    tenant_retention_days: HashMap<String, u32>,
    /// The relay alert e-mail goes through (file only).
    #[arg(skip)]
    smtp: Option<FileSmtp>,
    /// Alert routes per tenant slug (file only).
    #[arg(skip)]
    #[serde(default)]
    alert_routes: HashMap<String, FileAlertRoute>,
    /// The operator's routes (file only).
    #[arg(skip)]
    operations_alerts: Option<FileAlertRoute>,
    /// The console's public URL, for links in chat and incident messages (file only).
    #[arg(skip)]
    console_url: Option<String>,
    /// Rung deadlines (file only).
    #[arg(skip)]
    deadlines: Option<FileDeadlines>,
    /// The verifier's budget (file only).
    #[arg(skip)]
    verify: Option<FileVerify>,
    /// How far a PBX is trusted (file only).
    #[arg(skip)]
    pbx: Option<FilePbx>,
    /// The restore sandbox's resources (file only).
    #[arg(skip)]
    sandbox: Option<FileSandbox>,
    /// The evidence's schedule (file only).
    #[arg(skip)]
    audit: Option<FileAudit>,
    /// The rotating re-checks' window (file only).
    #[arg(skip)]
    recheck: Option<FileRecheck>,
    /// What retention keeps past the lock, and the offboarding grace (file only).
    #[arg(skip)]
    retention: Option<FileRetention>,
}

impl Config {
    /// These settings (from flags and environment) over `file`'s: a flag wins, the file fills
    /// what flags leave open, the sections come from the file. (A struct literal, so a new field
    /// cannot be forgotten here.)
    fn over(&self, file: Config) -> Config {
        Config {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            database_url: self.database_url.clone().or(file.database_url),
            nats_url: self.nats_url.clone().or(file.nats_url),
            s3_endpoint: self.s3_endpoint.clone().or(file.s3_endpoint),
            s3_bucket: self.s3_bucket.clone().or(file.s3_bucket),
            s3_region: self.s3_region.clone().or(file.s3_region),
            kms_endpoint: self.kms_endpoint.clone().or(file.kms_endpoint),
            kms_key_id: self.kms_key_id.clone().or(file.kms_key_id),
            signing_key_id: self.signing_key_id.clone().or(file.signing_key_id),
            retention_days: self.retention_days.or(file.retention_days),
            tenant_retention_days: file.tenant_retention_days,
            smtp: file.smtp,
            alert_routes: file.alert_routes,
            operations_alerts: file.operations_alerts,
            console_url: file.console_url,
            deadlines: file.deadlines,
            verify: file.verify,
            pbx: file.pbx,
            sandbox: file.sandbox,
            audit: file.audit,
            recheck: file.recheck,
            retention: file.retention,
        }
    }
}

fn read_file(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the configuration file {}", path.display()))
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
pub fn resolve(flags: &Config, mut settings: Settings) -> Result<(Backends, Settings)> {
    let config = match &flags.config {
        Some(path) => flags.over(read_file(path)?),
        None => flags.clone(),
    };
    let database_url = config.database_url;
    if let Some(url) = &database_url {
        if url.contains("://") && !url.starts_with("sqlite://") {
            url_with_scheme("RESTORABLE_DATABASE_URL", url, &["postgres", "postgresql"])?;
        }
    }
    let nats_url = config.nats_url;
    if let Some(url) = &nats_url {
        url_with_scheme("RESTORABLE_NATS_URL", url, &["nats", "tls"])?;
    }
    let s3_endpoint = config.s3_endpoint;
    let s3_bucket = config.s3_bucket;
    if let (Some(endpoint), None) = (&s3_endpoint, &s3_bucket) {
        bail!(
            "RESTORABLE_S3_ENDPOINT is set ({}) but RESTORABLE_S3_BUCKET is not: name the Object Lock bucket",
            redact_url(endpoint)
        );
    }
    if let Some(endpoint) = &s3_endpoint {
        url_with_scheme("RESTORABLE_S3_ENDPOINT", endpoint, &["http", "https"])?;
    }
    let kms_endpoint = config.kms_endpoint;
    let kms_key_id = config.kms_key_id;
    if let (Some(endpoint), None) = (&kms_endpoint, &kms_key_id) {
        bail!(
            "RESTORABLE_KMS_ENDPOINT is set ({}) but RESTORABLE_KMS_KEY_ID is not: name the key that seals tenant passwords",
            redact_url(endpoint)
        );
    }
    if let Some(endpoint) = &kms_endpoint {
        url_with_scheme("RESTORABLE_KMS_ENDPOINT", endpoint, &["http", "https"])?;
    }
    let s3_region = config.s3_region;
    if let Some(days_set) = config.retention_days {
        settings.retention = days("RESTORABLE_RETENTION_DAYS", days_set)?;
    }
    for (tenant, tenant_days) in &config.tenant_retention_days {
        let id = TenantId::new(tenant)
            .with_context(|| format!("tenant_retention_days: {tenant:?} is not a tenant id"))?;
        let retention = days(&format!("tenant_retention_days.{tenant}"), *tenant_days)?;
        settings.tenant_retention.insert(id, retention);
    }
    settings.alert_routes = alert_routes(
        config.smtp.as_ref(),
        &config.alert_routes,
        config.operations_alerts.as_ref(),
        config.console_url.as_ref(),
        &|name| std::env::var(name).ok(),
    )?;
    if let Some(file_deadlines) = &config.deadlines {
        deadlines(file_deadlines, &mut settings.deadlines)?;
    }
    if let Some(file_verify) = &config.verify {
        verify_limits(file_verify, &mut settings)?;
    }
    if let Some(file_sandbox) = &config.sandbox {
        sandbox_limits(file_sandbox, &mut settings)?;
    }
    if let Some(file_pbx) = &config.pbx {
        pbx_limits(file_pbx, &mut settings.pbx)?;
    }
    if let Some(file_audit) = &config.audit {
        audit_schedule(file_audit, &mut settings.evidence)?;
    }
    if let Some(file_recheck) = &config.recheck {
        recheck_window(file_recheck, &mut settings.recheck_window)?;
    }
    if let Some(file_retention) = &config.retention {
        retention_policy(file_retention, &mut settings.retention_policy)?;
    }
    let region = s3_region.unwrap_or_else(|| "us-east-1".to_owned());
    let backends = Backends {
        data_dir: config.data_dir,
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

/// The KMS key that signs the history's checkpoints and restore certificates, if one is
/// configured (`--signing-key-id`): at the KMS endpoint, in the S3 region (default `us-east-1`).
///
/// # Errors
/// An unreadable or invalid configuration file.
pub fn signing_kms(flags: &Config) -> Result<Option<KmsConfig>> {
    let config = match &flags.config {
        Some(path) => flags.over(read_file(path)?),
        None => flags.clone(),
    };
    Ok(config.signing_key_id.map(|key_id| KmsConfig {
        endpoint: config.kms_endpoint,
        key_id,
        region: config.s3_region.unwrap_or_else(|| "us-east-1".to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        data: Config,
    }

    fn resolve_args(args: &[&str]) -> Result<(Backends, Settings)> {
        let probe = Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))?;
        resolve(&probe.data, Settings::default())
    }

    #[test]
    fn every_flag_is_a_file_key_of_the_same_name() {
        use clap::CommandFactory;
        let mut checked = 0;
        for arg in Probe::command().get_arguments() {
            let key = arg.get_id().as_str();
            if matches!(key, "data_dir" | "config" | "help") {
                continue;
            }
            let value = if key == "retention_days" {
                "7"
            } else {
                "\"x\""
            };
            let file: Config = toml::from_str(&format!("{key} = {value}\n"))
                .unwrap_or_else(|e| panic!("{key} is a flag but not a file key: {e}"));
            let merged = Config::default().over(file);
            assert_ne!(
                format!("{merged:?}"),
                format!("{:?}", Config::default()),
                "{key} in the file is lost in the merge"
            );
            checked += 1;
        }
        assert_eq!(checked, 9, "the flags shared with the file");
        for key in ["data_dir", "config"] {
            let refused = toml::from_str::<Config>(&format!("{key} = \"x\"\n"));
            assert!(refused.is_err(), "{key} is a flag only");
        }
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
    fn the_recheck_section_sets_the_window_within_its_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("restorable.toml");
        let config = file.to_string_lossy().into_owned();
        let (_, defaults) = resolve_args(&[]).expect("resolve");
        assert_eq!(defaults.recheck_window, chrono::Duration::days(7));
        std::fs::write(&file, "[recheck]\nwindow_days = 3\n").expect("write");
        let (_, settings) = resolve_args(&["--config", &config]).expect("resolve");
        assert_eq!(settings.recheck_window, chrono::Duration::days(3));
        for wrong in ["0", "366"] {
            std::fs::write(&file, format!("[recheck]\nwindow_days = {wrong}\n")).expect("write");
            let error = resolve_args(&["--config", &config]).expect_err("out of range");
            assert!(
                format!("{error:#}").contains("recheck.window_days"),
                "{error:#}"
            );
        }
    }

    #[test]
    fn the_retention_section_sets_gfs_rules_and_the_offboarding_grace() {
        use restorable_pipeline::retention::Gfs;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("restorable.toml");
        let config = file.to_string_lossy().into_owned();
        let (_, defaults) = resolve_args(&[]).expect("resolve");
        assert_eq!(defaults.retention_policy.gfs, None);
        assert_eq!(
            defaults.retention_policy.remove_after,
            chrono::Duration::days(30)
        );
        std::fs::write(
            &file,
            "[retention]\nremove_after_days = 45\n[retention.gfs]\ndaily = 7\nmonthly = 12\n\
             [retention.tenant_gfs.acme]\nweekly = 8\n",
        )
        .expect("write");
        let (_, settings) = resolve_args(&["--config", &config]).expect("resolve");
        let policy = &settings.retention_policy;
        assert_eq!(policy.remove_after, chrono::Duration::days(45));
        let every = Gfs {
            daily: 7,
            weekly: 0,
            monthly: 12,
        };
        let acme = Gfs {
            daily: 0,
            weekly: 8,
            monthly: 0,
        };
        assert_eq!(
            policy.gfs_for(&TenantId::new("other").expect("id")),
            Some(every)
        );
        assert_eq!(
            policy.gfs_for(&TenantId::new("acme").expect("id")),
            Some(acme)
        );
        for (wrong, key) in [
            (
                "[retention]\nremove_after_days = 0\n",
                "retention.remove_after_days",
            ),
            ("[retention.gfs]\ndaily = 99999\n", "retention.gfs.daily"),
            ("[retention.gfs]\n", "retention.gfs keeps nothing"),
            (
                "[retention.tenant_gfs.\"Not A Tenant\"]\ndaily = 1\n",
                "not a tenant id",
            ),
            ("[retention.gfs]\nyearly = 1\n", "yearly"),
        ] {
            std::fs::write(&file, wrong).expect("write");
            let error = resolve_args(&["--config", &config]).expect_err(wrong);
            assert!(format!("{error:#}").contains(key), "{wrong}: {error:#}");
        }
    }

    #[test]
    fn the_audit_section_sets_the_evidence_schedule_within_its_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("restorable.toml");
        let config = file.to_string_lossy().into_owned();
        let (_, defaults) = resolve_args(&[]).expect("resolve");
        assert_eq!(
            defaults.evidence.checkpoint_every,
            chrono::Duration::hours(1)
        );
        assert_eq!(defaults.evidence.check_every, chrono::Duration::hours(24));

        std::fs::write(
            &file,
            "[audit]
checkpoint_minutes = 15
check_hours = 6
",
        )
        .expect("write");
        let (_, settings) = resolve_args(&["--config", &config]).expect("resolve");
        assert_eq!(
            settings.evidence.checkpoint_every,
            chrono::Duration::minutes(15)
        );
        assert_eq!(settings.evidence.check_every, chrono::Duration::hours(6));

        for (text, key) in [
            (
                "[audit]
checkpoint_minutes = 0
",
                "audit.checkpoint_minutes",
            ),
            (
                "[audit]
check_hours = 100000
",
                "audit.check_hours",
            ),
            (
                "[audit]
checkpoint_every = 5
",
                "checkpoint_every",
            ),
        ] {
            std::fs::write(&file, text).expect("write");
            let error = resolve_args(&["--config", &config]).expect_err(text);
            assert!(format!("{error:#}").contains(key), "{text}: {error:#}");
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
