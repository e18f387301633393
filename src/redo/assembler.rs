//! Record groups from a stream of WAL records: the one place that decides
//! what a complete transaction is (crash recovery, a standby's streaming
//! redo, the replay before a promotion and the first start after a build
//! all go through it).
//!
//! A group is the page records of one transaction followed by its
//! `Commit`; an `Abort` ends a group without it being applied (a
//! promotion writes one where the WAL it received ended inside a group).
//! Records of an unfinished group stay here until its end arrives, so redo
//! never sees half a transaction. Pure: no I/O.

use crate::ids::Lsn;
use crate::wal::reader::OwnedRecordBytes;
use crate::wal::record::{Record, RecordKind};

/// A complete group, or an aborted one (nothing to apply, the position
/// still moves past it).
#[derive(Debug)]
pub struct Group {
    /// The page records, in WAL order (the `Commit` is not among them).
    pub records: Vec<(Lsn, OwnedRecordBytes)>,
    /// The LSN after the group's last record: the applied LSN once it is
    /// applied.
    pub end: Lsn,
    /// The LSN of the group's last record (the `Commit` or `Abort`).
    pub last: Lsn,
    pub aborted: bool,
    /// A record of the group rewrites the meta page (the tree's root,
    /// height, page count).
    pub meta_changed: bool,
}

#[derive(Default)]
pub struct Assembler {
    pending: Vec<(Lsn, OwnedRecordBytes)>,
}

impl Assembler {
    /// Takes the next record of the stream; returns the group it ends.
    pub fn push(&mut self, lsn: Lsn, rec: OwnedRecordBytes) -> Option<Group> {
        debug_assert!(
            self.pending.last().is_none_or(|(l, _)| *l < lsn),
            "records out of order"
        );
        let end = lsn.add(rec.bytes().len() as u64);
        let kind = rec.record().kind();
        match kind {
            RecordKind::Commit | RecordKind::Abort => {
                let records = std::mem::take(&mut self.pending);
                let aborted = kind == RecordKind::Abort;
                let meta_changed = !aborted
                    && records
                        .iter()
                        .any(|(_, r)| matches!(r.record(), Record::MetaSet { .. }));
                Some(Group {
                    records: if aborted { Vec::new() } else { records },
                    end,
                    last: lsn,
                    aborted,
                    meta_changed,
                })
            }
            _ => {
                self.pending.push((lsn, rec));
                None
            }
        }
    }

    /// LSN of the first record of an unfinished group, if one is open.
    pub fn open_group_start(&self) -> Option<Lsn> {
        self.pending.first().map(|(l, _)| *l)
    }

    /// Records of the unfinished group.
    pub fn open_group_records(&self) -> usize {
        self.pending.len()
    }

    /// Forgets an unfinished group (the stream is read again from an
    /// earlier position, or it ended inside the group for good).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::PageNo;

    /// Encodes `recs` as a chained stream from `start`; returns the
    /// records with their LSNs.
    pub(crate) fn stream(start: Lsn, recs: &[Record<'_>]) -> Vec<(Lsn, OwnedRecordBytes)> {
        let mut out = Vec::new();
        let (mut lsn, mut prev) = (start, Lsn::ZERO);
        for r in recs {
            let mut bytes = Vec::new();
            r.encode_into(prev, &mut bytes);
            let len = bytes.len() as u64;
            out.push((lsn, OwnedRecordBytes::validated(bytes, prev).unwrap()));
            prev = lsn;
            lsn = lsn.add(len);
        }
        out
    }

    #[test]
    fn groups_end_at_commits_and_aborts_and_an_open_group_waits() {
        let put = |p: u32| Record::LeafDelete {
            page: PageNo(p),
            key: b"k",
        };
        let recs = stream(
            Lsn(16),
            &[
                put(1),
                put(2),
                Record::Commit { commit_time_us: 1 },
                put(3),
                Record::Abort,
                put(4),
            ],
        );
        let ends: Vec<Lsn> = recs
            .iter()
            .map(|(l, r)| l.add(r.bytes().len() as u64))
            .collect();
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for (lsn, r) in recs.clone() {
            out.extend(a.push(lsn, r));
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].records.len(), 2);
        assert!(!out[0].aborted && !out[0].meta_changed);
        assert_eq!(out[0].end, ends[2]);
        assert_eq!(out[0].last, recs[2].0);
        assert!(out[1].aborted && out[1].records.is_empty());
        assert_eq!(out[1].end, ends[4]);
        assert_eq!(a.open_group_start(), Some(recs[5].0));
        assert_eq!(a.open_group_records(), 1);
        a.clear();
        assert_eq!(a.open_group_start(), None);
    }
}
