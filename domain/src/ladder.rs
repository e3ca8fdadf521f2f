//! The verification ladder's vocabulary: rungs a copy climbs, the stages that climb them, the
//! manifest counts taken from the live PBX, and the stable reason codes a failure carries.
//! Reason codes are part of the public contract (alerts, API, auditors): never rename one.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How far a copy climbed. Ordered: a later rung implies every earlier one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// The cycle began; nothing is stored yet.
    Started,
    /// The PBX made the backup and its bytes are in the vault.
    Captured,
    /// The stored copy read back intact and is under Object Lock.
    Secured,
    /// The archive opened with the tenant key and its 3CX structure is complete.
    Verified,
    /// The backup was restored into a sandbox and the data matched the manifest.
    RestoreTested,
}

impl Rung {
    /// The human label used in tables and pages.
    pub fn label(self) -> &'static str {
        match self {
            Rung::Started => "Started",
            Rung::Captured => "Captured",
            Rung::Secured => "Secured",
            Rung::Verified => "Verified",
            Rung::RestoreTested => "Restore-Tested",
        }
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A step of the pipeline; each one moves a cycle from one rung to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Started → Captured.
    Capture,
    /// Captured → Secured.
    Secure,
    /// Secured → Verified.
    Verify,
    /// Verified → RestoreTested.
    RestoreTest,
}

impl Stage {
    /// The rung a cycle must stand on for this stage to run.
    pub fn requires(self) -> Rung {
        match self {
            Stage::Capture => Rung::Started,
            Stage::Secure => Rung::Captured,
            Stage::Verify => Rung::Secured,
            Stage::RestoreTest => Rung::Verified,
        }
    }

    /// The rung this stage reaches when it succeeds.
    pub fn reaches(self) -> Rung {
        match self {
            Stage::Capture => Rung::Captured,
            Stage::Secure => Rung::Secured,
            Stage::Verify => Rung::Verified,
            Stage::RestoreTest => Rung::RestoreTested,
        }
    }

    /// The stable name (as in events and CLI flags).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Secure => "secure",
            Stage::Verify => "verify",
            Stage::RestoreTest => "restore_test",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable reason codes of a `Failed` event. Serialized in snake_case; never rename a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The PBX refused the API credentials.
    PbxAuth,
    /// The PBX could not be reached (DNS, connect, TLS).
    PbxUnreachable,
    /// The PBX answered with an error (5xx, or a response that does not follow the API).
    PbxError,
    /// The backup did not appear on the PBX before the deadline.
    CaptureTimeout,
    /// The download ended before its announced length, or broke mid-stream.
    DownloadTruncated,
    /// The vault refused or failed to store the copy.
    VaultWrite,
    /// The tenant key or PBX credentials could not be unsealed.
    KeyUnavailable,
    /// The stored copy is missing from the vault.
    ObjectMissing,
    /// The stored copy's SHA-256 differs from the one computed at capture.
    ChecksumMismatch,
    /// The stored copy is not under the required Object Lock.
    NotLocked,
    /// The archive's end (central directory) is missing: truncated or not a ZIP.
    ArchiveTruncated,
    /// The archive does not open with the tenant key of the recorded version.
    WrongKey,
    /// An entry fails to decrypt, authenticate or inflate to its end.
    EntryCorrupt,
    /// An entry is stored without encryption.
    NotEncrypted,
    /// An entry uses legacy ZipCrypto, or AES weaker than the tenant's policy allows
    /// (AES-256 by default).
    WeakEncryption,
    /// An entry uses a method the verifier cannot check.
    UnsupportedMethod,
    /// `DbTables/` or a core table is missing.
    StructureIncomplete,
    /// The archive's end records, central directory or a header do not parse.
    ArchiveMalformed,
    /// More than one end of central directory record, or end records that disagree.
    AmbiguousEnd,
    /// Two entries share a name (ASCII case folded, trailing `/` dropped).
    DuplicateEntry,
    /// An entry name is absolute, climbs out (`..`), or holds a backslash, drive letter or
    /// control character.
    UnsafeEntryName,
    /// Entries overlap each other or the central directory, or are stored out of order.
    EntryOverlap,
    /// Bytes that belong to no entry (before, between or after the entries).
    StrayData,
    /// A local header disagrees with the central directory (name, flags, method, CRC, sizes,
    /// AES field) or with its data descriptor.
    HeaderMismatch,
    /// The archive exceeds the verification budget (entries, declared inflated bytes, time).
    ArchiveBudget,
    /// No sandbox could be provisioned for the restore test.
    SandboxProvision,
    /// The restore was rejected (the schema or data did not load).
    RestoreRejected,
    /// A constraint of the PBX database does not hold after restore.
    IntegrityViolation,
    /// The restored counts differ from the manifest taken at capture.
    ManifestMismatch,
    /// The restore test ran past its time limit.
    RestoreTimeout,
    /// The instance's stage could not run at all (internal error); see the detail.
    Internal,
    /// The key service (KMS) stayed unavailable through the stage's retries; retryable.
    KeyServiceUnavailable,
    /// The vault (S3) stayed unavailable through the stage's retries; retryable.
    VaultUnavailable,
    /// The cycle did not move within its rung's deadline (a lost outcome, a stuck worker);
    /// failed by the watchdog so the instance is freed; retryable.
    StageTimeout,
    /// An operator aborted the cycle (`restorable cycle abort`, audited).
    Aborted,
    /// The PBX pointed the download (its `DownloadLink`, or a redirect) away from the enrolled
    /// origin (scheme, host and port): refused before anything was fetched from there.
    DownloadOffOrigin,
    /// The backup is larger than the tenant's maximum (by its `Content-Length`, its listed size,
    /// or while streaming): refused, nothing stored.
    BackupTooLarge,
    /// A JSON answer of the PBX ran past the size cap (`[pbx] max_json_mib`).
    PbxAnswerTooLarge,
    /// A PBX call or download ran past its overall deadline (a trickle, a stalled answer);
    /// nothing stored; retryable.
    PbxDeadline,
    /// The PBX reports the backup as not encrypted (`GetBackupExtras`): refused, not fetched.
    NotEncryptedByPbx,
    /// The PBX URL is plain `http` to a host that is not loopback, and the instance was not
    /// enrolled with `allow_insecure_http`: nothing was sent to it.
    InsecureTransport,
}

