//! Record groups from WAL bytes: the one place that decides what a
//! complete transaction is (crash recovery, a standby's streaming redo,
//! the replay before a promotion and the first start after a build all
//! go through it).
//!
//! A group is the page records of one transaction followed by its
//! `Commit`; an `Abort` ends a group that must not be applied (a promotion
//! writes one where the WAL it received ended inside a group). The
//! assembler walks record headers only (the bytes were validated when
//! they were read or received) and keeps, for the complete groups since
//! the last batch was cut, where they end, how many page records each
//! page slice got (for the dispatcher's balance), whether the meta page
//! changed, and the byte ranges of aborted groups (never applied). The
//! unfinished group at the end stays open until its end arrives, so redo
//! never sees half a transaction. Pure: no I/O.

use std::ops::Range;

use crate::config::limits::POOL_SHARDS;
use crate::ids::{Lsn, PageNo};
use crate::wal::record::{self, RecordKind};

/// Page slices: the buffer pool's shards, and the unit the dispatcher
/// hands to workers.
pub const SLICES: usize = POOL_SHARDS;

/// The slice (and buffer-pool shard) of page `page`: a multiplicative
/// hash, so neighbouring pages (a table's leaves, allocated one after the
/// other) spread over all slices.
pub fn slice_of(page: PageNo) -> usize {
    ((page.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % SLICES
}

/// What redo needs from a record's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHead {
    pub len: usize,
    pub kind: RecordKind,
    /// The page the record changes (`None`: commit, abort).
    pub page: Option<PageNo>,
}

/// The header of the record at `bytes[off..]`. The bytes were validated
/// (CRC, chain) when read or received: a header that does not decode
/// here is our own bug.
pub fn head_at(bytes: &[u8], off: usize) -> RecordHead {
    let h = bytes
        .get(off..)
        .and_then(|b| record::decode_header(b).ok())
        .unwrap_or_else(|| panic!("validated WAL has no record header at offset {off}"));
    let kind = record::kind_of(h.kind)
        .unwrap_or_else(|| panic!("validated WAL has an unknown record kind {}", h.kind));
    RecordHead {
        len: h.len as usize,
        kind,
        page: (!h.page.is_none()).then_some(h.page),
    }
}

/// The complete groups taken since the last [`Assembler::take_groups`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    /// Offset (in the caller's buffer) just past the last complete group.
    pub end_off: usize,
    /// LSN just past it (the applied LSN once applied).
    pub end: Lsn,
    /// LSN of its last record (its `Commit` or `Abort`).
    pub last: Lsn,
    pub groups: u64,
    /// Page records to apply (those of aborted groups not counted).
    pub records: u64,
    /// Page records per slice.
    pub slices: [u64; SLICES],
    /// A record rewrites the meta page (the tree's root, height, counts).
    pub meta_changed: bool,
    /// Byte ranges of aborted groups: never applied.
    pub skips: Vec<Range<usize>>,
}

#[derive(Default)]
pub struct Assembler {
    /// The open group: where it starts, its page records per slice.
    open_start: Option<usize>,
    open_slices: [u64; SLICES],
    open_records: u64,
    open_meta: bool,
    done: Groups,
}

impl Assembler {
    /// Takes the record at offset `off` of the caller's buffer (LSN
    /// `lsn`), whose header is `head`. True when it ends a group.
    pub fn push(&mut self, off: usize, lsn: Lsn, head: RecordHead) -> bool {
        let start = *self.open_start.get_or_insert(off);
        match (head.kind, head.page) {
            (RecordKind::Commit, _) => {
                let d = &mut self.done;
                for (total, open) in d.slices.iter_mut().zip(self.open_slices) {
                    *total += open;
                }
                d.records += self.open_records;
                d.meta_changed |= self.open_meta;
                self.end_group(off + head.len, lsn, head.len);
                true
            }
            (RecordKind::Abort, _) => {
                self.done.skips.push(start..off);
                self.end_group(off + head.len, lsn, head.len);
                true
            }
            (_, Some(page)) => {
                self.open_slices[slice_of(page)] += 1;
                self.open_records += 1;
                self.open_meta |= head.kind == RecordKind::MetaSet;
                false
            }
            (kind, None) => panic!("a {kind:?} record without a page at {lsn}"),
        }
    }

