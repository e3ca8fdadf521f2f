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

use restorable_pipeline::archive::{verify_archive, ArchiveFault, ArchiveReport, CORE_TABLES};
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
#[ignore = "benchmark: cargo test -p restorable-pipeline --test archive_7z -- --ignored --nocapture"]
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
