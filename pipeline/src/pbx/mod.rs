//! The PBX client port's production adapter: the 3CX XAPI (v20) calls the capture stage needs
//! (`reference/3cx.md`): OAuth client-credentials token, `Pbx.Backup`, `GET Backups`,
//! `GetCanCreateBackup`, `GetBackupExtras`, the OData counts for the manifest, download and
//! delete.
//!
//! Secrets (client secret, backup password, access token) are held in `secrecy` types and never
//! appear in errors: errors carry the call, the HTTP status and the PBX's error code only.
//!
//! The PBX is the customer's machine and is not trusted (it may be compromised or hostile):
//! - its URL must be `https`, except to a loopback address or with an instance's explicit
//!   `allow_insecure_http` ([`check_endpoint`]);
//! - every request stays on the enrolled origin (scheme, host, port): a `DownloadLink` or a
//!   redirect elsewhere is refused before anything is fetched from there
//!   ([`PbxError::OffOrigin`]);
//! - every call has an overall deadline, headers and body together ([`PbxLimits::call_deadline`]),
//!   so a trickle cannot hold a capture; a download's deadline is enforced by the capture stage
//!   while it streams ([`Download::deadline`]);
//! - JSON answers are read up to a cap ([`PbxLimits::max_json_bytes`]), never whole into memory;
//! - a download announcing more than the tenant's maximum backup size is refused before a byte
//!   of its body is read ([`PbxError::BackupTooLarge`]).
//!
//! # Layout
//! - [`client`]: [`PbxClient`], the XAPI calls.
//! - [`limits`]: [`PbxLimits`], deadlines and size caps (`[pbx]`).
//! - [`endpoint`]: which PBX URLs are accepted, and the origin every request must stay on.
//! - [`error`]: [`PbxError`], transient or not.

mod client;
mod endpoint;
mod error;
mod limits;

pub use client::{BackupEntry, BackupExtras, BackupRequest, Download, PbxClient};
pub use endpoint::{check_endpoint, is_loopback, origin_of, EndpointError};
pub use error::PbxError;
pub use limits::PbxLimits;
