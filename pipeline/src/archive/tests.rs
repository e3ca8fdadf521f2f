//! Unit tests of the archive verifier, on archives written by the zip crate.

use super::reader::POSITIONED_BUF;
use super::*;
use std::io::SeekFrom;
use std::io::Write;
use std::os::unix::fs::FileExt;
use zip::unstable::write::FileOptionsExt;
use zip::write::SimpleFileOptions;
use zip::AesMode;
use zip::CompressionMethod;

const PASSWORD: &str = "Tenant-Password-0123456789";

/// How a test entry is written.
#[derive(Clone, Copy)]
enum Enc {
    Aes,
    Plain,
    ZipCrypto,
}

struct Entry {
    name: String,
    data: Vec<u8>,
    enc: Enc,
    deflate: bool,
}

fn entry(name: &str, data: impl Into<Vec<u8>>) -> Entry {
    Entry {
        name: name.to_owned(),
        data: data.into(),
        enc: Enc::Aes,
        deflate: true,
    }
}

fn csv(table: &str) -> Vec<u8> {
    format!("id,name\n1,{table} one\n2,{table} two\n").into_bytes()
}

/// Pseudo-random bytes (xorshift) that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A 3CX-layout backup: every core table, a prompt (deflated) and a recording (stored).
fn layout() -> Vec<Entry> {
    let mut entries: Vec<Entry> = CORE_TABLES
        .iter()
        .map(|t| entry(&format!("DbTables/{t}.csv"), csv(t)))
        .collect();
    entries.push(entry("DbTables/cdroutput.csv", b"a,b\n".repeat(5000)));
    let mut wav = entry("Recordings/100/call.wav", noise(300_000, 7));
    wav.deflate = false;
    entries.push(wav);
    entries
}

