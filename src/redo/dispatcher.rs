//! Parallel redo's split of work: complete record groups in, batches of
//! per-worker shares out. Pure state machine, no threads.
//!
//! - Page `n` belongs to worker `n % workers` (the buffer pool has one
//!   shard per worker with the same rule), and a worker's share holds its
//!   pages' records in WAL order, so every page sees its records in LSN
//!   order.
//! - A batch ends at a group boundary: its `end` is the end of its last
//!   group, which becomes the applied LSN once every worker finished its
//!   share. Readers see the data as of batch ends only (the redo gate),
//!   so as of transaction ends.
//! - Every WAL record changes exactly one page (`wal::record`): a split,
//!   a merge or a root change is several records of one group, each
//!   applied to its own page. Redo of a page reads no other page, so the
//!   pages of one group need no order among themselves; what must not be
//!   seen is a group half applied, and the batch boundary (a barrier)
//!   takes care of that. The alternative, a whole multi-page group to one
//!   worker, would need a group's pages to live in one shard, and would
//!   serialise every split behind the busiest worker.

use super::assembler::Group;
use crate::config::limits::{REDO_BATCH_BYTES_MAX, REDO_BATCH_RECORDS_MAX};
use crate::ids::{Lsn, PageNo};
use crate::wal::reader::OwnedRecordBytes;

/// One worker's part of a batch: its pages' records, in WAL order.
pub type Share = Vec<(Lsn, OwnedRecordBytes)>;

/// Work for all workers, ending at a group boundary.
#[derive(Debug)]
pub struct Batch {
    /// `shares[i]` is worker `i`'s.
    pub shares: Vec<Share>,
    /// End of the batch's last group: the applied LSN after it.
    pub end: Lsn,
    /// LSN of the last record of that group.
    pub last: Lsn,
    pub groups: u64,
    pub records: u64,
    /// WAL bytes the batch covers (page records, commits and aborts).
    pub bytes: u64,
    pub meta_changed: bool,
}

pub struct Dispatcher {
    workers: usize,
    shares: Vec<Share>,
    end: Option<(Lsn, Lsn)>,
    groups: u64,
    records: u64,
    bytes: u64,
    meta_changed: bool,
}

impl Dispatcher {
    pub fn new(workers: usize) -> Dispatcher {
        assert!(workers >= 1, "redo needs a worker");
        Dispatcher {
            workers,
            shares: (0..workers).map(|_| Vec::new()).collect(),
            end: None,
            groups: 0,
            records: 0,
            bytes: 0,
            meta_changed: false,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The worker that owns page `page`.
    pub fn worker_of(&self, page: PageNo) -> usize {
        page.0 as usize % self.workers
    }

    /// Adds a complete (or aborted) group to the batch being built.
    /// `group_bytes` is the WAL it spans.
    pub fn add(&mut self, group: Group, group_bytes: u64) {
        if let Some((end, _)) = self.end {
            assert!(
                group.end > end,
                "groups out of order: {} after {end}",
                group.end
            );
        }
        for (lsn, rec) in group.records {
            let page = rec
                .record()
                .page()
                .unwrap_or_else(|| panic!("a group record at {lsn} without a page"));
            let w = self.worker_of(page);
            self.shares[w].push((lsn, rec));
            self.records += 1;
        }
        self.end = Some((group.end, group.last));
        self.groups += 1;
        self.bytes += group_bytes;
        self.meta_changed |= group.meta_changed;
    }

    /// Whether the batch is as large as one batch may be.
    pub fn is_full(&self) -> bool {
        self.bytes >= REDO_BATCH_BYTES_MAX || self.records >= REDO_BATCH_RECORDS_MAX
    }

    /// The batch built so far, if it holds any group.
    pub fn take(&mut self) -> Option<Batch> {
        let (end, last) = self.end.take()?;
        let shares = std::mem::replace(
            &mut self.shares,
            (0..self.workers).map(|_| Vec::new()).collect(),
        );
        let batch = Batch {
            shares,
            end,
            last,
            groups: self.groups,
            records: self.records,
            bytes: self.bytes,
            meta_changed: self.meta_changed,
        };
        self.groups = 0;
        self.records = 0;
        self.bytes = 0;
        self.meta_changed = false;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redo::assembler::{tests::stream, Assembler};
    use crate::wal::record::Record;

    fn del(p: u32) -> Record<'static> {
        Record::LeafDelete {
            page: PageNo(p),
            key: b"k",
        }
    }

    /// Groups of `recs` through an assembler into a dispatcher of `workers`.
    fn dispatch(workers: usize, recs: &[Record<'_>]) -> (Dispatcher, Vec<(Lsn, OwnedRecordBytes)>) {
        let s = stream(Lsn(16), recs);
        let mut a = Assembler::default();
        let mut d = Dispatcher::new(workers);
        let mut group_start = Lsn(16);
        for (lsn, r) in s.clone() {
            if let Some(g) = a.push(lsn, r) {
                let bytes = g.end.bytes_since(group_start);
                group_start = g.end;
                d.add(g, bytes);
            }
        }
        (d, s)
    }

    #[test]
    fn pages_go_to_their_worker_in_wal_order_and_batches_end_at_groups() {
        let commit = Record::Commit { commit_time_us: 0 };
        let (mut d, s) = dispatch(
            3,
            &[
                del(1),
                del(4),
                del(2),
                commit.clone(),
                del(7),
                del(3),
                commit.clone(),
                del(5),
            ],
        );
        let b = d.take().expect("a batch");
        assert_eq!(b.groups, 2);
        assert_eq!(b.records, 5);
        // Ends at the second commit (index 6), not at the open group.
        assert_eq!(b.last, s[6].0);
        assert_eq!(b.end, s[6].0.add(s[6].1.bytes().len() as u64));
        let pages = |w: usize| -> Vec<u32> {
            b.shares[w]
                .iter()
                .map(|(_, r)| r.record().page().unwrap().0)
                .collect()
        };
        assert_eq!(pages(0), vec![3]);
        assert_eq!(pages(1), vec![1, 4, 7]);
        assert_eq!(pages(2), vec![2]);
        for share in &b.shares {
            assert!(share.windows(2).all(|w| w[0].0 < w[1].0), "LSN order");
        }
        assert!(d.take().is_none(), "nothing after the batch was taken");
    }

    #[test]
    fn an_aborted_group_moves_the_end_and_applies_nothing() {
        let (mut d, s) = dispatch(2, &[del(1), del(2), Record::Abort]);
        let b = d.take().unwrap();
        assert_eq!(b.records, 0);
        assert_eq!(b.groups, 1);
        assert_eq!(b.last, s[2].0);
        assert!(b.shares.iter().all(Vec::is_empty));
    }

    #[test]
    fn one_worker_gets_everything() {
        let (mut d, _) = dispatch(1, &[del(1), del(2), Record::Commit { commit_time_us: 0 }]);
        let b = d.take().unwrap();
        assert_eq!(b.shares.len(), 1);
        assert_eq!(b.shares[0].len(), 2);
    }
}
