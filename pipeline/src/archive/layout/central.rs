//! The central directory: exactly the announced records filling exactly the announced size,
//! each parsed with its extra fields (ZIP64 sizes, the AE-x field).

use crate::archive::fault::ArchiveFault;
use crate::archive::limits::AesStrength;
use crate::archive::names::name_for_error;

use super::end::End;
use super::{
    malformed, AesField, Bytes, EntryLayout, Fields, SATURATED_16, SATURATED_32, ZIP64_EXTRA,
};

const CENTRAL_SIG: [u8; 4] = *b"PK\x01\x02";
const CENTRAL_LEN: usize = 46;
const AES_EXTRA: u16 = 0x9901;

/// A central-directory record, parsed.
pub(super) struct Central {
    pub(super) entry: EntryLayout,
    pub(super) crc32: u32,
}

/// Reads exactly `end.entries` central records filling exactly `end.central_size` bytes.
pub(super) fn read_central(bytes: &Bytes<'_>, end: &End) -> Result<Vec<Central>, ArchiveFault> {
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
pub(super) fn parse_extras(extra: &[u8]) -> Option<Vec<(u16, &[u8])>> {
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

pub(super) fn extra_data<'a>(extras: &[(u16, &'a [u8])], id: u16) -> Option<&'a [u8]> {
    extras.iter().find(|(i, _)| *i == id).map(|(_, d)| *d)
}

/// The AE-x extra field, checked.
pub(super) fn aes_field(
    extras: &[(u16, &[u8])],
    name: &[u8],
) -> Result<Option<AesField>, ArchiveFault> {
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
