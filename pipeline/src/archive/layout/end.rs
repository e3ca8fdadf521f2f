//! The end of the archive: exactly one end of central directory (EOCD) record, whose comment
//! reaches the end of the file, the ZIP64 end records when present, and the central directory
//! right before them.

use crate::archive::fault::ArchiveFault;

use super::{malformed, placement, Bytes, Fields, SATURATED_16, SATURATED_32};

const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
const ZIP64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
const ZIP64_EOCD_SIG: [u8; 4] = *b"PK\x06\x06";
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_MIN_LEN: u64 = 56;
const MAX_COMMENT: u64 = 65_535;

/// Where the central directory is, from the end records.
pub(super) struct End {
    pub(super) central_start: u64,
    pub(super) central_size: u64,
    pub(super) entries: u64,
}

/// Finds the one EOCD record (and the ZIP64 end records, when present).
pub(super) fn find_end(bytes: &Bytes<'_>) -> Result<End, ArchiveFault> {
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
