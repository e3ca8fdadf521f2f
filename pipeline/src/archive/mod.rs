//! Archive verification: the check behind the "Verified" rung of the ladder.
//!
//! [`verify_archive`] takes the stored backup (a seekable, read-only file) and the tenant
//! password, and proves that the 3CX backup ZIP can be restored from:
//!
//! - the ZIP has exactly one reading ([`layout`]): one end record, entries back to back with
//!   nothing outside them, local headers agreeing with the central directory, safe and distinct
//!   names, within the [`VerifyLimits`] budget; the zip crate's reading must then match it;
//! - every entry is encrypted with WinZip AES (AE-1/AE-2) of at least the required strength
//!   (AES-256 unless the tenant's policy allows less). Unencrypted entries, legacy ZipCrypto
//!   (which the zip crate would open without complaint), weaker AES and methods the verifier
//!   cannot check are faults of their own; the encryption and compression of every entry are
//!   counted in the report;
//! - every entry decrypts with the password, inflates, and is read *to its end*, because the AES
//!   authentication code (and the CRC for AE-1) is only checked there; the inflated length must
//!   match the central directory;
//! - the 3CX structure is complete: `DbTables/<table>.csv` for every required table;
//! - all of it within the wall-time budget.
//!
//! A stored (not compressed) AE-2 entry is authenticated without being decrypted: its plaintext
//! is the decryption of authenticated ciphertext of the declared length, and AE-2 carries no
//! CRC, so deriving the keys, checking the password verifier, the HMAC-SHA1 over every byte and
//! the length proves exactly what decrypting would, at half the work (most of a PBX backup is
//! stored recordings).
//!
//! Each failure has a stable reason code ([`ArchiveFault::reason`]) that ends up in the
//! `Failed { stage, reason }` event. The archive is streamed, never held in memory.
//!
//! Entries are verified in parallel, one worker per core: each worker has its own
//! [`PositionedReader`] over the same open file (positioned reads, no shared cursor) and its own
//! clone of the [`ZipArchive`], which shares the parsed central directory. Workers take the next
//! entry index from an atomic counter; after a fault, entries with a higher index are abandoned
//! while lower ones run to completion, so the reported fault is always the lowest-index one.
//!
//! A wrong password is told apart from corruption by the AES password verifier, which the zip
//! crate checks when an entry is opened. That verifier is only 16 bits, so a rejection counts as
//! [`ArchiveFault::WrongKey`] only if the password authenticated no entry at all; an entry whose
//! verifier rejects a password that authenticates its siblings is corrupt.
//!
//! # Layout
//!
//! - `mod.rs` (here): [`verify_archive`], the entry point, and [`ArchiveReport`]; the check that
//!   the zip crate reads the archive as [`layout`] did, and the report's tallies.
//! - [`fault`]: [`ArchiveFault`], why an archive is not verified, and its stable reason codes.
//! - [`limits`]: [`VerifyLimits`], the budget of one verification, and [`AesStrength`].
//! - [`layout`]: the archive's one reading, byte by byte, before anything is decrypted.
//! - [`reader`]: [`PositionedReader`], the `pread` view each worker reads the file through.
//! - [`entries`]: the workers that decrypt and read every entry to its end (and authenticate
//!   stored AE-2 entries without decrypting them).
//! - [`structure`]: the 3CX structure, [`CORE_TABLES`] under `DbTables/`.
//! - [`names`]: entry names as text, capped for error messages.

mod entries;
mod fault;
pub mod layout;
mod limits;
mod names;
mod reader;
mod structure;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zip::result::ZipError;
use zip::{HasZipMetadata, ZipArchive};

use entries::{worker, Shared};
pub use fault::ArchiveFault;
use layout::Layout;
pub use limits::{AesStrength, VerifyLimits};
use names::name_for_error;
pub use reader::PositionedReader;
pub use structure::CORE_TABLES;
use structure::{has_db_tables, missing_tables, table_names};

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// File entries verified (directory entries are not counted).
    pub entries: u64,
    /// Their compressed (stored, encrypted) size in bytes.
    pub compressed_bytes: u64,
    /// Their inflated size in bytes, as read.
    pub inflated_bytes: u64,
    /// Table names found under `DbTables/` (without `.csv`), sorted.
    pub tables: Vec<String>,
    /// File entries per encryption (`aes256`, `aes192`, `aes128`).
    pub encryption: BTreeMap<String, u64>,
    /// File entries per compression method under the encryption (`stored`, `deflate`, ...).
    pub compression: BTreeMap<String, u64>,
}

/// Verifies an encrypted 3CX backup ZIP: see the module documentation for what is checked.
///
/// `file` is read with positioned reads and never reopened by path (it may be an unlinked
/// temporary file). `required_tables` are table names expected as `DbTables/<name>.csv`, usually
/// [`CORE_TABLES`].
///
/// # Errors
/// An [`ArchiveFault`]; a fault of the layout first, else, if several entries are faulty, the
/// one with the lowest index.
pub fn verify_archive(
    file: File,
    password: &SecretString,
    required_tables: &[&str],
    limits: &VerifyLimits,
) -> Result<ArchiveReport, ArchiveFault> {
    verify_archive_counted(
        file,
        password,
        required_tables,
        limits,
        Arc::new(AtomicU64::new(0)),
    )
}

