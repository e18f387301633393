//! Redo workers: threads that each apply their share of every batch, in
//! batch order, pinned to the cores of the core map's `redo_workers` slot.
//!
//! With one worker there is no thread: the dispatcher applies each batch
//! itself when it submits it (serial redo, no hand-off). With N >= 2 there
//! are N threads, each with a queue of batches; the dispatcher only reads,
//! cuts and submits. A worker does not wait for the others between
//! batches: a page is applied by the one worker its slice belongs to, and
//! slice owners change only when no batch is in flight (`redo::pipeline`,
//! "Balance"), so every page still sees its records in WAL order. A batch
//! is complete when every worker finished it; the dispatcher takes
//! completed batches in order ([`Workers::completed`]) and only then moves
//! the applied LSN.
//!
//! A worker locks the buffer-pool shards of its slices for its share of a
//! batch; the dispatcher keeps readers and checkpoints out (the redo gate)
//! while batches are in flight, so nobody else wants those shards then
//! (`engine::pool`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::apply::{apply, needs_redo, ApplyError};
use super::assembler::{slice_of, SLICES};
use super::dispatcher::Batch;
use crate::engine::buffer_pool::BufferPool;
use crate::engine::pool::Pool;
use crate::ids::{Lsn, PageNo};
use crate::wal::record::Record;

/// Why redo stopped. A fault of the data, never retried by redo itself:
/// the node reports it and needs a build (`redo::pipeline`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedoError {
    #[error("the record at {lsn} cannot be applied: {source}")]
    Apply { lsn: Lsn, source: ApplyError },
    #[error("page {page} (for the record at {lsn}) cannot be read: {reason}")]
    Page {
        lsn: Lsn,
        page: PageNo,
        reason: String,
    },
    #[error("the WAL cannot be read at {lsn}: {reason}")]
    Wal { lsn: Lsn, reason: String },
    #[error("a redo worker thread is gone")]
    WorkerGone,
}

/// Work done by one worker, for the per-worker figures (INFO, metrics,
/// the redo benchmark).
#[derive(Default)]
pub struct WorkerStats {
    pub records: AtomicU64,
    pub busy_ns: AtomicU64,
}

/// Batches a worker's queue holds before the dispatcher waits.
const QUEUE_BATCHES: usize = 8;

/// A worker's answer: `(worker, batch seq, result)`.
pub type Done = (usize, u64, Result<(), RedoError>);

pub struct Workers {
    pool: Arc<Pool>,
    count: usize,
    /// Queues of the worker threads (empty with one worker).
    jobs: Vec<Sender<(u64, Arc<Batch>)>>,
    /// `(worker, batch seq, result)` as each worker finishes a batch.
    done: Receiver<Done>,
    stats: Arc<Vec<WorkerStats>>,
    next_seq: u64,
    /// Submitted and not finished by every worker, oldest first.
    inflight: VecDeque<(u64, Arc<Batch>)>,
    /// Per worker: the last batch seq it finished.
    finished: Vec<u64>,
    error: Option<RedoError>,
}

