//! Segment preparation off the commit path: the `wal-prepare` thread, the
//! tail cut at open, and recycling after checkpoints.
//!
//! Appenders ask for segments ahead of the insert position
//! ([`Preparer::request_through`], non-blocking: an atomic compare in the
//! common case). The `wal-prepare` thread creates them one by one with its
//! own ring. An append whose bytes reach a segment that does not exist yet
//! waits for it ([`Preparer::ensure`]); if that attempt fails (`DiskFull`),
//! the append fails without appending and the next append asks again.
//!
//! Invariants:
//! - segments `< next_unprepared` of this timeline, from the one holding the
//!   insert position on, exist, are full size, and carry no record that can
//!   chain on to the current stream;
//! - file creation, renaming and removal in the WAL directory are serialised
//!   by `files` (held by the preparer thread and `recycle_before`), so a
//!   recycled file and a freshly prepared one never race for one name.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::ids::{Lsn, SegmentNo};
use crate::io::Ring;
use crate::wal::segment::{self, io_error, SegmentDir};
use crate::wal::{Shared, WalError};

struct PrepState {
    /// Lowest segment number at or after the insert segment not prepared.
    next_unprepared: u64,
    /// Prepare until `next_unprepared == want_end`.
    want_end: u64,
    /// Count of blocking requests; an attempt remembers the count it started
    /// with, so a waiter knows whether a failure answers its request.
    requests: u64,
    failure: Option<(u64, WalError)>,
    stop: bool,
}

pub(crate) struct Preparer {
    state: Mutex<PrepState>,
    /// Requests -> preparer thread.
    work: Condvar,
    /// Preparer thread -> waiting appenders.
    done: Condvar,
    /// Mirror of `next_unprepared`, read without the lock on every append.
    next_unprepared: AtomicU64,
    /// Mirror of `want_end`, so appends only lock when they raise it.
    want_end: AtomicU64,
    files: Mutex<()>,
}

