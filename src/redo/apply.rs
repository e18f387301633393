//! Applies one WAL record to one page.
//!
//! Called by the engine for every change it makes (on its private copy of
//! the page, before the transaction is installed) and by recovery and
//! standbys for every record they redo. Idempotence comes from the page
//! LSN: a record is applied only to a page whose LSN is older
//! ([`needs_redo`]); afterwards the page LSN is the record's LSN.

use crate::ids::{Lsn, PageNo};
use crate::page::{self, meta, slotted, PageKind, HEADER_BYTES, IMAGE_HEAD_AT, PAGE_BYTES};
use crate::wal::record::Record;

/// A record that cannot be applied to the page it names: the WAL or the
/// page is not what the record expects (corruption, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("record at {lsn} for page {page} expects a {expected:?} page, found {found:?}")]
    WrongKind {
        lsn: Lsn,
        page: PageNo,
        expected: PageKind,
        found: PageKind,
    },
    #[error("record at {lsn} does not fit page {page}")]
    NoRoom { lsn: Lsn, page: PageNo },
    #[error("record at {lsn} deletes a key missing from page {page}")]
    MissingKey { lsn: Lsn, page: PageNo },
    #[error("record at {lsn} carries a malformed body")]
    BadBody { lsn: Lsn },
    #[error("commit record at {lsn} names no page")]
    NoPage { lsn: Lsn },
}

/// Whether a record at `lsn` still has to be applied to `p`.
pub fn needs_redo(p: &[u8; PAGE_BYTES], lsn: Lsn) -> bool {
    page::lsn(p) < lsn
}

/// Applies `rec` (at `lsn`) to `p`, the page it names, and stamps the LSN.
pub fn apply(p: &mut [u8; PAGE_BYTES], lsn: Lsn, rec: &Record<'_>) -> Result<(), ApplyError> {
    match rec {
        Record::PageImage {
            page,
            lower,
            upper,
            head,
            tail,
        } => {
            p.fill(0);
            let lower = *lower as usize;
            let upper = *upper as usize;
            if lower < HEADER_BYTES || upper > PAGE_BYTES || lower > upper {
                return Err(ApplyError::BadBody { lsn });
            }
            if head.len() != lower - IMAGE_HEAD_AT || tail.len() != PAGE_BYTES - upper {
                return Err(ApplyError::BadBody { lsn });
            }
            p[IMAGE_HEAD_AT..lower].copy_from_slice(head);
            p[upper..].copy_from_slice(tail);
            if page::page_no(p) != *page {
                return Err(ApplyError::BadBody { lsn });
            }
        }
        Record::LeafPut { page, key, value } => {
            expect_kind(p, *page, lsn, PageKind::Leaf)?;
            if !slotted::can_put(p, key, value) {
                return Err(ApplyError::NoRoom { lsn, page: *page });
            }
            slotted::put(p, key, value);
        }
        Record::LeafDelete { page, key } => {
            expect_kind(p, *page, lsn, PageKind::Leaf)?;
            let idx =
                slotted::search(p, key).map_err(|_| ApplyError::MissingKey { lsn, page: *page })?;
            slotted::remove(p, idx);
        }
        Record::MetaSet { body } => {
            meta::Meta::decode(body).map_err(|_| ApplyError::BadBody { lsn })?;
            page::init(p, PageNo::META, PageKind::Meta);
            p[HEADER_BYTES..HEADER_BYTES + body.len()].copy_from_slice(body);
            page::set_lower(p, (HEADER_BYTES + body.len()) as u16);
        }
        Record::Commit { .. } | Record::Abort => return Err(ApplyError::NoPage { lsn }),
    }
    page::set_lsn(p, lsn);
    Ok(())
}

fn expect_kind(
    p: &[u8; PAGE_BYTES],
    page: PageNo,
    lsn: Lsn,
    expected: PageKind,
) -> Result<(), ApplyError> {
    let found = page::kind(p);
    if found != expected {
        return Err(ApplyError::WrongKind {
            lsn,
            page,
            expected,
            found,
        });
    }
    Ok(())
}

/// Builds a `PageImage` record body from a page: the header (after its LSN
/// and CRC) and the bytes outside the zero hole.
pub fn image_of(p: &[u8; PAGE_BYTES]) -> Record<'_> {
    let lower = page::lower(p);
    let upper = page::upper(p);
    Record::PageImage {
        page: page::page_no(p),
        lower,
        upper,
        head: &p[IMAGE_HEAD_AT..lower as usize],
        tail: &p[upper as usize..],
    }
}
