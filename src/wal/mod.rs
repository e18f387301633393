//! Write-ahead log: record format, segments, group-commit flusher, reader.
//!
//! [`Wal`] is the shared, append-only log of a primary (and later of a
//! standby's receiver). Who runs what:
//! - session/engine threads call [`Wal::append`] (under the engine's own
//!   mutex around `insert_position` + `append`, which keeps record groups
//!   whole and chained) and then [`Wal::wait_flushed`] (async, on a compio
//!   runtime) or [`Wal::wait_flushed_blocking`];
//! - the `wal-flusher` thread (`flusher.rs`, pinned when configured) writes
//!   everything pending as O_DIRECT|O_DSYNC writes on its io_uring and
//!   publishes the flushed LSN;
//! - the `wal-prepare` thread (`preparer.rs`) makes segment files ahead of
//!   the insert position so neither appenders nor the flusher wait on file
//!   creation in the common case;
//! - the checkpointer calls [`Wal::recycle_before`].
//!
//! LSN order (STYLE.md habit 2): `inserted >= flushed`, and `flushed` only
//! grows (asserted where it is published). `prepared_end >= inserted`: no
//! byte is appended before the segment that holds it exists.
//!
//! Error policy: a failed write or fdatasync is final (STYLE.md habit 6).
//! The flusher records [`WalError::Fenced`] and stops; every waiter and
//! appender, current and future, gets it; a restart runs recovery. Failing to
//! *prepare* a segment (`DiskFull`) is not final: the append that needed it
//! fails without appending anything, and a later append retries.

pub mod flusher;
pub mod metrics;
mod preparer;
pub mod reader;
pub mod record;
pub mod segment;
pub(crate) mod waiters;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::ids::{Lsn, SegmentNo, TimelineId};
use crate::io::{Ring, RING_ENTRIES_DEFAULT};
pub use metrics::{Histogram, WalMetrics};
use preparer::Preparer;
pub use reader::{EndOfWal, OwnedRecordBytes, WalReader};
use segment::SegmentDir;
use waiters::Waiters;

/// Segments prepared ahead of the insert position unless configured.
pub const SEGMENTS_AHEAD_DEFAULT: u32 = 2;
/// Unflushed bytes at which appenders block unless configured: 64 MiB, far
/// above what one flush takes at the measured ~340 MiB/s buffered write
/// rate (DESIGN.md section 6) within one fsync time.
pub const BUFFER_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// How long the flusher polls for a shipped batch's write unless
/// configured (see `flusher`, "Polling").
pub const FLUSH_POLL_DEFAULT: std::time::Duration =
    std::time::Duration::from_micros(crate::config::limits::WAL_FLUSH_POLL_US_DEFAULT);

/// Errors of the WAL subsystem.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("disk full while preparing WAL segment {path:?}")]
    DiskFull { path: PathBuf },
    #[error("WAL is fenced after a failed write or fsync (flushed up to {flushed}): {cause}")]
    Fenced { flushed: Lsn, cause: Arc<io::Error> },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("segment size {segment_bytes} is not a power of two of at least 64 KiB")]
    BadSegmentBytes { segment_bytes: u64 },
    #[error("WAL segment {segno:?} holding the start position {start} is missing on timeline {timeline}")]
    MissingSegment {
        segno: SegmentNo,
        timeline: TimelineId,
        start: Lsn,
    },
    #[error("WAL is shut down")]
    ShutDown,
}

