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

pub mod layout;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zip::result::ZipError;
use zip::{CompressionMethod, HasZipMetadata, ZipArchive};

pub use layout::AesStrength;
use layout::{EntryLayout, Layout};

/// The tables a 3CX backup must contain (as `DbTables/<name>.csv`) to be restorable.
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

/// Folder of the database tables inside a 3CX backup.
const DB_TABLES: &str = "DbTables/";
/// Buffer each worker reads inflated data into.
const READ_BUF: usize = 512 * 1024;
/// Read-ahead buffer of a [`PositionedReader`] (the inflater reads in small steps).
const POSITIONED_BUF: usize = 256 * 1024;
/// General purpose flag bit 6: PKWARE strong encryption.
const STRONG_ENCRYPTION_FLAG: u16 = 0x0040;
/// Entry names are archive input: cap what goes into error messages.
const MAX_NAME_IN_ERROR: usize = 200;

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

/// The budget of one verification, so a hostile archive cannot tie up a verify worker, and
/// the weakest encryption accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyLimits {
    /// Most entries (files and folders) an archive may hold.
    pub max_entries: u64,
    /// Most inflated bytes its entries may declare, in all.
    pub max_inflated_bytes: u64,
    /// Longest a verification may take.
    pub max_duration: Duration,
    /// The weakest AES accepted (AES-256 unless a tenant's policy allows less).
    pub minimum_encryption: AesStrength,
}

impl Default for VerifyLimits {
    /// Generous: a million entries, 1 TiB inflated, six hours, AES-256.
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_inflated_bytes: 1 << 40,
            max_duration: Duration::from_secs(6 * 3600),
            minimum_encryption: AesStrength::Aes256,
        }
    }
}

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

/// A `Read + Seek` view of a shared file that reads with `pread` (`read_at`), so that many
/// readers (one per worker) can read the same open file at once without sharing a cursor.
/// Works on unlinked files: it never reopens by path.
///
/// It keeps a read-ahead buffer for small reads; reads of at least that size go straight to the
/// caller's buffer. Clones share the file but not the position or buffer.
#[derive(Debug)]
pub struct PositionedReader {
    /// The shared file.
    file: Arc<File>,
    /// Current position.
    pos: u64,
    /// File length, taken once: the archive must not change while it is verified.
    len: u64,
    /// Read-ahead buffer, allocated on first use.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// The first error the file itself returned (shared by clones), so that a failing disk is
    /// reported as an I/O error rather than as a corrupt entry.
    first_error: Arc<OnceLock<(io::ErrorKind, String)>>,
}

impl Clone for PositionedReader {
    fn clone(&self) -> Self {
        Self {
            file: Arc::clone(&self.file),
            pos: self.pos,
            len: self.len,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            first_error: Arc::clone(&self.first_error),
        }
    }
}

