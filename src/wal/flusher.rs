//! The group-commit flusher: the `wal-flusher` thread.
//!
//! Loop: when nothing is in flight, wait (condvar, no timer) until something
//! is pending; take the whole pending buffer (appenders keep appending into
//! the other buffer meanwhile) and submit it as one durable write per
//! segment it touches, on segment files opened `O_DIRECT | O_DSYNC`
//! ([`DurableWriter`]); then wait for completions, publish the flushed LSN
//! and wake every waiter it covers. Up to `WRITES_IN_FLIGHT_MAX` writes may
//! be in flight: after each completion the flusher takes what is pending
//! again if [`InFlight`] allows it. A lone client thus pays exactly one
//! write (no timer, no second hop), and under load the batch grows by itself
//! while a write is in flight.
//!
//! O_DIRECT needs `DIRECT_ALIGN` (4 KiB) aligned offsets and lengths, so a
//! write covers `[align_down(start), align_up(end))` of its segment: the
//! flusher keeps a copy of the partial last block (`tail`) and rewrites it
//! in front of the next batch, with zeros after `end` (the segment is
//! preallocated with zeros and nothing past the insert position is on
//! disk, so those zeros are what is there already). Two writes that cover
//! one block must not be in flight together (the older could land last and
//! undo the newer's bytes): [`InFlight::may_submit`] holds a write back
//! until every earlier write sharing a block with it has completed. The
//! flushed LSN is the end of the contiguous prefix of completed writes
//! ([`InFlight::complete`]), so a write that completes early is never
//! reported before the ones in front of it. Segment sizes are powers of two
//! of at least 64 KiB, so a segment starts on a fresh block and writes in
//! different segments never share one.
//!
//! A failed write fences the WAL (STYLE.md habit 6): the flusher records the
//! error, wakes everyone with it and exits; writes still in flight are
//! reaped (never reported) before their buffers are freed. The flushed LSN
//! never passes a byte whose write did not complete.
//!
//! Polling instead of sleeping, in two places (`WalConfig::flush_poll`,
//! `wal_flush_poll_us`; both only on a primary):
//! - While the write of a shipped batch is in flight. When WAL senders
//!   ship batches as the flusher takes them ([`super::Wal::read_unflushed`])
//!   and the batch holds two or more transactions, the flusher yields its
//!   core and looks at its completion queue for up to `flush_poll`, then
//!   sleeps in `io_uring_enter`. The WAL sender shares this core (core
//!   map) and was just woken by the hand-off; yielding lets it ship the
//!   batch first, and the flusher is already running when its completion
//!   lands. Measured with one `on` standby, single-UPDATE at 64 clients,
//!   side by side (2026-11-27): sleeping at once 45-49k tps, one yield
//!   53-59k, polling up to 300 us 60-68k; the primary's ack_received (send
//!   to the standby's "received" status) fell from 230 us to 75 us and
//!   batches grew from 16 to 29 transactions. On a single node it changed
//!   nothing (redis-benchmark SET, within noise). A lone transaction
//!   sleeps at once: at one client this poll cost 10-20 us of p50 in two
//!   runs of three.
//! - While waiting for the next append, once nothing is left to write.
//!   The appenders (sessions) run on another core, and waking this one
//!   from halt costs about 30 us on this VM (io::net_runtime, "Polling
//!   before sleeping"). Measured side by side: redis-benchmark SET `-c 1`
//!   p50 231-239 us -> 191-199 us; one-client `on` single-UPDATE p50
//!   322-330 us -> 290-307 us.
//!
//! A standby's flusher polls in neither place. Its appender, the WAL
//! receiver, shares its core: polling for appends there doubled one-client
//! `on` latency (p50 0.62 ms against 0.26-0.28 ms), and polling for writes
//! lost at 64 clients (44-45k against 47-49k). Nothing waits on a poll: a
//! completion or append found by it is handled exactly like one the
//! sleeping wait returns.
//!
//! Gathering (`WalConfig::gather`, `wal_gather_us`; only on a primary).
//! Clients in a closed loop fall into a convoy: at 64 redis-benchmark
//! clients, 63 commits rode one write, all 63 replies went out together,
//! and the two shared cores then spent about 400 us turning them into the
//! next 63 requests while the device idled; the first stragglers of that
//! round were written alone (traced: batches of 63, 1, 1, 63, 1, 1, ...;
//! 60 % of writes carried one transaction), and the round waited behind
//! them. So after a batch of `GATHER_MIN_GROUPS` or more, the flusher
//! holds the next batch until half as many transactions are pending or
//! `gather` has passed since the first of them arrived. The clients split
//! into two halves whose writes overlap the other half's CPU work.
//! Measured side by side (2026-11-27, `perf/ab.sh`, one build,
//! `wal_gather_us` 0 against 300): redis-benchmark SET `-c 64` 110-111k
//! -> 119-120k/s; one `on` standby, single-UPDATE at 64 clients 78-92k ->
//! 101-103k tps, TPC-B 53-57k -> 57k; one-client latency unchanged (a
//! batch of one never gathers). Single runs of a draft: SET `-c 8` 21k ->
//! 33-38k, `-c 16` +8-17 %, `-c 32` +12-15 %. A commit waits at
//! most `gather` more, only right after a large batch; the standby's
//! flusher never gathers (its appends are the primary's batches). The
//! flusher spins (yielding its core) while it gathers: sleeping on the
//! condvar until an appender saw half the batch pending lost side by side
//! (103.5k against 109k SET/s), as every other wait on this VM that trades
//! a spin for a vCPU wake-up did.
//!
//! Segment files stay open in a small cache (`FILES_OPEN_MAX`), closed once
//! the flushed LSN has moved past them (no write in flight can use them).
//!
//! Why O_DIRECT|O_DSYNC, and what it bought (2 cores, kernel 6.18, ext4 on
//! virtio `/dev/vda`: 512 B logical / 4 KiB physical blocks, volatile write
//! cache, no FUA; other engineers' builds and tests shared the machine, so
//! every comparison below ran side by side in one script; figures swing
//! 10-20% run to run):
//!
//! ```text
//! io_uring micro-probe, 1,600 B appends, QD = writes in flight (ops/s, p50):
//!   RWF_DSYNC buffered (the old flusher)   QD1  4,043/s 237 us  QD4  4,503/s
//!   buffered write -> fdatasync, linked    QD1  4,798/s 168 us  QD4 11,328/s
//!   O_DIRECT|O_DSYNC 4 KiB blocks          QD1  8,052/s 122 us  QD4 18,977/s*
//!   O_DIRECT write -> fdatasync, linked    QD1  4,944/s 202 us  QD4 14,278/s
//!   (* unsafe as measured: the QD4 writes share tail blocks)
//! cargo bench --bench wal_append, old flusher (RWF_DSYNC) vs this one,
//! criterion medians, the two quietest runs of four:
//!   raw 8 KiB pwrite+fdatasync            139 us
//!   raw 4 KiB O_DIRECT|O_DSYNC            139-192 us
//!   append 100 B + wait, 1 thread        229 us -> 209 us
//!   same, 8 threads                      42.6 us -> 40.9 us (4.0 -> 6.0 groups/flush)
//!   same, 64 threads                     7.07 us -> 6.33 us (29 -> 41 groups/flush)
//! tandem node, redis-benchmark SET -d 100, synchronous_commit=local,
//! alternating binaries, 9 runs each at c=64 and 4 at c=1:
//!   c=64 old 73.2-84.3k/s (mean 78.2k), new 71.8-81.2k/s (mean 75.4k)
//!   c=1  old p50 199-231 us, new p50 183-223 us
//!   c=64 with synchronous_commit=off: the same rate as local (72.9k vs
//!   73.7k): the 64-client path is bound by session and loopback CPU on
//!   two shared cores, not by the flush.
//! ```
//!
//! Reading: the old flusher's durable write went through an `iou-wrk`
//! thread (ext4 has no non-blocking buffered write), this one is issued
//! inline by `io_uring_enter` and its QD1 device latency is about half on
//! the probe; inside the node the gain shrinks to ~8% on the mean write at
//! one client (168 vs 182 us) and turns into a loss at 64 clients (205 vs
//! 185 us), where the DIO submission and its completion kworker compete with
//! the sessions for the same two cores. End to end the two are within the
//! noise (c=64 -4%, c=1 equal); kept for the WAL bench's 4-10% and the
//! lower c=64 p99 (1.41-1.50 ms vs 1.39-1.94 ms).
//! Several writes in flight rarely happen: consecutive batches share their
//! boundary block, so the hold rule serialises them unless a batch ends on
//! a block boundary or spans segments. Real parallelism would need batches
//! that start on a fresh block (padding in the WAL format), which the
//! format does not have. A prototype (2026-11-27: batches of two or more
//! transactions padded to the next block, the flusher woken by an eventfd
//! read on its ring while writes are in flight) doubled the writes (37-39k
//! against 17k in a 300k-SET run, 8 transactions per write instead of 18)
//! and lost: 81-83k SET/s against 93k side by side at 64 clients, because
//! that path is CPU-bound on these 2 cores and every write costs CPU
//! (submission, virtio kick, completion work). Not worth the format change
//! here; worth re-measuring on a machine with spare cores.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ids::{Lsn, SegmentNo};
use crate::io::{poll_until, AlignedBuf, DurableWriter, DIRECT_ALIGN};
use crate::wal::segment::SegmentDir;
use crate::wal::{Shared, WalError};

