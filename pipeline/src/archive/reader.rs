//! [`PositionedReader`]: a `Read + Seek` view of the archive file through positioned reads
//! (`pread`), so that every verify worker reads the same open file without a shared cursor.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Read-ahead buffer of a [`PositionedReader`] (the inflater reads in small steps).
pub(super) const POSITIONED_BUF: usize = 256 * 1024;

/// A `Read + Seek` view of a shared file that reads with `pread` (`read_at`), so that many
/// readers (one per worker) can read the same open file at once without sharing a cursor.
/// Works on unlinked files: it never reopens by path.
///
/// It keeps a read-ahead buffer for small reads; reads of at least that size go straight to the
/// caller's buffer. Clones share the file but not the position or buffer.
#[derive(Debug)]
pub struct PositionedReader {
    /// The shared file.
    file: Arc<File>,
    /// Current position.
    pos: u64,
    /// File length, taken once: the archive must not change while it is verified.
    len: u64,
    /// Read-ahead buffer, allocated on first use.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// The first error the file itself returned (shared by clones), so that a failing disk is
    /// reported as an I/O error rather than as a corrupt entry.
    first_error: Arc<OnceLock<(io::ErrorKind, String)>>,
    /// Bytes read from the file by this reader and its clones (for progress).
    read: Arc<AtomicU64>,
}

impl Clone for PositionedReader {
    fn clone(&self) -> Self {
        Self {
            file: Arc::clone(&self.file),
            pos: self.pos,
            len: self.len,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            first_error: Arc::clone(&self.first_error),
            read: Arc::clone(&self.read),
        }
    }
}

impl PositionedReader {
    /// A reader at position 0 of `file`.
    ///
    /// # Errors
    /// If the file's length cannot be read.
    pub fn new(file: Arc<File>) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            pos: 0,
            len,
            buf: Vec::new(),
            buf_start: 0,
            buf_len: 0,
            first_error: Arc::new(OnceLock::new()),
            read: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts the bytes this reader and its clones read into `read` (shown as progress).
    pub fn counting_into(mut self, read: Arc<AtomicU64>) -> Self {
        self.read = read;
        self
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first error the underlying file returned to this reader or a clone, if any.
    pub(super) fn file_error(&self) -> Option<io::Error> {
        self.first_error
            .get()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }

    fn pread(
        file: &File,
        first_error: &OnceLock<(io::ErrorKind, String)>,
        out: &mut [u8],
        pos: u64,
    ) -> io::Result<usize> {
        loop {
            match file.read_at(out, pos) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = first_error.set((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
    }
}

impl Read for PositionedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let buffered =
            self.pos >= self.buf_start && self.pos - self.buf_start < self.buf_len as u64;
        if !buffered {
            let remaining = self.len - self.pos;
            if out.len() >= POSITIONED_BUF {
                let want = usize::try_from(remaining).map_or(out.len(), |r| r.min(out.len()));
                let n = Self::pread(&self.file, &self.first_error, &mut out[..want], self.pos)?;
                self.read.fetch_add(n as u64, Ordering::Relaxed);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.buf.is_empty() {
                self.buf = vec![0; POSITIONED_BUF];
            }
            let want = usize::try_from(remaining).map_or(POSITIONED_BUF, |r| r.min(POSITIONED_BUF));
            self.buf_len = 0;
            let n = Self::pread(
                &self.file,
                &self.first_error,
                &mut self.buf[..want],
                self.pos,
            )?;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.buf_start = self.pos;
            self.buf_len = n;
            if n == 0 {
                return Ok(0);
            }
        }
        // In the buffer: the offset is below buf_len, so it fits in usize.
        let offset = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf_len - offset);
        out[..n].copy_from_slice(&self.buf[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PositionedReader {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let target = match from {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        match target {
            Some(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}