/// [`verify_archive`], counting the bytes it reads from `file` into `read` as it goes (for a
/// progress bar; the count is not a result: the central directory may be read more than once).
///
/// # Errors
/// As [`verify_archive`].
pub fn verify_archive_counted(
    file: File,
    password: &SecretString,
    required_tables: &[&str],
    limits: &VerifyLimits,
    read: Arc<AtomicU64>,
) -> Result<ArchiveReport, ArchiveFault> {
    let deadline = Instant::now() + limits.max_duration;
    let file = Arc::new(file);
    let reader = PositionedReader::new(Arc::clone(&file))?.counting_into(read);
    let file_len = reader.len();
    let layout = layout::read_layout(&file, file_len, limits)?;
    let probe = reader.clone();
    let archive = match ZipArchive::new(reader) {
        Ok(a) => a,
        Err(e) => {
            if let Some(io) = probe.file_error() {
                return Err(ArchiveFault::Io(io));
            }
            return Err(match e {
                ZipError::Io(io) if io.kind() != io::ErrorKind::UnexpectedEof => {
                    ArchiveFault::Io(io)
                }
                other => ArchiveFault::Malformed {
                    detail: format!("the ZIP reader refuses it: {other}"),
                },
            });
        }
    };
    same_reading(&archive, &layout)?;

    let tables = table_names(&archive);
    let has_folder = has_db_tables(&archive);
    let count = archive.len();
    let shared = Shared::new(deadline);
    let secret = password.expose_secret().as_bytes();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(count)
        .max(1);

    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let mut archive = archive.clone();
                let shared = &shared;
                let layout = &layout;
                scope.spawn(move || worker(&mut archive, layout, limits, shared, secret))
            })
            .collect();
        for handle in handles {
            if handle.join().is_err() {
                // Panics inside an entry are caught per entry; this is a bug in the worker.
                shared.record(
                    0,
                    String::new(),
                    ArchiveFault::Io(io::Error::other("archive verifier worker panicked")),
                );
            }
        }
    });

    if let Some(io) = probe.file_error() {
        return Err(ArchiveFault::Io(io));
    }
    let mut faults = shared
        .faults
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    faults.sort_by_key(|(index, _, _)| *index);
    let authenticated = shared.verified.load(Ordering::Acquire);
    let password_rejected = faults
        .iter()
        .any(|(_, _, f)| matches!(f, ArchiveFault::WrongKey));
    if password_rejected && authenticated == 0 {
        return Err(ArchiveFault::WrongKey);
    }
    if let Some((_, entry, fault)) = faults.into_iter().next() {
        return Err(match fault {
            ArchiveFault::WrongKey => ArchiveFault::EntryCorrupt {
                entry,
                detail: "its password verifier rejects the password that authenticates other \
                         entries"
                    .to_owned(),
            },
            other => other,
        });
    }

    let missing = missing_tables(&tables, has_folder, required_tables);
    if !missing.is_empty() {
        return Err(ArchiveFault::StructureIncomplete { missing });
    }
    let (encryption, compression) = tally(&layout);
    Ok(ArchiveReport {
        entries: shared.verified.load(Ordering::Acquire),
        compressed_bytes: shared.compressed.load(Ordering::Acquire),
        inflated_bytes: shared.inflated.load(Ordering::Acquire),
        tables,
        encryption,
        compression,
    })
}

/// The zip crate must read the archive exactly as [`layout`] did: same entries, same order,
/// same names, offsets and sizes. Anything else means two readings.
fn same_reading<R: Read + Seek>(
    archive: &ZipArchive<R>,
    layout: &Layout,
) -> Result<(), ArchiveFault> {
    let differs = |what: String| ArchiveFault::Malformed {
        detail: format!("the ZIP reader reads it differently: {what}"),
    };
    if archive.len() != layout.entries.len() {
        return Err(differs(format!(
            "{} entries, not {}",
            archive.len(),
            layout.entries.len()
        )));
    }
    for (index, expected) in layout.entries.iter().enumerate() {
        let entry = archive
            .by_index_data(index)
            .map_err(|e| differs(format!("entry #{index}: {e}")))?;
        let data = entry.get_metadata();
        let same = entry.name_raw() == expected.name.as_slice()
            && data.header_start == expected.header_start
            && data.compressed_size == expected.compressed_size
            && data.uncompressed_size == expected.uncompressed_size;
        if !same {
            return Err(differs(format!("entry {}", name_for_error(&expected.name))));
        }
    }
    Ok(())
}

/// File entries per encryption and per compression method.
fn tally(layout: &Layout) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut encryption = BTreeMap::new();
    let mut compression = BTreeMap::new();
    for entry in layout.entries.iter().filter(|e| !e.is_empty_dir()) {
        let (cipher, method) = match entry.aes {
            Some(aes) => (aes.strength.as_str(), aes.method),
            None => ("none", entry.method),
        };
        *encryption.entry(cipher.to_owned()).or_insert(0) += 1;
        *compression.entry(method_name(method)).or_insert(0) += 1;
    }
    (encryption, compression)
}

/// The name of a ZIP compression method number.
fn method_name(method: u16) -> String {
    match method {
        0 => "stored".to_owned(),
        8 => "deflate".to_owned(),
        9 => "deflate64".to_owned(),
        12 => "bzip2".to_owned(),
        14 => "lzma".to_owned(),
        93 => "zstd".to_owned(),
        95 => "xz".to_owned(),
        other => format!("method_{other}"),
    }
}

#[cfg(test)]
mod tests;
