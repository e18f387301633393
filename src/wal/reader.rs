//! Sequential WAL reader: recovery and standby catch-up.
//!
//! Reads records one after the other from `start`, across segment files
//! (records may span a segment boundary), validating each with
//! [`record::decode`]: length, CRC, and the `prev_lsn` link to the record
//! before it. The first position that is not a valid, chained record ends
//! the stream with `Ok(None)`, and [`WalReader::end_reason`] says why;
//! recovery cuts the WAL there (a torn tail is cut, never applied, never an
//! error). Only real I/O errors are `Err`.
//!
//! I/O: plain `pread` of `READ_CHUNK_BYTES` at a time (never crossing a
//! segment end) into one buffer that holds at most one chunk plus one
//! record. This is a cold path; the buffered page cache does read-ahead.
//!
//! Runs on whichever thread recovers or serves catch-up; not shared.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::ids::{Lsn, SegmentNo, TimelineId};
use crate::wal::record::{self, DecodeError, Record, HEADER_BYTES};
use crate::wal::segment::{io_error, SegmentDir};
use crate::wal::WalError;

/// Bytes read per `pread`: large enough that recovery runs at sequential
/// read speed, small enough to keep the reader's memory bounded.
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// Why the stream of valid records ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndOfWal {
    /// The length field at `lsn` is zero: never-written (zero-filled) space.
    Zero { lsn: Lsn },
    /// The bytes at `lsn` are not a valid record chained to the one before:
    /// a torn write, a stale record of a recycled segment, or garbage.
    Torn { lsn: Lsn, error: DecodeError },
    /// The segment holding `lsn` (or the rest of the record at `lsn`) does
    /// not exist.
    MissingSegment { lsn: Lsn, segno: SegmentNo },
    /// The segment file holding `lsn` is shorter than a segment.
    ShortSegment { lsn: Lsn, path: PathBuf },
}

/// The bytes of one validated record (header included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecordBytes {
    bytes: Vec<u8>,
    prev: Lsn,
}

impl OwnedRecordBytes {
    /// Wraps one record's bytes after checking them (CRC, chain to `prev`):
    /// for WAL that arrives from a peer rather than from a segment file.
    pub fn validated(bytes: Vec<u8>, prev: Lsn) -> Result<OwnedRecordBytes, DecodeError> {
        let (_, len) = record::decode(&bytes, prev)?;
        if len != bytes.len() {
            return Err(DecodeError::BadLength {
                len: bytes.len() as u32,
            });
        }
        Ok(OwnedRecordBytes { bytes, prev })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// LSN of the record before this one (its `prev_lsn`).
    pub fn prev(&self) -> Lsn {
        self.prev
    }

    /// The decoded record. The bytes were validated when read, so this
    /// cannot fail unless memory was corrupted: that panics (a bug).
    pub fn record(&self) -> Record<'_> {
        match record::decode_verified(&self.bytes) {
            Ok(rec) => rec,
            Err(e) => panic!("record validated when read no longer decodes: {e}"),
        }
    }
}

pub struct WalReader {
    segs: SegmentDir,
    listing: BTreeMap<SegmentNo, (TimelineId, PathBuf)>,
    file: Option<(SegmentNo, File)>,
    /// Bytes of the WAL from `buf_lsn` on.
    buf: Vec<u8>,
    buf_lsn: Lsn,
    /// LSN of the next record to return.
    next: Lsn,
    /// LSN of the last record returned (or `expected_prev` at first).
    prev: Lsn,
    end: Option<EndOfWal>,
}