/// Durable writes the flusher keeps in flight at most: DESIGN.md section 6
/// measured four O_DIRECT|O_DSYNC writes in flight at 17,600/s (18,977/s
/// in the probe above) against 8,052/s for one. Reached only when writes
/// share no block (see the module doc).
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

/// Batches smaller than this never make the flusher gather: at a few
/// clients the next commit is not worth waiting for.
pub(crate) const GATHER_MIN_GROUPS: u64 = 8;

/// Segment files the flusher keeps open beyond those it still writes. A
/// batch touches at most a few (it is bounded by `buffer_bytes_max`).
const FILES_OPEN_MAX: usize = 8;

const ALIGN: u64 = DIRECT_ALIGN as u64;

fn align_down(x: u64) -> u64 {
    x / ALIGN * ALIGN
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Open segment files by number (`O_DIRECT | O_DSYNC` where possible).
struct FileCache {
    segs: SegmentDir,
    files: BTreeMap<SegmentNo, File>,
}

impl FileCache {
    fn get(&mut self, segno: SegmentNo) -> Result<RawFd, WalError> {
        if let Some(f) = self.files.get(&segno) {
            return Ok(f.as_raw_fd());
        }
        let (file, direct) = self.segs.open_dsync(segno)?;
        if !direct {
            tracing::warn!(
                ?segno,
                "WAL segment opened without O_DIRECT (refused by the file system)"
            );
        }
        let fd = file.as_raw_fd();
        self.files.insert(segno, file);
        Ok(fd)
    }

    /// Closes files of segments before `segno` (the flushed LSN's: no write
    /// in flight uses them), and the oldest beyond `FILES_OPEN_MAX` of those.
    fn retire_before(&mut self, segno: SegmentNo) {
        self.files = self.files.split_off(&segno);
        while self.files.len() > FILES_OPEN_MAX {
            self.files.pop_first();
        }
    }
}

/// One write the flusher has issued, in LSN order.
#[derive(Debug)]
struct Issued {
    token: u64,
    /// WAL bytes this write makes durable.
    lsns: Range<Lsn>,
    segno: SegmentNo,
    /// File offsets it covers, `DIRECT_ALIGN`-aligned.
    blocks: Range<u64>,
    done: bool,
    submitted: Instant,
}

/// The writes in flight and the flushed LSN they add up to: pure logic, no
/// I/O. Invariants: writes are issued in LSN order, each starting where the
/// previous ended; no two unfinished writes cover one block of one segment;
/// `flushed` is the end of the contiguous prefix of finished writes and
/// only grows.
#[derive(Debug)]
pub(crate) struct InFlight {
    writes: VecDeque<Issued>,
    flushed: Lsn,
    /// End of the last write issued (`flushed` when none is tracked).
    issued_end: Lsn,
    next_token: u64,
    depth: usize,
}

impl InFlight {
    pub(crate) fn new(flushed: Lsn, depth: usize) -> InFlight {
        InFlight {
            writes: VecDeque::new(),
            flushed,
            issued_end: flushed,
            next_token: 0,
            depth,
        }
    }

    /// End of the last write issued.
    pub(crate) fn issued_end(&self) -> Lsn {
        self.issued_end
    }

    /// Writes not yet finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.writes.iter().filter(|w| !w.done).count()
    }

    /// Whether a write of `blocks` in `segno` may be submitted now: a free
    /// slot, and no unfinished write covering any of the same blocks.
    pub(crate) fn may_submit(&self, segno: SegmentNo, blocks: &Range<u64>) -> bool {
        self.unfinished() < self.depth
            && !self.writes.iter().any(|w| {
                !w.done
                    && w.segno == segno
                    && w.blocks.start < blocks.end
                    && blocks.start < w.blocks.end
            })
    }

    /// Records a submitted write of WAL bytes `lsns` to `blocks` of `segno`;
    /// returns its token.
    pub(crate) fn issue(&mut self, lsns: Range<Lsn>, segno: SegmentNo, blocks: Range<u64>) -> u64 {
        assert_eq!(
            lsns.start, self.issued_end,
            "write does not follow the last one"
        );
        assert!(lsns.start < lsns.end, "empty write");
        assert!(
            blocks.start.is_multiple_of(ALIGN) && blocks.end.is_multiple_of(ALIGN),
            "unaligned {blocks:?}"
        );
        assert!(
            self.may_submit(segno, &blocks),
            "write of {blocks:?} overlaps one in flight"
        );
        self.next_token += 1;
        self.issued_end = lsns.end;
        self.writes.push_back(Issued {
            token: self.next_token,
            lsns,
            segno,
            blocks,
            done: false,
            submitted: Instant::now(),
        });
        self.next_token
    }

    /// Marks write `token` finished; returns how long it was in flight and
    /// the new flushed LSN if the contiguous prefix grew.
    pub(crate) fn complete(&mut self, token: u64) -> (std::time::Duration, Option<Lsn>) {
        let w = self
            .writes
            .iter_mut()
            .find(|w| w.token == token)
            .unwrap_or_else(|| panic!("completion of unknown write {token}"));
        assert!(!w.done, "write {token} completed twice");
        w.done = true;
        let took = w.submitted.elapsed();
        let before = self.flushed;
        while self.writes.front().is_some_and(|w| w.done) {
            if let Some(w) = self.writes.pop_front() {
                assert_eq!(w.lsns.start, self.flushed, "gap in the finished prefix");
                self.flushed = w.lsns.end;
            }
        }
        (took, (self.flushed > before).then_some(self.flushed))
    }
}

