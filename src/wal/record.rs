//! WAL record format: encoding and checked decoding.
//!
//! A transaction is one *record group*: zero or more page records followed
//! by one `Commit` record. Recovery and standbys apply complete groups only.
//! An `Abort` record ends a group without applying it: a promotion writes
//! one when the WAL it received ends in the middle of a group (its primary
//! died mid-send), so the new timeline never chains on to half a
//! transaction.
//! The LSN of a record is the byte position of its first header byte.
//!
//! ```text
//! record header, 24 bytes, little-endian (FORMAT_VERSION 1)
//!  0      4      8              16   17   18     20        24
//!  +------+------+--------------+----+----+------+---------+---------...
//!  | len  | crc  | prev_lsn     |kind|flag| rsvd | page_no | payload
//!  +------+------+--------------+----+----+------+---------+---------...
//!  len      u32  header + payload bytes (>= 24, <= RECORD_BYTES_MAX)
//!  crc      u32  CRC32C of bytes [8, len): binds the record to its
//!                predecessor through prev_lsn, so stale bytes from a
//!                recycled segment or an old tail never chain on
//!  prev_lsn u64  LSN of the previous record in the stream
//!  kind     u8   RecordKind
//!  flag     u8   0 (reserved)
//!  rsvd     u16  0
//!  page_no  u32  the one page the record changes, u32::MAX for none;
//!                redo dispatches by this field without decoding payload
//!
//! payloads:
//!  PageImage  lower u16, upper u16, bytes [12, lower) ++ [upper, 8192)
//!             of the page (all but its LSN and CRC)
//!             (the hole between the slot array and the cells is zero)
//!  LeafPut    key_len u16, key, cell_value (see page::slotted)
//!  LeafDelete key_len u16, key
//!  MetaSet    meta::Meta encoded (see page::meta)
//!  Commit     commit_time_us u64 (wall clock, informational)
//!  Abort      (no payload)
//! ```
//!
//! Every record changes at most one page, so redo can run page by page in
//! parallel (DESIGN.md section 3); multi-page changes (splits) are several
//! records in one group.

use crate::ids::{Lsn, PageNo};
use crate::page::PAGE_BYTES;

pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 24;
/// Largest record: a page image plus its header, or a leaf put of the
/// largest inline cell. Values above the inline limit go to overflow pages,
/// which are logged as page images.
pub const RECORD_BYTES_MAX: usize = HEADER_BYTES + 4 + PAGE_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    PageImage = 1,
    LeafPut = 2,
    LeafDelete = 3,
    MetaSet = 4,
    Commit = 5,
    Abort = 6,
}

/// The kind a header's `kind` byte names, if any.
pub fn kind_of(v: u8) -> Option<RecordKind> {
    RecordKind::from_u8(v)
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::PageImage,
            2 => RecordKind::LeafPut,
            3 => RecordKind::LeafDelete,
            4 => RecordKind::MetaSet,
            5 => RecordKind::Commit,
            6 => RecordKind::Abort,
            _ => return None,
        })
    }
}

