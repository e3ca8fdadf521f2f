//! The command line: every subcommand and flag, with environment-variable fallbacks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Managed, encrypted, immutable and restore-tested backups for fleets of 3CX phone systems.
#[derive(Parser)]
#[command(name = "restorable", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the embedded default keeps its state.
#[derive(Args, Clone)]
pub struct DataDir {
    /// Directory of the event store (`events.db`), the vault (`vault/`) and the master key.
    #[arg(long, env = "RESTORABLE_DATA_DIR", default_value = "./restorable-data")]
    pub data_dir: PathBuf,
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
    Fleet(DataDir),
    /// Rotate a tenant's backup key (older backups keep their version).
    RotateKey(RotateKeyArgs),
    /// Restore-test a Verified cycle now, whatever the cadence.
    RestoreTest(RestoreTestArgs),
}

/// `restorable restore-test`.
#[derive(Args)]
pub struct RestoreTestArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
    /// The cycle.
    #[arg(long)]
    pub cycle: String,
    /// Hard time limit of the restore test, in seconds.
    #[arg(long, default_value_t = 600)]
    pub time_limit_secs: u64,
}

/// `restorable demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
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
    pub data: DataDir,
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
}

/// `restorable backup-now`.
#[derive(Args)]
pub struct BackupNowArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
    /// The instance: its id, or `TENANT/NAME`.
    #[arg(long)]
    pub instance: String,
    /// Seconds the capture stage waits for the PBX to finish its backup.
    #[arg(long, default_value_t = 1800)]
    pub capture_deadline_secs: u64,
}

/// `restorable serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
    /// Seconds between scheduler ticks.
    #[arg(long, default_value_t = 60)]
    pub tick_secs: u64,
}

/// `restorable verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The backup file (a 3CX backup ZIP, AES-256 encrypted).
    pub file: PathBuf,
    /// File holding the backup password (a trailing newline is ignored).
    #[arg(long)]
    pub password_file: PathBuf,
}

/// `restorable events`.
#[derive(Args)]
pub struct EventsArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
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
}

/// `restorable rotate-key`.
#[derive(Args)]
pub struct RotateKeyArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDir,
    /// Tenant slug.
    #[arg(long)]
    pub tenant: String,
}