/// One piece of a batch: the bytes of one segment, laid out for O_DIRECT.
struct Piece {
    lsns: Range<Lsn>,
    segno: SegmentNo,
    blocks: Range<u64>,
    buf: AlignedBuf,
}

/// Lays out `bytes` (the WAL at `start`) as pieces, one per segment, each
/// `[align_down, align_up)` of its segment with the partial first block
/// taken from `tail` (the WAL bytes from the block start to `start`) and
/// zeros after the end. Updates `tail` to the partial block at the end.
fn lay_out(
    start: Lsn,
    bytes: &[u8],
    seg_bytes: u64,
    tail: &mut Vec<u8>,
    spare: &mut Vec<AlignedBuf>,
) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(1);
    let mut at = start;
    let mut rest = bytes;
    while !rest.is_empty() {
        let segno = SegmentNo::of(at, seg_bytes);
        let in_seg = at.0 % seg_bytes;
        let n = (seg_bytes - in_seg).min(rest.len() as u64);
        let (now, later) = rest.split_at(n as usize);
        let block_start = align_down(in_seg);
        let prefix = (in_seg - block_start) as usize;
        assert_eq!(tail.len(), prefix, "tail block copy out of step at {at}");
        let end_in_seg = in_seg + n;
        let blocks = block_start..align_up(end_in_seg);
        let mut buf = spare.pop().unwrap_or_else(|| AlignedBuf::zeroed(0));
        buf.reset((blocks.end - blocks.start) as usize);
        let out = buf.as_mut_slice();
        out[..prefix].copy_from_slice(tail);
        out[prefix..prefix + now.len()].copy_from_slice(now);
        tail.clear();
        if end_in_seg < seg_bytes {
            let keep_from = (align_down(end_in_seg) - block_start) as usize;
            tail.extend_from_slice(&out[keep_from..prefix + now.len()]);
        }
        pieces.push(Piece {
            lsns: at..at.add(n),
            segno,
            blocks,
            buf,
        });
        at = at.add(n);
        rest = later;
    }
    pieces
}

