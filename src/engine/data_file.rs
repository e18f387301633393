//! The data file `<data-dir>/pages`: page `n` at byte `n * 8192`.
//!
//! Owns growth (in chunks of `extend_pages`, allocated with fallocate so
//! a full disk shows up when a page is allocated, never when a dirty page
//! is written back) and page I/O. Reads past the end give zero pages.
//!
//! Handles: each buffer-pool shard (and so each redo worker) does its I/O
//! through its own [`DataFile`] handle, with its own io_uring ring, on the
//! one open file; growth and the failure state are shared by all handles.
//!
//! Error policy (STYLE.md habit 6): a failed `fdatasync` is final for the
//! file. The kernel may have dropped the dirty pages it could not write
//! and report success on a retry (PostgreSQL's "fsyncgate"), so the first
//! failure is kept: every later write or sync on any handle returns
//! [`DataFileError::Failed`] with it, the engine stops checkpointing and
//! refuses writes, and a restart recovers the pages from the WAL (the redo
//! point never moved past the failed sync). A failed write (not sync)
//! leaves its pages dirty in the pool and is retried: nothing was lost.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ids::PageNo;
use crate::io::Ring;
use crate::page::PAGE_BYTES;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DataFileError {
    #[error("data file {op} failed: {message}")]
    Io { op: &'static str, message: String },
    #[error("no space left on the data directory's file system")]
    DiskFull,
    #[error(
        "the data file failed to sync earlier ({first}); nothing is written to it until \
         a restart recovers from the WAL"
    )]
    Failed { first: String },
}

impl DataFileError {
    fn io(op: &'static str, e: std::io::Error) -> DataFileError {
        DataFileError::Io {
            op,
            message: e.to_string(),
        }
    }
}

/// What every handle of the file shares.
struct Shared {
    file: File,
    /// Pages the file holds room for (allocated).
    allocated_pages: AtomicU32,
    extend_pages: u32,
    /// Serialises growth.
    grow: Mutex<()>,
    /// The first failed sync, sticky (see the module doc).
    failed: Mutex<Option<String>>,
}

pub struct DataFile {
    shared: Arc<Shared>,
    ring: Ring,
}

impl DataFile {
    pub fn open(path: &Path, extend_pages: u32) -> Result<DataFile, DataFileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| DataFileError::io("open", e))?;
        let len = file
            .metadata()
            .map_err(|e| DataFileError::io("stat", e))?
            .len();
        let shared = Arc::new(Shared {
            file,
            allocated_pages: AtomicU32::new((len / PAGE_BYTES as u64) as u32),
            extend_pages: extend_pages.max(1),
            grow: Mutex::new(()),
            failed: Mutex::new(None),
        });
        Ok(DataFile {
            shared,
            ring: Ring::new(64).map_err(|e| DataFileError::io("io_uring setup", e))?,
        })
    }

    /// Another handle on the same file, with its own ring.
    pub fn another_handle(&self) -> Result<DataFile, DataFileError> {
        Ok(DataFile {
            shared: self.shared.clone(),
            ring: Ring::new(64).map_err(|e| DataFileError::io("io_uring setup", e))?,
        })
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.shared.file.as_raw_fd()
    }

    fn check_failed(&self) -> Result<(), DataFileError> {
        match self.shared.failed.lock().as_ref() {
            Some(first) => Err(DataFileError::Failed {
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The sticky failure, if a sync failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.failed.lock().clone()
    }

    /// Makes sure pages `[0, pages)` have disk space; grows in chunks.
    pub fn ensure_pages(&self, pages: u32) -> Result<(), DataFileError> {
        if pages <= self.shared.allocated_pages.load(Ordering::Acquire) {
            return Ok(());
        }
        let _grow = self.shared.grow.lock();
        if pages <= self.shared.allocated_pages.load(Ordering::Acquire) {
            return Ok(());
        }
        let step = self.shared.extend_pages;
        let target = pages.div_ceil(step) * step;
        let len = target as i64 * PAGE_BYTES as i64;
        let rc = crate::io::fallocate(self.fd(), len);
        if rc != 0 {
            if matches!(rc, libc::ENOSPC | libc::EDQUOT) {
                return Err(DataFileError::DiskFull);
            }
            return Err(DataFileError::io(
                "fallocate",
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        self.shared.allocated_pages.store(target, Ordering::Release);
        Ok(())
    }

    pub fn allocated_pages(&self) -> u32 {
        self.shared.allocated_pages.load(Ordering::Acquire)
    }

    pub fn read_page(
        &mut self,
        page: PageNo,
        buf: &mut [u8; PAGE_BYTES],
    ) -> Result<(), DataFileError> {
        let off = page.0 as u64 * PAGE_BYTES as u64;
        let fd = self.fd();
        let n = self
            .ring
            .read_at(fd, &mut buf[..], off)
            .map_err(|e| DataFileError::io("read", e))?;
        buf[n..].fill(0);
        Ok(())
    }

    /// Writes sealed pages (buffered; made durable by [`DataFile::sync`]).
    pub fn write_pages(
        &mut self,
        pages: &[(PageNo, &[u8; PAGE_BYTES])],
    ) -> Result<(), DataFileError> {
        self.check_failed()?;
        let fd = self.fd();
        let writes: Vec<(std::os::fd::RawFd, u64, &[u8])> = pages
            .iter()
            .map(|(no, buf)| (fd, no.0 as u64 * PAGE_BYTES as u64, &buf[..]))
            .collect();
        self.ring.write_batch(&writes).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC) {
                DataFileError::DiskFull
            } else {
                DataFileError::io("write", source)
            }
        })
    }

    /// fdatasync of the file. A failure is kept for good (module doc).
    pub fn sync(&mut self) -> Result<(), DataFileError> {
        self.check_failed()?;
        let fd = self.fd();
        let result = sync_failpoint().map_or_else(|| self.ring.fdatasync(fd), Err);
        if let Err(e) = result {
            let first = format!("fdatasync: {e}");
            tracing::error!(error = %first, "data file sync failed: refusing writes until a restart recovers from the WAL");
            self.shared.failed.lock().get_or_insert(first.clone());
            return Err(DataFileError::Failed { first });
        }
        Ok(())
    }
}

/// Failpoint `engine::data_file::sync` (see `crate::failpoints`): `return`
/// makes the sync fail with EIO, as a disk that lost the writes would.
fn sync_failpoint() -> Option<std::io::Error> {
    fail::fail_point!("engine::data_file::sync", |_| Some(
        std::io::Error::from_raw_os_error(libc::EIO)
    ));
    None
}
