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

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{name_for_error, ArchiveFault, VerifyLimits};

const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
const ZIP64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
const ZIP64_EOCD_SIG: [u8; 4] = *b"PK\x06\x06";
const CENTRAL_SIG: [u8; 4] = *b"PK\x01\x02";
const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR_SIG: [u8; 4] = *b"PK\x07\x08";
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_MIN_LEN: u64 = 56;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const MAX_COMMENT: u64 = 65_535;
const ZIP64_EXTRA: u16 = 0x0001;
const AES_EXTRA: u16 = 0x9901;
const DESCRIPTOR_FLAG: u16 = 0x0008;
/// What a 32-bit size or offset holds when the real value is in the ZIP64 extra field.
const SATURATED_32: u32 = u32::MAX;
const SATURATED_16: u16 = u16::MAX;

/// Key strength of a WinZip AES entry, from its AE-x extra field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AesStrength {
    /// 128-bit key (strength byte 1).
    Aes128,
    /// 192-bit key (strength byte 2).
    Aes192,
    /// 256-bit key (strength byte 3).
    Aes256,
}

impl AesStrength {
    /// The stable name: `aes128`, `aes192`, `aes256`.
    pub fn as_str(self) -> &'static str {
        match self {
            AesStrength::Aes128 => "aes128",
            AesStrength::Aes192 => "aes192",
            AesStrength::Aes256 => "aes256",
        }
    }

    /// Parses a stable name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "aes128" => Some(AesStrength::Aes128),
            "aes192" => Some(AesStrength::Aes192),
            "aes256" => Some(AesStrength::Aes256),
            _ => None,
        }
    }
}

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

/// Where the central directory is, from the end records.
struct End {
    central_start: u64,
    central_size: u64,
    entries: u64,
}

/// Finds the one EOCD record (and the ZIP64 end records, when present).
fn find_end(bytes: &Bytes<'_>) -> Result<End, ArchiveFault> {
    let no_end = || ArchiveFault::Truncated {
        detail: "no end of central directory record".to_owned(),
    };
    if bytes.len < EOCD_LEN {
        return Err(no_end());
    }
    let tail_len = bytes.len.min(EOCD_LEN + MAX_COMMENT);
    let tail_start = bytes.len - tail_len;
    // The tail is at most 64 KiB + 22 bytes: it fits in usize.
    let tail = bytes.read(tail_start, tail_len as usize, "the end record")?;
    let signatures: Vec<usize> = tail
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == EOCD_SIG)
        .map(|(i, _)| i)
        .collect();
    let reaches_end = |i: usize| {
        tail.get(i + 20..i + 22)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .is_some_and(|comment| i as u64 + EOCD_LEN + u64::from(comment) == tail_len)
    };
    let Some(&found) = signatures.iter().rev().find(|&&i| reaches_end(i)) else {
        return Err(no_end());
    };
    if signatures
        .iter()
        .any(|&i| i != found && (i > found || reaches_end(i)))
    {
        return Err(ArchiveFault::AmbiguousEnd {
            detail: "more than one end of central directory record".to_owned(),
        });
    }
    let eocd_at = tail_start + found as u64;
    let mut f = Fields::new(&tail[found + 4..found + EOCD_LEN as usize]);
    let (disk, central_disk, on_disk, total, size, offset) =
        (f.u16(), f.u16(), f.u16(), f.u16(), f.u32(), f.u32());
    let (Some(disk), Some(central_disk), Some(on_disk), Some(total), Some(size), Some(offset)) =
        (disk, central_disk, on_disk, total, size, offset)
    else {
        return Err(no_end());
    };
    let saturated = disk == SATURATED_16
        || central_disk == SATURATED_16
        || on_disk == SATURATED_16
        || total == SATURATED_16
        || size == SATURATED_32
        || offset == SATURATED_32;
    let locator_at = eocd_at.checked_sub(ZIP64_LOCATOR_LEN);
    let locator = match locator_at {
        Some(at) => {
            let record = bytes.read(at, ZIP64_LOCATOR_LEN as usize, "the ZIP64 locator")?;
            (record[..4] == ZIP64_LOCATOR_SIG).then_some((at, record))
        }
        None => None,
    };
    let end = if let Some((locator_at, locator)) = locator {
        let z64 = read_zip64_end(bytes, locator_at, &locator)?;
        let agrees = |small: u64, big: u64, max: u64| small == max || small == big;
        if !(agrees(u64::from(total), z64.entries, u64::from(SATURATED_16))
            && agrees(u64::from(on_disk), z64.entries, u64::from(SATURATED_16))
            && agrees(u64::from(size), z64.central_size, u64::from(SATURATED_32))
            && agrees(
                u64::from(offset),
                z64.central_start,
                u64::from(SATURATED_32),
            ))
        {
            return Err(ArchiveFault::AmbiguousEnd {
                detail: "the end record and the ZIP64 end record disagree".to_owned(),
            });
        }
        if !(disk == 0 || disk == SATURATED_16)
            || !(central_disk == 0 || central_disk == SATURATED_16)
        {
            return Err(malformed("a multi-volume archive"));
        }
        if z64.record_start != z64.central_start.saturating_add(z64.central_size) {
            return Err(placement(
                z64.central_start.saturating_add(z64.central_size),
                z64.record_start,
                "the central directory",
            ));
        }
        End {
            central_start: z64.central_start,
            central_size: z64.central_size,
            entries: z64.entries,
        }
    } else {
        if saturated {
            return Err(malformed(
                "the end record points to ZIP64 records that are not there",
            ));
        }
        if disk != 0 || central_disk != 0 || on_disk != total {
            return Err(malformed("a multi-volume archive"));
        }
        let end = End {
            central_start: u64::from(offset),
            central_size: u64::from(size),
            entries: u64::from(total),
        };
        let central_end = end.central_start + end.central_size;
        if central_end != eocd_at {
            return Err(placement(central_end, eocd_at, "the central directory"));
        }
        end
    };
    Ok(end)
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

