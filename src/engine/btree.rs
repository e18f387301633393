//! B+tree over slotted pages, working inside a [`Tx`].
//!
//! - Leaves hold `key -> value`; a value is stored inline when its cell is
//!   at most `slotted::CELL_BYTES_MAX`, else in a chain of overflow pages
//!   (leaf value `[1, total_len u32, first_page u32]`; inline `[0, bytes]`).
//! - Internal pages: `link` is the leftmost child; cell `(k, child)` holds
//!   keys `>= k`. Leaves are chained left to right by `link` for scans.
//! - Point changes are logged as `LeafPut`/`LeafDelete`; structural
//!   changes (splits, new roots, overflow and free pages) as page images.
//! - Delete policy: pages are never merged. A leaf may become empty and
//!   stays in the tree; its space is reused by later keys in its range, and
//!   freed overflow pages go to the free list. (PostgreSQL's nbtree also
//!   leaves this to VACUUM; a reorganising vacuum is future work.)

use super::tx::Tx;
use super::EngineError;
use crate::ids::PageNo;
use crate::page::{self, slotted, PageKind, HEADER_BYTES, PAGE_BYTES};
use crate::wal::record::Record;

/// Largest key; keeps at least seven cells in an internal page.
pub const KEY_BYTES_MAX: usize = 1024;
/// Largest value (the limit: 512 KiB).
pub const VALUE_BYTES_MAX: usize = 512 * 1024;
const OVERFLOW_PAYLOAD_BYTES: usize = PAGE_BYTES - HEADER_BYTES;
const INLINE: u8 = 0;
const OVERFLOW: u8 = 1;

fn child_of(p: &slotted::Page, key: &[u8]) -> PageNo {
    match slotted::search(p, key) {
        Ok(i) => child_at(p, i),
        Err(0) => page::link(p),
        Err(i) => child_at(p, i - 1),
    }
}