/// Settings of one WAL. Limits here until the crate has a `config.rs`.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// `<data-dir>/wal`; created if missing.
    pub dir: PathBuf,
    /// Segment file size, a power of two.
    pub segment_bytes: u64,
    pub timeline: TimelineId,
    /// Segment files kept prepared beyond the one holding the insert position.
    pub segments_ahead: u32,
    /// Unflushed bytes at which `append` blocks (backpressure).
    pub buffer_bytes_max: usize,
    /// Core to pin the flusher thread to.
    pub flusher_core: Option<usize>,
    /// How long the flusher polls for the write of a shipped batch before
    /// it sleeps (see `flusher`, "Polling"). Zero: it sleeps at once.
    pub flush_poll: std::time::Duration,
    /// How long the flusher, after writing a large batch, waits for the
    /// next batch to reach half its size (see `flusher`, "Gathering").
    /// Zero: it writes whatever is pending at once.
    pub gather: std::time::Duration,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: segment::SEGMENT_BYTES_DEFAULT,
            timeline: TimelineId::FIRST,
            segments_ahead: SEGMENTS_AHEAD_DEFAULT,
            buffer_bytes_max: BUFFER_BYTES_MAX_DEFAULT,
            flusher_core: None,
            flush_poll: FLUSH_POLL_DEFAULT,
            gather: std::time::Duration::ZERO,
        }
    }
}

/// Bytes appended but not yet taken by the flusher.
struct Pending {
    buf: Vec<u8>,
    /// LSN of `buf[0]`.
    buf_start: Lsn,
    /// Insert position: LSN of the next appended byte.
    next: Lsn,
    /// LSN of the last record appended.
    prev: Lsn,
    /// Appends (record groups) in `buf`.
    groups: u64,
    shutdown: bool,
}

/// State shared by `Wal`, the flusher, the preparer and waiter futures.
pub(crate) struct Shared {
    cfg: WalConfig,
    segs: SegmentDir,
    pending: Mutex<Pending>,
    /// Appenders -> flusher: something is pending (or shutdown).
    flusher_wake: Condvar,
    /// Flusher -> appenders blocked on `buffer_bytes_max`.
    space: Condvar,
    inserted: AtomicU64,
    /// `Pending::groups`, readable without the lock (the flusher's gather).
    pending_groups: AtomicU64,
    /// Transactions in the batch the flusher took last (written by the
    /// flusher only, but for tests: `Wal::set_last_batch_groups`).
    last_batch_groups: AtomicU64,
    flushed: AtomicU64,
    /// Set once by the flusher when it exits (after shutdown or fence).
    stopped: OnceLock<()>,
    fence: OnceLock<WalError>,
    waiters: Waiters,
    preparer: Preparer,
    metrics: WalMetrics,
    /// Batches the flusher took, newest last (while someone reads them:
    /// `unflushed_readers > 0`), so WAL senders can ship a batch while it
    /// is being made durable here. Bounded by `SUBMITTED_KEEP`.
    submitted: Mutex<std::collections::VecDeque<(Lsn, Arc<Vec<u8>>)>>,
    /// Kicked after each batch is added to `submitted`.
    submitted_kick: crate::kick::Kick,
    unflushed_readers: std::sync::atomic::AtomicUsize,
    /// Client sessions append (a primary), on cores other than the
    /// flusher's: the flusher polls for appends before it sleeps
    /// (`flusher`, "Polling"). On a standby the WAL receiver appends, on
    /// the flusher's own core, and polling there doubled one-client
    /// commit latency: off.
    sessions_append: AtomicBool,
}

/// Batches kept in `Shared::submitted`: a sender that falls further behind
/// reads flushed WAL from the segment files instead.
const SUBMITTED_KEEP: usize = 8;

impl Shared {
    fn segment_of(&self, lsn: Lsn) -> SegmentNo {
        SegmentNo::of(lsn, self.cfg.segment_bytes)
    }

    fn fenced(&self) -> Option<WalError> {
        self.fence.get().cloned()
    }

    /// Flusher: `batch` (at `start`) goes to disk now; readers of unflushed
    /// WAL may ship it already. True when someone may (a reader is
    /// registered).
    pub(crate) fn publish_submitted(&self, start: Lsn, batch: &[u8]) -> bool {
        if self.unflushed_readers.load(Ordering::Acquire) == 0 {
            return false;
        }
        {
            let mut q = self.submitted.lock();
            if let Some((s, b)) = q.back() {
                debug_assert_eq!(
                    s.add(b.len() as u64),
                    start,
                    "submitted batches are contiguous"
                );
                if s.add(b.len() as u64) != start {
                    q.clear();
                }
            }
            q.push_back((start, Arc::new(batch.to_vec())));
            while q.len() > SUBMITTED_KEEP {
                q.pop_front();
            }
        }
        self.submitted_kick.kick();
        true
    }