impl FailureReason {
    /// The stable code, e.g. `checksum_mismatch`.
    pub fn code(self) -> &'static str {
        match self {
            FailureReason::PbxAuth => "pbx_auth",
            FailureReason::PbxUnreachable => "pbx_unreachable",
            FailureReason::PbxError => "pbx_error",
            FailureReason::CaptureTimeout => "capture_timeout",
            FailureReason::DownloadTruncated => "download_truncated",
            FailureReason::VaultWrite => "vault_write",
            FailureReason::KeyUnavailable => "key_unavailable",
            FailureReason::ObjectMissing => "object_missing",
            FailureReason::ChecksumMismatch => "checksum_mismatch",
            FailureReason::NotLocked => "not_locked",
            FailureReason::ArchiveTruncated => "archive_truncated",
            FailureReason::WrongKey => "wrong_key",
            FailureReason::EntryCorrupt => "entry_corrupt",
            FailureReason::NotEncrypted => "not_encrypted",
            FailureReason::WeakEncryption => "weak_encryption",
            FailureReason::UnsupportedMethod => "unsupported_method",
            FailureReason::StructureIncomplete => "structure_incomplete",
            FailureReason::ArchiveMalformed => "archive_malformed",
            FailureReason::AmbiguousEnd => "ambiguous_end",
            FailureReason::DuplicateEntry => "duplicate_entry",
            FailureReason::UnsafeEntryName => "unsafe_entry_name",
            FailureReason::EntryOverlap => "entry_overlap",
            FailureReason::StrayData => "stray_data",
            FailureReason::HeaderMismatch => "header_mismatch",
            FailureReason::ArchiveBudget => "archive_budget",
            FailureReason::SandboxProvision => "sandbox_provision",
            FailureReason::RestoreRejected => "restore_rejected",
            FailureReason::IntegrityViolation => "integrity_violation",
            FailureReason::ManifestMismatch => "manifest_mismatch",
            FailureReason::RestoreTimeout => "restore_timeout",
            FailureReason::Internal => "internal",
            FailureReason::KeyServiceUnavailable => "key_service_unavailable",
            FailureReason::VaultUnavailable => "vault_unavailable",
            FailureReason::StageTimeout => "stage_timeout",
            FailureReason::Aborted => "aborted",
            FailureReason::DownloadOffOrigin => "download_off_origin",
            FailureReason::BackupTooLarge => "backup_too_large",
            FailureReason::PbxAnswerTooLarge => "pbx_answer_too_large",
            FailureReason::PbxDeadline => "pbx_deadline",
            FailureReason::NotEncryptedByPbx => "not_encrypted_by_pbx",
            FailureReason::InsecureTransport => "insecure_transport",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the live PBX reported at capture time; the restore test compares the restored data to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ManifestCounts {
    /// Extensions (`Users`).
    pub extensions: u64,
    /// Call queues (`Queues`).
    pub queues: u64,
    /// Ring groups (`RingGroups`).
    pub ring_groups: u64,
    /// Digital receptionists (`Receptionists`).
    pub ivrs: u64,
    /// Trunks (`Trunks`).
    pub trunks: u64,
    /// System settings (`Parameters`).
    pub settings: u64,
}

/// Object Lock mode of a stored copy (S3 semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Nobody, not even the account root, can delete or shorten before retain-until.
    Compliance,
    /// Privileged users can bypass; not enough for Secured.
    Governance,
}

/// Why a cycle was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The scheduler found the instance due.
    Scheduled,
    /// An operator asked for a backup now.
    Manual,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_are_ordered_and_stages_chain() {
        assert!(Rung::Started < Rung::Captured && Rung::Verified < Rung::RestoreTested);
        for stage in [
            Stage::Capture,
            Stage::Secure,
            Stage::Verify,
            Stage::RestoreTest,
        ] {
            assert!(stage.requires() < stage.reaches());
        }
        assert_eq!(Stage::Secure.requires(), Stage::Capture.reaches());
    }

    #[test]
    fn reason_codes_serialize_as_their_stable_code() {
        for reason in [
            FailureReason::PbxAuth,
            FailureReason::ChecksumMismatch,
            FailureReason::StructureIncomplete,
            FailureReason::IntegrityViolation,
        ] {
            let json = serde_json::to_string(&reason).expect("serializes");
            assert_eq!(json, format!("\"{}\"", reason.code()));
        }
    }
}