impl Preparer {
    pub(crate) fn new(next_unprepared: u64, want_end: u64) -> Preparer {
        Preparer {
            state: Mutex::new(PrepState {
                next_unprepared,
                want_end,
                requests: 0,
                failure: None,
                stop: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            next_unprepared: AtomicU64::new(next_unprepared),
            want_end: AtomicU64::new(want_end),
            files: Mutex::new(()),
        }
    }

    pub(crate) fn is_prepared(&self, segno: SegmentNo) -> bool {
        segno.0 < self.next_unprepared.load(Ordering::Acquire)
    }

    /// Asks (without waiting) for every segment up to `segno` inclusive.
    pub(crate) fn request_through(&self, segno: SegmentNo) {
        let end = segno.0 + 1;
        if self.want_end.load(Ordering::Relaxed) >= end {
            return;
        }
        let mut st = self.state.lock();
        if st.want_end < end {
            st.want_end = end;
            self.want_end.store(end, Ordering::Relaxed);
            self.work.notify_one();
        }
    }

    /// Waits until segment `segno` exists, asking for `ahead` more after it.
    /// Fails with the preparer's error if an attempt made after this request
    /// failed, or with the fence (`fenced`) or `ShutDown`.
    pub(crate) fn ensure(
        &self,
        segno: SegmentNo,
        ahead: u32,
        fenced: impl Fn() -> Option<WalError>,
    ) -> Result<(), WalError> {
        let mut st = self.state.lock();
        st.requests += 1;
        let request = st.requests;
        let end = segno.0 + 1 + ahead as u64;
        if st.want_end < end {
            st.want_end = end;
            self.want_end.store(end, Ordering::Relaxed);
        }
        self.work.notify_one();
        loop {
            if st.next_unprepared > segno.0 {
                return Ok(());
            }
            if let Some(e) = fenced() {
                return Err(e);
            }
            if let Some((attempt, e)) = &st.failure {
                if *attempt >= request {
                    return Err(e.clone());
                }
            }
            if st.stop {
                return Err(WalError::ShutDown);
            }
            self.done.wait(&mut st);
        }
    }

    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake_all();
    }

    pub(crate) fn wake_all(&self) {
        let _st = self.state.lock();
        self.work.notify_all();
        self.done.notify_all();
    }

    /// Records that segments below `end` exist.
    fn advance(&self, st: &mut PrepState, end: u64) {
        if end > st.next_unprepared {
            st.next_unprepared = end;
            self.next_unprepared.store(end, Ordering::Release);
        }
        if st.want_end < st.next_unprepared {
            st.want_end = st.next_unprepared;
            self.want_end.store(st.want_end, Ordering::Relaxed);
        }
        self.done.notify_all();
    }
}

/// Body of the `wal-prepare` thread.
pub(crate) fn run(shared: &Shared, mut ring: Ring) {
    let prep = &shared.preparer;
    loop {
        {
            let mut st = prep.state.lock();
            while !st.stop && st.want_end <= st.next_unprepared {
                prep.work.wait(&mut st);
            }
            if st.stop {
                return;
            }
        }
        let _files = prep.files.lock();
        let (segno, attempt) = {
            let st = prep.state.lock();
            if st.stop {
                return;
            }
            if st.want_end <= st.next_unprepared {
                continue; // recycling got there first
            }
            (st.next_unprepared, st.requests)
        };
        let result = shared.segs.prepare(&mut ring, SegmentNo(segno));
        let mut st = prep.state.lock();
        match result {
            Ok(_) => {
                st.failure = None;
                prep.advance(&mut st, segno + 1);
            }
            Err(e) => {
                tracing::warn!(segno, error = %e, "preparing WAL segment failed");
                st.failure = Some((attempt, e));
                // Stop trying until someone asks again; but a blocking
                // request made during this attempt gets an attempt of its own.
                if st.requests == attempt {
                    st.want_end = st.next_unprepared;
                    prep.want_end.store(st.want_end, Ordering::Relaxed);
                }
                prep.done.notify_all();
            }
        }
    }
}

/// Makes the segment files safe to append at `start` (called by `Wal::open`
/// before any thread runs): the segment holding `start` is zero-filled from
/// `start` to its end (or created, carrying over the bytes before `start`
/// from an older timeline), and every later segment of this timeline is
/// zero-filled, because an unflushed batch may have reached it before the
/// crash. Returns the first segment number after the contiguous run of
/// prepared segments.
pub(crate) fn cut_tail(segs: &SegmentDir, ring: &mut Ring, start: Lsn) -> Result<u64, WalError> {
    let seg_bytes = segs.segment_bytes();
    let start_seg = SegmentNo::of(start, seg_bytes);
    let in_seg = start.0 % seg_bytes;
    let listed = segs.list()?;
    match listed.get(&start_seg) {
        Some((timeline, path)) if *timeline == segs.timeline() => {
            zero_from(segs, ring, start_seg, in_seg)?;
            tracing::info!(path = ?path, from = in_seg, "WAL tail zero-filled");
        }
        Some((_, path)) => {
            let mut prefix = vec![0u8; in_seg as usize];
            File::open(path)
                .and_then(|f| f.read_exact_at(&mut prefix, 0))
                .map_err(|e| io_error("read", path, e))?;
            segs.prepare_with_prefix(ring, start_seg, &prefix)?;
            // Our copy holds all of it that is WAL; the older name would
            // only shadow nothing and never be recycled.
            segs.remove(path)?;
        }
        None if in_seg == 0 => {
            segs.prepare(ring, start_seg)?;
        }
        None => {
            return Err(WalError::MissingSegment {
                segno: start_seg,
                timeline: segs.timeline(),
                start,
            })
        }
    }
    let mut next = start_seg.0 + 1;
    let mut contiguous = true;
    for (segno, (timeline, path)) in listed.range(SegmentNo(start_seg.0 + 1)..) {
        if *timeline != segs.timeline() {
            // Past the end of the WAL on an older name: nothing to keep
            // (a process names segments with the timeline it started on).
            segs.remove(path)?;
            contiguous = false;
            continue;
        }
        zero_from(segs, ring, *segno, 0)?;
        if contiguous && segno.0 == next {
            next += 1;
        } else {
            contiguous = false;
        }
    }
    Ok(next)
}

/// Zero-fills segment `segno` of our timeline from `from` to its end and
/// fdatasyncs it; a file of the wrong size is prepared anew instead.
fn zero_from(
    segs: &SegmentDir,
    ring: &mut Ring,
    segno: SegmentNo,
    from: u64,
) -> Result<(), WalError> {
    let path = segs.path(segno);
    let file = segs.open(segno)?;
    let len = file
        .metadata()
        .map_err(|e| io_error("stat", &path, e))?
        .len();
    if len != segs.segment_bytes() {
        let mut prefix = vec![0u8; from.min(len) as usize];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| io_error("read", &path, e))?;
        segs.prepare_with_prefix(ring, segno, &prefix)?;
        return Ok(());
    }
    segment::zero_range(ring, &file, from, segs.segment_bytes())
        .map_err(|e| io_error("write", &path, e))?;
    use std::os::fd::AsRawFd;
    ring.fdatasync(file.as_raw_fd())
        .map_err(|e| io_error("fdatasync", &path, e))
}

/// Recycles or removes the segment files wholly before segment `limit`.
pub(crate) fn recycle_before(
    shared: &Shared,
    limit: SegmentNo,
) -> Result<(usize, usize), WalError> {
    let prep = &shared.preparer;
    let _files = prep.files.lock();
    let listed = shared.segs.list()?;
    let insert_seg = shared.segment_of(Lsn(shared.inserted.load(Ordering::Acquire)));
    // Recycled spares may reach `segments_ahead` beyond what the preparer
    // keeps ready, so that a steady state creates no new files at all.
    let spare_end = insert_seg.0 + 1 + 2 * shared.cfg.segments_ahead as u64;
    let (mut recycled, mut removed) = (0, 0);
    for (segno, (_, path)) in listed.range(..limit) {
        debug_assert!(*segno < insert_seg);
        let target = prep.state.lock().next_unprepared;
        if target < spare_end {
            shared.segs.recycle(path, SegmentNo(target))?;
            let mut st = prep.state.lock();
            prep.advance(&mut st, target + 1);
            recycled += 1;
        } else {
            shared.segs.remove(path)?;
            removed += 1;
        }
    }
    Ok((recycled, removed))
}