fn child_at(p: &slotted::Page, i: usize) -> PageNo {
    let v = slotted::cell(p, i).1;
    PageNo(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
}

/// Descends to the leaf for `key`; returns the path of internal pages.
fn descend(tx: &mut Tx<'_, '_>, key: &[u8]) -> Result<(PageNo, Vec<PageNo>), EngineError> {
    let mut no = tx.meta().root;
    let mut path = Vec::with_capacity(tx.meta().height as usize);
    loop {
        let p = tx.page(no)?;
        match page::kind(p) {
            PageKind::Leaf => return Ok((no, path)),
            PageKind::Internal => {
                path.push(no);
                no = child_of(p, key);
            }
            other => {
                return Err(EngineError::TreeCorrupt {
                    page: no,
                    found: other,
                })
            }
        }
        if path.len() > 64 {
            return Err(EngineError::Bug("tree deeper than 64 levels"));
        }
    }
}

pub fn check_key(key: &[u8]) -> Result<(), EngineError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(EngineError::KeyTooLarge {
            len: key.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

pub fn get(tx: &mut Tx<'_, '_>, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
    check_key(key)?;
    let (leaf, _) = descend(tx, key)?;
    let p = tx.page(leaf)?;
    let stored = match slotted::search(p, key) {
        Ok(i) => slotted::cell(p, i).1.to_vec(),
        Err(_) => return Ok(None),
    };
    read_value(tx, &stored).map(Some)
}

fn read_value(tx: &mut Tx<'_, '_>, stored: &[u8]) -> Result<Vec<u8>, EngineError> {
    match stored.first() {
        Some(&INLINE) => Ok(stored[1..].to_vec()),
        Some(&OVERFLOW) if stored.len() == 9 => {
            let total = u32::from_le_bytes([stored[1], stored[2], stored[3], stored[4]]) as usize;
            let mut no = PageNo(u32::from_le_bytes([
                stored[5], stored[6], stored[7], stored[8],
            ]));
            let mut out = Vec::with_capacity(total);
            while out.len() < total {
                let p = tx.page(no)?;
                if page::kind(p) != PageKind::Overflow {
                    return Err(EngineError::TreeCorrupt {
                        page: no,
                        found: page::kind(p),
                    });
                }
                let used = (page::aux(p) as usize).min(OVERFLOW_PAYLOAD_BYTES);
                out.extend_from_slice(&p[HEADER_BYTES..HEADER_BYTES + used]);
                no = page::link(p);
                if no.is_none() {
                    break;
                }
            }
            if out.len() != total {
                return Err(EngineError::Bug(
                    "overflow chain length differs from its value",
                ));
            }
            Ok(out)
        }
        _ => Err(EngineError::Bug("malformed leaf value")),
    }
}

/// Pages of an overflow value, in chain order.
fn overflow_pages(tx: &mut Tx<'_, '_>, stored: &[u8]) -> Result<Vec<PageNo>, EngineError> {
    let mut pages = Vec::new();
    if stored.first() != Some(&OVERFLOW) || stored.len() != 9 {
        return Ok(pages);
    }
    let mut no = PageNo(u32::from_le_bytes([
        stored[5], stored[6], stored[7], stored[8],
    ]));
    while !no.is_none() {
        pages.push(no);
        if pages.len() > VALUE_BYTES_MAX / OVERFLOW_PAYLOAD_BYTES + 2 {
            return Err(EngineError::Bug("overflow chain longer than any value"));
        }
        no = page::link(tx.page(no)?);
    }
    Ok(pages)
}

fn encode_value(tx: &mut Tx<'_, '_>, key: &[u8], value: &[u8]) -> Result<Vec<u8>, EngineError> {
    if slotted::cell_cost(key.len(), 1 + value.len()) <= slotted::CELL_BYTES_MAX {
        let mut v = Vec::with_capacity(1 + value.len());
        v.push(INLINE);
        v.extend_from_slice(value);
        return Ok(v);
    }
    let chunks: Vec<&[u8]> = value.chunks(OVERFLOW_PAYLOAD_BYTES).collect();
    let mut pages = Vec::with_capacity(chunks.len());
    for _ in 0..chunks.len() {
        pages.push(tx.allocate()?);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let next = pages.get(i + 1).copied().unwrap_or(PageNo::NONE);
        tx.write_image(pages[i], PageKind::Overflow, |p| {
            p[HEADER_BYTES..HEADER_BYTES + chunk.len()].copy_from_slice(chunk);
            page::set_lower(p, (HEADER_BYTES + chunk.len()) as u16);
            page::set_aux(p, chunk.len() as u32);
            page::set_link(p, next);
        })?;
    }
    let mut v = vec![OVERFLOW];
    v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    v.extend_from_slice(&pages[0].0.to_le_bytes());
    Ok(v)
}

/// Inserts or replaces; returns whether the key existed before.
pub fn put(tx: &mut Tx<'_, '_>, key: &[u8], value: &[u8]) -> Result<bool, EngineError> {
    check_key(key)?;
    if value.len() > VALUE_BYTES_MAX {
        return Err(EngineError::ValueTooLarge {
            len: value.len(),
            max: VALUE_BYTES_MAX,
        });
    }
    let (leaf, path) = descend(tx, key)?;
    let old = {
        let p = tx.page(leaf)?;
        slotted::search(p, key)
            .ok()
            .map(|i| slotted::cell(p, i).1.to_vec())
    };
    if let Some(old) = &old {
        for no in overflow_pages(tx, old)? {
            tx.free(no)?;
        }
    } else {
        tx.meta_mut().key_count += 1;
    }
    let stored = encode_value(tx, key, value)?;
    if slotted::can_put(tx.page(leaf)?, key, &stored) {
        tx.log(&Record::LeafPut {
            page: leaf,
            key,
            value: &stored,
        })?;
    } else {
        split_leaf(tx, leaf, path, key, &stored)?;
    }
    Ok(old.is_some())
}

/// Removes `key`; returns whether it existed.
pub fn delete(tx: &mut Tx<'_, '_>, key: &[u8]) -> Result<bool, EngineError> {
    check_key(key)?;
    let (leaf, _) = descend(tx, key)?;
    let old = {
        let p = tx.page(leaf)?;
        slotted::search(p, key)
            .ok()
            .map(|i| slotted::cell(p, i).1.to_vec())
    };
    let Some(old) = old else { return Ok(false) };
    for no in overflow_pages(tx, &old)? {
        tx.free(no)?;
    }
    tx.log(&Record::LeafDelete { page: leaf, key })?;
    let meta = tx.meta_mut();
    meta.key_count = meta.key_count.saturating_sub(1);
    Ok(true)
}

type Cells = Vec<(Vec<u8>, Vec<u8>)>;

fn split_leaf(
    tx: &mut Tx<'_, '_>,
    leaf: PageNo,
    path: Vec<PageNo>,
    key: &[u8],
    stored: &[u8],
) -> Result<(), EngineError> {
    let (mut cells, right_link) = {
        let p = tx.page(leaf)?;
        (slotted::cells(p), page::link(p))
    };
    match cells.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
        Ok(i) => cells[i].1 = stored.to_vec(),
        Err(i) => cells.insert(i, (key.to_vec(), stored.to_vec())),
    }
    let at = slotted::split_index(&cells);
    let right_cells = cells.split_off(at);
    let right = tx.allocate()?;
    let separator = right_cells[0].0.clone();
    write_node(tx, right, PageKind::Leaf, right_link, &right_cells)?;
    write_node(tx, leaf, PageKind::Leaf, right, &cells)?;
    insert_into_parent(tx, path, leaf, separator, right)
}

fn write_node(
    tx: &mut Tx<'_, '_>,
    no: PageNo,
    kind: PageKind,
    link: PageNo,
    cells: &Cells,
) -> Result<(), EngineError> {
    if !slotted::fits(cells) {
        return Err(EngineError::Bug("split half does not fit a page"));
    }
    tx.write_image(no, kind, |p| {
        page::set_link(p, link);
        slotted::rebuild(p, cells);
    })
}

/// Adds `(separator -> right)` to the parent of `left` (the last page of
/// `path`), splitting upwards as needed; a new root when `path` is empty.
fn insert_into_parent(
    tx: &mut Tx<'_, '_>,
    mut path: Vec<PageNo>,
    left: PageNo,
    separator: Vec<u8>,
    right: PageNo,
) -> Result<(), EngineError> {
    let child = right.0.to_le_bytes().to_vec();
    let Some(parent) = path.pop() else {
        let root = tx.allocate()?;
        write_node(
            tx,
            root,
            PageKind::Internal,
            left,
            &vec![(separator, child)],
        )?;
        let meta = tx.meta_mut();
        meta.root = root;
        meta.height += 1;
        return Ok(());
    };
    let (mut cells, leftmost) = {
        let p = tx.page(parent)?;
        (slotted::cells(p), page::link(p))
    };
    match cells.binary_search_by(|(k, _)| k.as_slice().cmp(&separator)) {
        Ok(_) => return Err(EngineError::Bug("separator already in parent")),
        Err(i) => cells.insert(i, (separator, child)),
    }
    if slotted::fits(&cells) {
        return write_node(tx, parent, PageKind::Internal, leftmost, &cells);
    }
    let at = slotted::split_index(&cells);
    let mut right_cells = cells.split_off(at);
    let (promoted, promoted_child) = right_cells.remove(0);
    let new_right = tx.allocate()?;
    let right_leftmost = PageNo(u32::from_le_bytes([
        promoted_child[0],
        promoted_child[1],
        promoted_child[2],
        promoted_child[3],
    ]));
    write_node(
        tx,
        new_right,
        PageKind::Internal,
        right_leftmost,
        &right_cells,
    )?;
    write_node(tx, parent, PageKind::Internal, leftmost, &cells)?;
    insert_into_parent(tx, path, parent, promoted, new_right)
}

/// Up to `count` keys `>= start` in order, and whether more may follow.
pub fn scan(
    tx: &mut Tx<'_, '_>,
    start: &[u8],
    count: usize,
) -> Result<(Vec<Vec<u8>>, bool), EngineError> {
    let (mut leaf, _) = descend(tx, start)?;
    let mut keys = Vec::with_capacity(count.min(1024));
    let mut first = true;
    loop {
        let p = tx.page(leaf)?;
        let from = if first {
            slotted::search(p, start).unwrap_or_else(|i| i)
        } else {
            0
        };
        first = false;
        for i in from..slotted::count(p) {
            if keys.len() == count {
                return Ok((keys, true));
            }
            keys.push(slotted::key(p, i).to_vec());
        }
        leaf = page::link(p);
        if leaf.is_none() {
            return Ok((keys, false));
        }
    }
}
