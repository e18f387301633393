//! The redo pipeline: WAL records in, complete groups applied in batches by
//! parallel workers, the applied LSN published after each batch.
//!
//! ```text
//! records ─► Assembler ─► complete groups ─► Dispatcher ─► Batch ─► Workers (one shard each)
//!  (WAL files, or          (redo::assembler)   (page n → worker n % N)     │ barrier
//!   the receiver's feed)                                                   ▼
//!                                           gate held: applied = batch end, meta refreshed
//! ```
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
//!   batch's end only after every worker reported that batch done;
//! - `page_lsn <= flushed` before a page is written back (in the pool).
//!
//! Readers: while a batch is applied the dispatcher holds the engine's
//! redo gate exclusively, and every transaction (so every read on a hot
//! standby) holds it shared. A reader therefore sees the data as of a
//! batch end, which is a transaction end, even though the transactions of
//! a batch are applied by several workers at once. The bound a reader puts
//! on redo is one command (GET, MGET, one SCAN page, a read-only MULTI):
//! the dispatcher waits for the commands running when it wants the gate;
//! the bound redo puts on a reader is one batch, at most
//! `limits::REDO_BATCH_BYTES_MAX` of WAL.
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

use parking_lot::{Mutex, RwLockWriteGuard};

use super::assembler::Assembler;
use super::dispatcher::{Batch, Dispatcher};
use super::feed::{Feed, FeedMsg};
use super::workers::{RedoError, WorkerStats, Workers};
use crate::ids::{Lsn, TimelineId};
use crate::wal::reader::{EndOfWal, OwnedRecordBytes, WalReader};

/// What a driver of [`Redo`] does around each batch.
pub trait RedoHooks {
    /// Held while the workers apply a batch (the engine's redo gate,
    /// exclusively); `None` where no reader can exist (crash recovery).
    fn begin_batch(&self) -> Option<RwLockWriteGuard<'_, ()>>;
    /// Called after every worker finished the batch, before the gate is
    /// released: publish the applied position, refresh the meta page.
    fn end_batch(&self, end: Lsn, last: Lsn, meta_changed: bool) -> Result<(), RedoError>;
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
    /// Time batches took, gate to gate (the pipeline's busy time).
    pub busy_ns: AtomicU64,
    /// Recent redo rate while busy, bytes per second (an average over the
    /// last batches, weighted by their time): what redo can do, not what
    /// it was given.
    pub rate_bytes_per_s: AtomicU64,
}

impl RedoStats {
    fn record(&self, batch: &Batch, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.groups.fetch_add(batch.groups, Ordering::Relaxed);
        self.records.fetch_add(batch.records, Ordering::Relaxed);
        self.bytes.fetch_add(batch.bytes, Ordering::Relaxed);
        let ns = took.as_nanos().max(1) as u64;
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        // Exponential average in the time domain: a batch counts by the
        // share of the last ~100 ms it took.
        let rate = batch.bytes as f64 * 1e9 / ns as f64;
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
    dispatcher: Dispatcher,
    /// `(next, prev)`: where the next record starts and the LSN of the
    /// last one taken.
    next: (Lsn, Lsn),
    /// End of the last complete group taken (start of the open one).
    group_start: Lsn,
    /// `(end, last)` of the last complete group taken: where the WAL may
    /// be cut, and where redo continues after a rewind.
    complete: (Lsn, Lsn),
    stats: Arc<RedoStats>,
}

impl Redo {
    /// Redo that continues the WAL at `next` (`(lsn, prev)`).
    pub fn new(workers: Workers, next: (Lsn, Lsn)) -> Redo {
        let n = workers.count();
        Redo {
            workers,
            assembler: Assembler::default(),
            dispatcher: Dispatcher::new(n),
            next,
            group_start: next.0,
            complete: next,
            stats: Arc::new(RedoStats::default()),
        }
    }

    /// `(end, last)` of the last complete group taken.
    pub fn complete(&self) -> (Lsn, Lsn) {
        self.complete
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
        self.next
    }

    /// Whether records of an unfinished group are held.
    pub fn open_group(&self) -> bool {
        self.assembler.open_group_start().is_some()
    }

    /// Continues at `position` (the applied position): forgets an
    /// unfinished group. Nothing may be waiting in a batch.
    pub fn rewind(&mut self, position: (Lsn, Lsn)) {
        assert!(
            self.dispatcher.take().is_none(),
            "rewind with a batch not applied"
        );
        self.assembler.clear();
        self.next = position;
        self.group_start = position.0;
        self.complete = position;
    }