struct Zip64End {
    record_start: u64,
    central_start: u64,
    central_size: u64,
    entries: u64,
}

fn read_zip64_end(
    bytes: &Bytes<'_>,
    locator_at: u64,
    locator: &[u8],
) -> Result<Zip64End, ArchiveFault> {
    let mut f = Fields::new(&locator[4..]);
    let (Some(disk), Some(record_start), Some(disks)) = (f.u32(), f.u64(), f.u32()) else {
        return Err(malformed("a short ZIP64 locator"));
    };
    if disk != 0 || disks > 1 {
        return Err(malformed("a multi-volume archive"));
    }
    let record = bytes.read(
        record_start,
        ZIP64_EOCD_MIN_LEN as usize,
        "the ZIP64 end record",
    )?;
    if record[..4] != ZIP64_EOCD_SIG {
        return Err(malformed("the ZIP64 locator points to no ZIP64 end record"));
    }
    let mut f = Fields::new(&record[4..]);
    let record_size = f.u64().unwrap_or_default();
    let (_made_by, _needed) = (f.u16(), f.u16());
    let (Some(disk), Some(central_disk), Some(on_disk), Some(total), Some(size), Some(offset)) =
        (f.u32(), f.u32(), f.u64(), f.u64(), f.u64(), f.u64())
    else {
        return Err(malformed("a short ZIP64 end record"));
    };
    if disk != 0 || central_disk != 0 || on_disk != total {
        return Err(malformed("a multi-volume archive"));
    }
    let record_end = record_start
        .checked_add(12)
        .and_then(|s| s.checked_add(record_size));
    if record_size < ZIP64_EOCD_MIN_LEN - 12 {
        return Err(malformed("a short ZIP64 end record"));
    }
    if record_end != Some(locator_at) {
        return Err(record_end.map_or_else(
            || malformed("the ZIP64 end record's size overflows"),
            |end| placement(end, locator_at, "the ZIP64 end record"),
        ));
    }
    Ok(Zip64End {
        record_start,
        central_start: offset,
        central_size: size,
        entries: total,
    })
}

/// A central-directory record, parsed.
struct Central {
    entry: EntryLayout,
    crc32: u32,
}

