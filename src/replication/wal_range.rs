//! Reading durable WAL as raw bytes for shipping, cut at record
//! boundaries, and checking what arrives against the record chain.
//!
//! The sender reads `[from, to)` from segment files (the page cache serves
//! recent WAL), keeping only whole records so every `WalData` frame starts
//! and ends on a record boundary. The receiver and the build client walk
//! the records again with [`validate_chain`] before writing a byte: the
//! frame CRC covers transport, the chain check covers "this WAL continues
//! mine".

use std::os::unix::fs::FileExt;

use crate::ids::{Lsn, SegmentNo};
use crate::wal::reader::OwnedRecordBytes;
use crate::wal::record::{self, DecodeError};
use crate::wal::segment::SegmentDir;
use crate::wal::WalError;

/// WAL bytes per shipped chunk: large enough to batch, small enough for
/// one frame (and at least one record of the largest size).
pub const CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(CHUNK_BYTES >= record::RECORD_BYTES_MAX);

/// Reads up to `CHUNK_BYTES` of WAL from `from` (not past `to`) and
/// returns the prefix made of whole records. Empty if `from == to`.
pub fn read_records(segs: &SegmentDir, from: Lsn, to: Lsn) -> Result<Vec<u8>, WalError> {
    let want = (to.bytes_since(from) as usize).min(CHUNK_BYTES);
    let mut buf = vec![0u8; want];
    let seg_bytes = segs.segment_bytes();
    let mut done = 0usize;
    let mut files: Option<(SegmentNo, std::fs::File)> = None;
    while done < want {
        let at = from.add(done as u64);
        let segno = SegmentNo::of(at, seg_bytes);
        if files.as_ref().map(|(s, _)| *s) != Some(segno) {
            files = Some((segno, segs.open(segno)?));
        }
        let Some((_, file)) = files.as_ref() else {
            break;
        };
        let off = at.0 - segno.start(seg_bytes).0;
        let n = ((seg_bytes - off) as usize).min(want - done);
        file.read_exact_at(&mut buf[done..done + n], off)
            .map_err(|e| crate::wal::segment::io_error("read", &segs.path(segno), e))?;
        done += n;
    }
    let whole = whole_records_prefix(&buf);
    buf.truncate(whole);
    Ok(buf)
}

/// Length of the longest prefix of `buf` made of whole records (by their
/// length fields; contents are checked by the receiver).
pub fn whole_records_prefix(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok(h) = record::decode_header(&buf[at..]) {
        if at + h.len as usize > buf.len() {
            break;
        }
        at += h.len as usize;
    }
    at
}

/// Checks every record of `bytes` (which start at `start`): length, CRC
/// and the chain from `prev`, without copying anything. Returns the LSN of
/// the last record.
pub fn validate_bytes(bytes: &[u8], start: Lsn, mut prev: Lsn) -> Result<Lsn, (Lsn, DecodeError)> {
    let mut at = 0usize;
    while at < bytes.len() {
        let lsn = start.add(at as u64);
        let (_, len) = record::decode(&bytes[at..], prev).map_err(|e| (lsn, e))?;
        prev = lsn;
        at += len;
    }
    Ok(prev)
}

/// Records with their LSNs, in stream order.
pub type Records = Vec<(Lsn, OwnedRecordBytes)>;

/// Decodes every record of `bytes` (which start at `start`), checking CRC
/// and the chain from `prev`. Returns the records and the new prev.
pub fn validate_chain(
    bytes: &[u8],
    start: Lsn,
    mut prev: Lsn,
) -> Result<(Records, Lsn), (Lsn, DecodeError)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let lsn = start.add(at as u64);
        // One CRC pass per record: `validated` decodes (checksum, chain).
        let len = record::decode_header(&bytes[at..])
            .map_err(|e| (lsn, e))?
            .len as usize;
        let end = (at + len).min(bytes.len());
        let owned =
            OwnedRecordBytes::validated(bytes[at..end].to_vec(), prev).map_err(|e| (lsn, e))?;
        out.push((lsn, owned));
        prev = lsn;
        at += len;
    }
    Ok((out, prev))
}