fn write_zip(entries: &[Entry], password: &str) -> tempfile::NamedTempFile {
    let tmp = tempfile::NamedTempFile::new().expect("tempfile");
    let mut zip = zip::ZipWriter::new(tmp.reopen().expect("reopen"));
    zip.add_directory("Recordings/", SimpleFileOptions::default())
        .expect("dir");
    for e in entries {
        let method = if e.deflate {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let base = SimpleFileOptions::default().compression_method(method);
        let options = match e.enc {
            Enc::Aes => base.with_aes_encryption(AesMode::Aes256, password),
            Enc::Plain => base,
            Enc::ZipCrypto => base
                .with_deprecated_encryption(password.as_bytes())
                .expect("zipcrypto"),
        };
        zip.start_file(e.name.as_str(), options).expect("start");
        zip.write_all(&e.data).expect("write");
    }
    zip.finish().expect("finish");
    tmp
}

fn verify(tmp: &tempfile::NamedTempFile, password: &str) -> Result<ArchiveReport, ArchiveFault> {
    verify_archive(
        tmp.reopen().expect("reopen"),
        &SecretString::from(password.to_owned()),
        CORE_TABLES,
        &VerifyLimits::default(),
    )
}

/// Offset of the data of entry `name` (after its local header).
fn data_range(tmp: &tempfile::NamedTempFile, name: &str) -> (u64, u64) {
    let mut archive = ZipArchive::new(tmp.reopen().expect("reopen")).expect("zip");
    let index = archive.index_for_name(name).expect("entry");
    let file = archive.by_index_raw(index).expect("raw");
    (
        file.data_start().expect("data start"),
        file.compressed_size(),
    )
}

fn flip_byte(tmp: &tempfile::NamedTempFile, offset: u64) {
    let file = tmp.reopen().expect("reopen");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read");
    byte[0] ^= 0x20;
    file.write_all_at(&byte, offset).expect("write");
}

#[test]
fn a_good_archive_is_verified_with_its_tables() {
    let entries = layout();
    let tmp = write_zip(&entries, PASSWORD);
    let report = verify(&tmp, PASSWORD).expect("verified");
    assert_eq!(report.entries, entries.len() as u64);
    let inflated: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
    assert_eq!(report.inflated_bytes, inflated);
    assert!(report.compressed_bytes > 0 && report.compressed_bytes < inflated);
    let mut expected: Vec<String> = CORE_TABLES.iter().map(|t| (*t).to_owned()).collect();
    expected.push("cdroutput".to_owned());
    expected.sort();
    assert_eq!(report.tables, expected);
}

#[test]
fn many_small_entries_are_all_verified() {
    let mut entries = layout();
    for i in 0..200 {
        entries.push(entry(
            &format!("Prompts/p{i}.wav"),
            noise(1000 + i, i as u64),
        ));
    }
    let tmp = write_zip(&entries, PASSWORD);
    let report = verify(&tmp, PASSWORD).expect("verified");
    assert_eq!(report.entries, entries.len() as u64);
}

#[test]
fn a_wrong_password_is_wrong_key() {
    let tmp = write_zip(&layout(), PASSWORD);
    let err = verify(&tmp, "not-the-password").unwrap_err();
    assert!(matches!(err, ArchiveFault::WrongKey), "{err:?}");
    assert_eq!(err.reason(), "wrong_key");
}

#[test]
fn a_flipped_byte_in_entry_data_is_entry_corrupt() {
    for (name, deflated) in [
        ("Recordings/100/call.wav", false),
        ("DbTables/cdroutput.csv", true),
    ] {
        let tmp = write_zip(&layout(), PASSWORD);
        let (start, len) = data_range(&tmp, name);
        assert!(len > 100, "{name} too small to corrupt in its middle");
        flip_byte(&tmp, start + len / 2);
        let err = verify(&tmp, PASSWORD).unwrap_err();
        match &err {
            ArchiveFault::EntryCorrupt { entry, .. } => assert_eq!(entry, name),
            other => panic!("{name} (deflated {deflated}): expected EntryCorrupt, got {other:?}"),
        }
        assert_eq!(err.reason(), "entry_corrupt");
    }
}

#[test]
fn the_lowest_faulty_entry_is_reported() {
    let mut entries = layout();
    for i in 0..20 {
        let mut e = entry(&format!("Recordings/r{i:02}.wav"), noise(100_000, i));
        e.deflate = false;
        entries.push(e);
    }
    let tmp = write_zip(&entries, PASSWORD);
    for name in [
        "Recordings/r15.wav",
        "Recordings/r03.wav",
        "Recordings/r09.wav",
    ] {
        let (start, len) = data_range(&tmp, name);
        flip_byte(&tmp, start + len / 2);
    }
    for _ in 0..3 {
        match verify(&tmp, PASSWORD).unwrap_err() {
            ArchiveFault::EntryCorrupt { entry, .. } => assert_eq!(entry, "Recordings/r03.wav"),
            other => panic!("expected EntryCorrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_corrupt_password_verifier_in_one_entry_is_entry_corrupt() {
    let tmp = write_zip(&layout(), PASSWORD);
    // AES-256 data starts with a 16-byte salt, then the 2-byte password verifier.
    let (start, _) = data_range(&tmp, "DbTables/queue.csv");
    flip_byte(&tmp, start + 16);
    match verify(&tmp, PASSWORD).unwrap_err() {
        ArchiveFault::EntryCorrupt { entry, .. } => assert_eq!(entry, "DbTables/queue.csv"),
        other => panic!("expected EntryCorrupt, got {other:?}"),
    }
}

#[test]
fn a_truncated_file_is_truncated() {
    let tmp = write_zip(&layout(), PASSWORD);
    let len = tmp.as_file().metadata().expect("metadata").len();
    for keep in [len - 10, len / 2, 100] {
        tmp.as_file().set_len(keep).expect("truncate");
        let err = verify(&tmp, PASSWORD).unwrap_err();
        assert!(
            matches!(err, ArchiveFault::Truncated { .. }),
            "{keep}: {err:?}"
        );
        assert_eq!(err.reason(), "archive_truncated");
    }
}

#[test]
fn garbage_and_empty_files_are_truncated() {
    let tmp = tempfile::NamedTempFile::new().expect("tempfile");
    let err = verify(&tmp, PASSWORD).unwrap_err();
    assert!(matches!(err, ArchiveFault::Truncated { .. }), "{err:?}");
    tmp.as_file()
        .write_all_at(&noise(100_000, 3), 0)
        .expect("write");
    let err = verify(&tmp, PASSWORD).unwrap_err();
    assert!(matches!(err, ArchiveFault::Truncated { .. }), "{err:?}");
}

#[test]
fn a_missing_core_table_is_structure_incomplete() {
    let entries: Vec<Entry> = layout()
        .into_iter()
        .filter(|e| e.name != "DbTables/extension.csv")
        .collect();
    let tmp = write_zip(&entries, PASSWORD);
    let err = verify(&tmp, PASSWORD).unwrap_err();
    match &err {
        ArchiveFault::StructureIncomplete { missing } => {
            assert_eq!(missing, &vec!["extension".to_owned()]);
        }
        other => panic!("expected StructureIncomplete, got {other:?}"),
    }
    assert!(err.to_string().contains("extension"), "{err}");
    assert_eq!(err.reason(), "structure_incomplete");
}

#[test]
fn a_backup_without_db_tables_names_the_folder() {
    let mut only = entry("Recordings/x.wav", noise(10, 1));
    only.deflate = false;
    let tmp = write_zip(&[only], PASSWORD);
    match verify(&tmp, PASSWORD).unwrap_err() {
        ArchiveFault::StructureIncomplete { missing } => {
            assert_eq!(missing[0], "DbTables/");
            assert_eq!(missing.len(), 1 + CORE_TABLES.len());
        }
        other => panic!("expected StructureIncomplete, got {other:?}"),
    }
}

#[test]
fn an_unencrypted_entry_is_not_encrypted() {
    let mut entries = layout();
    let mut plain = entry("License/license.xml", b"<license/>".to_vec());
    plain.enc = Enc::Plain;
    entries.push(plain);
    let tmp = write_zip(&entries, PASSWORD);
    let err = verify(&tmp, PASSWORD).unwrap_err();
    match &err {
        ArchiveFault::NotEncrypted { entry } => assert_eq!(entry, "License/license.xml"),
        other => panic!("expected NotEncrypted, got {other:?}"),
    }
    assert_eq!(err.reason(), "not_encrypted");
}

#[test]
fn a_zipcrypto_entry_is_weak_encryption() {
    let mut entries = layout();
    entries[2].enc = Enc::ZipCrypto;
    let tmp = write_zip(&entries, PASSWORD);
    let err = verify(&tmp, PASSWORD).unwrap_err();
    match &err {
        ArchiveFault::WeakEncryption { entry, cipher, .. } => {
            assert_eq!(entry, &entries[2].name);
            assert_eq!(cipher, "ZipCrypto");
        }
        other => panic!("expected WeakEncryption, got {other:?}"),
    }
    assert_eq!(err.reason(), "weak_encryption");
}

fn bytes_of(tmp: &tempfile::NamedTempFile) -> Vec<u8> {
    std::fs::read(tmp.path()).expect("read archive")
}

fn rewrite(tmp: &tempfile::NamedTempFile, bytes: &[u8]) {
    std::fs::write(tmp.path(), bytes).expect("write archive");
}

/// Replaces every occurrence of `from` (a name: in the local header and the central record)
/// with `to`, of the same length.
fn rename(tmp: &tempfile::NamedTempFile, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut bytes = bytes_of(tmp);
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    rewrite(tmp, &bytes);
    found
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Offset of the end of central directory record (no comment).
fn eocd(bytes: &[u8]) -> usize {
    bytes.len() - 22
}

/// Offsets of the central records.
fn central_records(bytes: &[u8]) -> Vec<usize> {
    let end = eocd(bytes);
    let mut at = u32_at(bytes, end + 16) as usize;
    let mut out = Vec::new();
    while at < end {
        out.push(at);
        let len = |o: usize| usize::from(u16::from_le_bytes([bytes[at + o], bytes[at + o + 1]]));
        at += 46 + len(28) + len(30) + len(32);
    }
    out
}

/// Inserts `junk` at `at` and moves every offset after it, as a tool that wraps or pads an
/// archive would: the result is consistent, only the extra bytes belong to no entry.
fn insert_consistently(tmp: &tempfile::NamedTempFile, at: usize, junk: &[u8]) {
    let mut bytes = bytes_of(tmp);
    let shift = u32::try_from(junk.len()).expect("small");
    for record in central_records(&bytes) {
        let offset = u32_at(&bytes, record + 42);
        if offset as usize >= at {
            put_u32(&mut bytes, record + 42, offset + shift);
        }
    }
    let end = eocd(&bytes);
    let central = u32_at(&bytes, end + 16);
    put_u32(&mut bytes, end + 16, central + shift);
    bytes.splice(at..at, junk.iter().copied());
    rewrite(tmp, &bytes);
}

fn assert_reason(result: Result<ArchiveReport, ArchiveFault>, reason: &str, case: &str) {
    match result {
        Ok(report) => panic!(
            "{case}: verified ({} entries), expected {reason}",
            report.entries
        ),
        Err(fault) => assert_eq!(fault.reason(), reason, "{case}: {fault}"),
    }
}

#[test]
fn the_report_counts_encryption_and_compression() {
    let entries = layout();
    let tmp = write_zip(&entries, PASSWORD);
    let report = verify(&tmp, PASSWORD).expect("verified");
    let files = entries.len() as u64;
    assert_eq!(report.encryption, [("aes256".to_owned(), files)].into());
    assert_eq!(
        report.compression,
        [("deflate".to_owned(), files - 1), ("stored".to_owned(), 1)].into()
    );
}

/// Offset of the local header of entry `name`, from the central directory.
fn local_header_of(bytes: &[u8], name: &[u8]) -> usize {
    central_records(bytes)
        .into_iter()
        .find(|&r| {
            let len = usize::from(u16::from_le_bytes([bytes[r + 28], bytes[r + 29]]));
            &bytes[r + 46..r + 46 + len] == name
        })
        .map(|r| u32_at(bytes, r + 42) as usize)
        .expect("entry in the central directory")
}

#[test]
fn a_duplicate_name_is_refused_even_when_the_first_copy_is_corrupt() {
    let mut entries = layout();
    entries.insert(0, entry("DbTables/dX.csv", b"garbage,".repeat(40)));
    for twin in [
        &b"DbTables/dn.csv"[..],
        b"DbTables/DN.csv",
        b"dbtables/dn.csv",
    ] {
        let tmp = write_zip(&entries, PASSWORD);
        // The first copy (the one 7-Zip extracts) is corrupt: a byte of its data flipped.
        let mut bytes = bytes_of(&tmp);
        let header = local_header_of(&bytes, b"DbTables/dX.csv");
        bytes[header + 30 + 15 + 11 + 20] ^= 0x40;
        rewrite(&tmp, &bytes);
        assert_eq!(rename(&tmp, b"DbTables/dX.csv", twin), 2);
        assert_reason(
            verify(&tmp, PASSWORD),
            "duplicate_entry",
            &String::from_utf8_lossy(twin),
        );
    }
}

#[test]
fn unsafe_names_are_refused() {
    let mut entries = layout();
    let placeholder = "Prompts/placeholder.wav";
    entries.push(entry(placeholder, noise(100, 5)));
    for prefix in [
        "../../../../tmp/",
        "/etc/cron.d/",
        "Prompts\\",
        "C:/",
        "c:",
        "Prompts/./",
        "Prompts/../",
        "Prompts//",
        "Prompts/\0",
        "Prompts/\u{1b}",
        "Prompts/\u{7f}",
    ] {
        let mut name = prefix.to_owned();
        while name.len() < placeholder.len() {
            name.push('x');
        }
        let tmp = write_zip(&entries, PASSWORD);
        assert_eq!(rename(&tmp, placeholder.as_bytes(), name.as_bytes()), 2);
        assert_reason(
            verify(&tmp, PASSWORD),
            "unsafe_entry_name",
            &format!("{name:?}"),
        );
    }
}

#[test]
fn two_central_records_over_one_entry_are_refused() {
    let tmp = write_zip(&layout(), PASSWORD);
    let mut bytes = bytes_of(&tmp);
    let records = central_records(&bytes);
    // The fourth record points at the third entry's bytes (whose local name differs).
    let third = u32_at(&bytes, records[2] + 42);
    put_u32(&mut bytes, records[3] + 42, third);
    rewrite(&tmp, &bytes);
    assert_reason(verify(&tmp, PASSWORD), "entry_overlap", "overlap");
}

#[test]
fn entries_out_of_order_are_refused() {
    let tmp = write_zip(&layout(), PASSWORD);
    let mut bytes = bytes_of(&tmp);
    let records = central_records(&bytes);
    // Swap the offsets (not the names) of two records: each name now meets the other's header.
    let (a, b) = (
        u32_at(&bytes, records[2] + 42),
        u32_at(&bytes, records[3] + 42),
    );
    put_u32(&mut bytes, records[2] + 42, b);
    put_u32(&mut bytes, records[3] + 42, a);
    rewrite(&tmp, &bytes);
    assert_reason(verify(&tmp, PASSWORD), "stray_data", "swapped offsets");
}

#[test]
fn a_local_header_that_disagrees_with_the_central_directory_is_refused() {
    let name = b"DbTables/queue.csv";
    // (offset in the local header, new byte, what differs)
    for (offset, value, case) in [
        (30 + 13, b'X', "name"),
        (8, 8, "method"),
        (6, 0x09, "flags"),
        (18, 0x01, "compressed size"),
        (30 + name.len() + 8, 1, "AES strength"),
    ] {
        let tmp = write_zip(&layout(), PASSWORD);
        let mut bytes = bytes_of(&tmp);
        let header = local_header_of(&bytes, name);
        assert_ne!(
            bytes[header + offset],
            value,
            "{case}: the byte must change"
        );
        bytes[header + offset] = value;
        rewrite(&tmp, &bytes);
        assert_reason(verify(&tmp, PASSWORD), "header_mismatch", case);
    }
}

#[test]
fn bytes_outside_every_entry_are_refused() {
    // Before the first entry (a self-extractor's stub), between two entries, and before the
    // central directory, each with every offset moved to match.
    for at in [
        Placement::Start,
        Placement::Between,
        Placement::BeforeCentral,
    ] {
        let tmp = write_zip(&layout(), PASSWORD);
        let bytes = bytes_of(&tmp);
        let offset = match at {
            Placement::Start => 0,
            Placement::Between => u32_at(&bytes, central_records(&bytes)[3] + 42) as usize,
            Placement::BeforeCentral => u32_at(&bytes, eocd(&bytes) + 16) as usize,
        };
        insert_consistently(&tmp, offset, &[0x55; 64]);
        assert_reason(verify(&tmp, PASSWORD), "stray_data", &format!("{at:?}"));
    }
}

#[derive(Debug, Clone, Copy)]
enum Placement {
    Start,
    Between,
    BeforeCentral,
}

#[test]
fn a_second_end_record_is_refused() {
    let tmp = write_zip(&layout(), PASSWORD);
    let mut bytes = bytes_of(&tmp);
    let end = eocd(&bytes);
    let copy = bytes[end..].to_vec();
    // The comment holds a second, complete end record.
    bytes[end + 20..end + 22].copy_from_slice(&22u16.to_le_bytes());
    bytes.extend_from_slice(&copy);
    rewrite(&tmp, &bytes);
    assert_reason(
        verify(&tmp, PASSWORD),
        "ambiguous_end",
        "end record in the comment",
    );
}

#[test]
fn weaker_aes_is_refused_unless_the_policy_allows_it() {
    for (mode, name) in [(AesMode::Aes128, "aes128"), (AesMode::Aes192, "aes192")] {
        let entries = layout();
        let tmp = tempfile::NamedTempFile::new().expect("tempfile");
        let mut zip = zip::ZipWriter::new(tmp.reopen().expect("reopen"));
        for e in &entries {
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .with_aes_encryption(mode, PASSWORD);
            zip.start_file(e.name.as_str(), options).expect("start");
            zip.write_all(&e.data).expect("write");
        }
        zip.finish().expect("finish");
        match verify(&tmp, PASSWORD).unwrap_err() {
            ArchiveFault::WeakEncryption {
                cipher, required, ..
            } => {
                assert_eq!(cipher, name);
                assert_eq!(required, "aes256");
            }
            other => panic!("{name}: expected WeakEncryption, got {other:?}"),
        }
        let allowed = VerifyLimits {
            minimum_encryption: AesStrength::Aes128,
            ..VerifyLimits::default()
        };
        let report = verify_archive(
            tmp.reopen().expect("reopen"),
            &SecretString::from(PASSWORD.to_owned()),
            CORE_TABLES,
            &allowed,
        )
        .expect("verified under a policy that allows it");
        assert_eq!(
            report.encryption,
            [(name.to_owned(), entries.len() as u64)].into()
        );
    }
}

#[test]
fn the_budget_bounds_entries_bytes_and_time() {
    let tmp = write_zip(&layout(), PASSWORD);
    for (limits, case) in [
        (
            VerifyLimits {
                max_entries: 3,
                ..VerifyLimits::default()
            },
            "entries",
        ),
        (
            VerifyLimits {
                max_inflated_bytes: 1000,
                ..VerifyLimits::default()
            },
            "bytes",
        ),
        (
            VerifyLimits {
                max_duration: std::time::Duration::ZERO,
                ..VerifyLimits::default()
            },
            "time",
        ),
    ] {
        let result = verify_archive(
            tmp.reopen().expect("reopen"),
            &SecretString::from(PASSWORD.to_owned()),
            CORE_TABLES,
            &limits,
        );
        assert_reason(result, "archive_budget", case);
    }
}

#[test]
fn reason_codes_are_distinct() {
    let faults = [
        ArchiveFault::Truncated {
            detail: String::new(),
        },
        ArchiveFault::WrongKey,
        ArchiveFault::EntryCorrupt {
            entry: String::new(),
            detail: String::new(),
        },
        ArchiveFault::NotEncrypted {
            entry: String::new(),
        },
        ArchiveFault::WeakEncryption {
            entry: String::new(),
            cipher: String::new(),
            required: "",
        },
        ArchiveFault::UnsupportedMethod {
            entry: String::new(),
            method: String::new(),
        },
        ArchiveFault::StructureIncomplete { missing: vec![] },
        ArchiveFault::Malformed {
            detail: String::new(),
        },
        ArchiveFault::AmbiguousEnd {
            detail: String::new(),
        },
        ArchiveFault::DuplicateEntry {
            entry: String::new(),
        },
        ArchiveFault::UnsafeName {
            entry: String::new(),
        },
        ArchiveFault::Overlap {
            detail: String::new(),
        },
        ArchiveFault::StrayData {
            detail: String::new(),
        },
        ArchiveFault::HeaderMismatch {
            entry: String::new(),
            field: String::new(),
        },
        ArchiveFault::Budget {
            detail: String::new(),
        },
        ArchiveFault::Io(io::Error::other("x")),
    ];
    let mut reasons: Vec<_> = faults.iter().map(ArchiveFault::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), faults.len());
}

#[test]
fn faults_never_mention_the_password() {
    let tmp = write_zip(&layout(), PASSWORD);
    let err = verify(&tmp, "Wrong-But-Secret-Password").unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("Wrong-But-Secret-Password") && !text.contains(PASSWORD));
}

#[test]
fn positioned_reader_reads_and_seeks_like_the_file() {
    let bytes = noise(3 * POSITIONED_BUF + 123, 11);
    let tmp = tempfile::NamedTempFile::new().expect("tempfile");
    tmp.as_file().write_all_at(&bytes, 0).expect("write");
    let mut reader =
        PositionedReader::new(Arc::new(tmp.reopen().expect("reopen"))).expect("reader");
    assert_eq!(reader.len(), bytes.len() as u64);

    // Small reads through the buffer, large reads around it.
    let mut out = Vec::new();
    let mut small = [0u8; 1000];
    let mut large = vec![0u8; POSITIONED_BUF + 7];
    let mut turn = 0;
    loop {
        let n = if turn % 3 == 2 {
            let n = reader.read(&mut large).expect("read");
            out.extend_from_slice(&large[..n]);
            n
        } else {
            let n = reader.read(&mut small).expect("read");
            out.extend_from_slice(&small[..n]);
            n
        };
        if n == 0 {
            break;
        }
        turn += 1;
    }
    assert_eq!(out, bytes);

    let mut clone = reader.clone();
    clone.seek(SeekFrom::End(-10)).expect("seek");
    let mut tail = Vec::new();
    clone.read_to_end(&mut tail).expect("read");
    assert_eq!(tail, &bytes[bytes.len() - 10..]);
    clone.seek(SeekFrom::Start(5)).expect("seek");
    clone.seek(SeekFrom::Current(5)).expect("seek");
    let mut ten = [0u8; 10];
    clone.read_exact(&mut ten).expect("read");
    assert_eq!(&ten, &bytes[10..20]);
    assert!(clone.seek(SeekFrom::Current(-1000)).is_err());
}