/// Reads exactly `end.entries` central records filling exactly `end.central_size` bytes.
fn read_central(bytes: &Bytes<'_>, end: &End) -> Result<Vec<Central>, ArchiveFault> {
    let central_end = end
        .central_start
        .checked_add(end.central_size)
        .filter(|e| *e <= bytes.len)
        .ok_or_else(|| ArchiveFault::Truncated {
            detail: "the central directory extends beyond the end of the file".to_owned(),
        })?;
    let mut at = end.central_start;
    // The count is capped by the budget before this runs; reserve no more than a sane amount.
    let mut entries = Vec::with_capacity(usize::try_from(end.entries.min(65_536)).unwrap_or(0));
    for index in 0..end.entries {
        if at + CENTRAL_LEN as u64 > central_end {
            return Err(malformed(format!(
                "the central directory holds fewer records than the {} announced",
                end.entries
            )));
        }
        let (central, record_len) = read_central_record(bytes, at, index)?;
        if at + record_len > central_end {
            return Err(malformed(format!(
                "central record #{index} runs past the central directory"
            )));
        }
        entries.push(central);
        at += record_len;
    }
    if at != central_end {
        return Err(malformed(format!(
            "{} bytes of the central directory hold no record",
            central_end - at
        )));
    }
    Ok(entries)
}

/// One central record at `at`, and its length.
fn read_central_record(
    bytes: &Bytes<'_>,
    at: u64,
    index: u64,
) -> Result<(Central, u64), ArchiveFault> {
    let fixed = bytes.read(at, CENTRAL_LEN, "a central directory record")?;
    if fixed[..4] != CENTRAL_SIG {
        return Err(malformed(format!(
            "central record #{index} has no signature"
        )));
    }
    let short = || malformed("a short central directory record");
    let mut f = Fields::new(&fixed[4..]);
    let _made_by_and_needed = f.take(4);
    let flags = f.u16().ok_or_else(short)?;
    let method = f.u16().ok_or_else(short)?;
    let _time_and_date = f.take(4);
    let crc32 = f.u32().ok_or_else(short)?;
    let size32 = f.u32().ok_or_else(short)?;
    let usize32 = f.u32().ok_or_else(short)?;
    let name_len = f.u16().ok_or_else(short)?;
    let extra_len = f.u16().ok_or_else(short)?;
    let comment_len = f.u16().ok_or_else(short)?;
    let disk = f.u16().ok_or_else(short)?;
    let _attributes = f.take(6);
    let offset32 = f.u32().ok_or_else(short)?;

    let variable = usize::from(name_len) + usize::from(extra_len);
    let record_len = CENTRAL_LEN as u64 + variable as u64 + u64::from(comment_len);
    let rest = bytes.read(at + CENTRAL_LEN as u64, variable, "a central record")?;
    let (name, extra) = rest.split_at(usize::from(name_len));
    let extras = parse_extras(extra).ok_or_else(|| {
        malformed(format!(
            "the extra field of {} is malformed",
            name_for_error(name)
        ))
    })?;
    let mut zip64 = extra_data(&extras, ZIP64_EXTRA).map(Fields::new);
    let mut widen = |value: u32, what: &str| -> Result<u64, ArchiveFault> {
        if value != SATURATED_32 {
            return Ok(u64::from(value));
        }
        zip64.as_mut().and_then(Fields::u64).ok_or_else(|| {
            malformed(format!(
                "{} has no ZIP64 {what} though its record says so",
                name_for_error(name)
            ))
        })
    };
    let uncompressed_size = widen(usize32, "size")?;
    let compressed_size = widen(size32, "compressed size")?;
    let header_start = widen(offset32, "offset")?;
    if disk != 0 && disk != SATURATED_16 {
        return Err(malformed("a multi-volume archive"));
    }
    let aes = aes_field(&extras, name)?;
    Ok((
        Central {
            entry: EntryLayout {
                name: name.to_vec(),
                header_start,
                data_start: 0,
                compressed_size,
                uncompressed_size,
                method,
                flags,
                aes,
            },
            crc32,
        },
        record_len,
    ))
}

/// Splits an extra field into `(id, data)` records; `None` if they do not fill it exactly or
/// an id repeats (two AES or ZIP64 records would be two readings).
fn parse_extras(extra: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut f = Fields::new(extra);
    let mut out: Vec<(u16, &[u8])> = Vec::new();
    while f.pos < extra.len() {
        let id = f.u16()?;
        let len = f.u16()?;
        let data = f.take(usize::from(len))?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return None;
        }
        out.push((id, data));
    }
    Some(out)
}