    /// Publishes a new flushed LSN. Only grows (asserted: data guard).
    fn publish_flushed(&self, lsn: Lsn) {
        let old = self.flushed.swap(lsn.0, Ordering::Release);
        assert!(old <= lsn.0, "flushed LSN went back from {old} to {lsn}");
        assert!(
            lsn.0 <= self.inserted.load(Ordering::Acquire),
            "flushed {lsn} passed inserted"
        );
        self.waiters.wake_through(lsn);
    }

    /// Makes `cause` final: records the fence and wakes everyone.
    fn fence(&self, cause: io::Error) {
        let flushed = Lsn(self.flushed.load(Ordering::Acquire));
        let _ = self.fence.set(WalError::Fenced {
            flushed,
            cause: Arc::new(cause),
        });
        tracing::error!(%flushed, error = ?self.fence.get(), "WAL fenced");
        self.wake_everyone();
    }

    fn wake_everyone(&self) {
        {
            let _pending = self.pending.lock();
            self.space.notify_all();
            self.flusher_wake.notify_all();
        }
        self.waiters.wake_all();
        self.preparer.wake_all();
    }

    /// `Some` when a wait for `lsn` is over: flushed, fenced, or stopped.
    fn wait_outcome(&self, lsn: Lsn) -> Option<Result<(), WalError>> {
        if self.flushed.load(Ordering::Acquire) >= lsn.0 {
            return Some(Ok(()));
        }
        if let Some(e) = self.fenced() {
            return Some(Err(e));
        }
        if self.stopped.get().is_some() {
            return Some(Err(WalError::ShutDown));
        }
        None
    }
}

