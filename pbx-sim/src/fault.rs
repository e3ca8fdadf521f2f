//! Faults a simulated PBX can be told to commit, so that every failure path of a backup
//! pipeline can be exercised against a real HTTP server.
//!
//! Each [`Fault`] has a stable kebab-case name (`"bad-credentials"`, `"flipped-byte"`, ...) used
//! by [`std::fmt::Display`], [`std::str::FromStr`] and serde, so faults can be picked from a
//! command line or a config file. Where each fault takes effect:
//!
//! | fault | where | effect |
//! |---|---|---|
//! | `bad-credentials` | `server` | every `POST /connect/token` answers 401 |
//! | `never-finishes` | `server` | `Pbx.Backup` answers 204, the backup never appears, `GetCanCreateBackup` stays false |
//! | `server-error` | `server` | `Pbx.Backup` answers 500 |
//! | `truncated-download` | `server` | the download declares the full `Content-Length`, sends about half, then breaks |
//! | `flipped-byte` | `archive` | one byte in the middle of the largest entry's data is flipped (AES authentication fails) |
//! | `wrong-password` | `archive` | entries are encrypted with a password other than the client's |
//! | `missing-table` | `archive` | `DbTables/extension.csv` is left out |
//! | `dangling-foreign-key` | `database` | one `queue2dn` row points at a `dn` that does not exist |
//! | `manifest-mismatch` | `server` | the API reports one queue more than the backup holds |
//! | `slow-download` | `server` | the download is sent in small chunks with small pauses (~1.5 s in all) |
//!
//! Hostile faults: a PBX that behaves like an attacker (its client must refuse, store nothing,
//! and never touch the target). The target is [`crate::SimPbxConfig::hostile_target`].
//!
//! | fault | where | effect |
//! |---|---|---|
//! | `off-origin-link` | `server` | `DownloadLink` is an absolute URL on the hostile target (another origin) |
//! | `endless-trickle` | `server` | the download declares its length, then sends 16 bytes every 100 ms |
//! | `huge-json` | `server` | `GET Backups` answers an endless JSON document (chunked, no length) |
//! | `huge-content-length` | `server` | the download declares a `Content-Length` of 100 GiB |
//! | `redirect-loopback` | `server` | the download answers `302` to the hostile target |
//! | `unencrypted-backup` | `archive`, `server` | the backup is written without encryption, and `GetBackupExtras` says `IsEncrypted: false` |
//!
//! Native-backup faults: the PBX's own schedule is unhealthy (captures still succeed); see
//! [`crate::native`].
//!
//! | fault | where | effect |
//! |---|---|---|
//! | `native-backup-stale` | `native` | the newest native backup is 5 days old |
//! | `native-backup-disabled` | `native` | `BackupSettings.ScheduleEnabled` is false |
//! | `native-backup-unencrypted` | `native` | `BackupSettings.Contents.EncryptBackup` is false |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A fault injected into a simulated PBX (see the module documentation for the effects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Every token request is refused with 401.
    BadCredentials,
    /// A backup is accepted but never completes.
    NeverFinishes,
    /// Starting a backup answers 500.
    ServerError,
    /// The download stops after about half of the declared bytes.
    TruncatedDownload,
    /// One byte of the largest entry's encrypted data is flipped.
    FlippedByte,
    /// The archive is encrypted with a password other than the one sent.
    WrongPassword,
    /// `DbTables/extension.csv` is missing from the archive.
    MissingTable,
    /// One `queue2dn` row references a non-existent `dn`.
    DanglingForeignKey,
    /// The API's queue count is one higher than the data in the backup.
    ManifestMismatch,
    /// The download is streamed slowly in small chunks.
    SlowDownload,
    /// `DownloadLink` points at another origin (the hostile target).
    OffOriginLink,
    /// The download trickles without end (16 bytes every 100 ms).
    EndlessTrickle,
    /// `GET Backups` answers an endless JSON document.
    HugeJson,
    /// The download declares a `Content-Length` of 100 GiB.
    HugeContentLength,
    /// The download redirects to the hostile target.
    RedirectLoopback,
    /// The backup is not encrypted, and the PBX says so.
    UnencryptedBackup,
    /// The PBX's own newest scheduled backup is 5 days old.
    NativeBackupStale,
    /// The PBX's own backup schedule is turned off.
    NativeBackupDisabled,
    /// The PBX's own scheduled backups are not encrypted.
    NativeBackupUnencrypted,
}

