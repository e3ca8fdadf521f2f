//! The archive verifier against ZIPs written by another tool: 7-Zip (`7z`, Debian package
//! `p7zip-full`). A 3CX-layout directory is archived with WinZip AES-256, verified, then damaged
//! in the ways the ladder must tell apart; one archive is over 4 GiB (ZIP64).
//!
//! `7z` missing from PATH is a test failure, not a skip: these tests are the proof that the
//! verifier reads what other tools write.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use restorable_pipeline::archive::{
    verify_archive, ArchiveFault, ArchiveReport, VerifyLimits, CORE_TABLES,
};
use secrecy::SecretString;

const PASSWORD: &str = "q7HkX2mLp9Rz4VtB8nWc3JdF";

/// Finds `7z` on PATH, or fails the test with what to install.
fn seven_zip() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("7z"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`7z` is not on PATH: these tests need 7-Zip to write the archives \
                 (Debian/Ubuntu: apt-get install -y p7zip-full)"
            )
        })
}

/// Runs `7z a -tzip` in `dir` with the given extra switches, writing `out`.
fn run_7z(dir: &Path, out: &Path, switches: &[&str], inputs: &[&str]) {
    let status = Command::new(seven_zip())
        .current_dir(dir)
        .args(["a", "-tzip", "-bd", "-bso0", "-bsp0", "-y"])
        .args(switches)
        .arg(out)
        .args(inputs)
        .status()
        .expect("run 7z");
    assert!(status.success(), "7z failed: {status}");
}

/// Pseudo-random bytes (xorshift) that do not compress, like audio.
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

/// Writes a 3CX-layout backup directory: every core table with a few rows, a bigger call log
/// table (deflated by 7z) and a recording (stored: noise does not compress).
fn write_layout(dir: &Path) {
    let tables = dir.join("DbTables");
    fs::create_dir_all(&tables).expect("mkdir DbTables");
    for table in CORE_TABLES {
        let rows: String = (1..=5)
            .map(|i| format!("{i},{table}-{i},value {i}\n"))
            .collect();
        fs::write(
            tables.join(format!("{table}.csv")),
            format!("id,name,value\n{rows}"),
        )
        .expect("write table");
    }
    let calls: String = (0..20_000)
        .map(|i| format!("{i},2024-01-01 10:{:02}:00,100,{}\n", i % 60, 200 + i % 50))
        .collect();
    fs::write(tables.join("cl_calls.csv"), calls).expect("write cl_calls");
    let recordings = dir.join("Recordings");
    fs::create_dir_all(&recordings).expect("mkdir Recordings");
    fs::write(recordings.join("x.wav"), noise(1 << 20, 42)).expect("write recording");
}

fn verify(path: &Path, password: &str) -> Result<ArchiveReport, ArchiveFault> {
    verify_archive(
        File::open(path).expect("open archive"),
        &SecretString::from(password.to_owned()),
        CORE_TABLES,
        &VerifyLimits::default(),
    )
}

/// Offset and length of the stored data of entry `name`, read with the zip crate.
fn data_range(path: &Path, name: &str) -> (u64, u64) {
    let mut archive = zip::ZipArchive::new(File::open(path).expect("open")).expect("zip");
    let index = archive.index_for_name(name).expect("entry in archive");
    let entry = archive.by_index_raw(index).expect("raw entry");
    (
        entry.data_start().expect("data start"),
        entry.compressed_size(),
    )
}

fn copy_with_flipped_byte(src: &Path, dst: &Path, offset: u64) {
    fs::copy(src, dst).expect("copy");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dst)
        .expect("open copy");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x01;
    file.write_all_at(&byte, offset).expect("write byte");
}

