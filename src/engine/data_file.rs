//! The data file `<data-dir>/pages`: page `n` at byte `n * 8192`.
//!
//! Owns growth (in chunks of `extend_pages`, allocated with fallocate so
//! a full disk shows up when a page is allocated, never when a dirty page
//! is written back) and page I/O. Reads past the end give zero pages.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::ids::PageNo;
use crate::io::Ring;
use crate::page::PAGE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("data file {op} failed: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("no space left on the data directory's file system")]
    DiskFull,
}

pub struct DataFile {
    file: File,
    ring: Ring,
    /// Pages the file holds room for (allocated).
    allocated_pages: u32,
    extend_pages: u32,
}

impl DataFile {
    pub fn open(path: &Path, extend_pages: u32) -> Result<DataFile, DataFileError> {
        let io = |op| move |source| DataFileError::Io { op, source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let ring = Ring::new(64).map_err(io("io_uring setup"))?;
        Ok(DataFile {
            file,
            ring,
            allocated_pages: (len / PAGE_BYTES as u64) as u32,
            extend_pages: extend_pages.max(1),
        })
    }

    /// Makes sure pages `[0, pages)` have disk space; grows in chunks.
    pub fn ensure_pages(&mut self, pages: u32) -> Result<(), DataFileError> {
        if pages <= self.allocated_pages {
            return Ok(());
        }
        let target = pages.div_ceil(self.extend_pages) * self.extend_pages;
        let len = target as i64 * PAGE_BYTES as i64;
        // SAFETY-free libc call on our own fd: no buffers involved.
        let rc = unsafe_free_fallocate(self.file.as_raw_fd(), len);
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(rc);
            if matches!(rc, libc::ENOSPC | libc::EDQUOT) {
                return Err(DataFileError::DiskFull);
            }
            return Err(DataFileError::Io {
                op: "fallocate",
                source: err,
            });
        }
        self.allocated_pages = target;
        Ok(())
    }

    pub fn allocated_pages(&self) -> u32 {
        self.allocated_pages
    }

    pub fn read_page(
        &mut self,
        page: PageNo,
        buf: &mut [u8; PAGE_BYTES],
    ) -> Result<(), DataFileError> {
        let off = page.0 as u64 * PAGE_BYTES as u64;
        let n = self
            .ring
            .read_at(self.file.as_raw_fd(), &mut buf[..], off)
            .map_err(|source| DataFileError::Io { op: "read", source })?;
        buf[n..].fill(0);
        Ok(())
    }

    /// Writes sealed pages (buffered; made durable by [`DataFile::sync`]).
    pub fn write_pages(
        &mut self,
        pages: &[(PageNo, &[u8; PAGE_BYTES])],
    ) -> Result<(), DataFileError> {
        let fd = self.file.as_raw_fd();
        let writes: Vec<(std::os::fd::RawFd, u64, &[u8])> = pages
            .iter()
            .map(|(no, buf)| (fd, no.0 as u64 * PAGE_BYTES as u64, &buf[..]))
            .collect();
        self.ring.write_batch(&writes).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC) {
                DataFileError::DiskFull
            } else {
                DataFileError::Io {
                    op: "write",
                    source,
                }
            }
        })
    }

    pub fn sync(&mut self) -> Result<(), DataFileError> {
        self.ring
            .fdatasync(self.file.as_raw_fd())
            .map_err(|source| DataFileError::Io {
                op: "fdatasync",
                source,
            })
    }
}

fn unsafe_free_fallocate(fd: i32, len: i64) -> i32 {
    crate::io::fallocate(fd, len)
}
