//! The verify workers: each takes the next entry index, checks the entry's encryption and
//! method, then decrypts, inflates and reads it to its end (or, for a stored AE-2 entry,
//! authenticates it without decrypting); faults are gathered in [`Shared`], lowest index first.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use zip::result::ZipError;
use zip::{CompressionMethod, HasZipMetadata, ZipArchive};

use super::fault::ArchiveFault;
use super::layout::{EntryLayout, Layout};
use super::limits::{AesStrength, VerifyLimits};
use super::names::name_for_error;
use super::reader::PositionedReader;

/// Buffer each worker reads inflated data into.
const READ_BUF: usize = 512 * 1024;
/// General purpose flag bit 6: PKWARE strong encryption.
const STRONG_ENCRYPTION_FLAG: u16 = 0x0040;

/// State shared by the workers of one verification.
pub(super) struct Shared {
    /// Next entry index to take.
    next: AtomicUsize,
    /// Lowest index with a fault (other than a rejected password) so far; `usize::MAX` if none.
    /// Entries above it are abandoned, entries below it still run to completion.
    first_fault: AtomicUsize,
    /// Entries read to their end and authenticated.
    pub(super) verified: AtomicU64,
    /// Their compressed bytes.
    pub(super) compressed: AtomicU64,
    /// Their inflated bytes.
    pub(super) inflated: AtomicU64,
    /// Faults found: (entry index, entry name, fault).
    pub(super) faults: Mutex<Vec<(usize, String, ArchiveFault)>>,
    /// When the wall-time budget runs out.
    deadline: Instant,
}

impl Shared {
    pub(super) fn new(deadline: Instant) -> Self {
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
    pub(super) fn record(&self, index: usize, entry: String, fault: ArchiveFault) {
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

pub(super) fn worker(
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
