//! The 8 KiB page: header layout, checksum, and the page kinds.
//!
//! ```text
//! page header, 32 bytes, little-endian (FORMAT_VERSION 1)
//!  0           8       12        16   17    18      20      22      24      28      32
//!  +-----------+-------+---------+----+-----+-------+-------+-------+-------+-------+
//!  | page_lsn  | crc   | page_no |kind|flags| slots | lower | upper | link  | aux   |
//!  +-----------+-------+---------+----+-----+-------+-------+-------+-------+-------+
//!  page_lsn u64  LSN of the last WAL record applied to this page
//!  crc      u32  CRC32C of bytes [12, 8192) followed by [0, 8): all but itself
//!  page_no  u32  the page's own number: catches misdirected reads/writes
//!  kind     u8   PageKind
//!  flags    u8   0
//!  slots    u16  number of slots (leaf and internal pages)
//!  lower    u16  end of the slot array (first free byte)
//!  upper    u16  start of the cell area (bytes [lower, upper) are free, zero)
//!  link     u32  leaf: right sibling; internal: leftmost child;
//!                overflow and free pages: next page in the chain
//!  aux      u32  overflow page: payload bytes used; otherwise 0
//! ```
//!
//! A page that was never written (all zero) is a valid empty page of kind
//! `Unused`; any other page must carry a matching checksum and its own
//! number, or it is reported as corrupt and never served.

pub mod meta;
pub mod slotted;

use crate::ids::{Lsn, PageNo};

pub const FORMAT_VERSION: u32 = 1;
pub const PAGE_BYTES: usize = 8192;
pub const HEADER_BYTES: usize = 32;
/// Page images carry the page from here on: everything but LSN and CRC,
/// which the applier stamps itself.
pub const IMAGE_HEAD_AT: usize = 12;

const LSN_AT: usize = 0;
const CRC_AT: usize = 8;
const PAGE_NO_AT: usize = IMAGE_HEAD_AT;
const KIND_AT: usize = 16;
const SLOTS_AT: usize = 18;
const LOWER_AT: usize = 20;
const UPPER_AT: usize = 22;
const LINK_AT: usize = 24;
const AUX_AT: usize = 28;
const _: () = assert!(AUX_AT + 4 == HEADER_BYTES);
const _: () = assert!(PAGE_BYTES <= u16::MAX as usize + 1);

/// An owned, page-sized buffer.
pub type PageBuf = Box<[u8; PAGE_BYTES]>;

pub fn new_page_buf() -> PageBuf {
    Box::new([0u8; PAGE_BYTES])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    Unused = 0,
    Meta = 1,
    Leaf = 2,
    Internal = 3,
    Overflow = 4,
    Free = 5,
}

impl PageKind {
    pub fn from_u8(v: u8) -> Option<PageKind> {
        Some(match v {
            0 => PageKind::Unused,
            1 => PageKind::Meta,
            2 => PageKind::Leaf,
            3 => PageKind::Internal,
            4 => PageKind::Overflow,
            5 => PageKind::Free,
            _ => return None,
        })
    }
}

/// Why a page read from disk cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page {page}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        page: PageNo,
        stored: u32,
        computed: u32,
    },
    #[error("page {page}: header names page {found} (misdirected write)")]
    WrongPageNo { page: PageNo, found: PageNo },
    #[error("page {page}: unknown page kind {kind}")]
    UnknownKind { page: PageNo, kind: u8 },
}

