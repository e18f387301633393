//! A transaction's private view: page copies, the records it logs, and
//! the meta data it changes.
//!
//! Every change goes through [`Tx::log`]: the record is encoded with its
//! final LSN (the engine lock is held, so the insert position is fixed)
//! and applied with `redo::apply` to a private copy of the page. Nothing
//! shared changes until the engine appends the whole group to the WAL and
//! installs the copies; an error anywhere just drops the copies, so a
//! transaction is all or nothing without undo.
//!
//! Torn-page protection: the first change to a page whose LSN is not newer
//! than the last checkpoint's redo point logs a full image of the page
//! first (as PostgreSQL's full_page_writes).

use std::collections::HashMap;

use super::buffer_pool::PoolError;
use super::pool::PoolGuards;
use super::EngineError;
use crate::ids::{Lsn, PageNo};
use crate::page::meta::Meta;
use crate::page::{self, new_page_buf, PageBuf, PageKind};
use crate::redo::{self, apply::image_of};
use crate::wal::record::Record;

pub struct Tx<'a, 'p> {
    pool: &'a mut PoolGuards<'p>,
    pub(super) meta: Meta,
    meta_changed: bool,
    redo_lsn: Lsn,
    start: Lsn,
    prev: Lsn,
    wal: Vec<u8>,
    overlay: HashMap<PageNo, PageBuf>,
    read_visible: Lsn,
}

/// What a finished transaction hands back to the engine.
pub struct TxOutput {
    pub wal: Vec<u8>,
    pub last_record: Lsn,
    pub pages: HashMap<PageNo, PageBuf>,
    pub meta: Meta,
    /// Highest commit LSN of shared pages this transaction read.
    pub read_visible: Lsn,
}

impl<'a, 'p> Tx<'a, 'p> {
    pub fn new(
        pool: &'a mut PoolGuards<'p>,
        meta: Meta,
        redo_lsn: Lsn,
        start: Lsn,
        prev: Lsn,
    ) -> Tx<'a, 'p> {
        Tx {
            pool,
            meta,
            meta_changed: false,
            redo_lsn,
            start,
            prev,
            wal: Vec::new(),
            overlay: HashMap::new(),
            read_visible: Lsn::ZERO,
        }
    }

    fn next_lsn(&self) -> Lsn {
        self.start.add(self.wal.len() as u64)
    }

    /// The current version of a page: this transaction's copy, or the pool's.
    pub fn page(&mut self, no: PageNo) -> Result<&PageBuf, EngineError> {
        if self.overlay.contains_key(&no) {
            return Ok(&self.overlay[&no]);
        }
        let (buf, visible) = self.pool.get(no).map_err(pool_err)?;
        self.read_visible = self.read_visible.max(visible);
        Ok(buf)
    }

    /// Makes sure a private copy of `no` exists; `fresh` pages (about to
    /// be overwritten by an image) are not read.
    fn copy_of(&mut self, no: PageNo, fresh: bool) -> Result<(), EngineError> {
        if self.overlay.contains_key(&no) {
            return Ok(());
        }
        let mut copy = new_page_buf();
        if !fresh {
            let (buf, visible) = self.pool.get(no).map_err(pool_err)?;
            self.read_visible = self.read_visible.max(visible);
            copy.copy_from_slice(&buf[..]);
        }
        self.overlay.insert(no, copy);
        Ok(())
    }

    /// Logs `rec` and applies it to this transaction's copy of its page.
    pub fn log(&mut self, rec: &Record<'_>) -> Result<(), EngineError> {
        let no = rec
            .page()
            .ok_or(EngineError::Bug("logged a record without a page"))?;
        let full_rewrite = matches!(rec, Record::PageImage { .. } | Record::MetaSet { .. });
        self.copy_of(no, full_rewrite)?;
        if !full_rewrite {
            let copy = &self.overlay[&no];
            if page::lsn(copy) <= self.redo_lsn {
                let lsn = self.next_lsn();
                image_of(copy).encode_into(self.prev, &mut self.wal);
                self.prev = lsn;
                let copy = self
                    .overlay
                    .get_mut(&no)
                    .ok_or(EngineError::Bug("copy vanished"))?;
                page::set_lsn(copy, lsn);
            }
        }
        let lsn = self.next_lsn();
        rec.encode_into(self.prev, &mut self.wal);
        self.prev = lsn;
        let copy = self
            .overlay
            .get_mut(&no)
            .ok_or(EngineError::Bug("copy vanished"))?;
        // A failure here is our own bug: the record was built from this page.
        redo::apply(copy, lsn, rec).map_err(EngineError::Apply)
    }

    /// Logs a whole new content for page `no`, built by `fill` on a zeroed
    /// page that `page::init` prepared with `kind`.
    pub fn write_image(
        &mut self,
        no: PageNo,
        kind: PageKind,
        fill: impl FnOnce(&mut PageBuf),
    ) -> Result<(), EngineError> {
        let mut scratch = new_page_buf();
        page::init(&mut scratch, no, kind);
        fill(&mut scratch);
        self.log(&image_of(&scratch))
    }

    /// A page for new content: from the free list, or past the end.
    pub fn allocate(&mut self) -> Result<PageNo, EngineError> {
        let head = self.meta.free_head;
        if !head.is_none() {
            let next = page::link(self.page(head)?);
            self.meta.free_head = next;
        } else {
            let no = PageNo(self.meta.page_count);
            self.pool
                .ensure_pages(no.0 + 1)
                .map_err(|e| pool_err(e.into()))?;
            self.meta.page_count += 1;
            self.meta_changed = true;
            return Ok(no);
        }
        self.meta_changed = true;
        Ok(head)
    }

    /// Puts `no` on the free list.
    pub fn free(&mut self, no: PageNo) -> Result<(), EngineError> {
        let head = self.meta.free_head;
        self.write_image(no, PageKind::Free, |p| page::set_link(p, head))?;
        self.meta.free_head = no;
        self.meta_changed = true;
        Ok(())
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        self.meta_changed = true;
        &mut self.meta
    }

    /// Ends the transaction: a `MetaSet` if the meta data changed, and a
    /// `Commit` if anything was logged.
    pub fn finish(mut self, commit_time_us: u64) -> Result<TxOutput, EngineError> {
        if self.meta_changed {
            let body = self.meta.encode();
            self.log(&Record::MetaSet { body: &body })?;
        }
        if !self.wal.is_empty() {
            let lsn = self.next_lsn();
            Record::Commit { commit_time_us }.encode_into(self.prev, &mut self.wal);
            self.prev = lsn;
        }
        Ok(TxOutput {
            wal: self.wal,
            last_record: self.prev,
            pages: self.overlay,
            meta: self.meta,
            read_visible: self.read_visible,
        })
    }
}

fn pool_err(e: PoolError) -> EngineError {
    EngineError::from(e)
}
