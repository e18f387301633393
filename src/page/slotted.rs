//! Slotted layout shared by leaf and internal B+tree pages.
//!
//! ```text
//!  0        32                lower           upper                8192
//!  +--------+-----------------+---------------+---------------------+
//!  | header | slot array u16* |  hole (zero)  | cells, newest first |
//!  +--------+-----------------+---------------+---------------------+
//!  slot i   u16 offset of cell i; slots are sorted by key
//!  cell     key_len u16 | value_len u16 | key | value
//!           leaf value: see engine::btree (inline bytes or overflow ref)
//!           internal value: child page number u32
//!  aux      bytes of dead cells in the cell area (reclaimed by compaction)
//! ```
//!
//! Invariants: slots sorted by key with no duplicates; the hole
//! `[lower, upper)` is all zero (page images leave it out); every operation
//! is deterministic, so the primary and redo produce identical bytes.

use super::{HEADER_BYTES, PAGE_BYTES};

pub type Page = [u8; PAGE_BYTES];

const SLOT_BYTES: usize = 2;
const CELL_HEADER_BYTES: usize = 4;

/// Largest cell kept in a page: at least four fit in an empty page.
pub const CELL_BYTES_MAX: usize = (PAGE_BYTES - HEADER_BYTES) / 4 - SLOT_BYTES;

/// Bytes a cell with this key and value occupies, slot included.
pub fn cell_cost(key_len: usize, value_len: usize) -> usize {
    SLOT_BYTES + CELL_HEADER_BYTES + key_len + value_len
}

fn slot_offset(p: &Page, idx: usize) -> usize {
    let at = HEADER_BYTES + idx * SLOT_BYTES;
    u16::from_le_bytes([p[at], p[at + 1]]) as usize
}

pub fn count(p: &Page) -> usize {
    super::slots(p) as usize
}

/// Key and value of cell `idx`. Panics on a malformed page: pages are
/// verified by checksum before they are used, so a bad offset is our bug.
pub fn cell(p: &Page, idx: usize) -> (&[u8], &[u8]) {
    assert!(idx < count(p), "slot {idx} out of {}", count(p));
    let off = slot_offset(p, idx);
    let key_len = u16::from_le_bytes([p[off], p[off + 1]]) as usize;
    let value_len = u16::from_le_bytes([p[off + 2], p[off + 3]]) as usize;
    let key_at = off + CELL_HEADER_BYTES;
    (
        &p[key_at..key_at + key_len],
        &p[key_at + key_len..key_at + key_len + value_len],
    )
}

pub fn key(p: &Page, idx: usize) -> &[u8] {
    cell(p, idx).0
}

