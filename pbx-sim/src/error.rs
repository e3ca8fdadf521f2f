//! Error types: [`SimError`] is what the crate's public API returns; [`ArchiveError`] is what
//! writing one backup file can fail with (logged by the server, never shown to HTTP clients).
//! Neither ever carries a backup password or a client secret.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a simulated PBX could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The PBX name cannot be used as a directory name and FQDN label.
    #[error("invalid PBX name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The PBX's directory under the work directory could not be created or read.
    #[error("cannot prepare the PBX directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why writing a backup file failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// Reading or writing the file failed.
    #[error("backup file I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The ZIP library refused or failed.
    #[error("ZIP writing failed: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// The PBX is shutting down.
    #[error("backup cancelled: the PBX is shutting down")]
    Cancelled,
}
