//! Writes one backup file: a real ZIP archive, every entry AES-256 encrypted (WinZip AE-2) with
//! the password the client sent, streamed straight to disk.
//!
//! # Entries
//! - `FQDN.txt`, `License.txt` (small, Deflated);
//! - `DbTables/<table>.csv` for every table of the database (Deflated; format in
//!   [`crate::database`]);
//! - `Prompts/welcome.wav`, `Prompts/goodbye.wav` (16 KiB each, Stored);
//! - with padding, `Recordings/<extension number>/<n>.wav`: seeded pseudo-random (incompressible)
//!   bytes, Stored, at most 64 MiB per entry, adding up to exactly the padding asked for.
//!
//! Speed: about 250 MB/s when this crate is built with optimisation (opt-level 2, release);
//! about 55 MB/s in an unoptimised dev build, because the `zip` crate's generic AES writer (which
//! zeroes its buffer byte by byte) is compiled at this crate's optimisation level. Measure with
//! the ignored test `archive::throughput::one_gib_is_written_in_seconds`.
//!
//! The archive is written to a hidden `.<name>.partial` file next to its destination and renamed
//! into place only when complete, so a listed backup is always whole. Nothing larger than a 1 MiB
//! buffer is held in memory, whatever the padding.
//!
//! # Faults
//! - [`Fault::WrongPassword`]: entries are encrypted with a password other than the client's;
//! - [`Fault::MissingTable`]: `DbTables/extension.csv` is left out;
//! - [`Fault::FlippedByte`]: after the archive is complete, one byte in the middle of the data of
//!   the largest Stored entry is inverted: the archive opens, but reading that entry to its end
//!   fails AES authentication.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use zip::write::SimpleFileOptions;
use zip::{AesMode, CompressionMethod, ZipArchive, ZipWriter};

use crate::database::Database;
use crate::error::ArchiveError;
use crate::Fault;

/// Largest padding entry.
pub(crate) const MAX_PADDING_ENTRY: u64 = 64 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;
const PROMPT_BYTES: usize = 16 * 1024;

/// A backup password sent by a client. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BackupPassword(String);

impl BackupPassword {
    pub(crate) fn new(value: String) -> Self {
        BackupPassword(value)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BackupPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupPassword(<redacted>)")
    }
}

/// Everything needed to write one backup file.
pub(crate) struct BackupJob<'a> {
    pub db: &'a Database,
    pub fqdn: &'a str,
    pub seed: u64,
    pub padding_bytes: u64,
    pub fault: Option<Fault>,
    /// `None` writes an unencrypted archive (the client asked for no encryption).
    pub password: Option<&'a BackupPassword>,
    pub dest: &'a Path,
    pub cancel: &'a AtomicBool,
}

/// Writes the archive and returns its size in bytes.
pub(crate) fn write_backup(job: &BackupJob<'_>) -> Result<u64, ArchiveError> {
    let partial = partial_path(job.dest);
    let result = write_to(job, &partial).and_then(|()| {
        fs::rename(&partial, job.dest)?;
        Ok(fs::metadata(job.dest)?.len())
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

fn write_to(job: &BackupJob<'_>, path: &Path) -> Result<(), ArchiveError> {
    let wrong;
    let password = match (job.password, job.fault) {
        (Some(p), Some(Fault::WrongPassword)) => {
            wrong = format!("{}-not-the-password-you-sent", p.expose());
            Some(wrong.as_str())
        }
        (Some(p), _) => Some(p.expose()),
        (None, _) => None,
    };
    let base = match password {
        Some(p) => SimpleFileOptions::default().with_aes_encryption(AesMode::Aes256, p),
        None => SimpleFileOptions::default(),
    };
    let deflated = base.compression_method(CompressionMethod::Deflated);
    let stored = base.compression_method(CompressionMethod::Stored);

    let file = File::create(path)?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(CHUNK, file));

    zip.start_file("FQDN.txt", deflated)?;
    writeln!(zip, "{}", job.fqdn)?;
    let license = job
        .db
        .table("parameter")
        .and_then(|t| {
            t.rows
                .iter()
                .find(|r| r[0].as_deref() == Some("LICENSEKEY"))
        })
        .and_then(|r| r[1].clone())
        .unwrap_or_default();
    zip.start_file("License.txt", deflated)?;
    writeln!(zip, "LicenseKey={license}\nEdition=Professional")?;

    for table in job.db.tables() {
        if job.fault == Some(Fault::MissingTable) && table.name() == "extension" {
            continue;
        }
        zip.start_file(format!("DbTables/{}.csv", table.name()), deflated)?;
        table.write_csv(&mut zip)?;
    }

    let mut rng = StdRng::seed_from_u64(job.seed ^ 0x0000_7ad0_b17e_5eed);
    let mut buf = vec![0u8; CHUNK];
    for prompt in ["welcome", "goodbye"] {
        zip.start_file(format!("Prompts/{prompt}.wav"), stored)?;
        write_random(
            &mut zip,
            &mut rng,
            &mut buf,
            PROMPT_BYTES as u64,
            job.cancel,
        )?;
    }

    let numbers = extension_numbers(job.db);
    let mut remaining = job.padding_bytes;
    let mut n = 0usize;
    while remaining > 0 {
        let size = remaining.min(MAX_PADDING_ENTRY);
        let ext = numbers
            .get(n % numbers.len().max(1))
            .map_or("100", String::as_str);
        let name = format!("Recordings/{ext}/{:05}.wav", n / numbers.len().max(1) + 1);
        zip.start_file(name, stored)?;
        write_random(&mut zip, &mut rng, &mut buf, size, job.cancel)?;
        remaining -= size;
        n += 1;
    }

    let mut out = zip.finish()?;
    out.flush()?;
    // No fsync: a simulator needs no durability, and syncing gigabytes costs seconds.
    drop(out.into_inner().map_err(io::IntoInnerError::into_error)?);

    if job.fault == Some(Fault::FlippedByte) {
        flip_byte_in_largest_stored_entry(path)?;
    }
    Ok(())
}

fn write_random<W: Write>(
    out: &mut W,
    rng: &mut StdRng,
    buf: &mut [u8],
    mut size: u64,
    cancel: &AtomicBool,
) -> Result<(), ArchiveError> {
    while size > 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(ArchiveError::Cancelled);
        }
        let len = usize::try_from(size).map_or(buf.len(), |s| s.min(buf.len()));
        let chunk = &mut buf[..len];
        rng.fill_bytes(chunk);
        out.write_all(chunk)?;
        size -= len as u64;
    }
    Ok(())
}