    /// Takes records in WAL order, the first at `next()`; applies full
    /// batches as they fill. Call [`Redo::flush`] to apply the rest.
    pub fn take(
        &mut self,
        records: impl IntoIterator<Item = (Lsn, OwnedRecordBytes)>,
        hooks: &dyn RedoHooks,
    ) -> Result<(), RedoError> {
        for (lsn, rec) in records {
            assert!(
                lsn == self.next.0 && rec.prev() == self.next.1,
                "redo takes the WAL in order: record at {lsn} (prev {}) after {:?}",
                rec.prev(),
                self.next
            );
            self.next = (lsn.add(rec.bytes().len() as u64), lsn);
            if let Some(group) = self.assembler.push(lsn, rec) {
                let bytes = group.end.bytes_since(self.group_start);
                self.group_start = group.end;
                self.complete = (group.end, group.last);
                self.dispatcher.add(group, bytes);
                if self.dispatcher.is_full() {
                    self.apply_batch(hooks)?;
                }
            }
        }
        Ok(())
    }

    /// Applies the complete groups taken so far.
    pub fn flush(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        self.apply_batch(hooks)
    }

    fn apply_batch(&mut self, hooks: &dyn RedoHooks) -> Result<(), RedoError> {
        let Some(batch) = self.dispatcher.take() else {
            return Ok(());
        };
        assert!(
            self.assembler
                .open_group_start()
                .is_none_or(|start| start >= batch.end),
            "a batch must end at a group boundary"
        );
        let started = Instant::now();
        let gate = hooks.begin_batch();
        let (end, last, meta_changed) = (batch.end, batch.last, batch.meta_changed);
        let mut batch = batch;
        let work = std::mem::take(&mut batch.shares);
        let slowest = self.workers.apply(work, end)?;
        assert!(
            slowest >= end,
            "applied would pass the slowest redo worker ({slowest} < {end})"
        );
        hooks.end_batch(end, last, meta_changed)?;
        drop(gate);
        self.stats.record(&batch, started.elapsed());
        Ok(())
    }

    /// Reads the local WAL from `next()` and takes every record that ends
    /// at or before `until`, applying complete groups.
    pub fn read_wal(
        &mut self,
        source: &WalSource,
        until: Lsn,
        hooks: &dyn RedoHooks,
    ) -> Result<ReadEnd, RedoError> {
        let (from, from_prev) = self.next;
        if from >= until {
            return Ok(ReadEnd {
                position: self.next,
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
        let mut chunk = Vec::with_capacity(READ_CHUNK_RECORDS);
        let mut ended = None;
        loop {
            let at = reader.position().0;
            let Some((lsn, rec)) = reader.next().map_err(|e| wal_err(at, e))? else {
                ended = reader.end_reason().cloned();
                break;
            };
            let end = lsn.add(rec.bytes().len() as u64);
            if end > until {
                break;
            }
            chunk.push((lsn, rec));
            if chunk.len() == READ_CHUNK_RECORDS {
                self.take(std::mem::take(&mut chunk), hooks)?;
            }
            if end == until {
                break;
            }
        }
        self.take(chunk, hooks)?;
        Ok(ReadEnd {
            position: self.next,
            ended,
        })
    }
}

/// Records handed to [`Redo::take`] at a time when reading the WAL.
const READ_CHUNK_RECORDS: usize = 4096;

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
/// feed skipped records. `host` gives the node while it lives; the thread
/// ends when it is gone.
pub fn run_dispatcher(feed: &Feed, host: impl Fn() -> Option<Arc<dyn RedoHost>>) {
    loop {
        let Some(msg) = feed.next(Duration::from_secs(1)) else {
            if host().is_none() {
                return;
            }
            continue;
        };
        let Some(host) = host() else {
            return;
        };
        let mut drains = Vec::new();
        let mut msg = Some(msg);
        // Take everything queued, then apply it as one or more batches.
        let result = (|| -> Result<(), RedoError> {
            let mut redo = host.redo().lock();
            while let Some(m) = msg.take() {
                match m {
                    FeedMsg::Drain(ack) => drains.push(ack),
                    _ if host.redo_has_failed() => {}
                    FeedMsg::Records { records, .. } => take_fed(&mut redo, records, &*host)?,
                    FeedMsg::Safe => {}
                }
                msg = feed.try_next();
            }
            if !host.redo_has_failed() {
                redo.read_wal(&host.wal_source(), feed.safe(), &*host)?;
                redo.flush(&*host)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            host.redo_failed(e);
        }
        for ack in drains {
            let _ = ack.send(());
        }
    }
}

/// Takes fed records: those before `next()` were read from the files
/// already; a gap before the first is read from the files first.
fn take_fed(
    redo: &mut Redo,
    records: Vec<(Lsn, OwnedRecordBytes)>,
    host: &dyn RedoHost,
) -> Result<(), RedoError> {
    let next = redo.next().0;
    let mut records = records
        .into_iter()
        .skip_while(|(lsn, _)| *lsn < next)
        .peekable();
    let Some(first) = records.peek().map(|(lsn, _)| *lsn) else {
        return Ok(());
    };
    if first > next {
        let end = redo.read_wal(&host.wal_source(), first, host)?;
        if end.position.0 != first {
            return Err(RedoError::Wal {
                lsn: end.position.0,
                reason: format!("the local WAL ends before {first}, which the receiver wrote"),
            });
        }
    }
    redo.take(records, host)
}