#[test]
fn seven_zip_aes256_archives_verify_and_faults_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("backup");
    write_layout(&src);
    let good = dir.path().join("good.zip");
    run_7z(
        &src,
        &good,
        &["-mem=AES256", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );

    let report = verify(&good, PASSWORD).expect("7-Zip's AES-256 archive verifies");
    for table in CORE_TABLES {
        assert!(report.tables.iter().any(|t| t == table), "{table} missing");
    }
    assert!(report.tables.iter().any(|t| t == "cl_calls"));
    assert_eq!(report.entries, CORE_TABLES.len() as u64 + 2);
    let expected_inflated: u64 = walk(&src)
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(report.inflated_bytes, expected_inflated);

    // A flipped byte in the middle of the recording's data.
    let (start, len) = data_range(&good, "Recordings/x.wav");
    let corrupt = dir.path().join("corrupt.zip");
    copy_with_flipped_byte(&good, &corrupt, start + len / 2);
    let corrupt_fault = verify(&corrupt, PASSWORD).expect_err("corrupt archive must fail");
    match &corrupt_fault {
        ArchiveFault::EntryCorrupt { entry, .. } => assert_eq!(entry, "Recordings/x.wav"),
        other => panic!("expected EntryCorrupt, got {other:?}"),
    }

    // A flipped byte inside a deflated table.
    let (start, len) = data_range(&good, "DbTables/cl_calls.csv");
    let corrupt_table = dir.path().join("corrupt-table.zip");
    copy_with_flipped_byte(&good, &corrupt_table, start + len / 2);
    let fault = verify(&corrupt_table, PASSWORD).expect_err("corrupt table must fail");
    assert_eq!(fault.reason(), "entry_corrupt", "{fault:?}");

    // Truncated: the download stopped early.
    let truncated = dir.path().join("truncated.zip");
    fs::copy(&good, &truncated).expect("copy");
    let full = fs::metadata(&good).expect("stat").len();
    File::options()
        .write(true)
        .open(&truncated)
        .expect("open")
        .set_len(full * 2 / 3)
        .expect("truncate");
    let truncated_fault = verify(&truncated, PASSWORD).expect_err("truncated archive must fail");

    let wrong_key_fault =
        verify(&good, "not-the-tenant-password").expect_err("wrong key must fail");

    assert_eq!(corrupt_fault.reason(), "entry_corrupt");
    assert_eq!(truncated_fault.reason(), "archive_truncated");
    assert_eq!(wrong_key_fault.reason(), "wrong_key");
}

