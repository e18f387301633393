//! Parallel redo's split of work: complete record groups in, one batch of
//! per-worker page work out. Pure: no threads, no I/O.
//!
//! - Pages are cut into [`SLICES`] slices (`assembler::slice_of`, the
//!   buffer pool's shards). Every slice belongs to one worker
//!   ([`Owners`]), chosen to balance the page records they get: slices in
//!   falling order of records, each to the worker with the fewest so far
//!   ([`assign`], longest processing time first, over the records of
//!   recent batches). A page's records are applied by its slice's owner,
//!   in WAL order. Owners change only when no batch is in flight (the
//!   pipeline decides when, `redo::pipeline`, "Balance").
//! - Why balance by slices and not a fixed `page % workers`: measured on a
//!   recorded 64-client TPC-B WAL (160 MB), each transaction changes the
//!   meta page, the one branch leaf, a teller leaf, the newest history
//!   leaf and a random account leaf; a fixed split put the four hot pages
//!   on one worker of two, which then did 59 % of the records (the split
//!   was bounded at 1.7x before any other cost). See `redo::pipeline` for
//!   the figures of both.
//! - A batch ends at a group boundary: its `end` is the end of its last
//!   group, which becomes the applied LSN once every worker finished its
//!   share. Readers see the data as of batch ends only (the redo gate), so
//!   as of transaction ends.
//! - Every WAL record changes exactly one page (`wal::record`): a split,
//!   a merge or a root change is several records of one group, each
//!   applied to its own page. Redo of a page reads no other page, so the
//!   pages of one group need no order among themselves; what must not be
//!   seen is a group half applied, and the batch boundary (a barrier)
//!   takes care of that. The alternative, the whole group to one worker,
//!   would tie every split, and with TPC-B every transaction (they all
//!   touch the branch leaf), to one worker.

use std::ops::Range;
use std::sync::Arc;

use super::assembler::{head_at, slice_of, Groups, SLICES};
use crate::ids::Lsn;
use crate::wal::record::{self, Record};

/// Which worker applies each slice in a batch.
pub type Owners = [u8; SLICES];

/// Gives each slice to a worker, balancing records (longest first).
pub fn assign(slices: &[u64; SLICES], workers: usize) -> Owners {
    assert!(
        (1..=SLICES).contains(&workers),
        "1 to {SLICES} redo workers"
    );
    let mut owners = [0u8; SLICES];
    if workers == 1 {
        return owners;
    }
    let mut order: Vec<usize> = (0..SLICES).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(slices[s]));
    let mut load = vec![0u64; workers];
    for s in order {
        let (w, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(i, &l)| (l, i))
            .unwrap_or((0, &0));
        owners[s] = w as u8;
        load[w] += slices[s];
    }
    owners
}

/// Work for all workers, ending at a group boundary.
#[derive(Debug)]
pub struct Batch {
    /// Whole records; the batch is `bytes[..len]`.
    pub bytes: Arc<Vec<u8>>,
    pub len: usize,
    /// LSN of `bytes[0]`.
    pub start: Lsn,
    /// End of the batch's last group: the applied LSN after it.
    pub end: Lsn,
    /// LSN of the last record of that group.
    pub last: Lsn,
    pub groups: u64,
    pub records: u64,
    pub meta_changed: bool,
    pub owners: Owners,
    /// Aborted groups' bytes, never applied.
    pub skips: Vec<Range<usize>>,
}

impl Batch {
    /// A batch of `bytes[..groups.end_off]` (starting at LSN `start`)
    /// whose slices belong to `owners`.
    pub fn new(bytes: Arc<Vec<u8>>, start: Lsn, groups: Groups, owners: Owners) -> Batch {
        assert!(groups.end_off <= bytes.len() && groups.groups > 0);
        assert_eq!(
            start.add(groups.end_off as u64),
            groups.end,
            "a batch ends at its last group's end"
        );
        Batch {
            owners,
            bytes,
            len: groups.end_off,
            start,
            end: groups.end,
            last: groups.last,
            groups: groups.groups,
            records: groups.records,
            meta_changed: groups.meta_changed,
            skips: groups.skips,
        }
    }

    /// WAL bytes the batch covers.
    pub fn wal_bytes(&self) -> u64 {
        self.len as u64
    }