/// Reads the WAL bytes from the start of the block holding `start` to
/// `start` (written before this process opened the WAL).
fn read_tail(segs: &SegmentDir, start: Lsn) -> Result<Vec<u8>, WalError> {
    let seg_bytes = segs.segment_bytes();
    let in_seg = start.0 % seg_bytes;
    let from = align_down(in_seg);
    let mut tail = vec![0u8; (in_seg - from) as usize];
    if !tail.is_empty() {
        let segno = SegmentNo::of(start, seg_bytes);
        let file = segs.open(segno)?;
        file.read_exact_at(&mut tail, from)
            .map_err(|e| crate::wal::segment::io_error("read", &segs.path(segno), e))?;
    }
    Ok(tail)
}

/// The flusher's own state between loop turns.
struct Flusher<'a> {
    shared: &'a Shared,
    writer: DurableWriter,
    files: FileCache,
    in_flight: InFlight,
    /// Pieces taken but not yet submitted (a batch over more segments than
    /// free slots, or held back by a write sharing its first block).
    queued: VecDeque<Piece>,
    tail: Vec<u8>,
    batch: Vec<u8>,
    spare: Vec<AlignedBuf>,
    /// The last batch taken held two or more transactions and was offered
    /// to WAL senders: wait for its write by polling (module doc).
    poll_next_wait: bool,
}