/// A decoded record body. Borrowed from the buffer it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Whole-page image with the free hole removed: a full-page write after
    /// a checkpoint (torn-page protection), a new page, or a split.
    PageImage {
        page: PageNo,
        lower: u16,
        upper: u16,
        head: &'a [u8],
        tail: &'a [u8],
    },
    /// Insert or replace `key` in a leaf with an encoded cell value.
    LeafPut {
        page: PageNo,
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Remove `key` from a leaf.
    LeafDelete { page: PageNo, key: &'a [u8] },
    /// Overwrite the meta page's fields.
    MetaSet { body: &'a [u8] },
    /// End of a record group: the transaction is committed.
    Commit { commit_time_us: u64 },
    /// Ends the group it closes without applying it.
    Abort,
}

impl Record<'_> {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::PageImage { .. } => RecordKind::PageImage,
            Record::LeafPut { .. } => RecordKind::LeafPut,
            Record::LeafDelete { .. } => RecordKind::LeafDelete,
            Record::MetaSet { .. } => RecordKind::MetaSet,
            Record::Commit { .. } => RecordKind::Commit,
            Record::Abort => RecordKind::Abort,
        }
    }

    /// The page the record changes, if any.
    pub fn page(&self) -> Option<PageNo> {
        match self {
            Record::PageImage { page, .. }
            | Record::LeafPut { page, .. }
            | Record::LeafDelete { page, .. } => Some(*page),
            Record::MetaSet { .. } => Some(PageNo::META),
            Record::Commit { .. } | Record::Abort => None,
        }
    }

    fn payload_bytes(&self) -> usize {
        match self {
            Record::PageImage { head, tail, .. } => 4 + head.len() + tail.len(),
            Record::LeafPut { key, value, .. } => 2 + key.len() + value.len(),
            Record::LeafDelete { key, .. } => 2 + key.len(),
            Record::MetaSet { body } => body.len(),
            Record::Commit { .. } => 8,
            Record::Abort => 0,
        }
    }

    /// Total encoded size, header included.
    pub fn encoded_bytes(&self) -> usize {
        HEADER_BYTES + self.payload_bytes()
    }

    /// Appends the encoded record to `out`. `prev` is the LSN of the record
    /// before it in the stream.
    pub fn encode_into(&self, prev: Lsn, out: &mut Vec<u8>) {
        let start = out.len();
        let len = self.encoded_bytes();
        assert!(
            len <= RECORD_BYTES_MAX,
            "record of {len} bytes exceeds the maximum"
        );
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // crc, filled below
        out.extend_from_slice(&prev.0.to_le_bytes());
        out.push(self.kind() as u8);
        out.push(0);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.page().unwrap_or(PageNo::NONE).0.to_le_bytes());
        match self {
            Record::PageImage {
                lower,
                upper,
                head,
                tail,
                ..
            } => {
                out.extend_from_slice(&lower.to_le_bytes());
                out.extend_from_slice(&upper.to_le_bytes());
                out.extend_from_slice(head);
                out.extend_from_slice(tail);
            }
            Record::LeafPut { key, value, .. } => {
                out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            Record::LeafDelete { key, .. } => {
                out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                out.extend_from_slice(key);
            }
            Record::MetaSet { body } => out.extend_from_slice(body),
            Record::Commit { commit_time_us } => {
                out.extend_from_slice(&commit_time_us.to_le_bytes())
            }
            Record::Abort => {}
        }
        debug_assert_eq!(out.len() - start, len);
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Why bytes at a position are not a valid record. Recovery treats any of
/// these as the end of the WAL (a torn or never-written tail); a standby
/// treats them as a protocol fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("record length {len} out of range")]
    BadLength { len: u32 },
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record links to {found}, expected previous record at {expected}")]
    BrokenChain { expected: Lsn, found: Lsn },
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("malformed {kind:?} payload")]
    BadPayload { kind: RecordKind },
}

/// Header fields readable before the whole record is present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub crc: u32,
    pub prev: Lsn,
    pub kind: u8,
    pub page: PageNo,
}

/// Reads a header from the start of `buf` and checks its length field.
pub fn decode_header(buf: &[u8]) -> Result<Header, DecodeError> {
    let h = buf.get(..HEADER_BYTES).ok_or(DecodeError::Truncated {
        needed: HEADER_BYTES,
        available: buf.len(),
    })?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if (len as usize) < HEADER_BYTES || len as usize > RECORD_BYTES_MAX {
        return Err(DecodeError::BadLength { len });
    }
    Ok(Header {
        len,
        crc: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        prev: Lsn(u64::from_le_bytes([
            h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15],
        ])),
        kind: h[16],
        page: PageNo(u32::from_le_bytes([h[20], h[21], h[22], h[23]])),
    })
}

/// Decodes one record from the start of `buf`, checking length, checksum
/// and the link to `expected_prev`. Returns the record and its length.
pub fn decode(buf: &[u8], expected_prev: Lsn) -> Result<(Record<'_>, usize), DecodeError> {
    let header = decode_header(buf)?;
    let len = header.len as usize;
    let bytes = buf.get(..len).ok_or(DecodeError::Truncated {
        needed: len,
        available: buf.len(),
    })?;
    let computed = crc32c::crc32c(&bytes[8..]);
    if computed != header.crc {
        return Err(DecodeError::Checksum {
            stored: header.crc,
            computed,
        });
    }
    if header.prev != expected_prev {
        return Err(DecodeError::BrokenChain {
            expected: expected_prev,
            found: header.prev,
        });
    }
    parse(bytes, header).map(|r| (r, len))
}

/// Decodes a record whose checksum and chain were already verified (the
/// bytes of an `OwnedRecordBytes`): the payload is parsed again, the CRC
/// is not recomputed (redo reads each record several times; a page image
/// is 8 KiB of CRC each time).
pub fn decode_verified(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let header = decode_header(bytes)?;
    let bytes = bytes
        .get(..header.len as usize)
        .ok_or(DecodeError::Truncated {
            needed: header.len as usize,
            available: bytes.len(),
        })?;
    parse(bytes, header)
}