/// Binary search: `Ok(idx)` if present, `Err(insert_idx)` otherwise.
pub fn search(p: &Page, key: &[u8]) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0usize, count(p));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match self::key(p, mid).cmp(key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// Free bytes counting dead cells (what compaction would give).
pub fn free_total(p: &Page) -> usize {
    (super::upper(p) as usize - super::lower(p) as usize) + super::aux(p) as usize
}

/// Whether `put(key, value)` would succeed without a split.
pub fn can_put(p: &Page, key: &[u8], value: &[u8]) -> bool {
    let reclaimed = match search(p, key) {
        Ok(idx) => {
            let (k, v) = cell(p, idx);
            cell_cost(k.len(), v.len())
        }
        Err(_) => 0,
    };
    free_total(p) + reclaimed >= cell_cost(key.len(), value.len())
}

/// Inserts or replaces `key`. The caller checked `can_put`; failing here
/// is a bug (asserted).
pub fn put(p: &mut Page, key: &[u8], value: &[u8]) {
    assert!(can_put(p, key, value), "put without room");
    let idx = match search(p, key) {
        Ok(idx) => {
            // Same size (counters, fixed-size values): overwrite in place,
            // leaving no dead bytes for a compaction to reclaim later.
            let (k, v) = cell(p, idx);
            if v.len() == value.len() {
                let at = slot_offset(p, idx) + CELL_HEADER_BYTES + k.len();
                p[at..at + value.len()].copy_from_slice(value);
                return;
            }
            remove(p, idx);
            idx
        }
        Err(idx) => idx,
    };
    insert_at(p, idx, key, value);
}

fn insert_at(p: &mut Page, idx: usize, key: &[u8], value: &[u8]) {
    let cell_bytes = CELL_HEADER_BYTES + key.len() + value.len();
    assert!(key.len() <= u16::MAX as usize && value.len() <= u16::MAX as usize);
    if (super::upper(p) as usize - super::lower(p) as usize) < cell_bytes + SLOT_BYTES {
        compact(p);
    }
    let lower = super::lower(p) as usize;
    let upper = super::upper(p) as usize;
    assert!(upper - lower >= cell_bytes + SLOT_BYTES);
    let off = upper - cell_bytes;
    p[off..off + 2].copy_from_slice(&(key.len() as u16).to_le_bytes());
    p[off + 2..off + 4].copy_from_slice(&(value.len() as u16).to_le_bytes());
    p[off + 4..off + 4 + key.len()].copy_from_slice(key);
    p[off + 4 + key.len()..off + cell_bytes].copy_from_slice(value);
    let n = count(p);
    let slot_at = HEADER_BYTES + idx * SLOT_BYTES;
    p.copy_within(slot_at..HEADER_BYTES + n * SLOT_BYTES, slot_at + SLOT_BYTES);
    p[slot_at..slot_at + 2].copy_from_slice(&(off as u16).to_le_bytes());
    super::set_slots(p, (n + 1) as u16);
    super::set_lower(p, (lower + SLOT_BYTES) as u16);
    super::set_upper(p, off as u16);
}

/// Removes cell `idx`; its bytes are zeroed and counted as dead.
pub fn remove(p: &mut Page, idx: usize) {
    let n = count(p);
    assert!(idx < n);
    let off = slot_offset(p, idx);
    let (k, v) = cell(p, idx);
    let cell_bytes = CELL_HEADER_BYTES + k.len() + v.len();
    p[off..off + cell_bytes].fill(0);
    let slot_at = HEADER_BYTES + idx * SLOT_BYTES;
    let slots_end = HEADER_BYTES + n * SLOT_BYTES;
    p.copy_within(slot_at + SLOT_BYTES..slots_end, slot_at);
    p[slots_end - SLOT_BYTES..slots_end].fill(0);
    super::set_slots(p, (n - 1) as u16);
    super::set_lower(p, (slots_end - SLOT_BYTES) as u16);
    if off == super::upper(p) as usize {
        super::set_upper(p, (off + cell_bytes) as u16);
    } else {
        super::set_aux(p, super::aux(p) + cell_bytes as u32);
    }
}

/// Rewrites the cells tightly in slot order and zeroes the hole.
pub fn compact(p: &mut Page) {
    // Cells are laid out again from the end of the page in slot order, as
    // `rebuild` would place them, through one scratch page and no per-cell
    // allocation (compaction runs on the commit path).
    let n = count(p);
    let mut scratch = [0u8; PAGE_BYTES];
    let mut upper = PAGE_BYTES;
    for i in 0..n {
        let off = slot_offset(p, i);
        let (k, v) = cell(p, i);
        let len = CELL_HEADER_BYTES + k.len() + v.len();
        upper -= len;
        scratch[upper..upper + len].copy_from_slice(&p[off..off + len]);
        let slot_at = HEADER_BYTES + i * SLOT_BYTES;
        scratch[slot_at..slot_at + SLOT_BYTES].copy_from_slice(&(upper as u16).to_le_bytes());
    }
    let lower = HEADER_BYTES + n * SLOT_BYTES;
    debug_assert!(lower <= upper);
    p[HEADER_BYTES..lower].copy_from_slice(&scratch[HEADER_BYTES..lower]);
    p[lower..upper].fill(0);
    p[upper..].copy_from_slice(&scratch[upper..]);
    super::set_lower(p, lower as u16);
    super::set_upper(p, upper as u16);
    super::set_aux(p, 0);
}

/// Replaces all cells with `cells` (sorted by key), keeping the header's
/// kind, page number, LSN and link.
pub fn rebuild(p: &mut Page, cells: &[(Vec<u8>, Vec<u8>)]) {
    debug_assert!(
        cells.windows(2).all(|w| w[0].0 < w[1].0),
        "cells not sorted"
    );
    p[HEADER_BYTES..].fill(0);
    super::set_slots(p, 0);
    super::set_lower(p, HEADER_BYTES as u16);
    super::set_upper(p, PAGE_BYTES as u16);
    super::set_aux(p, 0);
    for (i, (k, v)) in cells.iter().enumerate() {
        insert_at(p, i, k, v);
    }
}

/// All cells, copied out (for splits).
pub fn cells(p: &Page) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..count(p))
        .map(|i| {
            let (k, v) = cell(p, i);
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Whether `cells` fit in one empty page.
pub fn fits(cells: &[(Vec<u8>, Vec<u8>)]) -> bool {
    cells
        .iter()
        .map(|(k, v)| cell_cost(k.len(), v.len()))
        .sum::<usize>()
        <= PAGE_BYTES - HEADER_BYTES
}

/// Index where to split `cells` so both halves hold about the same bytes
/// and each fits in a page; at least one cell goes to each side.
pub fn split_index(cells: &[(Vec<u8>, Vec<u8>)]) -> usize {
    assert!(cells.len() >= 2);
    let total: usize = cells.iter().map(|(k, v)| cell_cost(k.len(), v.len())).sum();
    let mut acc = 0;
    for (i, (k, v)) in cells.iter().enumerate() {
        acc += cell_cost(k.len(), v.len());
        if acc * 2 >= total {
            return (i + 1).clamp(1, cells.len() - 1);
        }
    }
    cells.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PageNo;
    use crate::page::{init, new_page_buf, PageKind};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(0u8..8, 1..6), proptest::collection::vec(any::<u8>(), 0..300)), 1..200)) {
            let mut p = new_page_buf();
            init(&mut p, PageNo(1), PageKind::Leaf);
            let mut model = BTreeMap::new();
            for (is_put, k, v) in ops {
                if is_put {
                    if can_put(&p, &k, &v) {
                        put(&mut p, &k, &v);
                        model.insert(k, v);
                    }
                } else if let Ok(idx) = search(&p, &k) {
                    remove(&mut p, idx);
                    model.remove(&k);
                }
                let lower = crate::page::lower(&p) as usize;
                let upper = crate::page::upper(&p) as usize;
                prop_assert!(p[lower..upper].iter().all(|&b| b == 0), "hole not zero");
            }
            let got: Vec<_> = cells(&p);
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }

    proptest! {
        #[test]
        fn compact_lays_out_exactly_as_rebuild(keys in proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 1..8), 1..60),
                                              drop_every in 2usize..5) {
            let mut p = new_page_buf();
            init(&mut p, PageNo(3), PageKind::Leaf);
            for k in &keys {
                if can_put(&p, k, b"value") {
                    put(&mut p, k, b"value");
                }
            }
            let victims: Vec<Vec<u8>> = keys.iter().step_by(drop_every).cloned().collect();
            for k in &victims {
                if let Ok(i) = search(&p, k) {
                    remove(&mut p, i);
                }
            }
            let mut a = p.clone();
            compact(&mut a);
            let mut b = p.clone();
            let live = cells(&b);
            rebuild(&mut b, &live);
            prop_assert_eq!(&a[..], &b[..]);
        }
    }

    #[test]
    fn same_size_update_is_in_place() {
        let mut p = new_page_buf();
        init(&mut p, PageNo(1), PageKind::Leaf);
        put(&mut p, b"k", b"0001");
        let before = (crate::page::upper(&p), crate::page::aux(&p));
        put(&mut p, b"k", b"0002");
        assert_eq!((crate::page::upper(&p), crate::page::aux(&p)), before);
        assert_eq!(cell(&p, 0).1, b"0002");
    }

    #[test]
    fn compaction_reclaims_dead_cells() {
        let mut p = new_page_buf();
        init(&mut p, PageNo(1), PageKind::Leaf);
        let v = vec![7u8; 1000];
        let mut i = 0u32;
        while can_put(&p, &i.to_be_bytes(), &v) {
            put(&mut p, &i.to_be_bytes(), &v);
            i += 1;
        }
        assert!(i >= 7);
        remove(&mut p, 0);
        assert!(can_put(&p, b"zzzz", &v));
        put(&mut p, b"zzzz", &v);
        assert_eq!(search(&p, b"zzzz"), Ok(count(&p) - 1));
    }
}