impl Workers {
    /// `n` workers over `pool` (its shards are the page slices); with
    /// `n >= 2`, worker `i` runs on a thread pinned to `core_of(i)`.
    pub fn start(
        pool: Arc<Pool>,
        n: usize,
        core_of: impl Fn(usize) -> Option<usize>,
    ) -> std::io::Result<Workers> {
        assert!((1..=SLICES).contains(&n), "1 to {SLICES} redo workers");
        assert_eq!(
            pool.shard_count(),
            SLICES,
            "one buffer-pool shard per page slice"
        );
        let stats: Arc<Vec<WorkerStats>> =
            Arc::new((0..n).map(|_| WorkerStats::default()).collect());
        let (done_tx, done) = bounded(n * (QUEUE_BATCHES + 2));
        let mut jobs = Vec::new();
        if n >= 2 {
            for i in 0..n {
                let (tx, rx) = bounded::<(u64, Arc<Batch>)>(QUEUE_BATCHES);
                let (pool, done_tx, stats, core) =
                    (pool.clone(), done_tx.clone(), stats.clone(), core_of(i));
                std::thread::Builder::new()
                    .name(format!("redo-worker-{i}"))
                    .spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core_affinity::CoreId { id: core });
                        }
                        let mut failed = false;
                        while let Ok((seq, batch)) = rx.recv() {
                            // After a failure the pages are not what later
                            // records expect: answer, apply nothing.
                            let r = if failed {
                                Err(RedoError::WorkerGone)
                            } else {
                                apply_share(&pool, &batch, i, &stats[i])
                            };
                            failed |= r.is_err();
                            // Before answering: the dispatcher reuses the
                            // batch's buffer once every handle is gone.
                            drop(batch);
                            if done_tx.send((i, seq, r)).is_err() {
                                return;
                            }
                        }
                    })?;
                jobs.push(tx);
            }
        }
        Ok(Workers {
            pool,
            count: n,
            jobs,
            done,
            stats,
            next_seq: 1,
            inflight: VecDeque::new(),
            finished: vec![0; n],
            error: None,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn stats(&self) -> &Arc<Vec<WorkerStats>> {
        &self.stats
    }

    /// Batches submitted and not yet finished by every worker.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The workers' answers, for a dispatcher that waits on them together
    /// with its input; hand what it receives to [`Workers::note_done`].
    /// With one worker there are no answers (it applies inline): a channel
    /// that never delivers, not the disconnected one (which would read as
    /// "every worker is gone").
    pub fn done_channel(&self) -> Receiver<Done> {
        if self.jobs.is_empty() {
            return crossbeam_channel::never();
        }
        self.done.clone()
    }

    /// An answer received from [`Workers::done_channel`].
    pub fn note_done(&mut self, msg: Done) {
        self.finished_one(msg);
    }

    /// Hands a batch to every worker (with one worker: applies it now).
    /// Waits when a worker's queue is full.
    pub fn submit(&mut self, batch: Arc<Batch>) -> Result<(), RedoError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.jobs.is_empty() {
            apply_share(&self.pool, &batch, 0, &self.stats[0])?;
            self.finished[0] = seq;
        } else {
            for job in &self.jobs {
                if job.send((seq, batch.clone())).is_err() {
                    self.error = Some(RedoError::WorkerGone);
                    return Err(RedoError::WorkerGone);
                }
            }
        }
        self.inflight.push_back((seq, batch));
        Ok(())
    }

    /// Batches every worker finished since the last call, oldest first;
    /// with `wait`, waits for at least one while any is in flight. The
    /// first error of any worker is returned (and again on every call).
    pub fn completed(&mut self, wait: bool) -> Result<Vec<Arc<Batch>>, RedoError> {
        let mut out = Vec::new();
        loop {
            while let Ok(msg) = self.done.try_recv() {
                self.finished_one(msg);
            }
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            // The slowest worker decides what is complete.
            let slowest = self.finished.iter().copied().min().unwrap_or(0);
            while self
                .inflight
                .front()
                .is_some_and(|(seq, _)| *seq <= slowest)
            {
                if let Some((seq, b)) = self.inflight.pop_front() {
                    assert!(
                        seq <= slowest,
                        "a batch completed before its slowest worker"
                    );
                    out.push(b);
                }
            }
            if !wait || !out.is_empty() || self.inflight.is_empty() {
                return Ok(out);
            }
            match self.done.recv() {
                Ok(msg) => self.finished_one(msg),
                Err(_) => {
                    self.error = Some(RedoError::WorkerGone);
                }
            }
        }
    }

    fn finished_one(&mut self, (w, seq, r): Done) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
        debug_assert!(
            seq > self.finished[w],
            "a worker finished batches out of order"
        );
        self.finished[w] = seq;
    }

    /// Waits until nothing is in flight; returns the batches completed.
    pub fn drain(&mut self) -> Result<Vec<Arc<Batch>>, RedoError> {
        let mut out = Vec::new();
        while !self.inflight.is_empty() {
            out.extend(self.completed(true)?);
        }
        Ok(out)
    }
}

/// Applies worker `w`'s share of `batch`, in WAL order. A record that
/// replaces the whole page (an image, the meta page) does not read the
/// page first, so a torn page on disk is repaired without being read.
fn apply_share(pool: &Pool, batch: &Batch, w: usize, stats: &WorkerStats) -> Result<(), RedoError> {
    let started = Instant::now();
    let mut shards: Vec<Option<parking_lot::MutexGuard<'_, BufferPool>>> = (0..SLICES)
        .map(|s| (batch.owners[s] as usize == w).then(|| pool.shard(s).lock()))
        .collect();
    let mut records = 0u64;
    for (lsn, rec) in batch.share(w) {
        let Some(page) = rec.page() else {
            continue;
        };
        let Some(shard) = shards[slice_of(page)].as_mut() else {
            panic!("worker {w} got a record of page {page}, whose slice it does not hold");
        };
        let overwrite = matches!(rec, Record::PageImage { .. } | Record::MetaSet { .. });
        let buf = shard
            .get_for_redo(page, overwrite)
            .map_err(|e| RedoError::Page {
                lsn,
                page,
                reason: e.to_string(),
            })?;
        if crate::failpoints::redo_apply_fails() {
            return Err(RedoError::Apply {
                lsn,
                source: ApplyError::NoRoom { lsn, page },
            });
        }
        if needs_redo(buf, lsn) {
            apply(buf, lsn, &rec).map_err(|source| RedoError::Apply { lsn, source })?;
        }
        records += 1;
    }
    drop(shards);
    if let Some(per_record) = crate::failpoints::redo_record_delay() {
        std::thread::sleep(per_record * records as u32);
    }
    stats.records.fetch_add(records, Ordering::Relaxed);
    stats
        .busy_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(())
}
