//! The entries themselves: walked in order from offset 0, back to back, each local header (and
//! data descriptor, when flagged) agreeing with its central record.

use crate::archive::fault::ArchiveFault;
use crate::archive::names::name_for_error;

use super::central::{aes_field, extra_data, parse_extras, Central};
use super::{malformed, placement, Bytes, EntryLayout, Fields, SATURATED_32, ZIP64_EXTRA};

const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR_SIG: [u8; 4] = *b"PK\x07\x08";
const LOCAL_LEN: usize = 30;
const DESCRIPTOR_FLAG: u16 = 0x0008;

/// Walks the entries in order from offset 0, checking each local header against its central
/// record and that entries follow each other with nothing in between.
pub(super) fn check_locals(
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
