//! Why an archive is not verified: [`ArchiveFault`], one variant per fault, each with a stable
//! reason code ([`ArchiveFault::reason`]) for the `Failed { stage, reason }` event.

use std::io;

use super::structure::DB_TABLES;

/// Why an archive is not verified. [`ArchiveFault::reason`] gives the stable code.
#[derive(thiserror::Error, Debug)]
pub enum ArchiveFault {
    /// No end of central directory, or an entry lies beyond the end of the file.
    #[error("archive truncated or not a ZIP: {detail}")]
    Truncated {
        /// What was found missing.
        detail: String,
    },
    /// The password was rejected.
    #[error("the backup password was rejected")]
    WrongKey,
    /// An entry failed authentication, CRC, inflation or length checks when read to its end.
    #[error("entry {entry} is corrupt: {detail}")]
    EntryCorrupt {
        /// The entry's name.
        entry: String,
        /// What failed.
        detail: String,
    },
    /// An entry is stored without encryption.
    #[error("entry {entry} is stored without encryption")]
    NotEncrypted {
        /// The entry's name.
        entry: String,
    },
    /// An entry uses legacy ZipCrypto, or AES weaker than the policy's minimum.
    #[error("entry {entry} is encrypted with {cipher}, weaker than the required {required}")]
    WeakEncryption {
        /// The entry's name.
        entry: String,
        /// What it uses (`ZipCrypto`, `aes128`, ...).
        cipher: String,
        /// The weakest accepted.
        required: &'static str,
    },
    /// An entry uses a compression or encryption method the verifier cannot check.
    #[error("entry {entry} uses {method}, which the verifier cannot check")]
    UnsupportedMethod {
        /// The entry's name.
        entry: String,
        /// The method found.
        method: String,
    },
    /// `DbTables/` or some of the required tables are missing.
    #[error("3CX structure incomplete, missing: {}", render_missing(missing))]
    StructureIncomplete {
        /// Missing table names, led by `"DbTables/"` if the folder itself is absent.
        missing: Vec<String>,
    },
    /// The end records, central directory or a header do not parse.
    #[error("archive malformed: {detail}")]
    Malformed {
        /// What does not parse.
        detail: String,
    },
    /// More than one end of central directory record, or end records that disagree.
    #[error("archive has more than one reading of its end: {detail}")]
    AmbiguousEnd {
        /// What was found.
        detail: String,
    },
    /// Two entries share a name (after normalisation).
    #[error("entry {entry} appears twice")]
    DuplicateEntry {
        /// The name.
        entry: String,
    },
    /// An entry name is absolute, climbs out (`..`), or holds a backslash, drive letter or
    /// control character.
    #[error("entry name {entry:?} is unsafe to extract")]
    UnsafeName {
        /// The name (capped, lossy).
        entry: String,
    },
    /// Entries overlap each other or the central directory, or are stored out of order.
    #[error("entries overlap: {detail}")]
    Overlap {
        /// Where.
        detail: String,
    },
    /// Bytes that belong to no entry (before, between or after the entries).
    #[error("data outside any entry: {detail}")]
    StrayData {
        /// Where.
        detail: String,
    },
    /// A local header disagrees with the central directory.
    #[error("entry {entry}: the local header and the central directory disagree on the {field}")]
    HeaderMismatch {
        /// The entry's name.
        entry: String,
        /// The field.
        field: String,
    },
    /// The archive exceeds the verification budget (entries, inflated bytes, time).
    #[error("archive exceeds the verification budget: {detail}")]
    Budget {
        /// Which limit.
        detail: String,
    },
    /// Reading the file itself failed.
    #[error("i/o error reading the archive: {0}")]
    Io(#[from] io::Error),
}

fn render_missing(missing: &[String]) -> String {
    missing
        .iter()
        .map(|t| {
            if t.ends_with('/') {
                t.clone()
            } else {
                format!("{DB_TABLES}{t}.csv")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ArchiveFault {
    /// The stable reason code, as used in `Failed` events.
    pub fn reason(&self) -> &'static str {
        match self {
            ArchiveFault::Truncated { .. } => "archive_truncated",
            ArchiveFault::WrongKey => "wrong_key",
            ArchiveFault::EntryCorrupt { .. } => "entry_corrupt",
            ArchiveFault::NotEncrypted { .. } => "not_encrypted",
            ArchiveFault::WeakEncryption { .. } => "weak_encryption",
            ArchiveFault::UnsupportedMethod { .. } => "unsupported_method",
            ArchiveFault::StructureIncomplete { .. } => "structure_incomplete",
            ArchiveFault::Malformed { .. } => "archive_malformed",
            ArchiveFault::AmbiguousEnd { .. } => "ambiguous_end",
            ArchiveFault::DuplicateEntry { .. } => "duplicate_entry",
            ArchiveFault::UnsafeName { .. } => "unsafe_entry_name",
            ArchiveFault::Overlap { .. } => "entry_overlap",
            ArchiveFault::StrayData { .. } => "stray_data",
            ArchiveFault::HeaderMismatch { .. } => "header_mismatch",
            ArchiveFault::Budget { .. } => "archive_budget",
            ArchiveFault::Io(_) => "io_error",
        }
    }
}