fn get_u16(p: &[u8; PAGE_BYTES], at: usize) -> u16 {
    u16::from_le_bytes([p[at], p[at + 1]])
}
fn get_u32(p: &[u8; PAGE_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}
fn put_u16(p: &mut [u8; PAGE_BYTES], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(p: &mut [u8; PAGE_BYTES], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn lsn(p: &[u8; PAGE_BYTES]) -> Lsn {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&p[LSN_AT..LSN_AT + 8]);
    Lsn(u64::from_le_bytes(raw))
}
pub fn set_lsn(p: &mut [u8; PAGE_BYTES], lsn: Lsn) {
    p[LSN_AT..LSN_AT + 8].copy_from_slice(&lsn.0.to_le_bytes());
}
pub fn page_no(p: &[u8; PAGE_BYTES]) -> PageNo {
    PageNo(get_u32(p, PAGE_NO_AT))
}
pub fn kind(p: &[u8; PAGE_BYTES]) -> PageKind {
    PageKind::from_u8(p[KIND_AT]).unwrap_or(PageKind::Unused)
}
pub fn slots(p: &[u8; PAGE_BYTES]) -> u16 {
    get_u16(p, SLOTS_AT)
}
pub fn set_slots(p: &mut [u8; PAGE_BYTES], v: u16) {
    put_u16(p, SLOTS_AT, v)
}
pub fn lower(p: &[u8; PAGE_BYTES]) -> u16 {
    get_u16(p, LOWER_AT)
}
pub fn set_lower(p: &mut [u8; PAGE_BYTES], v: u16) {
    put_u16(p, LOWER_AT, v)
}
pub fn upper(p: &[u8; PAGE_BYTES]) -> u16 {
    get_u16(p, UPPER_AT)
}
pub fn set_upper(p: &mut [u8; PAGE_BYTES], v: u16) {
    put_u16(p, UPPER_AT, v)
}
pub fn link(p: &[u8; PAGE_BYTES]) -> PageNo {
    PageNo(get_u32(p, LINK_AT))
}
pub fn set_link(p: &mut [u8; PAGE_BYTES], v: PageNo) {
    put_u32(p, LINK_AT, v.0)
}
pub fn aux(p: &[u8; PAGE_BYTES]) -> u32 {
    get_u32(p, AUX_AT)
}
pub fn set_aux(p: &mut [u8; PAGE_BYTES], v: u32) {
    put_u32(p, AUX_AT, v)
}

/// Clears `p` and writes a fresh header for a page of `kind`. The hole
/// `[lower, upper)` spans the whole body.
pub fn init(p: &mut [u8; PAGE_BYTES], page: PageNo, kind: PageKind) {
    p.fill(0);
    put_u32(p, PAGE_NO_AT, page.0);
    p[KIND_AT] = kind as u8;
    set_lower(p, HEADER_BYTES as u16);
    set_upper(p, PAGE_BYTES as u16);
    set_link(p, PageNo::NONE);
}

/// CRC32C over the whole page except the checksum field itself.
pub fn compute_crc(p: &[u8; PAGE_BYTES]) -> u32 {
    let crc = crc32c::crc32c(&p[PAGE_NO_AT..]);
    crc32c::crc32c_append(crc, &p[LSN_AT..CRC_AT])
}

/// Stamps the checksum; called right before a page is written to disk.
pub fn seal(p: &mut [u8; PAGE_BYTES]) {
    let crc = compute_crc(p);
    put_u32(p, CRC_AT, crc);
}

/// Checks a page read from disk at position `page`. An all-zero page (never
/// written, e.g. past the end of the file) is valid and `Unused`.
pub fn verify(p: &[u8; PAGE_BYTES], page: PageNo) -> Result<(), PageError> {
    let stored = get_u32(p, CRC_AT);
    if stored == 0 && p.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let computed = compute_crc(p);
    if stored != computed {
        return Err(PageError::Checksum {
            page,
            stored,
            computed,
        });
    }
    let found = page_no(p);
    if found != page {
        return Err(PageError::WrongPageNo { page, found });
    }
    if PageKind::from_u8(p[KIND_AT]).is_none() {
        return Err(PageError::UnknownKind {
            page,
            kind: p[KIND_AT],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_verifies_and_any_bit_flip_fails() {
        let mut p = new_page_buf();
        init(&mut p, PageNo(7), PageKind::Leaf);
        set_lsn(&mut p, Lsn(1234));
        p[4000] = 0xab;
        seal(&mut p);
        assert_eq!(verify(&p, PageNo(7)), Ok(()));
        for bit in [0usize, 64, 100, 4000 * 8 + 3, PAGE_BYTES * 8 - 1] {
            let mut q = p.clone();
            q[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify(&q, PageNo(7)).is_err(),
                "flip of bit {bit} not detected"
            );
        }
    }

    #[test]
    fn zero_page_is_valid_and_misdirected_page_is_not() {
        let zero = new_page_buf();
        assert_eq!(verify(&zero, PageNo(3)), Ok(()));
        let mut p = new_page_buf();
        init(&mut p, PageNo(7), PageKind::Leaf);
        seal(&mut p);
        assert_eq!(
            verify(&p, PageNo(8)),
            Err(PageError::WrongPageNo {
                page: PageNo(8),
                found: PageNo(7)
            })
        );
    }
}
