//! The group-commit flusher: the `wal-flusher` thread.
//!
//! Loop: wait (condvar, no timer) until something is pending; swap the
//! pending buffer with the flusher's empty one (appenders keep appending
//! into the other buffer meanwhile); make the batch durable: one
//! `RWF_DSYNC` write ([`Ring::write_dsync`]) when it lies in one segment
//! (one io_uring worker hand-off instead of two), else one
//! [`Ring::write_and_sync`] chain, split at segment boundaries into one write
//! per segment plus one fdatasync per segment file touched; publish the
//! flushed LSN; wake every waiter it covers. While one fsync is in flight the
//! next batch grows by itself, so the batch size follows the load and a
//! lone client never waits for anything but its own write+fdatasync.
//!
//! A failed write or fdatasync fences the WAL (STYLE.md habit 6): the
//! flusher records the error, wakes everyone with it and exits. The bytes of
//! the failed batch are never reported durable.
//!
//! Segment files stay open in a small cache (`FILES_OPEN_MAX`), dropped once
//! the flusher has moved past them.
//!
//! Measured on this machine (2 cores, kernel 6.18, ext4 on virtio `/dev/vda`,
//! `CARGO_TARGET_DIR=/work/target-shared cargo bench --bench wal_append`,
//! criterion medians, 30 samples; files in the worktree). The disk and CPUs
//! were shared with other builds and benches at the time (load average 8-10),
//! so absolute fsync times were 10-20x worse than DESIGN.md section 6's
//! 125-280 us and varied run to run; two runs, minutes apart:
//!
//! ```text
//!                                    run 1                  run 2
//! (a) raw 8 KiB pwrite+fdatasync     3.63 ms   275/s         4.68 ms   214/s
//! (b) append 100 B + wait, 1 thread  513 us  1,950/s         2.15 ms   465/s
//!     (1.0 group/flush, flush 660 us)                        (flush 2.3 ms)
//! (c) same, 8 threads                178 us  5,620/s         72 us  13,800/s
//!     (4.5 groups/flush, flush 702 us)                       (4.6 groups/flush, 357 us)
//! ```
//!
//! Reading: a lone committer pays one write+fdatasync (never a timer); with
//! 8 committers the batch grows to ~4.5 groups per flush by itself and
//! commits/s scale by 3-30x over one thread at the same device latency.
//! (A Python pwrite+fdatasync loop at the same time gave 2.3-4.1 ms, so the
//! raw baseline reflects the contended device, not the bench.) Re-measure on
//! a quiet machine before tuning anything from these figures.
//! Not yet built: the O_DIRECT|O_DSYNC mode with several writes in flight
//! (DESIGN.md section 6: 17,600 vs 6,800 8 KiB writes/s).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ids::{Lsn, SegmentNo};
use crate::io::{Ring, RING_ENTRIES_DEFAULT};
use crate::wal::segment::SegmentDir;
use crate::wal::{Shared, WalError};

/// Segment files the flusher keeps open. A batch touches at most a few
/// (it is bounded by `buffer_bytes_max`), and files behind the flushed LSN
/// are closed.
const FILES_OPEN_MAX: usize = 8;

/// Open segment files by number.
struct FileCache {
    segs: SegmentDir,
    files: BTreeMap<SegmentNo, File>,
}

impl FileCache {
    fn get(&mut self, segno: SegmentNo) -> Result<RawFd, WalError> {
        if let Some(f) = self.files.get(&segno) {
            return Ok(f.as_raw_fd());
        }
        let file = self.segs.open(segno)?;
        let fd = file.as_raw_fd();
        self.files.insert(segno, file);
        Ok(fd)
    }

    /// Closes files of segments before `segno`, and the oldest ones beyond
    /// `FILES_OPEN_MAX`.
    fn retire_before(&mut self, segno: SegmentNo) {
        self.files = self.files.split_off(&segno);
        while self.files.len() > FILES_OPEN_MAX {
            self.files.pop_first();
        }
    }
}

