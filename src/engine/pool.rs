//! The engine's buffer pool: `limits::POOL_SHARDS` shards of
//! [`BufferPool`], page `n` in shard `redo::assembler::slice_of(n)`, each
//! behind its own mutex with its own data-file handle and an equal share
//! of the frames.
//!
//! Why shards: parallel redo (`redo::dispatcher`) gives each page slice of
//! a batch to one worker, and a slice is a shard, so the workers of a
//! batch change disjoint shards and never contend.
//!
//! Who locks what (the lock order is gate, engine state, shards):
//! - a transaction (primary writes, and every read) holds the engine lock
//!   and takes the shards it touches through [`PoolGuards`], keeping them
//!   to its end: only one transaction runs at a time, so this never waits
//!   on another transaction;
//! - a redo worker takes only its own shard, while the redo dispatcher
//!   holds the redo gate exclusively (no transaction or checkpoint runs
//!   then: they hold the gate shared);
//! - a checkpoint takes the gate shared, the engine lock, then shards one
//!   at a time.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::buffer_pool::{BufferPool, FlushTo, PoolError, PoolStats};
use super::data_file::{DataFile, DataFileError};
use crate::ids::{Lsn, PageNo};
use crate::page::PageBuf;

pub struct Pool {
    shards: Vec<Mutex<BufferPool>>,
    /// Each shard's counters (summed by [`Pool::stats`]).
    stats: Vec<Arc<PoolStats>>,
}

impl Pool {
    /// `frames_total` frames split over the shards (each gets at least
    /// `SHARD_FRAMES_MIN`), each with its own handle on `file`.
    pub fn new(
        file: DataFile,
        frames_total: usize,
        flush_to: FlushTo,
    ) -> Result<Pool, DataFileError> {
        let shards = crate::redo::assembler::SLICES;
        let stats: Vec<Arc<PoolStats>> = (0..shards).map(|_| Arc::default()).collect();
        let per_shard = (frames_total / shards).max(super::buffer_pool::SHARD_FRAMES_MIN);
        let mut handles = Vec::with_capacity(shards);
        for _ in 1..shards {
            handles.push(file.another_handle()?);
        }
        handles.insert(0, file);
        let shards = handles
            .into_iter()
            .zip(&stats)
            .map(|(f, st)| Mutex::new(BufferPool::new(f, per_shard, flush_to.clone(), st.clone())))
            .collect();
        Ok(Pool { shards, stats })
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard_of(&self, no: PageNo) -> usize {
        debug_assert_eq!(self.shards.len(), crate::redo::assembler::SLICES);
        crate::redo::assembler::slice_of(no)
    }

    /// Shard `i`, for its redo worker.
    pub fn shard(&self, i: usize) -> &Mutex<BufferPool> {
        &self.shards[i]
    }

    /// The counters of all shards, summed now.
    pub fn stats(&self) -> Arc<PoolStats> {
        use std::sync::atomic::Ordering::Relaxed;
        let sum = PoolStats::default();
        for s in &self.stats {
            sum.hits.fetch_add(s.hits.load(Relaxed), Relaxed);
            sum.misses.fetch_add(s.misses.load(Relaxed), Relaxed);
            sum.evictions.fetch_add(s.evictions.load(Relaxed), Relaxed);
            sum.writes.fetch_add(s.writes.load(Relaxed), Relaxed);
            sum.checksum_failures
                .fetch_add(s.checksum_failures.load(Relaxed), Relaxed);
        }
        Arc::new(sum)
    }

    pub fn set_flush_to(&self, flush_to: FlushTo) {
        for s in &self.shards {
            s.lock().set_flush_to(flush_to.clone());
        }
    }

    /// Lazily taken shard locks for one transaction.
    pub fn guards(&self) -> PoolGuards<'_> {
        PoolGuards {
            pool: self,
            held: (0..self.shards.len()).map(|_| None).collect(),
        }
    }

    /// Pages dirty now, for a checkpoint.
    pub fn dirty_pages(&self) -> Vec<PageNo> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().dirty_pages())
            .collect()
    }

    /// Writes back the listed pages that are still dirty, shard by shard;
    /// returns how many were written.
    pub fn write_dirty(&self, pages: &[PageNo]) -> Result<usize, PoolError> {
        let mut written = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let mine: Vec<PageNo> = pages
                .iter()
                .copied()
                .filter(|&p| self.shard_of(p) == i)
                .collect();
            if !mine.is_empty() {
                written += shard.lock().write_dirty(&mine)?;
            }
        }
        Ok(written)
    }

    /// fdatasync of the data file (one handle is enough: it is one file).
    pub fn sync(&self) -> Result<(), DataFileError> {
        self.shards[0].lock().sync()
    }

    /// The data file's sticky failure, if a sync failed.
    pub fn file_failure(&self) -> Option<String> {
        self.shards[0].lock().file_failure()
    }
}

/// The shards one transaction has locked so far (see the module doc).
pub struct PoolGuards<'a> {
    pool: &'a Pool,
    held: Vec<Option<MutexGuard<'a, BufferPool>>>,
}

impl<'a> PoolGuards<'a> {
    fn shard(&mut self, no: PageNo) -> &mut BufferPool {
        let pool = self.pool;
        let i = pool.shard_of(no);
        self.held[i].get_or_insert_with(|| pool.shards[i].lock())
    }

    /// The page for redo (see [`BufferPool::get_for_redo`]).
    pub fn get_for_redo(&mut self, no: PageNo, overwrite: bool) -> Result<&mut PageBuf, PoolError> {
        self.shard(no).get_for_redo(no, overwrite)
    }

    /// The page and the LSN a reader of it must wait for.
    pub fn get(&mut self, no: PageNo) -> Result<(&PageBuf, Lsn), PoolError> {
        self.shard(no).get(no)
    }

    /// Replaces the page's content with a transaction's new version.
    pub fn install(
        &mut self,
        no: PageNo,
        buf: &PageBuf,
        visible_lsn: Lsn,
    ) -> Result<(), PoolError> {
        self.shard(no).install(no, buf, visible_lsn)
    }

    /// Makes sure pages `[0, pages)` have disk space.
    pub fn ensure_pages(&mut self, pages: u32) -> Result<(), DataFileError> {
        self.shard(PageNo(0)).ensure_pages(pages)
    }
}
