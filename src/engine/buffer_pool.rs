//! One shard of the buffer pool: page frames, a page table, clock
//! eviction, and its own handle on the data file.
//!
//! The engine's pool ([`super::pool::Pool`]) holds one shard per redo
//! worker, each behind its own mutex; page `n` lives in shard `n % shards`.
//! A shard is used by one thread at a time (its mutex), so frames need no
//! latches of their own.
//!
//! Invariants:
//! - a dirty frame is written back only after the WAL is flushed past its
//!   `visible_lsn` (the commit end of the last transaction that changed
//!   it), and the page's own LSN is checked against the flushed LSN the
//!   WAL reports right before the write (release `assert!`: the WAL rule
//!   `page_lsn <= flushed`);
//! - a page read from disk is verified (checksum, page number) before it
//!   enters the pool; a page that fails is reported by number, never served;
//! - pages are sealed (checksum stamped) on their way to disk only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::data_file::{DataFile, DataFileError};
use crate::ids::{Lsn, PageNo};
use crate::page::{self, new_page_buf, PageBuf, PageError, PAGE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    #[error(transparent)]
    Corrupt(#[from] PageError),
    #[error("waiting for the WAL before writing page {page}: {reason}")]
    WalFlush { page: PageNo, reason: String },
}

/// Frames a shard has at least: a transaction or a redo worker works on
/// one page of a shard at a time (it copies what it read before the next
/// lookup), so a few frames suffice; a pool of `limits::POOL_SHARDS`
/// shards then has at least 64.
pub const SHARD_FRAMES_MIN: usize = 4;

/// Makes the WAL durable up to an LSN (blocking) and returns how far it is
/// durable now. The engine passes the WAL's flush wait; crash recovery
/// passes the end of the WAL it found (made durable before redo began).
pub type FlushTo = Arc<dyn Fn(Lsn) -> Result<Lsn, String> + Send + Sync>;

/// Counters of one shard (or their sum), one cache line apiece: every page
/// lookup counts, and redo workers look up pages on different cores.
#[derive(Default)]
#[repr(align(64))]
pub struct PoolStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub writes: AtomicU64,
    pub checksum_failures: AtomicU64,
}

struct Frame {
    page: PageNo,
    buf: PageBuf,
    dirty: bool,
    /// Commit end LSN of the last transaction that changed the page;
    /// readers wait until it is durable.
    visible_lsn: Lsn,
    referenced: bool,
}

pub struct BufferPool {
    frames: Vec<Frame>,
    table: HashMap<PageNo, usize>,
    hand: usize,
    file: DataFile,
    flush_to: FlushTo,
    stats: Arc<PoolStats>,
}

impl BufferPool {
    pub fn new(
        file: DataFile,
        frames_max: usize,
        flush_to: FlushTo,
        stats: Arc<PoolStats>,
    ) -> BufferPool {
        assert!(
            frames_max >= SHARD_FRAMES_MIN,
            "a buffer pool shard needs at least {SHARD_FRAMES_MIN} frames"
        );
        BufferPool {
            frames: Vec::with_capacity(frames_max),
            table: HashMap::with_capacity(frames_max),
            hand: 0,
            file,
            flush_to,
            stats,
        }
    }

    pub fn set_flush_to(&mut self, flush_to: FlushTo) {
        self.flush_to = flush_to;
    }

    pub fn ensure_pages(&mut self, pages: u32) -> Result<(), DataFileError> {
        self.file.ensure_pages(pages)
    }

    /// The page and the LSN a reader of it must wait for.
    pub fn get(&mut self, no: PageNo) -> Result<(&PageBuf, Lsn), PoolError> {
        let idx = self.frame_of(no, true)?;
        let f = &self.frames[idx];
        Ok((&f.buf, f.visible_lsn))
    }

    /// The page for redo: loaded from disk unless `overwrite` (the record
    /// replaces the whole page, so a torn page on disk is never read).
    /// The caller changes it; it is marked dirty.
    pub fn get_for_redo(&mut self, no: PageNo, overwrite: bool) -> Result<&mut PageBuf, PoolError> {
        let idx = self.frame_of(no, !overwrite)?;
        let f = &mut self.frames[idx];
        f.dirty = true;
        f.referenced = true;
        Ok(&mut f.buf)
    }

    /// Replaces the page's content with a transaction's new version.
    pub fn install(
        &mut self,
        no: PageNo,
        buf: &PageBuf,
        visible_lsn: Lsn,
    ) -> Result<(), PoolError> {
        let idx = self.frame_of(no, false)?;
        let f = &mut self.frames[idx];
        f.buf.copy_from_slice(&buf[..]);
        f.dirty = true;
        f.visible_lsn = f.visible_lsn.max(visible_lsn);
        f.referenced = true;
        Ok(())
    }