impl PositionedReader {
    /// A reader at position 0 of `file`.
    ///
    /// # Errors
    /// If the file's length cannot be read.
    pub fn new(file: Arc<File>) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            pos: 0,
            len,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            first_error: Arc::new(OnceLock::new()),
        })
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first error the underlying file returned to this reader or a clone, if any.
    fn file_error(&self) -> Option<io::Error> {
        self.first_error
            .get()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }

    fn pread(
        file: &File,
        first_error: &OnceLock<(io::ErrorKind, String)>,
        out: &mut [u8],
        pos: u64,
    ) -> io::Result<usize> {
        loop {
            match file.read_at(out, pos) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = first_error.set((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
    }
}

impl Read for PositionedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let buffered =
            self.pos >= self.buf_start && self.pos - self.buf_start < self.buf_len as u64;
        if !buffered {
            let remaining = self.len - self.pos;
            if out.len() >= POSITIONED_BUF {
                let want = usize::try_from(remaining).map_or(out.len(), |r| r.min(out.len()));
                let n = Self::pread(&self.file, &self.first_error, &mut out[..want], self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            if self.buf.is_empty() {
                self.buf = vec![0; POSITIONED_BUF];
            }
            let want = usize::try_from(remaining).map_or(POSITIONED_BUF, |r| r.min(POSITIONED_BUF));
            self.buf_len = 0;
            let n = Self::pread(
                &self.file,
                &self.first_error,
                &mut self.buf[..want],
                self.pos,
            )?;
            self.buf_start = self.pos;
            self.buf_len = n;
            if n == 0 {
                return Ok(0);
            }
        }
        // In the buffer: the offset is below buf_len, so it fits in usize.
        let offset = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf_len - offset);
        out[..n].copy_from_slice(&self.buf[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PositionedReader {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let target = match from {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        match target {
            Some(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
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
    let deadline = Instant::now() + limits.max_duration;
    let file = Arc::new(file);
    let reader = PositionedReader::new(Arc::clone(&file))?;
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

/// The entry name as text for reports (lossy, `\` read as `/`).
fn entry_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\\', "/")
}

/// The entry name as it may appear in an error message (capped).
fn name_for_error(raw: &[u8]) -> String {
    let name = entry_name(raw);
    if name.chars().count() > MAX_NAME_IN_ERROR {
        let mut short: String = name.chars().take(MAX_NAME_IN_ERROR).collect();
        short.push('…');
        short
    } else {
        name
    }
}

/// Names of the tables directly under `DbTables/`, sorted and de-duplicated.
fn table_names<R: Read + Seek>(archive: &ZipArchive<R>) -> Vec<String> {
    let mut tables: Vec<String> = archive
        .file_names_raw()
        .filter_map(|raw| {
            let name = entry_name(raw);
            let table = name.strip_prefix(DB_TABLES)?.strip_suffix(".csv")?;
            (!table.is_empty() && !table.contains('/')).then(|| table.to_owned())
        })
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// Whether any entry lives under `DbTables/`.
fn has_db_tables<R: Read + Seek>(archive: &ZipArchive<R>) -> bool {
    archive
        .file_names_raw()
        .any(|raw| entry_name(raw).starts_with(DB_TABLES))
}

/// Required tables not found (sorted `found`), led by `"DbTables/"` if the folder is absent.
fn missing_tables(found: &[String], has_folder: bool, required: &[&str]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    if !has_folder {
        missing.push(DB_TABLES.to_owned());
    }
    missing.extend(
        required
            .iter()
            .filter(|t| found.binary_search_by(|f| f.as_str().cmp(t)).is_err())
            .map(|t| (*t).to_owned()),
    );
    missing
}

/// State shared by the workers of one verification.
struct Shared {
    /// Next entry index to take.
    next: AtomicUsize,
    /// Lowest index with a fault (other than a rejected password) so far; `usize::MAX` if none.
    /// Entries above it are abandoned, entries below it still run to completion.
    first_fault: AtomicUsize,
    /// Entries read to their end and authenticated.
    verified: AtomicU64,
    /// Their compressed bytes.
    compressed: AtomicU64,
    /// Their inflated bytes.
    inflated: AtomicU64,
    /// Faults found: (entry index, entry name, fault).
    faults: Mutex<Vec<(usize, String, ArchiveFault)>>,
    /// When the wall-time budget runs out.
    deadline: Instant,
}

impl Shared {
    fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            next: AtomicUsize::new(0),
            first_fault: AtomicUsize::new(usize::MAX),
            verified: AtomicU64::new(0),
            compressed: AtomicU64::new(0),
            inflated: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Records a fault. A rejected password does not stop the others: every entry fails fast
    /// at open with a wrong password, and whether any entry authenticates decides between
    /// `WrongKey` and a corrupt verifier.
    fn record(&self, index: usize, entry: String, fault: ArchiveFault) {
        if !matches!(fault, ArchiveFault::WrongKey) {
            self.first_fault.fetch_min(index, Ordering::AcqRel);
        }
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((index, entry, fault));
    }

    fn abandoned(&self, index: usize) -> bool {
        index > self.first_fault.load(Ordering::Acquire)
    }
}

/// What became of one entry.
enum Outcome {
    /// A directory entry: nothing to verify.
    Skipped,
    /// Read to its end, authenticated, lengths matching.
    Verified { compressed: u64, inflated: u64 },
    /// Given up because a lower entry is faulty.
    Abandoned,
}

fn worker(
    archive: &mut ZipArchive<PositionedReader>,
    layout: &Layout,
    limits: &VerifyLimits,
    shared: &Shared,
    password: &[u8],
) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let index = shared.next.fetch_add(1, Ordering::AcqRel);
        if index >= archive.len() || shared.abandoned(index) {
            return;
        }
        let Some(planned) = layout.entries.get(index) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            verify_entry(archive, index, planned, limits, password, shared, &mut buf)
        }));
        match result {
            Ok(Ok(Outcome::Verified {
                compressed,
                inflated,
            })) => {
                shared.verified.fetch_add(1, Ordering::AcqRel);
                shared.compressed.fetch_add(compressed, Ordering::AcqRel);
                shared.inflated.fetch_add(inflated, Ordering::AcqRel);
            }
            Ok(Ok(Outcome::Skipped | Outcome::Abandoned)) => {}
            Ok(Err((name, fault))) => shared.record(index, name, fault),
            Err(_) => {
                let name = archive
                    .name_for_index(index)
                    .and_then(Result::ok)
                    .map_or_else(|| format!("#{index}"), |n| name_for_error(n.as_bytes()));
                shared.record(
                    index,
                    name.clone(),
                    ArchiveFault::EntryCorrupt {
                        entry: name,
                        detail: "the ZIP reader could not process this entry".to_owned(),
                    },
                );
            }
        }
    }
}

/// Maps an error from opening an entry.
fn open_error(entry: &str, e: ZipError) -> ArchiveFault {
    match e {
        ZipError::InvalidPassword => ArchiveFault::WrongKey,
        ZipError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => ArchiveFault::Truncated {
            detail: format!("entry {entry} extends beyond the end of the file"),
        },
        ZipError::UnsupportedArchive(what) => ArchiveFault::UnsupportedMethod {
            entry: entry.to_owned(),
            method: what.to_owned(),
        },
        ZipError::CompressionMethodNotSupported(method) => ArchiveFault::UnsupportedMethod {
            entry: entry.to_owned(),
            method: format!("compression method {method}"),
        },
        other => ArchiveFault::EntryCorrupt {
            entry: entry.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Checks one entry's metadata, then decrypts and reads it to its end.
fn verify_entry(
    archive: &mut ZipArchive<PositionedReader>,
    index: usize,
    planned: &EntryLayout,
    limits: &VerifyLimits,
    password: &[u8],
    shared: &Shared,
    buf: &mut [u8],
) -> Result<Outcome, (String, ArchiveFault)> {
    let (name, compressed, declared) = {
        let entry = archive
            .by_index_data(index)
            .map_err(|e| (format!("#{index}"), open_error(&format!("#{index}"), e)))?;
        let name = name_for_error(entry.name_raw());
        let fault = |f: ArchiveFault| (name.clone(), f);
        let data = entry.get_metadata();
        if planned.is_empty_dir() {
            return Ok(Outcome::Skipped);
        }
        if !data.flags.is_encrypted() {
            return Err(fault(ArchiveFault::NotEncrypted {
                entry: name.clone(),
            }));
        }
        if data.flags.as_u16() & STRONG_ENCRYPTION_FLAG != 0 {
            return Err(fault(ArchiveFault::UnsupportedMethod {
                entry: name.clone(),
                method: "PKWARE strong encryption".to_owned(),
            }));
        }
        let Some(aes) = planned.aes.filter(|_| data.aes_settings().is_some()) else {
            return Err(fault(
                if data.compression_method == CompressionMethod::Aes {
                    ArchiveFault::UnsupportedMethod {
                        entry: name.clone(),
                        method: "AES (method 99) without its AE-x extra field".to_owned(),
                    }
                } else {
                    ArchiveFault::WeakEncryption {
                        entry: name.clone(),
                        cipher: "ZipCrypto".to_owned(),
                        required: limits.minimum_encryption.as_str(),
                    }
                },
            ));
        };
        if aes.strength < limits.minimum_encryption {
            return Err(fault(ArchiveFault::WeakEncryption {
                entry: name.clone(),
                cipher: aes.strength.as_str().to_owned(),
                required: limits.minimum_encryption.as_str(),
            }));
        }
        let method = data.compression_method;
        if method == CompressionMethod::Aes || !zip::SUPPORTED_COMPRESSION_METHODS.contains(&method)
        {
            return Err(fault(ArchiveFault::UnsupportedMethod {
                entry: name.clone(),
                method: format!("compression method {method}"),
            }));
        }
        (name, data.compressed_size, data.uncompressed_size)
    };

    if let Some(aes) = planned
        .aes
        .filter(|a| a.vendor_version == 2 && a.method == 0)
    {
        return authenticate_stored(archive, index, aes.strength, password, limits, shared, buf)
            .map_err(|fault| (name.clone(), fault));
    }

    let mut file = match archive.by_index_decrypt(index, password) {
        Ok(f) => f,
        Err(e) => {
            let fault = open_error(&name, e);
            return Err((name, fault));
        }
    };
    let mut inflated: u64 = 0;
    loop {
        if shared.abandoned(index) {
            return Ok(Outcome::Abandoned);
        }
        if Instant::now() > shared.deadline {
            return Err((
                name,
                ArchiveFault::Budget {
                    detail: format!(
                        "verifying took longer than the limit of {} s",
                        limits.max_duration.as_secs()
                    ),
                },
            ));
        }
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                inflated += n as u64;
                if inflated > declared {
                    return Err((
                        name.clone(),
                        ArchiveFault::EntryCorrupt {
                            entry: name,
                            detail: format!(
                                "inflates to more than the {declared} bytes the central \
                                 directory declares"
                            ),
                        },
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let detail = e.to_string();
                return Err((
                    name.clone(),
                    ArchiveFault::EntryCorrupt {
                        entry: name,
                        detail,
                    },
                ));
            }
        }
    }
    if inflated != declared {
        return Err((
            name.clone(),
            ArchiveFault::EntryCorrupt {
                entry: name,
                detail: format!(
                    "inflated to {inflated} bytes, the central directory declares {declared}"
                ),
            },
        ));
    }
    Ok(Outcome::Verified {
        compressed,
        inflated,
    })
}

/// Authenticates a stored AE-2 entry without decrypting it: the keys derived from the password
/// (PBKDF2-HMAC-SHA1, 1000 rounds, as WinZip AES specifies), the password verifier, the
/// HMAC-SHA1-80 over every byte of ciphertext, and the length.
fn authenticate_stored(
    archive: &mut ZipArchive<PositionedReader>,
    index: usize,
    strength: AesStrength,
    password: &[u8],
    limits: &VerifyLimits,
    shared: &Shared,
    buf: &mut [u8],
) -> Result<Outcome, ArchiveFault> {
    use hmac_sha1::{KeyInit, Mac};
    const VERIFIER: usize = 2;
    const MAC: usize = 10;
    let (salt_len, key_len) = match strength {
        AesStrength::Aes128 => (8, 16),
        AesStrength::Aes192 => (12, 24),
        AesStrength::Aes256 => (16, 32),
    };
    let mut raw = archive
        .by_index_raw(index)
        .map_err(|e| open_error(&format!("#{index}"), e))?;
    let name = name_for_error(raw.name_raw());
    let corrupt = |detail: String| ArchiveFault::EntryCorrupt {
        entry: name.clone(),
        detail,
    };
    let (compressed, declared) = (raw.compressed_size(), raw.size());
    let overhead = (salt_len + VERIFIER + MAC) as u64;
    let Some(mut remaining) = compressed.checked_sub(overhead) else {
        return Err(corrupt(format!(
            "{compressed} bytes cannot hold the AES salt, verifier and authentication code"
        )));
    };
    if remaining != declared {
        return Err(corrupt(format!(
            "holds {remaining} bytes, the central directory declares {declared}"
        )));
    }
    let read_error = |e: io::Error| -> ArchiveFault {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveFault::Truncated {
                detail: format!("entry {name} extends beyond the end of the file"),
            }
        } else {
            ArchiveFault::Io(e)
        }
    };
    let mut head = [0u8; 16 + VERIFIER];
    raw.read_exact(&mut head[..salt_len + VERIFIER])
        .map_err(read_error)?;
    let (salt, verifier) = head[..salt_len + VERIFIER].split_at(salt_len);
    let mut derived = zeroize::Zeroizing::new([0u8; 2 * 32 + VERIFIER]);
    let derived = &mut derived[..2 * key_len + VERIFIER];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, 1000, derived);
    if &derived[2 * key_len..] != verifier {
        return Err(ArchiveFault::WrongKey);
    }
    let mut mac = hmac_sha1::Hmac::<sha1::Sha1>::new_from_slice(&derived[key_len..2 * key_len])
        .map_err(|e| ArchiveFault::Io(io::Error::other(e.to_string())))?;
    while remaining > 0 {
        if shared.abandoned(index) {
            return Ok(Outcome::Abandoned);
        }
        if Instant::now() > shared.deadline {
            return Err(ArchiveFault::Budget {
                detail: format!(
                    "verifying took longer than the limit of {} s",
                    limits.max_duration.as_secs()
                ),
            });
        }
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        raw.read_exact(&mut buf[..want]).map_err(read_error)?;
        mac.update(&buf[..want]);
        remaining -= want as u64;
    }
    let mut code = [0u8; MAC];
    raw.read_exact(&mut code).map_err(read_error)?;
    if mac.finalize().into_bytes()[..MAC] != code {
        return Err(corrupt(
            "the AES authentication code does not match".to_owned(),
        ));
    }
    Ok(Outcome::Verified {
        compressed,
        inflated: declared,
    })
}

#[cfg(test)]
mod tests;