impl Fault {
    /// Every fault, in declaration order.
    pub const ALL: [Fault; 19] = [
        Fault::BadCredentials,
        Fault::NeverFinishes,
        Fault::ServerError,
        Fault::TruncatedDownload,
        Fault::FlippedByte,
        Fault::WrongPassword,
        Fault::MissingTable,
        Fault::DanglingForeignKey,
        Fault::ManifestMismatch,
        Fault::SlowDownload,
        Fault::OffOriginLink,
        Fault::EndlessTrickle,
        Fault::HugeJson,
        Fault::HugeContentLength,
        Fault::RedirectLoopback,
        Fault::UnencryptedBackup,
        Fault::NativeBackupStale,
        Fault::NativeBackupDisabled,
        Fault::NativeBackupUnencrypted,
    ];

    /// The kebab-case name of this fault (what `Display` prints and `FromStr` accepts).
    pub const fn name(self) -> &'static str {
        match self {
            Fault::BadCredentials => "bad-credentials",
            Fault::NeverFinishes => "never-finishes",
            Fault::ServerError => "server-error",
            Fault::TruncatedDownload => "truncated-download",
            Fault::FlippedByte => "flipped-byte",
            Fault::WrongPassword => "wrong-password",
            Fault::MissingTable => "missing-table",
            Fault::DanglingForeignKey => "dangling-foreign-key",
            Fault::ManifestMismatch => "manifest-mismatch",
            Fault::SlowDownload => "slow-download",
            Fault::OffOriginLink => "off-origin-link",
            Fault::EndlessTrickle => "endless-trickle",
            Fault::HugeJson => "huge-json",
            Fault::HugeContentLength => "huge-content-length",
            Fault::RedirectLoopback => "redirect-loopback",
            Fault::UnencryptedBackup => "unencrypted-backup",
            Fault::NativeBackupStale => "native-backup-stale",
            Fault::NativeBackupDisabled => "native-backup-disabled",
            Fault::NativeBackupUnencrypted => "native-backup-unencrypted",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault name that is not one of [`Fault::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {given:?}; expected one of: bad-credentials, never-finishes, server-error, truncated-download, flipped-byte, wrong-password, missing-table, dangling-foreign-key, manifest-mismatch, slow-download, off-origin-link, endless-trickle, huge-json, huge-content-length, redirect-loopback, unencrypted-backup, native-backup-stale, native-backup-disabled, native-backup-unencrypted")]
pub struct ParseFaultError {
    /// The name that was given.
    pub given: String,
}

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParseFaultError {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for fault in Fault::ALL {
            let parsed: Fault = fault.to_string().parse().expect("own name parses");
            assert_eq!(parsed, fault);
            let json = serde_json::to_string(&fault).expect("serialises");
            assert_eq!(json, format!("\"{fault}\""));
        }
        assert_eq!("flipped-byte".parse::<Fault>(), Ok(Fault::FlippedByte));
    }

    #[test]
    fn unknown_name_is_rejected() {
        let err = "flipped-bytes".parse::<Fault>().expect_err("not a fault");
        assert_eq!(err.given, "flipped-bytes");
        assert!(err.to_string().contains("dangling-foreign-key"));
    }

    #[test]
    fn all_names_are_distinct() {
        let mut names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Fault::ALL.len());
    }
}