/// The write-ahead log: append, group commit, wait for durability.
pub struct Wal {
    shared: Arc<Shared>,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl Wal {
    /// Opens the WAL for writing at `start` (end of the last complete record
    /// group found by recovery; `prev` is the LSN of the last record before
    /// it).
    ///
    /// Zero-fills the rest of the segment holding `start` (and any later
    /// segment of this timeline) and fdatasyncs it, so a stale record after
    /// the cut can never chain on; prepares segments ahead; starts the
    /// `wal-flusher` and `wal-prepare` threads.
    pub fn open(cfg: WalConfig, start: Lsn, prev: Lsn) -> Result<Arc<Wal>, WalError> {
        assert!(prev <= start, "prev {prev} after start {start}");
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| segment::io_error("create_dir", &cfg.dir, e))?;
        let segs = SegmentDir::new(&cfg.dir, cfg.segment_bytes, cfg.timeline)?;
        let mut ring = Ring::new(RING_ENTRIES_DEFAULT)
            .map_err(|e| segment::io_error("io_uring_setup", &cfg.dir, e))?;
        let next_unprepared = preparer::cut_tail(&segs, &mut ring, start)?;
        let ahead_end = SegmentNo::of(start, cfg.segment_bytes).0 + 1 + cfg.segments_ahead as u64;
        let shared = Arc::new(Shared {
            segs: segs.clone(),
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                buf_start: start,
                next: start,
                prev,
                groups: 0,
                shutdown: false,
            }),
            flusher_wake: Condvar::new(),
            space: Condvar::new(),
            inserted: AtomicU64::new(start.0),
            pending_groups: AtomicU64::new(0),
            last_batch_groups: AtomicU64::new(0),
            flushed: AtomicU64::new(start.0),
            stopped: OnceLock::new(),
            fence: OnceLock::new(),
            waiters: Waiters::default(),
            preparer: Preparer::new(next_unprepared, ahead_end),
            metrics: WalMetrics::default(),
            submitted: Mutex::new(Default::default()),
            submitted_kick: Default::default(),
            unflushed_readers: Default::default(),
            sessions_append: AtomicBool::new(false),
            cfg,
        });
        let prepare_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wal-prepare".into())
                .spawn(move || preparer::run(&shared, ring))
                .map_err(|e| segment::io_error("spawn", &shared_dir(&segs), e))?
        };
        let flush_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wal-flusher".into())
                .spawn(move || flusher::run(&shared))
                .map_err(|e| segment::io_error("spawn", &shared_dir(&segs), e))?
        };
        Ok(Arc::new(Wal {
            shared,
            threads: Mutex::new(Some((flush_thread, prepare_thread))),
        }))
    }

    /// `(next, prev)`: the LSN the next appended byte gets, and the LSN of the
    /// last record appended (the `prev_lsn` of the next record).
    pub fn insert_position(&self) -> (Lsn, Lsn) {
        let p = self.shared.pending.lock();
        (p.next, p.prev)
    }

    /// Appends encoded records (a whole record group, chained with prev
    /// links starting at `insert_position`) and advances the insert position
    /// to `(next + bytes.len(), last_record_lsn)`. Returns the new `next`.
    ///
    /// Fails without appending anything with `DiskFull` when a segment it
    /// needs cannot be prepared, or with the sticky `Fenced` error. Blocks
    /// while `buffer_bytes_max` unflushed bytes are pending (one append
    /// larger than that proceeds once nothing is unflushed).
    pub fn append(&self, bytes: &[u8], last_record_lsn: Lsn) -> Result<Lsn, WalError> {
        let sh = &*self.shared;
        let len = bytes.len() as u64;
        let mut p = sh.pending.lock();
        loop {
            if let Some(e) = sh.fenced() {
                return Err(e);
            }
            if p.shutdown {
                return Err(WalError::ShutDown);
            }
            if bytes.is_empty() {
                return Ok(p.next);
            }
            let end = p.next.add(len);
            let last_segno = sh.segment_of(Lsn(end.0 - 1));
            if !sh.preparer.is_prepared(last_segno) {
                drop(p);
                sh.metrics.segment_waits.fetch_add(1, Ordering::Relaxed);
                sh.preparer
                    .ensure(last_segno, sh.cfg.segments_ahead, || sh.fenced())?;
                p = sh.pending.lock();
                continue;
            }
            let unflushed = p.next.bytes_since(Lsn(sh.flushed.load(Ordering::Acquire)));
            if unflushed > 0 && unflushed + len > sh.cfg.buffer_bytes_max as u64 {
                sh.space.wait(&mut p);
                continue;
            }
            break;
        }
        let start = p.next;
        let end = start.add(len);
        assert!(
            last_record_lsn >= start && last_record_lsn < end,
            "last record {last_record_lsn} outside the appended range [{start}, {end})"
        );
        if let Some(link) = bytes.get(8..16) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(link);
            assert_eq!(
                Lsn(u64::from_le_bytes(raw)),
                p.prev,
                "group at {start} does not chain to the insert position"
            );
        }
        if p.buf.is_empty() {
            p.buf_start = start;
        }
        p.buf.extend_from_slice(bytes);
        p.next = end;
        p.prev = last_record_lsn;
        p.groups += 1;
        sh.pending_groups.store(p.groups, Ordering::Relaxed);
        sh.inserted.store(end.0, Ordering::Release);
        sh.flusher_wake.notify_one();
        drop(p);
        let want = sh.segment_of(end).0 + sh.cfg.segments_ahead as u64;
        sh.preparer.request_through(SegmentNo(want));
        Ok(end)
    }

    /// The published flushed LSN: every byte before it is durable.
    pub fn flushed(&self) -> Lsn {
        Lsn(self.shared.flushed.load(Ordering::Acquire))
    }

    /// The insert position (LSN of the next appended byte).
    pub fn inserted(&self) -> Lsn {
        Lsn(self.shared.inserted.load(Ordering::Acquire))
    }

    /// Resolves when `flushed() >= lsn`, or with the fence or `ShutDown`
    /// error. Waker based: no timer, no polling. `'static`, so it can be
    /// moved into a task on another runtime.
    pub fn wait_flushed(&self, lsn: Lsn) -> FlushWait {
        FlushWait {
            shared: self.shared.clone(),
            lsn,
            id: None,
        }
    }

    /// Registers a reader of unflushed WAL (a WAL sender): while any is
    /// registered the flusher keeps its recent batches for
    /// [`Wal::submitted_from`]. Dropping the guard unregisters.
    pub fn read_unflushed(&self) -> UnflushedReader {
        self.shared.unflushed_readers.fetch_add(1, Ordering::AcqRel);
        UnflushedReader {
            shared: self.shared.clone(),
        }
    }

    /// The bytes from `from` to the end of the batches the flusher has
    /// taken (appended WAL that is being made durable or already is), if
    /// `from` lies in one of the kept batches. Whole records: batches hold
    /// whole record groups.
    pub fn submitted_from(&self, from: Lsn) -> Option<Vec<u8>> {
        let q = self.shared.submitted.lock();
        let first = q
            .iter()
            .position(|(s, b)| *s <= from && from < s.add(b.len() as u64))?;
        let mut out = Vec::new();
        for (i, (s, b)) in q.iter().enumerate().skip(first) {
            let skip = if i == first {
                (from.0 - s.0) as usize
            } else {
                0
            };
            out.extend_from_slice(&b[skip..]);
        }
        Some(out)
    }

    /// Whether client sessions append to this WAL (the node is a primary):
    /// the flusher then polls for the next append before it sleeps (see
    /// `flusher`, "Polling"). The engine sets it with the role.
    pub fn set_sessions_append(&self, on: bool) {
        self.shared.sessions_append.store(on, Ordering::Release);
    }

    /// Tells the flusher its last batch held `groups` transactions, as if
    /// it had; call it with nothing pending (tests of gathering).
    #[cfg(test)]
    fn set_last_batch_groups(&self, groups: u64) {
        self.shared
            .last_batch_groups
            .store(groups, Ordering::Relaxed);
    }

    /// Kicked whenever the flusher takes a new batch (see
    /// [`Wal::read_unflushed`]).
    pub fn submitted_kick(&self) -> &crate::kick::Kick {
        &self.shared.submitted_kick
    }

    /// Standby only, with nothing else appending: drops the WAL from `to`
    /// (a record boundary; `prev` is the LSN of the record before it) to
    /// the end, zero-filled on disk and synced, and appends from `to`
    /// again. Used when the primary's new timeline began at `to` and the
    /// bytes after it were never applied here (they were shipped before
    /// the old primary made them durable). The one place where `inserted`
    /// and `flushed` go back.
    pub fn truncate_to(&self, to: Lsn, prev: Lsn) -> Result<(), WalError> {
        let sh = &*self.shared;
        let end = self.inserted();
        if to >= end {
            return Ok(());
        }
        self.wait_flushed_blocking(end)?;
        let mut p = sh.pending.lock();
        assert!(
            p.buf.is_empty() && p.next == end,
            "truncate_to with appends in flight"
        );
        let mut ring =
            Ring::new(8).map_err(|e| segment::io_error("io_uring_setup", sh.segs.dir(), e))?;
        let seg_bytes = sh.cfg.segment_bytes;
        let mut at = to;
        while at < end {
            let segno = sh.segment_of(at);
            let seg_end = Lsn((segno.0 + 1) * seg_bytes).min(end);
            let file = sh.segs.open(segno)?;
            let path = sh.segs.path(segno);
            segment::zero_range(
                &mut ring,
                &file,
                at.0 % seg_bytes,
                seg_end.0 - segno.0 * seg_bytes,
            )
            .map_err(|e| segment::io_error("write", &path, e))?;
            use std::os::fd::AsRawFd;
            ring.fdatasync(file.as_raw_fd())
                .map_err(|e| segment::io_error("fdatasync", &path, e))?;
            at = seg_end;
        }
        p.next = to;
        p.prev = prev;
        p.buf_start = to;
        sh.inserted.store(to.0, Ordering::Release);
        sh.flushed.store(to.0, Ordering::Release);
        sh.submitted.lock().clear();
        tracing::warn!(from = %to, to = %end, "WAL truncated: bytes the new timeline does not hold");
        Ok(())
    }

    /// Blocks the calling thread until `flushed() >= lsn` (or fence/shutdown).
    pub fn wait_flushed_blocking(&self, lsn: Lsn) -> Result<(), WalError> {
        let sh = &*self.shared;
        if let Some(r) = sh.wait_outcome(lsn) {
            return r;
        }
        sh.waiters.wait_blocking(|| sh.wait_outcome(lsn))
    }

    /// After a checkpoint at `lsn`: segments wholly before `lsn` (and before
    /// the flushed LSN) are renamed to future numbers while fewer than
    /// `2 * segments_ahead` segments exist beyond the insert segment, and
    /// removed otherwise. The directory thus holds at most the segments not
    /// yet recycled, the insert segment and `2 * segments_ahead` spares.
    /// Returns how many files were recycled and removed.
    pub fn recycle_before(&self, lsn: Lsn) -> Result<(usize, usize), WalError> {
        let sh = &*self.shared;
        let limit = lsn.min(self.flushed());
        preparer::recycle_before(sh, sh.segment_of(limit))
    }

    /// Flushes everything appended, stops the threads, and returns the final
    /// flushed LSN (or the fence error). Later appends fail with `ShutDown`.
    pub fn shutdown(&self) -> Result<Lsn, WalError> {
        let sh = &*self.shared;
        {
            let mut p = sh.pending.lock();
            p.shutdown = true;
            sh.flusher_wake.notify_all();
            sh.space.notify_all();
        }
        let threads = self.threads.lock().take();
        if let Some((flush_thread, prepare_thread)) = threads {
            let flusher_ok = flush_thread.join().is_ok();
            sh.preparer.stop();
            let preparer_ok = prepare_thread.join().is_ok();
            assert!(flusher_ok && preparer_ok, "a WAL thread panicked");
        }
        match sh.fenced() {
            Some(e) => Err(e),
            None => Ok(self.flushed()),
        }
    }

    pub fn metrics(&self) -> &WalMetrics {
        &self.shared.metrics
    }

    pub fn config(&self) -> &WalConfig {
        &self.shared.cfg
    }
}

