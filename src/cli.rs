//! The command line: every subcommand and flag, with environment-variable fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::Config;

/// Managed, encrypted, immutable and restore-tested backups for fleets of 3CX phone systems.
#[derive(Parser)]
#[command(name = "restorable", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Enrol a simulated fleet, run a backup cycle of each up the ladder, print the fleet table.
    Demo(DemoArgs),
    /// Run simulated 3CX PBXes until Ctrl-C (prints their URLs and API credentials).
    PbxSim(PbxSimArgs),
    /// Enrol a PBX for managed backups (or update its URL and credentials).
    Enrol(EnrolArgs),
    /// Run one backup cycle of an instance now, in this process, and print its ladder.
    BackupNow(BackupNowArgs),
    /// Run the scheduler and every stage until Ctrl-C.
    Serve(ServeArgs),
    /// Check a downloaded backup file: opens, decrypts and authenticates every entry.
    Verify(VerifyArgs),
    /// Print the event history of a cycle or an instance.
    Events(EventsArgs),
    /// Print the fleet table.
    Fleet(FleetArgs),
    /// Rotate a tenant's backup key (older backups keep their version).
    RotateKey(RotateKeyArgs),
    /// Restore-test a Verified cycle now, whatever the cadence.
    RestoreTest(RestoreTestArgs),
    /// Runs stage processors: over NATS JetStream when configured (a durable consumer per stage,
    /// shared by every copy), else in-process. Stops gracefully on SIGTERM or Ctrl-C.
    Worker(WorkerArgs),
    /// Checks every configured backend and prints whether it is usable.
    Doctor(DoctorArgs),
    /// Streams a cycle's stored copy out of the vault (S3 or local) into a file, checking its
    /// SHA-256 against the one recorded at capture.
    Download(DownloadArgs),
    /// Accounts of the web UI and API.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens for machines.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The read side's stored views.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// An operator's commands on one instance (remove: offboard it).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// An operator's commands on one cycle (abort).
    #[command(subcommand)]
    Cycle(CycleCommand),
    /// An open alert's lifecycle: acknowledge it, snooze it (audited).
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Events a consumer gave up on: list them, replay them.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// The tamper-evident history: checkpoints, exports for auditors, their verification.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Restore certificates: get a cycle's, verify one offline.
    #[command(subcommand)]
    Certificate(CertificateCommand),
    /// Prints a shell's completion script (e.g. `restorable completions bash >
    /// /etc/bash_completion.d/restorable`).
    Completions(CompletionsArgs),
    /// Prints the manual page (roff), or writes one page per command into a directory.
    Manual(ManualArgs),
}

/// `restorable fleet`.
#[derive(Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub data: Config,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub data: Config,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `restorable manual`.
#[derive(Args)]
pub struct ManualArgs {
    /// Write `restorable.1` and a `restorable-<command>.1` per subcommand here instead of
    /// printing `restorable.1`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `restorable user ...`.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Adds a user, or resets an existing one's password, role and tenant (which ends their
    /// sessions and revokes their API tokens; audited as `password_reset`).
    Add(UserAddArgs),
    /// Removes a user with their sessions and API tokens (audited as `user_remove`).
    Remove(UserRemoveArgs),
    /// Resets a user's password, keeping their role and tenant: ends their sessions and revokes
    /// their API tokens (audited as `password_reset`).
    ResetPassword(UserResetArgs),
}

/// `restorable user reset-password`.
#[derive(Args)]
pub struct UserResetArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The user's e-mail address.
    #[arg(long)]
    pub email: String,
    /// A file holding the new password (default: one is generated and printed once).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the new password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `restorable user remove`.
#[derive(Args)]
pub struct UserRemoveArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The user's e-mail address.
    #[arg(long)]
    pub email: String,
}

/// `restorable user add`.
#[derive(Args)]
pub struct UserAddArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The user's e-mail address (the login name).
    #[arg(long)]
    pub email: String,
    /// administrator, owner or viewer.
    #[arg(long)]
    pub role: String,
    /// The tenant whose instances the user sees, or '*' for every tenant.
    #[arg(long)]
    pub tenant: String,
    /// A file holding the password (default: one is generated and printed once).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `restorable token ...`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issues an API token for a user (printed once; only its hash is kept).
    Add(TokenAddArgs),
    /// Lists API tokens: id, user, name, issue and expiry times (never the secrets).
    List(TokenListArgs),
    /// Revokes an API token by its id (as `token list` shows it; audited as `token_revoke`).
    Revoke(TokenRevokeArgs),
}

