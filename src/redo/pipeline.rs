//! The redo pipeline: WAL records in, complete groups applied in batches by
//! parallel workers, the applied LSN published as batches complete.
//!
//! ```text
//! WAL bytes ─► Assembler ─► complete groups ─► Batch ─► Workers (queues, no barrier)
//!  (WAL files, or   (record headers,   (redo::dispatcher:            │ a batch is complete
//!   the receiver's   group ends)        slices → owners)             ▼ when all finished it
//!   feed)                               applied = end of the newest complete batch
//! ```
//!
//! The input is chunks of whole, validated records (the WAL reader checks
//! CRC and chain, so does the receiver), copied once into the pending
//! buffer; a batch is an `Arc` of that buffer and a range, which every
//! worker walks (headers only for records not its own). Nothing is
//! allocated or decoded per record on the dispatching thread, so the
//! serial part of redo is small.
//!
//! [`Redo`] is the one implementation behind crash recovery (the thread
//! that opens the engine drives it), a standby's streaming redo (the
//! `redo-dispatcher` thread, fed by the WAL receiver through
//! [`super::feed::Feed`], [`run_dispatcher`]), the replay of the rest of
//! the WAL before a promotion, and a build's first start (crash recovery).
//!
//! Invariants (release `assert!`s):
//! - records are taken in WAL order with no gap: each starts where the
//!   last ended and links back to it;
//! - only complete groups are applied: a batch ends at a group's end and
//!   the unfinished group (if any) starts at or after it;
//! - the applied LSN never passes the slowest worker: it moves to a
//!   batch's end only once every worker finished that batch (and all
//!   before it);
//! - `page_lsn <= flushed` before a page is written back (in the pool).
//!
//! Balance: slice owners (`redo::dispatcher`) are kept from batch to
//! batch, so workers run through their queues without waiting for each
//! other. After `REBALANCE_BATCHES` batches the records per worker are
//! checked; when the busiest has more than 1.25 times the average, the
//! pipeline waits until nothing is in flight and gives the slices new
//! owners from the records of those batches. Measured on a recorded
//! TPC-B WAL (see README, "Parallel redo"): a barrier after every batch
//! (each batch balanced on its own) left both workers idle a third of the
//! time on 2 cores.
//!
//! Readers: while batches are in flight the dispatcher holds the engine's
//! redo gate closed (`redo::gate`), and every transaction (so every read
//! on a hot standby) holds it as a reader. A reader therefore sees the
//! data as of a batch end, which is a transaction end, even though the
//! transactions of a batch are applied by several workers at once. The
//! bound a reader puts on redo is one command (GET, MGET, one SCAN page, a
//! read-only MULTI): closing the gate waits for the commands inside. The
//! bound redo puts on a reader: the gate opens whenever the input runs out
//! and at least every `GATE_CLOSED_MAX` (plus the batches then in flight)
//! while a backlog is redone.
//!
//! Errors: a record that does not apply, a page that fails its checksum or
//! cannot be read, or WAL that cannot be read stop redo for good with a
//! [`RedoError`]. The dispatcher reports it to its host (the engine), which
//! refuses every transaction from then on and makes the node report
//! `needs_build` with the reason; there is no retry loop (a retry would
//! fail the same way, or apply WAL over a page it already got wrong).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::assembler::{head_at, Assembler, SLICES};
use super::dispatcher::{assign, Batch, Owners};
use super::feed::{Feed, FeedMsg};
use super::workers::{Done, RedoError, WorkerStats, Workers};
use crate::config::limits::{REDO_BATCH_BYTES_MAX, REDO_BATCH_RECORDS_MAX};
use crate::ids::{Lsn, TimelineId};
use crate::wal::reader::{EndOfWal, WalReader};

/// What a driver of [`Redo`] does around its batches.
pub trait RedoHooks {
    /// Whether readers can exist (not during crash recovery): then the
    /// gate closes while batches are in flight and opens regularly.
    fn has_readers(&self) -> bool;
    /// Keeps readers out (the engine's redo gate) until [`open_gate`].
    ///
    /// [`open_gate`]: RedoHooks::open_gate
    fn close_gate(&self);
    /// Lets readers in again; every batch submitted is complete and the
    /// meta page was refreshed.
    fn open_gate(&self);
    /// A batch is complete: publish the applied position.
    fn applied(&self, end: Lsn, last: Lsn);
    /// A completed batch rewrote the meta page: read it again (no batch
    /// is in flight).
    fn refresh_meta(&self) -> Result<(), RedoError>;
}