fn shared_dir(segs: &SegmentDir) -> PathBuf {
    segs.dir().to_path_buf()
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.threads.get_mut().is_some() {
            if let Err(e) = self.shutdown() {
                tracing::warn!(error = %e, "WAL dropped while fenced");
            }
        }
    }
}

/// Guard of [`Wal::read_unflushed`].
pub struct UnflushedReader {
    shared: Arc<Shared>,
}

impl Drop for UnflushedReader {
    fn drop(&mut self) {
        if self.shared.unflushed_readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.submitted.lock().clear();
        }
    }
}

/// Future of [`Wal::wait_flushed`].
pub struct FlushWait {
    shared: Arc<Shared>,
    lsn: Lsn,
    /// Our entry in the wait list, once registered.
    id: Option<u64>,
}

impl Future for FlushWait {
    type Output = Result<(), WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let sh = &*this.shared;
        if let Some(r) = sh.wait_outcome(this.lsn) {
            if let Some(id) = this.id.take() {
                sh.waiters.lock().deregister(this.lsn, id);
            }
            return Poll::Ready(r);
        }
        let mut list = sh.waiters.lock();
        // Re-check under the lock: the flusher publishes before it locks.
        if let Some(r) = sh.wait_outcome(this.lsn) {
            if let Some(id) = this.id.take() {
                list.deregister(this.lsn, id);
            }
            return Poll::Ready(r);
        }
        list.register(this.lsn, &mut this.id, cx.waker());
        Poll::Pending
    }
}

