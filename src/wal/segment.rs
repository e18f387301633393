//! WAL segment files: naming, listing, preparing, recycling, removing.
//!
//! A segment holds the WAL bytes `[segno * segment_bytes, (segno + 1) *
//! segment_bytes)` of one timeline. Files live in one directory (the caller
//! passes `<data-dir>/wal`) and are named `{timeline:08X}{segno:016X}`, 24
//! upper-case hex digits. Every segment file is exactly `segment_bytes` long
//! (a power of two) and fully written (zeros at first): on this machine an
//! fdatasync after overwriting written blocks is about twice as fast as
//! after writing into unwritten extents (DESIGN.md section 6: about 125 us
//! vs 200-280 us per 8 KiB write+fdatasync), so we never fallocate.
//!
//! Invariants:
//! - A file with a segment name is complete: [`SegmentDir::prepare`] writes
//!   `<name>.tmp`, fdatasyncs it, renames it into place and fsyncs the
//!   directory. A crash leaves at most a `.tmp` file, which listing ignores
//!   and the next prepare overwrites.
//! - Stale contents of a recycled segment are harmless: a record at LSN `x`
//!   is only accepted if its CRC holds and its `prev_lsn` names the record
//!   before `x`; stale records name positions of the segment's old number.
//!
//! Callers: the WAL preparer thread and `Wal::open` (prepare, recycle,
//! remove), the reader (listing).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::ids::{SegmentNo, TimelineId};
use crate::io::{raw_os_error, Ring};
use crate::wal::WalError;

/// Segment size unless configured: 16 MiB, as PostgreSQL, so that recycling
/// and retention work in units small enough to free space steadily.
pub const SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;
/// Smallest segment we accept (tests use 1 MiB).
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;
/// Zero-filling writes this many bytes per write operation...
const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// ...with this many writes per io_uring round.
const ZERO_CHUNKS_PER_ROUND: usize = 4;

/// File name of a segment: `{timeline:08X}{segno:016X}`.
pub fn file_name(timeline: TimelineId, segno: SegmentNo) -> String {
    format!("{:08X}{:016X}", timeline.0, segno.0)
}

/// Parses a segment file name; `None` for anything else (`.tmp` files too).
pub fn parse_name(name: &str) -> Option<(TimelineId, SegmentNo)> {
    if name.len() != 24 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
        return None;
    }
    let timeline = u32::from_str_radix(name.get(..8)?, 16).ok()?;
    let segno = u64::from_str_radix(name.get(8..)?, 16).ok()?;
    Some((TimelineId(timeline), SegmentNo(segno)))
}

/// Maps an I/O error on `path` to `DiskFull` for ENOSPC/EDQUOT.
pub(crate) fn io_error(op: &'static str, path: &Path, e: io::Error) -> WalError {
    match raw_os_error(&e) {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => WalError::DiskFull {
            path: path.to_path_buf(),
        },
        _ => WalError::Io {
            op,
            path: path.to_path_buf(),
            source: std::sync::Arc::new(e),
        },
    }
}

/// The segment files of one directory, as seen from one timeline.
#[derive(Clone, Debug)]
pub struct SegmentDir {
    dir: PathBuf,
    segment_bytes: u64,
    timeline: TimelineId,
}

impl SegmentDir {
    pub fn new(dir: &Path, segment_bytes: u64, timeline: TimelineId) -> Result<Self, WalError> {
        if !segment_bytes.is_power_of_two() || segment_bytes < SEGMENT_BYTES_MIN {
            return Err(WalError::BadSegmentBytes { segment_bytes });
        }
        Ok(SegmentDir {
            dir: dir.to_path_buf(),
            segment_bytes,
            timeline,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    pub fn timeline(&self) -> TimelineId {
        self.timeline
    }

    /// Path of `segno` on this directory's timeline.
    pub fn path(&self, segno: SegmentNo) -> PathBuf {
        self.dir.join(file_name(self.timeline, segno))
    }

    /// Every segment number present, with the path on the highest timeline
    /// not above ours.
    pub fn list(&self) -> Result<BTreeMap<SegmentNo, (TimelineId, PathBuf)>, WalError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("read_dir", &self.dir, e))?;
        let mut out: BTreeMap<SegmentNo, (TimelineId, PathBuf)> = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read_dir", &self.dir, e))?;
            let name = entry.file_name();
            let Some((timeline, segno)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            if timeline > self.timeline {
                continue;
            }
            let better = out.get(&segno).is_none_or(|(t, _)| *t < timeline);
            if better {
                out.insert(segno, (timeline, entry.path()));
            }
        }
        Ok(out)
    }

    /// Creates segment `segno` on our timeline, zero-filled and durable,
    /// replacing any file of that name. Returns its path.
    pub fn prepare(&self, ring: &mut Ring, segno: SegmentNo) -> Result<PathBuf, WalError> {
        self.prepare_with_prefix(ring, segno, &[])
    }

    /// As [`prepare`](Self::prepare), with `prefix` written at the start
    /// (a segment carried over from an older timeline at a switch).
    pub fn prepare_with_prefix(
        &self,
        ring: &mut Ring,
        segno: SegmentNo,
        prefix: &[u8],
    ) -> Result<PathBuf, WalError> {
        assert!(prefix.len() as u64 <= self.segment_bytes);
        let path = self.path(segno);
        let tmp = self
            .dir
            .join(format!("{}.tmp", file_name(self.timeline, segno)));
        let result = self.write_new(ring, &tmp, prefix);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(match e {
                WalError::DiskFull { .. } => WalError::DiskFull { path },
                other => other,
            });
        }
        fs::rename(&tmp, &path).map_err(|e| io_error("rename", &path, e))?;
        self.sync_dir()?;
        Ok(path)
    }