fn extra_data<'a>(extras: &[(u16, &'a [u8])], id: u16) -> Option<&'a [u8]> {
    extras.iter().find(|(i, _)| *i == id).map(|(_, d)| *d)
}

/// The AE-x extra field, checked.
fn aes_field(extras: &[(u16, &[u8])], name: &[u8]) -> Result<Option<AesField>, ArchiveFault> {
    let Some(data) = extra_data(extras, AES_EXTRA) else {
        return Ok(None);
    };
    let bad = || {
        malformed(format!(
            "the AES field of {} is malformed",
            name_for_error(name)
        ))
    };
    if data.len() != 7 || &data[2..4] != b"AE" {
        return Err(bad());
    }
    let vendor_version = u16::from_le_bytes([data[0], data[1]]);
    let strength = match data[4] {
        1 => AesStrength::Aes128,
        2 => AesStrength::Aes192,
        3 => AesStrength::Aes256,
        _ => return Err(bad()),
    };
    if !(1..=2).contains(&vendor_version) {
        return Err(bad());
    }
    Ok(Some(AesField {
        vendor_version,
        strength,
        method: u16::from_le_bytes([data[5], data[6]]),
    }))
}

/// Whether a name is safe to extract anywhere: see the module documentation.
fn is_safe_name(name: &[u8]) -> bool {
    if name.is_empty() || name[0] == b'/' {
        return false;
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return false;
    }
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let mut segments = trimmed.split(|&b| b == b'/');
    let drive = |s: &[u8]| s.len() >= 2 && s[0].is_ascii_alphabetic() && s[1] == b':';
    if segments.clone().next().is_some_and(drive) {
        return false;
    }
    segments.all(|s| !s.is_empty() && s != b"." && s != b"..")
}

/// Names safe and distinct after normalisation.
fn check_names(central: &[Central]) -> Result<(), ArchiveFault> {
    let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(central.len());
    for c in central {
        let name = &c.entry.name;
        if !is_safe_name(name) {
            return Err(ArchiveFault::UnsafeName {
                entry: name_for_error(name),
            });
        }
        let normal = name.strip_suffix(b"/").unwrap_or(name).to_ascii_lowercase();
        if !seen.insert(normal) {
            return Err(ArchiveFault::DuplicateEntry {
                entry: name_for_error(name),
            });
        }
    }
    Ok(())
}

/// Walks the entries in order from offset 0, checking each local header against its central
/// record and that entries follow each other with nothing in between.
fn check_locals(
    bytes: &Bytes<'_>,
    central: Vec<Central>,
    central_start: u64,
) -> Result<Vec<EntryLayout>, ArchiveFault> {
    let mut cursor = 0u64;
    let mut entries = Vec::with_capacity(central.len());
    for Central { mut entry, crc32 } in central {
        if entry.header_start != cursor {
            return Err(placement(
                cursor,
                entry.header_start,
                &format!("the entry before {}", name_for_error(&entry.name)),
            ));
        }
        let data_end = check_local(bytes, &mut entry, crc32)?;
        if data_end > central_start {
            return Err(ArchiveFault::Overlap {
                detail: format!(
                    "entry {} overlaps the central directory",
                    name_for_error(&entry.name)
                ),
            });
        }
        cursor = data_end;
        entries.push(entry);
    }
    if cursor != central_start {
        return Err(placement(cursor, central_start, "the last entry"));
    }
    Ok(entries)
}

