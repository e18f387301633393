//! Meta page (page 0): where the tree starts and how big it is.
//!
//! ```text
//! body at byte 32 of page 0, little-endian (FORMAT_VERSION 1), 40 bytes
//!  0      4        8     12          16         20       24          32       40
//!  +------+--------+-----+-----------+----------+--------+-----------+--------+
//!  |magic |version |root |page_count |free_head |height  |key_count  |rsvd    |
//!  +------+--------+-----+-----------+----------+--------+-----------+--------+
//!  magic      "TNDM"
//!  root       root page of the B+tree
//!  page_count pages ever allocated (the data file's high-water mark)
//!  free_head  first page of the free list (u32::MAX: empty)
//!  height     levels of the tree (1 = root is a leaf)
//!  key_count  number of keys (DBSIZE)
//! ```
//!
//! The meta page is only ever changed by a `MetaSet` record that carries
//! the whole body, so redo of it rewrites the page completely (it is its
//! own full-page image).

use super::{PageKind, PAGE_BYTES};
use crate::ids::PageNo;

pub const MAGIC: u32 = u32::from_le_bytes(*b"TNDM");
pub const FORMAT_VERSION: u32 = 1;
pub const BODY_BYTES: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub root: PageNo,
    pub page_count: u32,
    pub free_head: PageNo,
    pub height: u32,
    pub key_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("meta body of {len} bytes, expected {BODY_BYTES}")]
    Length { len: usize },
    #[error("meta magic {found:#010x} is not tandem's")]
    Magic { found: u32 },
    #[error("meta format version {found}, this build reads {FORMAT_VERSION}")]
    Version { found: u32 },
}

impl Meta {
    pub fn encode(&self) -> [u8; BODY_BYTES] {
        let mut b = [0u8; BODY_BYTES];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.root.0.to_le_bytes());
        b[12..16].copy_from_slice(&self.page_count.to_le_bytes());
        b[16..20].copy_from_slice(&self.free_head.0.to_le_bytes());
        b[20..24].copy_from_slice(&self.height.to_le_bytes());
        b[24..32].copy_from_slice(&self.key_count.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Meta, MetaError> {
        let b: &[u8; BODY_BYTES] = b
            .try_into()
            .map_err(|_| MetaError::Length { len: b.len() })?;
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if u32_at(0) != MAGIC {
            return Err(MetaError::Magic { found: u32_at(0) });
        }
        if u32_at(4) != FORMAT_VERSION {
            return Err(MetaError::Version { found: u32_at(4) });
        }
        let mut kc = [0u8; 8];
        kc.copy_from_slice(&b[24..32]);
        Ok(Meta {
            root: PageNo(u32_at(8)),
            page_count: u32_at(12),
            free_head: PageNo(u32_at(16)),
            height: u32_at(20),
            key_count: u64::from_le_bytes(kc),
        })
    }

    /// Reads the meta body of page 0; `None` if the page was never set up.
    pub fn read(p: &[u8; PAGE_BYTES]) -> Result<Option<Meta>, MetaError> {
        if super::kind(p) != PageKind::Meta {
            return Ok(None);
        }
        let at = super::HEADER_BYTES;
        Meta::decode(&p[at..at + BODY_BYTES]).map(Some)
    }
}