    fn end_group(&mut self, end_off: usize, last: Lsn, len: usize) {
        let d = &mut self.done;
        d.end_off = end_off;
        d.last = last;
        d.end = last.add(len as u64);
        d.groups += 1;
        self.open_start = None;
        self.open_slices = [0; SLICES];
        self.open_records = 0;
        self.open_meta = false;
    }

    /// The complete groups taken so far (not yet taken by a batch).
    pub fn groups(&self) -> &Groups {
        &self.done
    }

    /// Takes the complete groups for a batch; offsets from then on count
    /// from their end (the caller cuts its buffer there).
    pub fn take_groups(&mut self) -> Groups {
        let done = std::mem::take(&mut self.done);
        if let Some(start) = self.open_start.as_mut() {
            assert!(
                *start >= done.end_off,
                "the open group starts inside a batch"
            );
            *start -= done.end_off;
        }
        done
    }

    /// Offset of the open group's first record, if one is open.
    pub fn open_group_start(&self) -> Option<usize> {
        self.open_start
    }

    /// Forgets the open group and everything taken (the stream is read
    /// again from an earlier position).
    pub fn clear(&mut self) {
        *self = Assembler::default();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wal::record::Record;

    /// `recs` encoded as one chained buffer starting at `start`; the LSN
    /// of each record.
    pub(crate) fn encode(start: Lsn, recs: &[Record<'_>]) -> (Vec<u8>, Vec<Lsn>) {
        let mut out = Vec::new();
        let mut lsns = Vec::new();
        let mut prev = Lsn::ZERO;
        for r in recs {
            let lsn = start.add(out.len() as u64);
            r.encode_into(prev, &mut out);
            lsns.push(lsn);
            prev = lsn;
        }
        (out, lsns)
    }

    pub(crate) fn del(p: u32) -> Record<'static> {
        Record::LeafDelete {
            page: PageNo(p),
            key: b"k",
        }
    }

    pub(crate) fn push_all(a: &mut Assembler, bytes: &[u8], start: Lsn) {
        let mut off = 0;
        while off < bytes.len() {
            let h = head_at(bytes, off);
            a.push(off, start.add(off as u64), h);
            off += h.len;
        }
    }

    #[test]
    fn groups_end_at_commits_aborts_are_skipped_and_an_open_group_waits() {
        let commit = Record::Commit { commit_time_us: 1 };
        let (bytes, lsns) = encode(
            Lsn(16),
            &[
                del(1),
                del(2),
                commit.clone(),
                del(3),
                Record::Abort,
                del(4),
            ],
        );
        let mut a = Assembler::default();
        push_all(&mut a, &bytes, Lsn(16));
        let g = a.groups().clone();
        assert_eq!(g.groups, 2);
        assert_eq!(g.records, 2, "the aborted group's record is not counted");
        assert_eq!(g.last, lsns[4]);
        assert_eq!(g.end_off as u64, lsns[5].bytes_since(Lsn(16)));
        assert_eq!(g.end, lsns[5]);
        let off = |i: usize| lsns[i].bytes_since(Lsn(16)) as usize;
        assert_eq!(g.skips, vec![off(3)..off(4)]);
        assert_eq!(
            g.slices[slice_of(PageNo(1))] + g.slices[slice_of(PageNo(2))],
            2
        );
        assert_eq!(a.open_group_start(), Some(off(5)));
        let taken = a.take_groups();
        assert_eq!(taken, g);
        assert_eq!(a.open_group_start(), Some(0), "offsets count from the cut");
        assert_eq!(a.groups().groups, 0);
    }

    #[test]
    fn slices_spread_neighbouring_pages() {
        let mut seen = [0u32; SLICES];
        for p in 0..(SLICES as u32 * 8) {
            seen[slice_of(PageNo(p))] += 1;
        }
        assert!(seen.iter().all(|&n| n >= 4), "{seen:?}");
    }
}