/// Parses the payload of one whole record (`bytes` is exactly the record).
fn parse(bytes: &[u8], header: Header) -> Result<Record<'_>, DecodeError> {
    let kind =
        RecordKind::from_u8(header.kind).ok_or(DecodeError::UnknownKind { kind: header.kind })?;
    let payload = &bytes[HEADER_BYTES..];
    let bad = DecodeError::BadPayload { kind };
    let record = match kind {
        RecordKind::PageImage => {
            let lower = read_u16(payload, 0).ok_or(bad.clone())?;
            let upper = read_u16(payload, 2).ok_or(bad.clone())?;
            if (lower as usize) < crate::page::HEADER_BYTES {
                return Err(bad);
            }
            let head_len = lower as usize - crate::page::IMAGE_HEAD_AT;
            let tail_len = PAGE_BYTES.checked_sub(upper as usize).ok_or(bad.clone())?;
            if lower > upper || payload.len() != 4 + head_len + tail_len {
                return Err(bad);
            }
            Record::PageImage {
                page: header.page,
                lower,
                upper,
                head: &payload[4..4 + head_len],
                tail: &payload[4 + head_len..],
            }
        }
        RecordKind::LeafPut => {
            let (key, value) = split_key(payload).ok_or(bad)?;
            Record::LeafPut {
                page: header.page,
                key,
                value,
            }
        }
        RecordKind::LeafDelete => {
            let (key, rest) = split_key(payload).ok_or(bad.clone())?;
            if !rest.is_empty() {
                return Err(bad);
            }
            Record::LeafDelete {
                page: header.page,
                key,
            }
        }
        RecordKind::MetaSet => Record::MetaSet { body: payload },
        RecordKind::Commit => {
            let raw: [u8; 8] = payload.try_into().map_err(|_| bad)?;
            Record::Commit {
                commit_time_us: u64::from_le_bytes(raw),
            }
        }
        RecordKind::Abort => {
            if !payload.is_empty() {
                return Err(bad);
            }
            Record::Abort
        }
    };
    if record.page().is_some_and(|p| p.is_none()) {
        return Err(DecodeError::BadPayload { kind });
    }
    Ok(record)
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn split_key(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let key_len = read_u16(payload, 0)? as usize;
    let key = payload.get(2..2 + key_len)?;
    Some((key, &payload[2 + key_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = (u8, u32, Vec<u8>, Vec<u8>, u64)> {
        (
            1u8..=6,
            0u32..1000,
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..256),
            any::<u64>(),
        )
    }

    fn build<'a>(kind: u8, page: u32, a: &'a [u8], b: &'a [u8], t: u64) -> Record<'a> {
        let page = PageNo(page);
        match kind {
            1 => {
                let a = &a[..a.len().min(20)];
                let lower = (crate::page::IMAGE_HEAD_AT + 20) as u16;
                let a: &'a [u8] = if a.len() == 20 { a } else { &[0u8; 20] };
                let upper = (PAGE_BYTES - b.len()) as u16;
                Record::PageImage {
                    page,
                    lower,
                    upper,
                    head: a,
                    tail: b,
                }
            }
            2 => Record::LeafPut {
                page,
                key: a,
                value: b,
            },
            3 => Record::LeafDelete { page, key: a },
            4 => Record::MetaSet { body: b },
            5 => Record::Abort,
            _ => Record::Commit { commit_time_us: t },
        }
    }

    proptest! {
        #[test]
        fn round_trip((kind, page, a, b, t) in arb_record(), prev in any::<u64>()) {
            let rec = build(kind, page, &a, &b, t);
            let mut out = Vec::new();
            rec.encode_into(Lsn(prev), &mut out);
            let (decoded, len) = decode(&out, Lsn(prev)).unwrap();
            prop_assert_eq!(len, out.len());
            prop_assert_eq!(decoded, rec);
        }

        #[test]
        fn truncation_never_decodes((kind, page, a, b, t) in arb_record(), cut in any::<prop::sample::Index>()) {
            let rec = build(kind, page, &a, &b, t);
            let mut out = Vec::new();
            rec.encode_into(Lsn(7), &mut out);
            let cut = cut.index(out.len());
            prop_assert!(decode(&out[..cut], Lsn(7)).is_err());
        }

        #[test]
        fn single_bit_flip_is_detected((kind, page, a, b, t) in arb_record(), bit in any::<prop::sample::Index>()) {
            let rec = build(kind, page, &a, &b, t);
            let mut out = Vec::new();
            rec.encode_into(Lsn(7), &mut out);
            let bit = bit.index(out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&out, Lsn(7)).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, Lsn(0));
        }
    }

    #[test]
    fn wrong_prev_is_a_broken_chain() {
        let mut out = Vec::new();
        Record::Commit { commit_time_us: 1 }.encode_into(Lsn(100), &mut out);
        assert_eq!(
            decode(&out, Lsn(99)).unwrap_err(),
            DecodeError::BrokenChain {
                expected: Lsn(99),
                found: Lsn(100)
            }
        );
    }
}