    /// Worker `w`'s page records, in WAL order: `(lsn, record)`.
    pub fn share(&self, w: usize) -> impl Iterator<Item = (Lsn, Record<'_>)> + '_ {
        let mut off = 0usize;
        let mut skips = self.skips.iter().peekable();
        std::iter::from_fn(move || loop {
            if off >= self.len {
                return None;
            }
            if let Some(skip) = skips.peek() {
                if off >= skip.start {
                    off = off.max(skip.end);
                    skips.next();
                    continue;
                }
            }
            let at = off;
            let head = head_at(&self.bytes, at);
            off += head.len;
            let Some(page) = head.page else {
                continue;
            };
            if self.owners[slice_of(page)] as usize != w {
                continue;
            }
            let rec = record::decode_verified(&self.bytes[at..at + head.len])
                .unwrap_or_else(|e| panic!("validated WAL no longer decodes at offset {at}: {e}"));
            return Some((self.start.add(at as u64), rec));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PageNo;
    use crate::redo::assembler::tests::{del, encode, push_all};
    use crate::redo::assembler::Assembler;

    fn batch(workers: usize, recs: &[Record<'_>]) -> (Batch, Vec<Lsn>) {
        let (bytes, lsns) = encode(Lsn(16), recs);
        let mut a = Assembler::default();
        push_all(&mut a, &bytes, Lsn(16));
        let g = a.take_groups();
        let owners = assign(&g.slices, workers);
        (Batch::new(Arc::new(bytes), Lsn(16), g, owners), lsns)
    }

    #[test]
    fn longest_slices_first_balance_the_records() {
        let mut slices = [0u64; SLICES];
        slices[0] = 100; // four hot slices, as TPC-B's hot pages
        slices[1] = 90;
        slices[2] = 80;
        slices[3] = 70;
        for s in slices.iter_mut().skip(4) {
            *s = 5;
        }
        let owners = assign(&slices, 2);
        let load = |w: u8| -> u64 {
            (0..SLICES)
                .filter(|&s| owners[s] == w)
                .map(|s| slices[s])
                .sum()
        };
        assert_eq!(load(0) + load(1), 400);
        assert!(
            load(0).abs_diff(load(1)) <= 10,
            "{} vs {}",
            load(0),
            load(1)
        );
        assert_eq!(assign(&slices, 1), [0; SLICES]);
    }

    #[test]
    fn every_record_goes_to_exactly_one_worker_in_wal_order() {
        let commit = Record::Commit { commit_time_us: 0 };
        let recs: Vec<Record<'_>> = (0..40)
            .flat_map(|i| [del(i), del(i * 7 % 13), commit.clone()])
            .collect();
        for workers in [1, 2, 3, 4] {
            let (b, lsns) = batch(workers, &recs);
            let mut seen: Vec<Lsn> = Vec::new();
            for w in 0..workers {
                let share: Vec<(Lsn, Record<'_>)> = b.share(w).collect();
                assert!(share.windows(2).all(|p| p[0].0 < p[1].0), "WAL order");
                for (lsn, r) in share {
                    let page = r.page().unwrap();
                    assert_eq!(b.owners[slice_of(page)] as usize, w);
                    seen.push(lsn);
                }
            }
            seen.sort();
            let pages: Vec<Lsn> = lsns
                .iter()
                .zip(&recs)
                .filter(|(_, r)| r.page().is_some())
                .map(|(l, _)| *l)
                .collect();
            assert_eq!(seen, pages, "{workers} workers");
            assert_eq!(b.records, 80);
            assert_eq!(b.groups, 40);
            assert_eq!(b.end, lsns[119].add(recs[119].encoded_bytes() as u64));
        }
    }

    #[test]
    fn an_aborted_group_is_never_handed_out() {
        let (b, lsns) = batch(
            2,
            &[
                del(1),
                Record::Abort,
                del(2),
                Record::Commit { commit_time_us: 0 },
            ],
        );
        let all: Vec<Lsn> = (0..2).flat_map(|w| b.share(w).map(|(l, _)| l)).collect();
        assert_eq!(all, vec![lsns[2]]);
        assert_eq!(b.records, 1);
        let _ = PageNo(0);
    }
}