/// `restorable token list`.
#[derive(Args)]
pub struct TokenListArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// Only this user's tokens.
    #[arg(long)]
    pub email: Option<String>,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable token revoke`.
#[derive(Args)]
pub struct TokenRevokeArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The token's id (its first 8 to 12 characters are enough).
    #[arg(long)]
    pub id: String,
}

/// `restorable token add`.
#[derive(Args)]
pub struct TokenAddArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The user the token acts as.
    #[arg(long)]
    pub email: String,
    /// A name for the token (shown in the audit log).
    #[arg(long)]
    pub name: String,
    /// How long the token works: `90d`, `12h`, `30m` (at most 3650d).
    #[arg(long, default_value = "90d")]
    pub expires_in: String,
}

/// `restorable projections ...`.
#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Empties the stored views and rebuilds them from the whole event history.
    Rebuild(Config),
}

/// `restorable audit ...`.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write a signed checkpoint of every tenant's chain to the vault now.
    Checkpoint(Config),
    /// Export a tenant's history, its checkpoints and proofs into a new directory.
    Export(AuditExportArgs),
    /// Verify an export offline (no network, no database): exit 0 intact, 1 broken.
    Verify(AuditVerifyArgs),
    /// Check the live store and the vault: every chain, link and checkpoint; exit 1 if broken.
    Check(Config),
    /// Print the signing key's id and public key (give them to auditors).
    Key(Config),
    /// Retire the signing key and make a new one (old checkpoints stay verifiable).
    RotateKey(Config),
}

/// `restorable certificate ...`.
#[derive(Subcommand)]
pub enum CertificateCommand {
    /// Write the signed restore certificate of a Restore-Tested cycle into a new file.
    Get(Box<CertificateGetArgs>),
    /// Check a certificate file offline: exit 0 genuine, 1 not.
    Verify(CertificateVerifyArgs),
}

/// `restorable certificate get`.
#[derive(Args)]
pub struct CertificateGetArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The Restore-Tested cycle.
    #[arg(long)]
    pub cycle: String,
    /// The file to write (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// `restorable certificate verify`.
#[derive(Args)]
pub struct CertificateVerifyArgs {
    /// The certificate file.
    pub file: PathBuf,
}

/// `restorable audit export`.
#[derive(Args)]
pub struct AuditExportArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The tenant whose history is exported.
    #[arg(long)]
    pub tenant: String,
    /// A new (or empty) directory to write into.
    #[arg(long)]
    pub out: PathBuf,
    /// Start after the last checkpoint at or before this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// End at the first checkpoint at or after this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
}

/// `restorable audit verify`.
#[derive(Args)]
pub struct AuditVerifyArgs {
    /// The export's directory.
    pub dir: PathBuf,
}

/// `restorable cycle ...`.
#[derive(Subcommand)]
pub enum CycleCommand {
    /// Abort a cycle in flight (audited): it fails `aborted` and its instance is freed.
    Abort(CycleAbortArgs),
}

/// `restorable instance ...`.
#[derive(Subcommand)]
pub enum InstanceCommand {
    /// Offboard an instance (audited): managed backups stop for good, and once the grace has
    /// passed (`[retention] remove_after_days`, default 30) its copies are removed (each once
    /// its Object Lock has run out) and its credentials forgotten.
    Remove(InstanceRemoveArgs),
}

/// `restorable instance remove`.
#[derive(Args)]
pub struct InstanceRemoveArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The instance: its id, or `TENANT/NAME`.
    #[arg(long)]
    pub instance: String,
}

/// `restorable cycle abort`.
#[derive(Args)]
pub struct CycleAbortArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The cycle to abort.
    #[arg(long)]
    pub cycle: String,
    /// Why (kept in the cycle's `Failed` detail).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `restorable alert ...`.
#[derive(Subcommand)]
pub enum AlertCommand {
    /// Acknowledge an open alert: it stays open, and no reminders are sent for it any more.
    Ack(AlertAckArgs),
    /// Snooze an open alert: no reminders for it until a time (at most 30 days ahead).
    Snooze(AlertSnoozeArgs),
}

/// `restorable alert ack`.
#[derive(Args)]
pub struct AlertAckArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The alert (`<instance id>-<number>`, as `/api/v1/alerts` and the Alerts page show it).
    #[arg(long)]
    pub alert: String,
    /// A note (at most 500 characters).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// `restorable alert snooze`.
#[derive(Args)]
pub struct AlertSnoozeArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The alert.
    #[arg(long)]
    pub alert: String,
    /// For this many hours (1 to 720).
    #[arg(long, conflicts_with = "until", required_unless_present = "until", value_parser = clap::value_parser!(u32).range(1..=720))]
    pub hours: Option<u32>,
    /// Until this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Why (at most 500 characters).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// `restorable dead-letters ...`.
#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters waiting for a replay (with --all, the replayed ones too).
    List(DeadLettersListArgs),
    /// Replay a dead letter: run its consumer's reaction again, in this process.
    Replay(DeadLettersReplayArgs),
}

/// `restorable dead-letters list`.
#[derive(Args)]
pub struct DeadLettersListArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// Also the dead letters already replayed.
    #[arg(long)]
    pub all: bool,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `restorable dead-letters replay`.
#[derive(Args)]
pub struct DeadLettersReplayArgs {
    /// State directory and backends.
    #[command(flatten)]
    pub data: Config,
    /// The consumer that gave up (`start`, `capture`, ..., `alert_delivery`, or `relay`).
    #[arg(long, requires = "position", required_unless_present = "all")]
    pub consumer: Option<String>,
    /// The event's position in the log.
    #[arg(long, requires = "consumer")]
    pub position: Option<i64>,
    /// Replay every pending dead letter, oldest first.
    #[arg(long, conflicts_with_all = ["consumer", "position"])]
    pub all: bool,
}

#[derive(Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub data: Config,
    /// The cycle whose copy to fetch.
    #[arg(long)]
    pub cycle: String,
    /// Where to write it (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A `worker --stage` value: one consumer, or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// Opens a started cycle.
    Start,
    /// Downloads the PBX's backup into the vault.
    Capture,
    /// Checks the stored copy: read back, hashed, locked.
    Secure,
    /// Opens, decrypts and authenticates every entry.
    Verify,
    /// Restores into a sandbox.
    #[value(alias = "restore_test")]
    RestoreTest,
    /// Closes ended cycles on their instance.
    Close,
    /// Raises and resolves alerts.
    Alerts,
    /// Delivers alerts to their routes.
    #[value(alias = "alert_delivery")]
    AlertDelivery,
    /// Re-reads every stored copy within the re-check window (`[recheck] window_days`).
    Recheck,
    /// Removes copies past their lock, keeps what the rules keep, finishes offboarding
    /// (`retention_days`, `[retention]`).
    Retention,
    /// Reads each PBX's own backup schedule between captures (`[pbx] native_watch_hours`).
    #[value(alias = "native_watch")]
    NativeWatch,
    /// Every stage above.
    All,
}

impl StageArg {
    /// The consumers' names this value stands for.
    pub fn consumers(self) -> &'static [&'static str] {
        match self {
            StageArg::Start => &["start"],
            StageArg::Capture => &["capture"],
            StageArg::Secure => &["secure"],
            StageArg::Verify => &["verify"],
            StageArg::RestoreTest => &["restore_test"],
            StageArg::Close => &["close"],
            StageArg::Alerts => &["alerts"],
            StageArg::AlertDelivery => &["alert_delivery"],
            StageArg::Recheck => &["recheck"],
            StageArg::Retention => &["retention"],
            StageArg::NativeWatch => &["native_watch"],
            StageArg::All => restorable_pipeline::runtime::STAGE_NAMES,
        }
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub data: Config,
    /// Stages to run (repeatable).
    #[arg(long = "stage", required = true, value_enum)]
    pub stages: Vec<StageArg>,
    /// Messages one copy handles at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Failed attempts of one message while the event store answers (or panics of its
    /// reaction) before it goes to the dead letters and its cycle fails. Failures during an
    /// outage are never counted: a message is redelivered for as long as the outage lasts.
    #[arg(long, alias = "max-deliver", default_value_t = 5)]
    pub poison_after: u32,
    /// Seconds JetStream waits for an ack before redelivering (kept alive by progress acks).
    #[arg(long, default_value_t = 30)]
    pub ack_wait_secs: u64,
    /// Seconds a stopping worker lets messages in hand finish before handing them back.
    #[arg(long, default_value_t = 20)]
    pub grace_secs: u64,
    /// Also open cycles for due instances every this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub schedule_every_secs: u64,
}

/// `restorable restore-test`.
#[derive(Args)]
pub struct RestoreTestArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The cycle.
    #[arg(long)]
    pub cycle: String,
    /// Hard time limit of the restore test, in seconds.
    #[arg(long, default_value_t = 600)]
    pub time_limit_secs: u64,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// How many simulated PBXes (some are given faults).
    #[arg(long, default_value_t = 12)]
    pub fleet: usize,
    /// Extra bytes of recordings in each backup (e.g. 2147483648 for 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub padding_bytes: u64,
    /// Extensions per simulated PBX.
    #[arg(long, default_value_t = 24)]
    pub extensions: u32,
    /// Seconds the capture stage waits for a PBX to finish its backup.
    #[arg(long, default_value_t = 5)]
    pub capture_deadline_secs: u64,
    /// Make every simulated PBX healthy (no faults).
    #[arg(long)]
    pub no_faults: bool,
    /// After the demo, keep serving the web UI and API (until Ctrl-C).
    #[arg(long)]
    pub serve: bool,
    /// Address of the web UI and API with --serve (port 0: any free port).
    #[arg(long, env = "RESTORABLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// `restorable pbx-sim`.
#[derive(Args)]
pub struct PbxSimArgs {
    /// How many PBXes.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Seed of the first PBX's database (the next ones add 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Extensions per PBX.
    #[arg(long, default_value_t = 24)]
    pub extensions: u32,
    /// Extra bytes of recordings in each backup.
    #[arg(long, default_value_t = 0)]
    pub padding_bytes: u64,
    /// A fault for one PBX: `INDEX=FAULT` (1-based), e.g. `2=flipped-byte`. Repeatable.
    #[arg(long = "fault", value_name = "INDEX=FAULT")]
    pub faults: Vec<String>,
    /// First port (the next PBXes take the following ports); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Directory for the backups the PBXes write (default: a temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// `restorable enrol`.
#[derive(Args)]
pub struct EnrolArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// Tenant slug (a-z, 0-9, -).
    #[arg(long)]
    pub tenant: String,
    /// Instance name, unique within the tenant.
    #[arg(long)]
    pub name: String,
    /// Base URL of the PBX API, e.g. https://pbx.example.com.
    #[arg(long)]
    pub url: String,
    /// The PBX FQDN (default: the URL's host).
    #[arg(long)]
    pub fqdn: Option<String>,
    /// API client id (Admin > Integrations > API on the PBX).
    #[arg(long, env = "RESTORABLE_PBX_CLIENT_ID")]
    pub client_id: String,
    /// File holding the API client secret (never pass secrets as arguments).
    #[arg(long)]
    pub client_secret_file: PathBuf,
    /// Minutes between scheduled backups.
    #[arg(long, default_value_t = 24 * 60)]
    pub interval_minutes: u32,
    /// Restore-test every Nth verified cycle.
    #[arg(long, default_value_t = 7)]
    pub restore_every: u32,
    /// Restore-test when the last Restore-Tested copy is at least this many hours old.
    #[arg(long, default_value_t = 7 * 24)]
    pub restore_max_age_hours: u32,
    /// The restore-time target in minutes (1 to 1440): a restore test that takes longer raises
    /// a "Restore Slow" alert, resolved by a later one within it.
    #[arg(long, default_value_t = 15)]
    pub restore_target_minutes: u32,
    /// Restore-test a copy drawn at random among the Verified copies of the last N days (1 to
    /// 366), the new one included, instead of always the newest.
    #[arg(long, value_name = "N")]
    pub restore_random_within_days: Option<u32>,
    /// Allow plain http to a PBX that is not on a loopback address (the tenant's backup
    /// password then crosses the network in clear; the instance page warns). Without it, a
    /// PBX URL must be https, or http to localhost / 127.0.0.0/8 / ::1.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// `restorable backup-now`.
#[derive(Args)]
pub struct BackupNowArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// The instance: its id, or `TENANT/NAME`.
    #[arg(long)]
    pub instance: String,
    /// Seconds the capture stage waits for the PBX to finish its backup.
    #[arg(long, default_value_t = 1800)]
    pub capture_deadline_secs: u64,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// Seconds between scheduler ticks.
    #[arg(long, default_value_t = 60)]
    pub tick_secs: u64,
    /// Address of the web UI and API.
    #[arg(long, env = "RESTORABLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// `restorable verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The backup file (a 3CX backup ZIP, AES-256 encrypted).
    pub file: PathBuf,
    /// File holding the backup password (a trailing newline is ignored).
    #[arg(long)]
    pub password_file: PathBuf,
    /// The weakest AES accepted: aes256 (the default), aes192 or aes128.
    #[arg(long, default_value = "aes256", value_parser = parse_aes_strength)]
    pub minimum_encryption: restorable_pipeline::archive::AesStrength,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `aes256`, `aes192` or `aes128`.
fn parse_aes_strength(text: &str) -> Result<restorable_pipeline::archive::AesStrength, String> {
    restorable_pipeline::archive::AesStrength::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of aes256, aes192, aes128"))
}

/// `restorable events`.
#[derive(Args)]
pub struct EventsArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// A cycle id.
    #[arg(
        long,
        conflicts_with = "instance",
        required_unless_present = "instance"
    )]
    pub cycle: Option<String>,
    /// An instance id or `TENANT/NAME`.
    #[arg(long)]
    pub instance: Option<String>,
    /// Print one JSON document (schema: `schemas/cli/`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `restorable rotate-key`.
#[derive(Args)]
pub struct RotateKeyArgs {
    /// State directory.
    #[command(flatten)]
    pub data: Config,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
}