/// Checks one local header (and data descriptor); returns the offset after the entry.
fn check_local(
    bytes: &Bytes<'_>,
    entry: &mut EntryLayout,
    crc32: u32,
) -> Result<u64, ArchiveFault> {
    let shown = name_for_error(&entry.name);
    let fixed = bytes.read(
        entry.header_start,
        LOCAL_LEN,
        &format!("the local header of {shown}"),
    )?;
    if fixed[..4] != LOCAL_SIG {
        return Err(malformed(format!("{shown} has no local header")));
    }
    let mismatch = |field: &str| ArchiveFault::HeaderMismatch {
        entry: shown.clone(),
        field: field.to_owned(),
    };
    let short = || malformed("a short local header");
    let mut f = Fields::new(&fixed[4..]);
    let _needed = f.take(2);
    let flags = f.u16().ok_or_else(short)?;
    let method = f.u16().ok_or_else(short)?;
    let _time_and_date = f.take(4);
    let local_crc = f.u32().ok_or_else(short)?;
    let size32 = f.u32().ok_or_else(short)?;
    let usize32 = f.u32().ok_or_else(short)?;
    let name_len = f.u16().ok_or_else(short)?;
    let extra_len = f.u16().ok_or_else(short)?;
    let variable = bytes.read(
        entry.header_start + LOCAL_LEN as u64,
        usize::from(name_len) + usize::from(extra_len),
        &format!("the local header of {shown}"),
    )?;
    let (name, extra) = variable.split_at(usize::from(name_len));
    if name != entry.name.as_slice() {
        return Err(mismatch("name"));
    }
    if flags != entry.flags {
        return Err(mismatch("flags"));
    }
    if method != entry.method {
        return Err(mismatch("method"));
    }
    let extras = parse_extras(extra)
        .ok_or_else(|| malformed(format!("the local extra field of {shown} is malformed")))?;
    if aes_field(&extras, name)? != entry.aes {
        return Err(mismatch("AES extra field"));
    }
    let zip64 = extra_data(&extras, ZIP64_EXTRA);
    let (local_size, local_compressed) = if usize32 == SATURATED_32 || size32 == SATURATED_32 {
        let mut z = Fields::new(zip64.ok_or_else(|| mismatch("ZIP64 sizes"))?);
        (
            z.u64().ok_or_else(|| mismatch("ZIP64 sizes"))?,
            z.u64().ok_or_else(|| mismatch("ZIP64 sizes"))?,
        )
    } else {
        (u64::from(usize32), u64::from(size32))
    };
    let deferred = flags & DESCRIPTOR_FLAG != 0;
    let agrees = |local: u64, central: u64| local == central || (deferred && local == 0);
    if !agrees(u64::from(local_crc), u64::from(crc32)) {
        return Err(mismatch("CRC-32"));
    }
    if !agrees(local_compressed, entry.compressed_size) {
        return Err(mismatch("compressed size"));
    }
    if !agrees(local_size, entry.uncompressed_size) {
        return Err(mismatch("size"));
    }
    entry.data_start = entry.header_start + LOCAL_LEN as u64 + variable.len() as u64;
    let data_end = entry
        .data_start
        .checked_add(entry.compressed_size)
        .filter(|end| *end <= bytes.len)
        .ok_or_else(|| ArchiveFault::Truncated {
            detail: format!("entry {shown} extends beyond the end of the file"),
        })?;
    if !deferred {
        return Ok(data_end);
    }
    check_descriptor(bytes, entry, crc32, data_end, zip64.is_some())
}

/// Checks the data descriptor after a deferred entry; returns the offset after it.
fn check_descriptor(
    bytes: &Bytes<'_>,
    entry: &EntryLayout,
    crc32: u32,
    data_end: u64,
    wide: bool,
) -> Result<u64, ArchiveFault> {
    let shown = name_for_error(&entry.name);
    let size_len = if wide { 8 } else { 4 };
    let longest = 4 + 4 + 2 * size_len;
    let available = bytes.len.saturating_sub(data_end).min(longest as u64);
    // At most 24 bytes.
    let record = bytes.read(data_end, available as usize, "a data descriptor")?;
    let signed = record.get(..4) == Some(&DESCRIPTOR_SIG[..]);
    let body = if signed { &record[4..] } else { &record[..] };
    let mut f = Fields::new(body);
    let (crc, compressed, size) = if wide {
        (f.u32(), f.u64(), f.u64())
    } else {
        (f.u32(), f.u32().map(u64::from), f.u32().map(u64::from))
    };
    let (Some(crc), Some(compressed), Some(size)) = (crc, compressed, size) else {
        return Err(ArchiveFault::Truncated {
            detail: format!("the data descriptor of {shown} extends beyond the end of the file"),
        });
    };
    if crc != crc32 || compressed != entry.compressed_size || size != entry.uncompressed_size {
        return Err(ArchiveFault::HeaderMismatch {
            entry: shown,
            field: "data descriptor".to_owned(),
        });
    }
    let len = if signed { 4 } else { 0 } + 4 + 2 * size_len;
    Ok(data_end + len as u64)
}