/// Where the local WAL is, for reading it back.
#[derive(Clone, Debug)]
pub struct WalSource {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub timeline: TimelineId,
}

/// Totals since the start, for INFO, metrics and the redo benchmark.
#[derive(Default)]
pub struct RedoStats {
    pub batches: AtomicU64,
    pub groups: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    /// Time with work in flight (the pipeline's busy time).
    pub busy_ns: AtomicU64,
    /// Recent redo rate while busy, bytes per second (an average over the
    /// last batches, weighted by their time): what redo can do, not what
    /// it was given.
    pub rate_bytes_per_s: AtomicU64,
}

impl RedoStats {
    /// A batch completed `took` after the previous one (or after redo
    /// became busy).
    fn record(&self, batch: &Batch, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.groups.fetch_add(batch.groups, Ordering::Relaxed);
        self.records.fetch_add(batch.records, Ordering::Relaxed);
        self.bytes.fetch_add(batch.wal_bytes(), Ordering::Relaxed);
        let ns = took.as_nanos().max(1) as u64;
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        // Exponential average in the time domain: a batch counts by the
        // share of the last ~100 ms it took.
        let rate = batch.wal_bytes() as f64 * 1e9 / ns as f64;
        let w = (ns as f64 / 100e6).min(1.0);
        let old = self.rate_bytes_per_s.load(Ordering::Relaxed) as f64;
        let new = if old == 0.0 {
            rate
        } else {
            old + w * (rate - old)
        };
        self.rate_bytes_per_s.store(new as u64, Ordering::Relaxed);
    }
}

/// How far a read of the local WAL got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEnd {
    /// `(next, prev)` after the last record read.
    pub position: (Lsn, Lsn),
    /// Why the WAL ended before the limit (no valid record there).
    pub ended: Option<EndOfWal>,
}

pub struct Redo {
    workers: Workers,
    assembler: Assembler,
    /// Records taken and not yet applied: the open group, and complete
    /// groups waiting to fill a batch. `pending[0]` is at `pending_start`.
    pending: Vec<u8>,
    pending_start: Lsn,
    /// LSN of the last record taken (the prev link of the next one).
    last_taken: Lsn,
    /// `(end, last)` of the last complete group taken: where the WAL may
    /// be cut, and where redo continues after a rewind.
    complete: (Lsn, Lsn),
    /// Buffers of applied batches and of WAL reads, kept for reuse: fresh
    /// memory costs a page fault and a zeroed page per 4 KiB (15 % of
    /// serial redo in a profile before they were reused).
    spare: Vec<Vec<u8>>,
    /// Slice owners of the batches submitted now (see "Balance").
    owners: Option<Owners>,
    /// Records per slice in the batches since the owners were set.
    recent_slices: [u64; SLICES],
    recent_batches: u32,
    /// The gate is closed (since then).
    gate_closed: Option<Instant>,
    /// A completed batch changed the meta page since the last refresh.
    meta_stale: bool,
    /// When the last batch completed, or redo became busy.
    busy_mark: Option<Instant>,
    stats: Arc<RedoStats>,
}