/// The extension numbers (`dn.value` of each extension), in table order.
fn extension_numbers(db: &Database) -> Vec<String> {
    let values: HashMap<&str, &str> = db
        .table("dn")
        .map(|t| {
            t.rows
                .iter()
                .filter_map(|r| Some((r[0].as_deref()?, r[1].as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    db.table("extension")
        .map(|t| {
            t.rows
                .iter()
                .filter_map(|r| values.get(r[0].as_deref()?).map(|v| (*v).to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Inverts one byte in the middle of the data of the largest Stored entry.
fn flip_byte_in_largest_stored_entry(path: &Path) -> Result<(), ArchiveError> {
    let mut archive = ZipArchive::new(File::open(path)?)?;
    let mut target: Option<(u64, u64)> = None; // (data start, compressed size)
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        if entry.compression() != CompressionMethod::Stored {
            continue;
        }
        let size = entry.compressed_size();
        if target.is_none_or(|(_, best)| size > best) {
            let start = entry.data_start().ok_or_else(|| {
                io::Error::other("the ZIP reader gave no data offset for an entry")
            })?;
            target = Some((start, size));
        }
    }
    let (start, size) =
        target.ok_or_else(|| io::Error::other("the archive has no Stored entry to damage"))?;
    let offset = start + size / 2;
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut byte)?;
    byte[0] ^= 0xFF;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&byte)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(
        db: &'a Database,
        dest: &'a Path,
        password: Option<&'a BackupPassword>,
        fault: Option<Fault>,
        cancel: &'a AtomicBool,
    ) -> BackupJob<'a> {
        BackupJob {
            db,
            fqdn: "acme.pbx.example",
            seed: 1,
            padding_bytes: 3 * 1024 * 1024 + 17,
            fault,
            password,
            dest,
            cancel,
        }
    }

    #[test]
    fn writes_a_readable_encrypted_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("b.zip");
        let db = Database::generate("acme", 1, 12, None);
        let pw = BackupPassword::new("s3cret".into());
        let cancel = AtomicBool::new(false);
        let size = write_backup(&job(&db, &dest, Some(&pw), None, &cancel)).expect("written");
        assert_eq!(size, fs::metadata(&dest).expect("exists").len());
        assert!(!partial_path(&dest).exists());
        let mut archive = ZipArchive::new(File::open(&dest).expect("open")).expect("zip");
        let mut padding = 0;
        for i in 0..archive.len() {
            let mut entry = archive.by_index_decrypt(i, b"s3cret").expect("decrypts");
            assert!(entry.encrypted());
            let name = entry.name().expect("name").into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("authenticates");
            if name.starts_with("Recordings/") {
                padding += data.len() as u64;
            }
        }
        assert_eq!(padding, 3 * 1024 * 1024 + 17);
        let mut csv = String::new();
        archive
            .by_name_decrypt("DbTables/dn.csv", b"s3cret")
            .expect("dn present")
            .read_to_string(&mut csv)
            .expect("reads");
        assert_eq!(csv.into_bytes(), db.table("dn").expect("dn").to_csv());
    }

    #[test]
    fn cancelled_write_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("b.zip");
        let db = Database::generate("acme", 1, 12, None);
        let cancel = AtomicBool::new(true);
        let err = write_backup(&job(&db, &dest, None, None, &cancel)).expect_err("cancelled");
        assert!(matches!(err, ArchiveError::Cancelled));
        assert!(!dest.exists());
        assert!(!partial_path(&dest).exists());
    }

    #[test]
    fn password_debug_is_redacted() {
        let pw = BackupPassword::new("hunter2".into());
        assert!(!format!("{pw:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod throughput {
    use super::*;

    /// `cargo test -p restorable-pbx-sim --lib -- --ignored --nocapture throughput`
    #[test]
    #[ignore = "writes 1 GiB; run by hand to measure throughput"]
    fn one_gib_is_written_in_seconds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("big.zip");
        let db = Database::generate("acme", 1, 12, None);
        let pw = BackupPassword::new("pw".into());
        let cancel = AtomicBool::new(false);
        let started = std::time::Instant::now();
        let size = write_backup(&BackupJob {
            db: &db,
            fqdn: "acme.pbx.example",
            seed: 1,
            padding_bytes: 1 << 30,
            fault: Some(Fault::FlippedByte),
            password: Some(&pw),
            dest: &dest,
            cancel: &cancel,
        })
        .expect("written");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{size} bytes in {secs:.2} s = {:.0} MB/s",
            size as f64 / secs / 1e6
        );
        assert!(size > 1 << 30);
        assert!(secs < 60.0, "{secs} s");
    }
}
