//! Redo workers: threads that each apply their share of a batch, pinned
//! to the cores of the core map's `redo_workers` slot.
//!
//! Worker 0 is the thread that calls [`Workers::apply`] (the redo
//! dispatcher, or the thread running crash recovery): it applies share 0
//! itself while workers 1.. apply theirs, then waits for them. So one
//! worker means serial redo with no hand-off at all, and N workers use N
//! threads, not N + 1 (on the 2-core machines here a separate dispatcher
//! thread would take a core from a worker).
//!
//! A worker locks the buffer-pool shards of the slices it was given for
//! the batch (in slice order; the slices of two workers never overlap) and
//! holds them for its share; the dispatcher holds the redo gate
//! exclusively meanwhile, so no reader or checkpoint wants a shard then
//! (`engine::pool`).

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

pub struct Workers {
    pool: Arc<Pool>,
    /// Jobs of workers 1.. (index i-1 for worker i): the batch.
    jobs: Vec<Sender<Arc<Batch>>>,
    /// A worker's answer: the batch end it finished, or its error.
    done: Receiver<(usize, Result<Lsn, RedoError>)>,
    stats: Arc<Vec<WorkerStats>>,
}

impl Workers {
    /// `n` workers over `pool` (its shards are the page slices); worker
    /// `i` (for `i >= 1`) runs on a thread pinned to `core_of(i)`.
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
        let (done_tx, done) = bounded(n);
        let mut jobs = Vec::with_capacity(n.saturating_sub(1));
        for i in 1..n {
            let (tx, rx) = bounded::<Arc<Batch>>(1);
            let (pool, done_tx, stats, core) =
                (pool.clone(), done_tx.clone(), stats.clone(), core_of(i));
            std::thread::Builder::new()
                .name(format!("redo-worker-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    }
                    while let Ok(batch) = rx.recv() {
                        let r = apply_share(&pool, &batch, i, &stats[i]).map(|()| batch.end);
                        // Before answering: the dispatcher reuses the
                        // batch's buffer once every handle is gone.
                        drop(batch);
                        if done_tx.send((i, r)).is_err() {
                            return;
                        }
                    }
                })?;
            jobs.push(tx);
        }
        Ok(Workers {
            pool,
            jobs,
            done,
            stats,
        })
    }

    pub fn count(&self) -> usize {
        self.jobs.len() + 1
    }

    pub fn stats(&self) -> &Arc<Vec<WorkerStats>> {
        &self.stats
    }

    /// Applies the batch, worker `i` its share `i`, and returns once all
    /// are done: the barrier at the end of a batch. Returns the lowest
    /// batch end the workers reported done. The first error wins.
    pub fn apply(&self, batch: Arc<Batch>) -> Result<Lsn, RedoError> {
        let mut sent = 0;
        let mut result = Ok(());
        for job in &self.jobs {
            if job.send(batch.clone()).is_err() {
                result = Err(RedoError::WorkerGone);
                break;
            }
            sent += 1;
        }
        let r = apply_share(&self.pool, &batch, 0, &self.stats[0]);
        if result.is_ok() {
            result = r;
        }
        let mut slowest = batch.end;
        for _ in 0..sent {
            match self.done.recv() {
                Ok((_, Ok(done_through))) => slowest = slowest.min(done_through),
                Ok((_, Err(e))) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(_) => return Err(RedoError::WorkerGone),
            }
        }
        result.map(|()| slowest)
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
        if needs_redo(buf, lsn) {
            apply(buf, lsn, &rec).map_err(|source| RedoError::Apply { lsn, source })?;
        }
        records += 1;
    }
    drop(shards);
    stats.records.fetch_add(records, Ordering::Relaxed);
    stats
        .busy_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(())
}
