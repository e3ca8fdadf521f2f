//! A simulated 3CX v20 phone system (PBX) that speaks the real XAPI backup calls over HTTP,
//! so a backup pipeline can be tested end to end without a real PBX.
//!
//! A [`RunningPbx`] serves OAuth client-credentials tokens, starts backups in the background,
//! lists, describes, deletes and streams them, and reports the OData counts a manifest records.
//! Each backup is a real AES-256 encrypted ZIP archive written straight to disk, holding a seeded,
//! consistent copy of the PBX database as CSV files (`DbTables/<table>.csv`), prompts, and
//! optionally gigabytes of incompressible "recordings". A [`Fault`] can be injected to make the
//! PBX misbehave in one specific, realistic way.
//!
//! ```no_run
//! # async fn demo() -> Result<(), restorable_pbx_sim::SimError> {
//! use restorable_pbx_sim::{Fault, RunningPbx, SimPbxConfig};
//! let mut config = SimPbxConfig::new("acme-hq", 7);
//! config.fault = Some(Fault::FlippedByte);
//! let pbx = RunningPbx::start(config, std::path::Path::new("/tmp/pbx-work")).await?;
//! println!("PBX at {}", pbx.base_url());
//! pbx.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`SimPbxConfig`], what defines one PBX;
//! - [`fault`]: [`Fault`], the injectable faults and where each takes effect;
//! - [`database`]: the seeded tables, their schema and foreign keys, and the CSV format;
//! - [`native`]: the PBX's own backup schedule (`BackupSettings`) and its newest native backup;
//! - `archive`: writes one backup ZIP (encryption, entries, archive-level faults);
//! - `state`: tokens and the backup list shared by the handlers;
//! - `server`: the axum routes of the XAPI calls and the server-side faults;
//! - `running`: [`RunningPbx`], start and graceful shutdown;
//! - `error`: [`SimError`].

mod archive;
pub mod config;
pub mod database;
mod error;
pub mod fault;
pub mod native;
mod running;
mod server;
mod state;

pub use config::SimPbxConfig;
pub use database::{required_parameters, ManifestCounts, PBX_VERSION};
pub use error::SimError;
pub use fault::{Fault, ParseFaultError};
pub use running::RunningPbx;

/// Tables every backup must hold for a restore to be meaningful.
pub const CORE_TABLES: &[&str] = &[
    "parameter",
    "tenant",
    "dn",
    "extension",
    "users",
    "queue",
    "ringgroup",
    "ivr",
    "gateway",
    "externalline",
];