#[test]
fn seven_zip_zipcrypto_and_missing_tables_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("backup");
    write_layout(&src);

    let legacy = dir.path().join("zipcrypto.zip");
    run_7z(
        &src,
        &legacy,
        &["-mem=ZipCrypto", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );
    let fault = verify(&legacy, PASSWORD).expect_err("ZipCrypto must fail");
    assert_eq!(fault.reason(), "weak_encryption", "{fault:?}");

    let plain = dir.path().join("plain.zip");
    run_7z(&src, &plain, &[], &["DbTables", "Recordings"]);
    let fault = verify(&plain, PASSWORD).expect_err("unencrypted must fail");
    assert_eq!(fault.reason(), "not_encrypted", "{fault:?}");

    fs::remove_file(src.join("DbTables/extension.csv")).expect("remove table");
    let incomplete = dir.path().join("incomplete.zip");
    run_7z(
        &src,
        &incomplete,
        &["-mem=AES256", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );
    match verify(&incomplete, PASSWORD).expect_err("missing table must fail") {
        ArchiveFault::StructureIncomplete { missing } => assert_eq!(missing, vec!["extension"]),
        other => panic!("expected StructureIncomplete, got {other:?}"),
    }
}

/// An archive over 4 GiB (ZIP64) from 7-Zip: a sparse 4.1 GiB recording stored with `-mx0`.
/// Slow-ish (it writes and reads 4.1 GiB); every temporary file is removed at the end.
#[test]
fn seven_zip_zip64_archive_over_4_gib_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("backup");
    write_layout(&src);
    let big_len: u64 = 4_100 * 1024 * 1024;
    let big = src.join("Recordings/big.wav");
    File::create(&big)
        .expect("create sparse file")
        .set_len(big_len)
        .expect("sparse 4.1 GiB");

    let archive = dir.path().join("zip64.zip");
    let started = Instant::now();
    run_7z(
        &src,
        &archive,
        &["-mem=AES256", "-mx0", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );
    let archived_in = started.elapsed();
    fs::remove_file(&big).expect("remove sparse source");
    let archive_len = fs::metadata(&archive).expect("stat").len();
    assert!(
        archive_len > 4 << 30,
        "archive is {archive_len} bytes, not over 4 GiB"
    );

    let started = Instant::now();
    let report = verify(&archive, PASSWORD).expect("ZIP64 archive verifies");
    let verified_in = started.elapsed();
    assert!(report.inflated_bytes > big_len, "{report:?}");
    assert_eq!(report.entries, CORE_TABLES.len() as u64 + 3);
    eprintln!(
        "zip64: {archive_len} bytes archived by 7z in {archived_in:.1?}, verified in \
         {verified_in:.1?} ({:.0} MB/s)",
        archive_len as f64 / verified_in.as_secs_f64() / 1e6
    );

    drop(dir);
}

/// Compares `verify_archive` with `7z t` on one archive of many entries.
/// A benchmark, not a timed test: run with `--ignored --nocapture`.
#[test]
#[ignore = "benchmark: cargo test -p restorable-pipeline --test integration -- archive_7z --ignored --nocapture"]
fn bench_verify_against_7z_t() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("backup");
    write_layout(&src);
    let recordings = src.join("Recordings");
    for i in 0..64 {
        fs::write(recordings.join(format!("r{i:03}.wav")), noise(8 << 20, i)).expect("write");
    }
    for i in 0..64 {
        let text: String = (0..60_000)
            .map(|r| format!("{r},{i},row {r} of {i}\n"))
            .collect();
        fs::write(src.join(format!("DbTables/t{i:03}.csv")), text).expect("write");
    }
    let archive = dir.path().join("bench.zip");
    run_7z(
        &src,
        &archive,
        &["-mem=AES256", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );
    let len = fs::metadata(&archive).expect("stat").len();
    // Warm the page cache for both.
    verify(&archive, PASSWORD).expect("verifies");

    let started = Instant::now();
    let status = Command::new(seven_zip())
        .args(["t", "-bd", "-bso0", "-bsp0", &format!("-p{PASSWORD}")])
        .arg(&archive)
        .status()
        .expect("7z t");
    let seven = started.elapsed();
    assert!(status.success());

    let started = Instant::now();
    verify(&archive, PASSWORD).expect("verifies");
    let ours = started.elapsed();
    eprintln!(
        "{len} bytes: 7z t {seven:.2?} ({:.0} MB/s), verify_archive {ours:.2?} ({:.0} MB/s), \
         speed-up {:.2}x",
        len as f64 / seven.as_secs_f64() / 1e6,
        len as f64 / ours.as_secs_f64() / 1e6,
        seven.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Seeded pseudo-random numbers for the mutation harness (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }
}

/// Every reason code an archive fault may carry, as documented in the README; `io_error` (a
/// failing disk) is not among them: a mutated archive is never an infrastructure error.
const ARCHIVE_REASONS: &[&str] = &[
    "archive_truncated",
    "archive_malformed",
    "ambiguous_end",
    "duplicate_entry",
    "unsafe_entry_name",
    "entry_overlap",
    "stray_data",
    "header_mismatch",
    "archive_budget",
    "wrong_key",
    "entry_corrupt",
    "not_encrypted",
    "weak_encryption",
    "unsupported_method",
    "structure_incomplete",
];

fn le16(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn le32(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

/// Extra-field records other than ZIP64 (0x0001) and AES (0x9901), whole (id, length, data).
fn ignorable_extras(bytes: &[u8], start: usize, len: usize, out: &mut Vec<std::ops::Range<usize>>) {
    let mut at = start;
    while at + 4 <= start + len {
        let id = le16(bytes, at);
        let size = le16(bytes, at + 2);
        if id != 0x0001 && id != 0x9901 {
            out.push(at..at + 4 + size);
        }
        at += 4 + size;
    }
}

/// The byte ranges of a well-formed archive (one without ZIP64 records) that the verifier
/// documents as not mattering to a restore: times and dates, "version made by" and "version
/// needed", attributes, comments, extra fields other than ZIP64 and AES. Parsed here, on its
/// own, from the fields' documented offsets (APPNOTE 4.3.7, 4.3.12, 4.3.16).
fn ignorable_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let end = bytes.len() - 22;
    assert_eq!(
        &bytes[end..end + 4],
        b"PK\x05\x06",
        "the archive has no comment"
    );
    // The archive comment (empty here: 7-Zip writes none).
    let mut ranges = Vec::new();
    ranges.push(end + 22..bytes.len());
    let mut at = le32(bytes, end + 16);
    while at < end {
        assert_eq!(&bytes[at..at + 4], b"PK\x01\x02");
        let (name, extra, comment) = (
            le16(bytes, at + 28),
            le16(bytes, at + 30),
            le16(bytes, at + 32),
        );
        ranges.extend([at + 4..at + 8, at + 12..at + 16, at + 36..at + 42]);
        ignorable_extras(bytes, at + 46 + name, extra, &mut ranges);
        let comment_at = at + 46 + name + extra;
        ranges.push(comment_at..comment_at + comment);
        let local = le32(bytes, at + 42);
        ranges.extend([local + 4..local + 6, local + 10..local + 14]);
        ignorable_extras(
            bytes,
            local + 30 + le16(bytes, local + 26),
            le16(bytes, local + 28),
            &mut ranges,
        );
        at = comment_at + comment;
    }
    ranges
}

/// One mutation of a good archive.
#[derive(Debug)]
enum Mutation {
    /// `byte ^= mask` at an offset.
    Flip { at: usize, mask: u8 },
    /// Only the first `keep` bytes.
    Truncate { keep: usize },
    /// `len` bytes from `from` copied again at `to`.
    Duplicate { from: usize, len: usize, to: usize },
    /// `len` bytes at `at` replaced by the same range of another good archive.
    Splice { at: usize, len: usize },
    /// `len` bytes at `at` removed.
    Cut { at: usize, len: usize },
}

impl Mutation {
    fn pick(rng: &mut Rng, len: usize, round: usize) -> Self {
        match round % 10 {
            0..=5 => Mutation::Flip {
                at: rng.below(len),
                mask: u8::try_from(1 + rng.below(255)).expect("byte"),
            },
            6 => Mutation::Truncate {
                keep: rng.below(len),
            },
            7 => {
                let from = rng.below(len);
                Mutation::Duplicate {
                    from,
                    len: 1 + rng.below((len - from).min(512)),
                    to: rng.below(len),
                }
            }
            8 => {
                let at = rng.below(len);
                Mutation::Splice {
                    at,
                    len: 1 + rng.below((len - at).min(256)),
                }
            }
            _ => {
                let at = rng.below(len);
                Mutation::Cut {
                    at,
                    len: 1 + rng.below((len - at).min(256)),
                }
            }
        }
    }

    fn apply(&self, good: &[u8], other: &[u8]) -> Vec<u8> {
        let mut bytes = good.to_vec();
        match *self {
            Mutation::Flip { at, mask } => bytes[at] ^= mask,
            Mutation::Truncate { keep } => bytes.truncate(keep),
            Mutation::Duplicate { from, len, to } => {
                let copy = good[from..from + len].to_vec();
                bytes.splice(to..to, copy);
            }
            Mutation::Splice { at, len } => {
                let end = (at + len).min(other.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&other[at..end]);
                }
            }
            Mutation::Cut { at, len } => {
                bytes.drain(at..at + len);
            }
        }
        bytes
    }
}

/// Whether 7-Zip extracts `archive` without a complaint into exactly the files of `src`.
fn extracts_identically(archive: &Path, src: &Path, out: &Path) -> bool {
    let _ = fs::remove_dir_all(out);
    let status = Command::new(seven_zip())
        .args(["x", "-y", "-bd", "-bso0", "-bse0", "-bsp0"])
        .arg(format!("-p{PASSWORD}"))
        .arg(format!("-o{}", out.display()))
        .arg(archive)
        .status()
        .expect("run 7z");
    if !status.success() {
        return false;
    }
    let relative = |root: &Path| {
        let mut files: Vec<PathBuf> = walk(root)
            .into_iter()
            .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
            .collect();
        files.sort();
        files
    };
    let files = relative(src);
    files == relative(out)
        && files
            .iter()
            .all(|f| fs::read(src.join(f)).ok() == fs::read(out.join(f)).ok())
}

/// Runs `rounds` seeded mutations of `good` (with `other`, a second archive of the same files
/// from `src`, for splices) and checks each outcome. A mutation may be Verified only when every
/// changed byte is in a range the verifier documents as not mattering, or (a splice of whole,
/// authentic entries from `other`) when 7-Zip extracts it to exactly the original files;
/// otherwise it must be refused with a documented reason. Returns how many times each outcome
/// came up.
fn mutate_and_verify(
    good: &[u8],
    other: &[u8],
    src: &Path,
    seed: u64,
    rounds: usize,
    dir: &Path,
) -> std::collections::BTreeMap<&'static str, usize> {
    let ignorable = ignorable_ranges(good);
    let in_ignorable = |at: usize| ignorable.iter().any(|r| r.contains(&at));
    let mut rng = Rng(seed | 1);
    let mut seen = std::collections::BTreeMap::new();
    let path = dir.join("mutated.zip");
    for round in 0..rounds {
        let mutation = Mutation::pick(&mut rng, good.len(), round);
        let bytes = mutation.apply(good, other);
        if bytes == good {
            continue;
        }
        fs::write(&path, &bytes).expect("write mutated archive");
        match verify(&path, PASSWORD) {
            Ok(report) => {
                let ignorable_only = bytes.len() == good.len()
                    && bytes
                        .iter()
                        .zip(good)
                        .enumerate()
                        .all(|(at, (a, b))| a == b || in_ignorable(at));
                let restores_the_same =
                    ignorable_only || extracts_identically(&path, src, &dir.join("extracted"));
                assert!(
                    restores_the_same,
                    "seed {seed} round {round}: {mutation:?} was Verified ({} entries) though \
                     it changed bytes that matter",
                    report.entries
                );
                let outcome = if ignorable_only {
                    "verified (documented harmless field)"
                } else {
                    "verified (authentic entries spliced in)"
                };
                *seen.entry(outcome).or_insert(0) += 1;
            }
            Err(fault) => {
                let reason = fault.reason();
                assert!(
                    ARCHIVE_REASONS.contains(&reason),
                    "seed {seed} round {round}: {mutation:?} gave an undocumented reason: {fault}"
                );
                if let Mutation::Truncate { .. } = mutation {
                    assert_eq!(reason, "archive_truncated", "round {round}: {fault}");
                }
                if let Mutation::Flip { .. } = mutation {
                    assert_ne!(reason, "wrong_key", "round {round}: {mutation:?}: {fault}");
                }
                *seen.entry(reason).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// A small 3CX-layout directory, so that thousands of mutations verify in seconds.
fn write_small_layout(dir: &Path) {
    let tables = dir.join("DbTables");
    fs::create_dir_all(&tables).expect("mkdir DbTables");
    for table in CORE_TABLES {
        fs::write(
            tables.join(format!("{table}.csv")),
            format!("id,name\n1,{table}-1\n2,{table}-2\n"),
        )
        .expect("write table");
    }
    let calls: String = (0..200).map(|i| format!("{i},100,{}\n", 200 + i)).collect();
    fs::write(tables.join("cl_calls.csv"), calls).expect("write cl_calls");
    let recordings = dir.join("Recordings");
    fs::create_dir_all(&recordings).expect("mkdir Recordings");
    fs::write(recordings.join("x.wav"), noise(2048, 9)).expect("write recording");
}

/// The mutation harness on archives written by 7-Zip: thousands of single-byte flips,
/// truncations, duplications, splices and cuts, seeded. None may be Verified unless it changed
/// only bytes documented as not mattering; each refusal carries a documented reason.
#[test]
fn seven_zip_archive_mutations_are_never_falsely_verified() {
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    write_small_layout(&src);
    let aes = format!("-p{PASSWORD}");
    let (first, second) = (work.path().join("a.zip"), work.path().join("b.zip"));
    for out in [&first, &second] {
        run_7z(
            &src,
            out,
            &["-mem=AES256", &aes],
            &["DbTables", "Recordings"],
        );
    }
    let good = fs::read(&first).expect("read");
    let other = fs::read(&second).expect("read");
    assert!(
        verify(&first, PASSWORD).is_ok(),
        "the unmutated archive verifies"
    );
    let seed = std::env::var("RESTORABLE_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let rounds = std::env::var("RESTORABLE_MUTATION_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seen = mutate_and_verify(&good, &other, &src, seed, rounds, work.path());
    eprintln!(
        "7-Zip archive, {} bytes, seed {seed:#x}, {rounds} mutations: {seen:?}",
        good.len()
    );
    // The harness reached the layout checks, not only the entry data.
    for reason in [
        "archive_truncated",
        "entry_corrupt",
        "header_mismatch",
        "archive_malformed",
    ] {
        assert!(
            seen.contains_key(reason),
            "no mutation gave {reason}: {seen:?}"
        );
    }
}

/// Hostile shapes on a 7-Zip archive, patched: a duplicate name whose first copy is corrupt,
/// two central records over one entry's bytes, and entry names that climb out.
#[test]
fn seven_zip_archives_patched_into_hostile_shapes_are_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    write_small_layout(&src);
    fs::write(
        src.join("DbTables").join("dX.csv"),
        "broken,row\n".repeat(30),
    )
    .expect("write");
    let good_path = work.path().join("good.zip");
    run_7z(
        &src,
        &good_path,
        &["-mem=AES256", &format!("-p{PASSWORD}")],
        &["DbTables", "Recordings"],
    );
    let good = fs::read(&good_path).expect("read");
    let patched = work.path().join("patched.zip");
    let check = |bytes: &[u8], reason: &str, case: &str| {
        fs::write(&patched, bytes).expect("write");
        match verify(&patched, PASSWORD) {
            Ok(_) => panic!("{case}: verified, expected {reason}"),
            Err(fault) => assert_eq!(fault.reason(), reason, "{case}: {fault}"),
        }
    };
    let replace_all = |from: &[u8], to: &[u8]| {
        let mut bytes = good.clone();
        let mut count = 0;
        for at in 0..bytes.len() - from.len() {
            if &bytes[at..at + from.len()] == from {
                bytes[at..at + from.len()].copy_from_slice(to);
                count += 1;
            }
        }
        assert_eq!(
            count, 2,
            "{from:?} in the local header and the central directory"
        );
        bytes
    };
    let (dx_start, dx_len) = data_range(&good_path, "DbTables/dX.csv");
    let mut duplicate = replace_all(b"DbTables/dX.csv", b"DbTables/dn.csv");
    let dx_middle = usize::try_from(dx_start + dx_len / 2).expect("small");
    duplicate[dx_middle] ^= 0x10;
    check(
        &duplicate,
        "duplicate_entry",
        "a duplicate name, first copy corrupt",
    );
    check(
        &replace_all(b"Recordings/x.wav", b"../../../tmp/x.w"),
        "unsafe_entry_name",
        "../ name",
    );
    check(
        &replace_all(b"Recordings/x.wav", b"/etc/cron.d/x.wa"),
        "unsafe_entry_name",
        "absolute name",
    );

    // Of dn.csv and dX.csv, the later central record points at the earlier one's local
    // header (whose name then disagrees with the record).
    let end = good.len() - 22;
    let mut at = le32(&good, end + 16);
    let mut records = Vec::new();
    while at < end {
        let name_len = le16(&good, at + 28);
        records.push((good[at + 46..at + 46 + name_len].to_vec(), at));
        at += 46 + name_len + le16(&good, at + 30) + le16(&good, at + 32);
    }
    let position = |name: &[u8]| {
        records
            .iter()
            .position(|(n, _)| n.as_slice() == name)
            .expect("entry")
    };
    let (dn, dx) = (position(b"DbTables/dn.csv"), position(b"DbTables/dX.csv"));
    let (earlier, later) = (records[dn.min(dx)].1, records[dn.max(dx)].1);
    let mut overlap = good.clone();
    let target = good[earlier + 42..earlier + 46].to_vec();
    overlap[later + 42..later + 46].copy_from_slice(&target);
    check(
        &overlap,
        "entry_overlap",
        "two central records over one entry",
    );
}