    /// Frame index of `no`, loading (and verifying) it if `read` and absent;
    /// without `read` an absent page starts as zeros.
    fn frame_of(&mut self, no: PageNo, read: bool) -> Result<usize, PoolError> {
        if let Some(&idx) = self.table.get(&no) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.frames[idx].referenced = true;
            return Ok(idx);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let idx = self.free_frame()?;
        let f = &mut self.frames[idx];
        if read {
            self.file.read_page(no, &mut f.buf)?;
            if let Err(e) = page::verify(&f.buf, no) {
                self.stats.checksum_failures.fetch_add(1, Ordering::Relaxed);
                f.buf.fill(0);
                tracing::error!(page = no.0, error = %e, "page failed verification; not served");
                return Err(e.into());
            }
        } else {
            f.buf.fill(0);
        }
        f.page = no;
        f.dirty = false;
        f.visible_lsn = Lsn::ZERO;
        f.referenced = true;
        self.table.insert(no, idx);
        Ok(idx)
    }

    /// A frame not holding any page: a new one while below capacity, else
    /// the clock's victim (written back first if dirty).
    fn free_frame(&mut self) -> Result<usize, PoolError> {
        if self.frames.len() < self.frames.capacity() {
            self.frames.push(Frame {
                page: PageNo::NONE,
                buf: new_page_buf(),
                dirty: false,
                visible_lsn: Lsn::ZERO,
                referenced: false,
            });
            return Ok(self.frames.len() - 1);
        }
        let n = self.frames.len();
        loop {
            let idx = self.hand;
            self.hand = (self.hand + 1) % n;
            let f = &mut self.frames[idx];
            if f.page.is_none() {
                return Ok(idx);
            }
            if f.referenced {
                f.referenced = false;
                continue;
            }
            if f.dirty {
                self.write_back(idx)?;
            }
            let f = &mut self.frames[idx];
            self.table.remove(&f.page);
            f.page = PageNo::NONE;
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok(idx);
        }
    }

    fn write_back(&mut self, idx: usize) -> Result<(), PoolError> {
        let f = &mut self.frames[idx];
        let (no, visible) = (f.page, f.visible_lsn);
        let flushed =
            (self.flush_to)(visible).map_err(|reason| PoolError::WalFlush { page: no, reason })?;
        let f = &mut self.frames[idx];
        assert_wal_rule(&f.buf, flushed);
        page::seal(&mut f.buf);
        self.file.write_pages(&[(no, &f.buf)])?;
        f.dirty = false;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pages dirty now, for a checkpoint.
    pub fn dirty_pages(&self) -> Vec<PageNo> {
        self.frames
            .iter()
            .filter(|f| f.dirty)
            .map(|f| f.page)
            .collect()
    }

    /// Highest `visible_lsn` among dirty frames: the WAL must be flushed
    /// this far before a checkpoint writes them.
    pub fn dirty_visible_lsn_max(&self) -> Lsn {
        self.frames
            .iter()
            .filter(|f| f.dirty)
            .map(|f| f.visible_lsn)
            .max()
            .unwrap_or(Lsn::ZERO)
    }

    /// Writes back the listed pages that are still dirty (buffered writes,
    /// one io_uring batch); returns how many were written.
    pub fn write_dirty(&mut self, pages: &[PageNo]) -> Result<usize, PoolError> {
        let mut idxs = Vec::with_capacity(pages.len());
        let mut visible_max = Lsn::ZERO;
        for no in pages {
            if let Some(&idx) = self.table.get(no) {
                if self.frames[idx].dirty {
                    visible_max = visible_max.max(self.frames[idx].visible_lsn);
                    idxs.push(idx);
                }
            }
        }
        if idxs.is_empty() {
            return Ok(0);
        }
        let flushed = (self.flush_to)(visible_max).map_err(|reason| PoolError::WalFlush {
            page: self.frames[idxs[0]].page,
            reason,
        })?;
        for &idx in &idxs {
            assert_wal_rule(&self.frames[idx].buf, flushed);
            page::seal(&mut self.frames[idx].buf);
        }
        let batch: Vec<(PageNo, &[u8; PAGE_BYTES])> = idxs
            .iter()
            .map(|&i| (self.frames[i].page, &*self.frames[i].buf))
            .collect();
        self.file.write_pages(&batch)?;
        for &idx in &idxs {
            self.frames[idx].dirty = false;
        }
        self.stats
            .writes
            .fetch_add(idxs.len() as u64, Ordering::Relaxed);
        Ok(idxs.len())
    }

    pub fn sync(&mut self) -> Result<(), DataFileError> {
        self.file.sync()
    }

    /// The data file's sticky failure, if a sync failed.
    pub fn file_failure(&self) -> Option<String> {
        self.file.failure()
    }

    /// Reads a page straight from disk, bypassing the pool (for the
    /// offline page verifier and digests).
    pub fn read_from_disk(
        &mut self,
        no: PageNo,
        buf: &mut [u8; PAGE_BYTES],
    ) -> Result<(), DataFileError> {
        self.file.read_page(no, buf)
    }

    /// Current in-memory content of a page if cached.
    pub fn cached(&self, no: PageNo) -> Option<&PageBuf> {
        self.table.get(&no).map(|&i| &self.frames[i].buf)
    }
}

/// The WAL rule, checked right before a page goes to disk: everything the
/// page reflects is durable in the WAL (STYLE.md habit 4).
fn assert_wal_rule(buf: &PageBuf, flushed: Lsn) {
    let page_lsn = page::lsn(buf);
    assert!(
        page_lsn <= flushed,
        "WAL rule: page {} has LSN {page_lsn} past the flushed WAL {flushed}",
        page::page_no(buf)
    );
}