    fn write_new(&self, ring: &mut Ring, tmp: &Path, prefix: &[u8]) -> Result<(), WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(|e| io_error("create", tmp, e))?;
        let fd = file.as_raw_fd();
        ring.write_all_at(fd, prefix, 0)
            .map_err(|e| io_error("write", tmp, e))?;
        zero_range(ring, &file, prefix.len() as u64, self.segment_bytes)
            .map_err(|e| io_error("write", tmp, e))?;
        ring.fdatasync(fd)
            .map_err(|e| io_error("fdatasync", tmp, e))
    }

    /// Renames segment file `old` (no longer needed) to segment `new` of our
    /// timeline and makes the rename durable.
    pub fn recycle(&self, old: &Path, new: SegmentNo) -> Result<PathBuf, WalError> {
        let path = self.path(new);
        fs::rename(old, &path).map_err(|e| io_error("rename", &path, e))?;
        self.sync_dir()?;
        Ok(path)
    }

    pub fn remove(&self, path: &Path) -> Result<(), WalError> {
        fs::remove_file(path).map_err(|e| io_error("remove", path, e))?;
        self.sync_dir()
    }

    pub fn sync_dir(&self) -> Result<(), WalError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("fsync_dir", &self.dir, e))
    }

    /// The file holding `segno`: ours, else the one on the highest older
    /// timeline. A node's WAL directory holds one line of history, and a
    /// process keeps naming new segments with the timeline it started on
    /// after an in-process timeline switch (DESIGN.md section 4), so the
    /// bytes of a segment are the same whichever of its names is found.
    pub fn existing(&self, segno: SegmentNo) -> Option<PathBuf> {
        let own = self.path(segno);
        if own.exists() {
            return Some(own);
        }
        (1..self.timeline.0)
            .rev()
            .map(|t| self.dir.join(file_name(TimelineId(t), segno)))
            .find(|p| p.exists())
    }

    /// Opens an existing segment (see [`existing`](Self::existing)) for
    /// reading and writing.
    pub fn open(&self, segno: SegmentNo) -> Result<File, WalError> {
        let path = self.existing(segno).unwrap_or_else(|| self.path(segno));
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))
    }
}

/// Writes zeros over `[from, to)` of `file` (not synced).
pub fn zero_range(ring: &mut Ring, file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let fd = file.as_raw_fd();
    let mut at = from;
    while at < to {
        let mut writes = Vec::with_capacity(ZERO_CHUNKS_PER_ROUND);
        while at < to && writes.len() < ZERO_CHUNKS_PER_ROUND {
            let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
            writes.push((fd, at, &zeros[..n]));
            at += n as u64;
        }
        ring.write_batch(&writes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 20;

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        let name = file_name(TimelineId(2), SegmentNo(0x1F));
        assert_eq!(name, "00000002000000000000001F");
        assert_eq!(parse_name(&name), Some((TimelineId(2), SegmentNo(0x1F))));
        assert_eq!(parse_name("00000002000000000000001F.tmp"), None);
        assert_eq!(parse_name("00000002000000000000001f"), None);
        assert_eq!(parse_name("control"), None);
    }

    #[test]
    fn prepare_makes_a_zeroed_full_size_file() {
        let dir = tempfile::tempdir().unwrap();
        let segs = SegmentDir::new(dir.path(), SEG, TimelineId(1)).unwrap();
        let mut ring = Ring::new(8).unwrap();
        std::fs::write(dir.path().join("000000010000000000000003.tmp"), b"junk").unwrap();
        let path = segs
            .prepare_with_prefix(&mut ring, SegmentNo(3), b"abc")
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, SEG);
        assert_eq!(&bytes[..3], b"abc");
        assert!(bytes[3..].iter().all(|&b| b == 0));
        let listed = segs.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[&SegmentNo(3)].1, path);
    }

    #[test]
    fn listing_picks_the_highest_timeline_not_above_ours() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            file_name(TimelineId(1), SegmentNo(5)),
            file_name(TimelineId(2), SegmentNo(5)),
            file_name(TimelineId(3), SegmentNo(5)),
            file_name(TimelineId(1), SegmentNo(6)),
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let segs = SegmentDir::new(dir.path(), SEG, TimelineId(2)).unwrap();
        let listed = segs.list().unwrap();
        assert_eq!(listed[&SegmentNo(5)].0, TimelineId(2));
        assert_eq!(listed[&SegmentNo(6)].0, TimelineId(1));
    }

    #[test]
    fn recycle_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let segs = SegmentDir::new(dir.path(), SEG, TimelineId(1)).unwrap();
        let mut ring = Ring::new(8).unwrap();
        let p0 = segs.prepare(&mut ring, SegmentNo(0)).unwrap();
        let p9 = segs.recycle(&p0, SegmentNo(9)).unwrap();
        assert!(!p0.exists());
        assert_eq!(std::fs::metadata(&p9).unwrap().len(), SEG);
        segs.remove(&p9).unwrap();
        assert!(segs.list().unwrap().is_empty());
    }

    #[test]
    fn bad_segment_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SegmentDir::new(dir.path(), 3 << 20, TimelineId(1)).is_err());
        assert!(SegmentDir::new(dir.path(), 4096, TimelineId(1)).is_err());
    }
}