impl Drop for FlushWait {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.waiters.lock().deregister(self.lsn, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PageNo;
    use crate::wal::record::Record;

    const SEG: u64 = 1 << 20;

    fn cfg(dir: &std::path::Path) -> WalConfig {
        WalConfig {
            segment_bytes: SEG,
            ..WalConfig::new(dir)
        }
    }

    /// One group: a put of `value_bytes` and a commit, chained from `prev`.
    fn group(next: Lsn, prev: Lsn, value_bytes: usize) -> (Vec<u8>, Lsn) {
        let mut out = Vec::new();
        let value = vec![0xAB; value_bytes];
        let put = Record::LeafPut {
            page: PageNo(1),
            key: b"k",
            value: &value,
        };
        put.encode_into(prev, &mut out);
        let commit_lsn = next.add(out.len() as u64);
        Record::Commit { commit_time_us: 1 }.encode_into(next, &mut out);
        (out, commit_lsn)
    }

    fn append_group(wal: &Wal, value_bytes: usize) -> Lsn {
        let (next, prev) = wal.insert_position();
        let (bytes, last) = group(next, prev, value_bytes);
        wal.append(&bytes, last).unwrap()
    }

    #[test]
    fn append_wait_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
        let mut ends = Vec::new();
        for i in 0..50 {
            ends.push(append_group(&wal, i * 97));
        }
        let last = *ends.last().unwrap();
        wal.wait_flushed_blocking(last).unwrap();
        assert!(wal.flushed() >= last);
        assert_eq!(wal.inserted(), last);
        assert!(wal.metrics().batches.load(Ordering::Relaxed) >= 1);
        assert_eq!(wal.shutdown().unwrap(), last);
        assert!(matches!(wal.append(b"x", Lsn(0)), Err(WalError::ShutDown)));

        let mut reader = WalReader::open(dir.path(), SEG, TimelineId(1), Lsn(0), Lsn(0)).unwrap();
        let mut count = 0;
        while let Some((_, rec)) = reader.next().unwrap() {
            rec.record();
            count += 1;
        }
        assert_eq!(count, 100);
        assert_eq!(reader.position().0, last);
        assert_eq!(reader.end_reason(), Some(&EndOfWal::Zero { lsn: last }));
    }