/// Body of the `wal-flusher` thread.
pub(crate) fn run(shared: &Shared) {
    if let Some(core) = shared.cfg.flusher_core {
        pin_to(core);
    }
    let mut ring = match Ring::new(RING_ENTRIES_DEFAULT) {
        Ok(r) => r,
        Err(e) => {
            shared.fence(e);
            let _ = shared.stopped.set(());
            shared.wake_everyone();
            return;
        }
    };
    let mut files = FileCache {
        segs: shared.segs.clone(),
        files: BTreeMap::new(),
    };
    let mut batch: Vec<u8> = Vec::new();
    loop {
        batch.clear();
        let (start, groups) = {
            let mut p = shared.pending.lock();
            while p.buf.is_empty() && !p.shutdown && shared.fence.get().is_none() {
                shared.flusher_wake.wait(&mut p);
            }
            if p.buf.is_empty() || shared.fence.get().is_some() {
                break;
            }
            std::mem::swap(&mut p.buf, &mut batch);
            let start = p.buf_start;
            p.buf_start = p.next;
            (start, std::mem::take(&mut p.groups))
        };
        shared.publish_submitted(start, &batch);
        if let Some(delay) = test_flush_delay() {
            std::thread::sleep(delay);
        }
        if let Err(e) = flush(shared, &mut ring, &mut files, start, &batch, groups) {
            shared.fence(e);
            break;
        }
    }
    let _ = shared.stopped.set(());
    shared.wake_everyone();
}

/// Writes and fdatasyncs `batch` (the bytes at `start`), then publishes.
fn flush(
    shared: &Shared,
    ring: &mut Ring,
    files: &mut FileCache,
    start: Lsn,
    batch: &[u8],
    groups: u64,
) -> io::Result<()> {
    assert_eq!(
        start.0,
        shared.flushed.load(Ordering::Acquire),
        "batch does not start at the flushed LSN"
    );
    let seg_bytes = shared.cfg.segment_bytes;
    let mut writes: Vec<(RawFd, u64, &[u8])> = Vec::with_capacity(2);
    let mut syncs: Vec<RawFd> = Vec::with_capacity(2);
    let mut at = start;
    let mut rest = batch;
    files.retire_before(shared.segment_of(start));
    while !rest.is_empty() {
        let segno = shared.segment_of(at);
        let in_seg = at.0 % seg_bytes;
        let n = (seg_bytes - in_seg).min(rest.len() as u64) as usize;
        let fd = files.get(segno).map_err(wal_to_io)?;
        let (piece, tail) = rest.split_at(n);
        writes.push((fd, in_seg, piece));
        if !syncs.contains(&fd) {
            syncs.push(fd);
        }
        rest = tail;
        at = at.add(n as u64);
    }
    let began = Instant::now();
    match writes.as_slice() {
        // The common case, one segment: one durable write instead of a
        // linked write + fdatasync (io_uring hands each of those to a worker
        // thread; this saves one hand-off per flush).
        [(fd, offset, bytes)] => ring.write_dsync(*fd, bytes, *offset)?,
        _ => ring.write_and_sync(&writes, &syncs)?,
    }
    let took_us = began.elapsed().as_micros() as u64;
    let m = &shared.metrics;
    m.fsyncs.fetch_add(syncs.len() as u64, Ordering::Relaxed);
    m.fsync_latency_us.record(took_us);
    m.bytes_written
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    m.batches.fetch_add(1, Ordering::Relaxed);
    m.batch_bytes.record(batch.len() as u64);
    m.batch_groups.record(groups);
    shared.publish_flushed(at);
    // Appenders blocked on buffer_bytes_max re-check under the lock.
    let _p = shared.pending.lock();
    shared.space.notify_all();
    Ok(())
}

/// Test knob (a fault a process cannot provoke from outside): with
/// `TANDEM_TEST_FLUSH_DELAY_MS` set, every batch waits that long between
/// being offered to the WAL senders and being written, like a primary
/// with a slow disk. Tests use it to leave a standby holding WAL its
/// primary loses in a crash.
fn test_flush_delay() -> Option<std::time::Duration> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("TANDEM_TEST_FLUSH_DELAY_MS")
            .ok()?
            .parse()
            .ok()
            .map(std::time::Duration::from_millis)
    })
}

fn wal_to_io(e: WalError) -> io::Error {
    io::Error::other(e)
}

fn pin_to(core: usize) {
    let pinned = core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|c| c.id == core))
        .is_some_and(core_affinity::set_for_current);
    if !pinned {
        tracing::warn!(core, "could not pin wal-flusher to its core");
    }
}