/// Body of the `wal-flusher` thread.
pub(crate) fn run(shared: &Shared) {
    if let Some(core) = shared.cfg.flusher_core {
        pin_to(core);
    }
    if let Err(e) = run_loop(shared) {
        shared.fence(e);
    }
    let _ = shared.stopped.set(());
    shared.wake_everyone();
}

fn run_loop(shared: &Shared) -> io::Result<()> {
    let start = Lsn(shared.flushed.load(Ordering::Acquire));
    let mut f = Flusher {
        shared,
        writer: DurableWriter::new(WRITES_IN_FLIGHT_MAX)?,
        files: FileCache {
            segs: shared.segs.clone(),
            files: BTreeMap::new(),
        },
        in_flight: InFlight::new(start, WRITES_IN_FLIGHT_MAX),
        queued: VecDeque::new(),
        tail: read_tail(&shared.segs, start).map_err(wal_to_io)?,
        batch: Vec::new(),
        spare: Vec::new(),
        poll_next_wait: false,
    };
    loop {
        let idle = f.writer.in_flight() == 0;
        if f.queued.is_empty() && !f.take(idle)? && idle {
            return Ok(()); // shut down (or fenced by someone else)
        }
        f.submit_queued()?;
        if f.writer.in_flight() > 0 {
            f.reap()?;
        }
    }
}