    /// Batches taken and transactions in them so far.
    fn batches_and_groups(wal: &Wal) -> (u64, u64) {
        let m = wal.metrics();
        (m.batch_groups.count(), m.batch_groups.sum())
    }

    #[test]
    fn after_a_large_batch_the_flusher_gathers_half_as_many_and_no_longer_than_it_may() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            WalConfig {
                gather: std::time::Duration::from_millis(300),
                ..cfg(dir.path())
            },
            Lsn(0),
            Lsn(0),
        )
        .unwrap();
        wal.set_sessions_append(true);
        let spaced = std::time::Duration::from_millis(1);

        // After 16 transactions in one batch, 8 appended a millisecond
        // apart go out as one batch (without gathering, each would be
        // written alone: the flusher is idle when it arrives).
        wal.set_last_batch_groups(16);
        let (b0, g0) = batches_and_groups(&wal);
        let mut last = Lsn(0);
        for _ in 0..8 {
            std::thread::sleep(spaced);
            last = append_group(&wal, 10);
        }
        wal.wait_flushed_blocking(last).unwrap();
        assert_eq!(batches_and_groups(&wal), (b0 + 1, g0 + 8));

        // A lone transaction after a large batch is held at most `gather`,
        // then written alone.
        wal.set_last_batch_groups(16);
        let (b0, g0) = batches_and_groups(&wal);
        let alone = append_group(&wal, 10);
        wal.wait_flushed_blocking(alone).unwrap();
        assert_eq!(batches_and_groups(&wal), (b0 + 1, g0 + 1));

        wal.shutdown().unwrap();

        // Never after a small batch, nor on a standby (where the WAL
        // receiver appends, not sessions): with a gather window far longer
        // than the test may take, a lone transaction goes out at once.
        const WINDOW: std::time::Duration = std::time::Duration::from_secs(20);
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(
            WalConfig {
                gather: WINDOW,
                ..cfg(dir.path())
            },
            Lsn(0),
            Lsn(0),
        )
        .unwrap();
        for (sessions_append, last_batch) in [(true, flusher::GATHER_MIN_GROUPS - 1), (false, 16)] {
            wal.set_sessions_append(sessions_append);
            wal.set_last_batch_groups(last_batch);
            let started = std::time::Instant::now();
            let alone = append_group(&wal, 10);
            wal.wait_flushed_blocking(alone).unwrap();
            assert!(
                started.elapsed() < WINDOW / 2,
                "held after a batch of {last_batch} (sessions append: {sessions_append})"
            );
        }
        wal.shutdown().unwrap();
    }

    #[test]
    fn async_wait_is_woken_by_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
        let end = append_group(&wal, 10);
        let fut = wal.wait_flushed(end);
        let waiter =
            std::thread::spawn(move || compio::runtime::Runtime::new().unwrap().block_on(fut));
        waiter.join().unwrap().unwrap();
        // A wait past everything appended ends with ShutDown, not a hang.
        let fut = wal.wait_flushed(end.add(1));
        let waiter =
            std::thread::spawn(move || compio::runtime::Runtime::new().unwrap().block_on(fut));
        wal.shutdown().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(WalError::ShutDown)));
    }

    #[test]
    fn a_failed_flush_fences_every_waiter_and_appender() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
        let first = append_group(&wal, 10);
        wal.wait_flushed_blocking(first).unwrap();
        // Segment 1 becomes something the flusher cannot open for writing.
        wal.shared
            .preparer
            .ensure(SegmentNo(1), 0, || None)
            .unwrap();
        let seg1 = wal.shared.segs.path(SegmentNo(1));
        std::fs::remove_file(&seg1).unwrap();
        std::fs::create_dir(&seg1).unwrap();
        let mut end = first;
        while end.0 <= SEG {
            let (next, prev) = wal.insert_position();
            let (bytes, last) = group(next, prev, 8000);
            end = match wal.append(&bytes, last) {
                Ok(end) => end,
                Err(e) => {
                    assert!(matches!(e, WalError::Fenced { .. }), "{e:?}");
                    break;
                }
            };
        }
        let fut = wal.wait_flushed(end);
        let waiter =
            std::thread::spawn(move || compio::runtime::Runtime::new().unwrap().block_on(fut));
        assert!(matches!(
            waiter.join().unwrap(),
            Err(WalError::Fenced { .. })
        ));
        let err = wal.wait_flushed_blocking(end).unwrap_err();
        let WalError::Fenced { flushed, cause } = &err else {
            panic!("{err:?}")
        };
        assert!(*flushed < Lsn(SEG));
        assert!(cause.to_string().contains("open"), "{cause}");
        assert!(
            wal.flushed() < Lsn(SEG),
            "bytes of the failed batch reported durable"
        );
        assert!(matches!(
            wal.append(b"x", Lsn(0)),
            Err(WalError::Fenced { .. })
        ));
        assert!(matches!(wal.shutdown(), Err(WalError::Fenced { .. })));
    }

    #[test]
    fn groups_span_segments_and_segments_are_prepared_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
        let mut end = Lsn(0);
        while end.0 < 3 * SEG + 1000 {
            end = append_group(&wal, 7000);
        }
        wal.wait_flushed_blocking(end).unwrap();
        wal.shutdown().unwrap();
        let segs = SegmentDir::new(dir.path(), SEG, TimelineId(1)).unwrap();
        let listed = segs.list().unwrap();
        // Segments 0..=3 hold data; the preparer keeps two ahead of 3.
        assert!(listed.len() >= 4, "{listed:?}");
        let mut reader = WalReader::open(dir.path(), SEG, TimelineId(1), Lsn(0), Lsn(0)).unwrap();
        while reader.next().unwrap().is_some() {}
        assert_eq!(reader.position().0, end);
    }
}
