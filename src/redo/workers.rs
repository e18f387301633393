//! Redo workers: threads that each apply their share of a batch to their
//! own buffer-pool shard, pinned to the cores of the core map's
//! `redo_workers` slot.
//!
//! Worker 0 is the thread that calls [`Workers::apply`] (the redo
//! dispatcher, or the thread running crash recovery): it applies share 0
//! itself while workers 1.. apply theirs, then waits for them. So one
//! worker means serial redo with no hand-off at all, and N workers use N
//! threads, not N + 1 (on the 2-core machines here a separate dispatcher
//! thread would take a core from a worker).
//!
//! Each worker locks its shard for the length of its share; the
//! dispatcher holds the redo gate exclusively meanwhile, so no reader or
//! checkpoint wants a shard at that time (`engine::pool`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use super::apply::{apply, needs_redo, ApplyError};
use super::dispatcher::Share;
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
    /// Jobs of workers 1.. (index i-1 for worker i): a share and the
    /// end of its batch.
    jobs: Vec<Sender<(Share, Lsn)>>,
    /// A worker's answer: the batch end it finished, or its error.
    done: Receiver<(usize, Result<Lsn, RedoError>)>,
    stats: Arc<Vec<WorkerStats>>,
}

impl Workers {
    /// `n` workers over `pool` (which must have `n` shards); worker `i`
    /// (for `i >= 1`) runs on a thread pinned to `core_of(i)`.
    pub fn start(
        pool: Arc<Pool>,
        n: usize,
        core_of: impl Fn(usize) -> Option<usize>,
    ) -> std::io::Result<Workers> {
        assert!(n >= 1, "redo needs a worker");
        assert_eq!(
            pool.shard_count(),
            n,
            "one buffer-pool shard per redo worker"
        );
        let stats: Arc<Vec<WorkerStats>> =
            Arc::new((0..n).map(|_| WorkerStats::default()).collect());
        let (done_tx, done) = bounded(n);
        let mut jobs = Vec::with_capacity(n.saturating_sub(1));
        for i in 1..n {
            let (tx, rx) = bounded::<(Share, Lsn)>(1);
            let (pool, done_tx, stats, core) =
                (pool.clone(), done_tx.clone(), stats.clone(), core_of(i));
            std::thread::Builder::new()
                .name(format!("redo-worker-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    }
                    while let Ok((share, end)) = rx.recv() {
                        let r = apply_share(pool.shard(i), share, &stats[i]).map(|()| end);
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

    /// Applies every share (share `i` by worker `i`) of the batch ending
    /// at `end` and returns once all are done: the barrier at the end of a
    /// batch. Returns the lowest batch end the workers reported done (a
    /// worker with an empty share is done at once). The first error wins.
    pub fn apply(&self, shares: Vec<Share>, end: Lsn) -> Result<Lsn, RedoError> {
        assert_eq!(shares.len(), self.count(), "one share per worker");
        let mut shares = shares.into_iter();
        let mine = shares.next().unwrap_or_default();
        let mut sent = 0;
        let mut result = Ok(());
        for (job, share) in self.jobs.iter().zip(shares) {
            if share.is_empty() {
                continue;
            }
            if job.send((share, end)).is_err() {
                result = Err(RedoError::WorkerGone);
                break;
            }
            sent += 1;
        }
        if !mine.is_empty() {
            let r = apply_share(self.pool.shard(0), mine, &self.stats[0]);
            if result.is_ok() {
                result = r;
            }
        }
        let mut slowest = end;
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

/// Applies one share to its shard, in WAL order. A record that replaces
/// the whole page (an image, the meta page) does not read the page first,
/// so a torn page on disk is repaired without being read.
fn apply_share(
    shard: &Mutex<BufferPool>,
    share: Share,
    stats: &WorkerStats,
) -> Result<(), RedoError> {
    let started = Instant::now();
    let records = share.len() as u64;
    let mut pool = shard.lock();
    for (lsn, owned) in &share {
        let rec = owned.record();
        let Some(page) = rec.page() else {
            continue;
        };
        let overwrite = matches!(rec, Record::PageImage { .. } | Record::MetaSet { .. });
        let buf = pool
            .get_for_redo(page, overwrite)
            .map_err(|e| RedoError::Page {
                lsn: *lsn,
                page,
                reason: e.to_string(),
            })?;
        if needs_redo(buf, *lsn) {
            apply(buf, *lsn, &rec).map_err(|source| RedoError::Apply { lsn: *lsn, source })?;
        }
    }
    drop(pool);
    stats.records.fetch_add(records, Ordering::Relaxed);
    stats
        .busy_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(())
}
