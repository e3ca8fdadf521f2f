//! Why a PBX call failed, and whether trying again later may help. Never carries a secret.

use std::time::Duration;

use super::EndpointError;

/// Why a PBX call failed.
#[derive(Debug, thiserror::Error)]
pub enum PbxError {
    /// The PBX refused the API credentials (HTTP 401/403 on the token or a call).
    #[error("the PBX refused the API credentials ({call}: HTTP {status})")]
    Unauthorized {
        /// The call.
        call: &'static str,
        /// The status.
        status: u16,
    },
    /// The PBX could not be reached.
    #[error("the PBX could not be reached ({call}): {detail}")]
    Unreachable {
        /// The call.
        call: &'static str,
        /// What the connection said.
        detail: String,
    },
    /// The PBX answered with an error status.
    #[error("the PBX answered HTTP {status} to {call}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The call.
        call: &'static str,
        /// The status.
        status: u16,
        /// The XAPI error code, if the body had one.
        code: Option<String>,
    },
    /// The connection broke after the request was sent (the answer never completed).
    #[error("the PBX's answer to {call} broke off: {detail}")]
    BrokenOff {
        /// The call.
        call: &'static str,
        /// What the connection said.
        detail: String,
    },
    /// The PBX answered something that does not follow the API.
    #[error("the PBX's answer to {call} does not follow the API: {detail}")]
    Protocol {
        /// The call.
        call: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The PBX's URL is refused (plain http to a host that is not loopback, ...).
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// A `DownloadLink` or a redirect pointed away from the enrolled origin; not followed.
    #[error("the PBX pointed {call} at {target}, off its enrolled origin {enrolled}; refused")]
    OffOrigin {
        /// The call.
        call: &'static str,
        /// The origin it pointed at.
        target: String,
        /// The enrolled origin.
        enrolled: String,
    },
    /// A JSON answer larger than the cap.
    #[error("the PBX's answer to {call} is larger than the cap of {limit} bytes")]
    AnswerTooLarge {
        /// The call.
        call: &'static str,
        /// The cap.
        limit: u64,
    },
    /// A backup larger than the tenant's maximum.
    #[error("the backup is {size} bytes, more than the tenant's maximum of {limit}")]
    BackupTooLarge {
        /// Its announced size.
        size: u64,
        /// The maximum.
        limit: u64,
    },
    /// The call did not complete within its overall deadline.
    #[error("the PBX did not complete {call} within {after:?}")]
    Deadline {
        /// The call.
        call: &'static str,
        /// The deadline.
        after: Duration,
    },
}

impl PbxError {
    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            PbxError::Unauthorized { .. }
            | PbxError::Protocol { .. }
            | PbxError::Endpoint(_)
            | PbxError::OffOrigin { .. }
            | PbxError::AnswerTooLarge { .. }
            | PbxError::BackupTooLarge { .. } => false,
            PbxError::Unreachable { .. }
            | PbxError::BrokenOff { .. }
            | PbxError::Deadline { .. } => true,
            PbxError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}