impl Redo {
    /// Redo that continues the WAL at `next` (`(lsn, prev)`).
    pub fn new(workers: Workers, next: (Lsn, Lsn)) -> Redo {
        Redo {
            workers,
            assembler: Assembler::default(),
            pending: Vec::new(),
            pending_start: next.0,
            last_taken: next.1,
            complete: next,
            spare: Vec::new(),
            owners: None,
            recent_slices: [0; SLICES],
            recent_batches: 0,
            gate_closed: None,
            meta_stale: false,
            busy_mark: None,
            stats: Arc::new(RedoStats::default()),
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    fn give_back(&mut self, b: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS_MAX {
            self.spare.push(b);
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.count()
    }

    pub fn stats(&self) -> &Arc<RedoStats> {
        &self.stats
    }

    pub fn worker_stats(&self) -> &Arc<Vec<WorkerStats>> {
        self.workers.stats()
    }

    /// Where the next record starts, and the LSN of the last one taken.
    pub fn next(&self) -> (Lsn, Lsn) {
        (
            self.pending_start.add(self.pending.len() as u64),
            self.last_taken,
        )
    }

    /// `(end, last)` of the last complete group taken.
    pub fn complete(&self) -> (Lsn, Lsn) {
        self.complete
    }

    /// Whether records of an unfinished group are held.
    pub fn open_group(&self) -> bool {
        self.assembler.open_group_start().is_some()
    }

    /// Continues at `position` (the applied position): forgets the open
    /// group. Every complete group taken must have been applied.
    pub fn rewind(&mut self, position: (Lsn, Lsn)) {
        assert_eq!(
            self.assembler.groups().groups,
            0,
            "rewind with complete groups not applied"
        );
        assert_eq!(self.workers.in_flight(), 0, "rewind with batches in flight");
        self.assembler.clear();
        self.pending.clear();
        self.pending_start = position.0;
        self.last_taken = position.1;
        self.complete = position;
    }

    /// Takes whole, validated records `bytes` (the first at `start`,
    /// linking back to `prev`), which continue what was taken; applies
    /// full batches as they fill. Call [`Redo::flush`] to apply the rest.
    pub fn take(
        &mut self,
        start: Lsn,
        prev: Lsn,
        bytes: &[u8],
        hooks: &dyn RedoHooks,
    ) -> Result<(), RedoError> {
        assert!(
            (start, prev) == self.next(),
            "redo takes the WAL in order: records at {start} (prev {prev}) after {:?}",
            self.next()
        );
        let mut off = self.pending.len();
        self.pending.extend_from_slice(bytes);
        while off < self.pending.len() {
            let head = head_at(&self.pending, off);
            let lsn = self.pending_start.add(off as u64);
            self.last_taken = lsn;
            if self.assembler.push(off, lsn, head) {
                let g = self.assembler.groups();
                self.complete = (g.end, g.last);
                if g.end_off as u64 >= REDO_BATCH_BYTES_MAX || g.records >= REDO_BATCH_RECORDS_MAX {
                    // Cut right after this record: the pending buffer then
                    // starts with the records not scanned yet.
                    self.apply_batch(hooks)?;
                    debug_assert_eq!(self.pending_start, lsn.add(head.len as u64));
                    off = 0;
                    continue;
                }
            }
            off += head.len;
        }
        Ok(())
    }

    /// Applies the complete groups taken so far and waits until every
    /// batch is complete; the gate is open again after it.
    pub fn flush(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        self.apply_batch(hooks)?;
        self.settle(hooks)
    }

    /// Cuts a batch of the complete groups taken so far and submits it.
    fn apply_batch(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        if self.assembler.groups().groups == 0 {
            return Ok(());
        }
        let groups = self.assembler.take_groups();
        let cut = groups.end_off;
        // The open group's records start the next pending buffer.
        let mut rest = self.buffer();
        rest.extend_from_slice(&self.pending[cut..]);
        let mut bytes = std::mem::replace(&mut self.pending, rest);
        bytes.truncate(cut);
        let start = self.pending_start;
        self.pending_start = start.add(cut as u64);
        let owners = self.owners_for(&groups.slices, hooks)?;
        let batch = Arc::new(Batch::new(Arc::new(bytes), start, groups, owners));
        assert!(
            self.assembler
                .open_group_start()
                .is_none_or(|open| start.add((cut + open) as u64) >= batch.end),
            "a batch must end at a group boundary"
        );
        if hooks.has_readers() && self.gate_closed.is_none() {
            hooks.close_gate();
            self.gate_closed = Some(Instant::now());
        }
        if self.workers.in_flight() == 0 {
            self.busy_mark = Some(Instant::now());
        }
        self.workers.submit(batch)?;
        let done = self.workers.completed(false)?;
        self.publish(done, hooks);
        if self
            .gate_closed
            .is_some_and(|since| since.elapsed() >= GATE_CLOSED_MAX)
        {
            // Let the readers waiting at the gate in.
            self.settle(hooks)?;
        }
        Ok(())
    }

    /// The slice owners for a batch with `slices` records per slice:
    /// the current ones, unless they are out of balance (see "Balance").
    fn owners_for(
        &mut self,
        slices: &[u64; SLICES],
        hooks: &dyn RedoHooks,
    ) -> Result<Owners, RedoError> {
        let workers = self.workers.count();
        for (total, n) in self.recent_slices.iter_mut().zip(slices) {
            *total += n;
        }
        self.recent_batches += 1;
        let balanced = |owners: &Owners, slices: &[u64; SLICES]| {
            let mut load = vec![0u64; workers];
            for s in 0..SLICES {
                load[owners[s] as usize] += slices[s];
            }
            let total: u64 = load.iter().sum();
            let busiest = load.iter().copied().max().unwrap_or(0);
            busiest * workers as u64 * 4 <= total * 5
        };
        match self.owners {
            Some(owners)
                if workers == 1
                    || self.recent_batches < REBALANCE_BATCHES
                    || balanced(&owners, &self.recent_slices) =>
            {
                if self.recent_batches >= REBALANCE_BATCHES {
                    self.recent_slices = [0; SLICES];
                    self.recent_batches = 0;
                }
                Ok(owners)
            }
            _ => {
                let new = assign(&self.recent_slices, workers);
                if self.owners.is_some_and(|old| old != new) {
                    // No page may be applied by its new owner before its
                    // old owner is done with it.
                    let done = self.workers.drain()?;
                    self.publish(done, hooks);
                }
                self.owners = Some(new);
                self.recent_slices = [0; SLICES];
                self.recent_batches = 0;
                Ok(new)
            }
        }
    }

    /// Publishes completed batches (in order) and reuses their buffers.
    fn publish(&mut self, done: Vec<Arc<Batch>>, hooks: &dyn RedoHooks) {
        for batch in done {
            hooks.applied(batch.end, batch.last);
            self.meta_stale |= batch.meta_changed;
            let now = Instant::now();
            let took = self
                .busy_mark
                .map_or(Duration::ZERO, |mark| now.duration_since(mark));
            self.busy_mark = (self.workers.in_flight() > 0).then_some(now);
            self.stats.record(&batch, took);
            // Every worker dropped its handle before it reported done.
            if let Ok(done) = Arc::try_unwrap(batch) {
                if let Ok(bytes) = Arc::try_unwrap(done.bytes) {
                    self.give_back(bytes);
                }
            }
        }
    }

    /// Batches in flight.
    pub fn in_flight(&self) -> usize {
        self.workers.in_flight()
    }

    /// The workers' answers (see [`Workers::done_channel`]).
    pub fn done_channel(&self) -> crossbeam_channel::Receiver<Done> {
        self.workers.done_channel()
    }

    /// A worker's answer arrived: publish what is complete.
    pub fn note_done(&mut self, msg: Done, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        self.workers.note_done(msg);
        let done = self.workers.completed(false)?;
        self.publish(done, hooks);
        Ok(())
    }

    /// Submits a batch of the complete groups taken (no wait).
    pub fn submit(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        self.apply_batch(hooks)
    }

    /// After an error: lets readers in again (the host refuses every
    /// transaction once redo failed, so nothing half applied is served).
    pub fn release_gate(&mut self, hooks: &dyn RedoHooks) {
        if self.gate_closed.take().is_some() {
            hooks.open_gate();
        }
    }

    /// Waits until every batch submitted is complete, refreshes the meta
    /// page if a batch changed it, and opens the gate.
    pub fn settle(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        let done = self.workers.drain()?;
        self.publish(done, hooks);
        if self.meta_stale {
            hooks.refresh_meta()?;
            self.meta_stale = false;
        }
        if self.gate_closed.take().is_some() {
            hooks.open_gate();
        }
        Ok(())
    }

    /// Reads the local WAL from `next()` and takes every record that ends
    /// at or before `until`, applying full batches (call [`Redo::flush`]
    /// for the rest).
    pub fn read_wal(
        &mut self,
        source: &WalSource,
        until: Lsn,
        hooks: &dyn RedoHooks,
    ) -> Result<ReadEnd, RedoError> {
        let (from, from_prev) = self.next();
        if from >= until {
            return Ok(ReadEnd {
                position: self.next(),
                ended: None,
            });
        }
        let wal_err = |lsn: Lsn, e: crate::wal::WalError| RedoError::Wal {
            lsn,
            reason: e.to_string(),
        };
        let mut reader = WalReader::open(
            &source.dir,
            source.segment_bytes,
            source.timeline,
            from,
            from_prev,
        )
        .map_err(|e| wal_err(from, e))?;
        // With workers, a long read (crash recovery, catching up from the
        // files) reads ahead on a thread of its own while they apply:
        // reading and checking CRCs and chains would otherwise be a serial
        // part of parallel redo. One worker is serial redo: one thread
        // reads and applies (`recovery_redo_workers = 1`).
        if self.workers.count() == 1 || until.bytes_since(from) < READ_AHEAD_FROM_BYTES {
            let mut chunk = self.buffer();
            let result = loop {
                let at = reader.position().0;
                match reader.next_chunk(&mut chunk, READ_CHUNK_BYTES, until) {
                    Err(e) => break Err(wal_err(at, e)),
                    Ok(None) => break Ok(()),
                    Ok(Some((start, prev))) => {
                        if let Err(e) = self.take(start, prev, &chunk, hooks) {
                            break Err(e);
                        }
                    }
                }
            };
            self.give_back(chunk);
            result?;
            return Ok(ReadEnd {
                position: self.next(),
                ended: reader.end_reason().cloned(),
            });
        }
        let (chunks_tx, chunks) = crossbeam_channel::bounded(READ_AHEAD_CHUNKS);
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(READ_AHEAD_CHUNKS + 2);
        let ended = std::thread::scope(|scope| {
            scope.spawn(move || loop {
                let mut chunk = spare_rx.try_recv().unwrap_or_default();
                let at = reader.position().0;
                let msg = match reader.next_chunk(&mut chunk, READ_CHUNK_BYTES, until) {
                    Err(e) => ReadAhead::Failed(wal_err(at, e)),
                    Ok(None) => ReadAhead::End(reader.end_reason().cloned()),
                    Ok(Some((start, prev))) => ReadAhead::Chunk(start, prev, chunk),
                };
                let last = !matches!(msg, ReadAhead::Chunk(..));
                if chunks_tx.send(msg).is_err() || last {
                    return;
                }
            });
            // Dropping `chunks` on an error ends the reader at its next send.
            for msg in chunks {
                match msg {
                    ReadAhead::Chunk(start, prev, chunk) => {
                        self.take(start, prev, &chunk, hooks)?;
                        let _ = spare_tx.try_send(chunk);
                    }
                    ReadAhead::End(ended) => return Ok(ended),
                    ReadAhead::Failed(e) => return Err(e),
                }
            }
            Ok(None)
        })?;
        Ok(ReadEnd {
            position: self.next(),
            ended,
        })
    }
}

/// What the read-ahead thread of [`Redo::read_wal`] hands over.
enum ReadAhead {
    Chunk(Lsn, Lsn, Vec<u8>),
    End(Option<EndOfWal>),
    Failed(RedoError),
}

/// Reads shorter than this run on the calling thread.
const READ_AHEAD_FROM_BYTES: u64 = 8 << 20;
/// Chunks the read-ahead thread may be ahead of redo.
const READ_AHEAD_CHUNKS: usize = 4;

/// WAL read per chunk when redo reads the local WAL.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Batches between two checks of the workers' balance.
const REBALANCE_BATCHES: u32 = 8;
/// The longest the gate stays closed while a backlog is redone (readers
/// then wait at most this, plus the batches in flight).
const GATE_CLOSED_MAX: Duration = Duration::from_millis(20);
/// Buffers kept for reuse (a batch's, the open group's, a read chunk's).
const SPARE_BUFFERS_MAX: usize = 4;

/// What the streaming dispatcher needs from the node it runs in.
pub trait RedoHost: RedoHooks + Send + Sync {
    fn redo(&self) -> &Mutex<Redo>;
    fn feed(&self) -> &Feed;
    fn wal_source(&self) -> WalSource;
    /// Redo stopped for good (see the module doc).
    fn redo_failed(&self, error: RedoError);
    fn redo_has_failed(&self) -> bool;
}

/// Body of the `redo-dispatcher` thread of a node: applies what the WAL
/// receiver feeds, up to its `safe` mark, reading the local WAL where the
/// feed skipped records. It waits on its input and on the workers'
/// answers together, so batches stay in flight while more input arrives
/// (a live standby's WAL comes a frame at a time) and the applied LSN
/// moves as soon as a batch completes; it lets readers in (settles) as
/// soon as nothing is in flight and nothing is queued. `host` gives the
/// node while it lives; the thread ends when it is gone.
pub fn run_dispatcher(feed: &Feed, host: impl Fn() -> Option<Arc<dyn RedoHost>>) {
    let Some(done) = host().map(|h| h.redo().lock().done_channel()) else {
        return;
    };
    loop {
        let event = crossbeam_channel::select! {
            recv(feed.receiver()) -> m => m.map_or(Event::FeedGone, Event::Input),
            recv(done) -> d => d.map_or(Event::WorkersGone, Event::Done),
            default(Duration::from_secs(1)) => Event::Tick,
        };
        let Some(host) = host() else {
            return;
        };
        match event {
            Event::FeedGone => return,
            Event::WorkersGone => {
                // Every worker thread ended (a panic): redo cannot go on.
                host.redo_failed(RedoError::WorkerGone);
                host.redo().lock().release_gate(&*host);
                return;
            }
            _ => {}
        }
        let mut pause = None;
        let result = (|| -> Result<(), RedoError> {
            let mut redo = host.redo().lock();
            let mut input = match event {
                Event::Input(m) => {
                    feed.received(&m);
                    Some(m)
                }
                Event::Done(d) => {
                    redo.note_done(d, &*host)?;
                    None
                }
                Event::Tick | Event::FeedGone | Event::WorkersGone => None,
            };
            // Everything queued, then whatever the files hold up to `safe`.
            while let Some(m) = input.take() {
                match m {
                    FeedMsg::Pause { parked, resume } => {
                        // Park after what came before it, before the rest.
                        pause = Some((parked, resume));
                        break;
                    }
                    _ if host.redo_has_failed() => {}
                    FeedMsg::Chunk { start, prev, bytes } => {
                        take_fed(&mut redo, start, prev, &bytes, &*host)?
                    }
                    FeedMsg::Safe => {}
                }
                input = feed.try_next();
            }
            if host.redo_has_failed() {
                return Ok(());
            }
            redo.read_wal(&host.wal_source(), feed.safe(), &*host)?;
            redo.submit(&*host)?;
            if pause.is_some() || (redo.in_flight() == 0 && feed.receiver().is_empty()) {
                redo.settle(&*host)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            host.redo_failed(e);
            host.redo().lock().release_gate(&*host);
        }
        if let Some((parked, resume)) = pause {
            // Parked without the redo lock: the pauser drives redo now.
            let _ = parked.send(());
            let _ = resume.recv();
        }
    }
}

enum Event {
    Input(FeedMsg),
    Done(Done),
    Tick,
    /// The engine (the feed's sender) is gone.
    FeedGone,
    /// Every worker thread is gone.
    WorkersGone,
}

/// Takes fed records: those before `next()` were read from the files
/// already; a gap before them is read from the files first.
fn take_fed(
    redo: &mut Redo,
    start: Lsn,
    prev: Lsn,
    bytes: &[u8],
    host: &dyn RedoHost,
) -> Result<(), RedoError> {
    let end = start.add(bytes.len() as u64);
    let (next, next_prev) = redo.next();
    if end <= next {
        return Ok(());
    }
    if start > next {
        let read = redo.read_wal(&host.wal_source(), start, host)?;
        if read.position.0 != start {
            return Err(RedoError::Wal {
                lsn: read.position.0,
                reason: format!("the local WAL ends before {start}, which the receiver wrote"),
            });
        }
        return redo.take(start, prev, bytes, host);
    }
    // The chunk overlaps what was read from the files: take its rest (a
    // record boundary: both were cut at records of the same WAL).
    let skip = next.bytes_since(start) as usize;
    redo.take(next, next_prev, &bytes[skip..], host)
}
