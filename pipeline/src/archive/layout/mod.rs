//! The archive's layout, read byte by byte on its own and held to exactly one reading.
//!
//! ZIP readers disagree on hostile archives: which of two end records counts, which of two
//! entries with one name wins, whether a local header or the central directory is right. A
//! verifier that reads an archive one way while the restore reads it another way reports a copy
//! Verified that does not restore. So before any entry is decrypted, [`read_layout`] checks that
//! the file has one, and only one, sensible reading:
//!
//! - exactly one end of central directory (EOCD) record, whose comment reaches the end of the
//!   file, and no second EOCD signature after it (inside the comment);
//! - the central directory right before it (or before the ZIP64 end records), single volume,
//!   with as many records as announced and exactly the announced size;
//! - entries laid out back to back in central-directory order from offset 0: no byte before
//!   the first entry, between entries or before the central directory that belongs to no entry
//!   (`stray_data`), no entry overlapping another or stored out of order (`entry_overlap`);
//! - every local header agreeing with its central record on name, flags, method, CRC, sizes and
//!   the AES extra field (`header_mismatch`); a data descriptor, when flagged, agreeing too;
//! - safe, distinct names: not absolute, no `..` or `.` segment, no backslash, drive letter,
//!   NUL or control character (`unsafe_entry_name`), and no two names equal after
//!   normalisation (ASCII case folded, trailing `/` dropped: `duplicate_entry`);
//! - a budget: no more entries, and no more declared inflated bytes, than the limits allow
//!   (`archive_budget`).
//!
//! Fields a restore does not depend on are not compared: modification times and dates, the
//! "version made by" and "version needed" fields, internal and external attributes, the
//! archive and entry comments, and extra fields other than ZIP64 (0x0001) and AES (0x9901)
//! (e.g. NTFS or Unix timestamps). Everything else of a header is checked.
//!
//! # Layout
//!
//! - `mod.rs` (here): [`read_layout`] and what it returns ([`Layout`], [`EntryLayout`],
//!   [`AesField`]); the positioned byte and field readers the checks share.
//! - [`end`]: the one end of central directory record (and the ZIP64 end records).
//! - [`central`]: the central directory's records, their extra fields and the AES field.
//! - [`names`]: names safe to extract and distinct after normalisation.
//! - [`local`]: the local headers and data descriptors, entries back to back.

mod central;
mod end;
mod local;
mod names;

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::archive::fault::ArchiveFault;
pub use crate::archive::limits::AesStrength;
use crate::archive::limits::VerifyLimits;

use central::read_central;
use end::find_end;
use local::check_locals;
use names::check_names;

const ZIP64_EXTRA: u16 = 0x0001;
/// What a 32-bit size or offset holds when the real value is in the ZIP64 extra field.
const SATURATED_32: u32 = u32::MAX;
const SATURATED_16: u16 = u16::MAX;

/// The AE-x extra field of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AesField {
    /// AE-1 or AE-2.
    pub vendor_version: u16,
    /// Key strength.
    pub strength: AesStrength,
    /// The compression method under the encryption.
    pub method: u16,
}

/// One entry as laid out in the file.
#[derive(Clone, Debug)]
pub struct EntryLayout {
    /// The name, as stored.
    pub name: Vec<u8>,
    /// Offset of the local header.
    pub header_start: u64,
    /// Offset of the first byte after the local header.
    pub data_start: u64,
    /// Stored (encrypted, compressed) size.
    pub compressed_size: u64,
    /// Declared inflated size.
    pub uncompressed_size: u64,
    /// The method field (99 for AES).
    pub method: u16,
    /// General-purpose flags.
    pub flags: u16,
    /// The AES extra field, if any.
    pub aes: Option<AesField>,
}

impl EntryLayout {
    /// A directory entry holding no data.
    pub fn is_empty_dir(&self) -> bool {
        self.name.ends_with(b"/") && self.compressed_size == 0 && self.uncompressed_size == 0
    }
}

/// The one reading of an archive.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Entries in central-directory order (which is also file order).
    pub entries: Vec<EntryLayout>,
}

/// Reads and checks the layout of `file` (of `file_len` bytes): see the module documentation.
///
/// # Errors
/// The first fault found, as an [`ArchiveFault`].
pub fn read_layout(
    file: &File,
    file_len: u64,
    limits: &VerifyLimits,
) -> Result<Layout, ArchiveFault> {
    let bytes = Bytes {
        file,
        len: file_len,
    };
    let end = find_end(&bytes)?;
    if end.entries > limits.max_entries {
        return Err(ArchiveFault::Budget {
            detail: format!(
                "{} entries, more than the limit of {}",
                end.entries, limits.max_entries
            ),
        });
    }
    let central = read_central(&bytes, &end)?;
    let declared: u64 = central
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(c.entry.uncompressed_size));
    if declared > limits.max_inflated_bytes {
        return Err(ArchiveFault::Budget {
            detail: format!(
                "the entries declare {declared} inflated bytes, more than the limit of {}",
                limits.max_inflated_bytes
            ),
        });
    }
    check_names(&central)?;
    let entries = check_locals(&bytes, central, end.central_start)?;
    Ok(Layout { entries })
}

/// Positioned reads of the archive, with reads past the end reported as truncation.
struct Bytes<'a> {
    file: &'a File,
    len: u64,
}

impl Bytes<'_> {
    fn read(&self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, ArchiveFault> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(ArchiveFault::Truncated {
                detail: format!("{what} extends beyond the end of the file"),
            });
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// Little-endian field reader over a record.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }
}

fn malformed(detail: impl Into<String>) -> ArchiveFault {
    ArchiveFault::Malformed {
        detail: detail.into(),
    }
}

/// The fault for a region that should end at `expected` but the next structure is at `found`.
fn placement(expected_end: u64, next_start: u64, what: &str) -> ArchiveFault {
    if expected_end > next_start {
        ArchiveFault::Overlap {
            detail: format!("{what} overlaps the structure after it"),
        }
    } else {
        ArchiveFault::StrayData {
            detail: format!(
                "{} bytes after {what} belong to no structure",
                next_start - expected_end
            ),
        }
    }
}