impl WalReader {
    /// A reader of the WAL in `dir` as seen from `timeline`, starting with
    /// the record at `start`, whose `prev_lsn` must be `expected_prev`.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        timeline: TimelineId,
        start: Lsn,
        expected_prev: Lsn,
    ) -> Result<WalReader, WalError> {
        let segs = SegmentDir::new(dir, segment_bytes, timeline)?;
        let listing = segs.list()?;
        Ok(WalReader {
            segs,
            listing,
            file: None,
            buf: Vec::with_capacity(READ_CHUNK_BYTES + record::RECORD_BYTES_MAX),
            buf_lsn: start,
            next: start,
            prev: expected_prev,
            end: None,
        })
    }

    /// The next valid record and its LSN, or `None` at the end of the WAL
    /// (see [`end_reason`](Self::end_reason)). Not an `Iterator`: the end is
    /// a state to inspect, and I/O errors must not look like an end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(Lsn, OwnedRecordBytes)>, WalError> {
        let prev = self.prev;
        let Some((at, range)) = self.advance(Lsn(u64::MAX))? else {
            return Ok(None);
        };
        let owned = OwnedRecordBytes {
            bytes: self.buf[range].to_vec(),
            prev,
        };
        Ok(Some((at, owned)))
    }

    /// Whole valid records from the current position, copied into `out`
    /// (cleared first) up to about `max_bytes` (at least one record when
    /// there is one), none ending past `until`. Returns `(start, prev)`:
    /// the first record's LSN and the LSN of the record before it. `None`
    /// when no record fits: the end of the WAL (see [`end_reason`]) or
    /// `until`. Redo reads this way: no allocation per record, and `out`
    /// is reused from chunk to chunk.
    ///
    /// [`end_reason`]: Self::end_reason
    pub fn next_chunk(
        &mut self,
        out: &mut Vec<u8>,
        max_bytes: usize,
        until: Lsn,
    ) -> Result<Option<(Lsn, Lsn)>, WalError> {
        let (start, prev) = (self.next, self.prev);
        out.clear();
        while out.len() < max_bytes {
            let Some((_, range)) = self.advance(until)? else {
                break;
            };
            out.extend_from_slice(&self.buf[range]);
        }
        Ok((!out.is_empty()).then_some((start, prev)))
    }

    /// Validates the record at the current position and moves past it;
    /// returns its LSN and where its bytes are in `buf` (valid until the
    /// next call). `None` at the end of the WAL, or when the record would
    /// end past `until` (then the position stays before it).
    fn advance(&mut self, until: Lsn) -> Result<Option<(Lsn, std::ops::Range<usize>)>, WalError> {
        if self.end.is_some() || self.next >= until {
            return Ok(None);
        }
        let at = self.next;
        if let Err(end) = self.ensure(HEADER_BYTES)? {
            self.end = Some(end);
            return Ok(None);
        }
        let off = self.offset();
        let head = &self.buf[off..off + HEADER_BYTES];
        if head[..4] == [0, 0, 0, 0] {
            self.end = Some(EndOfWal::Zero { lsn: at });
            return Ok(None);
        }
        let len = match record::decode_header(head) {
            Ok(h) => h.len as usize,
            Err(error) => {
                self.end = Some(EndOfWal::Torn { lsn: at, error });
                return Ok(None);
            }
        };
        if at.add(len as u64) > until {
            return Ok(None);
        }
        if let Err(end) = self.ensure(len)? {
            self.end = Some(end);
            return Ok(None);
        }
        let off = self.offset();
        let bytes = &self.buf[off..off + len];
        if let Err(error) = record::decode(bytes, self.prev) {
            self.end = Some(EndOfWal::Torn { lsn: at, error });
            return Ok(None);
        }
        self.prev = at;
        self.next = at.add(len as u64);
        Ok(Some((at, off..off + len)))
    }

    /// Why the stream ended; `None` while records keep coming.
    pub fn end_reason(&self) -> Option<&EndOfWal> {
        self.end.as_ref()
    }

    /// `(next, prev)`: the LSN after the last valid record, and that
    /// record's LSN. At the end of the WAL this is where `Wal::open` resumes.
    pub fn position(&self) -> (Lsn, Lsn) {
        (self.next, self.prev)
    }

    fn offset(&self) -> usize {
        (self.next.0 - self.buf_lsn.0) as usize
    }

    /// Makes `n` bytes from `next` available in `buf`.
    fn ensure(&mut self, n: usize) -> Result<Result<(), EndOfWal>, WalError> {
        let want_end = self.next.add(n as u64);
        if self.buf_lsn.add(self.buf.len() as u64) >= want_end {
            return Ok(Ok(()));
        }
        // Drop consumed bytes so the buffer stays bounded.
        let consumed = self.offset();
        self.buf.drain(..consumed);
        self.buf_lsn = self.next;
        while self.buf_lsn.add(self.buf.len() as u64) < want_end {
            if let Err(end) = self.fill()? {
                return Ok(Err(end));
            }
        }
        Ok(Ok(()))
    }

    /// Appends one chunk (up to the end of its segment) to `buf`.
    fn fill(&mut self) -> Result<Result<(), EndOfWal>, WalError> {
        let seg_bytes = self.segs.segment_bytes();
        let at = self.buf_lsn.add(self.buf.len() as u64);
        let segno = SegmentNo::of(at, seg_bytes);
        let Some(path) = self.segment_path(segno)? else {
            return Ok(Err(EndOfWal::MissingSegment {
                lsn: self.next,
                segno,
            }));
        };
        if self.file.as_ref().is_none_or(|(s, _)| *s != segno) {
            let file = File::open(&path).map_err(|e| io_error("open", &path, e))?;
            self.file = Some((segno, file));
        }
        let Some((_, file)) = self.file.as_ref() else {
            return Ok(Err(EndOfWal::MissingSegment {
                lsn: self.next,
                segno,
            }));
        };
        let in_seg = at.0 % seg_bytes;
        let chunk = (seg_bytes - in_seg).min(READ_CHUNK_BYTES as u64) as usize;
        let old_len = self.buf.len();
        self.buf.resize(old_len + chunk, 0);
        let got = read_full(file, &mut self.buf[old_len..], in_seg)
            .map_err(|e| io_error("read", &path, e))?;
        self.buf.truncate(old_len + got);
        if got < chunk {
            return Ok(Err(EndOfWal::ShortSegment {
                lsn: self.next,
                path,
            }));
        }
        Ok(Ok(()))
    }

    /// Path of `segno`, rescanning the directory once if it is not known
    /// (segments appear while a standby catches up).
    fn segment_path(&mut self, segno: SegmentNo) -> Result<Option<PathBuf>, WalError> {
        if let Some((_, p)) = self.listing.get(&segno) {
            return Ok(Some(p.clone()));
        }
        self.listing = self.segs.list()?;
        Ok(self.listing.get(&segno).map(|(_, p)| p.clone()))
    }
}

/// `pread` until `buf` is full or end of file; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