impl Flusher<'_> {
    /// Takes everything pending into `queued` (waiting for it when `block`).
    /// False when there is nothing to take: shutdown or fence with `block`,
    /// or simply nothing pending.
    fn take(&mut self, block: bool) -> io::Result<bool> {
        let sh = self.shared;
        self.batch.clear();
        if block {
            self.poll_for_appends();
        }
        let (start, groups) = {
            let mut p = sh.pending.lock();
            while block && p.buf.is_empty() && !p.shutdown && sh.fence.get().is_none() {
                sh.flusher_wake.wait(&mut p);
            }
            if block && !p.buf.is_empty() && self.gathers() {
                drop(p);
                self.gather();
                p = sh.pending.lock();
            }
            if p.buf.is_empty() || sh.fence.get().is_some() {
                return Ok(false);
            }
            // Bytes whose first block is still being written stay pending
            // (and keep growing) until that write completes: taking them now
            // would only queue a smaller write behind it.
            let first = align_down(p.buf_start.0 % sh.cfg.segment_bytes);
            if !self
                .in_flight
                .may_submit(sh.segment_of(p.buf_start), &(first..first + ALIGN))
            {
                return Ok(false);
            }
            std::mem::swap(&mut p.buf, &mut self.batch);
            let start = p.buf_start;
            p.buf_start = p.next;
            if start != self.in_flight.issued_end() {
                // `Wal::truncate_to` moved the insert position back (with
                // every write of ours finished): start over from there.
                assert_eq!(
                    self.in_flight.unfinished(),
                    0,
                    "WAL truncated under a write"
                );
                assert!(self.queued.is_empty(), "WAL truncated under queued writes");
                self.in_flight = InFlight::new(start, WRITES_IN_FLIGHT_MAX);
                self.tail = read_tail(&sh.segs, start).map_err(wal_to_io)?;
            }
            sh.pending_groups.store(0, Ordering::Relaxed);
            (start, std::mem::take(&mut p.groups))
        };
        sh.last_batch_groups.store(groups, Ordering::Relaxed);
        let shipped = sh.publish_submitted(start, &self.batch);
        self.poll_next_wait = shipped && groups >= 2;
        if let Some(delay) = crate::failpoints::flusher_delay() {
            std::thread::sleep(delay);
        }
        let m = &sh.metrics;
        m.bytes_written
            .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.batch_bytes.record(self.batch.len() as u64);
        m.batch_groups.record(groups);
        let pieces = lay_out(
            start,
            &self.batch,
            sh.cfg.segment_bytes,
            &mut self.tail,
            &mut self.spare,
        );
        self.queued.extend(pieces);
        Ok(true)
    }

    /// With nothing in flight and everything appended taken: looks for the
    /// next append for up to `flush_poll`, yielding the core between looks,
    /// before the caller sleeps on the condvar (module doc, "Polling").
    /// Returns early when an append (or a truncation) moves the insert
    /// position; shutdown and fence are seen by the caller's wait after at
    /// most `flush_poll`.
    fn poll_for_appends(&self) {
        let sh = self.shared;
        let taken_to = self.in_flight.issued_end().0;
        if sh.cfg.flush_poll.is_zero()
            || !sh.sessions_append.load(Ordering::Acquire)
            || sh.inserted.load(Ordering::Acquire) != taken_to
        {
            return;
        }
        poll_until(sh.cfg.flush_poll, || {
            sh.inserted.load(Ordering::Acquire) != taken_to
        });
    }

    /// Whether the next batch is gathered: sessions append (a primary),
    /// gathering is on and the last batch held `GATHER_MIN_GROUPS` or more
    /// transactions.
    fn gathers(&self) -> bool {
        let sh = self.shared;
        !sh.cfg.gather.is_zero()
            && sh.sessions_append.load(Ordering::Acquire)
            && sh.last_batch_groups.load(Ordering::Relaxed) >= GATHER_MIN_GROUPS
    }

    /// With nothing in flight and something pending, after a large batch
    /// ([`Flusher::gathers`]): waits, yielding the core, until half as many
    /// transactions are pending or `gather` has passed since the call
    /// (module doc, "Gathering").
    fn gather(&self) {
        let sh = self.shared;
        let want = sh.last_batch_groups.load(Ordering::Relaxed) / 2;
        poll_until(sh.cfg.gather, || {
            sh.pending_groups.load(Ordering::Relaxed) >= want
        });
    }

    /// Submits queued pieces, in order, while [`InFlight`] allows.
    fn submit_queued(&mut self) -> io::Result<()> {
        while let Some(piece) = self.queued.front() {
            if !self.in_flight.may_submit(piece.segno, &piece.blocks) {
                break;
            }
            let Some(piece) = self.queued.pop_front() else {
                break;
            };
            let fd = self.files.get(piece.segno).map_err(wal_to_io)?;
            let token = self
                .in_flight
                .issue(piece.lsns, piece.segno, piece.blocks.clone());
            self.writer
                .submit(fd, piece.blocks.start, piece.buf, token)?;
        }
        Ok(())
    }

    /// Waits for completions and publishes what they add up to.
    fn reap(&mut self) -> io::Result<()> {
        let sh = self.shared;
        let mut advanced = None;
        let done = if self.poll_next_wait {
            self.writer.wait_polling(sh.cfg.flush_poll)
        } else {
            self.writer.wait()
        };
        for (token, outcome, buf) in done {
            outcome?;
            let (took, flushed) = self.in_flight.complete(token);
            sh.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
            sh.metrics.fsync_latency_us.record(took.as_micros() as u64);
            advanced = flushed.or(advanced);
            if self.spare.len() < WRITES_IN_FLIGHT_MAX {
                self.spare.push(buf);
            }
        }
        if let Some(flushed) = advanced {
            sh.publish_flushed(flushed);
            self.files.retire_before(sh.segment_of(flushed));
            // Appenders blocked on buffer_bytes_max re-check under the lock.
            let _p = sh.pending.lock();
            sh.space.notify_all();
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u64 = 64 << 10;

    #[test]
    fn flushed_is_the_contiguous_prefix_of_finished_writes() {
        let mut f = InFlight::new(Lsn(0), 4);
        let a = f.issue(Lsn(0)..Lsn(SEG), SegmentNo(0), 0..SEG);
        let b = f.issue(Lsn(SEG)..Lsn(2 * SEG), SegmentNo(1), 0..SEG);
        let c = f.issue(Lsn(2 * SEG)..Lsn(2 * SEG + 10), SegmentNo(2), 0..ALIGN);
        assert_eq!(f.complete(c).1, None);
        assert_eq!(f.complete(b).1, None);
        assert_eq!(f.unfinished(), 1);
        assert_eq!(f.complete(a).1, Some(Lsn(2 * SEG + 10)));
        assert_eq!(f.unfinished(), 0);
    }

    #[test]
    fn a_write_sharing_a_block_with_an_unfinished_one_is_held() {
        let mut f = InFlight::new(Lsn(100), 4);
        let a = f.issue(Lsn(100)..Lsn(5000), SegmentNo(0), 0..2 * ALIGN);
        // The next batch starts in block 1, which `a` rewrites.
        assert!(!f.may_submit(SegmentNo(0), &(ALIGN..2 * ALIGN)));
        assert!(f.may_submit(SegmentNo(0), &(2 * ALIGN..3 * ALIGN)));
        assert!(f.may_submit(SegmentNo(1), &(0..ALIGN)));
        assert_eq!(f.complete(a).1, Some(Lsn(5000)));
        assert!(f.may_submit(SegmentNo(0), &(ALIGN..2 * ALIGN)));
        // And the depth bound.
        let mut g = InFlight::new(Lsn(0), 1);
        g.issue(Lsn(0)..Lsn(10), SegmentNo(0), 0..ALIGN);
        assert!(!g.may_submit(SegmentNo(3), &(0..ALIGN)));
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn issuing_an_overlapping_write_is_a_bug() {
        let mut f = InFlight::new(Lsn(0), 4);
        f.issue(Lsn(0)..Lsn(10), SegmentNo(0), 0..ALIGN);
        f.issue(Lsn(10)..Lsn(20), SegmentNo(0), 0..ALIGN);
    }

    /// The flusher's pieces against a disk that lands in-flight writes in
    /// any order: whatever order `InFlight` allows, every byte below the
    /// flushed LSN is on the disk, and at the end the disk holds the WAL.
    fn simulate(start: u64, batches: &[usize], picks: &[usize], depth: usize) {
        let total: usize = batches.iter().sum();
        let end = start + total as u64;
        let segs = end.div_ceil(SEG) as usize + 1;
        let wal: Vec<u8> = (0..end).map(|i| (i % 251) as u8 + 1).collect();
        let mut disk = vec![0u8; segs * SEG as usize];
        disk[..start as usize].copy_from_slice(&wal[..start as usize]);
        let mut tail = disk[align_down(start) as usize..start as usize].to_vec();
        let mut f = InFlight::new(Lsn(start), depth);
        let mut queued: VecDeque<Piece> = VecDeque::new();
        let mut flying: Vec<(u64, Piece)> = Vec::new();
        let mut spare = Vec::new();
        let mut at = start;
        let mut batches = batches.iter();
        let mut picks = picks.iter().cycle();
        loop {
            if queued.is_empty() {
                if let Some(&n) = batches.next() {
                    let n = n.min((end - at) as usize);
                    if n > 0 {
                        let bytes = &wal[at as usize..at as usize + n];
                        queued.extend(lay_out(Lsn(at), bytes, SEG, &mut tail, &mut spare));
                        at += n as u64;
                    }
                }
            }
            while let Some(p) = queued.front() {
                if !f.may_submit(p.segno, &p.blocks) {
                    break;
                }
                let p = queued.pop_front().unwrap();
                let token = f.issue(p.lsns.clone(), p.segno, p.blocks.clone());
                flying.push((token, p));
            }
            if flying.is_empty() {
                if queued.is_empty() && at == end {
                    break;
                }
                continue;
            }
            // The disk lands any in-flight write.
            let (token, p) = flying.remove(picks.next().unwrap() % flying.len());
            let off = (p.segno.0 * SEG + p.blocks.start) as usize;
            disk[off..off + p.buf.len()].copy_from_slice(p.buf.as_slice());
            let (_, flushed) = f.complete(token);
            if let Some(flushed) = flushed {
                let upto = flushed.0 as usize;
                assert_eq!(
                    &disk[..upto],
                    &wal[..upto],
                    "bytes below flushed {upto} not on disk"
                );
            }
        }
        assert_eq!(f.unfinished(), 0);
        assert_eq!(&disk[..end as usize], &wal[..]);
        assert!(disk[end as usize..].iter().all(|&b| b == 0));
    }

    proptest! {
        #[test]
        fn any_landing_order_keeps_flushed_bytes_on_disk(
            start in 0u64..3 * SEG,
            batches in proptest::collection::vec(1usize..20_000, 1..40),
            picks in proptest::collection::vec(0usize..8, 1..16),
            depth in 1usize..6,
        ) {
            simulate(start, &batches, &picks, depth);
        }
    }

    #[test]
    fn small_batches_inside_one_block_and_across_segments() {
        simulate(4000, &[50, 50, 50, 100, 7000, 3], &[1, 0, 2], 4);
        simulate(SEG - 10, &[5, 5, 5, 5, 5], &[0, 1], 4);
        simulate(0, &[SEG as usize * 2 + 7, 1], &[2, 1, 0], 2);
    }
}
